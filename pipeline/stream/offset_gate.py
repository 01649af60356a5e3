"""The agents receive each partition's records in offset order, without holes (issue 20).

Every topic the worker's agents read is internal and written by our own non-transactional
producers (the entry stage's batch records, contributions, follow-up inputs, claims): its offsets
are contiguous, with no transaction markers and no compaction. So a record whose offset is past
the next one expected is not a gap in the log but a hole in what we read: records fetched around a
rebalance that were refused (fetched in the previous generation) or never re-read (aiokafka does
not seek a partition that has no committed offset yet, and Faust's read offset then drops the
records of the refetch as "already read"). Applying the record after the hole would put state
ahead of records it never saw, and Faust would count the hole as done and commit over it: the
cluster fault stream lost journeys that way (docs/reliability.md, issue 20).

The gate holds, per partition, the next offset the agents may receive: after each seek to the
committed offsets (the end of every rebalance) the committed offset, or the partition's first
offset when the group never committed there. A record at that offset passes and moves it on; an
earlier one was delivered already and is dropped; a later one is dropped and the partition is
sought back to the expected offset, once (again only if the refetch has not arrived after
`reseek_seconds`), so the skipped records are fetched again; unless retention deleted them
meanwhile (the log now starts past them): that loss is the broker's, and logged. The first
commit of a partition starts at the same place: no commit covers an offset no agent acked.

No Faust import: `PeakendConsumer` (pipeline/stream/faust_private.py) drives it, the unit tests
(tests/unit/stream/test_offset_gate.py) drive it with offsets.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass


class Verdict(enum.Enum):
    DELIVER = "deliver"  # the expected offset: hand it to the agents
    BEHIND = "behind"  # delivered already in this generation: drop
    SEEK = "seek"  # past a hole: drop, and seek the partition back to `expected`
    WAIT = "wait"  # past a hole, a seek back is under way: drop
    LOOK_UP = "look up"  # the partition's first offset is not known yet: look it up, then ask again


@dataclass(slots=True)
class PartitionGate:
    first: int | None  # where this generation's reading starts (committed or log start)
    expected: int | None  # the next offset the agents may receive
    sought_at: float | None = None  # when the pending seek back was issued
    # while the first offset is unknown: the record the partition was sought back to, so it is
    # read again once the lookup succeeds (`hold`)
    held_from: int | None = None
    # when the reading last moved (reset, a record delivered, a seek): see `stalled`
    moved_at: float = 0.0
    # the consumer group generation this reading belongs to: only records fetched in it may
    # be delivered (`admits_generation`)
    generation: int | None = None
    # rewound (`rewind`) and not sought back yet: see `to_seek`
    unsought: bool = False
    # which delivery of the reading this is: a new one at each reset and rewind (`epoch`)
    epoch: int = 0


class OffsetGate:
    """Per partition, the next offset its agents may receive.

    >>> gate = OffsetGate()
    >>> gate.reset("p0", committed=None)  # no commit yet: the first offset must be looked up
    >>> gate.admit("p0", 3, now=0.0)
    <Verdict.LOOK_UP: 'look up'>
    >>> gate.start_at("p0", 0)  # how many records retention deleted before they were read
    0
    >>> [gate.admit("p0", offset, now=0.0).value for offset in (3, 4)]
    ['seek', 'wait']
    >>> [gate.admit("p0", offset, now=1.0).value for offset in (0, 1, 1, 2, 3)]
    ['deliver', 'deliver', 'behind', 'deliver', 'deliver']
    >>> gate.commit_floor("p0")
    0
    """

    __slots__ = ("epochs", "partitions", "reseek_seconds", "stall_seconds")

    def __init__(self, reseek_seconds: float = 5.0, stall_seconds: float = 10.0) -> None:
        self.partitions: dict[Hashable, PartitionGate] = {}
        self.epochs = 0  # the last epoch given out (see `epoch`)
        # A seek back whose refetch has not arrived after this long is issued again (a fetch in
        # flight when it was issued may still deliver records fetched before it).
        self.reseek_seconds = reseek_seconds
        # A partition whose log holds the expected record but whose reading has not moved for
        # this long is sought to it (`stalled`).
        self.stall_seconds = stall_seconds

    def reset(self, tp: Hashable, committed: int | None, *, now: float = 0.0,
              generation: int | None = None) -> None:
        """The consumer was sought to `committed` (None: the group never committed there; the
        first offset is then looked up, `start_at`) at the end of a rebalance that made
        `generation`."""
        self.epochs += 1
        self.partitions[tp] = PartitionGate(committed, committed, moved_at=now,
                                            generation=generation, epoch=self.epochs)

    def epoch(self, tp: Hashable) -> int | None:
        """The partition's current delivery: records delivered under an earlier one (before a
        reset or a rewind) may still sit in an agent's hands while the reading delivers them,
        or their predecessors, again. Only records of the current epoch may be applied: an
        older one applied after the rewind would come ahead of records it follows (a loop run:
        offset 4, held by Faust's stream while the channel was cleared, applied before the
        re-read 3).

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=2)
        >>> first = gate.epoch("p0")
        >>> [gate.admit("p0", offset, now=0.0).value for offset in (2, 3, 4)]
        ['deliver', 'deliver', 'deliver']
        >>> gate.epoch("p0") == first  # delivering moves nothing
        True
        >>> gate.rewind("p0", 3, now=1.0), gate.epoch("p0") == first
        (True, False)
        >>> gate.epoch("p1") is None
        True
        """
        gate = self.partitions.get(tp)
        return None if gate is None else gate.epoch

    def admits_generation(self, tp: Hashable, generation: int) -> bool:
        """May a record fetched in `generation` be judged by the partition's reading? Only one
        of the reading's own generation. A record of a newer one comes between the moment the
        group's generation moves on and the seek that ends that rebalance: the reading still
        expects the old generation's next offset, and delivering it there (a loop run of the
        two-worker test: offset 6 of a partition whose new reading starts at 1) applied it
        before the records the new owner must read first, and split customers' journeys. It
        is left alone: the seek that ends the rebalance reads it again.

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=6, generation=2)
        >>> gate.admits_generation("p0", 2), gate.admits_generation("p0", 3)
        (True, False)
        """
        gate = self.partitions[tp]
        return gate.generation is None or gate.generation == generation

    def stalled(self, tp: Hashable, log_end: int | None, *, now: float) -> int | None:
        """The offset to seek the partition to when its reading is stuck: the log holds the
        expected record (`log_end`, the high watermark, lies past it) yet nothing reached the
        gate for `stall_seconds`. None otherwise. (Seen in loops of the two-worker test: a
        rebalance's seek to the committed offsets runs partition by partition while records
        still flow, so a partition's fetch position can end past the offset its gate was reset
        to, and with no later record to reveal the hole, nothing was read again.) A seek to the
        expected offset is always safe: the gate drops whatever arrives before or after it.

        >>> gate = OffsetGate(stall_seconds=10.0)
        >>> gate.reset("p0", committed=4, now=0.0)
        >>> gate.stalled("p0", log_end=9, now=5.0) is None  # not for long yet
        True
        >>> gate.stalled("p0", log_end=9, now=11.0)  # records 4-8 wait, nothing came
        4
        >>> gate.stalled("p0", log_end=9, now=12.0) is None  # just sought: give it time
        True
        >>> gate.admit("p0", 4, now=13.0).value
        'deliver'
        >>> gate.stalled("p0", log_end=5, now=30.0) is None  # all read: nothing waits
        True
        """
        gate = self.partitions.get(tp)
        if (gate is None or gate.expected is None or log_end is None
                or log_end <= gate.expected or now - gate.moved_at < self.stall_seconds):
            return None
        gate.moved_at = now
        return gate.expected

    def start_at(self, tp: Hashable, log_start: int) -> int:
        """The partition's first offset in the log: reading starts there unless a committed
        offset lies further on. Returns how many expected records the log no longer holds
        (retention deleted them before they were read; 0 normally)."""
        gate = self.partitions.get(tp)
        if gate is None:
            return 0
        gate.first = log_start if gate.first is None else max(gate.first, log_start)
        gate.held_from = None
        if gate.expected is None:
            gate.expected = gate.first
            return 0
        deleted = max(0, log_start - gate.expected)
        if deleted:
            gate.expected = log_start
            gate.sought_at = None
        return deleted

    def forget(self, tp: Hashable) -> None:
        """The partition left this worker."""
        self.partitions.pop(tp, None)

    def gates(self, tp: Hashable) -> bool:
        return tp in self.partitions

    def admit(self, tp: Hashable, offset: int, *, now: float) -> Verdict:
        """What to do with a fetched record of a gated partition (see the module docstring)."""
        gate = self.partitions[tp]
        expected = gate.expected
        if expected is None:
            return Verdict.LOOK_UP
        if offset == expected:
            gate.expected = offset + 1
            gate.sought_at = None
            gate.moved_at = now
            return Verdict.DELIVER
        if offset < expected:
            return Verdict.BEHIND
        if gate.sought_at is not None and now - gate.sought_at < self.reseek_seconds:
            return Verdict.WAIT
        gate.sought_at = gate.moved_at = now
        return Verdict.SEEK

    def hold(self, tp: Hashable, offset: int) -> bool:
        """A record fetched while the partition's first offset is still unknown. True: look
        the offset up now, and if that fails, seek the partition back to this record so it is
        read again (the first such record, or the refetch of the one sought back to); False: a
        later record of the same fetch, dropped without a lookup: that seek reads it again.

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=None)
        >>> [gate.hold("p0", offset) for offset in (5, 6, 7, 5, 6)]
        [True, False, False, True, False]
        """
        gate = self.partitions[tp]
        if gate.held_from is None or offset <= gate.held_from:
            gate.held_from = offset
            return True
        return False

    def reading(self, tp: Hashable) -> PartitionGate | None:
        """The partition's reading since its last seek to the committed offsets: compare it
        (`is`) before and after waiting to tell whether such a seek came meanwhile. A record
        fetched before that seek must then be left alone: the seek reads it again, and
        admitting it would move the new reading past a record the agents refuse (it carries
        the ended generation), a hole no later seek fills.

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=4)
        >>> before = gate.reading("p0")
        >>> gate.reading("p0") is before
        True
        >>> gate.reset("p0", committed=4)  # a rebalance ended meanwhile
        >>> gate.reading("p0") is before
        False
        """
        return self.partitions.get(tp)

    def rewind(self, tp: Hashable, offset: int, *, now: float) -> bool:
        """Records this reading delivered from `offset` on did not reach the agents (Faust's
        fetch loop let one by, or Faust emptied the agents' channels: see `PeakendConsumer`'s
        `_not_handed_on` and `_watch_channel_clears`): expect them again, in a new epoch. True
        when the reading had moved past `offset` (then seek the partition back to it, `to_seek`);
        False when nothing changes.

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=4)
        >>> [gate.admit("p0", offset, now=0.0).value for offset in (4, 5, 6)]
        ['deliver', 'deliver', 'deliver']
        >>> gate.rewind("p0", 5, now=1.0), gate.expected("p0")
        (True, 5)
        >>> [gate.admit("p0", offset, now=1.5).value for offset in (6, 5, 6)]
        ['wait', 'deliver', 'deliver']
        >>> gate.rewind("p0", 9, now=2.0)  # not delivered yet: nothing to rewind
        False
        """
        gate = self.partitions.get(tp)
        if gate is None or gate.expected is None or offset >= gate.expected:
            return False
        gate.expected = offset
        gate.sought_at = gate.moved_at = now
        gate.unsought = True
        self.epochs += 1
        gate.epoch = self.epochs
        return True

    def to_seek(self) -> list[Hashable]:
        """The partitions rewound since their last seek: seek each to its expected offset (no
        later record may come to ask for it: the log may hold nothing past what was read).

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=4); gate.reset("p1", committed=2)
        >>> gate.admit("p0", 4, now=0.0).value
        'deliver'
        >>> gate.rewind("p0", 4, now=1.0), gate.to_seek()
        (True, ['p0'])
        >>> gate.sought("p0", now=1.0); gate.to_seek()
        []
        """
        return [tp for tp, gate in self.partitions.items() if gate.unsought]

    def sought(self, tp: Hashable, *, now: float) -> None:
        """The partition was sought to its expected offset: records fetched before that seek
        are dropped without seeking again for `reseek_seconds`."""
        gate = self.partitions.get(tp)
        if gate is not None:
            gate.sought_at = now
            gate.unsought = False

    def unknown(self) -> list[Hashable]:
        """The partitions whose first offset is not known yet (never committed, not looked up).

        >>> gate = OffsetGate()
        >>> gate.reset("p0", committed=None); gate.reset("p1", committed=7)
        >>> gate.unknown()
        ['p0']
        """
        return [tp for tp, gate in self.partitions.items() if gate.expected is None]

    def expected(self, tp: Hashable) -> int | None:
        """The offset a seek back goes to."""
        gate = self.partitions.get(tp)
        return None if gate is None else gate.expected

    def commit_floor(self, tp: Hashable) -> int | None:
        """Where the partition's commits must start when the group has none: this generation's
        first offset (None: not known yet, commit nothing)."""
        gate = self.partitions.get(tp)
        return None if gate is None else gate.first
