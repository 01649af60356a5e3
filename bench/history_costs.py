"""Three costs of `peakend replay` that grew with the length of the history, measured one by one
(issue 13 item 5, docs/core.md "Cost over long histories", 2026-12-02):

1. `format_ms` per call over a sweep of one day and of 90 days, minute by minute, as
   metrics.jsonl is written (key order: each series sweeps the whole history);
2. pickling and loading the spilled metric records (`pipeline.metric_runs`) as NamedTuples
   and as plain tuples, chunks of `RUN_CHUNK`;
3. the follow-up tracker's deadline heap against its customers after replaying `--lines`
   lines of a history file.

    .venv/bin/python -m bench.history_costs HISTORY.jsonl [--lines 400000] [--rounds 3]

HISTORY: e.g. `bench/bench_history.py --path replay`'s `history-90d-777600.jsonl`. Parts 2 and 3
replay its first `--lines` lines in this process, as `peakend replay` does (4 partitions).
"""

from __future__ import annotations

import argparse
import pickle
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_replay_write import replayed
from bench.host import cpu_model, loadavg
from pipeline.core.records import MetricRecord
from pipeline.core.timefmt import format_ms
from pipeline.metric_runs import RUN_CHUNK

MINUTE = 60_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def format_us(days: int, calls: int = 200_000) -> float:
    """us per `format_ms` call, sweeping `days` minute by minute again and again."""
    sweep = [START + i * MINUTE + 12_345 for i in range(days * 1440)]
    started = time.perf_counter()
    done = 0
    while done < calls:
        for ms in sweep:
            format_ms(ms)
        done += len(sweep)
    return (time.perf_counter() - started) / done * 1e6


def pickle_us(records: list[MetricRecord], plain: bool) -> tuple[float, float]:
    """us per record to pickle and to load again, chunks of RUN_CHUNK."""
    chunks = [records[i:i + RUN_CHUNK] for i in range(0, len(records), RUN_CHUNK)]
    started = time.perf_counter()
    blobs = [pickle.dumps([tuple(r) for r in c] if plain else c, pickle.HIGHEST_PROTOCOL)
             for c in chunks]
    dumped = time.perf_counter()
    back: list[MetricRecord] = []
    for blob in blobs:
        loaded = pickle.loads(blob)
        back.extend([tuple.__new__(MetricRecord, v) for v in loaded] if plain else loaded)
    ended = time.perf_counter()
    if back != records or any(type(r) is not MetricRecord for r in back):
        raise SystemExit("history_costs: the records did not come back as they went")
    return (dumped - started) / len(records) * 1e6, (ended - dumped) / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("history", type=Path)
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"history_costs: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
          f"Python {platform.python_version()}, load {loadavg()}")
    for rnd in range(1, args.rounds + 1):
        print(f"  round {rnd}: format_ms over 1 day {format_us(1):.2f} us a call, "
              f"over 90 days {format_us(90):.2f}")
    replay, _, _ = replayed(args.history, spill=True, lines=args.lines)
    followups = replay.followups
    print(f"  after {args.lines:,} lines of {args.history.name}: follow-up deadline heap "
          f"{len(followups._deadlines):,} entries for {len(followups.customers):,} customers")
    records = list(replay.metrics.values())[:20_000]
    for rnd in range(1, args.rounds + 1):
        for plain in (False, True):
            dump, load = pickle_us(records, plain)
            print(f"  round {rnd}: {len(records):,} metric records as "
                  f"{'plain tuples' if plain else 'NamedTuples '}: pickle {dump:.2f} us, "
                  f"load {load:.2f} us a record")
    print(f"load at end: {loadavg()}")


if __name__ == "__main__":
    main()
