"""Every place the worker reaches into Faust below its public API, in one module.

Each name here is private to faust-streaming (a leading underscore, or behaviour its docs do not
promise) and may change in any release. `tests/unit/stream/test_faust_private.py` checks each
against the installed faust-streaming and fails when one is renamed, retyped or behaves
differently; nothing else in `pipeline/` may use a Faust private name.

- `faust.streams._current_event` (`current_event_of`): a table write goes to the store and
  changelog partition of the current event; an agent writes a batch's state after the batch, so
  it names that event itself;
- `Consumer._new_offset`, `._acked`, `._acked_index`, `._gap`, `._committed_offset`
  (`PeakendConsumer`): duplicate acks held each commit back by one offset (`next_commit_offset`);
  `Consumer.getmany` (gated: each partition's records in offset order, no holes),
  `perform_seek` and `seek_to_committed` (the gate starts where that seek found the committed
  offsets), `_add_gap` (a gap is never counted as done on our topics) and the fetch loop's
  `callback` (wrapped: a delivered record the loop did not hand on is read again), `ack` and
  `_waiting_for_ack` (a record of an ended generation is not counted as done):
  `pipeline/stream/offset_gate.py` (issue 20);
- `Consumer._unacked_messages` (`release`): a dropped batch's events must stop holding Faust's
  revocation;
- `ProducerBuffer.flush_atmost` giving up after 0.1 s, a behaviour (`PeakendProducer`): a flush
  before a commit must leave nothing buffered (`flush_until_empty`);
- `Table._new_store_by_url` (`StoreHookTable`): the RocksDB options of each store Faust creates
  for a table (pipeline/state_store.py); `Collection._changelog_topic_name`: a table's
  changelog topic named after the deployment, not the Faust app's id (stage two in an app of
  its own keeps the worker's changelogs);
- `rocksdb.Store._db_for_partition` (`partition_db`): the RocksDB database of one partition of a
  table, which the worker writes a batch's state to in one `WriteBatch`, its changelog records
  sent in batches beside the outputs (pipeline/stream/state_writer.py: why);
- `Consumer._new_consumer_thread` and `AIOKafkaConsumerThread._create_worker_consumer`
  (`PeakendConsumerThread`), with aiokafka's `AIOKafkaConsumer._fetch_min_bytes` and
  `._fetch_max_wait_ms`: Faust builds the agents' aiokafka consumer with no way to ask for a
  fuller fetch (pipeline/kafka_fetch.py), so the transport's `fetch` is set on it before it
  starts;
- `Recovery._recovery_started_at` and `._active_events_received_at` (`recovery_progress`),
  with `Consumer._read_offset`, `._active_partitions` and `._paused_partitions` in its log
  line: a changelog partition a table recovery reads nothing of is read again
  (pipeline/stream/recovery_watch.py);
- `rocksdb.Store._visible_items`, `._decode_key`, `._decode_value` (`partition_items`): one
  partition's (key, value) pairs, decoded by the table's codecs, without the offset entry: a
  restore reads the partition it restores (`table.items()` reads every active partition).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import faust
from aiokafka.errors import IllegalStateError
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.futures import notify

from pipeline.kafka_fetch import FetchSize
from pipeline.stream.offset_gate import OffsetGate, Verdict
from pipeline.stream.recovery_watch import RecoveryProgress, RecoveryWatch

__all__ = [
    "PeakendConsumer",
    "PeakendConsumerThread",
    "PeakendProducer",
    "PeakendTransport",
    "StoreHookTable",
    "current_event_of",
    "flush_until_empty",
    "next_commit_offset",
    "partition_db",
    "partition_items",
    "release",
]


@contextmanager
def current_event_of(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event while the block runs: table writes inside go to the
    RocksDB database and changelog partition of `event.message.partition` (Faust's
    `Table.partition_for_key` and its RocksDB store's `_set` read `faust.streams.current_event()`,
    which only a stream sets, to the event it just yielded)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def next_commit_offset(acked: list[int], gap: Any, committed: int | None,
                       floor: int | None = None) -> int | None:
    """Faust's `Consumer._new_offset` with the acked offsets taken as a set: the offset to
    commit for one partition (one past the first run of consecutive done offsets), or None.
    `acked` (sorted, duplicates dropped, the committed run removed) and `gap` (an IntervalTree
    of offsets Faust saw skipped) are updated in place, as Faust's own method does. `floor`:
    where the first run must start when there is no committed offset (the partition's first
    offset, pipeline/stream/offset_gate.py); None with no committed offset commits nothing.

    Why: Faust appends the gap's offsets to `acked` without looking at what is already there.
    After a rebalance it seeks to the committed offset C and resets its read offset to C while
    records fetched before the seek still arrive; the first of them, at C+k, opens a gap
    C+1..C+k (inclusive: Faust's `_add_gap` adds `offset_to + 1`) over offsets that are acked
    too. Each duplicate splits Faust's run of consecutive offsets, so each commit (one a
    second) moved the offset by one: a takeover crawled for ~105 s (issue 14).
    And the run must start at the committed offset (or the floor) exactly: Faust's own test
    (`if committed and acked[0] - committed > 1`) is false with no committed offset yet and at
    0, and lets one offset slip after it; either way offsets no agent acked were committed over
    and never read again (issue 20). Our acked topics have contiguous offsets (no transaction
    markers, no compaction), so no slack is needed.

    >>> from intervaltree import IntervalTree
    >>> acked, gap = [5, 6, 7, 8, 9, 10], IntervalTree.from_tuples([(6, 11)])
    >>> next_commit_offset(acked, gap, 5), acked, len(gap)
    (11, [], 0)
    >>> acked = [12, 13, 20, 21]
    >>> next_commit_offset(acked, IntervalTree(), 12), acked
    (14, [20, 21])
    >>> next_commit_offset([30, 31], IntervalTree(), 12) is None  # a hole before the first run
    True
    >>> next_commit_offset([13, 14], IntervalTree(), 12) is None  # one offset is a hole too
    True
    >>> next_commit_offset([2, 3], IntervalTree(), None, floor=0) is None  # 0 and 1 unacked
    True
    >>> next_commit_offset([0, 1, 3], IntervalTree(), None, floor=0)
    2
    >>> next_commit_offset([0, 1], IntervalTree(), None) is None  # where it starts is unknown
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
    start = committed if committed is not None else floor
    if start is not None:
        # offsets below the start are done already (a gap or a re-read may add them)
        done = {offset for offset in done if offset >= start}
    ordered = sorted(done)
    acked[:] = ordered
    if not ordered or start is None or ordered[0] != start:
        return None
    end = 1
    while end < len(ordered) and ordered[end] == ordered[end - 1] + 1:
        end += 1
    last = ordered[end - 1]
    del acked[:end]
    return last + 1


