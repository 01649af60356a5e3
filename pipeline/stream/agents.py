"""The worker's four agents, each a `StageAgent` (pipeline/stream/agent_loop.py): the stage
processors of the partitions it owns, its state table, and what it does with a batch.

- `JourneysAgent`: batch records of `<app>-journey-events` through each partition's
  `PartitionProcessor`, state `journey-state`; journeys, contributions, follow-up inputs and
  claims to the outbox, dead letters through Faust;
- `SegmentsAgent`: `<app>-contributions` through `SegmentStage`, state `segment-state`; metrics
  and alerts to the outbox;
- `FollowupsAgent`: `<app>-followup-inputs` (by customer) through `FollowupStage`, state
  `followup-state`; follow-up cases to the outbox;
- `ClaimsAgent`: `<app>-claims` (by event_id) through `ClaimsStage`, state `claim-state`;
  withdrawals on `<app>-journey-events` and `conflict` dead letters through Faust.

A processor is built from its table the first time its partition is seen (at start, or after
the partition moved here or a dropped batch forgot it), and re-sends what may have died with a
crash. No Faust import: tables are mappings and topics anything with `send_soon`, so the unit
tests (tests/unit/stream/test_agents.py) run these with dicts and lists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

from pipeline.contract.dead_letters import UNREADABLE_REASON, DeadLetter
from pipeline.core.claims import claims_partition
from pipeline.core.config import CoreConfig
from pipeline.core.followups import FollowupRules
from pipeline.core.scoring import ScoringRules
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.stream import messages
from pipeline.stream.agent_loop import (
    AppliedOffsets,
    Processed,
    RebalanceGuard,
    held_state,
    write_state,
)
from pipeline.stream.agent_loop import StateTable as AgentStateTable
from pipeline.stream.batches import (
    Handoff,
    decode_batch,
    decode_withdrawals,
    encode_withdrawals,
)
from pipeline.stream.claims import ClaimsStage, claim_item, decode_claims
from pipeline.stream.flush import OutputFlusher
from pipeline.stream.followups import FollowupStage, event_input
from pipeline.stream.followups import read as read_followup_inputs
from pipeline.stream.partition import TOO_LATE_MEANS, PartitionProcessor
from pipeline.stream.segments import SegmentStage

log = logging.getLogger(__name__)

# a table an agent writes its state to (`ChangelogTable` in the worker, a dict in the tests)
StateTable = AgentStateTable | MutableMapping[str, Any]
ALERT_METRICS = ("nps", "ces", "csat", "negative_end")


class SendsSoon(Protocol):
    """A topic Faust's producer sends to (`faust.Topic.send_soon`: buffered, flushed before every
    commit)."""

    def send_soon(self, *, key: Any, value: Any, partition: int | None = None) -> Any: ...


class DeadLetters:
    """Dead letters the agents find, through Faust's producer: sealed (pipeline/privacy.py) and
    counted in `peakend_dead_letters_total{reason}`."""

    def __init__(self, topic: SendsSoon, privacy: PersonalData, stats: WorkerMetrics) -> None:
        self.topic = topic
        self.privacy = privacy
        self.stats = stats

    def send(self, letter: DeadLetter) -> None:
        self.topic.send_soon(key=None, value=self.privacy.seal(letter).to_json())
        self.stats.dead_letters.labels(letter.reason).inc()

    def unreadable(self, record: Any, exc: BaseException, stage: str) -> None:
        """A record of an internal topic that `stage` cannot read (pipeline/stream/layout.py):
        a dead letter with the record, and the stage goes on (failing, its agent would meet
        the record again at every restart and stop the partition for good)."""
        message = record.message
        error = (f"{stage} cannot read this record of {message.topic}: "
                 f"{type(exc).__name__}: {str(exc)[:500]}; none of it is applied")
        log.warning("%s (partition %d offset %d); it goes to dead letters", error,
                    message.partition, message.offset)
        self.send(DeadLetter.make(
            UNREADABLE_REASON, error, original=record.value, source_topic=message.topic,
            source_partition=message.partition, source_offset=message.offset))


def _too_late(processed: Processed, partition: int, event_id: str, why: str) -> None:
    """A withdrawal that could not undo all of its copy: counted (`peakend_withdrawals_too_late
    _total`) and logged, as results that can differ from replay's."""
    processed.too_late[why] = processed.too_late.get(why, 0) + 1
    log.warning("journeys partition %d: the withdrawal of a copy of event %r came too late "
                "(%s): %s (docs/streaming.md, Known limits)", partition, event_id, why,
                TOO_LATE_MEANS[why])


