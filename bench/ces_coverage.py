"""Coverage of the CES mean's 95% interval at small n (issue 16): the core's Student t interval
(`CesWindow.result`) against the normal one it replaced (1.96), on seeded draws of 1-7 answers.

    .venv/bin/python -m bench.ces_coverage [--replicates 20000] [--seed 16]

Prints a Markdown table (docs/core.md quotes it): per n, the share of intervals that hold the
true mean of the answer distribution. Two mixes: a typical skewed one (most answers easy) and a
polarised one (answers at both ends).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime

from pipeline.core.stats import Z95
from pipeline.core.surveys import CesWindow

MIXES: dict[str, tuple[float, ...]] = {
    "skewed (mean 5.0)": (0.03, 0.05, 0.08, 0.14, 0.25, 0.27, 0.18),
    "polarised (mean 4.0)": (0.30, 0.05, 0.05, 0.20, 0.05, 0.05, 0.30),
}
SIZES = (2, 3, 4, 5, 10, 30, 100)
ANSWERS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)


def coverage(weights: tuple[float, ...], n: int, replicates: int, rng: random.Random
             ) -> tuple[float, float]:
    """(t coverage, normal coverage) of the true mean over `replicates` samples of n answers."""
    mean = sum(a * w for a, w in zip(ANSWERS, weights, strict=True))
    held_t = held_normal = 0
    for _ in range(replicates):
        window = CesWindow()
        for answer in rng.choices(ANSWERS, weights, k=n):
            window.update(answer)
        result = window.result()
        assert result.ci_low is not None and result.ci_high is not None
        held_t += result.ci_low <= mean <= result.ci_high
        m = window.total / n
        half = Z95 * math.sqrt(window.variance() / n)
        held_normal += max(1.0, m - half) <= mean <= min(7.0, m + half)
    return held_t / replicates, held_normal / replicates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.monotonic()
    print("| answers | n | t interval (core) | normal interval (before) |")
    print("|---|---:|---:|---:|")
    for name, weights in MIXES.items():
        for n in SIZES:
            t_cov, normal_cov = coverage(weights, n, args.replicates, rng)
            print(f"| {name} | {n} | {t_cov:.3f} | {normal_cov:.3f} |")
    load = os.getloadavg()[0]
    print(f"\n{args.replicates} samples per row, seed {args.seed}; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
          f"({os.cpu_count()} CPUs, load {load:.1f}), Python {platform.python_version()}, "
          f"{time.monotonic() - started:.0f} s; command: `.venv/bin/python "
          f"bench/ces_coverage.py --replicates {args.replicates} --seed {args.seed}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
