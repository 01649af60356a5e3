"""The metric records of a replay, latest version of each key as the sink keeps them, with the
old ones out of memory (issue 13 item 5, docs/core.md "Cost over long histories").

A replay writes metrics.jsonl at its end, sorted by key. Holding every record until then made
memory grow with the history (714,088 records at 90 days, ~530 bytes each: a 90-day replay
peaked at 1,145 MB, 650 MB with the runs; its CPU the same within noise: docs/core.md).
`MetricRuns.spill(before_ms)` moves the
records of buckets that start before `before_ms` (the replay passes a bound its stream time has
left behind by more than the lateness) to a sorted *run* in an unnamed temporary file (pickled
in chunks); `merged` merges the runs and the records still held, in key order.

Nothing depends on a record being final when spilled: a later record of a spilled key is held
again, and the merge keeps, per key, the highest version and of equal versions the one seen
first: what `keep` does in memory (a record replaces the one held only with a higher version).
`tests/unit/test_metric_runs.py` spills after every few records, final or not, and requires
the same records as a replay that holds them all.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from pipeline.core.records import MetricRecord

MetricKey = tuple[str, str, str, int, int]  # metric, segment dim and value, start, partition
RUN_CHUNK = 2_000  # records per pickle in a run: what the merge holds of each run at a time


def key_of(record: MetricRecord) -> MetricKey:
    return (record.metric, record.segment_dim, record.segment_value, record.window_start,
            record.source_partition)


class MetricRuns:
    """`keep(record)` for every metric record emitted, `spill(before_ms)` now and then,
    `merged()` at the end."""

    def __init__(self) -> None:
        self.held: dict[MetricKey, MetricRecord] = {}
        self._runs: list[IO[bytes]] = []
        self.spilled = 0  # records written to runs (a key spilled twice counts twice)

    def keep(self, record: MetricRecord) -> None:
        key = key_of(record)
        old = self.held.get(key)
        if old is None or record.version > old.version:
            self.held[key] = record

    def spill(self, before_ms: int) -> int:
        """Move the records of buckets starting before `before_ms` to a new run; how many."""
        going = sorted(key for key in self.held if key[3] < before_ms)
        if not going:
            return 0
        run = tempfile.TemporaryFile(prefix="peakend-metrics-")  # noqa: SIM115 (kept open)
        held = self.held
        records = [held.pop(key) for key in going]
        # pickled in chunks, read back one chunk at a time by the merge: the records come
        # back as they went (no JSON round trip), allocated together in key order. As plain
        # tuples: pickle reduces a NamedTuple through its Python-level `__getnewargs__` and
        # rebuilds it through its Python-level `__new__`: pickling takes 1.4-1.8x less, loading
        # the same (`bench/history_costs.py`, docs/core.md "Cost over long histories").
        for start in range(0, len(records), RUN_CHUNK):
            pickle.dump([tuple(r) for r in records[start:start + RUN_CHUNK]], run,
                        pickle.HIGHEST_PROTOCOL)
        run.seek(0)
        self._runs.append(run)
        self.spilled += len(records)
        return len(records)

    def merged(self) -> Iterator[MetricRecord]:
        """Each key's record, in key order. Closes the runs (call once, at the end)."""
        sources = [_read(run, order) for order, run in enumerate(self._runs)]
        sources.append(((key, record.version, len(self._runs), record)
                        for key, record in sorted(self.held.items())))
        current: tuple[Any, ...] | None = None
        try:
            for entry in heapq.merge(*sources, key=_by_key):
                if current is not None and entry[0] == current[0]:
                    # the same key: a higher version replaces, an equal one does not
                    if entry[1] > current[1]:
                        current = entry
                    continue
                if current is not None:
                    yield current[3]
                current = entry
            if current is not None:
                yield current[3]
        finally:
            for run in self._runs:
                run.close()
            self._runs = []


def _by_key(entry: tuple[Any, ...]) -> Any:
    return entry[0]


def _read(run: IO[bytes], order: int) -> Iterator[tuple[Any, ...]]:
    while True:
        try:
            chunk: list[tuple[Any, ...]] = pickle.load(run)  # our own temporary file
        except EOFError:
            return
        for values in chunk:
            record = _RECORD(MetricRecord, values)
            yield key_of(record), record.version, order, record


_RECORD = tuple.__new__  # a MetricRecord from its values, as `MetricRecord._make` without a call