class JourneysAgent:
    """Stage one: batch records of journey events (pipeline/stream/batches.py) through each
    partition's `PartitionProcessor`; claims' withdrawals of copies that lost their claim."""

    def __init__(self, *, core: CoreConfig, rules: ScoringRules, table: StateTable,
                 outputs: OutputFlusher, guard: RebalanceGuard, dead_letters: DeadLetters,
                 source_topic: str, partitions: int, flush_every_events: int,
                 stats: WorkerMetrics, highwater: Callable[[Any], int],
                 handoff: Handoff | None = None) -> None:
        self.core = core
        self.rules = rules
        # the events of batch records this process's entry stage wrote (batches.Handoff)
        self.handoff = handoff
        self.table = table
        self.outputs = outputs
        self.guard = guard
        self.dead_letters = dead_letters
        self.source_topic = source_topic  # the touchpoints topic dead letters name
        self.partitions = partitions
        # Outputs leave per this many events, not per batch of batch records (hundreds of events
        # each): what one flush holds stays bounded, and so does the delay before the first
        # outputs of a large batch leave.
        self.flush_every_events = flush_every_events
        self.stats = stats
        self.highwater = highwater  # the consumer's high watermark of a topic partition
        self.processors: dict[int, PartitionProcessor] = {}
        self.offsets = AppliedOffsets()  # the batch records applied (see `process`)

    def processor(self, partition: int) -> PartitionProcessor:
        proc = self.processors.get(partition)
        if proc is None:
            # First event of a partition since start or since it moved here: restore its state
            # and re-send every journey's current output (it may have died with a crash).
            proc = self.processors[partition] = PartitionProcessor(
                partition, self.core, self.rules, defer_records=True)
            held = held_state(self.table, partition)
            self.offsets.restored(partition, held.next_offset)
            self.outputs.outbox.add_journey_output(partition,
                                                   proc.restore_keys(held.pairs, held.watermark))
            # one line per partition and start: what a restore found decides every later result
            log.info("journeys partition %d: restored %d keys, stream time %d, from offset %d",
                     partition, len(held.pairs), held.watermark, held.next_offset)
        return proc

    def process(self, batch: list[Any]) -> Processed:
        """Process batch records and hand their outputs to the outbox. No state is written
        here: see `AgentLoop`."""
        processed = Processed()
        outbox = self.outputs.outbox
        since_flush = 0
        for record in self.guard.admitted(batch):
            if since_flush >= self.flush_every_events:
                self._flush()
                since_flush = 0
            partition = processed.take(record, records=0)  # its events are counted below
            proc = self.processor(partition)
            if self.offsets.read_again(partition, record.message.offset):
                # Read again after a crash or a move (the committed offset lags the state): its
                # events are in the restored state, its outputs were delivered before that
                # state was written. Judged again, they would meet a stream time up to a commit
                # interval ahead of them, and in a backlog of days an event applied the first
                # time could get a `late` letter (docs/streaming.md, twentieth round).
                if self.handoff is not None:
                    self.handoff.take(record.value)
                processed.read_again += 1
                continue
            try:
                withdrawals = decode_withdrawals(record.value)
            except (ValueError, RecursionError) as exc:
                self.dead_letters.unreadable(record, exc, "stage one")
                continue
            if withdrawals is not None:  # from the claims stage: copies that lost their claim
                for key, event_id, digest in withdrawals:
                    out = proc.withdraw(key, event_id, digest)
                    if out.too_late is not None:
                        _too_late(processed, partition, event_id, out.too_late)
                    outbox.add_journey_output(partition, out)
                processed.withdrawals += len(withdrawals)
                continue
            routed_events = None if self.handoff is None else self.handoff.take(record.value)
            if routed_events is None:
                try:
                    routed_events = decode_batch(record.value)
                except (ValueError, RecursionError) as exc:
                    self.dead_letters.unreadable(record, exc, "stage one")
                    continue
            since_flush += len(routed_events)
            processed.applied += len(routed_events)
            for routed in routed_events:
                out = proc.process(routed.event, routed.arrival_ms)
                if out.reject is not None:
                    self.dead_letters.send(proc.reject_letter(
                        out.reject, routed.event, routed.raw, self.source_topic,
                        routed.source_offset, routed.source_partition))
                elif not out.duplicate:
                    wanted = event_input(  # survey answers, outcome events
                        routed.event, self.core.journeys.ces_5_more_effort)
                    if wanted is not None:
                        outbox.add_followup_input(*wanted)
                if out.claim is not None:
                    event_id = routed.event.event_id
                    outbox.add_claim(claims_partition(event_id, self.partitions), claim_item(
                        event_id, routed.event.journey_key, out.claim, partition,
                        routed.event.occurred_ms, proc.watermark, routed.source_partition,
                        routed.source_offset, routed.raw))
                outbox.add_journey_output(partition, out)
        self._flush()
        return processed

    def _flush(self) -> None:
        """Send what waits, the records of the journeys changed since the last flush with it
        (`PartitionProcessor.drain_journeys`)."""
        for partition, proc in self.processors.items():
            drained = proc.drain_journeys()
            if drained.journeys:
                self.outputs.outbox.add_journey_output(partition, drained)
        self.outputs.flush()

    def write_state(self, last_of: dict[int, Any]) -> None:
        """Write each key the batch changed, once, with the partition's stream time and the
        offset after its last record applied."""
        for partition, event in last_of.items():
            proc = self.processors[partition]
            write_state(self.table, event, proc.dirty_state(),
                        {"w": proc.watermark, **self.offsets.extra(partition)})
        self.stats.journeys_open.set(sum(len(p.tracker) for p in self.processors.values()))
        for partition, event in last_of.items():
            tp = event.message.tp
            self.stats.consumer_lag.labels(tp.topic, str(partition)).set(
                max(0, self.highwater(tp) - event.message.offset - 1))

    def forget(self, partition: int) -> None:
        self.processors.pop(partition, None)
        self.offsets.forget(partition)


