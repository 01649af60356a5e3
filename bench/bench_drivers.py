"""Key drivers over a million journeys on one core (issue 18: "under a minute").

    .venv/bin/python bench/bench_drivers.py [--journeys 1000000] [--bootstrap 200]

Journeys with planted importances (10 touchpoints, each visited with probability 0.4, so ~4
moments and one NPS answer per journey, as `jobs.planted`) are made in memory first as core
events (not timed: reading and validating JSON is the contract's cost, measured by
bench_contract.py). Timed, in CPU seconds of this process with BLAS held to one thread:

1. features: every journey and every event into `FeatureBuilder` (journey matching, valence
   through the core's `moment_valence`, the outcome) and `build()`;
2. analysis: `analyse()` with the exact Shapley decomposition (2^10 subsets) and the bootstrap.

Prints a Markdown section for docs/benchmarks.md with the machine, date and load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # one core: set before numpy loads its BLAS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import pipeline.core_build  # noqa: E402
from jobs.drivers import FeatureBuilder, analyse, top_negative  # noqa: E402
from pipeline.core.event import Survey, TouchpointEvent  # noqa: E402
from pipeline.core.scoring import ScoringRules  # noqa: E402
from pipeline.core.valence import moment_valence  # noqa: E402

WEIGHTS = {"hotline": 0.9, "delivery": 0.6, "checkout": 0.4, "returns": 0.3, "chat": 0.2,
           "store_visit": 0.15, "app_login": 0.1, "search": 0.05, "billing": 0.02, "email": 0.0}
START_MS = 1_788_220_800_000
AT = datetime.fromtimestamp(START_MS / 1000, UTC)


def make(first: int, count: int, rng: random.Random) -> list[TouchpointEvent]:
    """The events of journeys first .. first + count - 1."""
    names = list(WEIGHTS)
    scale = sum(WEIGHTS.values())
    events: list[TouchpointEvent] = []
    for j in range(first, first + count):
        jid = f"j{j}"
        total = 0.0
        for name in names:
            if rng.random() < 0.4:
                valence = round(rng.uniform(-1.0, 1.0), 3)
                total += WEIGHTS[name] * valence
                events.append(TouchpointEvent(f"{jid}-{name}", AT, "bench", jid, "interaction",
                                              name, "web", "use", jid, valence=valence,
                                              occurred_ms=START_MS + j))
        nps = max(0, min(10, round(5 + 5 * (total + rng.gauss(0.0, 0.3)) / scale)))
        events.append(TouchpointEvent(f"{jid}-s", AT, "bench", jid, "survey", "survey", "web",
                                      "use", jid, survey=Survey(nps=nps),
                                      occurred_ms=START_MS + j + 1))
    return events


CHUNK = 50_000  # journeys made (untimed) and fed (timed) at a time: memory stays small


def sample_sizes(sizes: list[int], bootstrap: int) -> None:
    """How many journeys with an answer the analysis needs: for each size, the planted model
    (10 drivers) analysed with the bootstrap, as an analyst would see it."""
    rules = ScoringRules.load()
    print("\n### Sample size (planted model, 10 drivers, weights "
          f"{', '.join(f'{k} {v}' for k, v in WEIGHTS.items())})\n")
    print("| journeys with NPS | R^2 | top-3 ranking right | hotline share [95% CI] | "
          "drivers significant (of 9 with weight > 0) | email (weight 0) significant |")
    print("|---:|---:|---|---|---:|---|")
    for n in sizes:
        builder = FeatureBuilder()
        for j in range(n):
            builder.journey(f"j{j}", "journey_id", f"j{j}", START_MS, START_MS + 10, "closed",
                            None, "")
        for event in make(0, n, random.Random(n)):
            builder.event(event, moment_valence(event, rules))
        results = {d.driver: d for d in analyse(builder.build(), bootstrap=bootstrap, seed=1,
                                                default_expectation=0.0)}
        ranking = sorted(results, key=lambda d: -results[d].importance)
        hot = results["hotline"]
        r2 = hot.r2
        planted = sum(1 for k, w in WEIGHTS.items() if w > 0 and results[k].significant)
        print(f"| {n:,} | {r2:.2f} | {ranking[:3] == list(WEIGHTS)[:3]} | "
              f"{hot.share:.0%} [{hot.importance_low / r2:.0%}, {hot.importance_high / r2:.0%}] "
              f"| {planted} | {results['email'].significant} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--sample-sizes", default="",
                        help="comma-separated journey counts: only the sample-size table")
    args = parser.parse_args()
    if args.sample_sizes:
        sample_sizes([int(x) for x in args.sample_sizes.split(",")], args.bootstrap)
        return
    load_before = os.getloadavg()
    rules = ScoringRules.load()
    rng = random.Random(1)
    builder = FeatureBuilder()
    cpu_features = wall_features = 0.0
    events = 0
    for first in range(0, args.journeys, CHUNK):
        count = min(CHUNK, args.journeys - first)
        chunk = make(first, count, rng)
        events += len(chunk)
        cpu, wall = time.process_time(), time.perf_counter()
        for j in range(first, first + count):
            builder.journey(f"j{j}", "journey_id", f"j{j}", START_MS, START_MS + 10, "closed",
                            None, "")
        for event in chunk:
            builder.event(event, moment_valence(event, rules))
        cpu_features += time.process_time() - cpu
        wall_features += time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    features = builder.build()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    cpu0 = cpu1 - (cpu1 - cpu) - cpu_features
    wall0 = wall1 - (wall1 - wall) - wall_features
    results = analyse(features, method="auto", bootstrap=args.bootstrap, seed=1,
                      default_expectation=0.0)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    load_after = os.getloadavg()

    by_importance = [d.driver for d in sorted(results, key=lambda d: -d.importance)]
    planted = [name for name in WEIGHTS if WEIGHTS[name] > 0.05]
    recovered = by_importance[: len(planted)] == planted
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    top = top_negative(results)
    print(f"## Key drivers (issue 18): {args.journeys:,} journeys on one core\n")
    print(f"`.venv/bin/python bench/bench_drivers.py --journeys {args.journeys} --bootstrap "
          f"{args.bootstrap}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, git {commit}, "
          f"{os.cpu_count()} vCPU {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, numpy {np.__version__} (BLAS one thread), core "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'}; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after (other engineers' tests share "
          "the machine). CPU: seconds of CPU time of the process; wall: elapsed seconds.\n")
    print("| stage | CPU s | wall s | what |")
    print("|---|---:|---:|---|")
    print(f"| features | {cpu1 - cpu0:.1f} | {wall1 - wall0:.1f} | {args.journeys:,} journeys, "
          f"{events:,} core events into `FeatureBuilder`, `build()` |")
    print(f"| analysis | {cpu2 - cpu1:.1f} | {wall2 - wall1:.1f} | `analyse()`: "
          f"{results[0].method}, {len(results)} drivers, {args.bootstrap} bootstrap "
          "resamples |")
    print(f"| total | {cpu2 - cpu0:.1f} | {wall2 - wall0:.1f} | |\n")
    print(f"R^2 {results[0].r2:.3f}; planted ranking recovered: {recovered} "
          f"({', '.join(by_importance)}); fix first: {top.driver if top else '-'}.")


if __name__ == "__main__":
    main()
