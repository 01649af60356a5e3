"""An input topic that records the broker's append time (`message.timestamp.type=LogAppendTime`).

The `future` verdict judges an event's `occurred_at` against the time it reached us: the
broker's append time when the topic records it, else the worker's clock when it reads the
record, never the producer's own CreateTime, which comes from the clock being judged
(pipeline/stream/entry.py, `arrival_ms`). Until this test only unit tests covered the first
path. Here the records go in while no worker runs, each with a CreateTime a year ahead (which
the broker overwrites), and the worker starts once the clock has passed the second event's
`occurred_at`: that event was ahead of its append time by more than the allowed skew but is
behind the worker's clock when read, so only the append time can make it `future`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from pipeline.core.timefmt import format_ms
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    Worker,
    count,
    dead_letter_counts,
    stream_setup,
    wait_until,
)

pytestmark = pytest.mark.integration
SKEW_SECONDS = 2
AHEAD_MS = 12_000  # the second event: this far ahead of now when sent, > the skew
YEAR_MS = 365 * 86_400_000
LOG_APPEND_TIME = 1  # Kafka's timestamp type


def event(n: int, at_ms: int) -> bytes:
    return json.dumps({
        "schema_version": 1, "event_id": f"append-{n}", "customer_id": f"append-c{n}",
        "occurred_at": format_ms(at_ms), "type": "interaction", "channel": "web",
        "touchpoint": "home", "stage": "use", "producer": "test", "valence": 0.5,
    }).encode()


def test_the_append_time_is_the_arrival_the_future_rule_judges(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    from pipeline.stream.topics import ensure_topics

    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=1,
                         PEAKEND_MAX_CLOCK_SKEW_SECONDS=str(SKEW_SECONDS))
    ensure_topics(setup.settings())
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, setup.topic,
                                            configs={"message.timestamp.type": "LogAppendTime"})])
    finally:
        admin.close()
    now = time.time_ns() // 1_000_000
    lines = [event(0, now - 60_000),  # on time
             event(1, now + AHEAD_MS),  # ahead of its append time, behind the worker's reads
             event(2, now + 2 * 86_400_000)]  # ahead of every clock
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for line in lines:
            producer.send(setup.topic, line, key=b"one", timestamp_ms=now + YEAR_MS)
        producer.flush()
    finally:
        producer.close()
    consumer = KafkaConsumer(setup.topic, bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        stored = [(r.timestamp_type, r.timestamp) for r in consumer][:len(lines)]
    finally:
        consumer.close()
    assert len(stored) == len(lines), stored
    # the broker's clock replaced the producer's: append times, a moment after `now`
    assert all(kind == LOG_APPEND_TIME and abs(ts - now) < 60_000 for kind, ts in stored), stored
    # the worker reads only once its clock is past the second event (plus the skew)
    time.sleep(max(0.0, (now + AHEAD_MS + 2_000 * SKEW_SECONDS) / 1000 - time.time()))
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        wait_until(
            lambda: count(setup, "SELECT count() FROM dead_letters FINAL") == 2
            and count(setup, "SELECT count() FROM journeys FINAL") == 1,
            180, "1 journey and 2 dead letters in ClickHouse",
            lambda: f"{dead_letter_counts(setup)}, journeys "
                    f"{count(setup, 'SELECT count() FROM journeys FINAL')}\n"
                    f"{worker.log_tail()}")
        assert dead_letter_counts(setup) == {"future": 2}
        wh = setup.warehouse()
        try:
            ahead = wh.query("SELECT event_id, error FROM dead_letters FINAL ORDER BY event_id")
            # every schema-valid event is in touchpoint_events (the raw events, as received);
            # only the on-time one made a journey
            kept = wh.query("SELECT end_event_id FROM journeys FINAL")
        finally:
            wh.close()
        assert [str(e) for e, _ in ahead] == ["append-1", "append-2"]
        # the message names the append time it judged against, not the worker's read time
        assert f"ahead of {format_ms(stored[1][1])}" in str(ahead[0][1]), ahead[0][1]
        assert [str(e) for (e,) in kept] == ["append-0"]
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