class SegmentsAgent:
    """Stage two: contributions messages through each partition's `SegmentStage`."""

    def __init__(self, *, core: CoreConfig, table: StateTable, outputs: OutputFlusher,
                 guard: RebalanceGuard, dead_letters: DeadLetters, sources: int,
                 stats: WorkerMetrics) -> None:
        self.core = core
        self.table = table
        self.outputs = outputs
        self.guard = guard
        self.dead_letters = dead_letters
        self.sources = sources  # stage-one partitions: a bucket is final once all sent past it
        self.stats = stats
        self.stages: dict[int, SegmentStage] = {}
        # Buckets a stage holds back leave with every flush of the outputs, whoever flushes.
        outputs.before_flush.append(self.move_buckets_to_outbox)

    def move_buckets_to_outbox(self) -> None:
        for stage in self.stages.values():
            self.outputs.outbox.add_segment_output(stage.flush())

    def stage(self, partition: int) -> SegmentStage:
        stage = self.stages.get(partition)
        if stage is None:
            stage = self.stages[partition] = SegmentStage(self.core, sources=self.sources)
            held = held_state(self.table, partition)
            stage.restore_keys(held.pairs)
            log.info("segments partition %d: restored %d keys, %d segments, evicted before %d",
                     partition, len(held.pairs), len(stage.totals), stage.evicted_before)
        return stage

    def process(self, batch: list[Any]) -> Processed:
        processed = Processed()
        alerted = False
        for event in self.guard.admitted(batch):
            stage = self.stage(processed.take(event))  # (its state is written after the batch)
            try:
                message = messages.read(event.value)
            except (ValueError, RecursionError) as exc:
                self.dead_letters.unreadable(event, exc, "the segment stage")
                continue
            out = stage.apply(message)
            self.outputs.outbox.add_segment_output(out)
            alerted = alerted or bool(out.alerts)
        self.outputs.flush()
        if alerted:
            firing: dict[str, int] = {}
            for each in self.stages.values():
                for alert in each.detector.firing():
                    firing[alert.metric] = firing.get(alert.metric, 0) + 1
            for metric in ALERT_METRICS:
                self.stats.alerts_firing.labels(metric).set(firing.get(metric, 0))
        return processed

    def write_state(self, last_of: dict[int, Any]) -> None:
        """Each partition's changed buckets, once per batch: a bucket still to be flushed is
        stored as such, so a crash before its record left re-sends it on restore."""
        for partition, event in last_of.items():
            stage = self.stages[partition]
            write_state(self.table, event, stage.dirty_state(), {}, stage.drain_forgotten())

    def forget(self, partition: int) -> None:
        self.stages.pop(partition, None)


