"""A garbage-collector policy for long-running core processes, owned by the caller.

The core's state (journeys, their entries, buckets) is long-lived and grows until eviction. With
CPython's default thresholds (700, 10, 10) the cyclic collector keeps re-walking it: in the core
benchmark that was ~40% of the wall time. The core itself creates no reference cycles on its hot
path (entries are flat tuples, records are dropped by reference counting), so collecting rarely
loses nothing. The process that owns the core (streaming worker, replay, backfill, benchmark)
calls `tune_gc()` once, after loading its state:

    from pipeline.core.gcpolicy import tune_gc
    ... load state (tracker.load_key for every key, buckets.load_record ...)
    tune_gc()                 # freeze what is alive now, raise the thresholds

`gc.freeze()` moves every object alive at that point into the permanent generation, which
collections never walk; the raised thresholds make young collections rare and full ones rarer
(CPython also skips a full collection until the long-lived objects grew by 25%). Nothing here is
called by the core on import: a library must not change the process-wide collector on its own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Young collections every 50,000 net allocations instead of 700; older generations 20x and 100x.
DEFAULT_THRESHOLDS = (50_000, 20, 100)


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
