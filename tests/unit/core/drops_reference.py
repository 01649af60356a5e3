"""Reference for tests/unit/core/test_core_drops_history.py: `DropDetector` as it was before
`_forget_before` stopped scanning every stored bucket (git 66f351d, pipeline/core/drops.py,
verbatim below this docstring). Kept only to check that the bounded-cost detector gives the
same alerts, windows and state; do not use it elsewhere.

Issue 16 changed the rules, not the stepping: the evaluation methods (`_evaluate_window`
through `_resolve`) and the alert state are those of pipeline/core/drops.py now, copied
deliberately, so this still checks the calendar and bounded-cost stepping against stepping
every series at every boundary."""

from __future__ import annotations

import math
from typing import Any

from pipeline.core.config import DAY_MS, HOUR_MS, DropConfig
from pipeline.core.drops import _Alert, describe, one_sided_p, thresholds
from pipeline.core.records import AlertRecord, MetricRecord
from pipeline.core.stats import z_test
from pipeline.core.surveys import Estimate
from pipeline.core.timefmt import format_ms
from pipeline.core.vectors import (
    DIRECTION,
    SIZE,
    Vector,
    add,
    count,
    estimate,
    two_sample,
    vector_of,
    window,
)

SeriesKey = tuple[str, str, str]  # metric, segment_dim, segment_value


class Series:
    """Merged buckets of one metric and segment, with running window sums and alert state."""

    __slots__ = ("alerts", "base", "buckets", "cur", "cursor", "cusum", "cusum_since",
                 "cusum_up", "key", "partials", "ref", "since")

    def __init__(self, key: SeriesKey, cursor: int) -> None:
        self.key = key
        self.since = cursor  # first bucket seen: the CUSUM waits for a full baseline of history
        size = SIZE[key[0]]
        self.buckets: dict[int, Vector] = {}  # merged vector per bucket start
        self.partials: dict[tuple[int, int], tuple[int, Vector]] = {}  # (start, part) -> (ver, v)
        self.cursor = cursor  # boundary evaluated last; windows end here
        self.cur: Vector = [0.0] * size  # [cursor - window, cursor)
        self.base: Vector = [0.0] * size  # [cursor - window - baseline, cursor - window)
        self.cusum = 0.0
        self.cusum_since: int | None = None
        self.cusum_up = 0.0
        self.ref: tuple[float, float, int] | None = None  # (mean, per-answer sd, n)
        self.alerts: dict[str, _Alert] = {}

    def snapshot(self) -> dict[str, Any]:
        return {
            "key": list(self.key),
            "cursor": self.cursor,
            "since": self.since,
            "buckets": [[s, v] for s, v in sorted(self.buckets.items())],
            "partials": [[s, p, ver, v] for (s, p), (ver, v) in sorted(self.partials.items())],
            "cur": self.cur,
            "base": self.base,
            "cusum": self.cusum,
            "cusum_since": self.cusum_since,
            "cusum_up": self.cusum_up,
            "ref": None if self.ref is None else list(self.ref),
            "alerts": {rule: a.snapshot() for rule, a in sorted(self.alerts.items())},
        }

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> Series:
        metric, dim, value = state["key"]
        series = cls((metric, dim, value), int(state["cursor"]))
        series.since = int(state["since"])
        series.buckets = {int(s): list(v) for s, v in state["buckets"]}
        series.partials = {(int(s), int(p)): (int(ver), list(v))
                           for s, p, ver, v in state["partials"]}
        series.cur = list(state["cur"])
        series.base = list(state["base"])
        series.cusum = float(state["cusum"])
        series.cusum_since = state["cusum_since"]
        series.cusum_up = float(state["cusum_up"])
        ref = state["ref"]
        series.ref = None if ref is None else (float(ref[0]), float(ref[1]), int(ref[2]))
        for rule, alert_state in state["alerts"].items():
            series.alerts[rule] = _Alert.from_snapshot(alert_state)
        return series


