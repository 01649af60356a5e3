"""The Faust worker: thin agents around the core (pipeline.stream) and the ClickHouse sink.

    cx.touchpoints --entry stage--> <app>-journey-events (batch records), cx.dead-letters
    <app>-journey-events --journeys agent--> cx.journeys, cx.dead-letters, <app>-contributions
    <app>-contributions --segments agent--> cx.metrics, cx.alerts
    <app>-followup-inputs (by customer) --followups agent--> cx.followups
    output topics --ClickHouse sink--> tables

Each agent keeps its core state in a plain Faust table (RocksDB, changelog topic) holding JSON
dicts, never in Faust's windowed tables (docs/design.md 2). Processing is at least once: outputs are
delivered before a batch is acked, and Faust flushes its producer (changelog writes; drained in
full by `PeakendProducer`) before it commits offsets, so state is never behind the committed
offsets, and the stage processors make every re-read harmless (see
pipeline/stream/partition.py). Faust's own exactly_once mode is not used: its transactional path
loses or duplicates table updates after SIGKILL (faust-streaming #323, #517; robinhood #340);
the kill -9 tests in tests/integration prove this mechanism instead.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import faust
import orjson
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline import state_store
from pipeline.core.scoring import ScoringRules
from pipeline.followup_rules import horizon_ms, load_rules
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.settings import Settings
from pipeline.storage.sink import ClickHouseSink, SinkProcess, ddl_connector, server_connector
from pipeline.storage.warehouse import SINK_TIMEOUTS, Warehouse
from pipeline.stream.batches import decode_batch, decode_withdrawals, encode_withdrawals
from pipeline.stream.claims import ClaimsStage, claim_item, claims_partition
from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.entry import EntryStage, Routed, Router
from pipeline.stream.fence import GenerationFence
from pipeline.stream.followups import FollowupStage, event_input
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
from pipeline.stream.partition import NEVER, PartitionProcessor
from pipeline.stream.segments import SegmentStage
from pipeline.stream.topics import (
    CLAIMS_STATE_TABLE,
    FOLLOWUP_STATE_TABLE,
    STATE_TABLES,
    claims_topic,
    contributions_topic,
    followup_inputs_topic,
    followups_topic,
    journey_events_topic,
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


def next_commit_offset(acked: list[int], gap: Any, committed: int | None) -> int | None:
    """Faust's `Consumer._new_offset` with the acked offsets taken as a set: the offset to
    commit for one partition (one past the first run of consecutive done offsets), or None.
    `acked` (sorted, duplicates dropped, the committed run removed) and `gap` (an IntervalTree
    of offsets Faust saw skipped) are updated in place, as Faust's own method does.

    Why: Faust appends the gap's offsets to `acked` without looking at what is already there.
    After a rebalance it seeks to the committed offset C and resets its read offset to C while
    records fetched before the seek still arrive; the first of them, at C+k, opens a gap
    C+1..C+k (inclusive: Faust's `_add_gap` adds `offset_to + 1`) over offsets that are acked
    too. Each duplicate splits Faust's run of consecutive offsets, so each commit (one a
    second) moved the offset by one: a takeover crawled for ~105 s (issue 14). The offsets
    committed are the ones Faust commits; only the duplicates no longer hold them back.

    >>> from intervaltree import IntervalTree
    >>> acked, gap = [5, 6, 7, 8, 9, 10], IntervalTree.from_tuples([(6, 11)])
    >>> next_commit_offset(acked, gap, 5), acked, len(gap)
    (11, [], 0)
    >>> acked = [12, 13, 20, 21]
    >>> next_commit_offset(acked, IntervalTree(), 12), acked
    (14, [20, 21])
    >>> next_commit_offset([30, 31], IntervalTree(), 12) is None  # a hole before the first run
    True
    """
    if not acked:
        return None
    done = set(acked)
    highest = max(done)
    if gap:
        for interval in gap.overlap(0, highest):
            done.update(range(interval.begin, interval.end))
        gap.chop(0, max(done) + 1)
    if committed is not None:
        # offsets below the committed one are done already (a gap or a re-read may add them)
        done = {offset for offset in done if offset >= committed}
    ordered = sorted(done)
    acked[:] = ordered
    # Faust's own test, kept as is (it allows one missing offset after the committed one: its
    # read offset after a seek is the next offset to read, so a single skipped offset, e.g. a
    # transaction marker, is never recorded as a gap).
    if not ordered or (committed and ordered[0] - committed > 1):
        return None
    end = 1
    while end < len(ordered) and ordered[end] == ordered[end - 1] + 1:
        end += 1
    last = ordered[end - 1]
    del acked[:end]
    return last + 1


class PeakendConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a commit offset that duplicate acks cannot hold back
    (see `next_commit_offset`)."""

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        before = set(acked)
        offset = next_commit_offset(acked, self._gap[tp], self._committed_offset[tp])
        # `_acked_index` mirrors `acked` for Faust's `ack()`: forget what left the list.
        self._acked_index[tp].difference_update(before.difference(acked))
        return offset

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        # Our acked topics have no real gaps (no transactions, no compaction): a gap is a
        # record read out of order, and Faust counts its offsets as done. Logged, so that a
        # run whose journeys fall short of replay shows where (issue 20).
        log.warning("consumer: %s[%d] offsets %d-%d taken as a gap (committed %s)",
                    tp.topic, tp.partition, offset_from, offset_to,
                    self._committed_offset.get(tp))
        await super()._add_gap(tp, offset_from, offset_to)


