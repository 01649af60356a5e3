"""Alert quality of the drop detector on synthetic streams: false pages, delays, episodes.

    .venv/bin/python -m bench.alert_quality [--seed 16] [--series 50] [--null-days 60]
        [--replicates 40] [--quick] [--core-root DIR] [--section NAME] [--write docs/alerts.md]

Issue 16. Drives `pipeline.core.drops.DropDetector` exactly as the stream's segment stage and
`peakend replay` do (stage two: merged partial bucket records, `advance` to each bucket's end),
with the deployment's default configuration (`Settings.from_env({}).core_config().drops`), over
synthetic per-series bucket counts drawn from seeded numpy generators:

- null runs: `--series` series of one metric (NPS, then CES) at ~100 and ~400 answers per hour
  (Poisson counts per hourly bucket), no change for `--null-days` days after an 8-day
  warm-up. Reported per day for the whole deployment: false warnings (firing episodes) and false
  critical pages (episodes that are or become critical).
- sudden drops (NPS -10 and -20 points, CES -0.5 and -1.0) at ~100 and ~400 answers per hour:
  `--replicates` independent series each, the drop starting at a random quarter hour of day 8,
  sustained 48 h, then back to the level before for 48 h. Reported: detection delay from the
  drop's start to the first firing (median and 90th percentile, over replicates; a replicate not
  detected within the 48 h counts as 48 h+), firing episodes during the drop (target: one),
  and how many resolved once after the drop ended (within its 48 h of recovery).
- slow declines of 1 and 2 NPS points per day from day 8 (for 6 days) at ~400 (and ~100)
  answers per hour: delay to the first firing.

`--core-root DIR` runs the core of another checkout (e.g. a worktree at the commit before the
change) with this script: the "before" table in docs/alerts.md was measured that way.
`--write FILE` replaces the section `--section` (between `<!-- alert_quality:NAME:begin -->`
and `<!-- alert_quality:NAME:end -->`) with the tables, machine, date, load and command.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

HOUR = 3_600_000
DAY = 24 * HOUR
BUCKET = HOUR  # hourly partials: the window test and the CUSUM read whole hours
QUARTERS = (0.125, 0.375, 0.625, 0.875)  # where in a bucket its answers' drop is sampled
WARMUP_DAYS = 8
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a midnight

# Answer distributions before any change. NPS 25: 45% promoters, 35% passives, 20% detractors.
NPS_BASE = (0.45, 0.35, 0.20)
# CES on the 1-7 scale (higher = easier), mean about 5.1, sd about 1.5.
CES_BASE = (0.03, 0.05, 0.08, 0.14, 0.25, 0.28, 0.17)
CES_POINTS = np.arange(1, 8, dtype=float)


def nps_probabilities(drop_points: float) -> tuple[float, float, float]:
    """NPS_BASE with `drop_points` of NPS moved from promoters to detractors (half each)."""
    p, q, d = NPS_BASE
    shift = drop_points / 200.0
    return p - shift, q, d + shift


def ces_probabilities(drop: float) -> np.ndarray:
    """CES_BASE exponentially tilted so that its mean is `drop` lower (bisection)."""
    base = np.array(CES_BASE)
    target = float(base @ CES_POINTS) - drop
    lo, hi = -5.0, 5.0
    for _ in range(80):
        theta = (lo + hi) / 2
        w = base * np.exp(theta * CES_POINTS)
        w /= w.sum()
        if float(w @ CES_POINTS) > target:
            hi = theta
        else:
            lo = theta
    return w


@dataclass(frozen=True)
class Stream:
    """A synthetic series: its metric, answers per hour and the change (drop size as a function
    of hours since the change started; 0 before it)."""

    metric: str
    per_hour: float
    change_at: int  # epoch ms; the change's start
    drop: Callable[[float], float]  # hours since change_at -> drop size (>= 0)


def bucket_vectors(rng: np.random.Generator, stream: Stream, start: int, end: int
                   ) -> list[tuple[int, list[float]]]:
    """(bucket start, metric vector) for every non-empty bucket in [start, end)."""
    starts = np.arange(start, end, BUCKET, dtype=np.int64)
    counts = rng.poisson(stream.per_hour * BUCKET / HOUR, size=len(starts))
    # A bucket's answers are a mixture over its quarters (the change can start mid-bucket):
    # for a multinomial, averaging the answer probabilities is drawing from that mixture.
    hours = ((starts - stream.change_at) / HOUR).tolist()
    drops = np.array([statistics.fmean(stream.drop(h + q) if h + q >= 0 else 0.0
                                       for q in QUARTERS) for h in hours])
    out: list[tuple[int, list[float]]] = []
    if stream.metric == "nps":
        shift = drops / 200.0
        pvals = np.stack([NPS_BASE[0] - shift, np.full_like(shift, NPS_BASE[1]),
                          NPS_BASE[2] + shift], axis=1)
        draws = rng.multinomial(counts, pvals)
        for s, row in zip(starts.tolist(), draws.tolist(), strict=True):
            if sum(row):
                out.append((s, [float(x) for x in row]))
        return out
    cache: dict[float, np.ndarray] = {}
    for d in set(drops.tolist()):
        cache[d] = ces_probabilities(d)
    pvals = np.stack([cache[d] for d in drops.tolist()])
    draws = rng.multinomial(counts, pvals)
    for s, row in zip(starts.tolist(), draws, strict=True):
        n = int(row.sum())
        if n:
            total = float(row @ CES_POINTS)
            total_sq = float(row @ (CES_POINTS * CES_POINTS))
            out.append((s, [float(n), total, total_sq, float(row[4:].sum()),
                            float(row[:3].sum())]))
    return out


def metric_record(metric: str, value: str, start: int, v: list[float]) -> Any:
    from pipeline.core.records import MetricRecord

    if metric == "nps":
        n = int(sum(v))
        return MetricRecord(metric, "channel", value, start, start + BUCKET, 0, n, None, None,
                            None, int(v[0]), int(v[1]), int(v[2]), 0.0, 0.0, 0, 0, 0, 1)
    return MetricRecord(metric, "channel", value, start, start + BUCKET, 0, int(v[0]), None,
                        None, None, 0, 0, 0, v[1], v[2], int(v[3]), int(v[4]), 0, 1)


def run_detector(rng: np.random.Generator, streams: Sequence[Stream], end: int) -> list[Any]:
    """Every alert record of one detector over the streams (series `s0`, `s1`, ...), fed in
    bucket order and advanced to each bucket's end, as stage two is."""
    from pipeline.core.drops import DropDetector
    from pipeline.settings import Settings

    config = Settings.from_env({}).core_config().drops
    detector = DropDetector(config, BUCKET)
    by_bucket: dict[int, list[Any]] = {}
    for i, stream in enumerate(streams):
        for s, v in bucket_vectors(rng, stream, START, end):
            by_bucket.setdefault(s, []).append(metric_record(stream.metric, f"s{i}", s, v))
    alerts: list[Any] = []
    for s in range(START, end, BUCKET):
        for record in by_bucket.get(s, ()):
            detector.apply_partial(record)
        alerts.extend(detector.advance(s + BUCKET))
    return alerts


