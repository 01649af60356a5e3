"""Helpers for tests on the real Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.settings import Settings


def unique_topic(prefix: str) -> str:
    """A fresh topic name, so tests never see each other's records."""
    return f"test.{prefix}.{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    """Create `name` (auto-creation is off on our broker) and wait until it has a leader."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="peakend-tests")
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = admin.describe_topics([name])
            parts = described[0].get("partitions") or []
            leaders = [p.get("leader_id", p.get("leader", -1)) for p in parts]
            if len(leaders) == partitions and all(leader >= 0 for leader in leaders):
                return name
            time.sleep(0.1)
        raise TimeoutError(f"topic {name} has no leader after 30 s")
    finally:
        admin.close()


def consume(settings: Settings, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    """The first `count` values of `topic`, read from the start by an aiokafka consumer built as
    the sink's is (`Settings.aiokafka_client_options()`: SASL and/or a verifying TLS context), in
    a group of its own. Raises what the client raises when the broker refuses it."""
    async def run() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
            group_id=f"{topic}-{uuid.uuid4().hex[:6]}", enable_auto_commit=False,
            request_timeout_ms=15000, **settings.aiokafka_client_options(),
        )
        got: list[bytes] = []
        try:
            async with asyncio.timeout(timeout):
                await consumer.start()  # a refused client fails here: still stopped below
            async with asyncio.timeout(timeout):
                while len(got) < count:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend(r.value for r in records if r.value is not None)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())
