"""One event_id, one journey, on the real broker and server (issue 13, item 4).

Copies of one event_id under two journey keys (two journey ids, or a journey id and none) land
on different partitions; the claims stage judges them (the smaller content digest wins, as
within a journey) and withdraws the loser from its journey. Both orders are sent, each for its
own event_id: the tables the worker writes equal `peakend replay` of the same records, with one
`conflict` dead letter per event_id, and replay of the other order keeps the same copies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.timefmt import format_ms
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    count,
    dead_letter_counts,
    journeys_in_clickhouse,
    journeys_of_replay,
    metrics_of_replay,
    produce_lines,
    replay_records,
    stream_setup,
    wait_for_metrics,
    wait_until,
)

pytestmark = pytest.mark.integration


def touchpoint(event_id: str, minute: int, base_ms: int, journey: str | None,
               customer: str, nps: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id, "schema_version": 1, "producer": "cross-test",
        "occurred_at": format_ms(base_ms + minute * 60_000), "customer_id": customer,
        "type": "interaction" if nps is None else "survey", "touchpoint": "hotline",
        "channel": "phone", "stage": "after_sales",
    }
    if journey is not None:
        event["journey_id"] = journey
    if nps is not None:
        event["survey"] = {"nps": nps}
    return event


def records(base_ms: int, swap: bool) -> list[bytes]:
    """Three journeys and two event_ids sent under two journey keys each: `x1` under journey
    `j-a` and keyed by customer `c-solo` (no journey id), `x2` under `j-b` and `j-a`, with other
    answers too; `swap` sends every second copy first."""
    def pair(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
        return [second, first] if swap else [first, second]

    events = [
        touchpoint("a1", 0, base_ms, "j-a", "c-a"),
        touchpoint("b1", 1, base_ms, "j-b", "c-b"),
        *pair(touchpoint("x1", 2, base_ms, "j-a", "c-a", nps=10),
              touchpoint("x1", 2, base_ms, None, "c-solo", nps=0)),
        touchpoint("a2", 3, base_ms, "j-a", "c-a", nps=8),
        *pair(touchpoint("x2", 4, base_ms, "j-b", "c-b", nps=3),
              touchpoint("x2", 4, base_ms, "j-a", "c-a", nps=9)),
        touchpoint("b2", 5, base_ms, "j-b", "c-b", nps=6),
        touchpoint("a3", 6, base_ms, "j-a", "c-a"),
    ]
    return [json.dumps(e).encode() for e in events]


def live(journeys: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {k: row for k, row in journeys.items() if "superseded" not in row}


def test_copies_under_two_journey_keys_equal_replay_in_both_orders(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    base_ms = (time.time_ns() // 1_000_000 // 60_000 - 120) * 60_000  # two hours ago
    lines = records(base_ms, swap=False)
    replay = replay_records(lines, setup.partitions, setup.settings())
    other = replay_records(records(base_ms, swap=True), setup.partitions, setup.settings())
    assert [d.reason for d in replay.dead_letters] == ["conflict", "conflict"]
    assert [d.reason for d in other.dead_letters] == ["conflict", "conflict"]
    # whatever the order, the same copies count: the same live journeys and answers
    assert live(journeys_of_replay(other)) == live(journeys_of_replay(replay))
    assert metrics_of_replay(other) == metrics_of_replay(replay)
    answered = [r for r in replay.journeys.values() if r.status != "superseded"]
    assert sum(r.events for r in answered) == 7  # 9 records, 2 copies withdrawn
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        want = journeys_of_replay(replay)
        wait_until(lambda: count(setup, "SELECT count() FROM dead_letters FINAL") == 2
                   and journeys_in_clickhouse(setup) == want, 240,
                   "journeys in ClickHouse to equal replay, with 2 conflict dead letters",
                   lambda: f"{journeys_in_clickhouse(setup)}\n!=\n{want}\n{worker.log_tail()}")
        wait_for_metrics(setup, metrics_of_replay(replay), 60)
        assert dead_letter_counts(setup) == {"conflict": 2}
        # the sink reads the events from their own topic, so they may land after the journeys
        wait_until(lambda: count(setup, "SELECT count() FROM touchpoint_events FINAL") == 7, 60,
                   "the 7 counted copies in touchpoint_events",
                   lambda: f"{count(setup, 'SELECT count() FROM touchpoint_events FINAL')} rows\n"
                           f"{worker.log_tail()}")
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
