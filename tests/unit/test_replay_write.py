"""`peakend replay` writes journeys.jsonl, metrics.jsonl and followups.jsonl in key order,
whatever order the records are held in: `_write_by_key` encodes them in the order held (memory
order, docs/core.md "Cost over long histories") and then sorts the lines by key."""

from __future__ import annotations

import io
import json
import random
from contextlib import nullcontext
from typing import Any

import orjson

from jobs.generate import GeneratorConfig, generate_events
from pipeline.core.config import CoreConfig
from pipeline.replay import Replay, _write_by_key, with_now

NOW_MS = 1_830_000_000_000  # every generated event reached us before this


def replayed(events: int = 1_500) -> Replay:
    config = GeneratorConfig(events=events, seed=11, span_ms=12 * 3_600_000)
    replay = Replay(with_now(CoreConfig(), NOW_MS), 4, "generated", 65536)
    for number, event in enumerate(generate_events(config), start=1):
        replay.line(number, json.dumps(event).encode())
    replay.keep(replay.engine.finish())
    return replay


def written(held: dict[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    _write_by_key(nullcontext(buffer), held)
    return buffer.getvalue()


def by_sorted_keys(held: dict[Any, Any]) -> bytes:
    """The definition: each record's JSON line, the records sorted by key."""
    return b"".join(orjson.dumps(record.to_dict()) + b"\n" for _, record in sorted(held.items()))


def test_lines_come_in_key_order_whatever_order_the_records_are_held_in() -> None:
    replay = replayed()
    assert len(replay.journeys) > 100 and len(replay.metrics) > 500 and len(replay.cases) > 10
    holders: list[dict[Any, Any]] = [replay.journeys, replay.metrics, replay.cases]
    for held in holders:
        expected = by_sorted_keys(held)
        assert written(held) == expected
        items: list[tuple[Any, Any]] = list(held.items())
        random.Random(3).shuffle(items)
        shuffled: dict[Any, Any] = dict(items)
        assert list(shuffled) != sorted(shuffled)  # the held order is not the key order
        assert written(shuffled) == expected
        assert len(expected.splitlines()) == len(held)


def test_nothing_held_writes_an_empty_file() -> None:
    assert written({}) == b""


def test_the_drivers_journeys_file_has_its_rows_by_journey_id_whatever_the_order_given() -> None:
    import pyarrow.parquet as pq

    from pipeline.driver_inputs import DriverInputs

    replay = replayed()
    records = list(replay.journeys.values())
    random.Random(5).shuffle(records)
    buffer = io.BytesIO()
    DriverInputs.write_journeys(buffer, records, 123)
    buffer.seek(0)
    table = pq.read_table(buffer)
    assert table.column("journey_id").to_pylist() == sorted(replay.journeys)
    assert table.schema.metadata[b"peakend.journeys_jsonl_bytes"] == b"123"
