"""`peakend validate FILE.jsonl`: check a file of events against schema v1, no servers needed."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.jsonl import iter_records, open_binary
from pipeline.contract.parser import parse_event
from pipeline.contract.rejected import Rejected
from pipeline.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="one event per line; - for stdin")
    parser.add_argument("--json", action="store_true",
                        help="print a dead-letter record (JSON) per bad line instead of text")
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="size limit per record (default: PEAKEND_MAX_EVENT_BYTES)")


def summary(total: int, reasons: Counter[str]) -> str:
    bad = sum(reasons.values())
    text = f"{total} records: {total - bad} valid, {bad} rejected"
    if reasons:
        text += " (" + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + ")"
    return text


def run(args: argparse.Namespace) -> int:
    max_bytes = args.max_bytes or Settings.from_env().max_event_bytes
    reasons: Counter[str] = Counter()
    total = 0
    try:
        with open_binary(args.file) as handle:
            for line, record in iter_records(handle):
                total += 1
                try:
                    parse_event(record, max_bytes=max_bytes)
                except Rejected as rejected:
                    reasons[rejected.reason] += 1
                    if args.json:
                        letter = DeadLetter.from_rejection(
                            rejected, original=record, source_topic=args.file,
                            source_partition=0, source_offset=line)
                        sys.stdout.write(letter.to_json().decode() + "\n")
                    else:
                        print(f"{args.file}:{line}: {rejected}")
    except OSError as exc:
        print(f"peakend validate: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(summary(total, reasons), file=sys.stderr if args.json else sys.stdout)
    return 1 if reasons else 0
