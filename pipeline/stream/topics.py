"""The pipeline's topics: created by the worker with the partition counts it wants (the broker
has auto-creation off)."""

from __future__ import annotations

import contextlib
import logging
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.settings import Settings
from pipeline.stream.bus_purge import BUS_TOPIC_CONFIGS

log = logging.getLogger(__name__)

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


def internal_topics(settings: Settings) -> list[str]:
    """The topics whose partitions hold the worker's placement: a journey key's partition (or a
    segment's, a customer's, an event id's) is its hash modulo the partition count, and the
    state of that key lives on that partition. The others (the touchpoints, the outputs, the
    dead letters) may have any partition count."""
    external = {settings.topic_touchpoints, settings.topic_dead_letters, settings.topic_journeys,
                settings.topic_metrics, settings.topic_alerts, followups_topic(settings)}
    return [name for name in topic_partitions(settings) if name not in external]


def changelog_topics(settings: Settings) -> set[str]:
    """The state tables' changelogs: compacted, the latest state per key kept."""
    return {changelog_topic(settings, table)
            for table in (*STATE_TABLES, FOLLOWUP_STATE_TABLE, CLAIMS_STATE_TABLE)}


def bus_topics(settings: Settings) -> list[str]:
    """The internal topics that carry records from one stage to the next, read by the worker's
    consumer groups: no time limit, purged below each reading group's committed offsets
    (pipeline/stream/bus_purge.py)."""
    changelogs = changelog_topics(settings)
    return [name for name in internal_topics(settings) if name not in changelogs]


class PartitionCountMismatch(Exception):
    """An internal topic exists with another partition count than the settings give it."""


def check_partition_counts(settings: Settings, counts: dict[str, int]) -> None:
    """Raise `PartitionCountMismatch` (one line) when an internal topic has another partition
    count than `PEAKEND_PARTITIONS` gives it. `counts`: the partition count of each existing
    topic. With more partitions wanted than the topic has, the entry stage and the outputs
    failed on every send ("Unrecognized partition") and nothing moved; with fewer, events were
    placed on other partitions than the state of their journeys, which then split silently.

    >>> s = Settings.from_env({"PEAKEND_PARTITIONS": "8"})
    >>> check_partition_counts(s, {journey_events_topic(s): 8, s.topic_touchpoints: 3})
    >>> try:
    ...     check_partition_counts(s, {journey_events_topic(s): 4})
    ... except PartitionCountMismatch as exc:
    ...     print(str(exc)[:80])
    topic peakend-journey-events has 4 partitions where PEAKEND_PARTITIONS=8 wants 8
    """
    wanted = topic_partitions(settings)
    for name in internal_topics(settings):
        have = counts.get(name)
        if have is not None and have != wanted[name]:
            raise PartitionCountMismatch(
                f"topic {name} has {have} partitions where PEAKEND_PARTITIONS="
                f"{settings.partitions} wants {wanted[name]}: the worker's state is placed by "
                f"partition, so the count cannot change under it; set PEAKEND_PARTITIONS="
                f"{have} again, or start a new application (another PEAKEND_APP_ID) and "
                "backfill its history (docs/streaming.md, 'Partition count')")


def unlimit_bus_topics(admin: KafkaAdminClient, present: list[str]) -> list[str]:
    """Give bus topics made by an earlier version (with the broker's retention) the configs
    `BUS_TOPIC_CONFIGS`; returns the names changed. The purge bounds them instead
    (pipeline/stream/bus_purge.py). A broker that refuses (no AlterConfigs right) gets one
    warning line with the command to run, and the worker starts anyway: the topics keep their
    retention, as before."""
    if not present:
        return []
    wanted = ",".join(f"{k}={v}" for k, v in BUS_TOPIC_CONFIGS.items())
    try:
        # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in present])["topic"]
        # a config not set on the topic is not listed: it has the broker's default (7 days)
        limited = [name for name in present
                   if any(str(described[name].get(key, {}).get("value")) != value
                          for key, value in BUS_TOPIC_CONFIGS.items())]
        if limited:
            # incremental (kafka-python 3's default): the topics' other configs stay as set
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                configs=dict(BUS_TOPIC_CONFIGS))
                                 for name in limited])
            log.warning("bus topics %s had a retention limit: set to none (%s); the worker "
                        "purges what its group committed instead (docs/reliability.md, "
                        "'Input lost to retention')", ", ".join(limited), wanted)
        return limited
    except Exception as exc:  # no AlterConfigs right: the worker still starts
        log.warning("bus topics %s: could not check or remove their retention limit (%s: %s); "
                    "records they hold may be deleted unread if the worker stops for longer; "
                    "run kafka-configs.sh --alter --entity-type topics --entity-name <topic> "
                    "--add-config %s for each", ", ".join(present), type(exc).__name__, exc,
                    wanted)
        return []


def admin_client(settings: Settings, purpose: str = "admin") -> KafkaAdminClient:
    """A Kafka admin client with the settings' credentials, named for what it does."""
    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                            client_id=f"{settings.app_id}-{purpose}",
                            **settings.kafka_client_options())


def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create the missing topics; returns the names created. Waits until each has a leader.
    Raises `PartitionCountMismatch` before creating anything when an internal topic exists with
    another partition count."""
    admin = admin_client(settings)
    try:
        wanted = topic_partitions(settings)
        existing = set(admin.list_topics())
        present = [name for name in internal_topics(settings) if name in existing]
        if present:
            check_partition_counts(settings, {
                # kafka-python 3 names the topic `name`, 2.x `topic`
                topic.get("name", topic.get("topic")): len(topic.get("partitions") or [])
                for topic in admin.describe_topics(present)})
        missing = [name for name in wanted if name not in existing]
        changelogs, bus = changelog_topics(settings), set(bus_topics(settings))
        unlimit_bus_topics(admin, sorted(bus & existing))
        for name in missing:
            # changelogs are compacted, as Faust makes them: the latest state per key is kept
            configs = ({"cleanup.policy": "compact"} if name in changelogs
                       else dict(BUS_TOPIC_CONFIGS) if name in bus else {})
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
