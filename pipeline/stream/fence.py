"""Which fetched records an agent may still process once a rebalance overtook one of its batches.

An agent drops a batch that a rebalance overtook (`settled` in pipeline/app.py): its outputs may
have left, but its state is not written and its records are not acked, so their new owner reads
them again from the committed offsets. The agent's buffer may still hold later records of the
same partitions, fetched in the same consumer generation; Faust hands them over while it waits
for un-acked records during the revocation. Processing them would apply events *after* a hole:
the stage is rebuilt from its table (which lacks the dropped batch), applies the later events,
writes that state and acks them. The owner then re-reads the dropped events on top of a state
that already holds their successors, so they arrive out of order: a customer's session that the
dropped event bridged splits in two, and the stream no longer equals `peakend replay` (the
two-workers test on CI saw it: a journey starting at an event that continued another).

Every record of the generation the dropped batch was fetched in is read again after the
rebalance (it ends with a seek to the committed offsets, and the offset gate,
pipeline/stream/offset_gate.py, makes sure the next generation starts there even for records
fetched after that seek), so the fence refuses them all and admits the next generation's
records: state stays a prefix of each partition's records.
"""

from __future__ import annotations

from collections.abc import Iterable


class GenerationFence:
    """Tracks the newest consumer generation whose records must no longer be processed.

    >>> fence = GenerationFence()
    >>> fence.admits(3, current=3)
    True
    >>> fence.drop([3, 3])
    >>> fence.admits(3, current=3), fence.admits(4, current=4)
    (False, True)
    >>> fence.admits(3, current=4)  # fetched before the rebalance that made generation 4
    False
    """

    __slots__ = ("fenced_through",)

    def __init__(self) -> None:
        self.fenced_through = -1  # Kafka group generations start at 0 and only grow

    def admits(self, generation: int, *, current: int) -> bool:
        """May a record fetched in `generation` be processed while the consumer is in
        `current`? Only records of the current generation that no dropped batch fenced."""
        return generation == current and generation > self.fenced_through

    def drop(self, generations: Iterable[int]) -> None:
        """A batch of records fetched in `generations` was dropped: refuse the rest of them."""
        self.fenced_through = max(self.fenced_through, *generations, -1)
