"""The pipeline's topics: created by the worker with the partition counts it wants (the broker
has auto-creation off)."""

from __future__ import annotations

import contextlib
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.settings import Settings


def contributions_topic(settings: Settings) -> str:
    """Internal topic from stage one to the segment stage."""
    return f"{settings.app_id}-contributions"


def topic_partitions(settings: Settings) -> dict[str, int]:
    n = settings.partitions
    return {
        settings.topic_touchpoints: n,
        settings.topic_dead_letters: n,
        settings.topic_journeys: n,
        settings.topic_metrics: n,
        settings.topic_alerts: 1,  # few records; one partition keeps them in order
        contributions_topic(settings): n,
    }


def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create the missing topics; returns the names created. Waits until each has a leader."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-admin",
        **settings.kafka_client_options(),
    )
    try:
        wanted = topic_partitions(settings)
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        for name in missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a second worker raced us
                admin.create_topics([NewTopic(name, wanted[name], 1)])
        deadline = time.monotonic() + timeout_s
        for name in wanted:
            while True:
                parts = admin.describe_topics([name])[0].get("partitions") or []
                leaders = [p.get("leader_id", p.get("leader", -1)) for p in parts]
                if leaders and all(leader >= 0 for leader in leaders):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {name} has no leader after {timeout_s} s")
                time.sleep(0.1)
        return missing
    finally:
        admin.close()
