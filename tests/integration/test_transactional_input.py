"""Input from a transactional producer (issue 13: any producer, any client).

Kafka Streams and Kafka Connect with exactly-once, and any client that calls
`abort_transaction`, leave aborted records in the log: they are not events. The entry stage
read with read_uncommitted and applied them (a probe of 100 committed and 100 aborted records:
193 rows in touchpoint_events, 7 dead letters). Here kafka-python's transactional producer
writes plain records first, then a committed transaction, an aborted one holding events never
sent again, and a committed retry of part of it, and once all is read one more aborted
transaction: the tables equal `replay` of what was committed, row for row, and the entry
stage's committed offset reaches the end of the log (past the last marker, past records of an
aborted transaction that end the log)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline.stream.lag import wait_caught_up
from tests.integration.test_stream_end_to_end import (
    assert_same_as_replay,
    generate,
    wait_for_results,
)
from tests.support.stack import ClickHouseUrls
from tests.support.stream import Worker, produce_lines, stream_setup

pytestmark = pytest.mark.integration
KEY = b"one-key"  # one partition, in log order: the comparison is row for row


def test_aborted_transactions_are_not_events(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    from pipeline.stream.topics import ensure_topics

    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    ensure_topics(setup.settings())
    lines = generate(tmp_path, 1600, seed=31)
    plain, committed, aborted, retried = (lines[:400], lines[400:900], lines[900:1600],
                                          lines[900:1200])
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        produce_lines(kafka_bootstrap, setup.topic, plain, one_key=KEY)
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap,
                                 transactional_id=f"{setup.topic}-upstream")
        producer.init_transactions()
        for part, commit in ((committed, True), (aborted, False), (retried, True)):
            _transaction(producer, setup.topic, part, commit)
        seen = plain + committed + retried
        wait_for_results(setup, [worker], seen, timeout=180)
        assert_same_as_replay(setup, seen)
        wait_caught_up(setup.settings(), 60)  # the entry stage's offset is past the last marker
        # Then one more transaction, aborted, once the stage has read everything: the log ends
        # in records it never returns, read alone, and its offset must still reach the end.
        _transaction(producer, setup.topic, aborted[-100:], False)
        producer.close()
        wait_caught_up(setup.settings(), 60)
        assert_same_as_replay(setup, seen)
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()


def _transaction(producer: KafkaProducer, topic: str, lines: list[bytes], commit: bool) -> None:
    producer.begin_transaction()
    for line in lines:
        producer.send(topic, key=KEY, value=line)
    producer.flush()
    if commit:
        producer.commit_transaction()
    else:
        producer.abort_transaction()

