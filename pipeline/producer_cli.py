"""`peakend produce FILE.jsonl`: validate and send a file of events to the input topic."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from pipeline.contract import Rejected
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.jsonl import iter_records, open_binary
from pipeline.producer import DeliveryFailure, TouchpointProducer
from pipeline.settings import Settings

# Flush this often so delivery failures surface while the file is still being read.
_FLUSH_EVERY = 50_000
_SHOW_AT_MOST = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="one event per line; - for stdin")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: "
                                            "PEAKEND_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", help="input topic (default: PEAKEND_TOPIC_TOUCHPOINTS)")
    parser.add_argument("--dead-letters", action="store_true",
                        help="also send rejected lines to the dead-letter topic as DeadLetter "
                             "JSON (source_topic = the file, source_offset = the line number)")
    parser.add_argument("--dead-letter-topic",
                        help="dead-letter topic (default: PEAKEND_TOPIC_DEAD_LETTERS)")
    parser.add_argument("--max-bytes", type=int,
                        help="size limit per record (default: PEAKEND_MAX_EVENT_BYTES)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the broker to acknowledge at each flush")


def _show_failures(failures: list[DeliveryFailure]) -> None:
    for failure in failures[:_SHOW_AT_MOST]:
        print(f"delivery failed: event {failure.event_id!r} to {failure.topic}: {failure.error}",
              file=sys.stderr)
    if len(failures) > _SHOW_AT_MOST:
        print(f"... and {len(failures) - _SHOW_AT_MOST} more delivery failures", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    reasons: Counter[str] = Counter()
    failures: list[DeliveryFailure] = []
    accepted = dead_letters = shown = 0
    try:
        producer = TouchpointProducer(settings, bootstrap=args.bootstrap, topic=args.topic,
                                      dead_letter_topic=args.dead_letter_topic,
                                      max_event_bytes=args.max_bytes)
    except Exception as exc:  # NoBrokersAvailable, bad security options...
        print(f"peakend produce: cannot connect to Kafka at "
              f"{args.bootstrap or settings.kafka_bootstrap}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    try:
        with open_binary(args.file) as handle:
            for line, record in iter_records(handle):
                before = accepted + dead_letters
                try:
                    producer.send(record)
                    accepted += 1
                except Rejected as rejected:
                    reasons[rejected.reason] += 1
                    if shown < _SHOW_AT_MOST:
                        print(f"{args.file}:{line}: {rejected}", file=sys.stderr)
                        shown += 1
                    if args.dead_letters:
                        producer.send_dead_letter(DeadLetter.from_rejection(
                            rejected, original=record, source_topic=args.file,
                            source_partition=0, source_offset=line))
                        dead_letters += 1
                queued = accepted + dead_letters
                if queued > before and queued % _FLUSH_EVERY == 0:
                    failures += producer.flush(args.timeout, raise_on_failure=False).failures
    except OSError as exc:
        print(f"peakend produce: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        producer.close(args.timeout, raise_on_failure=False)
        return 2
    failures += producer.close(args.timeout, raise_on_failure=False).failures
    _show_failures(failures)

    rejected_total = sum(reasons.values())
    failed_events = sum(1 for f in failures if f.topic == producer.topic)
    failed_letters = len(failures) - failed_events
    report = f"sent {accepted - failed_events} to {producer.topic}, rejected {rejected_total}"
    if reasons:
        report += " (" + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + ")"
    if args.dead_letters:
        report += f", dead letters {dead_letters - failed_letters} to {producer.dead_letter_topic}"
    report += f", failed deliveries {len(failures)}"
    print(report)
    return 1 if rejected_total or failures else 0