async def flush_until_empty(flush: Callable[[], Awaitable[None]],
                            pending: Callable[[], int]) -> None:
    """Call `flush` until nothing is `pending`.

    Why: Faust's `ProducerBuffer.flush` returns as soon as 0.1 s pass without a message leaving
    its buffer (`flush_atmost`), with messages still in it. Under load that returned before the
    state table's changelog records had left, and Faust committed offsets (it flushes, then
    commits) and handed partitions over on that flush: a worker stopped right after a busy
    stretch left the next owner a changelog without its last writes, and offsets that never
    read those events again (CI's two-workers test: journeys that lost their first events)."""
    while True:
        await flush()
        if not pending():
            return


class PeakendProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer whose `flush` (before every commit, on revocation and on stop)
    leaves nothing in Faust's buffer (see `flush_until_empty`)."""

    async def flush(self) -> None:
        await flush_until_empty(super().flush, lambda: int(self.buffer.size))


class PeakendTransport(faust_aiokafka.Transport):
    Consumer = PeakendConsumer
    Producer = PeakendProducer


def release(consumer: Any, batch: list[Any]) -> None:
    """Forget the events of a batch left un-acked (a rebalance overtook it): their owner reads
    them again from the committed offsets. Faust's revocation waits until every message it
    handed out and tracks as un-acked (`Consumer._unacked_messages`, a WeakSet) is acked or
    garbage; the stream keeps the last event it took (`Stream.current_event`, which Faust's
    `noack_take` reads again after an await, so it cannot be cleared), and that one event kept
    a rebalance waiting for ever (a two-worker test and CI saw it). The one private name is
    checked by tests/unit/stream/test_release.py."""
    unacked = consumer._unacked_messages
    for event in batch:
        message = event.message
        if not message.acked:
            unacked.discard(message)


JOURNEY_BATCH_RECORDS = 4  # batch records the journeys agent takes per batch


