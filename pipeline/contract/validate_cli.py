"""`peakend validate FILE.jsonl`: check a file of events against schema v1, no servers needed.

Reads UTF-8 JSON Lines, plain or gzip (see `pipeline.contract.jsonl`). A file that is not JSON
Lines at all (UTF-16, one pretty-printed document, Parquet...) gets one line saying what it is
and exit status 2, not an error per line.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from pipeline.cliargs import whole
from pipeline.contract import parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.jsonl import NotJsonLines, iter_records, open_binary
from pipeline.contract.rejected import Rejected
from pipeline.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl",
                        help="one event per line, plain or gzip; - for stdin")
    parser.add_argument("--json", action="store_true",
                        help="print a dead-letter record (JSON) per bad line instead of text")
    parser.add_argument("--max-bytes", type=whole(1), default=None,
                        help="size limit per record (default: PEAKEND_MAX_EVENT_BYTES)")


def summary(total: int, reasons: Counter[str]) -> str:
    bad = sum(reasons.values())
    text = f"{total} records: {total - bad} valid, {bad} rejected"
    if reasons:
        text += " (" + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + ")"
    return text


def run(args: argparse.Namespace) -> int:
    max_bytes = args.max_bytes if args.max_bytes is not None else (
        Settings.from_env().max_event_bytes)
    reasons: Counter[str] = Counter()
    total = 0
    try:
        with open_binary(args.file) as handle:
            for line, record in iter_records(handle, args.file, note=_note):
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
    except NotJsonLines as exc:
        print(f"peakend validate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"peakend validate: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(summary(total, reasons), file=sys.stderr if args.json else sys.stdout)
    return 1 if reasons else 0


def _note(text: str) -> None:
    print(f"peakend validate: {text}", file=sys.stderr)
