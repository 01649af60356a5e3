"""The Faust worker: thin agents around the core (pipeline.stream) and the ClickHouse sink.

    cx.touchpoints --entry stage--> <app>-journey-events (batch records), cx.dead-letters
    <app>-journey-events --journeys agent--> cx.journeys, cx.dead-letters, <app>-contributions
    <app>-contributions --segments agent--> cx.metrics, cx.alerts
    <app>-followup-inputs (by customer) --followups agent--> cx.followups
    output topics --ClickHouse sink--> tables

Each agent keeps its core state in a plain Faust table (RocksDB, changelog topic) holding JSON
dicts, never in Faust's windowed tables (docs/design.md 2). Processing is at least once: outputs are
delivered before a batch is acked, and Faust flushes its producer (changelog writes; drained in
full by `PeakendProducer`, pipeline/stream/faust_private.py) before it commits offsets, so state
is never behind the committed offsets, and the stage processors make every re-read harmless (see
pipeline/stream/partition.py). Faust's own exactly_once mode is not used: its transactional path
loses or duplicates table updates after SIGKILL (faust-streaming #323, #517; robinhood #340);
the kill -9 tests in tests/integration prove this mechanism instead.

This module is wiring only: the Faust app, its topics and tables, the classes of pipeline/stream
(agents.py, agent_loop.py, flush.py, worker.py; docs/streaming.md, "The worker's parts")
instantiated and registered as agents, timers, tasks and signal handlers. Every Faust private
name the worker relies on is in pipeline/stream/faust_private.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import faust

from pipeline import state_store
from pipeline.followup_rules import horizon_ms, load_rules
from pipeline.kafka_fetch import stream_fetch
from pipeline.kafka_metadata import METADATA_MAX_AGE_MS
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings
from pipeline.storage.sink import ClickHouseSink, SinkProcess, ddl_connector, server_connector
from pipeline.storage.warehouse import SINK_TIMEOUTS, Warehouse
from pipeline.stream import faust_private, heap
from pipeline.stream.agent_loop import AgentLoop, AppliedCounter, RebalanceGuard, StageAgent
from pipeline.stream.agents import (
    ClaimsAgent,
    DeadLetters,
    FollowupsAgent,
    JourneysAgent,
    SegmentsAgent,
)
from pipeline.stream.batches import Handoff
from pipeline.stream.bus_purge import BusPurger
from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.entry_process import EntryProcess, build_entry_stage
from pipeline.stream.flush import OutputFlusher
from pipeline.stream.journal import JournalTable, always
from pipeline.stream.lag import consumer_groups
from pipeline.stream.outbox import (
    ALERTS,
    CLAIMS,
    CONTRIBUTIONS,
    FOLLOWUP_INPUTS,
    FOLLOWUPS,
    JOURNEYS,
    METRICS,
    Outbox,
)
from pipeline.stream.segments import is_journaled_key
from pipeline.stream.stage_two import StageRole, StageTwoProcess
from pipeline.stream.state_writer import ChangelogTable, StateDelivery, discard_unconfirmed
from pipeline.stream.topics import (
    CLAIMS_STATE_TABLE,
    FOLLOWUP_STATE_TABLE,
    STATE_TABLES,
    admin_client,
    bus_topics,
    claims_topic,
    contributions_topic,
    followup_inputs_topic,
    followups_topic,
    journey_events_topic,
)
from pipeline.stream.worker import (
    EntryStats,
    FlushBeforeCommit,
    Revocations,
    Worker,
    WorkerTasks,
)

log = logging.getLogger(__name__)


def faust_credentials(settings: Settings) -> Any:
    """SASL and/or TLS for Faust's Kafka clients, from the same settings as every other client."""
    context = settings.kafka_ssl_context()
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _output_producer(settings: Settings) -> Any:
    """The producer of the worker's outputs: acks from every in-sync replica, like Faust's
    (`producer_acks=-1`), batches up to 1 MiB (BatchDelivery fills them itself)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0,
        max_batch_size=1024 * 1024, max_request_size=2 * 1024 * 1024,
        **settings.aiokafka_client_options(),
    )




def create_app(
    settings: Settings | None = None,
    *,
    warehouse: Callable[[], Warehouse] | None = None,
    metrics: WorkerMetrics | None = None,
    migrate: bool = True,
) -> faust.App:
    """The worker's Faust app (see `build_worker`)."""
    return build_worker(settings, warehouse=warehouse, metrics=metrics, migrate=migrate).app


