"""What grows per event in `peakend replay` between a short and a long history: py-spy samples
of the whole command on two JSONL files, inclusive time per function in us per event, sorted by
growth (issue 13 item 5, docs/core.md "Cost over long histories").

    .venv/bin/python -m bench.profile_replay SHORT.jsonl LONG.jsonl [--short-runs 5] [--top 30]

The short file is replayed `--short-runs` times (a run of a day is about a second, most of it
start-up: its samples are pooled), the long one once; `--rate` samples per second. Start-up
(imports) is in both, so functions that only run at start show as a shrinking share. Files:
`bench/bench_history.py --path replay` leaves `history-<days>d-<n>.jsonl` in its `--dir`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.host import cpu_model, loadavg

ROOT = Path(__file__).resolve().parents[1]


def inclusive(profile: Path) -> tuple[Counter[str], int]:
    """Samples per function (each function once per stack) and the total, from py-spy's raw
    format (`frame;frame;... COUNT`, each frame `function (file:line)`)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack:
            continue
        samples = int(number)
        total += samples
        for name in {frame.split(" (")[0] for frame in stack.split(";")}:
            counts[name] += samples
    return counts, total


def record(events: Path, runs: int, rate: int, folder: Path, native: bool = False
           ) -> tuple[Counter[str], int]:
    """Pooled samples of `runs` replays of `events`, and the events replayed; `native`: C
    frames too (the compiled core's functions by their mypyc names, `CPyDef_...`)."""
    pooled: Counter[str] = Counter()
    lines = sum(1 for _ in events.open("rb"))
    for run in range(runs):
        profile = folder / f"{events.stem}-{run}.txt"
        with tempfile.TemporaryDirectory(prefix="profile-replay-") as out:
            subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--rate",
                            str(rate), "--format", "raw", "--output", str(profile),
                            *(["--native"] if native else []), "--",
                            sys.executable, "-m", "pipeline.cli", "replay", str(events),
                            "--output", out], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        counts, _ = inclusive(profile)
        pooled.update(counts)
    return pooled, lines * runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("short", type=Path)
    parser.add_argument("long", type=Path)
    parser.add_argument("--short-runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--native", action="store_true",
                        help="sample C frames too: the compiled core shows by function")
    args = parser.parse_args()
    print(f"profile_replay: {cpu_model()}, load {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="profile-replay-") as folder:
        short, short_events = record(args.short, args.short_runs, args.rate, Path(folder),
                                      args.native)
        long, long_events = record(args.long, 1, args.rate, Path(folder), args.native)
    us_per_sample = 1e6 / args.rate

    def per_event(counts: Counter[str], name: str, events: int) -> float:
        return float(counts[name] * us_per_sample / events)

    rows = sorted(((per_event(long, name, long_events) - per_event(short, name, short_events),
                    name) for name in short.keys() | long.keys()), reverse=True)
    print(f"us per event, inclusive: {args.short.name} ({short_events:,} events over "
          f"{args.short_runs} runs) -> {args.long.name} ({long_events:,} events); "
          f"load {loadavg()}")
    for growth, name in rows[:args.top]:
        print(f"{per_event(short, name, short_events):8.1f} -> "
              f"{per_event(long, name, long_events):8.1f}  ({growth:+7.1f})  {name}")


if __name__ == "__main__":
    main()
