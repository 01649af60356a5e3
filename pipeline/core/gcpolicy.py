"""Garbage-collector policies for long-running core processes, owned by the caller.

The core's state (journeys, their entries, buckets) is long-lived and grows until eviction. The
cyclic collector's cost is in its older generations: every object that survives a young
collection is re-walked by each collection of the middle generation until it reaches the oldest,
and a full collection re-walks all of it. With CPython's default thresholds (700, 10, 10) that
was about half of the compiled core's time in its benchmark (docs/core.md, Performance). The
core creates no reference cycles on its hot path (entries are flat tuples, records are dropped
by reference counting), so collecting the older generations rarely loses nothing of the core's.
The process that owns the core calls `tune_gc()` once, after loading its state:

    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc
    ... load state (tracker.restore_key for every key, or resume= a snapshot ...)
    tune_gc()                            # replay, backfill: STATE_THRESHOLDS
    tune_gc(STREAM_THRESHOLDS)           # the streaming worker

`gc.freeze()` moves every object alive at that point into the permanent generation, which
collections never walk (CPython also skips a full collection until the long-lived objects grew
by 25%). Nothing here is called by the core on import: a library must not change the
process-wide collector on its own.

Two policies, measured by `bench/bench_core.py` (docs/core.md, Performance):
- `STATE_THRESHOLDS` for processes whose surviving objects are nearly all core state (replay,
  backfill, benchmarks): young collections near CPython's own small size (1,000 against its
  700), which walk objects while
  they are still in cache and untrack entries (exact tuples of atoms) at their first walk; the
  middle generation every 50,000 young collections (tens of millions of allocations), so state
  is walked about once.
- `STREAM_THRESHOLDS` for the streaming worker, which also runs asyncio, Faust and aiokafka: their
  futures, callbacks and tracebacks make reference cycles that outlive a young collection, and
  those are freed only when an older generation is collected. Larger young collections and the
  middle generation every 20 of them bound that garbage, at the price of walking state more
  often (the worker is bound by Kafka round trips, not by this).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# (young, middle, oldest): young collections every N net container allocations; the middle
# generation every N young collections; the oldest every N middle ones (and at +25% growth).
STATE_THRESHOLDS = (1_000, 50_000, 100)
STREAM_THRESHOLDS = (50_000, 20, 100)
# The ClickHouse sink's process: what it holds is the rows waiting for their insert (a dict or
# more per row, up to 5,000-row inserts per table), which die at the insert. At 50,000 net
# allocations a young collection came while a batch was held and walked it (18 ms each): 4.6%
# of the sink's CPU; at 200,000 the held rows never reach it, 0.4% (`python -m bench.gc_trace`,
# docs/streaming.md "twelfth round"). The middle generation every 5 young collections: the
# same million net allocations between them as the stream policy, for the cycles asyncio and
# aiokafka leave.
SINK_THRESHOLDS = (200_000, 5, 100)
DEFAULT_THRESHOLDS = STATE_THRESHOLDS


def tune_gc(thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS, freeze: bool = True
            ) -> tuple[int, int, int]:
    """Set the collector thresholds (and freeze the objects alive now); returns the previous
    thresholds. Call it again after a large state load: each call freezes what is alive."""
    previous = gc.get_threshold()
    if freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*thresholds)
    return previous


@contextmanager
def tuned_gc(thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> Iterator[None]:
    """`tune_gc()` for a block (tests, benchmarks); restores thresholds and unfreezes after."""
    previous = tune_gc(thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


class YoungPacer:
    """Keeps young collections coming about every `every` events as history builds up: under
    `STATE_THRESHOLDS` by scaling the young threshold to the collections seen over the last
    events when they come rarer than that by over 20% (never below `lowest`), or more often
    (never above the threshold in force at creation, so a short run, which collects often
    enough, keeps its own). The owner calls `pace(n)` after every n events it fed the core
    (replay: every `PACE_EVENTS` lines; backfill: after each batch).

    Why: CPython starts a young collection after `threshold` container allocations *net of
    frees*. A short replay only grows its state (about 12 net allocations per event: a young
    collection every ~90 events). After a week of history nearly every new journey, entry and
    bucket is paid for by freeing an old one (about 1.5 net per event at 90 days), so a young
    collection comes every ~700 events and walks all their survivors, far more than the cache
    holds: the compiled core's collector cost 0.6 us/event at 1 day and 2.7 at 90 days
    (docs/core.md, Cost over long histories). Collections counted in events walk the same
    objects per event while they are still in cache; a threshold fixed lower instead (150)
    would make short runs collect seven times as often."""

    def __init__(self, every: int = 100, lowest: int = 100) -> None:
        self.every = every
        self.lowest = lowest
        self.highest = gc.get_threshold()[0]
        self._collections = _young_collections()

    def skip(self) -> None:
        """Leave out the collections since the last call (work that fed nothing to the core,
        such as a benchmark's untimed parsing)."""
        self._collections = _young_collections()

    def pace(self, events: int) -> None:
        """`events` more events went through the core since the last call."""
        made = _young_collections() - self._collections
        self._collections += made
        wanted = events // self.every
        young, middle, oldest = gc.get_threshold()
        if wanted <= 0 or 4 * wanted <= 5 * made <= 5 * wanted:
            return  # about as wanted (within -20%): leave it
        # the threshold that would have given `wanted` at the net allocations seen
        new = min(self.highest, max(self.lowest, young * max(made, 1) // wanted))
        if new != young:
            gc.set_threshold(new, middle, oldest)


def _young_collections() -> int:
    return int(gc.get_stats()[0]["collections"])


# how often replay paces its young collections (lines)
PACE_EVENTS = 10_000