def build_worker(
    settings: Settings | None = None,
    *,
    warehouse: Callable[[], Warehouse] | None = None,
    metrics: WorkerMetrics | None = None,
    migrate: bool = True,
    role: StageRole | None = None,
) -> Worker:
    """The worker's Faust app and its parts. `role`: the agents this app runs (by default the
    worker's own: stage one with stage two as a child, or every agent with
    `PEAKEND_STAGE_TWO_PROCESS=false` or embedded chdb; pipeline/stream/stage_two.py)."""
    s = settings or Settings.from_env()
    if role is None:
        role = StageRole.of(s, embedded=warehouse is not None)
    core = s.core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    followup_rules = load_rules(s.followup_rules)  # checked at start: one-line FollowupRulesError
    followup_horizon = horizon_ms(followup_rules, core.journeys.max_length_ms,
                                  core.journeys.allowed_lateness_ms)
    privacy = PersonalData.from_settings(s)
    stats = metrics or WorkerMetrics.create()
    app = faust.App(
        role.app_id(s),
        broker=[f"kafka://{host}" for host in s.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(s),
        store="rocksdb://",
        datadir=s.data_dir,
        topic_partitions=s.partitions,
        topic_replication_factor=s.kafka_replication_factor,
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        producer_acks=-1,
        # Outputs and changelog writes leave in batches: every produce request costs a round
        # trip and a response to decode, so send fewer, larger ones.
        producer_linger=0.05,
        producer_max_batch_size=256 * 1024,
        # Faust's web server (table routing, stats) is not needed: metrics have their own port.
        web_enabled=False,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=s.web_port,
        table_standby_replicas=0,
        # A worker killed without leaving the group holds its partitions until the broker
        # expires its session: 20 s instead of Faust's 60 s (heartbeats come from Faust's
        # consumer thread every 3 s, so a busy event loop does not expire it).
        broker_session_timeout=20.0,
        consumer_auto_offset_reset="earliest",
        # a topic missing from a rebalance's metadata is seen again within seconds, not 5 min
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )
    # Faust's stubs are loose: wire it through an Any-typed handle.
    fapp: Any = app
    # Before anything touches app.transport (declaring a topic does): our consumer class.
    fapp.transport = faust_private.PeakendTransport(
        fapp.conf.broker_consumer, fapp, fetch=stream_fetch(s.stream_batch_seconds))

    def raw_topic(name: str, partitions: int) -> Any:
        return fapp.topic(
            name, partitions=partitions, key_serializer="raw", value_serializer="raw"
        )

    journey_events = raw_topic(journey_events_topic(s), s.partitions)
    dead_letters = raw_topic(s.topic_dead_letters, s.partitions)
    journeys = raw_topic(s.topic_journeys, s.partitions)
    metric_topic = raw_topic(s.topic_metrics, s.partitions)
    alerts = raw_topic(s.topic_alerts, 1)
    contributions = raw_topic(contributions_topic(s), s.partitions)
    followup_inputs = raw_topic(followup_inputs_topic(s), s.partitions)
    followups_out = raw_topic(followups_topic(s), s.partitions)
    # one event_id, one journey across partitions (pipeline/stream/claims.py)
    claims_in = raw_topic(claims_topic(s), s.partitions)
    # Every partition database of every table shares one RocksDB memory budget
    # (pipeline/state_store.py: why these options, and the RSS they give).
    state_options = state_store.shared_options()

    # Each app declares the tables of its own agents only, each with the changelog topic the
    # worker's one app names (`<app id>-<table>-changelog`), so stage two run as an app of its
    # own (another id: another consumer group) keeps the state the one app wrote.
    def table(name: str) -> Any:
        return state_store.state_table(fapp, name, s.partitions, state_options,
                                       changelog_prefix=s.app_id)

    journey_table, segment_table = STATE_TABLES
    declared = ([journey_table] if role.runs_one else []) + (
        [segment_table, FOLLOWUP_STATE_TABLE, CLAIMS_STATE_TABLE] if role.runs_two else [])

    # Outputs leave in batches from a producer of their own (pipeline/stream/delivery.py: why),
    # not through Faust's per-record producer buffer; so do the state tables' changelog
    # records, once per batch and partition (pipeline/stream/state_writer.py: why).
    faust_tables = {f"state:{t.name}": t for t in map(table, declared)}
    # Before Faust opens them: a database that may hold writes its changelog never confirmed
    # (the worker was killed in between) is rebuilt from the changelog (state_writer's module).
    discard_unconfirmed(faust_tables.values(), s.partitions)
    topic_of = {JOURNEYS: journeys, CONTRIBUTIONS: contributions, METRICS: metric_topic,
                ALERTS: alerts, FOLLOWUP_INPUTS: followup_inputs, FOLLOWUPS: followups_out,
                CLAIMS: claims_in,
                **{output: t.changelog_topic for output, t in faust_tables.items()}}
    delivery = BatchDelivery(
        lambda: _output_producer(s),
        {output: topic.get_topic_name() for output, topic in topic_of.items()})
    outputs = OutputFlusher(Outbox(s.partitions, followup_rules), delivery, stats)
    guard = RebalanceGuard(fapp, lambda message: fapp.consumer.delivered_now(message))
    letters = DeadLetters(dead_letters, privacy, stats)
    # The claims and the segments' bucket members change a key per event or so: their tables
    # are journals, one changelog record per batch and partition (pipeline/stream/journal.py).
    journaled = {CLAIMS_STATE_TABLE: always, segment_table: is_journaled_key}
    state_of = {t.name: (JournalTable(t, delivery, output, faust.types.TP,
                                      journaled=journaled[t.name])
                         if t.name in journaled else ChangelogTable(t, delivery, output,
                                                                    faust.types.TP))
                for output, t in faust_tables.items()}
    deliver_state = StateDelivery(delivery, list(state_of.values()))

    # The entry stage runs in a child process (entry_process.py: why) unless told not to, or
    # with embedded chdb (one process); in this process its events reach stage one without a
    # decode (batches.py).
    entry_child = s.entry_process and warehouse is None
    handoff = None if entry_child else Handoff()

    def loop(agent: StageAgent, take: int, stage: str = "", record: str = "") -> AgentLoop:
        return AgentLoop(
            agent, guard, deliver_outputs=outputs.deliver,
            flush_faust_producer=lambda: fapp.producer.flush(),
            release=lambda batch: faust_private.release(fapp.consumer, batch),
            take=take, within_seconds=s.stream_batch_seconds,
            count_applied=AppliedCounter(stats, stage, record) if stage else None,
            deliver_state=deliver_state)

    agent_of_topic: dict[str, StageAgent] = {}
    journeys_agent = segments_agent = followups_agent = claims_agent = None
    if role.runs_one:
        journeys_agent = JourneysAgent(
            core=core, rules=rules, table=state_of[journey_table], outputs=outputs, guard=guard,
            handoff=handoff,
            dead_letters=letters, source_topic=s.topic_touchpoints, partitions=s.partitions,
            flush_every_events=s.stream_batch_events, stats=stats,
            highwater=lambda tp: int(fapp.consumer.highwater(tp)))
        # A bounded number of batch records at a time for the journeys agent
        # (PEAKEND_STREAM_BATCH_RECORDS, 16): taking as many batch records as events decoded a
        # whole backlog at once (malloc in use peaked at 139 MiB in the worker memory test, and
        # glibc kept the freed memory: RSS +48 MiB). Each batch waits for two acknowledged
        # round trips (its outputs, then its state's changelog): at 4 records a batch the
        # worker waited more than it worked while draining a backlog (docs/streaming.md,
        # eighth round).
        fapp.agent(journey_events, name="journeys")(
            loop(journeys_agent, s.stream_batch_records, "journeys", "event").run)
        agent_of_topic[journey_events.get_topic_name()] = journeys_agent
    if role.runs_two:
        segments_agent = SegmentsAgent(core=core, table=state_of[segment_table], outputs=outputs,
                                       guard=guard, dead_letters=letters, sources=s.partitions,
                                       stats=stats)
        followups_agent = FollowupsAgent(rules=followup_rules, horizon_ms=followup_horizon,
                                         table=state_of[FOLLOWUP_STATE_TABLE], outputs=outputs,
                                         guard=guard, dead_letters=letters, stats=stats)
        claims_agent = ClaimsAgent(core=core, source_topic=s.topic_touchpoints,
                                   table=state_of[CLAIMS_STATE_TABLE],
                                   journey_events=journey_events, dead_letters=letters,
                                   guard=guard)
        fapp.agent(contributions, name="segments")(
            loop(segments_agent, s.stream_batch_events, "segments", "contribution").run)
        fapp.agent(followup_inputs, name="followups")(
            loop(followups_agent, s.stream_batch_events, "followups", "input").run)
        fapp.agent(claims_in, name="claims")(
            loop(claims_agent, s.stream_batch_events, "claims", "claim").run)
        agent_of_topic.update({contributions.get_topic_name(): segments_agent,
                               followup_inputs.get_topic_name(): followups_agent,
                               claims_in.get_topic_name(): claims_agent})

    fapp.sensors.add(FlushBeforeCommit(outputs))
    revocations = Revocations(outputs, agent_of_topic)
    fapp.on_partitions_revoked.connect(revocations.on_revoked)

    # Each app purges the bus topics its own consumer group reads, below what every group
    # that reads them committed (the sink reads the journey events too; bus_purge.py).
    purger = BusPurger(partial(admin_client, s, "bus-purge"), role.app_id(s),
                       [t for t in bus_topics(s) if t in agent_of_topic],
                       other_readers=consumer_groups(s, apart=role is not StageRole.ALL))
    sink = entry = sink_child = stage_two = None
    if role.runs_one:
        # The sink applies the ClickHouse migrations itself (retrying while ClickHouse is away)
        # and inserts only after them: the Kafka stages above never wait for ClickHouse.
        sink = ClickHouseSink(
            s, warehouse or server_connector(s, SINK_TIMEOUTS), stats, migrate=migrate,
            ddl_warehouse=None if warehouse else ddl_connector(s),
        )
        entry_stats = EntryStats(stats, s.topic_touchpoints)
        entry = (EntryProcess(entry_stats.add, entry_stats.entry_lag, entry_stats.entry_expired)
                 if entry_child else build_entry_stage(s, entry_stats, handoff))
        sink_child = (SinkProcess(stats, migrate=migrate)
                      if s.sink_process and s.clickhouse_url and warehouse is None else None)
    if role is StageRole.ONE:
        stage_two = StageTwoProcess(stats, s.data_dir)
    tasks = WorkerTasks(s, outputs=outputs, entry=entry, sink=sink, sink_child=sink_child,
                        stage_two=stage_two, stats=stats, state=deliver_state, bus_purger=purger)
    fapp.on_before_shutdown.connect(tasks.deliver_before_shutdown)
    fapp.timer(0.2)(tasks.flush_idle)
    fapp.timer(heap.TRIM_SECONDS)(tasks.trim_heap)
    fapp.timer(s.bus_purge_seconds, on_leader=True)(tasks.purge_bus)
    fapp.task(tasks.serve_metrics_task)
    if role.runs_one:
        fapp.task(tasks.run_entry)
        fapp.task(tasks.run_sink)
    if stage_two is not None:
        fapp.task(tasks.run_stage_two)

    return Worker(app=app, journeys=journeys_agent, segments=segments_agent,
                  followups=followups_agent, claims=claims_agent, outputs=outputs, tasks=tasks,
                  sink=sink, metrics=stats)