log = logging.getLogger(__name__)
_T = TypeVar("_T")


def recovery_progress(app: Any) -> RecoveryProgress | None:
    """Faust's active table recovery, None when none runs: its start
    (`Recovery._recovery_started_at`), what each changelog partition has left to read
    (`active_remaining`), when its last record came (`_active_events_received_at`, which
    `_slurp_changelogs` stamps per record) and the last offset applied (`active_offsets`)."""
    recovery = app.tables.recovery
    started = recovery._recovery_started_at
    if not recovery.in_recovery or started is None:
        return None
    remaining = {tp: left for tp, left in recovery.active_remaining().items() if left > 0}
    return RecoveryProgress(started, remaining, dict(recovery._active_events_received_at),
                            {tp: recovery.active_offsets[tp] for tp in remaining})

# The answer of the seek to the committed offsets that the current task's `perform_seek` is
# running (`PeakendConsumer.seek_to_committed` fills it): two seeks may overlap, one begun by
# the recovery and one by Faust's fetch loop, each in its own task.
_SOUGHT: ContextVar[dict[Any, int | None] | None] = ContextVar("peakend_sought", default=None)


class CommittedOffsets(dict[Any, int | None]):
    """Faust's copy of the committed offsets (`Consumer._committed_offset`), which never moves
    back while a partition stays assigned (Faust drops a partition's entry when it is revoked).

    Two seeks to the committed offsets can overlap (see `PeakendConsumer.perform_seek`); the
    one that asked the broker first may write its older answer last, and a committed offset
    that moved back holds every later commit of the partition (`next_commit_offset` starts the
    run at it, and the acked offsets start further on).

    >>> offsets = CommittedOffsets()
    >>> offsets["p0"] = 9; offsets.update({"p0": 4, "p1": None}); offsets["p0"], offsets["p1"]
    (9, None)
    >>> offsets.update({"p1": 3}); offsets.pop("p0"); offsets["p0"] = 2; dict(offsets)
    9
    {'p1': 3, 'p0': 2}
    """

    def __missing__(self, tp: Any) -> None:  # Faust's was defaultdict(lambda: None)
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        held = self.get(tp)
        if held is not None and (offset is None or offset < held):
            return
        super().__setitem__(tp, offset)

    def update(self, *others: Any, **more: Any) -> None:
        for tp, offset in dict(*others, **more).items():
            self[tp] = offset


class PeakendConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose agents receive each partition's records in offset order
    without holes (`OffsetGate`, pipeline/stream/offset_gate.py) and whose commits never cover
    an offset no agent acked, nor let duplicate acks hold them back (`next_commit_offset`)."""

    # how long the lookup of a partition's first offset may take before its records wait
    LOOK_UP_SECONDS = 10.0
    # The pause before re-reading a record held while its partition's first offset is unknown:
    # paces the lookups when the broker refuses them at once.
    HOLD_SECONDS = 0.5
    # when `getmany` may look up again the first offsets that the last lookup did not get
    _first_offsets_retry_at = 0.0
    # when `getmany` next looks for partitions whose reading is stuck (once a second)
    _stall_check_at = 0.0
    # the last record Faust's fetch loop handed to the agents' channels (`_handing_on`); only
    # checked once the consumer's callback is wrapped (`_tracks_hand_on`)
    _handed_on: Any = None
    _tracks_hand_on = False

    def _new_consumer_thread(self) -> Any:
        """The thread that runs the aiokafka consumer: ours fetches fuller (below)."""
        return PeakendConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._committed_offset = CommittedOffsets()
        self.callback = self._handing_on(self.callback)
        self._watch_channel_clears(self.app.flow_control)

    def _watch_channel_clears(self, flow_control: Any) -> None:
        """Rewind the readings whenever Faust empties the agents' channels.

        Faust's `FlowControlEvent.resume()` clears every channel queue, and the recovery calls
        it right after its seek to the committed offsets, with the consumer's flow already
        running (it was resumed to read the changelogs) and the stream partitions just resumed:
        the records the gate delivered in between were thrown away. A loop run of the
        two-worker test lost journey-events offsets 2-10 of a partition that way: the gate had
        moved past them, so nothing read them again, and the partition's commits stuck. After
        a clear each reading goes back to the committed offset (everything before it is
        applied; records the agents had already taken come again, which they absorb as
        duplicates) and `getmany` seeks the partition there."""

        clear = flow_control.clear

        def clear_and_rewind() -> None:
            clear()
            self._channels_cleared()

        flow_control.clear = clear_and_rewind

    def _channels_cleared(self) -> None:
        gate = self.offset_gate
        now = time.monotonic()
        tp: Any
        for tp in list(gate.partitions):
            start = self._committed_offset.get(tp)
            if start is None:
                start = gate.commit_floor(tp)
            if start is not None:
                gate.rewind(tp, start, now=now)

    def _handing_on(self, callback: Callable[[Any], Awaitable[None]]
                    ) -> Callable[[Any], Awaitable[None]]:
        """Faust's callback (the conductor, which puts a record on its agents' channels),
        noting each record it finished with: `getmany` then knows whether a record its gate
        delivered reached the agents (`_not_handed_on`)."""
        self._tracks_hand_on = True

        async def hand_on(message: Any) -> None:
            await callback(message)
            self._handed_on = message

        return hand_on

    def _own(self, name: str, make: Callable[[], _T]) -> _T:
        """An attribute of ours, made at first use: Faust builds the consumer (and the tests
        build it with `__new__`), so `__init__` is not where it can be counted on."""
        value: _T | None = self.__dict__.get(name)
        if value is None:
            value = self.__dict__[name] = make()
        return value

    @property
    def offset_gate(self) -> OffsetGate:
        return self._own("_peakend_offset_gate", OffsetGate)

    @property
    def _stamps(self) -> WeakKeyDictionary[Any, int]:
        """The reading's epoch each delivered record was delivered under (`delivered_now`)."""
        return self._own("_peakend_stamps", WeakKeyDictionary[Any, int])

    def _deliver(self, tp: Any, message: Any) -> Any:
        self._stamps[message] = self.offset_gate.partitions[tp].epoch
        return message

    def delivered_now(self, message: Any) -> bool:
        """May the agents apply `message`? A record of an agent topic only when the gate
        delivered it in its partition's current reading and epoch (`OffsetGate.epoch`): after
        a rewind the reading delivers it, or records before it, again, and a copy delivered
        before the rewind (still held by Faust's stream, or in an agent's buffer) applied now
        would come ahead of records it follows. Such a copy is neither applied nor acked."""
        if not self._gated(message.tp):
            return True
        stamp = self._stamps.get(message)
        return stamp is not None and stamp == self.offset_gate.epoch(message.tp)

    def _gated(self, tp: Any) -> bool:
        """The partitions of the topics the agents ack (all internal, see offset_gate.py)."""
        return bool(self.app.topics.acks_enabled_for(tp.topic))

    def ack(self, message: Any) -> bool:
        """Faust's ack, except for a record of an agent topic fetched in another generation
        than the current one: it is only forgotten (no longer un-acked, so no revocation waits
        for it), not counted as done. Faust's stream acks every record it skips, and it skips
        those whose generation has ended (and any taken while its flow control is suspended):
        such a record is read again from the committed offsets by the new reading, and its
        early ack let a commit cover it before the agents applied it; if the partition then
        moved, its next owner started past it. The agents never ack such a record themselves
        (they refuse it), and an ack of theirs that a rebalance overtook only means the record
        is read again, which they absorb."""
        if (not message.acked and self._gated(message.tp)
                and message.generation_id != self.app.consumer_generation_id):
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
            return False
        return bool(super().ack(message))

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        before = set(acked)
        offset = next_commit_offset(acked, self._gap[tp], self._committed_offset[tp],
                                    self.offset_gate.commit_floor(tp))
        # `_acked_index` mirrors `acked` for Faust's `ack()`: forget what left the list.
        self._acked_index[tp].difference_update(before.difference(acked))
        return offset

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek to the committed offsets; `perform_seek` resets the readings from its
        answer (whose offsets are None where the group never committed, typing aside)."""
        committed = await super().seek_to_committed()
        sought = _SOUGHT.get()
        if sought is not None:
            sought.update(committed)
        return committed

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets (the end of every rebalance, and while the
        flow is stopped), then each gated partition's gate starts there.

        The readings start where that seek found each partition's committed offset. The seek
        asks the broker partition by partition, and another seek may overlap it (the
        recovery's and the one Faust's fetch loop makes while the flow is stopped). A seek
        during which the group's generation moved on answers for an ended assignment: it
        resets nothing. The current generation's own seek sets its readings, before or after
        it (a loop run: a seek begun in generation 1 ended after generation 2's and stamped
        partitions 2 and 3 with generation 1, whose records then never came). Partitions the
        seek did not cover get no reading: their records wait for the next seek."""
        generation = self.app.consumer_generation_id
        sought: dict[Any, int | None] = {}
        token = _SOUGHT.set(sought)
        try:
            await super().perform_seek()
        finally:
            _SOUGHT.reset(token)
        if self.app.consumer_generation_id != generation:
            log.info("consumer: a seek to the committed offsets begun in generation %s ended "
                     "in %s: its answer is not used", generation,
                     self.app.consumer_generation_id)
            return
        gate = self.offset_gate
        assigned = {tp for tp in self.assignment() if self._gated(tp) and tp in sought}
        for tp in list(gate.partitions):
            if tp not in assigned:
                gate.forget(tp)
        now = time.monotonic()
        for tp in assigned:
            committed = sought[tp]
            gate.reset(tp, committed if committed is not None and committed >= 0 else None,
                       now=now, generation=generation)
        # Faust's seek above goes partition by partition while the fetcher may be running
        # (the second seek of a recovery comes after the flow resumed), so records fetched and
        # handed on meanwhile can leave a partition's position past the offset its gate was
        # just reset to. Seek each one again to that offset, now that the gate expects it.
        for tp in assigned:
            expected = gate.expected(tp)
            if expected is not None:
                await self.seek(tp, expected)
        await self._start_at_first_offsets(gate.unknown())

    async def _start_at_first_offsets(self, partitions: list[Any]) -> None:
        """Partitions the group never committed: look their first offsets up and seek them
        there. aiokafka does not seek such a partition: it reads on from where it had fetched,
        past records a dropped batch or an ended generation left unapplied, and the gate sees
        that hole only when a later record arrives; a partition with no later record stalled
        (a two-worker test, one batch record on a partition). A lookup that fails is retried
        from `getmany` every `HOLD_SECONDS` until it succeeds."""
        if not partitions:
            return
        self._first_offsets_retry_at = time.monotonic() + self.HOLD_SECONDS
        await self._look_up_first_offsets(partitions)
        await self._seek_to_expected(partitions)

    async def _seek_to_expected(self, partitions: list[Any]) -> None:
        """Seek each partition to the offset its reading expects, marked as sought (records
        fetched before the seek are then dropped without seeking again, `OffsetGate.admit`)."""
        gate = self.offset_gate
        for tp in partitions:
            expected = gate.expected(tp)
            if expected is not None:
                await self.seek(tp, expected)
                gate.sought(tp, now=time.monotonic())

    async def _seek(self, partition: Any, offset: int) -> None:
        """Faust's seek, run in the consumer's own thread. Faust calls aiokafka's `seek` from
        the worker's event loop while the consumer thread may be inside the fetcher's
        `fetched_records`, which then deletes a partition's buffered records a second time: a
        loop run of the two-worker test crashed the worker that way (`KeyError:
        TopicPartition(...)` in aiokafka's fetcher, "Drain messages raised") once the gate
        seeks every partition at the end of each rebalance. Faust's own `seek_to_committed`
        already goes through the thread."""
        thread = self._thread

        async def seek_there() -> None:
            try:
                thread.seek(partition, offset)
            except IllegalStateError:  # no longer assigned here: its next owner seeks it
                log.info("consumer: %s[%d] not assigned any more, not sought to %d",
                         partition.topic, partition.partition, offset)

        await thread.call_thread(seek_there)

    async def _seek_stalled(self, now: float) -> None:
        """Seek each gated partition whose reading is stuck to its expected offset
        (`OffsetGate.stalled`), logged: it means a hole nothing else would have filled. Not
        while a table recovery runs: Faust pauses the agents' partitions until it ends (and
        seeks them to the committed offsets then, which resets their readings); the changelog
        partitions it reads are watched instead (`_reread_stalled_recovery`)."""
        if self.app.in_recovery:
            await self._reread_stalled_recovery(now)
            return
        gate = self.offset_gate
        tp: Any
        for tp in list(gate.partitions):
            try:
                log_end = self.highwater(tp)
            except Exception:  # not assigned any more, or no fetch yet
                continue
            offset = gate.stalled(tp, log_end, now=now)
            if offset is not None:
                log.warning("consumer: %s[%d] nothing read for %.0f s while offsets %d-%d wait: "
                            "seeking to %d", tp.topic, tp.partition, gate.stall_seconds, offset,
                            log_end - 1, offset)
                await self.seek(tp, offset)

    async def _reread_stalled_recovery(self, now: float) -> None:
        """Read again, from where the recovery stands, each changelog partition it waits on
        with nothing read for `RecoveryWatch.stall_seconds` (pipeline/stream/recovery_watch.py:
        why), logged with what the consumer knows of the partition."""
        progress = recovery_progress(self.app)
        if progress is None:
            return
        tables: Any = self.app.tables
        tp: Any
        for tp in self._recovery_watch.stalled(progress, now):
            offset = progress.resume_offset(tp)
            try:
                log_end: Any = self.highwater(tp)
            except Exception:  # not assigned any more, or no fetch yet
                log_end = None
            log.warning(
                "recovery: %s[%d] nothing read for %.0f s with %d records to restore (log end "
                "%s; Faust's read offset %s, partition active %s, paused %s, flow %s, "
                "changelog queue %d): reading it again from %d", tp.topic, tp.partition,
                self._recovery_watch.stall_seconds, progress.remaining[tp], log_end,
                self._read_offset.get(tp), tp in (self._active_partitions or ()),
                tp in self._paused_partitions, self.flow_active,
                tables.changelog_queue.qsize(), offset)
            try:
                await self.seek_wait({tp: offset})
            except Exception as exc:  # not assigned any more (a rebalance): its owner restores
                log.info("recovery: %s[%d] not sought again: %r", tp.topic, tp.partition, exc)

    @property
    def _recovery_watch(self) -> RecoveryWatch:
        return self._own("_peakend_recovery_watch", RecoveryWatch)

    async def _look_up_first_offsets(self, partitions: list[Any]) -> None:
        """The log start of partitions without a committed offset. On failure their records
        wait (dropped, and re-read by the seek back once the lookup succeeds)."""
        try:
            earliest = await asyncio.wait_for(self.earliest_offsets(*partitions),
                                              self.LOOK_UP_SECONDS)
        except Exception as exc:  # the broker's error or our timeout: retried on next record
            log.warning("consumer: first offsets of %d partitions not known yet: %r",
                        len(partitions), exc)
            return
        for tp, offset in earliest.items():
            deleted = self.offset_gate.start_at(tp, offset)
            if deleted:
                log.error("consumer: %s[%d] %d records deleted by retention before they were "
                          "read; reading on from %d", tp.topic, tp.partition, deleted, offset)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        """Faust's records, gated: each gated partition's records in offset order, no holes."""
        gate = self.offset_gate
        now = time.monotonic()
        if now >= self._first_offsets_retry_at:
            await self._start_at_first_offsets(gate.unknown())
        if now >= self._stall_check_at:
            self._stall_check_at = now + 1.0
            await self._seek_stalled(now)
        if self.flow_active:
            await self._seek_to_expected(gate.to_seek())  # rewound: `_watch_channel_clears`
        async for tp, message in super().getmany(timeout):
            if not self._gated(tp):
                yield tp, message
                continue
            if not gate.gates(tp):
                # A partition of an agent topic with no reading yet: assigned by a rebalance
                # whose seek to the committed offsets has not run. Handing its records on
                # ungated (as before) let a loop run apply a new owner's records from wherever
                # the fetch happened to be (contributions 47-84 skipped, commits stuck before
                # them). The seek that ends the rebalance reads them again.
                continue
            if (message.generation_id != self.app.consumer_generation_id
                    or not gate.admits_generation(tp, message.generation_id)):
                # Fetched before a rebalance that has begun (the agents refuse it: admitting it
                # would move the gate past a record no agent applies), or in a generation whose
                # seek to the committed offsets has not reset this reading yet (admitting it
                # would apply it before the records the new reading starts with). Either way
                # the seek that ends the rebalance reads it again.
                continue
            reading = gate.reading(tp)
            verdict = gate.admit(tp, message.offset, now=time.monotonic())
            if verdict is Verdict.LOOK_UP:
                if not gate.hold(tp, message.offset):
                    continue  # a later record of a fetch sought back already: read again too
                await self._look_up_first_offsets([tp])
                if self._overtaken(tp, reading, message):
                    continue
                verdict = gate.admit(tp, message.offset, now=time.monotonic())
                if verdict is Verdict.LOOK_UP:
                    # Still unknown (the broker did not answer): where the agents must start
                    # cannot be told, so the record is not delivered, and the partition is
                    # sought back to it so that it is read again, with a new lookup, instead
                    # of being dropped for good (the fetch position has moved past it).
                    await asyncio.sleep(self.HOLD_SECONDS)
                    if not self._overtaken(tp, reading, message):
                        await self.seek(tp, message.offset)
                    continue
            if verdict is Verdict.DELIVER:
                yield tp, self._deliver(tp, message)
                await self._not_handed_on(tp, reading, message)
            elif verdict is Verdict.SEEK:
                # the hole's records may be gone (retention): then reading goes on after them
                await self._look_up_first_offsets([tp])
                if self._overtaken(tp, reading, message):
                    continue
                if message.offset == gate.expected(tp):
                    gate.admit(tp, message.offset, now=time.monotonic())
                    yield tp, self._deliver(tp, message)
                    await self._not_handed_on(tp, reading, message)
                    continue
                expected = gate.expected(tp)
                log.warning("consumer: %s[%d] read offset %d, expected %s: seeking back",
                            tp.topic, tp.partition, message.offset, expected)
                if expected is not None:
                    await self.seek(tp, expected)

    async def _not_handed_on(self, tp: Any, reading: Any, message: Any) -> None:
        """Called when Faust's fetch loop asks for the record after `message`, which the gate
        delivered: if the loop did not hand `message` to the agents' channels, the reading
        expects it again and the partition is sought back to it. Faust's loop lets a record by
        when its read offset lies past it, and gives up handing it on when its flow is
        suspended meanwhile (a rebalance begins while a channel is full): the gate had moved
        past a record no agent saw, and with the reading not reset, the partition's later
        records would be applied without it and its commits stick before it."""
        if not self._tracks_hand_on or self._handed_on is message:
            return
        now = time.monotonic()
        if self.offset_gate.reading(tp) is not reading or not self.offset_gate.rewind(
                tp, message.offset, now=now):
            return  # a seek to the committed offsets reset the reading meanwhile
        log.warning("consumer: %s[%d] offset %d was not handed to the agents: reading it again",
                    tp.topic, tp.partition, message.offset)
        if self.flow_active and message.generation_id == self.app.consumer_generation_id:
            await self._seek_to_expected([tp])  # the rewind's offset: `message`'s

    def _overtaken(self, tp: Any, reading: Any, message: Any) -> bool:
        """While `getmany` waited (a lookup, a pause), did a rebalance begin or a seek to the
        committed offsets reset the partition's reading? Then the record waited on is left
        alone: that seek reads it again, and admitting it in the new reading would hand the
        agents a record of an ended generation, which they refuse, and move the gate past it:
        a hole no later seek fills (the partition's later records applied without it, its
        commits stuck before it)."""
        return (self.offset_gate.reading(tp) is not reading
                or message.generation_id != self.app.consumer_generation_id)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        # A gated partition has no gaps (its records reach the agents in order); Faust's gap
        # would count offsets as done that no agent acked, so it is only logged.
        log.warning("consumer: %s[%d] offsets %d-%d seen as a gap (committed %s)%s",
                    tp.topic, tp.partition, offset_from, offset_to,
                    self._committed_offset.get(tp),
                    ", not counted as done" if self._gated(tp) else "")
        if not self._gated(tp):
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


class PeakendConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose aiokafka consumer asks the broker for the transport's
    `fetch` if it has one (Faust passes no `fetch_min_bytes`: aiokafka's 1 byte, with a 1,500
    ms wait)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        fetch: FetchSize | None = getattr(transport, "fetch", None)
        if fetch is not None:
            # read by `AIOKafkaConsumer.start` when it builds its fetcher
            consumer._fetch_min_bytes = fetch.min_bytes
            consumer._fetch_max_wait_ms = fetch.max_wait_ms
        return consumer


class PeakendTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with our consumer and producer; its consumer thread fetches
    `fetch` (pipeline/kafka_fetch.py)."""

    Consumer = PeakendConsumer
    Producer = PeakendProducer

    def __init__(self, url: Any, app: Any, *, fetch: FetchSize | None = None,
                 **kwargs: Any) -> None:
        super().__init__(url, app, **kwargs)
        self.fetch = fetch


def release(consumer: Any, batch: list[Any]) -> None:
    """Forget the events of a batch left un-acked (a rebalance overtook it): their owner reads
    them again from the committed offsets. Faust's revocation waits until every message it
    handed out and tracks as un-acked (`Consumer._unacked_messages`, a WeakSet) is acked or
    garbage; the stream keeps the last event it took (`Stream.current_event`, which Faust's
    `noack_take` reads again after an await, so it cannot be cleared), and that one event kept
    a rebalance waiting for ever (a two-worker test and CI saw it)."""
    unacked = consumer._unacked_messages
    for event in batch:
        message = event.message
        if not message.acked:
            unacked.discard(message)


class StoreHookTable(faust.Table[Any, Any]):
    """A Faust table that hands every store Faust creates for it to `configure_store` (Faust
    builds a table's store from its URL in `_new_store_by_url`, with no public hook).

    `changelog_prefix`: its changelog topic is `<prefix>-<name>-changelog` whatever the app's
    id (Faust names it after the app's id in `_changelog_topic_name`): stage two run as an app
    of its own (another id, so another consumer group) keeps the changelog topics, and so the
    state, that the worker's one app wrote before."""

    def __init__(self, app: Any, *, changelog_prefix: str | None = None,
                 **kwargs: Any) -> None:
        self.changelog_prefix = changelog_prefix  # set first: the base class names the topic
        super().__init__(app, **kwargs)

    def _changelog_topic_name(self) -> str:
        if self.changelog_prefix is None:
            return str(super()._changelog_topic_name())
        return f"{self.changelog_prefix}-{self.name}-changelog"

    def _new_store_by_url(self, url: Any) -> Any:
        return self.configure_store(super()._new_store_by_url(url))

    def configure_store(self, store: Any) -> Any:
        """Adjust a store Faust made for this table (returns it)."""
        return store


def partition_items(table: Any, partition: int) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs of one partition's RocksDB database of a Faust table, decoded as
    `table.items()` decodes them (which lists every partition assigned to this worker), without
    the changelog offset Faust keeps among them."""
    store = table.data
    for key, value in store._visible_items(store._db_for_partition(partition)):
        yield store._decode_key(key), store._decode_value(value)


def partition_db(table: Any, partition: int) -> Any:
    """The RocksDB database (a rocksdict `Rdict` in raw mode) that holds `partition` of a
    RocksDB-backed Faust table: what Faust's own `Store._set` writes to for an event of that
    partition, opened by Faust if it is not open yet (`Store._db_for_partition`)."""
    return table.data._db_for_partition(partition)