@dataclass
class Episodes:
    """Firing episodes per series: (fired_at, resolved_at or None, ever critical)."""

    by_series: dict[str, list[list[Any]]]

    @classmethod
    def of(cls, alerts: list[Any]) -> Episodes:
        by_id: dict[str, list[Any]] = {}
        by_series: dict[str, list[list[Any]]] = {}
        for a in alerts:
            if a.alert_id not in by_id:
                episode = [a.fired_at, None, False, a.rule]
                by_id[a.alert_id] = episode
                by_series.setdefault(a.segment_value, []).append(episode)
            episode = by_id[a.alert_id]
            episode[2] = episode[2] or a.severity == "critical"
            if a.state == "resolved":
                episode[1] = a.resolved_at
        return cls(by_series)


def null_run(seed: int, metric: str, per_hour: float, series: int, days: int
             ) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    streams = [Stream(metric, per_hour, 1 << 62, lambda h: 0.0) for _ in range(series)]
    end = START + (WARMUP_DAYS + days) * DAY
    episodes = Episodes.of(run_detector(rng, streams, end))
    counted = [e for eps in episodes.by_series.values() for e in eps
               if e[0] >= START + WARMUP_DAYS * DAY]
    return {
        "warnings": len(counted) / days,
        "critical": sum(1 for e in counted if e[2]) / days,
        "window": sum(1 for e in counted if e[3] == "window_drop") / days,
        "cusum": sum(1 for e in counted if e[3] == "cusum_drift") / days,
    }


