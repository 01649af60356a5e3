"""Hourly and daily windows from bucket partials: what the ClickHouse views `metrics_hourly` and
`metrics_daily` (schemas/clickhouse/002_views.sql, the CES interval as of 010) compute, for
`peakend replay`'s windows.jsonl.

The views sum the latest version of every partial (metric, segment, bucket, source partition)
into the UTC hour or day of the bucket's start and compute value and interval from the summed
counts. Here the same sums go through the core's own window classes (`vectors.estimate`:
adjusted Wald for NPS, Student t for the CES mean, Wilson for the shares), so the
formulas exist once in Python; tests/unit/storage/test_windows_offline.py (chdb) and
tests/integration/test_windows_offline.py check the rows equal the views' on both engines.

>>> from pipeline.core.records import MetricRecord
>>> def partial(start: int, partition: int, p: int, d: int) -> MetricRecord:
...     return MetricRecord("nps", "all", "all", start, start + 60_000, partition, p + d, None,
...                         None, None, p, 0, d, 0.0, 0.0, 0, 0, 0, 1)
>>> rows = hourly_and_daily([partial(0, 0, 60, 15), partial(60_000, 1, 0, 0)])
>>> [(r.window, r.window_start, r.n, r.value, r.partials) for r in rows]
[('1h', 0, 75, 60.0, 2), ('1d', 0, 75, 60.0, 2)]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from pipeline.core.config import DAY_MS, HOUR_MS
from pipeline.core.records import MetricRecord
from pipeline.core.surveys import WINDOW_TYPES, CesWindow
from pipeline.core.timefmt import format_opt
from pipeline.core.vectors import SIZE, add, vector_of

# window name -> length; the views' toStartOfHour / toStartOfDay on a UTC server
WINDOWS: dict[str, int] = {"1h": HOUR_MS, "1d": DAY_MS}


class WindowRecord(NamedTuple):
    """One metric x segment x hour or day: the columns of `metrics_hourly` / `metrics_daily`
    (`hour` / `day` is `window_start`), plus `window` and `window_end`."""

    metric: str
    segment_dim: str
    segment_value: str
    window: str
    window_start: int
    window_end: int
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    promoters: int
    passives: int
    detractors: int
    total: float
    total_sq: float
    easy: int
    hard: int
    positives: int
    share_easy: float | None
    share_hard: float | None
    partials: int

    def to_dict(self) -> dict[str, Any]:
        out = self._asdict()
        out["window_start"] = format_opt(self.window_start)
        out["window_end"] = format_opt(self.window_end)
        return out


def _record(metric: str, dim: str, value: str, window: str, start: int, vector: list[float],
            partials: int) -> WindowRecord:
    summed = WINDOW_TYPES[metric].from_vector(vector)
    est = summed.result()
    share_easy = share_hard = None
    if isinstance(summed, CesWindow):
        share_easy, share_hard = summed.share_easy(), summed.share_hard()
    return WindowRecord(metric, dim, value, window, start, start + WINDOWS[window], summed.n,
                        est.value, est.ci_low, est.ci_high, *summed.record_counts(), share_easy,
                        share_hard, partials)


def hourly_and_daily(partials: Iterable[MetricRecord]) -> list[WindowRecord]:
    """The hourly and daily windows of the given partials, which must be the latest version of
    each (metric, segment, bucket, source partition), as replay keeps them. Sorted by metric,
    segment, window (`1h` first) and start."""
    sums: dict[tuple[str, str, str, str, int], tuple[list[float], list[int]]] = {}
    for record in partials:
        vector = vector_of(record)
        for window, length in WINDOWS.items():
            start = record.window_start - record.window_start % length
            key = (record.metric, record.segment_dim, record.segment_value, window, start)
            found = sums.get(key)
            if found is None:
                found = sums[key] = ([0.0] * SIZE[record.metric], [0])
            add(found[0], vector)
            found[1][0] += 1
    order = {name: i for i, name in enumerate(WINDOWS)}
    keys = sorted(sums, key=lambda k: (k[0], k[1], k[2], order[k[3]], k[4]))
    return [_record(*key, sums[key][0], sums[key][1][0]) for key in keys]
