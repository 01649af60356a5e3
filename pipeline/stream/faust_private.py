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
  `Consumer._add_gap` is wrapped to log each gap Faust counts as done (issue 20);
- `Consumer._unacked_messages` (`release`): a dropped batch's events must stop holding Faust's
  revocation;
- `ProducerBuffer.flush_atmost` giving up after 0.1 s, a behaviour (`PeakendProducer`): a flush
  before a commit must leave nothing buffered (`flush_until_empty`);
- `Table._new_store_by_url` (`StoreHookTable`): the RocksDB options of each store Faust creates
  for a table (pipeline/state_store.py).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = [
    "PeakendConsumer",
    "PeakendProducer",
    "PeakendTransport",
    "StoreHookTable",
    "current_event_of",
    "flush_until_empty",
    "next_commit_offset",
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


log = logging.getLogger(__name__)


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
    a rebalance waiting for ever (a two-worker test and CI saw it)."""
    unacked = consumer._unacked_messages
    for event in batch:
        message = event.message
        if not message.acked:
            unacked.discard(message)


class StoreHookTable(faust.Table[Any, Any]):
    """A Faust table that hands every store Faust creates for it to `configure_store` (Faust
    builds a table's store from its URL in `_new_store_by_url`, with no public hook)."""

    def _new_store_by_url(self, url: Any) -> Any:
        return self.configure_store(super()._new_store_by_url(url))

    def configure_store(self, store: Any) -> Any:
        """Adjust a store Faust made for this table (returns it)."""
        return store
