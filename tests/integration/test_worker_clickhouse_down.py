"""`peakend worker` starts and runs its Kafka-to-Kafka stages while ClickHouse is down (issue 14
item 4): no crash loop, no traceback; its sink retries the migrations, one log line per attempt,
and once ClickHouse is back the tables equal `peakend replay`. ClickHouse is "down" behind a
TCP relay in this process (tests/integration/test_sink_servers.py `Relay`), not stopped: other
engineers share the server."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.settings import Settings
from tests.integration.test_sink_servers import Relay, _through
from tests.integration.test_stream_end_to_end import (
    assert_same_as_replay,
    generate,
    wait_for_results,
)
from tests.support.stack import ClickHouseUrls
from tests.support.stream import Worker, produce_lines, stream_setup, wait_until

pytestmark = pytest.mark.integration


def _records(bootstrap: str, settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_worker_runs_its_kafka_stages_while_clickhouse_is_down(
    tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls,
) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=2)
    parsed = urlparse(clickhouse_urls.writer)
    relay = Relay((parsed.hostname or "127.0.0.1", parsed.port or 9000))
    relay.set("down")
    setup.env["PEAKEND_CLICKHOUSE_URL"] = _through(clickhouse_urls.writer, relay.port,
                                                   setup.database)
    lines = generate(tmp_path, 600, seed=21)
    worker = Worker(setup, tmp_path, "a")
    try:
        produce_lines(kafka_bootstrap, setup.topic, lines)
        settings = setup.settings()
        started = time.monotonic()
        wait_until(lambda: _records(kafka_bootstrap, settings, settings.topic_journeys) > 0,
                   90, "journeys on the output topic while ClickHouse is down", worker.log_tail)
        print(f"journeys on Kafka {time.monotonic() - started:.1f} s after the produce, "
              "ClickHouse down")
        wait_until(lambda: worker.log_path.read_text().count("ClickHouse migrations, attempt")
                   >= 2, 30, "two migration attempts in the log", worker.log_tail)
        time.sleep(3)
        assert worker.alive(), worker.log_tail()
        relay.set("up")
        wait_for_results(setup, [worker], lines, timeout=120)
        assert_same_as_replay(setup, lines)
        assert worker.alive(), worker.log_tail()
        log = worker.log_path.read_text()
        assert "Traceback" not in log, worker.log_tail()
        attempts = [line for line in log.splitlines() if "ClickHouse migrations, attempt" in line]
        assert attempts and all("Stack trace" not in line for line in attempts)
        assert "applied migrations: 001_tables.sql" in log
    finally:
        worker.stop()
        relay.close()
