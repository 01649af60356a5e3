"""User and system CPU and peak RSS of `peakend replay FILE` from several source trees, one
tree at a time, alternating (issue 13 item 5, docs/core.md "Cost over long histories"), and
whether their output files are byte-identical.

    .venv/bin/python -m bench.replay_rusage FILE --tree /work/main --tree /tmp/before [--rounds 2]

Each `--tree` is a checkout (e.g. `git archive REV | tar -x -C DIR`, with `build/` copied in
for the compiled core); the command runs there with this virtualenv's Python. `--hold-all`
instead runs replay's loop twice in this tree, alternating: holding every metric record (as
before `pipeline.metric_runs`) and holding none, to see what holding them costs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.host import cpu_model, loadavg


def run_tree(tree: Path, events: Path, out: Path) -> tuple[float, float, int]:
    """User CPU s, system CPU s, peak RSS KiB of one `peakend replay` in `tree` (`os.wait4`:
    that child's own usage)."""
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "replay", str(events),
                                "--output", str(out)], cwd=tree, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"peakend replay in {tree} failed (status {status})")
    return usage.ru_utime, usage.ru_stime, usage.ru_maxrss


def held_metrics_loop(events: Path, hold: bool) -> float:
    """CPU us per line of replay's loop (`bench.bench_replay_write.replayed`, as `peakend
    replay` drives it) in a fresh process, holding every metric record or none."""
    code = ("from pathlib import Path\n"
            "from bench.bench_replay_write import replayed\n"
            f"_, lines, seconds = replayed(Path({str(events)!r}), hold_metrics={hold})\n"
            "print(seconds / lines * 1e6)\n")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--tree", type=Path, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hold-all", action="store_true")
    args = parser.parse_args()
    print(f"replay_rusage: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, nproc {os.cpu_count()}, "
          f"{cpu_model()}, Python {platform.python_version()}, load {loadavg()}")
    if args.hold_all:
        for round_ in range(1, args.rounds + 1):
            for hold in (True, False):
                per_line = held_metrics_loop(args.events, hold)
                print(f"  round {round_}: metric records {'all held' if hold else 'none held'}"
                      f": {per_line:.1f} us/line (load {loadavg()})", flush=True)
        return
    if not args.tree:
        parser.error("give --tree at least once, or --hold-all")
    with tempfile.TemporaryDirectory(prefix="replay-rusage-") as scratch:
        outputs = {tree: Path(scratch) / f"out{i}" for i, tree in enumerate(args.tree)}
        for round_ in range(1, args.rounds + 1):
            for tree in args.tree:
                user, system, rss_kib = run_tree(tree.resolve(), args.events, outputs[tree])
                print(f"  round {round_}: {tree}: user {user:.1f} s, system {system:.1f} s, "
                      f"peak RSS {rss_kib / 1024:,.0f} MB (load {loadavg()})", flush=True)
        first = outputs[args.tree[0]]
        names = sorted(p.name for p in first.iterdir())
        same = all(filecmp.cmp(first / name, outputs[tree] / name, shallow=False)
                   for tree in args.tree[1:] for name in names)
        print(f"output files byte-identical across trees: {same}")


if __name__ == "__main__":
    main()
