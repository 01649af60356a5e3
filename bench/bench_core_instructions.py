"""Instructions per event of the core's hot path, counted by valgrind (deterministic).

    .venv/bin/python -m bench.bench_core_instructions [--events 40000] [--path apply|many]
        [--tree DIR ...]

Timing on a shared 2-vCPU machine moves by 20-30% with the neighbours' load; an instruction
count does not, so docs/core.md judges each hot-path change by this figure. It runs the same
process twice under `valgrind --tool=callgrind`: once only generating `bench_core.generate(N)`
events (and warming up), once also running the path (tuned gc), and prints the difference per
event. `PEAKEND_PURE_CORE=1` measures the interpreted core. Needs valgrind (apt install valgrind).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run with `-c` in the repository root, where the current directory, first on the child's path,
# holds `bench` and `pipeline`.
CHILD = """
try:
    from pipeline.core_build import COMPILED
except ImportError:  # a tree from before pipeline/core_build.py
    from pipeline.core import COMPILED
from bench import bench_core
from bench.bench_core import generate, run_engine_batched, run_tracker_and_buckets
from pipeline.core.config import CoreConfig
from pipeline.core.gcpolicy import tuned_gc
fn = {{"apply": run_tracker_and_buckets, "many": run_engine_batched}}[{path!r}]
events = generate({events})
config = CoreConfig()
fn(events[:2000], config)  # imports and first-call work outside the difference
# the run computes every digest (the warm-up kept some); trees from before digests have none
getattr(bench_core, "forget_digests", lambda events: None)(events)
if {run}:
    with tuned_gc():
        fn(events, config)
print("compiled" if COMPILED else "interpreted")
"""


def instructions(path: str, events: int, run: bool, tree: Path = ROOT) -> tuple[int, str]:
    code = CHILD.format(path=path, events=events, run=run)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, "-c", code],
            capture_output=True, text=True, check=True, cwd=tree)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{proc.stderr[-2000:]}")
    return int(found.group(1)), proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--path", choices=("apply", "many"), default="apply",
                        help="apply: tracker + buckets per event (bench_core's "
                             "run_tracker_and_buckets); many: engine.process_many")
    parser.add_argument("--tree", type=Path, action="append",
                        help="measure the checkout in this directory, with its own compiled "
                             "build (repeatable; default: this one)")
    args = parser.parse_args()
    for tree in args.tree or [ROOT]:
        base, _ = instructions(args.path, args.events, run=False, tree=tree)
        total, core = instructions(args.path, args.events, run=True, tree=tree)
        print(f"{tree}: {args.path}, {args.events:,} events, {core} core "
              f"(PEAKEND_PURE_CORE={os.environ.get('PEAKEND_PURE_CORE', '')!r}): "
              f"{(total - base) // args.events:,} instructions per event", flush=True)


if __name__ == "__main__":
    main()
