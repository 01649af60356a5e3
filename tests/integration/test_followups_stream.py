"""Follow-up cases in the stream (docs/followups.md): after a worker is killed with SIGKILL
mid-run and restarted, the cases in ClickHouse equal `peakend replay`'s followups.jsonl, case for
case (none lost, none twice), and every case is on the cases topic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.storage.tables import rows
from pipeline.stream.topics import followups_topic
from tests.integration.test_stream_end_to_end import generate
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    StreamSetup,
    Worker,
    count,
    produce_lines,
    replay_records,
    stream_setup,
    wait_until,
)
from tests.support.tables import read_back_values

pytestmark = pytest.mark.integration

# The version grows with every input of the customer; the stream sees coalesced journey records
# (the latest per flush) where replay sees every record, so versions may differ: the content may
# not.
COMPARED = [c for c in rows("followups", [])[0] if c != "version"]


def cases_in_clickhouse(setup: StreamSetup) -> dict[str, tuple[Any, ...]]:
    wh = setup.warehouse()
    try:
        data = wh.query(f"SELECT {', '.join(COMPARED)} FROM followups FINAL "
                        "WHERE status != 'withdrawn'")
    finally:
        wh.close()
    return {row[0]: tuple(row) for row in data}


def cases_of_replay(lines: list[bytes], setup: StreamSetup) -> dict[str, tuple[Any, ...]]:
    replay = replay_records(lines, setup.partitions, setup.settings())
    records = [c.to_dict() for c in replay.cases.values() if c.status != "withdrawn"]
    columns, data = rows("followups", records)
    keep = [columns.index(c) for c in COMPARED]
    return {row[0]: read_back_values("followups", COMPARED, [row[i] for i in keep])
            for row in data}


def topic_cases(setup: StreamSetup) -> list[tuple[bytes, int, bytes]]:
    """(case id, version, value) of every record on the cases topic."""
    import json

    consumer = KafkaConsumer(bootstrap_servers=setup.env["PEAKEND_KAFKA_BOOTSTRAP"],
                             enable_auto_commit=False)
    try:
        topic = followups_topic(setup.settings())
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                for record in batch:
                    out.append((record.key, json.loads(record.value)["version"], record.value))
        return out
    finally:
        consumer.close()


def test_followups_equal_replay_after_sigkill(
    tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls
) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    lines = generate(tmp_path, 3000, seed=17)
    want = cases_of_replay(lines, setup)
    assert len(want) >= 10, "the generated journeys should give follow-up cases"
    worker = Worker(setup, tmp_path, "a", 5)
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        wait_until(lambda: count(setup, "SELECT count() FROM touchpoint_events") > 500, 90,
                   "the worker to be mid-run", worker.log_tail)
        worker.kill9()
        time.sleep(1)
        worker = Worker(setup, tmp_path, "a", 5)  # same state directory, like a restart
        # generous: the machine running the tests is shared and slow at times
        wait_until(lambda: cases_in_clickhouse(setup) == want, 420,
                   "follow-up cases in ClickHouse to equal replay",
                   lambda: _diff(cases_in_clickhouse(setup), want) + worker.log_tail())
        # every case reached the topic (ticketing consumers read it there)
        assert {key.decode() for key, _, _ in topic_cases(setup)} >= set(want)
    finally:
        worker.stop()


def _diff(got: dict[str, tuple[Any, ...]], want: dict[str, tuple[Any, ...]]) -> str:
    differ = [(got[k], want[k]) for k in sorted(got.keys() & want.keys()) if got[k] != want[k]]
    return (f"{len(got)} in ClickHouse, {len(want)} in replay; only in ClickHouse "
            f"{sorted(got.keys() - want.keys())[:3]}; only in replay "
            f"{sorted(want.keys() - got.keys())[:3]}; {len(differ)} differ, e.g. {differ[:1]}\n")
