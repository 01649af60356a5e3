"""The pipeline's topics: created by the worker with the partition counts it wants (the broker
has auto-creation off)."""

from __future__ import annotations

import contextlib
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.settings import Settings

# The worker's two state tables (Faust tables; RocksDB with a changelog topic each).
STATE_TABLES = ("journey-state", "segment-state")
# The follow-up stage's state table, keyed by customer (pipeline/stream/followups.py).
FOLLOWUP_STATE_TABLE = "followup-state"
FOLLOWUPS = "followups"
# The claims stage's state table, keyed by event_id (pipeline/stream/claims.py).
CLAIMS_STATE_TABLE = "claim-state"


def followups_topic(settings: Settings) -> str:
    """Follow-up cases (docs/followups.md), keyed by case id, read by ticketing consumers
    (`peakend followups`) and the ClickHouse sink: beside the journeys topic, `cx.followups`
    for the default `cx.journeys` (a test's own journeys topic gets its own followups topic).

    >>> followups_topic(Settings.from_env({}))
    'cx.followups'
    """
    prefix, dot, _ = settings.topic_journeys.rpartition(".")
    return f"{prefix}{dot}{FOLLOWUPS}"


def contributions_topic(settings: Settings) -> str:
    """Internal topic from stage one to the segment stage."""
    return f"{settings.app_id}-contributions"


def journey_events_topic(settings: Settings) -> str:
    """Internal topic from the entry stage to stage one: valid events in batch records, on the
    partition of their journey key (pipeline/stream/entry.py)."""
    return f"{settings.app_id}-journey-events"


def followup_inputs_topic(settings: Settings) -> str:
    """Internal topic from stage one to the follow-up stage, keyed by customer id."""
    return f"{settings.app_id}-followup-inputs"


def claims_topic(settings: Settings) -> str:
    """Internal topic from stage one to the claims stage, partitioned by event_id
    (pipeline/stream/claims.py)."""
    return f"{settings.app_id}-claims"


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def topic_partitions(settings: Settings) -> dict[str, int]:
    n = settings.partitions
    return {
        settings.topic_touchpoints: n,
        settings.topic_dead_letters: n,
        settings.topic_journeys: n,
        settings.topic_metrics: n,
        settings.topic_alerts: 1,  # few records; one partition keeps them in order
        journey_events_topic(settings): n,
        contributions_topic(settings): n,
        # Created here too, before Faust starts: a changelog Faust creates while an agent already
        # writes the table can show in the consumer's metadata with another partition count
        # than its source topic for a moment, and Faust's check then kills the agent
        # (PartitionsMismatch: stage two stopped, seen with 12 partitions).
        **{changelog_topic(settings, table): n for table in STATE_TABLES},
        followups_topic(settings): n,
        followup_inputs_topic(settings): n,
        changelog_topic(settings, FOLLOWUP_STATE_TABLE): n,
        claims_topic(settings): n,
        changelog_topic(settings, CLAIMS_STATE_TABLE): n,
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
        changelogs = {changelog_topic(settings, table) for table in STATE_TABLES}
        changelogs.add(changelog_topic(settings, FOLLOWUP_STATE_TABLE))
        changelogs.add(changelog_topic(settings, CLAIMS_STATE_TABLE))
        for name in missing:
            # changelogs are compacted, as Faust makes them: the latest state per key is kept
            configs = {"cleanup.policy": "compact"} if name in changelogs else {}
            with contextlib.suppress(TopicAlreadyExistsError):  # a second worker raced us
                admin.create_topics([NewTopic(name, wanted[name], settings.kafka_replication_factor,
                                             topic_configs=configs)])
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


def topic_tables(settings: Settings) -> dict[str, str]:
    """Which ClickHouse table each topic the sink reads lands in (pipeline/storage/sink.py)."""
    return {
        settings.topic_journeys: "journeys",
        settings.topic_metrics: "metric_buckets",
        settings.topic_alerts: "alerts",
        settings.topic_dead_letters: "dead_letters",
        # valid events, validated and scrubbed once by the entry stage (no parse here)
        journey_events_topic(settings): "touchpoint_events",
        followups_topic(settings): "followups",  # follow-up cases (docs/followups.md)
    }
