"""Records the touchpoints topic's retention deleted before the entry stage read them (issue 13:
nothing lost silently). They are lost whatever we do; until 2026-12-06 the entry stage's
consumer reset to the log's start without a word (auto_offset_reset="earliest"), so records
never processed looked like records never sent. Now it counts them in
`peakend_input_records_expired_total`, logs one line with the offsets, and reads on.

A worker reads a first part and stops; two more parts are sent, and the log's start is moved
past the second (Kafka's DeleteRecords, what retention does to old segments); a worker started
again reads the third: the tables equal `replay` of the first and third parts row for row, and
the counter holds the second part's size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from pipeline.core.partitioner import partition_for
from tests.integration.test_stream_end_to_end import (
    assert_same_as_replay,
    generate,
    wait_for_results,
)
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

pytestmark = pytest.mark.integration
KEY = b"one-key"  # one partition, in log order


def test_records_deleted_before_they_were_read_are_counted(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    from pipeline.stream.topics import ensure_topics

    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    ensure_topics(setup.settings())
    lines = generate(tmp_path, 1500, seed=41)
    first, expired, third = lines[:500], lines[500:900], lines[900:]
    partition = TopicPartition(setup.topic, partition_for(KEY.decode(), setup.partitions))
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        produce_lines(kafka_bootstrap, setup.topic, first, one_key=KEY)
        wait_for_results(setup, [worker], first, timeout=180)
    finally:
        worker.stop()
    produce_lines(kafka_bootstrap, setup.topic, expired + third, one_key=KEY)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_records({partition: len(first) + len(expired)})
    finally:
        admin.close()
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        kept = first + third
        wait_for_results(setup, [worker], kept, timeout=180)
        assert_same_as_replay(setup, kept)
        counter = ("peakend_input_records_expired_total", (("topic", setup.topic),))
        wait_until(lambda: worker.metric_samples().get(counter) == len(expired), 30,
                   f"{len(expired)} expired records counted", worker.log_tail)
        log = worker.log_tail(400)
        assert (f"{len(expired)} records of {setup.topic} partition {partition.partition} "
                f"(offsets {len(first)} to {len(first) + len(expired) - 1}) were deleted "
                "before they were read") in log
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()



def first_run(tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls, *,
              events: int, seed: int) -> tuple[StreamSetup, list[bytes]]:
    """One partition; a worker over `events` generated lines, stopped once they are in the
    tables."""
    from pipeline.stream.topics import ensure_topics

    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=1)
    ensure_topics(setup.settings())
    first = generate(tmp_path, events, seed=seed)
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        produce_lines(kafka_bootstrap, setup.topic, first)
        wait_for_results(setup, [worker], first, timeout=180)
    finally:
        worker.stop()
    return setup, first


def test_output_records_deleted_before_the_sink_read_them_are_counted(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    """The same for the sink: journey records on `cx.journeys` that the topic's retention
    deleted while ClickHouse (here: the whole worker) was away are counted in
    `peakend_sink_records_expired_total{topic}` and logged; the sink reads on at the log's
    start. Before, its consumer reset there without a word ("earliest")."""
    setup, first = first_run(tmp_path, kafka_bootstrap, clickhouse_urls, events=300, seed=43)
    settings = setup.settings()
    sample = next(iter(replay_records(first, 1, settings).journeys.values())).to_dict()
    records = [json.dumps(sample | {"journey_id": f"{name}-{i}"}).encode()
               for name, n in (("expired", 40), ("kept", 10)) for i in range(n)]
    journeys = TopicPartition(settings.topic_journeys, 0)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        before = consumer.end_offsets([journeys])[journeys]
    finally:
        consumer.close()
    produce_lines(kafka_bootstrap, settings.topic_journeys, records, one_key=KEY)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_records({journeys: before + 40})
    finally:
        admin.close()
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        wait_until(lambda: count(setup, "SELECT count() FROM journeys FINAL "
                                        "WHERE journey_id LIKE 'kept-%'") == 10,
                   180, "the 10 records after the deleted ones in ClickHouse", worker.log_tail)
        assert count(setup, "SELECT count() FROM journeys FINAL "
                            "WHERE journey_id LIKE 'expired-%'") == 0
        counter = ("peakend_sink_records_expired_total", (("topic", settings.topic_journeys),))
        wait_until(lambda: worker.metric_samples().get(counter) == 40, 30,
                   "40 expired records counted", worker.log_tail)
        assert (f"sink: 40 records of {settings.topic_journeys} partition 0 (offsets {before} "
                f"to {before + 39}) were deleted before they were read") in worker.log_tail(400)
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()


def test_readers_commit_past_deleted_records_when_no_record_follows(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    """The entry stage and the sink move past records deleted unread; when none follows, they
    still commit where they read on. Before, both committed only after a record, so their
    committed offsets stayed below the logs' starts and `peakend lag` (and Kafka's own
    kafka-consumer-groups) showed the deleted records as lag until new records came."""
    from pipeline.stream.bus_purge import committed as group_offsets
    from pipeline.stream.lag import consumer_groups

    setup, _ = first_run(tmp_path, kafka_bootstrap, clickhouse_urls, events=200, seed=47)
    settings = setup.settings()
    touchpoints = TopicPartition(setup.topic, 0)
    journeys = TopicPartition(settings.topic_journeys, 0)
    produce_lines(kafka_bootstrap, setup.topic, generate(tmp_path, 50, seed=48), one_key=KEY)
    produce_lines(kafka_bootstrap, settings.topic_journeys, [b"{}"] * 30, one_key=KEY)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        ends = consumer.end_offsets([touchpoints, journeys])
        admin.delete_records(ends)  # everything after the first run: deleted unread
        groups = consumer_groups(settings)  # the entry stage's, the sink's (one topic each)
        readers = {tp: next(group for group, topics in groups.items() if tp.topic in topics)
                   for tp in ends}

        def committed() -> dict[TopicPartition, int | None]:
            return {tp: group_offsets(admin, group).get(tp) for tp, group in readers.items()}

        assert all(offset is not None and offset < ends[tp]
                   for tp, offset in committed().items()), committed()
        worker = Worker(setup, tmp_path, "a", 0)
        try:
            wait_until(lambda: committed() == ends, 120,
                       f"the entry stage and the sink committed at the logs' starts {ends}",
                       worker.log_tail)
            assert worker.alive(), worker.log_tail()
        finally:
            worker.stop()
    finally:
        admin.close()
        consumer.close()
