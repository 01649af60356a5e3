"""Whether `peakend replay` makes reference cycles, and what its cyclic collector costs.

    .venv/bin/python -m bench.replay_cycles FILE [--rounds 2]

Runs `peakend replay FILE` in fresh processes, alternating two collector settings: `policy`
(what the command does: `gcpolicy.tune_gc` and the young-collection pacer) and `off` (automatic
collection disabled before the command starts; its explicit collections still run). After the
command, one full collection: with the collector off, what it finds unreachable is every
object the command left in a reference cycle (issue 13 item 5, docs/core.md "Cost over long
histories": 0 at 1 day and at 90). Per run: the command's CPU per line (from after its imports,
as `bench.bench_history --path replay` times it), its young collections, the unreachable
objects found, the load.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_history import load_replay, timed_replay
from bench.host import loadavg
from pipeline.cliargs import whole

SETTINGS = ("policy", "off")


def measure(path: str, setting: str) -> dict[str, float]:
    """One replay of `path` in this process under `setting`; the collector is left as found."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown collector setting {setting!r}")
    load_replay()  # imported before the collections are counted
    with open(path, "rb") as handle:
        lines = sum(1 for _ in handle)
    enabled = gc.isenabled()
    try:
        with tempfile.TemporaryDirectory(prefix="replay-cycles-") as out:
            before = gc.get_stats()[0]["collections"]
            spent = timed_replay(path, out, setting)
            young = gc.get_stats()[0]["collections"] - before
            gc.disable()  # nothing collects between the command and the count below
            unreachable = gc.collect()
    finally:
        if enabled:
            gc.enable()
    return {"cpu_us_per_line": spent / max(1, lines) * 1e6, "young": young,
            "unreachable": unreachable, "lines": lines}


def run_child(path: str, setting: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "bench.replay_cycles", path, "--one", setting],
                          check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="a JSON Lines file of events (e.g. jobs.generate's)")
    parser.add_argument("--rounds", type=whole(1, 100), default=2)
    parser.add_argument("--one", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not Path(args.events).is_file():
        parser.error(f"{args.events}: no such file")
    if args.one:
        print(json.dumps(measure(args.events, args.one)))
        return 0
    print(f"replay_cycles: {Path(args.events).name}, load {loadavg()}")
    for round_ in range(args.rounds):
        order = SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]
        for setting in order:
            r = run_child(args.events, setting)
            print(f"  round {round_ + 1}, collector {setting:6}: {r['cpu_us_per_line']:6.1f} us "
                  f"per line, {r['young']:,.0f} young collections, {r['unreachable']:,.0f} "
                  f"unreachable objects after the command (load {loadavg()})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
