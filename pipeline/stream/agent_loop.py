"""How every agent of the worker takes a batch: outputs delivered, then state, then acks.

An agent (pipeline/stream/agents.py: journeys, segments, follow-ups, claims) says what to do
with a batch of Kafka events (`StageAgent.process`) and how to write the state of the
partitions it touched (`StageAgent.write_state`); `AgentLoop` runs the order that makes
at-least-once delivery exact (docs/streaming.md, "Exact results with at-least-once delivery"):

1. process the batch (the events the fence admits; outputs go to the outbox);
2. deliver the outputs (their own producer) and flush Faust's producer (dead letters, the
   claims stage's withdrawals);
3. if a rebalance started meanwhile, drop the batch: no state written, nothing acked, its
   partitions' processors rebuilt from their table, the rest of its consumer generation fenced
   (pipeline/stream/fence.py), its events released from Faust's un-acked set;
4. otherwise write each touched partition's state once (its local database at once, its
   changelog records queued: pipeline/stream/state_writer.py), wait until the changelog records
   are delivered, and ack the events in offset order, even if a rebalance started meanwhile
   (the state is in the changelog before the acks, and the revocation waits for them).

A commit covers acked events only, so none covers a state write not yet in the changelog.
No Faust import here: the loop is driven by a fake stream in tests/unit/stream/test_agent_loop.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from pipeline.observability import WorkerMetrics
from pipeline.stream.faust_private import current_event_of
from pipeline.stream.fence import GenerationFence
from pipeline.stream.partition import NEVER


@dataclass(slots=True)
class Processed:
    """The events of a batch an agent applied, in order, the last one of each partition (the
    event whose partition a state write goes to), and how many input records they held (what
    `peakend_stage_records_applied_total` counts once the batch's state is written)."""

    done: list[Any] = field(default_factory=list)
    last_of: dict[int, Any] = field(default_factory=dict)
    applied: int = 0  # input records applied: one per event, or what a batch record held
    withdrawals: int = 0  # the journeys agent: withdrawals of copies that lost their claim
    # the journeys agent: of them, those too late to undo all of their copy, by why
    # (`PartitionProcessor.withdraw`: not_held, final_bucket)
    too_late: dict[str, int] = field(default_factory=dict)
    read_again: int = 0  # the journeys agent: records read again whose state was written already

    def take(self, event: Any, records: int = 1) -> int:
        """Record `event` as applied, holding `records` input records (0 when the agent adds
        them to `applied` itself once it has decoded the event); returns its partition."""
        partition: int = event.message.partition
        self.done.append(event)
        self.last_of[partition] = event
        self.applied += records
        return partition


class AppliedCounter:
    """An agent's `peakend_stage_records_applied_total{stage, record}`: the records of each batch
    whose state was written (`AgentLoop.count_applied`), and the journeys agent's withdrawals
    under `record="withdrawal"`. The stage's series exists (at 0) from the start."""

    def __init__(self, stats: WorkerMetrics, stage: str, record: str) -> None:
        self.stats = stats
        self.stage = stage
        self.records = stats.stage_records_applied.labels(stage, record)

    def __call__(self, processed: Processed) -> None:
        self.records.inc(processed.applied)
        if processed.read_again:
            self.stats.stage_records_read_again.labels(self.stage).inc(processed.read_again)
        if processed.withdrawals:
            self.stats.stage_records_applied.labels(self.stage, "withdrawal").inc(
                processed.withdrawals)
        for why, count in processed.too_late.items():
            self.stats.withdrawals_too_late.labels(why).inc(count)


class StageAgent(Protocol):
    """What one agent does with its batches (see the module docstring)."""

    def process(self, batch: list[Any]) -> Processed: ...

    def write_state(self, last_of: dict[int, Any]) -> None: ...

    def forget(self, partition: int) -> None:
        """Drop the partition's processor: it is rebuilt from the table when next seen."""


class ConsumerGroupView(Protocol):
    """What the guard reads of Faust's app (both are public attributes of `faust.App`)."""

    rebalancing_count: int  # moves when a rebalance starts
    consumer_generation_id: int  # the consumer group generation the consumer is in now


class RebalanceGuard:
    """The rebalance and generation bookkeeping every agent shares: which fetched events may be
    applied (`admitted`), whether a rebalance overtook a batch (`settled`), and the fence a
    dropped batch leaves (`drop`). One per worker: a dropped batch means a rebalance, which
    re-reads every record of the generation it was fetched in."""

    def __init__(self, group: ConsumerGroupView,
                 delivered_now: Callable[[Any], bool] | None = None) -> None:
        self.group = group
        self.fence = GenerationFence()
        # the consumer's word on whether a record was delivered in its partition's current
        # reading (`PeakendConsumer.delivered_now`); None: every record was
        self.delivered_now = delivered_now

    def epoch(self) -> int:
        return int(self.group.rebalancing_count)

    def settled(self, epoch: int) -> bool:
        """True when no rebalance started since `epoch` (when a batch began). A batch that a
        rebalance overtook is dropped unacked: its events were fetched before the seek to the
        committed offsets that ends every rebalance, so they are read again. (Skipping every
        batch while `app.rebalancing` is set instead lost events: those fetched after that seek
        but before Faust clears the flag are never read again in the same generation.)"""
        return self.epoch() == epoch

    def admitted(self, events: Iterable[Any]) -> Iterator[Any]:
        """The events that may be applied now: fetched in the current generation, not fenced,
        and delivered in their partition's current reading. The others (fetched before a
        rebalance, which Faust's own iterator drops too, after a batch of their generation was
        dropped, or before their reading was rewound) are neither applied nor acked; their
        partition's owner reads them again."""
        generation = self.group.consumer_generation_id
        delivered_now = self.delivered_now
        for event in events:
            if (self.fence.admits(event.message.generation_id, current=generation)
                    and (delivered_now is None or delivered_now(event.message))):
                yield event

    def drop(self, events: Iterable[Any]) -> None:
        """A batch of `events` was dropped: later records of its generation would be applied
        after a hole."""
        self.fence.drop(event.message.generation_id for event in events)


class AgentLoop:
    """Runs one agent over a Faust stream (see the module docstring for the order)."""

    def __init__(self, agent: StageAgent, guard: RebalanceGuard, *,
                 deliver_outputs: Callable[[], Awaitable[None]],
                 flush_faust_producer: Callable[[], Awaitable[None]],
                 release: Callable[[list[Any]], None],
                 take: int, within_seconds: float,
                 count_applied: Callable[[Processed], None] | None = None,
                 deliver_state: Callable[[], Awaitable[None]] | None = None) -> None:
        self.agent = agent
        self.guard = guard
        self.deliver_outputs = deliver_outputs
        self.flush_faust_producer = flush_faust_producer
        self.release = release  # forget un-acked events in Faust's bookkeeping
        self.take = take
        self.within_seconds = within_seconds
        # told what a batch applied once its state is written (the worker's progress metric)
        self.count_applied = count_applied
        # the changelog records of the state written, delivered before the acks (None: the
        # state tables are plain mappings, as in the unit tests, written at once)
        self.deliver_state = deliver_state

    async def settle(self, batch: list[Any]) -> list[Any]:
        """The events of `batch` to ack: processed, their outputs delivered, then the state of
        each partition written. Empty when a rebalance runs or ran meanwhile: the batch is
        forgotten, its partitions' processors rebuilt from their table and its events read
        again by their owner; its outputs are re-sent."""
        epoch = self.guard.epoch()
        processed = self.agent.process(batch)
        if not processed.done:
            return []
        await self.deliver_outputs()  # the outputs (their own producer), then Faust's records
        await self.flush_faust_producer()
        if not self.guard.settled(epoch):
            return self.drop(processed)
        self.agent.write_state(processed.last_of)
        if self.deliver_state is not None:
            # The batch is acked even if a rebalance started meanwhile: its state is in the
            # changelog by now, and Faust's revocation waits for these acks (or releases) before
            # the partitions move, so the next owner restores this state. Dropping it instead
            # needs the events read again, and a partition without a committed offset is not
            # sought back: with no later record to reveal the hole, they never were (a
            # two-worker test stalled that way).
            await self.deliver_state()
        if self.count_applied is not None:
            self.count_applied(processed)
        return processed.done

    def drop(self, processed: Processed) -> list[Any]:
        """Forget a batch a rebalance overtook: its partitions' processors are rebuilt from
        their table, the rest of its generation is fenced; nothing to ack."""
        for partition in processed.last_of:
            self.agent.forget(partition)
        self.guard.drop(processed.done)
        return []

    async def run(self, stream: Any) -> None:
        """The agent: batches of un-acked events (Faust's `Stream.noack_take`). Outputs are
        delivered before the state that implies them is written (the local store is written at
        once and survives a SIGKILL): a crash in between leaves the old state, the events are
        read again and everything, retractions included, is derived again. Then the state, then
        the acks (commits cover acked events only)."""
        async for batch in stream.noack_take(self.take, self.within_seconds):
            done = await self.settle(batch)
            if len(done) < len(batch):
                kept = {id(event) for event in done}
                self.release([event for event in batch if id(event) not in kept])
            del batch
            for event in done:
                await stream.ack(event)
            del done


class StateTable(Protocol):
    """What the agents read of a state table: one partition's (key, value)s, at its restore.
    The worker's tables (`ChangelogTable`, pipeline/stream/state_writer.py) are also written in
    batches (`write_pairs`); a plain mapping (the unit tests) is read whole and written key by
    key."""

    def partition_items(self, partition: int) -> Iterable[tuple[str, Any]]: ...


def write_state(table: StateTable | MutableMapping[str, Any], event: Any,
                pairs: list[tuple[str, Any]], extra: dict[str, Any],
                forgotten: list[str] | None = None) -> None:
    """Write a partition's changed keys (`pairs`: key, state or None to delete) to its state
    table, each as `{"p": partition, "s": state, **extra}`: in one batch when the table takes
    one (`write_pairs`), else key by key to a mapping. Faust routes a mapping write to the store
    and changelog partition of the current event; in a batch that is set to `event`, an event
    of the partition whose keys are written.

    `forgotten`: keys the state forgot by time, before `pairs` (a key forgotten and written
    again in one batch is alive): a journal forgets them without writing a removal
    (`JournalTable.forget_keys`: the state forgets them again on restore); any other table
    removes them."""
    if forgotten:
        forget_keys = getattr(table, "forget_keys", None)
        if forget_keys is not None:
            forget_keys(event.message.partition, forgotten)
        else:
            pairs = [(key, None) for key in forgotten] + pairs
    write_pairs = getattr(table, "write_pairs", None)
    if write_pairs is not None:
        write_pairs(event.message.partition, pairs, extra)
        return
    assert isinstance(table, MutableMapping)
    with current_event_of(event):
        for key, state in pairs:
            if state is None:
                table.pop(key, None)
            else:
                table[key] = {"p": event.message.partition, "s": state, **extra}


class HeldState(NamedTuple):
    """What a state table holds for one partition (`held_state`)."""

    pairs: list[tuple[str, Any]]  # (key, state)
    watermark: int  # the largest stream time stored beside them (`"w"`; NEVER when none is)
    # the largest input offset stored beside them (`"o"`: the offset after the last record
    # whose state a write holds; 0 when none is): records before it are in the state already
    next_offset: int


class AppliedOffsets:
    """Per input partition, the offset after the last record an agent applied: stored beside
    every key the agent writes (`"o"`, `extra`), restored from `HeldState.next_offset`, so that
    the records a restart or a partition move reads again below it (the committed offset lags
    the state) are passed over, not judged again (docs/streaming.md, Exact results, point 3).
    The journeys agent and the claims agent keep one each."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def restored(self, partition: int, next_offset: int) -> None:
        self._next[partition] = next_offset

    def read_again(self, partition: int, offset: int) -> bool:
        """Whether the record at `offset` is in the restored state already; if not, it is
        the partition's last record applied from now on."""
        if offset < self._next[partition]:
            return True
        self._next[partition] = offset + 1
        return False

    def extra(self, partition: int) -> dict[str, Any]:
        """What to store beside the partition's keys."""
        return {"o": self._next[partition]}

    def forget(self, partition: int) -> None:
        self._next.pop(partition, None)


def held_state(table: StateTable | MutableMapping[str, Any], partition: int) -> HeldState:
    """The (key, state) pairs a state table holds for `partition`, and the largest stream time
    and input offset stored with them."""
    items = (table.items() if isinstance(table, MutableMapping)
             else table.partition_items(partition))
    held = [(key, value) for key, value in items if value.get("p") == partition]
    watermark = max((value.get("w", NEVER) for _, value in held), default=NEVER)
    next_offset = max((value.get("o", 0) for _, value in held), default=0)
    return HeldState([(key, value["s"]) for key, value in held], watermark, next_offset)
