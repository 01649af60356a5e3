"""Record batches compressed with every codec Kafka has (issue 13: any producer, any client).

Producers in other languages often compress with lz4, zstd or snappy, and a broker or topic
with `compression.type` set rewrites every batch in it. Before aiokafka's and kafka-python's
codec extras were dependencies, one lz4 batch sent by Kafka's own console producer stopped the
entry stage for good: it restarted from its committed offset at every `UnsupportedCodecError`
and nothing reached ClickHouse (pipeline/kafka_codecs.py). Here a file goes in four parts, one
per codec, through the console producer; the broker also recompresses two of the worker's own
topics with zstd (the journeys output the sink reads, and the batch records stage one reads).
The tables equal `replay` row for row."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from tests.integration.test_stream_end_to_end import (
    assert_same_as_replay,
    generate,
    wait_for_results,
)
from tests.integration.test_unkeyed_input import console_produce
from tests.support.stack import ClickHouseUrls
from tests.support.stream import Worker, stream_setup

pytestmark = pytest.mark.integration
CODECS = ("gzip", "snappy", "lz4", "zstd")


def test_every_codec_in_and_between_the_stages_equals_replay(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> None:
    from pipeline.stream.topics import ensure_topics, journey_events_topic

    setup = stream_setup(tmp_path, kafka_bootstrap, clickhouse_urls, partitions=4)
    settings = setup.settings()
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, topic, configs={"compression.type": "zstd"})
            for topic in (settings.topic_journeys, journey_events_topic(settings))])
    finally:
        admin.close()
    # The console producer reads text: a line that is not UTF-8 arrives with U+FFFD in it (an
    # `invalid` letter, where replay of the file says `not_utf8`), so such lines stay out.
    lines = [line for line in generate(tmp_path, 2000, seed=23) if _utf8(line)]
    worker = Worker(setup, tmp_path, "a", 0)
    try:
        # one key for every record: one partition, in file order, so the comparison is row for
        # row (placement whatever the key: test_unkeyed_input.py)
        part = -(-len(lines) // len(CODECS))
        for i, codec in enumerate(CODECS):
            console_produce(kafka_bootstrap, setup.topic, lines[i * part:(i + 1) * part],
                            "one-key", codec)
        wait_for_results(setup, [worker], lines, timeout=240)
        assert_same_as_replay(setup, lines)
        assert worker.alive(), worker.log_tail()
        assert "UnsupportedCodecError" not in worker.log_tail()
    finally:
        worker.stop()


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
