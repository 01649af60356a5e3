"""A consumer group's commit history for one topic partition, read back from __consumer_offsets.

    .venv/bin/python -m bench.commit_history GROUP TOPIC PARTITION [--bootstrap HOST:PORT,...]

Prints each committed offset that differs from the one before it, with the broker's time of the
commit (UTC). Used to trace issue 20 (docs/reliability.md): a partition whose first commit jumps
from nothing past offsets no agent acked. The bootstrap defaults to the loopback cluster's
(scripts/cluster.sh env).
"""

from __future__ import annotations

import argparse
import struct
from collections.abc import Iterator
from datetime import UTC, datetime

OFFSET_COMMIT_KEY_VERSIONS = (0, 1)  # version 2 keys are group metadata, not offsets


def _string(buf: bytes, at: int) -> tuple[str, int]:
    """A Kafka protocol STRING (int16 length, UTF-8) at `at`; returns it and the next position.

    >>> _string(b"\\x00\\x02ab\\x00", 0)
    ('ab', 4)
    """
    size = struct.unpack_from(">h", buf, at)[0]
    return buf[at + 2:at + 2 + size].decode(), at + 2 + size


def offset_commit(key: bytes, value: bytes | None) -> tuple[str, str, int, int] | None:
    """(group, topic, partition, offset) of an __consumer_offsets record, or None when it is
    not an offset commit (group metadata, a tombstone).

    >>> key = b"\\x00\\x01" + b"\\x00\\x01g" + b"\\x00\\x01t" + struct.pack(">i", 7)
    >>> offset_commit(key, b"\\x00\\x03" + struct.pack(">q", 42) + b"rest")
    ('g', 't', 7, 42)
    >>> offset_commit(b"\\x00\\x02\\x00\\x01g", b"...") is None
    True
    """
    if value is None or len(key) < 2:
        return None
    if struct.unpack_from(">h", key, 0)[0] not in OFFSET_COMMIT_KEY_VERSIONS:
        return None
    group, at = _string(key, 2)
    topic, at = _string(key, at)
    partition = struct.unpack_from(">i", key, at)[0]
    return group, topic, partition, struct.unpack_from(">q", value, 2)[0]


def history(bootstrap: str, group: str, topic: str, partition: int
            ) -> Iterator[tuple[datetime, int]]:
    """(commit time, offset) of each change of the group's committed offset."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer("__consumer_offsets", bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000)
    last = None
    try:
        for record in consumer:
            commit = offset_commit(record.key or b"", record.value)
            if commit is None or commit[:3] != (group, topic, partition) or commit[3] == last:
                continue
            last = commit[3]
            yield datetime.fromtimestamp(record.timestamp / 1000, UTC), last
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("partition", type=int)
    parser.add_argument("--bootstrap", default=None,
                        help="Kafka bootstrap servers (default: scripts/cluster.sh's)")
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap
    if bootstrap is None:
        from bench.cluster import ClusterStack

        bootstrap = ClusterStack().variables()["PEAKEND_KAFKA_BOOTSTRAP"]
    for at, offset in history(bootstrap, args.group, args.topic, args.partition):
        print(f"{at:%H:%M:%S.%f}"[:-3], offset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
