"""The bus topics on the real broker: no retention time, purged below the committed offsets.

Before, the bus topics (batch records, contributions, follow-up inputs, claims) had the broker's
default retention of 7 days: a worker stopped for longer lost what its stages had not read yet,
without a word (Faust's consumer resets to the earliest offset left), and while it ran they held
7 days of every event. Now they are created with no time limit and the group's leader deletes
what the group committed (pipeline/stream/bus_purge.py). Here a worker runs a file, the bus
topics are seen purged down to the committed offsets, and a second worker with an empty state
directory (its state restored from the changelogs, which are never purged) runs a second file:
the tables equal `replay` of both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.structs import TopicPartition

from tests.integration.test_stream_end_to_end import (
    assert_same_as_replay,
    generate,
    wait_for_results,
)
from tests.support.stack import ClickHouseUrls
from tests.support.stream import StreamSetup, Worker, produce_lines, stream_setup, wait_until

pytestmark = pytest.mark.integration


def purge_state(setup: StreamSetup) -> dict[TopicPartition, tuple[int, int]]:
    """(first offset held, committed offset) of every bus topic partition its reading group
    committed (the worker's group, and stage two's when it runs apart)."""
    from pipeline.stream.lag import consumer_groups
    from pipeline.stream.topics import admin_client, bus_topics

    settings = setup.settings()
    bus = set(bus_topics(settings))
    readers = [group for group, topics in consumer_groups(settings).items() if bus & set(topics)]
    admin = admin_client(settings, "test")
    try:
        committed = {tp: meta for group in readers
                     for tp, meta in admin.list_group_offsets({group: None})[group].items()
                     if tp.topic in bus}
    finally:
        admin.close()
    held = {tp: int(meta.offset) for tp, meta in committed.items() if meta.offset > 0}
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        first = consumer.beginning_offsets(list(held))
    finally:
        consumer.close()
    return {tp: (int(first[tp]), offset) for tp, offset in held.items()}


def retention_of(setup: StreamSetup, key: str = "retention.ms") -> dict[str, str]:
    from pipeline.stream.topics import admin_client, bus_topics

    settings = setup.settings()
    admin = admin_client(settings, "test")
    try:
        # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
        described: Any = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in bus_topics(settings)])
    finally:
        admin.close()
    # only the configs set on the topic are listed; absent: the broker's default
    return {name: str(configs.get(key, {}).get("value"))
            for name, configs in described["topic"].items()}


def test_the_bus_topics_keep_only_what_the_group_has_not_committed(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=2,
                         PEAKEND_BUS_PURGE_SECONDS="1")
    lines = generate(tmp_path, 1600, seed=31)
    first, second = lines[:1000], lines[1000:]
    # a bus topic as an earlier version made it: the broker's 7-day retention, and another
    # config of its own, which must stay
    from pipeline.stream.topics import admin_client, contributions_topic

    admin = admin_client(setup.settings(), "test")
    try:
        admin.create_topics([NewTopic(contributions_topic(setup.settings()), 2, 1, topic_configs={
            "retention.ms": "604800000", "compression.type": "zstd"})])
    finally:
        admin.close()
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        produce_lines(kafka_bootstrap, setup.topic, first)
        wait_for_results(setup, [worker], first, timeout=240)
        # the worker's start took the old topic's limit off, and left its other config
        assert set(retention_of(setup).values()) == {"-1"}, retention_of(setup)
        assert retention_of(setup, "compression.type")[
            contributions_topic(setup.settings())] == "zstd"
        assert "had a retention limit: set to none" in worker.log_path.read_text(errors="replace")
        # every bus partition its group committed past 0 now starts at its committed offset,
        # stage two's topics among them (its own group when it runs apart)
        contributions = contributions_topic(setup.settings())

        def purged() -> bool:
            state = purge_state(setup)
            return (contributions in {tp.topic for tp in state}
                    and all(start == offset for start, offset in state.values()))

        wait_until(purged, 60, "the bus topics purged down to the committed offsets",
                   worker.log_tail)
        samples = worker.metric_samples()
        assert samples[("peakend_bus_purges_total", (("outcome", "ok"),))] > 0
        assert samples[("peakend_bus_records_purged_total", ())] > 0
        assert ("peakend_bus_purges_total", (("outcome", "failed"),)) not in samples
    finally:
        worker.stop()
    worker = Worker(setup, tmp_path, "b", 0)  # an empty state directory: restored from changelogs
    try:
        produce_lines(kafka_bootstrap, setup.topic, second)
        wait_for_results(setup, [worker], lines, timeout=240)
        assert_same_as_replay(setup, lines)
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