class DropRun(TypedDict):
    """What `drop_run` measured over its replicates."""

    delays: list[float]  # hours from the change to the first firing (inf: none during it)
    episodes: list[int]  # firing episodes during the change, per replicate
    resolved_once: int
    replicates: int
    span: int  # hours the change lasts


def drop_run(seed: int, metric: str, per_hour: float, size: float, replicates: int,
             sudden: bool) -> DropRun:
    """Sudden: a drop of `size` for 48 h then recovery; slow: `size` per day for 6 days."""
    rng = np.random.default_rng(seed)
    changes = [START + WARMUP_DAYS * DAY + int(rng.integers(0, 4)) * HOUR // 4
               for _ in range(replicates)]
    span = 48 if sudden else 6 * 24
    if sudden:
        def shape(h: float) -> float:
            return size if h < span else 0.0
    else:
        def shape(h: float) -> float:
            return size * min(h, span) / 24.0
    streams = [Stream(metric, per_hour, at, shape) for at in changes]
    end = START + WARMUP_DAYS * DAY + (span + (48 if sudden else 1) + 2) * HOUR
    episodes = Episodes.of(run_detector(rng, streams, end))
    delays: list[float] = []
    counts: list[int] = []
    resolved_once = 0
    for i, at in enumerate(changes):
        eps = episodes.by_series.get(f"s{i}", [])
        during = [e for e in eps if at <= e[0] < at + span * HOUR]
        counts.append(len(during))
        delays.append(min((e[0] - at) / HOUR for e in during) if during else float("inf"))
        if sudden and len(during) == 1:
            resolved = during[0][1]
            later = [e for e in eps if e[0] >= at + span * HOUR]
            if resolved is not None and resolved >= at + span * HOUR and not later:
                resolved_once += 1
    return {"delays": delays, "episodes": counts, "resolved_once": resolved_once,
            "replicates": replicates, "span": span}


def fmt_delay(values: list[float], q: float, span: int) -> str:
    ordered = sorted(values)
    x = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if q < 1 else ordered[-1]
    if q == 0.5:
        x = statistics.median(ordered)
    return f"> {span} h" if x == float("inf") else f"{x:.2f} h"


def git_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


_CORE_CHILD = "PEAKEND_ALERT_QUALITY_CORE"  # set in the child that runs another checkout's core


