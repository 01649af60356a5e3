"""`peakend settings`: the effective configuration, one variable a line."""

from __future__ import annotations

import argparse

from pipeline.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docs", action="store_true", help="also print what each variable does")


def run(args: argparse.Namespace) -> int:
    for name, value, doc in Settings.from_env().describe():
        print(f"{name}={value}" + (f"    # {doc}" if args.docs else ""))
    return 0
