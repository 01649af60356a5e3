"""The real Kafka broker answers both client libraries the pipeline uses."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.kafka_util import create_topic, unique_topic

pytestmark = pytest.mark.integration


def test_kafka_python_produces_and_aiokafka_consumes(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, unique_topic("stack"), partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(300)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(topic, key=k, value=v) for k, v in sent.items()]
    producer.flush()
    assert all(f.get(timeout=10).topic == topic for f in futures)
    producer.close()

    async def consume() -> dict[bytes, bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=f"{topic}-aio",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: dict[bytes, bytes] = {}
        try:
            async with asyncio.timeout(30):
                while len(got) < len(sent):
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        got.update({r.key: r.value for r in records if r.key is not None})
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(consume()) == sent


def test_aiokafka_produces_and_kafka_python_consumes(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, unique_topic("stack"), partitions=2)
    sent = [f"event-{i}".encode() for i in range(200)]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for value in sent:
                await producer.send(topic, value=value, key=b"one-key")
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"{topic}-kp",
        consumer_timeout_ms=5000,
        enable_auto_commit=True,
    )
    got = [r.value for r in consumer]
    consumer.close()
    # One key -> one partition -> order kept.
    assert got == sent


def test_topic_auto_creation_is_off(kafka_bootstrap: str) -> None:
    from kafka.admin import KafkaAdminClient

    name = unique_topic("nocreate")
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    consumer.topics()  # metadata request
    assert name not in consumer.topics()
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    assert name not in admin.list_topics()
    admin.close()
