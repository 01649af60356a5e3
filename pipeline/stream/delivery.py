"""The worker's outputs to Kafka in batches, outside Faust's per-record producer path.

Why: a py-spy profile of the worker on the generator's default mix (docs/streaming.md,
"Throughput work") spent about a third of its time sending output records one at a time through
Faust's producer buffer (`send_soon`: a queue entry, a `publish_message`, an aiokafka `send` and
a callback per record). Here the records of one flush are grouped by topic and partition and
each group leaves as one aiokafka `BatchBuilder` (`send_batch`): the per-record work is one
`append` into a batch built in C.

Placement is Kafka's default partitioner (the one Faust's producer uses): a keyed record goes to
`murmur2(key) % partitions`, a record with an explicit partition there. Order is kept per topic
partition (records of one group keep their order; groups of one partition leave one after the
other), so a watermark still follows the contributions sent before it.

Delivery: `deliver()` sends everything added so far and returns when the broker acknowledged
all of it (acks=all). It holds a lock while doing so, so a caller returns only after every
record added before its call is delivered, whoever sent it. A send that fails (a broker away) is
retried from a new producer until it succeeds; a record may then reach the broker twice, which
every consumer of these topics absorbs (upserts by key and version, at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pipeline.core.partitioner import murmur2
from pipeline.stream.outbox import Record

log = logging.getLogger(__name__)

Group = tuple[str, int, list[tuple[bytes | None, bytes | None]]]  # topic, partition, (key, value)s


class BatchProducer(Protocol):
    """What delivery uses of aiokafka's AIOKafkaProducer."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record (aiokafka's and the Java client's).

    >>> partition_of(b"foobar", 12), partition_of(b"c1", 1)
    (6, 0)
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions if partitions > 1 else 0


def group(records: Iterable[Record], topic_of: dict[str, str],
          partitions: Callable[[str], int]) -> list[Group]:
    """Records grouped by (topic, partition), in the order each group first appears; records
    keep their order inside a group. A record without key or partition goes to partition 0.

    >>> rs = [Record("j", b"foobar", b"1"), Record("c", None, b"w", 2), Record("j", b"foobar", b"2")]
    >>> group(rs, {"j": "journeys", "c": "contributions"}, lambda topic: 12)
    [('journeys', 6, [(b'foobar', b'1'), (b'foobar', b'2')]), ('contributions', 2, [(None, b'w')])]
    """  # noqa: E501
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    counts: dict[str, int] = {}
    # The partition of each (topic, key) once per call: a flush repeats keys (a segment's
    # metric key for each of its buckets), and murmur2 per record cost more than the grouping.
    placed: dict[tuple[str, bytes], int] = {}
    for record in records:
        topic = topic_of[record.role]
        if record.partition is not None:
            partition = record.partition
        elif record.key is not None:
            known = placed.get((topic, record.key))
            if known is None:
                count = counts.get(topic)
                if count is None:
                    count = counts[topic] = partitions(topic)
                known = placed[(topic, record.key)] = partition_of(record.key, count)
            partition = known
        else:
            partition = 0
        groups.setdefault((topic, partition), []).append((record.key, record.value))
    return [(topic, partition, items) for (topic, partition), items in groups.items()]


class BatchDelivery:
    """Output records of the worker, sent in batches (see the module docstring)."""

    def __init__(self, make_producer: Callable[[], BatchProducer], topic_of: dict[str, str],
                 *, retry_seconds: float = 1.0) -> None:
        self.make_producer = make_producer
        self.topic_of = topic_of
        self.retry_seconds = retry_seconds
        self._pending: list[Record] = []
        self._producer: BatchProducer | None = None
        self._partitions: dict[str, int] = {}
        self._lock = asyncio.Lock()
        # (topic, partition) -> offset of the last record the broker acknowledged there: where
        # a state table's changelog stands (pipeline/stream/state_writer.py)
        self.last_offsets: dict[tuple[str, int], int] = {}

    def add(self, records: Iterable[Record]) -> None:
        """Queue records to send at the next `deliver()` (synchronous: any caller may)."""
        self._pending.extend(records)

    def __len__(self) -> int:
        return len(self._pending)

    async def deliver(self) -> None:
        """Send what is queued; return when every record queued before the call is
        acknowledged by the broker."""
        async with self._lock:
            delay = self.retry_seconds
            while self._pending:
                records, self._pending = self._pending, []
                try:
                    await self._send(records)
                except asyncio.CancelledError:
                    self._pending[:0] = records
                    raise
                except Exception as exc:
                    self._pending[:0] = records  # sent again, in the same order
                    log.warning("outputs: %s: %s; sending %d records again in %.0f s",
                                type(exc).__name__, exc, len(self._pending), delay)
                    if "TooLarge" in type(exc).__name__:
                        # no retry helps: say which record, so an operator can act
                        largest = max(records, key=lambda r: len(r.key or b"")
                                      + len(r.value or b""))
                        log.error("outputs: the largest record waiting, %d bytes to %s, is "
                                  "over what the broker accepts (its message.max.bytes, the "
                                  "topic's max.message.bytes); the worker cannot go on until "
                                  "the limit is raised",
                                  len(largest.key or b"") + len(largest.value or b""),
                                  self.topic_of.get(largest.role, largest.role))
                    await self._drop_producer()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)

    async def _send(self, records: list[Record]) -> None:
        producer = await self._ensure_producer()
        for topic in {self.topic_of[r.role] for r in records} - self._partitions.keys():
            self._partitions[topic] = len(await producer.partitions_for(topic))
        futures = []
        sent: list[tuple[str, int, int]] = []  # topic, partition, records of each batch
        for topic, partition, items in group(records, self.topic_of, self._partitions.__getitem__):
            batch = producer.create_batch()
            count = 0
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # full: this one leaves, the record starts the next
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    sent.append((topic, partition, count))
                    batch, count = producer.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a {len(value or b'')}-byte record to {topic} is "
                                         "larger than the producer's batch size")
                count += 1
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            sent.append((topic, partition, count))
        for (topic, partition, count), metadata in zip(sent, await asyncio.gather(*futures),
                                                       strict=True):
            base = getattr(metadata, "offset", None)  # aiokafka's RecordMetadata: first offset
            if base is not None and count:
                tp = (topic, partition)
                self.last_offsets[tp] = max(self.last_offsets.get(tp, -1), base + count - 1)

    async def _ensure_producer(self) -> BatchProducer:
        if self._producer is None:
            producer = self.make_producer()
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (for at most `timeout` seconds: a broker away must not hold a
        shutdown up), then close the producer. What is left undelivered is safe to drop: the
        events it came from are acknowledged only after `deliver()` returned, so they are read
        again and their outputs derived again."""
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.deliver(), timeout)
        finally:
            await self._drop_producer()
