"""The command line of the benchmarks that capture a core component's calls during a replay and
time them on a fresh component (`bench_followup_calls.py`, `bench_detector_calls.py`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def capture_or_time(description: str) -> argparse.Namespace:
    """`capture EVENTS OUT` or `time CAPTURE... [--repeat N] [--no-gc]`."""
    parser = argparse.ArgumentParser(description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("capture")
    record.add_argument("events", type=Path)
    record.add_argument("out", type=Path)
    run = commands.add_parser("time")
    run.add_argument("captures", type=Path, nargs="+")
    run.add_argument("--repeat", type=int, default=3)
    run.add_argument("--no-gc", action="store_true")
    return parser.parse_args()
