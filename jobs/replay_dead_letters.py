"""`peakend replay-dead-letters`: re-send dead letters that pass the contract now.

Reads the dead-letter topic (a snapshot up to its end offsets at start) or a dead_letters.jsonl
file, keeps the chosen reasons, re-validates each original record and sends those that pass to
the input topic, byte for byte. Running it twice re-sends twice; the journey core ignores an
event_id it has already applied, so that is harmless.

Letters written with pseudonymisation on (docs/privacy.md) hold their original encrypted: it is
opened with PEAKEND_DEAD_LETTER_KEY; letters whose original was not kept are counted as
`unrecoverable`, never re-sent from their redacted copy (its pseudonym would be hashed again).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.contract import REASONS, Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.jsonl import iter_records, open_binary
from pipeline.privacy import PersonalData
from pipeline.producer import DeliveryFailure, TouchpointProducer
from pipeline.settings import Settings


@dataclass
class ReplayCounts:
    read: int = 0
    skipped: int = 0  # reason not selected
    replayed: int = 0
    malformed: int = 0  # not a dead-letter record at all
    unrecoverable: int = 0  # original dropped or not decryptable (pipeline.privacy.reveal)
    still_rejected: Counter[str] = field(default_factory=Counter)
    failures: list[DeliveryFailure] = field(default_factory=list)

    def summary(self) -> str:
        still = sum(self.still_rejected.values())
        text = (f"read {self.read} dead letters: replayed {self.replayed}, still rejected {still}")
        if still:
            text += " (" + ", ".join(f"{r} {n}" for r, n in self.still_rejected.most_common()) + ")"
        text += f", skipped by reason {self.skipped}, malformed {self.malformed}, "
        if self.unrecoverable:
            text += f"original not recoverable {self.unrecoverable}, "
        return text + f"failed deliveries {len(self.failures)}"


def replay(records: Iterable[bytes], producer: TouchpointProducer, reasons: set[str],
           *, dry_run: bool = False, privacy: PersonalData | None = None) -> ReplayCounts:
    """Re-validate and re-send; `records` are dead-letter JSON documents."""
    counts = ReplayCounts()
    privacy = privacy or PersonalData()
    for record in records:
        counts.read += 1
        try:
            letter = DeadLetter.from_json(record)
        except ValueError as exc:
            counts.malformed += 1
            print(f"skipping malformed dead letter #{counts.read}: {exc}", file=sys.stderr)
            continue
        if letter.reason not in reasons:
            counts.skipped += 1
            continue
        try:
            original = privacy.reveal(letter)
        except ValueError as exc:
            counts.unrecoverable += 1
            if counts.unrecoverable <= 20:
                print(f"cannot replay dead letter #{counts.read} ({letter.source_topic} partition "
                      f"{letter.source_partition} offset {letter.source_offset}): {exc}",
                      file=sys.stderr)
            continue
        try:
            if dry_run:
                parse_event(original, max_bytes=producer.max_event_bytes)
            else:
                producer.send(original)
            counts.replayed += 1
        except Rejected as rejected:
            counts.still_rejected[rejected.reason] += 1
    return counts


def read_topic(topic: str, settings: Settings, bootstrap: str | None,
               idle_seconds: float) -> Iterator[bytes]:
    """Every record of `topic` up to its end offsets when the read starts; no consumer group."""
    from kafka import KafkaConsumer, TopicPartition

    options: dict[str, Any] = {
        "bootstrap_servers": (bootstrap or settings.kafka_bootstrap).split(","),
        "enable_auto_commit": False,
        "group_id": None,
        "client_id": "peakend-replay-dead-letters",
        **settings.kafka_client_options(),
    }
    consumer = KafkaConsumer(**options)
    try:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise SystemExit(f"peakend replay-dead-letters: topic {topic!r} does not exist")
        partitions = [TopicPartition(topic, n) for n in sorted(numbers)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        last_progress = time.monotonic()
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            batch = consumer.poll(timeout_ms=500)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_seconds:
                print(f"warning: no progress on {topic} for {idle_seconds:.0f} s before its "
                      "end offsets; stopping early", file=sys.stderr)
                break
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset < end[tp] and message.value is not None:
                        yield message.value
    finally:
        consumer.close()


def read_file(path: str) -> Iterator[bytes]:
    with open_binary(path) as handle:
        for _, record in iter_records(handle):
            yield record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", help="read a dead_letters.jsonl file instead of the topic")
    source.add_argument("--from-topic", help="dead-letter topic (default: "
                                             "PEAKEND_TOPIC_DEAD_LETTERS)")
    parser.add_argument("--reason", action="append", default=None,
                        help=f"replay only this reason (repeatable); default: the contract's "
                             f"own ({', '.join(REASONS)}); `late` ones only when asked")
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: PEAKEND_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", help="input topic to re-send to (default: "
                                        "PEAKEND_TOPIC_TOUCHPOINTS)")
    parser.add_argument("--max-bytes", type=int, help="size limit (default: "
                                                      "PEAKEND_MAX_EVENT_BYTES)")
    parser.add_argument("--dry-run", action="store_true",
                        help="count what would be replayed; send nothing")
    parser.add_argument("--idle-seconds", type=float, default=30.0,
                        help="stop reading the topic after this long without progress")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    reasons = set(args.reason or REASONS)
    source = args.file or args.from_topic or settings.topic_dead_letters
    try:
        producer = TouchpointProducer(settings, bootstrap=args.bootstrap, topic=args.topic,
                                      max_event_bytes=args.max_bytes)
    except Exception as exc:
        print(f"peakend replay-dead-letters: cannot connect to Kafka: {type(exc).__name__}: "
              f"{exc}", file=sys.stderr)
        return 2
    try:
        records = (read_file(args.file) if args.file else
                   read_topic(source, settings, args.bootstrap, args.idle_seconds))
        counts = replay(records, producer, reasons, dry_run=args.dry_run,
                        privacy=PersonalData.from_settings(settings))
    except OSError as exc:
        print(f"peakend replay-dead-letters: cannot read {source}: {exc}", file=sys.stderr)
        return 2
    finally:
        delivery = producer.close(raise_on_failure=False)
    counts.failures = list(delivery.failures)
    for failure in counts.failures[:20]:
        print(f"delivery failed: event {failure.event_id!r}: {failure.error}", file=sys.stderr)
    verb = "would replay" if args.dry_run else "to " + producer.topic
    print(f"{source}: {counts.summary()} ({verb})")
    return 1 if counts.failures or counts.malformed or counts.unrecoverable else 0