class DropDetector:
    """Merged windows and drop alerts for every series (see the module docstring)."""

    def __init__(self, config: DropConfig | None = None, bucket_ms: int = 60_000,
                 rolling_ms: tuple[int, ...] = (HOUR_MS, DAY_MS, 7 * DAY_MS)) -> None:
        self.config = c = config or DropConfig()
        self.rolling_ms = rolling_ms
        if (c.window_ms % bucket_ms or c.baseline_ms % bucket_ms or HOUR_MS % bucket_ms
                or c.evaluate_every_ms % bucket_ms):
            raise ValueError("window, baseline, evaluation step and one hour must be multiples"
                             " of the bucket width")
        self.bucket_ms = bucket_ms
        self.thresholds = thresholds(c)
        self._series: dict[SeriesKey, Series] = {}
        self._min_effect = {"nps": c.min_nps_drop, "ces": c.min_ces_drop,
                            "csat": c.min_csat_drop, "negative_end": c.min_negative_end_rise}
        self._dirty: set[SeriesKey] = set()
        self._advanced_to = -(1 << 62)
        self._series_at_advance = -1

    # -- input --------------------------------------------------------------------------------

    def apply_partial(self, record: MetricRecord) -> None:
        """Take the latest state of one partial bucket (any partition, any order; a version not
        above the one already seen for that partial is ignored, so redelivery is harmless)."""
        key = (record.metric, record.segment_dim, record.segment_value)
        start = record.window_start
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Series(key, start)
        w, b = self.config.window_ms, self.config.baseline_ms
        series.since = min(series.since, start)
        if start < series.cursor - w - b:
            return  # older than anything still evaluated
        slot = (start, record.source_partition)
        old = series.partials.get(slot)
        if old is not None and old[0] >= record.version:
            return
        vector = vector_of(record)
        delta = list(vector)
        if old is not None:
            add(delta, old[1], -1.0)
        series.partials[slot] = (record.version, vector)
        merged = series.buckets.get(start)
        if merged is None:
            merged = series.buckets[start] = [0.0] * len(vector)
        add(merged, delta)
        if series.cursor - w <= start < series.cursor:
            add(series.cur, delta)
        elif series.cursor - w - b <= start < series.cursor - w:
            add(series.base, delta)
        self._dirty.add(key)

    # -- evaluation ---------------------------------------------------------------------------

    def advance(self, watermark_ms: int) -> list[AlertRecord]:
        """Evaluate every bucket boundary up to `watermark_ms` (negative_end trails by
        `negative_end_delay_ms`, the time its journeys need to close). Deterministic order."""
        out: list[AlertRecord] = []
        width = self.bucket_ms
        boundary = watermark_ms - watermark_ms % width
        if boundary <= self._advanced_to and len(self._series) == self._series_at_advance:
            return out  # no new boundary and no new series: every cursor is already there
        self._advanced_to = max(self._advanced_to, boundary)
        self._series_at_advance = len(self._series)
        for key in sorted(self._series):
            series = self._series[key]
            limit = watermark_ms
            if key[0] == "negative_end":
                limit -= self.config.negative_end_delay_ms
            limit -= limit % width
            while series.cursor < limit:
                if self._idle(series):
                    # nothing in either window and nothing firing: jump to the next data
                    ahead = [b for b in series.buckets if b >= series.cursor]
                    series.cursor = min(limit, min(ahead)) if ahead else limit
                    self._forget_before(series, series.cursor - self.config.window_ms
                                        - self.config.baseline_ms)
                    if series.cursor >= limit:
                        break
                self._step(series)
                out.extend(self._evaluate(series))
                self._dirty.add(key)
        return out

    @staticmethod
    def _idle(series: Series) -> bool:
        return (not series.alerts and not any(series.cur) and not any(series.base)
                and series.cusum == 0.0)

    def _step(self, series: Series) -> None:
        width = self.bucket_ms
        w, b = self.config.window_ms, self.config.baseline_ms
        series.cursor += width
        t = series.cursor
        entering = series.buckets.get(t - width)
        if entering is not None:
            add(series.cur, entering)
        moving = series.buckets.get(t - width - w)
        if moving is not None:
            add(series.cur, moving, -1.0)
            add(series.base, moving)
        leaving_start = t - width - w - b
        leaving = series.buckets.pop(leaving_start, None)
        if leaving is not None:
            add(series.base, leaving, -1.0)
            self._forget_before(series, leaving_start + width)

    @staticmethod
    def _forget_before(series: Series, start: int) -> None:
        for bucket in [b for b in series.buckets if b < start]:
            del series.buckets[bucket]
        for slot in [s for s in series.partials if s[0] < start]:
            del series.partials[slot]

    def _evaluate(self, series: Series) -> list[AlertRecord]:
        c = self.config
        metric = series.key[0]
        t = series.cursor
        out: list[AlertRecord] = []
        n = count(metric, series.cur)
        if t % c.evaluate_every_ms == 0:
            self._evaluate_window(series, t, n, out)
        if t % HOUR_MS == 0:
            self._evaluate_cusum(series, t, out)
        return out

    def _evaluate_window(self, series: Series, t: int, n: int, out: list[AlertRecord]) -> None:
        """The window test, one-sided in the bad direction, at the budget's threshold; while
        firing, the clear test against the baseline frozen when it fired (hysteresis)."""
        c = self.config
        metric = series.key[0]
        firing = series.alerts.get("window_drop")
        if n < c.min_n:
            return  # too few answers: neither a drop nor a sign it has cleared
        base = series.base if firing is None or firing.reference is None else firing.reference
        if count(metric, base) < c.min_baseline_n:
            return
        effect, p2 = two_sample(metric, series.cur, base)
        p = one_sided_p(effect, p2, DIRECTION[metric])
        bad = -effect * DIRECTION[metric]  # > 0: worse
        minimum = self._min_effect[metric]
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
        metric = series.key[0]
        if series.ref is None:
            self._anchor(series, t)
        # the hour's sum: the current window when that is the hour (t is the cursor)
        hour = self._sum(series, t - HOUR_MS, t)
        n = count(metric, hour)
        ref = series.ref
        if ref is None or n < c.cusum_min_hour_n or ref[1] <= 0:
            return
        value = estimate(metric, hour).value
        assert value is not None
        se = ref[1] / math.sqrt(n)
        z = (value - ref[0]) / se * DIRECTION[metric]
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
            up = (value - level) / se * DIRECTION[metric]
            series.cusum_up = max(0.0, series.cusum_up + up - c.cusum_k)
            if series.cusum_up > h:
                self._resolve(series, "cusum_drift", firing, t, out)
            return
        if series.cusum > h and not series.alerts and series.cusum_since is not None:
            run = self._sum(series, series.cusum_since, t)
            est = estimate(metric, run)
            if est.value is None:
                return
            effect = est.value - ref[0]
            p = one_sided_p(effect, z_test(effect, ref[1] ** 2 / est.n), DIRECTION[metric])
            if p >= self.thresholds.warning_p:
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
        metric = series.key[0]
        if t - series.since < self.config.window_ms + self.config.baseline_ms:
            return  # a reference from a short history would bias every later hour
        base = self._sum(series, t - self.config.window_ms - self.config.baseline_ms,
                         t - self.config.window_ms)
        n = count(metric, base)
        if n < self.config.min_baseline_n:
            return
        acc = window(metric, base)
        mean = acc.score()
        if mean is None:
            return
        series.ref = (mean, math.sqrt(acc.variance()), n)

    def _sum(self, series: Series, start: int, end: int) -> Vector:
        total = [0.0] * SIZE[series.key[0]]
        for s in range(start - start % self.bucket_ms, end, self.bucket_ms):
            v = series.buckets.get(s)
            if v is not None:
                add(total, v)
        return total

    def _evidence(self, series: Series, rule: str, t: int, start: int, current: Vector,
                  baseline: Vector | None, effect: float, p: float, threshold: float
                  ) -> AlertRecord:
        c = self.config
        metric, dim, value = series.key
        est = estimate(metric, current)
        if baseline is not None:
            base_value = estimate(metric, baseline).value
            base_n = count(metric, baseline)
        else:
            assert series.ref is not None
            base_value, base_n = series.ref[0], series.ref[2]
        critical = (abs(effect) >= c.critical_factor * self._min_effect[metric]
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
        out: dict[int, Estimate] = {}
        for length in self.rolling_ms:
            if series is None:
                out[length] = estimate(metric, [0.0] * SIZE[metric])
            else:
                out[length] = estimate(metric, self._sum(series, end_ms - length, end_ms))
        return out

    def series_keys(self) -> list[SeriesKey]:
        return sorted(self._series)

    def firing(self) -> list[AlertRecord]:
        return [a.record for k in sorted(self._series)
                for _, a in sorted(self._series[k].alerts.items())]

    def drain_dirty(self) -> set[SeriesKey]:
        out, self._dirty = self._dirty, set()
        return out

    def snapshot_key(self, key: SeriesKey) -> dict[str, Any] | None:
        series = self._series.get(key)
        return None if series is None else series.snapshot()

    def restore_key(self, key: SeriesKey, state: dict[str, Any] | None) -> None:
        self._series_at_advance = -1  # a restored cursor may lag: evaluate on the next call
        if state is None:
            self._series.pop(key, None)
        else:
            self._series[key] = Series.from_snapshot(state)

