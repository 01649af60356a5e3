"""The sink inserts only the latest version of a key per batch in the versioned tables, and
what it leaves out is exactly what every reader (argMax by version, FINAL) would not show."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.storage.sink import ClickHouseSink, latest_versions
from pipeline.storage.tables import TABLES, VERSIONED_TABLES
from pipeline.storage.warehouse import Warehouse
from tests.unit.storage.test_sink_isolation import Refusing, journey_record

rows_strategy = st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 5), st.integers()),
                         max_size=40)


@given(rows_strategy)
def test_latest_versions_keeps_what_argmax_by_version_reads(rows: list[tuple[str, int, int]]
                                                             ) -> None:
    kept = latest_versions(rows, key=lambda r: r[0], version=lambda r: r[1])
    # one row per key, the highest version, the last of equal ones (a merge keeps the last)
    want = {}
    for row in rows:
        if row[0] not in want or row[1] >= want[row[0]][1]:
            want[row[0]] = row
    assert sorted(kept) == sorted(want.values())
    # in their order of arrival
    positions = [max(i for i, r in enumerate(rows) if r is k) for k in kept]
    assert positions == sorted(positions)


def test_rows_without_a_key_or_version_are_kept_for_their_dead_letter() -> None:
    rows: list[Any] = [{"k": 1, "v": 1}, {"k": 1}, [1, 2], {"k": [1], "v": 2}, {"k": 1, "v": 2}]
    kept = latest_versions(rows, key=lambda r: r["k"], version=lambda r: r["v"])
    assert kept == [{"k": 1}, [1, 2], {"k": [1], "v": 2}, {"k": 1, "v": 2}]


def test_the_versioned_tables_have_a_key_and_a_version_column() -> None:
    for table in VERSIONED_TABLES:
        spec = TABLES[table]
        assert spec.key and set(spec.key) <= set(spec.columns), table
        assert "version" in spec.columns, table
    assert "touchpoint_events" not in VERSIONED_TABLES  # a row is an event, not a version
    assert "dead_letters" not in VERSIONED_TABLES


def versioned(i: int, version: int, events: int) -> bytes:
    record = json.loads(journey_record(i, events))
    record["version"] = version
    return json.dumps(record).encode()


def test_a_flush_inserts_the_latest_version_of_each_journey_and_counts_the_rest() -> None:
    settings = Settings.from_env({})
    metrics = WorkerMetrics.create()
    warehouse = Refusing()
    sink = ClickHouseSink(settings, lambda: cast(Warehouse, warehouse), metrics, migrate=False)
    offset = 0
    for version in (1, 2, 3):
        for i in range(10):
            if i % 3 == 0 and version == 3:
                continue  # these journeys end at version 2
            offset += 1
            sink.add(settings.topic_journeys, i % 2, offset, versioned(i, version, version))
    sink.add(settings.topic_journeys, 0, offset + 1, versioned(5, 2, 2))  # an older copy late
    asyncio.run(sink.flush())
    stored = {r["journey_id"]: (r["version"], r["events"]) for r in warehouse.stored["journeys"]}
    assert stored == {f"j{i}": (2, 2) if i % 3 == 0 else (3, 3) for i in range(10)}
    assert len(warehouse.stored["journeys"]) == 10
    assert metrics.registry.get_sample_value(
        "peakend_sink_superseded_rows_total", {"table": "journeys"}) == offset + 1 - 10
    assert metrics.registry.get_sample_value(
        "peakend_sink_rows_total", {"table": "journeys"}) == 10
