"""Helpers for tests on the real Kafka broker."""

from __future__ import annotations

import contextlib
import time
import uuid

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError


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
