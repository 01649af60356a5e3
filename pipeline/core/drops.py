"""Experience-drop detection on merged metric buckets: window test and CUSUM drift.

`DropDetector` is stage two of the aggregation (docs/design.md 2): it takes the partial bucket
records of every source partition (`apply_partial`), keeps their merged sums per series
(metric, segment_dim, segment_value), and `advance(watermark_ms)` evaluates each bucket boundary
of event time once the watermark has passed it, in order, as a pure function of the merged bucket
stats at that moment. Alert records come out for every state change.

- window_drop: the current window [T - window, T) against the baseline [T - window - baseline,
  T - window). Fires when the current n >= min_n, the baseline n >= min_baseline_n, the change in
  the bad direction is at least the minimum effect, and the two-sample test gives p < p_value.
- cusum_drift: at each hour boundary, the hour's value is standardised against a reference level
  (the baseline when the CUSUM (re)starts) and accumulated: S = max(0, S - z - k). Fires while
  S > h. A slow decline the trailing window test never sees (its baseline declines too) adds up.
- an alert is deduplicated per rule and series while firing (severity escalation re-emits it with
  a higher version) and resolves once its condition has been clear for `hold_ms`.
- late data (within the allowed lateness) updates the merged buckets and so every later
  evaluation, but never re-evaluates a boundary already passed: alert records are not rewritten.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from heapq import heappop, heappush
from typing import Any, Final, NamedTuple

from pipeline.core.clock import FAR_MS, NEVER_MS
from pipeline.core.config import DAY_MS, HOUR_MS, DropConfig
from pipeline.core.records import AlertRecord, MetricRecord
from pipeline.core.stats import z_test
from pipeline.core.surveys import (
    WINDOW_TYPES,
    CesWindow,
    CsatWindow,
    Estimate,
    NegativeEndWindow,
    NpsWindow,
)
from pipeline.core.timefmt import format_ms
from pipeline.core.vectors import Frozen, Kind, Vector, add, compare, move, plus, sub

# metric, segment_dim, segment_value: the metric by name, as records and snapshots hold it; the
# series holds its kind (`Series.kind`), looked up once, and everything else asks the kind.
SeriesKey = tuple[str, str, str]
# source partition -> (version, vector), the vector an exact tuple: the collector untracks an
# exact tuple of atoms (and then a dict holding only such tuples) at its first young collection,
# so a bucket's partials cost it nothing afterwards, and freeing them a week later unlinks
# nothing from its lists (a week of buckets is most of what a long replay holds).
Partials = dict[int, tuple[int, Frozen]]
# The partials of one bucket start: while a single source partition has sent one (every bucket
# of a replay or backfill, most of the stream's), the tuple (partition, version, vector), not a
# dict: a dict and its key table are two blocks and some 200 bytes per bucket, a week of
# buckets is most of what a long replay holds, and each is allocated once and freed a week
# later. A second partition's partial makes it a `Partials` dict (`_partials_of` reads both).
OnePartial = tuple[int, int, Frozen]
BucketPartials = OnePartial | Partials
# Forgotten starts are skipped by moving `Series.head`; the list is compacted once this many
# (and at least half of it) are dead, so each start costs O(1) amortised to forget.
_COMPACT_AFTER: Final = 256
# A series' buckets are also snapshotted in *parts* of this many bucket widths each (an hour
# at the default minute), beside a small *head* (`DropDetector.snapshot_head`,
# `snapshot_part`): a store that keeps a series as its head and parts writes what changed
# since its last write (the current part, the oldest one as buckets are forgotten), not a week
# of buckets each time. In buckets, not hours, so a part's size does not depend on the width.
PART_BUCKETS: Final = 60


class _Alert:
    """A firing alert and what its resolution needs: the comparison frozen when it fired (the
    window test's baseline vector; the CUSUM's level over its run), and the clear streak."""

    __slots__ = ("clear_count", "cleared_since", "level", "record", "reference")

    def __init__(self, record: AlertRecord, reference: Vector | None = None,
                 level: float | None = None) -> None:
        self.record = record
        self.cleared_since: int | None = None
        self.clear_count = 0
        self.reference = reference
        self.level = level

    def snapshot(self) -> list[Any]:
        return [self.record.to_dict(), self.cleared_since, self.clear_count,
                None if self.reference is None else list(self.reference), self.level]

    @classmethod
    def from_snapshot(cls, state: list[Any]) -> _Alert:
        """A part, rebuilt by its owner (`Series.from_snapshot`). Also reads the two-item
        state written before issue 16 (record, cleared_since)."""
        record = AlertRecord.from_dict(state[0])
        if not record.message:  # written before the sentence was part of the record
            record = record._replace(message=describe(record))
        alert = cls(record)
        alert.cleared_since = state[1]
        if len(state) > 2:
            alert.clear_count = int(state[2])
            alert.reference = None if state[3] is None else [float(x) for x in state[3]]
            alert.level = None if state[4] is None else float(state[4])
        return alert


class Thresholds(NamedTuple):
    """What the false-alarm budget gives each test (`thresholds`)."""

    warning_p: float  # one-sided p a window test must pass to fire
    critical_p: float  # ... to be critical
    cusum_h: float  # the CUSUM's decision limit (standardised hourly units)


def siegmund_arl(h: float, k: float) -> float:
    """Siegmund's approximation of a one-sided CUSUM's in-control run length (in steps) with
    reference value k and decision limit h, for standard normal increments.

    >>> round(siegmund_arl(4.0, 0.5))  # tables of the exact value (Montgomery): 336
    338
    """
    b = 2.0 * k * (h + 1.166)
    return (math.exp(b) - b - 1.0) / (2.0 * k * k)


def thresholds(c: DropConfig) -> Thresholds:
    """The per-test thresholds the budget allows (the one place they are derived).

    Window tests: every series is tested every `evaluate_every_ms`, so a day holds
    budget_series x day / evaluate_every tests; each may fire with probability at most
    (window share x false alarms a day) / tests (Bonferroni: the expected false alarms a day
    stay under the budget whatever the correlation). The CUSUM (one per series, hourly steps)
    gets a decision limit whose in-control run length is budget_series x 24 / (its share of
    false warnings a day) hours. `p_value` caps the window thresholds.

    >>> t = thresholds(DropConfig())
    >>> round(t.warning_p, 6), round(t.critical_p, 7), round(t.cusum_h, 2)
    (0.000313, 4.17e-05, 4.29)
    """
    tests_per_day = c.budget_series * DAY_MS / c.evaluate_every_ms
    share = 1.0 - c.cusum_share
    warning_p = min(c.p_value, share * c.false_warnings_per_day / tests_per_day)
    critical_p = min(warning_p, share * c.false_pages_per_day / tests_per_day)
    h = c.cusum_h
    if h <= 0.0:
        target = (c.budget_series * 24.0 / (c.cusum_share * c.false_warnings_per_day)
                  if c.cusum_share > 0 and c.false_warnings_per_day > 0 else math.inf)
        lo, hi = 0.0, 100.0
        for _ in range(60):  # bisection: the run length grows with h
            mid = (lo + hi) / 2
            if siegmund_arl(mid, c.cusum_k) < target:
                lo = mid
            else:
                hi = mid
        h = hi
    return Thresholds(warning_p, critical_p, h)


def min_effects(c: DropConfig) -> dict[Kind, float]:
    """Per kind: the smallest change in the bad direction a drop alert may report (the settings
    name the kinds; a test checks every kind has one)."""
    return {NpsWindow: c.min_nps_drop, CesWindow: c.min_ces_drop, CsatWindow: c.min_csat_drop,
            NegativeEndWindow: c.min_negative_end_rise}


def one_sided_p(effect: float, two_sided: float, direction: int) -> float:
    """One-sided p in the bad direction from a symmetric test's two-sided p.

    >>> one_sided_p(-5.0, 0.02, 1), one_sided_p(5.0, 0.02, 1), one_sided_p(5.0, 0.02, -1)
    (0.01, 0.99, 0.01)
    """
    return two_sided / 2 if effect * direction < 0 else 1.0 - two_sided / 2


class Series:
    """Merged buckets of one metric and segment, with running window sums and alert state."""

    __slots__ = ("alerts", "base", "cur", "cursor", "cusum", "cusum_since", "cusum_up", "due",
                 "head", "held", "key", "kind", "order", "parts", "plain", "ref", "since",
                 "touched")

    def __init__(self, key: SeriesKey, cursor: int) -> None:
        self.key = key
        self.kind: Kind = WINDOW_TYPES[key[0]]
        self.since = cursor  # first bucket seen: the CUSUM waits for a full baseline of history
        size = len(self.kind.columns)
        # Every start held, ascending, from index `head` on (the entries before it are
        # forgotten: None beside them), and index for index beside it the start's merged
        # vector (`held`; None for a start with partials only, from a restored state) and its
        # partials (`parts`, `BucketPartials`). Windows are summed, the next data found and old
        # buckets forgotten by walking these lists, so the cost per step does not grow with
        # the history held, and a start is found by `_find` (from the ends, where nearly every
        # search lands), not looked up in dicts by start: at 90 days of history a week of
        # buckets per series made such dicts large and cold (a cache miss or two per lookup,
        # and millisecond starts, all multiples of the width, share their low hash bits), and
        # each entry was one more thing to allocate and free.
        self.order: list[int] = []
        self.held: list[Frozen | None] = []
        self.parts: list[BucketPartials | None] = []
        self.head = 0
        self.cursor = cursor  # boundary evaluated last; windows end here
        self.cur: Vector = [0.0] * size  # [cursor - window, cursor)
        self.base: Vector = [0.0] * size  # [cursor - window - baseline, cursor - window)
        self.cusum = 0.0
        self.cusum_since: int | None = None  # where the CUSUM's current run began
        self.cusum_up = 0.0  # the recovery CUSUM of a firing cusum_drift
        self.ref: tuple[float, float, int] | None = None  # (mean, per-answer sd, n)
        self.alerts: dict[str, _Alert] = {}
        # The watermark at which `advance` must next evaluate this series (its place in the
        # detector's calendar); FAR_MS: not before new data. Not part of the state.
        self.due = FAR_MS
        # Every start bucket-aligned and every partial non-negative (what stage one sends):
        # then `cur` and `base` are exactly the sums of the buckets in their ranges (an idle
        # jump skips only empty windows), so the evaluation reads them instead of summing the
        # buckets again (the CUSUM reference of a sparse series: a week of them each hour),
        # and the calendar may leave the series behind between evaluations. Cleared for good
        # by the first partial that breaks it; such a series is stepped at every boundary.
        self.plain = True
        # The parts (`PART_BUCKETS`) whose buckets or partials changed since the owner last
        # drained them, by their first start; None when the owner does not keep parts (a
        # replay never drains them). Not part of the state.
        self.touched: set[int] | None = None

    def snapshot(self) -> dict[str, Any]:
        head = self.snapshot_head()
        out = {
            # the keys in the order this state has always had (its stored bytes unchanged)
            "key": head["key"], "cursor": head["cursor"], "since": head["since"],
            "buckets": [[s, list(v)] for s, v in self.held_buckets().items()],
            "partials": [[s, p, ver, list(v)] for s, at in self.held_partials().items()
                         for p, (ver, v) in _partials_of(at)],
        }
        out.update(head)
        return out

    def held_buckets(self) -> dict[int, Frozen]:
        """The merged vector of every start held, by start, ascending."""
        return {s: v for s, v in zip(self.order[self.head:], self.held[self.head:], strict=True)
                if v is not None}

    def held_partials(self) -> dict[int, BucketPartials]:
        """The partials of every start held, by start, ascending."""
        return {s: at for s, at in zip(self.order[self.head:], self.parts[self.head:],
                                       strict=True) if at is not None}

    def index_of(self, start: int) -> int:
        """Where `start` is in `order`, or -1 when it is not held."""
        order = self.order
        i = _find(order, start, self.head)
        return i if i < len(order) and order[i] == start else -1

    def vector_at(self, start: int) -> Frozen | None:
        """The merged vector of the bucket at `start`, or None."""
        i = self.index_of(start)
        return None if i < 0 else self.held[i]

    def snapshot_part(self, first: int, end: int) -> dict[str, Any] | None:
        """The buckets and partials of the starts in [first, end), as `snapshot` lists them;
        None when none is held."""
        order, held, partials = self.order, self.held, self.parts
        buckets: list[list[Any]] = []
        parts: list[list[Any]] = []
        i = _find(order, first, self.head)
        n = len(order)
        while i < n:
            s = order[i]
            if s >= end:
                break
            v = held[i]
            if v is not None:
                buckets.append([s, list(v)])
            at = partials[i]
            if at is not None:
                parts.extend([s, p, ver, list(pv)] for p, (ver, pv) in _partials_of(at))
            i += 1
        if not buckets and not parts:
            return None
        return {"buckets": buckets, "partials": parts}

    def snapshot_head(self) -> dict[str, Any]:
        """Everything of `snapshot` but the buckets and partials."""
        return {
            "key": list(self.key),
            "cursor": self.cursor,
            "since": self.since,
            "cur": list(self.cur),
            "base": list(self.base),
            "cusum": self.cusum,
            "cusum_since": self.cusum_since,
            "cusum_up": self.cusum_up,
            "ref": None if self.ref is None else list(self.ref),
            "alerts": {rule: a.snapshot() for rule, a in sorted(self.alerts.items())},
        }

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> Series:
        """A part, rebuilt by its owner (`DropDetector.restore_key`)."""
        metric, dim, value = state["key"]
        series = cls((metric, dim, value), int(state["cursor"]))
        series.since = int(state["since"])
        buckets: dict[int, Frozen] = {int(s): tuple(v) for s, v in state["buckets"]}
        partials: dict[int, BucketPartials] = {}
        for s, p, ver, v in state["partials"]:
            at = partials.get(int(s))
            partials[int(s)] = _with(at, int(p), int(ver), tuple(v))
        series.order = sorted(set(buckets) | set(partials))
        series.held = [buckets.get(s) for s in series.order]
        series.parts = [partials.get(s) for s in series.order]
        series.cur = list(state["cur"])
        series.base = list(state["base"])
        series.cusum = float(state["cusum"])
        since = state.get("cusum_since")
        series.cusum_since = None if since is None else int(since)
        series.cusum_up = float(state.get("cusum_up", 0.0))
        ref = state["ref"]
        series.ref = None if ref is None else (float(ref[0]), float(ref[1]), int(ref[2]))
        for rule, alert_state in state["alerts"].items():
            series.alerts[rule] = _Alert.from_snapshot(alert_state)
        return series


def _partials_of(at: BucketPartials) -> list[tuple[int, tuple[int, Frozen]]]:
    """A bucket's partials as (partition, (version, vector)) pairs, by partition.

    >>> _partials_of((3, 7, (1.0,)))
    [(3, (7, (1.0,)))]
    >>> _partials_of({5: (1, (2.0,)), 2: (4, (3.0,))})
    [(2, (4, (3.0,))), (5, (1, (2.0,)))]
    """
    if isinstance(at, tuple):
        return [(at[0], (at[1], at[2]))]
    return sorted(at.items())


def _with(at: BucketPartials | None, partition: int, version: int, vector: Frozen
          ) -> BucketPartials:
    """`at` with `partition`'s partial replaced: a `OnePartial` while it is the bucket's only
    partition, a `Partials` dict once there are two (the dict is changed in place).

    >>> _with(None, 1, 1, (1.0,))
    (1, 1, (1.0,))
    >>> _with((1, 1, (1.0,)), 1, 2, (2.0,))
    (1, 2, (2.0,))
    >>> _with((1, 2, (2.0,)), 0, 5, (3.0,))
    {1: (2, (2.0,)), 0: (5, (3.0,))}
    """
    if at is None:
        return (partition, version, vector)
    if isinstance(at, tuple):
        if at[0] == partition:
            return (partition, version, vector)
        return {at[0]: (at[1], at[2]), partition: (version, vector)}
    at[partition] = (version, vector)
    return at


def _insert(series: Series, i: int, start: int) -> None:
    """Add a new start at index `i` of the ordered starts (`_find`'s answer), holding nothing
    yet (its caller sets its vectors): nearly always at the end (data arrives in roughly
    ascending event time), otherwise a little before it (a negative_end count comes when its
    journey closes, a late answer)."""
    if i == len(series.order):
        series.order.append(start)
        series.held.append(None)
        series.parts.append(None)
    else:
        series.order.insert(i, start)
        series.held.insert(i, None)
        series.parts.insert(i, None)


def _find(order: list[int], x: int, lo: int) -> int:
    """`bisect_left(order, x, lo)`, searched from the ends: the starts a caller asks for
    are nearly always the first held (the buckets leaving the baseline) or within the last
    hour or two of a week of them (entering, moving, inserted late), so galloping back from
    the end touches a few entries next to each other instead of some 13 spread over the list
    (each a cache miss at 90 days of history). `_bisect_left` is the reference
    (test_core_drops_history.py compares them)."""
    n = len(order)
    if lo >= n or order[lo] >= x:
        return lo
    # order[lo] < x <= order[hi] (hi == n: past the end); gallop down from the end
    hi = n
    step = 1
    while True:
        i = hi - step
        if i <= lo:
            return bisect_left(order, x, lo + 1, hi)
        if order[i] < x:
            return bisect_left(order, x, i + 1, hi)
        hi = i
        step += step


def _bisect_left(order: list[int], x: int, lo: int) -> int:
    """What `_find` must return (the plain binary search it replaces)."""
    return bisect_left(order, x, lo)


def _next_bucket(series: Series, at: int) -> int | None:
    """The first bucket start >= `at`, or None."""
    order = series.order
    held = series.held
    n = len(order)
    i = _find(order, at, series.head)
    while i < n:
        if held[i] is not None:
            return order[i]
        i += 1
    return None


class DropDetector:
    """Merged windows and drop alerts for every series (see the module docstring)."""

    def __init__(self, config: DropConfig | None = None, bucket_ms: int = 60_000,
                 rolling_ms: tuple[int, ...] = (HOUR_MS, DAY_MS, 7 * DAY_MS), *,
                 resume: dict[str, Any] | None = None, keep_parts: bool = False) -> None:
        """`resume`: a `snapshot()` to continue from. `keep_parts`: note which parts of each
        series change, for an owner that stores series as a head and parts (`drain_parts`)."""
        self.config = c = config or DropConfig()
        self.rolling_ms = rolling_ms
        if (c.window_ms % bucket_ms or c.baseline_ms % bucket_ms or HOUR_MS % bucket_ms
                or c.evaluate_every_ms % bucket_ms):
            raise ValueError("window, baseline, evaluation step and one hour must be multiples"
                             " of the bucket width")
        self.bucket_ms = bucket_ms
        self._part_ms = PART_BUCKETS * bucket_ms
        self.keep_parts = keep_parts
        self.thresholds = thresholds(c)
        self._series: dict[SeriesKey, Series] = {}
        self._min_effect = min_effects(c)
        self._dirty: set[SeriesKey] = set()
        # The largest watermark advanced to, and the calendar: (due watermark, key) of every
        # series with an evaluation ahead (entries whose due no longer matches are skipped).
        # Between its evaluations a series is not stepped at each boundary: its cursor stays
        # behind and is brought up (`_sync`) when a partial, a query or a dump needs it.
        self._watermark = NEVER_MS
        self._calendar: list[tuple[int, SeriesKey]] = []
        if resume is not None:
            for raw in resume["series"]:
                key = _series_key(raw["key"])
                self.restore_key(key, raw)
            self._watermark = int(resume["watermark"])
            self._dirty = {_series_key(k) for k in resume["dirty"]}

    # -- input --------------------------------------------------------------------------------

    def apply_partial(self, record: MetricRecord) -> None:
        """Take the latest state of one partial bucket (any partition, any order; a version not
        above the one already seen for that partial is ignored, so redelivery is harmless)."""
        key = (record.metric, record.segment_dim, record.segment_value)
        start = record.window_start
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Series(key, start)
            if self.keep_parts:
                series.touched = set()
        # Where stepping at every call would have left the cursor (`at`): a series waiting in
        # the calendar lags behind. Idle, it is brought up (cheap: a jump). Not idle, the
        # partial goes into the windows as seen from the lagging cursor, and the catch-up
        # later moves the bucket's whole value through the ranges it crosses: the same sums
        # (exact), and its due evaluation stays the first one after either cursor.
        vector = series.kind.vector_of(record)
        if series.plain and (start % self.bucket_ms != 0 or min(vector) < 0.0):
            series.plain = False
        at = series.cursor
        lagging = False
        if series.due > self._watermark:
            limit = self._limit(series.kind, self._watermark)
            if at < limit:
                if not series.plain or self._idle(series):
                    self._sync(series)
                    at = series.cursor
                else:
                    at = limit
                    lagging = True
        w, b = self.config.window_ms, self.config.baseline_ms
        series.since = min(series.since, start)
        if start < at - w - b:
            return  # older than anything still evaluated
        partition = record.source_partition
        version = record.version
        order = series.order
        i = _find(order, start, series.head)
        merged: Frozen | None = None
        parts: BucketPartials | None = None
        if i < len(order) and order[i] == start:
            merged = series.held[i]
            parts = series.parts[i]
        else:
            # its vectors are set below (a new start has no version yet, so it always gets
            # that far)
            _insert(series, i, start)
        old: Frozen | None = None
        if isinstance(parts, tuple):
            if parts[0] == partition:
                if parts[1] >= version:
                    return
                old = parts[2]
        elif parts is not None:
            seen = parts.get(partition)
            if seen is not None:
                if seen[0] >= version:
                    return
                old = seen[1]
        frozen = tuple(vector)
        delta = vector  # a new list (`vector_of`), held nowhere: the change to apply
        if old is not None:
            sub(delta, old)
        series.parts[i] = _with(parts, partition, version, frozen)
        touched = series.touched
        if touched is not None:
            touched.add(start - start % self._part_ms)
        # The merged vector, a tuple like the partials: while one partition has sent the
        # bucket's partials, it is that partition's latest vector itself (no list of sums and
        # no floats of its own per bucket: a week of buckets is most of what a long replay
        # holds); else the old sums plus the change. Exact either way (vectors.py).
        if merged is None:  # a new start, or a restored state with partials but no bucket
            series.held[i] = frozen if old is None else tuple(delta)
        elif merged is old:  # it was this partition's vector alone
            series.held[i] = frozen
        else:
            series.held[i] = plus(merged, delta)
        if series.cursor - w <= start < series.cursor:
            add(series.cur, delta)
        elif series.cursor - w - b <= start < series.cursor - w:
            add(series.base, delta)
        self._dirty.add(key)
        if not lagging:
            self._plan(series)

    # -- evaluation ---------------------------------------------------------------------------

    def advance(self, watermark_ms: int) -> list[AlertRecord]:
        """Evaluate every bucket boundary up to `watermark_ms` (negative_end trails by
        `negative_end_delay_ms`, the time its journeys need to close). Deterministic order.

        Only the series with an evaluation due run (the calendar): between its evaluations a
        boundary changes nothing but a series' window sums, which `_step_to` moves over many
        boundaries at once, so stepping every series at every bucket boundary (a week of
        history: 70-odd series, most with nothing entering, moving or leaving) is not needed.
        The alerts are those of stepping every series at every call, in the same order."""
        out: list[AlertRecord] = []
        if watermark_ms > self._watermark:
            self._watermark = watermark_ms
        calendar = self._calendar
        if not calendar or calendar[0][0] > watermark_ms:
            return out
        due: list[SeriesKey] = []
        while calendar and calendar[0][0] <= watermark_ms:
            at, key = heappop(calendar)
            series = self._series.get(key)
            if series is not None and series.due == at:
                series.due = FAR_MS
                due.append(key)
        due.sort()
        for key in due:
            series = self._series[key]
            limit = self._limit(series.kind, watermark_ms)
            if series.cursor < limit:
                self._run(series, limit, out)
                self._dirty.add(key)
            self._plan(series)
        return out

    def _limit(self, kind: Kind, watermark_ms: int) -> int:
        """The last boundary a series of this kind is evaluated at, at this watermark."""
        limit = watermark_ms
        if kind.counted_at_close:
            limit -= self.config.negative_end_delay_ms
        return limit - limit % self.bucket_ms

    def _run(self, series: Series, limit: int, out: list[AlertRecord]) -> None:
        """Move the series' cursor to `limit`, evaluating the boundaries due on the way."""
        every = self.config.evaluate_every_ms
        while series.cursor < limit:
            if self._idle(series):
                # nothing in either window and nothing firing: jump to the next data
                ahead = _next_bucket(series, series.cursor)
                series.cursor = limit if ahead is None else min(limit, ahead)
                self._forget_before(series, series.cursor - self.config.window_ms
                                    - self.config.baseline_ms)
                if series.cursor >= limit:
                    break
            # Between evaluation boundaries a boundary changes only the window sums: move
            # them to the next evaluation (or the limit) in one go, visiting the buckets
            # held in the ranges that enter, move and leave, not every boundary.
            t = series.cursor
            target = min(limit, t - t % every + every, t - t % HOUR_MS + HOUR_MS)
            self._step_to(series, target)
            if target % every == 0 or target % HOUR_MS == 0:
                out.extend(self._evaluate(series))

    def _plan(self, series: Series) -> None:
        """Put the series in the calendar at its next evaluation: the first evaluation
        boundary after its cursor, or, idle (an evaluation would change nothing), after its
        next bucket; never while idle without data ahead. What `_run` would do from here:
        it evaluates at that boundary first."""
        t = series.cursor
        if not series.plain:
            due = t - t % self.bucket_ms + self.bucket_ms  # every boundary, as before
        else:
            if self._idle(series):
                ahead = _next_bucket(series, t)
                if ahead is None:
                    series.due = FAR_MS
                    return
                t = ahead
            every = self.config.evaluate_every_ms
            due = min(t - t % every + every, t - t % HOUR_MS + HOUR_MS)
        if series.kind.counted_at_close:
            due += self.config.negative_end_delay_ms
        if due != series.due:
            series.due = due
            heappush(self._calendar, (due, series.key))

    def _sync(self, series: Series) -> None:
        """Bring a series that waits in the calendar up to the last watermark advanced to, as
        stepping it at every call would have (no evaluation falls before its due one). A
        series due already (new, or restored) is left where it is until the next `advance`,
        as then too."""
        if series.due <= self._watermark:
            return
        limit = self._limit(series.kind, self._watermark)
        if series.cursor < limit:
            out: list[AlertRecord] = []
            self._run(series, limit, out)
            assert not out, "an evaluation fell between calendar dates"
            self._dirty.add(series.key)
            self._plan(series)

    @staticmethod
    def _idle(series: Series) -> bool:
        return (not series.alerts and not any(series.cur) and not any(series.base)
                and series.cusum == 0.0)

    def _step_to(self, series: Series, target: int) -> None:
        """Move the cursor from one boundary to a later one: what one step per boundary did
        (the bucket entering the current window, the one moving to the baseline, the one
        leaving it, forgotten), for all the boundaries at once. Sums are exact (vectors.py),
        so the order of the additions does not matter."""
        width = self.bucket_ms
        w, b = self.config.window_ms, self.config.baseline_ms
        t = series.cursor
        series.cursor = target
        if target - t == width:  # one boundary (the engine advances at each): direct lookups
            entering = series.vector_at(t)
            if entering is not None:
                add(series.cur, entering)
            moving = series.vector_at(t - w)
            if moving is not None:
                move(series.cur, series.base, moving)
            leaving = series.vector_at(t - w - b)
            if leaving is not None:
                sub(series.base, leaving)
                self._forget_before(series, t - w - b + width)
            return
        self._add_range(series, t, target, series.cur, 1.0)
        self._move_range(series, t - w, target - w)
        last = self._add_range(series, t - w - b, target - w - b, series.base, -1.0)
        if last is not None:
            self._forget_before(series, last + width)

    def _add_range(self, series: Series, start: int, end: int, into: Vector, sign: float
                   ) -> int | None:
        """Add the buckets held in [start, end) (bucket-aligned starts only) into `into`, in
        ascending order; returns the last start added, or None."""
        width = self.bucket_ms
        order = series.order
        held = series.held
        last: int | None = None
        # sign +-1, tested per bucket rather than through a function variable: compiled, a
        # call through a variable goes through the Python calling convention (the -1 side
        # runs once for every bucket leaving the baseline: 0.6 us/event at 90 days)
        adding = sign == 1.0
        i = _find(order, start, series.head)
        n = len(order)
        while i < n:
            s = order[i]
            if s >= end:
                break
            if s % width == 0:
                v = held[i]
                if v is not None:
                    if adding:
                        add(into, v)
                    else:
                        sub(into, v)
                    last = s
            i += 1
        return last

    def _move_range(self, series: Series, start: int, end: int) -> None:
        """Move the buckets held in [start, end) from the current window to the baseline
        (`_add_range` twice, in one pass)."""
        width = self.bucket_ms
        order = series.order
        held = series.held
        cur, base = series.cur, series.base
        i = _find(order, start, series.head)
        n = len(order)
        while i < n:
            s = order[i]
            if s >= end:
                break
            if s % width == 0:
                v = held[i]
                if v is not None:
                    move(cur, base, v)
            i += 1

    def _forget_before(self, series: Series, start: int) -> None:
        """Drop the buckets and partials before `start`: pops from the front of the ordered
        starts, so each one costs O(1) amortised (it was a scan of every stored bucket)."""
        part_ms = self._part_ms
        order = series.order
        held = series.held
        parts = series.parts
        touched = series.touched
        i = series.head
        n = len(order)
        while i < n:
            s = order[i]
            if s >= start:
                break
            if touched is not None:
                touched.add(s - s % part_ms)
            held[i] = None
            parts[i] = None
            i += 1
        if i >= _COMPACT_AFTER and 2 * i >= n:
            del order[:i]
            del held[:i]
            del parts[:i]
            i = 0
        series.head = i

    def _evaluate(self, series: Series) -> list[AlertRecord]:
        c = self.config
        t = series.cursor
        out: list[AlertRecord] = []
        n = series.kind.count_of(series.cur)
        if t % c.evaluate_every_ms == 0:
            self._evaluate_window(series, t, n, out)
        if t % HOUR_MS == 0:
            self._evaluate_cusum(series, t, out)
        return out

    def _evaluate_window(self, series: Series, t: int, n: int, out: list[AlertRecord]) -> None:
        """The window test, one-sided in the bad direction, at the budget's threshold; while
        firing, the clear test against the baseline frozen when it fired (hysteresis)."""
        c = self.config
        kind = series.kind
        firing = series.alerts.get("window_drop")
        if n < c.min_n:
            return  # too few answers: neither a drop nor a sign it has cleared
        base = series.base if firing is None or firing.reference is None else firing.reference
        if kind.count_of(base) < c.min_baseline_n:
            return
        effect, p2 = compare(kind, series.cur, base)
        p = one_sided_p(effect, p2, kind.direction)
        bad = -effect * kind.direction  # > 0: worse
        minimum = self._min_effect[kind]
        evidence = None
        if bad >= minimum and p < self.thresholds.warning_p:
            evidence = self._evidence(series, "window_drop", t, t - c.window_ms, series.cur,
                                      base, effect, p, self.thresholds.warning_p)
        if firing is None:
            if evidence is not None and not series.alerts:
                self._open(series, evidence, list(series.base), None, out)
            return
        if evidence is not None:
            self._escalate(firing, evidence, out)
        self._clear_step(series, "window_drop", firing, bad < c.clear_fraction * minimum, t,
                         c.clear_windows, out)

    def _evaluate_cusum(self, series: Series, t: int, out: list[AlertRecord]) -> None:
        """The CUSUM of the hourly series against its reference: S = max(0, S - z - k), a run
        starting where S leaves 0; fires while S > h (no minimum-effect gate: the limit comes
        from the budget). Its evidence is the run's level against the reference, with a
        one-sided p. A firing drift resolves when a recovery CUSUM against the level at firing,
        R = max(0, R + z' - k), passes h: the series is back above the midpoint between the
        reference and the run's level, not merely noisy."""
        c = self.config
        kind = series.kind
        if series.ref is None:
            self._anchor(series, t)
        # the hour's sum: the current window when that is the hour (t is the cursor)
        hour = (series.cur if series.plain and c.window_ms == HOUR_MS
                else self._sum(series, t - HOUR_MS, t))
        n = kind.count_of(hour)
        ref = series.ref
        if ref is None or n < c.cusum_min_hour_n or ref[1] <= 0:
            return
        value = kind.from_vector(hour).result().value
        assert value is not None
        se = ref[1] / math.sqrt(n)
        z = (value - ref[0]) / se * kind.direction
        before = series.cusum
        series.cusum = max(0.0, before - z - c.cusum_k)
        if series.cusum == 0.0:
            series.cusum_since = None
        elif before == 0.0 or series.cusum_since is None:
            series.cusum_since = t - HOUR_MS
        h = self.thresholds.cusum_h
        firing = series.alerts.get("cusum_drift")
        if firing is not None:
            level = firing.level if firing.level is not None else ref[0]
            up = (value - level) / se * kind.direction
            series.cusum_up = max(0.0, series.cusum_up + up - c.cusum_k)
            if series.cusum_up > h:
                self._resolve(series, "cusum_drift", firing, t, out)
            return
        if series.cusum > h and not series.alerts and series.cusum_since is not None:
            run = self._sum(series, series.cusum_since, t)
            est = kind.from_vector(run).result()
            if est.value is None:
                return
            effect = est.value - ref[0]
            p = one_sided_p(effect, z_test(effect, ref[1] ** 2 / est.n), kind.direction)
            if p >= self.thresholds.warning_p:
                # Every alert's p passes the threshold it carries: a run over the limit whose
                # mean is not yet that far from the reference waits (S stays above h, so the
                # next hour asks again).
                return
            evidence = self._evidence(series, "cusum_drift", t, series.cusum_since, run, None,
                                      effect, p, self.thresholds.warning_p)
            series.cusum_up = 0.0
            # The recovery CUSUM watches for the series climbing back over the midpoint between
            # the reference and the run's level: the run's own level is biased low (runs that
            # cross the limit early are those with unlucky hours), and testing against it
            # resolved drops that were still there.
            self._open(series, evidence, None, (est.value + ref[0]) / 2, out)

    def _anchor(self, series: Series, t: int) -> None:
        kind = series.kind
        if t - series.since < self.config.window_ms + self.config.baseline_ms:
            return  # a reference from a short history would bias every later hour
        base = series.base if series.plain else self._sum(
            series, t - self.config.window_ms - self.config.baseline_ms, t - self.config.window_ms)
        n = kind.count_of(base)
        if n < self.config.min_baseline_n:
            return
        acc = kind.from_vector(base)
        mean = acc.score()
        if mean is None:
            return
        series.ref = (mean, math.sqrt(acc.variance()), n)

    def _sum(self, series: Series, start: int, end: int) -> Vector:
        """Sum of the buckets in [start, end) (start rounded down to a bucket boundary), in
        ascending order: only the buckets held are visited, not every boundary of the range
        (a sparse series waiting for its CUSUM reference summed a week of empty minutes each
        hour)."""
        total = [0.0] * len(series.kind.columns)
        self._add_range(series, start - start % self.bucket_ms, end, total, 1.0)
        return total

    def _evidence(self, series: Series, rule: str, t: int, start: int, current: Vector,
                  baseline: Vector | None, effect: float, p: float, threshold: float
                  ) -> AlertRecord:
        c = self.config
        metric, dim, value = series.key
        kind = series.kind
        est = kind.from_vector(current).result()
        if baseline is not None:
            base_value = kind.from_vector(baseline).result().value
            base_n = kind.count_of(baseline)
        else:
            assert series.ref is not None
            base_value, base_n = series.ref[0], series.ref[2]
        critical = (abs(effect) >= c.critical_factor * self._min_effect[kind]
                    and p < self.thresholds.critical_p)
        assert est.value is not None and base_value is not None
        record = AlertRecord(
            alert_id="", rule=rule, metric=metric, segment_dim=dim, segment_value=value,
            state="firing", severity="critical" if critical else "warning", fired_at=t,
            resolved_at=None, window_start=start, window_end=t, value=est.value,
            baseline=base_value, n=est.n, baseline_n=base_n,
            ci_low=est.ci_low if est.ci_low is not None else est.value,
            ci_high=est.ci_high if est.ci_high is not None else est.value,
            effect=effect, p_value=p, version=0,
            threshold=self.thresholds.critical_p if critical else threshold,
        )
        return record._replace(message=describe(record))

    @staticmethod
    def _open(series: Series, evidence: AlertRecord, reference: Vector | None,
              level: float | None, out: list[AlertRecord]) -> None:
        """A new firing episode: one per series at a time (a drop is paged once, by the rule
        that saw it first; the other rule waits until it resolves)."""
        metric, dim, value = series.key
        rule = evidence.rule
        alert_id = f"{rule}:{metric}:{dim}={value}:{format_ms(evidence.fired_at)}"
        record = evidence._replace(alert_id=alert_id, version=1)
        series.alerts[rule] = _Alert(record, reference, level)
        out.append(record)

    @staticmethod
    def _escalate(firing: _Alert, evidence: AlertRecord, out: list[AlertRecord]) -> None:
        """A warning that becomes critical while firing is re-emitted with version + 1."""
        if firing.record.severity == "warning" and evidence.severity == "critical":
            record = evidence._replace(alert_id=firing.record.alert_id,
                                       fired_at=firing.record.fired_at,
                                       version=firing.record.version + 1)
            firing.record = record
            out.append(record)

    def _clear_step(self, series: Series, rule: str, firing: _Alert, cleared: bool, t: int,
                    needed: int, out: list[AlertRecord]) -> None:
        """One evaluation with enough answers: extend or break the clear streak; resolve once
        `needed` clear evaluations in a row span at least the hold period."""
        if not cleared:
            firing.clear_count = 0
            firing.cleared_since = None
            return
        if firing.cleared_since is None:
            firing.cleared_since = t
        firing.clear_count += 1
        if firing.clear_count >= needed and t - firing.cleared_since >= self.config.hold_ms:
            self._resolve(series, rule, firing, t, out)

    @staticmethod
    def _resolve(series: Series, rule: str, firing: _Alert, t: int, out: list[AlertRecord]
                 ) -> None:
        record = firing.record._replace(state="resolved", resolved_at=t,
                                        version=firing.record.version + 1)
        record = record._replace(message=describe(record))
        del series.alerts[rule]
        out.append(record)
        # The drop is over: the CUSUM starts again against a fresh reference (what it summed
        # during the episode would otherwise page the same drop a second time).
        series.cusum = 0.0
        series.cusum_since = None
        series.cusum_up = 0.0
        series.ref = None

    # -- queries and state --------------------------------------------------------------------

    def rolling(self, metric: str, segment_dim: str, segment_value: str, end_ms: int
                ) -> dict[int, Estimate]:
        """Estimates over the rolling windows ending at `end_ms` (within retention: window +
        baseline), keyed by window length in ms: the buckets merged into 1 h, 24 h, 7 d."""
        series = self._series.get((metric, segment_dim, segment_value))
        if series is not None:
            self._sync(series)
        kind = WINDOW_TYPES[metric] if series is None else series.kind
        out: dict[int, Estimate] = {}
        for length in self.rolling_ms:
            if series is None:
                out[length] = kind.from_vector([0.0] * len(kind.columns)).result()
            else:
                out[length] = kind.from_vector(self._sum(series, end_ms - length, end_ms)
                                               ).result()
        return out

    def series_keys(self) -> list[SeriesKey]:
        return sorted(self._series)

    def firing(self) -> list[AlertRecord]:
        return [a.record for k in sorted(self._series)
                for _, a in sorted(self._series[k].alerts.items())]

    def drain_dirty(self) -> set[SeriesKey]:
        """Series changed since the last call: every series stepped (a series waiting in the
        calendar is brought up first, as it would have been stepped), or given a partial."""
        for series in self._series.values():
            self._sync(series)
        out, self._dirty = self._dirty, set()
        return out

    def snapshot_key(self, key: SeriesKey) -> dict[str, Any] | None:
        """One series as JSON-able data (brought up to the watermark first), or None."""
        series = self._series.get(key)
        if series is None:
            return None
        self._sync(series)
        return series.snapshot()

    def snapshot_head(self, key: SeriesKey) -> dict[str, Any] | None:
        """One series' head (brought up to the watermark first): its `snapshot_key` but the
        buckets and partials, which its parts hold (`drain_parts`); None when not held."""
        series = self._series.get(key)
        if series is None:
            return None
        self._sync(series)
        return series.snapshot_head()

    def drain_parts(self, key: SeriesKey, every: bool = False
                    ) -> list[tuple[int, dict[str, Any] | None]]:
        """(first start, part or None) of each part of one series changed since the last
        call (`every`: each part it holds), in order; a part is the buckets and partials of
        `PART_BUCKETS` bucket widths, as `snapshot_key` lists them, None once it holds none.
        A series' head and its parts written together, and later heads and changed parts
        over them, give back its `snapshot_key` (`assemble`). Needs `keep_parts`."""
        series = self._series.get(key)
        if series is None or series.touched is None:
            raise ValueError(f"series {key!r}: parts are not kept")
        self._sync(series)
        part_ms = self._part_ms
        firsts = series.touched
        series.touched = set()
        if every:
            firsts = firsts | {s - s % part_ms for s in series.order[series.head:]}
        return [(first, series.snapshot_part(first, first + part_ms)) for first in sorted(firsts)]

    def restore_key(self, key: SeriesKey, state: dict[str, Any] | None) -> None:
        """Replace one series by `state` (from `snapshot_key`, or `assemble`d from a head and
        parts; None removes it)."""
        if state is None:
            self._series.pop(key, None)
        else:
            series = self._series[key] = Series.from_snapshot(state)
            if self.keep_parts:
                series.touched = set()
            series.plain = all(s % self.bucket_ms == 0 and min(v) >= 0.0
                               for s, at in series.held_partials().items()
                               for _, (_, v) in _partials_of(at))
            series.due = NEVER_MS  # a restored cursor may lag: evaluate on the next call
            heappush(self._calendar, (NEVER_MS, key))


    def snapshot(self) -> dict[str, Any]:
        """The whole detector (the state contract, `pipeline.core.protocol`): every series
        (`snapshot_key`), the watermark advanced to and the series changed since the last
        `drain_dirty`. `DropDetector(config, bucket_ms, rolling_ms, resume=...)` continues
        from it."""
        series = [self.snapshot_key(key) for key in sorted(self._series)]
        # after `snapshot_key` brought the series up: those it moved count as changed, as
        # `drain_dirty` (which brings every series up first) would report them
        return {"series": series, "watermark": self._watermark,
                "dirty": [list(key) for key in sorted(self._dirty)]}


def assemble(head: dict[str, Any], parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A series' `snapshot_key` from its head and parts (`DropDetector.drain_parts`), the
    parts in the order of their first starts.

    >>> assemble({"key": ["nps", "all", ""], "cursor": 0}, [
    ...     {"buckets": [[0, [1.0]]], "partials": []}, {"buckets": [[3600000, [2.0]]],
    ...     "partials": [[3600000, 0, 1, [2.0]]]}])["buckets"]
    [[0, [1.0]], [3600000, [2.0]]]
    """
    buckets: list[Any] = []
    partials: list[Any] = []
    for part in parts:
        buckets.extend(part["buckets"])
        partials.extend(part["partials"])
    return {**head, "buckets": buckets, "partials": partials}


def _series_key(raw: list[str]) -> SeriesKey:
    metric, dim, value = raw
    return (str(metric), str(dim), str(value))


def describe(alert: AlertRecord) -> str:
    """The plain sentence for a page, from the alert's evidence (issue 16, item 4): what moved,
    from where to where, over which span, on how many answers, and the p against the corrected
    threshold it passed (the false-alarm budget's, `thresholds`). Kept in the record's
    `message`.

    >>> from pipeline.core.records import AlertRecord
    >>> a = AlertRecord("a", "window_drop", "nps", "channel", "phone", "firing", "critical",
    ...                 3_600_000, None, 0, 3_600_000, -19.2, 28.4, 146, 9000, -33.0, -4.0,
    ...                 -47.6, 3e-10, 1, 4.17e-05)
    >>> print(describe(a))  # doctest: +NORMALIZE_WHITESPACE
    NPS on channel=phone fell from 28.4 to -19.2 over the last 1 h
    (n=146, p=3e-10 < 4.2e-05, critical)
    >>> print(describe(a._replace(rule="cusum_drift", metric="negative_end", value=0.31,
    ...                           baseline=0.2, window_start=-86_400_000, p_value=0.00012,
    ...                           threshold=None, state="resolved", resolved_at=18_000_000)))
    ... # doctest: +NORMALIZE_WHITESPACE
    negative-end share on channel=phone rose from 0.2 to 0.31 over the last 25 h
    (n=146, p=0.00012, critical); resolved at 1970-01-01T05:00:00.000Z
    """
    kind = WINDOW_TYPES.get(alert.metric)
    worse = "rose" if kind is not None and kind.direction < 0 else "fell"
    hours = (alert.window_end - alert.window_start) / HOUR_MS
    span = f"{hours:g} h"
    digits = kind.digits if kind is not None else 2
    passed = "" if alert.threshold is None else f" < {alert.threshold:.2g}"
    sentence = (f"{kind.title if kind is not None else alert.metric} on {alert.segment_dim}="
                f"{alert.segment_value} {worse} from {round(alert.baseline, digits):g} to "
                f"{round(alert.value, digits):g} over the last {span} (n={alert.n}, "
                f"p={alert.p_value:.2g}{passed}, {alert.severity})")
    if alert.state == "resolved" and alert.resolved_at is not None:
        sentence += f"; resolved at {format_ms(alert.resolved_at)}"
    return sentence
