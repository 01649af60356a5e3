"""The contract against the real broker: bytes survive the round trip, nothing is lost."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.cli import main
from pipeline.contract import parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.producer import TouchpointProducer
from pipeline.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "contract"))
from contract_corpus import INVALID, VALID, padded_to

pytestmark = pytest.mark.integration

Record = tuple[bytes | None, bytes, int]  # key, value, partition


def fresh_topic(bootstrap: str, purpose: str, partitions: int = 3) -> str:
    # Imported here so that collecting this file never fails the whole run.
    try:
        from tests.integration.kafka_util import create_topic
    except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
        from kafka_util import create_topic  # type: ignore[no-redef,unused-ignore]
    name = f"test.contract.{purpose}.{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, name, partitions)
    return name


def consume_kafka_python(bootstrap: str, topic: str, expected: int,
                         deadline_s: float = 60.0) -> list[Record]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             **Settings.from_env().kafka_client_options())
    try:
        numbers: set[int] | None = None
        deadline = time.monotonic() + deadline_s
        while not numbers and time.monotonic() < deadline:
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                time.sleep(0.1)
        assert numbers, f"topic {topic} has no partitions after {deadline_s} s"
        partitions = [TopicPartition(topic, n) for n in sorted(numbers)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        out: list[Record] = []
        while len(out) < expected and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=500).items():
                out.extend((m.key, m.value, tp.partition) for m in messages)
        return out
    finally:
        consumer.close()


async def _consume_aiokafka(bootstrap: str, topic: str, expected: int,
                            deadline_s: float) -> list[Record]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **Settings.from_env().kafka_client_options())
    await consumer.start()
    try:
        out: list[Record] = []
        deadline = time.monotonic() + deadline_s
        while len(out) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                out.extend((m.key, m.value, tp.partition) for m in messages)
        return out
    finally:
        await consumer.stop()


def consume_aiokafka(bootstrap: str, topic: str, expected: int,
                     deadline_s: float = 60.0) -> list[Record]:
    return asyncio.run(_consume_aiokafka(bootstrap, topic, expected, deadline_s))


def test_every_valid_example_round_trips_byte_for_byte(kafka_bootstrap: str) -> None:
    topic = fresh_topic(kafka_bootstrap, "roundtrip")
    sent = [data for _, data in VALID]
    with TouchpointProducer(Settings.from_env(), bootstrap=kafka_bootstrap, topic=topic,
                            linger_ms=5) as producer:
        events = [producer.send(data) for data in sent]
        delivery = producer.flush(30)
    assert (delivery.records, delivery.delivered) == (len(sent), len(sent))

    expected = Counter((e.journey_key.encode(), data) for e, data in zip(events, sent,
                                                                          strict=True))
    for consume in (consume_kafka_python, consume_aiokafka):
        received = consume(kafka_bootstrap, topic, len(sent))
        assert Counter((key, value) for key, value, _ in received) == expected, consume.__name__
        by_value = {data: event for event, data in zip(events, sent, strict=True)}
        for _, value, _ in received:
            assert parse_event(value) == by_value[value]
        # One journey key, one partition: per-journey order is kept.
        partitions: dict[bytes | None, set[int]] = {}
        for key, _, partition in received:
            partitions.setdefault(key, set()).add(partition)
        assert all(len(p) == 1 for p in partitions.values())


def test_produce_with_dead_letters_loses_nothing(kafka_bootstrap: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    topic = fresh_topic(kafka_bootstrap, "input")
    dead_topic = fresh_topic(kafka_bootstrap, "dead", partitions=1)
    good = [data for _, data in VALID if b"\n" not in data]
    bad = [case.data for case in INVALID if b"\n" not in case.data and case.data.strip()]
    lines: list[bytes] = []
    for i in range(max(len(good), len(bad))):  # interleaved, as a real stream would be
        lines += good[i:i + 1] + bad[i:i + 1]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    code = main(["produce", str(path), "--bootstrap", kafka_bootstrap, "--topic", topic,
                 "--dead-letters", "--dead-letter-topic", dead_topic])
    assert code == 1  # some lines were rejected
    assert "failed deliveries 0" in capsys.readouterr().out

    valid = consume_kafka_python(kafka_bootstrap, topic, len(good))
    letters = [DeadLetter.from_json(value)
               for _, value, _ in consume_kafka_python(kafka_bootstrap, dead_topic, len(bad))]
    assert len(valid) + len(letters) == len(lines)
    assert sorted(value for _, value, _ in valid) == sorted(good)
    assert sorted(letter.original for letter in letters) == sorted(bad)
    for letter in letters:
        assert lines[letter.source_offset - 1] == letter.original
        assert letter.source_topic == str(path)


def test_replay_dead_letters_from_the_topic(kafka_bootstrap: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dead_topic = fresh_topic(kafka_bootstrap, "dead", partitions=1)
    target = fresh_topic(kafka_bootstrap, "replayed")
    oversized = padded_to(70_000)  # too_large under the default limit, fine under 100000
    with TouchpointProducer(Settings.from_env(), bootstrap=kafka_bootstrap,
                            dead_letter_topic=dead_topic) as producer:
        for offset, (reason, data) in enumerate([("too_large", oversized),
                                                 ("invalid", INVALID[-1].data),
                                                 ("late", VALID[0][1])]):
            producer.send_dead_letter(DeadLetter.make(
                reason, "test", original=data, source_topic="cx.touchpoints",
                source_partition=0, source_offset=offset))

    code = main(["replay-dead-letters", "--from-topic", dead_topic, "--bootstrap",
                 kafka_bootstrap, "--topic", target, "--max-bytes", "100000"])
    assert code == 0
    assert ("read 3 dead letters: replayed 1, still rejected 1 (invalid 1), skipped by reason 1"
            in capsys.readouterr().out)
    assert [value for _, value, _ in consume_kafka_python(kafka_bootstrap, target, 1)] == [
        oversized]