def _pipeline_root() -> Path | None:
    """The checkout whose `pipeline` package this process imports (None: none found)."""
    spec = importlib.util.find_spec("pipeline")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--null-days", type=int, default=60)
    parser.add_argument("--replicates", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10 null days, 12 replicates")
    parser.add_argument("--core-root", type=Path, default=ROOT,
                        help="checkout whose pipeline/ core to run (default: this one)")
    parser.add_argument("--section", default="after")
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.null_days, args.replicates = 10, 12
    core_root = args.core_root.resolve()
    if _pipeline_root() != core_root:
        # Another checkout's core: this file again, in a child whose PYTHONPATH finds that
        # checkout's `pipeline` (a script's own directory, bench/, holds none).
        if os.environ.get(_CORE_CHILD) == str(core_root):
            raise SystemExit(f"--core-root {core_root}: no pipeline package to import there")
        env = {**os.environ, _CORE_CHILD: str(core_root), "PYTHONPATH": os.pathsep.join(
            filter(None, (str(core_root), os.environ.get("PYTHONPATH"))))}
        args_again = sys.argv[1:] if argv is None else list(argv)
        return subprocess.run([sys.executable, __file__, *args_again], env=env,
                              check=False).returncode
    began = time.time()
    lines: list[str] = []
    lines.append(f"False alarms on null data: {args.series} series for {args.null_days} days "
                 f"each (after an {WARMUP_DAYS}-day warm-up), per day for the deployment:")
    lines.append("")
    lines.append("| metric | answers/h per series | false warnings/day | false critical "
                 "pages/day | of which window_drop | of which cusum_drift |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    seed = args.seed
    for metric in ("nps", "ces"):
        for rate in (100.0, 400.0):
            seed += 1
            r = null_run(seed, metric, rate, args.series, args.null_days)
            lines.append(f"| {metric} | {rate:.0f} | {r['warnings']:.2f} | {r['critical']:.2f}"
                         f" | {r['window']:.2f} | {r['cusum']:.2f} |")
            print(lines[-1], flush=True)
    lines.append("")
    lines.append(f"Drops: {args.replicates} series per row, the change at a random quarter "
                 f"hour of day {WARMUP_DAYS}; delay = first firing - start of the change; "
                 "episodes = firings during the drop (sudden: 48 h; slow: 6 days).")
    lines.append("")
    lines.append("| scenario | answers/h | detected | delay median | delay p90 | episodes "
                 "per drop (mean, max) | fired once and resolved once after recovery |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    scenarios: list[tuple[str, str, float, bool]] = [
        ("NPS -20 points, sudden", "nps", 20.0, True),
        ("NPS -10 points, sudden", "nps", 10.0, True),
        ("CES -1.0, sudden", "ces", 1.0, True),
        ("CES -0.5, sudden", "ces", 0.5, True),
        ("NPS -2 points/day, slow", "nps", 2.0, False),
        ("NPS -1 point/day, slow", "nps", 1.0, False),
    ]
    for name, metric, size, sudden in scenarios:
        for rate in (100.0, 400.0):
            seed += 1
            d = drop_run(seed, metric, rate, size, args.replicates, sudden)
            detected = sum(1 for delay in d["delays"] if delay != float("inf"))
            eps = d["episodes"]
            once = f"{d['resolved_once']}/{d['replicates']}" if sudden else "-"
            lines.append(
                f"| {name} | {rate:.0f} | {detected}/{d['replicates']} | "
                f"{fmt_delay(d['delays'], 0.5, d['span'])} | "
                f"{fmt_delay(d['delays'], 0.9, d['span'])} | "
                f"{statistics.mean(eps):.2f}, {max(eps)} | {once} |")
            print(lines[-1], flush=True)
    took = time.time() - began
    load = os.getloadavg()
    lines.append("")
    lines.append(
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC on {platform.machine()}"
        f" ({os.cpu_count()} CPUs, load {load[0]:.1f}), Python {platform.python_version()}, "
        f"core at git {git_commit(args.core_root)}, {took:.0f} s; command: "
        f"`.venv/bin/python -m bench.alert_quality --seed {args.seed} --series {args.series} "
        f"--null-days {args.null_days} --replicates {args.replicates}"
        + ("" if args.core_root.resolve() == ROOT else " --core-root <checkout>") + "`.")
    text = "\n".join(lines)
    print(text)
    if args.write is not None:
        write_section(args.write, args.section, text)
    return 0


def write_section(path: Path, section: str, text: str) -> None:
    begin = f"<!-- alert_quality:{section}:begin -->"
    end = f"<!-- alert_quality:{section}:end -->"
    doc = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc = f"{head}{begin}\n{text}\n{end}{tail}"
    else:
        doc = f"{doc.rstrip()}\n\n{begin}\n{text}\n{end}\n"
    path.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