class FollowupsAgent:
    """The follow-up stage: follow-up inputs (batch records keyed by customer) through each
    partition's `FollowupStage`."""

    def __init__(self, *, rules: FollowupRules, horizon_ms: int, table: StateTable,
                 outputs: OutputFlusher, guard: RebalanceGuard, dead_letters: DeadLetters,
                 stats: WorkerMetrics) -> None:
        self.rules = rules
        self.horizon_ms = horizon_ms
        self.table = table
        self.outputs = outputs
        self.guard = guard
        self.dead_letters = dead_letters
        self.stats = stats
        self.stages: dict[int, FollowupStage] = {}

    def process(self, batch: list[Any]) -> Processed:
        processed = Processed()
        by_partition: dict[int, list[Any]] = {}
        for event in self.guard.admitted(batch):
            inputs = by_partition.setdefault(processed.take(event), [])
            try:
                inputs.append(read_followup_inputs(event.value))
            except (ValueError, RecursionError) as exc:
                self.dead_letters.unreadable(event, exc, "the follow-up stage")
        outbox = self.outputs.outbox
        for partition, inputs in by_partition.items():
            stage = self.stages.get(partition)
            if stage is None:
                # restore the partition's customers and re-send their cases (a crash may have
                # lost them after the state was written)
                stage = self.stages[partition] = FollowupStage(self.rules, self.horizon_ms)
                held = held_state(self.table, partition)
                outbox.add_cases(stage.restore_keys(held.pairs, held.watermark))
            if inputs:
                outbox.add_cases(stage.apply(inputs))
            for (change, priority), count in stage.transitions.items():
                self.stats.followup_cases.labels(change, priority).inc(count)
            stage.transitions.clear()
        self.outputs.flush()
        return processed

    def write_state(self, last_of: dict[int, Any]) -> None:
        for partition, event in last_of.items():
            stage = self.stages[partition]
            write_state(self.table, event, stage.dirty_state(), {"w": stage.watermark})

    def forget(self, partition: int) -> None:
        self.stages.pop(partition, None)


class ClaimsAgent:
    """The claims stage (pipeline/stream/claims.py): withdrawals go back to the losing copies'
    journey partitions, `conflict` letters to dead letters. Both through Faust's producer,
    flushed before the state is written."""

    def __init__(self, *, core: CoreConfig, source_topic: str, table: StateTable,
                 journey_events: SendsSoon, dead_letters: DeadLetters,
                 guard: RebalanceGuard) -> None:
        self.core = core
        self.source_topic = source_topic
        self.table = table
        self.journey_events = journey_events
        self.dead_letters = dead_letters
        self.guard = guard
        self.stages: dict[int, ClaimsStage] = {}
        self.offsets = AppliedOffsets()  # the claims records applied (as the journeys agent)

    def stage(self, partition: int) -> ClaimsStage:
        stage = self.stages.get(partition)
        if stage is None:
            stage = self.stages[partition] = ClaimsStage(self.core, self.source_topic)
            held = held_state(self.table, partition)
            stage.restore_keys(held.pairs)
            self.offsets.restored(partition, held.next_offset)
        return stage

    def process(self, batch: list[Any]) -> Processed:
        processed = Processed()
        for event in self.guard.admitted(batch):
            partition = processed.take(event, records=0)
            stage = self.stage(partition)
            if self.offsets.read_again(partition, event.message.offset):
                # Read again after a crash or a move (the committed offset lags the state): its
                # claims are in the restored state, its withdrawals and letters left before that
                # state was written. Judged again, each losing copy's withdrawal and `conflict`
                # letter were sent a second time (and the withdrawal, finding its copy gone,
                # counted as too late: `peakend_withdrawals_too_late_total{why="not_held"}`).
                processed.read_again += 1
                continue
            try:
                claims = decode_claims(event.value)
            except (ValueError, RecursionError) as exc:
                self.dead_letters.unreadable(event, exc, "the claims stage")
                continue
            processed.applied += len(claims)  # a record holds many
            out = stage.apply(claims)
            for target, items in out.withdrawals.items():
                self.journey_events.send_soon(key=None, value=encode_withdrawals(items),
                                              partition=target)
            for letter in out.letters:
                self.dead_letters.send(letter)
        return processed

    def write_state(self, last_of: dict[int, Any]) -> None:
        for partition, event in last_of.items():
            stage = self.stages[partition]
            write_state(self.table, event, stage.dirty_state(),
                        self.offsets.extra(partition), stage.drain_forgotten())

    def forget(self, partition: int) -> None:
        self.stages.pop(partition, None)
        self.offsets.forget(partition)
