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
>>> [(r.window, r.sums.window_start, r.sums.n, r.sums.value, r.partials) for r in rows]
[('1h', 0, 75, 60.0, 2), ('1d', 0, 75, 60.0, 2)]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, NamedTuple

from pipeline.core.config import DAY_MS, HOUR_MS
from pipeline.core.records import (
    COUNT_FIELDS,
    ESTIMATE_FIELDS,
    SERIES_FIELDS,
    SPAN_FIELDS,
    MetricRecord,
    RecordField,
    names_of,
)
from pipeline.core.surveys import WINDOW_TYPES, CesWindow
from pipeline.core.vectors import SIZE, add, vector_of

# window name -> length; the views' toStartOfHour / toStartOfDay on a UTC server
WINDOWS: dict[str, int] = {"1h": HOUR_MS, "1d": DAY_MS}

# The fields of a window row (windows.jsonl, docs/records.md), in order: the window's own around
# the parts it shares with a metric record, declared once in pipeline.core.records.
WINDOW_FIELDS: Final = (
    *SERIES_FIELDS, RecordField("window", "str"), *SPAN_FIELDS, *ESTIMATE_FIELDS, *COUNT_FIELDS,
    RecordField("share_easy", "float?"), RecordField("share_hard", "float?"),
    RecordField("partials", "int"))
_WINDOW_NAMES: Final = names_of(WINDOW_FIELDS)
# The `source_partition` of a window's sums: all partitions (not part of the row).
ALL_PARTITIONS: Final = -1


class WindowRecord(NamedTuple):
    """One metric x segment x hour or day: a row of `metrics_hourly` / `metrics_daily` (`hour` /
    `day` is `window_start`) plus `window` and `window_end`, as `to_dict` gives it.

    `sums` is the window's partials summed into one metric record as long as the window: the
    row's series, span, n, estimate and counts are its fields, not declared again here. Its
    `source_partition` (`ALL_PARTITIONS`) and `version` (0) are not part of the row.
    """

    window: str
    sums: MetricRecord
    share_easy: float | None
    share_hard: float | None
    partials: int

    def to_dict(self) -> dict[str, Any]:
        """The row: `WINDOW_FIELDS` in order, times as RFC 3339 text (as in `sums.to_dict()`)."""
        own = self._asdict()
        sums = self.sums.to_dict()
        return {name: own[name] if name in own else sums[name] for name in _WINDOW_NAMES}


def _record(metric: str, dim: str, value: str, window: str, start: int, vector: list[float],
            partials: int) -> WindowRecord:
    summed = WINDOW_TYPES[metric].from_vector(vector)
    share_easy = share_hard = None
    if isinstance(summed, CesWindow):
        share_easy, share_hard = summed.share_easy(), summed.share_hard()
    est = summed.result()
    # n as summed, as the views' sum(n) (a share's `Estimate` holds 0 for a sum below 0)
    sums = MetricRecord(metric, dim, value, start, start + WINDOWS[window], ALL_PARTITIONS,
                        summed.n, est.value, est.ci_low, est.ci_high, *summed.record_counts(), 0)
    return WindowRecord(window, sums, share_easy, share_hard, partials)


def hourly_and_daily(partials: Iterable[MetricRecord]) -> list[WindowRecord]:
    """The hourly and daily windows of the given partials, which must be the latest version of
    each (metric, segment, bucket, source partition), as replay keeps them, in any order.
    Sorted by metric, segment, window (`1h` first) and start."""
    return list(windows_in_key_order(sorted(partials, key=_series_and_start)))


def windows_in_key_order(partials: Iterable[MetricRecord]) -> Iterator[WindowRecord]:
    """`hourly_and_daily` of partials that come in key order, by metric, segment and bucket
    start (as `pipeline.metric_runs.MetricRuns.merged` hands them on), row by row: one series
    (metric and segment) is held at a time, not every window of the history (at 90 days that
    dict and its sort were 15 of replay's us per event: docs/core.md, "Cost over long
    histories"). ValueError if a series comes back after another one.

    >>> from pipeline.core.records import MetricRecord
    >>> def partial(metric: str, start: int) -> MetricRecord:
    ...     return MetricRecord(metric, "all", "all", start, start + 60_000, 0, 1, None,
    ...                         None, None, 1, 0, 0, 0.0, 0.0, 0, 0, 0, 1)
    >>> [r.window for r in windows_in_key_order([partial("nps", 0), partial("nps", 60_000)])]
    ['1h', '1d']
    >>> list(windows_in_key_order([partial("nps", 0), partial("ces", 0)]))
    Traceback (most recent call last):
    ...
    ValueError: metric partials out of key order: ('ces', 'all', 'all') after ('nps', 'all', 'all')
    """
    series: tuple[str, str, str] | None = None
    held: list[dict[int, tuple[list[float], list[int]]]] = []
    for record in partials:
        key = (record.metric, record.segment_dim, record.segment_value)
        if key != series:
            if series is not None:
                if key < series:
                    raise ValueError(f"metric partials out of key order: {key} after {series}")
                yield from _series_windows(series, held)
            series = key
            held = [{} for _ in WINDOWS]
        vector = vector_of(record)
        for sums, length in zip(held, WINDOWS.values(), strict=True):
            start = record.window_start - record.window_start % length
            found = sums.get(start)
            if found is None:
                found = sums[start] = ([0.0] * SIZE[record.metric], [0])
            add(found[0], vector)
            found[1][0] += 1
    if series is not None:
        yield from _series_windows(series, held)


def _series_windows(series: tuple[str, str, str],
                    held: list[dict[int, tuple[list[float], list[int]]]]
                    ) -> Iterator[WindowRecord]:
    """The rows of one series: each window in `WINDOWS` order, by start."""
    metric, dim, value = series
    for window, sums in zip(WINDOWS, held, strict=True):
        for start in sorted(sums):
            vector, partials = sums[start]
            yield _record(metric, dim, value, window, start, vector, partials[0])


def _series_and_start(record: MetricRecord) -> tuple[str, str, str, int]:
    return record.metric, record.segment_dim, record.segment_value, record.window_start
