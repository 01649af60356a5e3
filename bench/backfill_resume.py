"""CPU of a resumed backfill: recomputing from the first row vs restoring the engine's state.

    .venv/bin/python -m bench.backfill_resume [--events 500000] [--span 1d] [--stop 0.8]
                                              [--batch-rows 100000] [--partitions 4]

Generates a file (N events over --span, peakend generate's defaults otherwise), then, for each
way to resume, runs in a fresh process a backfill interrupted after --stop of the rows
(`stop_after_rows`, the tests' simulated crash: everything read so far is written and
checkpointed) and in another fresh process the backfill resumed from that checkpoint:
- `recompute`: no engine state saved (`--snapshot-every never`): the resumed run reads every
  row again and runs the core over the prefix without writing (the only way before issue 19);
- `state`: the engine's state saved after every batch (`--snapshot-every 0`; the last save is
  at the interruption): the resumed run loads it and reads only the rows after it.
Core only (no ClickHouse: the inserts are the same in both), one process (`--workers 1`).
Prints user+sys CPU seconds of each process (interpreter start and imports included), the
state file's size and, for `state`, what the saves cost in the interrupted run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _child(args: argparse.Namespace) -> None:
    """One backfill run (the interrupted or the resumed one) in this process."""
    from dataclasses import replace

    import pipeline.core_build
    from jobs.backfill import BackfillOptions, Interrupted, run_backfill
    from jobs.backfill import serial as serial_module
    from jobs.backfill.checkpoint import Checkpoint
    from pipeline.settings import Settings

    # thread CPU seconds of each state save: the snapshot and its encoding (the main thread),
    # the state file written (the writer thread)
    costs: dict[str, list[float]] = {"snapshot": [], "encode": [], "file": []}
    encode = serial_module.encode_state  # type: ignore[attr-defined]
    save_state = Checkpoint.save_state
    snapshot = serial_module.Backfill.snapshot

    def timed(name: str, function: Any) -> Any:
        def call(*a: Any) -> Any:
            started = time.thread_time()
            out = function(*a)
            costs[name].append(time.thread_time() - started)
            return out
        return call

    serial_module.encode_state = timed("encode", encode)  # type: ignore[attr-defined]
    Checkpoint.save_state = timed("file", save_state)  # type: ignore[method-assign]
    serial_module.Backfill.snapshot = timed("snapshot", snapshot)  # type: ignore[method-assign]
    config = Settings.from_env().core_config()
    config = replace(config, clock=replace(config.clock, now_ms=4_102_444_800_000))
    options = BackfillOptions(
        partitions=args.partitions, batch_rows=args.batch_rows, workers=1,
        checkpoint_path=Path(args.checkpoint), target="bench",
        # the resumed part saves with the default cadence (none in a short run)
        snapshot_seconds=None if args.way == "recompute" else (
            0.0 if args.phase == "first" else BackfillOptions.snapshot_seconds),
        stop_after_rows=args.stop_rows if args.phase == "first" else None)
    try:
        result = run_backfill([args.file], None, config, options)
        print(f"  rows read {result.rows:,}, restored from {result.restored_from}, "
              f"compiled core {pipeline.core_build.COMPILED}")
    except Interrupted as exc:
        print(f"  {exc}, compiled core {pipeline.core_build.COMPILED}")
    if args.phase == "first" and args.way == "state" and costs["file"]:
        print(f"  {len(costs['file'])} state saves; the last: Backfill.snapshot "
              f"{costs['snapshot'][-1]:.2f} s + orjson {costs['encode'][-1]:.2f} s (main "
              f"thread), write + fsync {costs['file'][-1]:.2f} s (writer thread) CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--span", default="1d")
    parser.add_argument("--stop", type=float, default=0.8)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--ways", default="recompute,state",
                        help="which resumes to measure (default both)")
    parser.add_argument("--tmp", default=None, help="directory for the file and checkpoints")
    # the child's arguments
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--stop-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _child(args)
        return
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="peakend-resume-"))
    tmp.mkdir(parents=True, exist_ok=True)
    events = tmp / "events.parquet"
    python = sys.executable
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    if not events.exists():
        subprocess.run([str(Path(python).parent / "peakend"), "generate",
                        "--events", str(args.events), "--span", args.span, "--to", "parquet",
                        "--output", str(events), "--quiet"], check=True, cwd=ROOT)
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(events).metadata.num_rows
    stop_rows = int(rows * args.stop)
    print(f"{rows:,} rows ({args.events:,} events over {args.span}), interrupted after "
          f"{stop_rows:,} rows read (whole batches of {args.batch_rows:,}), "
          f"{args.partitions} partitions")
    for way in args.ways.split(","):
        checkpoint = tmp / f"{way}.json"
        for old in tmp.glob(f"{way}.*"):
            old.unlink()
        for phase in ("first", "resumed"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            subprocess.run([python, "-m", "bench.backfill_resume", "--phase", phase, "--way",
                            way, "--file", str(events), "--checkpoint", str(checkpoint),
                            "--stop-rows", str(stop_rows), "--partitions", str(args.partitions),
                            "--batch-rows", str(args.batch_rows)], check=True, cwd=ROOT)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            states = [p for p in tmp.glob(f"{way}.state-*")]
            size = f", state file {states[0].stat().st_size / 1e6:.0f} MB" if states else ""
            print(f"{way:9} {phase:8} {cpu:6.1f} s CPU, {time.monotonic() - started:6.1f} s "
                  f"wall{size}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
