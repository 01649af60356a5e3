"""Python computations of what the analyst SQL and the dashboard queries must return, from the
scenario's records (the same records that went into ClickHouse), plus result comparison."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pipeline.core.stats import adjusted_wald_nps, wilson
from pipeline.storage.tables import to_datetime
from tests.unit.storage.scenario import Scenario

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def norm(value: Any) -> Any:
    """Engine-neutral values: naive UTC datetimes, floats, ints."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC).replace(tzinfo=None)


def assert_rows(got: Sequence[Sequence[Any]], want: Sequence[Sequence[Any]], what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} rows, expected {len(want)}\n{got}\n{want}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w), f"{what} row {i}: {g} vs {w}"
        for j, (a, b) in enumerate(zip(g, w, strict=True)):
            a = norm(a)
            if isinstance(b, float) or isinstance(a, float):
                if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
                    assert (a is None and b is None) or (a is not None and b is not None
                                                       and math.isnan(a) and math.isnan(b)), (
                        f"{what} row {i} col {j}: {a!r} != {b!r}")
                    continue
                assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9), (
                    f"{what} row {i} col {j}: {a!r} != {b!r}\n{g}\n{w}")
            else:
                assert a == b, f"{what} row {i} col {j}: {a!r} != {b!r}\n{g}\n{w}"


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def nps_row(p: int, d: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    low, high = adjusted_wald_nps(p, d, n)
    return 100 * (p - d) / n, low, high


def ces_row(total: float, total_sq: float, n: int) -> tuple[float, float, float]:
    m = total / n
    var = 0.0 if n < 2 else max(0.0, (total_sq - total * total / n) / (n - 1))
    half = 1.96 * math.sqrt(var / n)
    return m, max(1.0, m - half), min(7.0, m + half)


def share_row(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    low, high = wilson(k, n)
    return k / n, low, high


def sums(sc: Scenario, metric: str, dim: str, key: Any, where: Any = None
         ) -> dict[Any, dict[str, float]]:
    """Sum the latest partials of one metric and segment dimension, grouped by key(record)."""
    out: dict[Any, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for m in sc.latest_metrics().values():
        if m.metric != metric or m.segment_dim != dim or (where and not where(m)):
            continue
        acc = out[key(m)]
        for name in ("n", "promoters", "passives", "detractors", "total", "total_sq", "easy",
                     "hard", "positives"):
            acc[name] += getattr(m, name)
    return out


def data_end_ms(sc: Scenario) -> int:
    return max(m.window_end for m in sc.metrics)


def expected(sc: Scenario) -> dict[str, list[tuple[Any, ...]]]:
    """Expected rows of every analyst-guide example, by example name."""
    latest = list(sc.latest_journeys().values())
    out: dict[str, list[tuple[Any, ...]]] = {}

    worst: dict[str, list[float]] = defaultdict(list)
    for j in latest:
        if j.worst_valence is not None and j.worst_valence < 0:
            worst[j.worst_touchpoint].append(j.worst_valence)
    out["worst_moment_touchpoints"] = sorted(
        ((tp, len(v), mean(v)) for tp, v in worst.items()), key=lambda r: (-r[1], r[0]))

    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for j in latest:
        if j.peak_valence is not None:
            counts[j.peak_touchpoint]["peaks"] += 1
            counts[j.peak_touchpoint]["negative_peaks"] += j.peak_valence < 0
        if j.end_valence is not None:
            counts[j.end_touchpoint]["ends"] += 1
            counts[j.end_touchpoint]["negative_ends"] += j.end_valence < 0
    ranking = [(tp, c["negative_peaks"], c["negative_ends"],
                c["negative_peaks"] + c["negative_ends"], c["peaks"], c["ends"])
               for tp, c in counts.items()]
    out["touchpoint_ranking"] = sorted(ranking, key=lambda r: (-r[3], -r[1], r[0]))[:10]

    end = data_end_ms(sc)
    week = 7 * DAY_MS
    by_channel = sums(
        sc, "nps", "channel",
        lambda m: (m.segment_value, "this_week" if m.window_start >= end - week // 1000 * 1000
                   else "last_week"),
        where=lambda m: m.window_start >= end - 2 * week)
    rows3 = []
    for (channel, period), s in sorted(by_channel.items()):
        n = int(s["n"])
        if n > 0:
            value, low, high = nps_row(int(s["promoters"]), int(s["detractors"]), n)
            rows3.append((channel, period, n, value, low, high))
    out["nps_by_channel_week_over_week"] = rows3

    stage: dict[str, list[bool]] = defaultdict(list)
    for j in latest:
        if j.status == "closed" and j.end_valence is not None:
            stage[j.end_stage].append(j.end_valence < 0)
    out["negative_end_share_by_stage"] = sorted(
        ((s, len(v), sum(v), sum(v) / len(v)) for s, v in stage.items()),
        key=lambda r: (-r[3], r[0]))

    ces = sums(sc, "ces", "touchpoint", lambda m: m.segment_value)
    rows5 = []
    for tp, s in ces.items():
        n = int(s["n"])
        if n:
            value, low, high = ces_row(s["total"], s["total_sq"], n)
            rows5.append((tp, n, value, low, high, s["hard"] / n))
    out["effort_by_touchpoint"] = sorted(rows5, key=lambda r: (r[2], r[0]))

    resolved_by_journey: dict[str, int] = {}
    for e in sc.events:
        signals = e.get("signals") or {}
        if (e["touchpoint"] == "hotline" and (signals.get("transfers") or 0) >= 1
                and e.get("journey_id") is not None):
            jid = e["journey_id"]
            resolved_by_journey[jid] = max(resolved_by_journey.get(jid, 0),
                                           1 if signals.get("resolved") else 0)
    groups: dict[int, list[float]] = defaultdict(list)
    by_id = {j.journey_id: j for j in latest}
    for jid, resolved in resolved_by_journey.items():
        found = by_id.get(jid)
        if found is not None and found.end_valence is not None:
            groups[resolved].append(found.end_valence)
    out["endings_after_hotline_transfer"] = [
        (r, len(v), mean(v), sum(x < 0 for x in v) / len(v)) for r, v in sorted(groups.items())]

    good_bad: dict[tuple[str, str], list[float]] = defaultdict(list)
    for j in latest:
        if (j.peak_valence is not None and j.peak_valence >= 0.5 and j.end_valence is not None
                and j.end_valence < 0):
            good_bad[(j.peak_touchpoint, j.end_touchpoint)].append(j.peak_end_score or 0.0)
    out["peak_good_end_bad_by_end_touchpoint"] = sorted(
        ((p, e, len(v), mean(v)) for (p, e), v in good_bad.items()),
        key=lambda r: (-r[2], r[0], r[1]))

    day_start = max(m.window_start for m in sc.metrics) // DAY_MS * DAY_MS
    hourly = sums(sc, "nps", "all", lambda m: m.window_start // HOUR_MS * HOUR_MS,
                  where=lambda m: m.window_start >= day_start)
    out["nps_hourly_last_day"] = [
        (dt(h), int(s["n"]), *nps_row(int(s["promoters"]), int(s["detractors"]), int(s["n"])))
        for h, s in sorted(hourly.items())]

    alerts = sorted(sc.latest_alerts().values(), key=lambda a: (-a.fired_at, a.alert_id))
    out["alert_history"] = [
        (a.alert_id, a.rule, a.metric, a.segment_dim, a.segment_value, a.state, a.severity,
         dt(a.fired_at), None if a.resolved_at is None else dt(a.resolved_at), a.value,
         a.baseline, a.effect, a.n, a.baseline_n, a.p_value, a.threshold, a.message)
        for a in alerts]

    reasons: dict[str, list[datetime]] = defaultdict(list)
    for d in sc.dead_letters:
        received = to_datetime(d.to_dict()["received_at"])
        assert received is not None
        reasons[d.reason].append(received)
    out["dead_letters_by_reason"] = sorted(
        ((r, len(v), min(v), max(v)) for r, v in reasons.items()), key=lambda r: (-r[1], r[0]))

    csat = sums(sc, "csat", "region", lambda m: (m.window_start // DAY_MS * DAY_MS,
                                                 m.segment_value))
    out["csat_by_region_daily"] = [
        (dt(day), region, int(s["n"]), *share_row(int(s["positives"]), int(s["n"])))
        for (day, region), s in sorted(csat.items()) if s["n"] >= 30]

    flat: dict[str, list[float]] = defaultdict(list)
    for j in latest:
        if j.peak_valence is not None and abs(j.peak_valence) < 0.2:
            flat[j.end_touchpoint].append(j.mean_valence or 0.0)
    out["flat_journeys_by_end_touchpoint"] = sorted(
        ((tp, len(v), mean(v)) for tp, v in flat.items()), key=lambda r: (-r[1], r[0]))

    gaps: dict[str, list[float]] = defaultdict(list)
    for j in latest:
        if j.peak_end_score is not None and j.mean_valence is not None:
            gaps[j.end_stage].append(j.peak_end_score - j.mean_valence)
    out["peak_end_vs_mean_gap"] = [
        (s, len(v), mean(v), sum(abs(x) >= 0.3 for x in v)) for s, v in sorted(gaps.items())]

    waits: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for e in sc.events:
        if e["touchpoint"] == "hotline" and e["type"] == "interaction":
            occurred = to_datetime(e["occurred_at"])
            assert occurred is not None
            waits[occurred.date()].append(e.get("signals") or {})
    rows14 = []
    for day, sigs in sorted(waits.items()):
        w = [s["wait_seconds"] for s in sigs if s.get("wait_seconds") is not None]
        rows14.append((day, len(sigs), mean(w) if w else None,
                       sum((s.get("transfers") or 0) >= 3 for s in sigs),
                       sum(1 for s in sigs if s.get("resolved") is True) / len(sigs)))
    out["hotline_waits_daily"] = rows14
    return out
