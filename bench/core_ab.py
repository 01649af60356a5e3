"""The core's bench paths in several checkouts, alternating, one process per tree and round.

    .venv/bin/python -m bench.core_ab TREE [TREE ...] [--rounds 3] [--events 100000]

Timings on this shared 2-vCPU machine move by 20-30% from one minute to the next, so two
versions are compared in one run, round by round (docs/core.md, Performance). Each tree runs
with its own `bench/bench_core.py` and its own compiled build (`scripts/compile_core.py` in that
tree), `run_tracker_and_buckets` and `run_engine` under the state collector policy, best of 3
each in a process forked after generation (`bench_core.measure_forked`). Trees from before the
content digest existed run as they were.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

PATHS = ("run_tracker_and_buckets", "run_engine")

# Run in the tree, whose directory comes first on the path.
CHILD = """
import sys
from bench import bench_core as b
from pipeline.core.config import CoreConfig
events = b.generate({events})
rates = []
for name in {paths!r}:
    cpu, _, _ = b.measure_forked(getattr(b, name), events, CoreConfig(), "state gc policy", 3)
    rates.append(len(events) / cpu)
print(" ".join(f"{{r:.0f}}" for r in rates))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    code = CHILD.format(events=args.events, paths=PATHS)
    rates: dict[Path, list[list[float]]] = {tree: [] for tree in args.trees}
    print(f"events/s per CPU second, state gc policy, best of 3; load {os.getloadavg()[0]:.1f}")
    for round_ in range(1, args.rounds + 1):
        for tree in args.trees:
            out = subprocess.run([sys.executable, "-c", code], cwd=tree, check=True,
                                 capture_output=True, text=True).stdout.split()
            rates[tree].append([float(x) for x in out])
            print(f"round {round_} {tree}: " + ", ".join(
                f"{name} {float(x):,.0f}" for name, x in zip(PATHS, out, strict=True)),
                flush=True)
    print(f"medians (load {os.getloadavg()[0]:.1f}), and their ratio to {args.trees[0]}:")
    first = [statistics.median(r[i] for r in rates[args.trees[0]]) for i in range(len(PATHS))]
    for tree, runs in rates.items():
        medians = [statistics.median(r[i] for r in runs) for i in range(len(PATHS))]
        print(f"{tree}: " + ", ".join(
            f"{name} {m:,.0f} ({m / f:.2f})"
            for name, m, f in zip(PATHS, medians, first, strict=True)))


if __name__ == "__main__":
    main()
