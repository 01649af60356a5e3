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