def _output_producer(settings: Settings) -> Any:
    """The producer of the worker's outputs: acks from every in-sync replica, like Faust's
    (`producer_acks=-1`), batches up to 1 MiB (BatchDelivery fills them itself)."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0,
        max_batch_size=1024 * 1024, max_request_size=2 * 1024 * 1024,
        **settings.aiokafka_client_options(),
    )


class EntryStats:
    """The entry stage's counts in the worker's metrics."""

    def __init__(self, stats: WorkerMetrics, topic: str) -> None:
        self.stats = stats
        self.topic = topic

    def entry_read(self, routed: Routed) -> None:
        self.stats.events_in.labels(self.topic).inc(routed.records)
        for reason, _ in routed.dead_letters:
            self.stats.dead_letters.labels(reason).inc()
        self.stats.last_event_time.set(time.time())

    def entry_lag(self, partition: int, lag: int) -> None:
        self.stats.consumer_lag.labels(self.topic, str(partition)).set(lag)


def create_app(
    settings: Settings | None = None,
    *,
    warehouse: Callable[[], Warehouse] | None = None,
    metrics: WorkerMetrics | None = None,
    migrate: bool = True,
) -> faust.App:
    s = settings or Settings.from_env()
    core = s.core_config()
    rules = ScoringRules.load(core.journeys.scoring_rules_path)
    followup_rules = load_rules(s.followup_rules)  # checked at start: one-line FollowupRulesError
    followup_horizon = horizon_ms(followup_rules, core.journeys.max_length_ms,
                                  core.journeys.allowed_lateness_ms)
    privacy = PersonalData.from_settings(s)
    stats = metrics or WorkerMetrics.create()
    app = faust.App(
        s.app_id,
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
    )
    # Faust's stubs are loose: wire it through an Any-typed handle.
    fapp: Any = app
    # Before anything touches app.transport (declaring a topic does): our consumer class.
    fapp.transport = PeakendTransport(fapp.conf.broker_consumer, fapp)

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
    # Every partition database of both tables shares one RocksDB memory budget
    # (pipeline/state_store.py: why these options, and the RSS they give).
    state_options = state_store.shared_options()
    journey_table, segment_table = STATE_TABLES
    journey_state = state_store.state_table(fapp, journey_table, s.partitions, state_options)
    segment_state = state_store.state_table(fapp, segment_table, s.partitions, state_options)
    followup_inputs = raw_topic(followup_inputs_topic(s), s.partitions)
    followups_out = raw_topic(followups_topic(s), s.partitions)
    followup_state = state_store.state_table(fapp, FOLLOWUP_STATE_TABLE, s.partitions,
                                             state_options)
    stage_followups: dict[int, FollowupStage] = {}
    # one event_id, one journey across partitions (pipeline/stream/claims.py)
    claims_in = raw_topic(claims_topic(s), s.partitions)
    claim_state = state_store.state_table(fapp, CLAIMS_STATE_TABLE, s.partitions, state_options)
    stage_claims: dict[int, ClaimsStage] = {}

    stage_one: dict[int, PartitionProcessor] = {}
    stage_two: dict[int, SegmentStage] = {}
    # Outputs wait in the outbox and leave coalesced (pipeline/stream/outbox.py): per flush,
    # not per event, into `delivery` (below). No committed offset covers an output not yet
    # delivered: an agent acks a batch's events only after `delivery.deliver()` returned for
    # its outputs (`settled`), and Faust commits acked offsets only.
    outbox = Outbox(s.partitions, followup_rules)
    topic_of = {JOURNEYS: journeys, CONTRIBUTIONS: contributions, METRICS: metric_topic,
                ALERTS: alerts}
    topic_of.update({FOLLOWUP_INPUTS: followup_inputs, FOLLOWUPS: followups_out})
    topic_of[CLAIMS] = claims_in
    # Outputs leave in batches from a producer of their own (pipeline/stream/delivery.py: why),
    # not through Faust's per-record producer buffer; changelog writes stay Faust's.
    delivery = BatchDelivery(
        lambda: _output_producer(s),
        {role: topic.get_topic_name() for role, topic in topic_of.items()})

    def flush_outbox() -> None:
        for stage in stage_two.values():
            outbox.add_segment_output(stage.flush())
        if not outbox:
            return
        drained = outbox.drain()
        delivery.add(drained.records)  # sent by the next `delivery.deliver()`
        for reason, closed in drained.closed.items():
            stats.journeys_closed.labels(reason).inc(closed)
        stats.records_out.labels(s.topic_journeys).inc(drained.counts[JOURNEYS])
        stats.records_out.labels(s.topic_metrics).inc(drained.counts[METRICS])
        stats.records_out.labels(followups_topic(s)).inc(drained.counts[FOLLOWUPS])

    class FlushBeforeCommit(faust.Sensor):
        def on_commit_initiated(self, consumer: Any) -> Any:
            flush_outbox()

    fapp.sensors.add(FlushBeforeCommit())

    async def forget_revoked(_app: Any, revoked: Any, **kwargs: Any) -> None:
        # A partition that moves away (and perhaps comes back) is rebuilt from its table.
        flush_outbox()
        await delivery.deliver()
        for tp in revoked:
            if tp.topic == journey_events.get_topic_name():
                stage_one.pop(tp.partition, None)
            elif tp.topic == contributions.get_topic_name():
                stage_two.pop(tp.partition, None)
            elif tp.topic == followup_inputs.get_topic_name():
                stage_followups.pop(tp.partition, None)
            elif tp.topic == claims_in.get_topic_name():
                stage_claims.pop(tp.partition, None)

    fapp.on_partitions_revoked.connect(forget_revoked)

    # Shared by the three agents: a dropped batch means a rebalance, which re-reads every
    # record of the generation it was fetched in (pipeline/stream/fence.py).
    fence = GenerationFence()

    def rebalance_settled(epoch: int) -> bool:
        """True when no rebalance started since `epoch` (Faust's `rebalancing_count` when a
        batch began). A batch that a rebalance overtook is dropped unacked: its events were
        fetched before the seek to the committed offsets that ends every rebalance, so they
        are read again. (Skipping every batch while `app.rebalancing` is set instead lost
        events: those fetched after that seek but before Faust clears the flag are never read
        again in the same generation.)"""
        return bool(fapp.rebalancing_count == epoch)

    def processor(partition: int) -> PartitionProcessor:
        proc = stage_one.get(partition)
        if proc is None:
            # First event of a partition since start or since it moved here: restore its state
            # and re-send every journey's current output (it may have died with a crash).
            proc = stage_one[partition] = PartitionProcessor(partition, core, rules)
            held = [(k, v) for k, v in journey_state.items() if v.get("p") == partition]
            restored = proc.restore_keys(
                ((k, v["s"]) for k, v in held), max((v.get("w", NEVER) for _, v in held),
                                                   default=NEVER)
            )
            outbox.add_journey_output(partition, restored)
        return proc

    def write_state(table: Any, event: Any, pairs: list[tuple[str, Any]],
                    extra: dict[str, Any]) -> None:
        # Faust routes a table write to the changelog partition of the current event; in a
        # batch that is set by hand to an event of the partition whose keys are written.
        token = _current_event.set(weakref.ref(event))
        try:
            for key, state in pairs:
                if state is None:
                    table.pop(key, None)
                else:
                    table[key] = {"p": event.message.partition, "s": state, **extra}
        finally:
            _current_event.reset(token)

    def journey_batch(records: list[Any]) -> tuple[list[Any], dict[int, Any]]:
        """Process batch records of journey events (pipeline.stream.batches) and hand their
        outputs to the producer; returns the records processed and the last one of each
        partition (for `journey_state_write`). No state is written here: see journey_agent."""
        generation = app.consumer_generation_id
        done: list[Any] = []
        last_of: dict[int, Any] = {}
        since_flush = 0
        for record in records:
            if since_flush >= s.stream_batch_events:
                # Outputs leave per `PEAKEND_STREAM_BATCH_EVENTS` events, not per batch of batch
                # records (hundreds of events each): what one flush holds stays bounded, and
                # so does the delay before the first outputs of a large batch leave.
                flush_outbox()
                since_flush = 0
            message = record.message
            if not fence.admits(message.generation_id, current=generation):
                # Fetched before a rebalance (Faust's own iterator drops these too), or after a
                # batch of its generation was dropped: not processed and not acked; the
                # partition's owner reads it again.
                continue
            done.append(record)
            partition = message.partition
            proc = processor(partition)
            last_of[partition] = record
            withdrawals = decode_withdrawals(record.value)
            if withdrawals is not None:  # from the claims stage: copies that lost their claim
                for key, event_id, digest in withdrawals:
                    outbox.add_journey_output(partition, proc.withdraw(key, event_id, digest))
                continue
            routed_events = decode_batch(record.value)
            since_flush += len(routed_events)
            for routed in routed_events:
                out = proc.process(routed.event, routed.arrival_ms)
                if out.reject is not None:
                    letter = proc.reject_letter(
                        out.reject, routed.event, routed.raw, s.topic_touchpoints,
                        routed.source_offset, routed.source_partition)
                    dead_letters.send_soon(key=None, value=privacy.seal(letter).to_json())
                    stats.dead_letters.labels(letter.reason).inc()
                elif not out.duplicate:
                    wanted = event_input(  # survey answers, outcome events
                        routed.event, core.journeys.ces_5_more_effort)
                    if wanted is not None:
                        outbox.add_followup_input(*wanted)
                if out.claim is not None:
                    event_id = routed.event.event_id
                    outbox.add_claim(claims_partition(event_id, s.partitions), claim_item(
                        event_id, routed.event.journey_key, out.claim, partition,
                        routed.event.occurred_ms, proc.watermark, routed.source_partition,
                        routed.source_offset, routed.raw))
                outbox.add_journey_output(partition, out)
        flush_outbox()
        return done, last_of

    def journey_state_write(last_of: dict[int, Any]) -> None:
        """Write each key the batch changed, once."""
        for partition, event in last_of.items():
            proc = stage_one[partition]
            write_state(journey_state, event, proc.dirty_state(), {"w": proc.watermark})
        stats.journeys_open.set(sum(len(p.tracker) for p in stage_one.values()))
        for partition, event in last_of.items():
            tp = event.message.tp
            stats.consumer_lag.labels(tp.topic, str(partition)).set(
                max(0, app.consumer.highwater(tp) - event.message.offset - 1)
            )

    async def settled(batch: list[Any],
                      process: Callable[[list[Any]], tuple[list[Any], dict[int, Any]]],
                      stages: dict[int, Any],
                      write: Callable[[dict[int, Any]], None]) -> list[Any]:
        """The events of `batch` to ack: processed (`process`: the events done and the last one
        of each partition), their outputs delivered, then the state of each partition written
        (`write`). None when a rebalance runs or ran meanwhile (see rebalance_settled): the
        batch is forgotten, its partitions' processors (`stages`) rebuilt from their table and
        its events read again by their owner; its outputs are re-sent."""
        epoch = fapp.rebalancing_count
        done, last_of = process(batch)
        if not done:
            return []
        await delivery.deliver()  # the outputs (their own producer), then Faust's records
        await fapp.producer.flush()
        if not rebalance_settled(epoch):
            for partition in last_of:
                stages.pop(partition, None)
            # later records of the same generation would be applied after a hole
            fence.drop(event.message.generation_id for event in done)
            return []
        write(last_of)
        return done

    async def run_agent(stream: Any,
                        process: Callable[[list[Any]], tuple[list[Any], dict[int, Any]]],
                        stages: dict[int, Any],
                        write: Callable[[dict[int, Any]], None], take: int) -> None:
        # Batches of un-acked events. Outputs are delivered before the state that implies them
        # is written (the local store is written at once and survives a SIGKILL): a crash in
        # between leaves the old state, the events are read again and everything, retractions
        # included, is derived again. Then the state, then the acks (commits cover acked
        # events only); the last two steps are synchronous, so no commit runs in between.
        async for batch in stream.noack_take(take, s.stream_batch_seconds):
            done = await settled(batch, process, stages, write)
            if len(done) < len(batch):
                kept = {id(event) for event in done}
                release(fapp.consumer, [e for e in batch if id(e) not in kept])
            del batch
            for event in done:
                await stream.ack(event)
            del done

    async def journey_agent(stream: Any) -> None:
        # A few batch records at a time (each up to one entry-stage read): taking as many
        # batch records as events decoded a whole backlog at once (malloc in use peaked at
        # 139 MiB in the worker memory test, and glibc kept the freed memory: RSS +48 MiB).
        await run_agent(stream, journey_batch, stage_one, journey_state_write,
                        JOURNEY_BATCH_RECORDS)

    def admitted(events: list[Any], done: list[Any], last_of: dict[int, Any]
                 ) -> Iterator[tuple[Any, int]]:
        """(event, partition) of each event of a batch the fence admits (see journey_batch),
        each recorded in `done` and as its partition's last in `last_of`."""
        generation = app.consumer_generation_id
        for event in events:
            message = event.message
            if fence.admits(message.generation_id, current=generation):
                done.append(event)
                last_of[message.partition] = event
                yield event, message.partition

    def segment_batch(events: list[Any]) -> tuple[list[Any], dict[int, Any]]:
        """Apply a batch of contributions messages and hand the outputs to the producer;
        returns the messages applied and the last one of each partition (for the state)."""
        done: list[Any] = []
        last_of: dict[int, Any] = {}
        alerted = False
        for event, partition in admitted(events, done, last_of):
            stage = stage_two.get(partition)
            if stage is None:
                stage = stage_two[partition] = SegmentStage(core, sources=s.partitions)
                stage.restore_keys(
                    (k, v["s"]) for k, v in segment_state.items() if v.get("p") == partition
                )
            out = stage.apply(orjson.loads(event.value))
            outbox.add_segment_output(out)
            alerted = alerted or bool(out.alerts)
        flush_outbox()
        if alerted:
            firing: dict[str, int] = {}
            for each in stage_two.values():
                for a in each.detector.firing():
                    firing[a.metric] = firing.get(a.metric, 0) + 1
            for metric in ("nps", "ces", "csat", "negative_end"):
                stats.alerts_firing.labels(metric).set(firing.get(metric, 0))
        return done, last_of

    def segment_state_write(last_of: dict[int, Any]) -> None:
        """Each partition's changed buckets, once per batch: a bucket still to be flushed is
        stored as such, so a crash before its record left re-sends it on restore."""
        for partition, event in last_of.items():
            write_state(segment_state, event, stage_two[partition].dirty_state(), {})

    async def segment_agent(stream: Any) -> None:
        await run_agent(stream, segment_batch, stage_two, segment_state_write,
                        s.stream_batch_events)

    def followup_batch(events: list[Any]) -> tuple[list[Any], dict[int, Any]]:
        """Apply a batch of follow-up inputs (keyed by customer) and hand the cases to the
        producer; returns the inputs applied and the last one of each partition."""
        done: list[Any] = []
        last_of: dict[int, Any] = {}
        by_partition: dict[int, list[Any]] = {}
        for event, partition in admitted(events, done, last_of):
            by_partition.setdefault(partition, []).append(orjson.loads(event.value))
        for partition, inputs in by_partition.items():
            stage = stage_followups.get(partition)
            if stage is None:
                # restore the partition's customers and re-send their cases (a crash may have
                # lost them after the state was written)
                stage = stage_followups[partition] = FollowupStage(followup_rules,
                                                                   followup_horizon)
                held = [(k, v) for k, v in followup_state.items() if v.get("p") == partition]
                outbox.add_cases(stage.restore_keys(((k, v["s"]) for k, v in held),
                                            max((v.get("w", NEVER) for _, v in held),
                                                default=NEVER)))
            outbox.add_cases(stage.apply(inputs))
            for (change, priority), count in stage.transitions.items():
                stats.followup_cases.labels(change, priority).inc(count)
            stage.transitions.clear()
        flush_outbox()
        return done, last_of

    def followup_state_write(last_of: dict[int, Any]) -> None:
        for partition, event in last_of.items():
            stage = stage_followups[partition]
            write_state(followup_state, event, stage.dirty_state(), {"w": stage.watermark})

    async def followup_agent(stream: Any) -> None:
        await run_agent(stream, followup_batch, stage_followups, followup_state_write,
                        s.stream_batch_events)

    def claims_batch(events: list[Any]) -> tuple[list[Any], dict[int, Any]]:
        """Judge a batch of claims records (pipeline/stream/claims.py): withdrawals go back to
        the losing copies' journey partitions, `conflict` letters to dead letters."""
        done: list[Any] = []
        last_of: dict[int, Any] = {}
        for event, partition in admitted(events, done, last_of):
            stage = stage_claims.get(partition)
            if stage is None:
                stage = stage_claims[partition] = ClaimsStage(core, s.topic_touchpoints)
                stage.restore_keys((k, v["s"]) for k, v in claim_state.items()
                           if v.get("p") == partition)
            out = stage.apply(orjson.loads(event.value)["c"])
            for target, items in out.withdrawals.items():
                journey_events.send_soon(key=None, value=encode_withdrawals(items),
                                         partition=target)
            for letter in out.letters:
                dead_letters.send_soon(key=None, value=privacy.seal(letter).to_json())
                stats.dead_letters.labels(letter.reason).inc()
        return done, last_of

    def claims_state_write(last_of: dict[int, Any]) -> None:
        for partition, event in last_of.items():
            write_state(claim_state, event, stage_claims[partition].dirty_state(), {})

    async def claims_agent(stream: Any) -> None:
        await run_agent(stream, claims_batch, stage_claims, claims_state_write,
                        s.stream_batch_events)

    async def flush_idle() -> None:
        flush_outbox()
        await delivery.deliver()

    async def deliver_before_shutdown(_app: Any, **kwargs: Any) -> None:
        flush_outbox()
        await delivery.stop()

    fapp.on_before_shutdown.connect(deliver_before_shutdown)

    # The sink applies the ClickHouse migrations itself (retrying while ClickHouse is away) and
    # inserts only after them: the Kafka stages above never wait for ClickHouse.
    sink = ClickHouseSink(
        s, warehouse or server_connector(s, SINK_TIMEOUTS), stats, migrate=migrate,
        ddl_warehouse=None if warehouse else ddl_connector(s),
    )

    # Its own process (core, event loop) when it talks to a ClickHouse server; embedded chdb can
    # be opened by one process only, so then it stays in this one.
    child = (SinkProcess(stats, migrate=migrate)
             if s.sink_process and s.clickhouse_url and warehouse is None else None)

    async def run_sink() -> None:
        if child is not None:
            await child.run()
        else:
            await sink.run()

    async def serve_metrics() -> None:
        if s.metrics_port:
            stats.serve(s.metrics_port, certfile=s.metrics_tls_certfile,
                        keyfile=s.metrics_tls_keyfile)

    entry = EntryStage(
        Router(topic=s.topic_touchpoints, partitions=s.partitions,
               max_event_bytes=s.max_event_bytes, privacy=privacy),
        bootstrap=s.kafka_bootstrap, group_id=f"{s.app_id}-entry",
        batches_topic=journey_events.get_topic_name(), dead_letters_topic=s.topic_dead_letters,
        client_options=s.aiokafka_client_options(), max_records=s.stream_batch_events,
        metrics=EntryStats(stats, s.topic_touchpoints),
    )

    async def run_entry() -> None:
        await entry.run()

    fapp.agent(journey_events, name="journeys")(journey_agent)
    fapp.task(run_entry)
    fapp.agent(contributions, name="segments")(segment_agent)
    fapp.agent(followup_inputs, name="followups")(followup_agent)
    fapp.agent(claims_in, name="claims")(claims_agent)
    fapp.timer(0.2)(flush_idle)
    fapp.task(run_sink)
    fapp.task(serve_metrics)

    fapp.peakend_sink = sink
    fapp.peakend_metrics = stats
    return app
