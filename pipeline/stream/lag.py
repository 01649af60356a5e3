"""How far behind the worker is: committed offsets of its consumer groups against the ends of
the topics they read. Zero everywhere means every record produced so far has been processed and
inserted into ClickHouse (the sink commits only after its inserts)."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pipeline.settings import Settings
from pipeline.stream.stage_two import stage_two_group
from pipeline.stream.topics import (
    claims_topic,
    contributions_topic,
    followup_inputs_topic,
    journey_events_topic,
    topic_tables,
)


def _committed(admin: KafkaAdminClient, group: str, attempts: int = 40) -> dict[Any, Any]:
    """Committed offsets of a group, waiting out retriable errors: on a fresh broker the group
    coordinator is not available until __consumer_offsets exists."""
    for attempt in range(attempts):
        try:
            return dict(admin.list_group_offsets(group).get(group, {}))
        except KafkaError as exc:
            if not exc.retriable or attempt == attempts - 1:
                raise
            time.sleep(0.5)
    return {}


def consumer_groups(settings: Settings, *, apart: bool | None = None) -> dict[str, list[str]]:
    """Every consumer group of the pipeline and the topics it reads: the entry stage, the
    agents (the Faust app's own group, and stage two's when it runs apart;
    tests/unit/stream/test_lag.py and test_stage_two.py check that every agent's topic is here:
    the claims topic once was not, and a run counted as caught up could still have claims to
    apply), and the ClickHouse sink. `apart`: whether stage two runs in a process of its own
    (by default as the settings say; a worker with embedded chdb keeps it in its own)."""
    stage_two = [contributions_topic(settings), followup_inputs_topic(settings),
                 claims_topic(settings)]
    # Stage two in a process of its own reads its topics in its own group (stage_two.py).
    apart = settings.stage_two_process if apart is None else apart
    return {
        f"{settings.app_id}-entry": [settings.topic_touchpoints],
        settings.app_id: [journey_events_topic(settings), *([] if apart else stage_two)],
        **({stage_two_group(settings): stage_two} if apart else {}),
        f"{settings.app_id}-clickhouse-sink": list(topic_tables(settings)),
    }


class LagReader:
    """Records not yet processed per consumer group and topic, read as often as needed through
    one admin client and one consumer, which learns each topic's partitions once. kafka-python's
    `partitions_for_topic` fetches the metadata of every topic of the cluster whenever its
    cache lacks the topic, and a consumer without a subscription keeps none: on a broker with
    thousands of topics each reading cost 3-4 s and 2-3 s of CPU (10 topics x 0.4 s), while
    `wait_caught_up` meant to read every quarter second. A topic whose partitions grow while a
    reader lives is read with the partitions it had."""

    def __init__(self, settings: Settings) -> None:
        self.groups = consumer_groups(settings)
        options = settings.kafka_client_options()
        self.partitions: dict[str, set[int]] = {}
        self.admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **options)
        try:
            self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, **options)
        except BaseException:
            self.admin.close()
            raise

    def read(self) -> dict[str, int]:
        # Every topic's ends in one ListOffsets request: a request per topic cost 13.5-14.6 ms
        # of CPU a reading against 3.4-3.9 (`python -m bench.bench_lag_reader`, 10 topics of 4
        # partitions, kafka-python), taken four times a second from the pipeline the
        # benchmarks measure on the same cores (docs/streaming.md, twenty-fifth round).
        tps_of = {topic: [TopicPartition(topic, p) for p in self._partitions(topic)]
                  for topics in self.groups.values() for topic in topics}
        ends = self.consumer.end_offsets([tp for tps in tps_of.values() for tp in tps])
        lag: dict[str, int] = {}
        for group, topics in self.groups.items():
            committed = _committed(self.admin, group)
            for topic in topics:
                behind = 0
                for tp in tps_of[topic]:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    behind += max(0, ends[tp] - done)
                lag[f"{group}/{topic}"] = behind
        return lag

    def _partitions(self, topic: str) -> set[int]:
        parts = self.partitions.get(topic)
        if parts is None:
            parts = self.consumer.partitions_for_topic(topic) or set()
            if parts:  # a topic not created yet is asked again at the next reading
                self.partitions[topic] = parts
        return parts

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.admin.close()

    def __enter__(self) -> LagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pipeline_lag(settings: Settings) -> dict[str, int]:
    """Records not yet processed per consumer group and topic (one reading)."""
    with LagReader(settings) as reader:
        return reader.read()


def wait_caught_up(settings: Settings, timeout_s: float, *, settle_s: float = 3.0,
                   poll_s: float = 0.5) -> dict[str, int]:
    """Wait until nothing is behind for `settle_s` (outputs of the last inputs are themselves
    inputs of the next stage, so one zero reading is not enough). Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    zero_since: float | None = None
    lag: dict[str, int] = {}
    with LagReader(settings) as reader:
        while time.monotonic() < deadline:
            lag = reader.read()
            if all(v == 0 for v in lag.values()):
                zero_since = zero_since or time.monotonic()
                if time.monotonic() - zero_since >= settle_s:
                    return lag
            else:
                zero_since = None
            time.sleep(poll_s)
    raise TimeoutError(f"pipeline still behind after {timeout_s:.0f} s: {lag}")
