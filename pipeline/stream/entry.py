"""The entry stage: touchpoints -> journey batches, placed by journey key whatever the record key.

Producers send touchpoints with any key: our producer library keys by journey, Kafka's console
producer, most clients and Kafka Connect send none (or another key) by default. Stage one keeps
each journey's state on one partition, so every event must reach the partition of its journey
key, not the partition its producer happened to pick. The entry stage reads the touchpoints
topic in batches with a plain aiokafka consumer (its own group, `<app id>-entry`), validates
each record once, sends the invalid ones to dead letters, and writes the valid ones to the
internal journey-events topic as batch records (`pipeline.stream.batches`) on the partition
Kafka's default partitioner gives their journey key, the partition a keyed producer would
have chosen. Keyed input therefore stays on its own partition number, in order; `peakend
replay --partitions N` computes the same results. Records come compressed with any codec
(`pipeline.kafka_codecs`); records of aborted transactions are not read (read_committed).

Delivery: at least once. Offsets are committed only after every batch record and dead letter of
the records they cover is acknowledged by the broker (acks=all). A crash in between sends them
again: stage one treats a re-sent event as a duplicate of the one it holds (same id, same
content), and dead letters are upserted by their source offset. On a rebalance the stage
finishes and commits what it read before it gives partitions up, so two owners of one
partition never interleave their batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.rejected import NOT_JSON
from pipeline.core.partitioner import partition_for
from pipeline.kafka_expiry import read_or_reset
from pipeline.kafka_fetch import AIOKAFKA_DEFAULT, FetchSize
from pipeline.kafka_metadata import METADATA_MAX_AGE_MS
from pipeline.privacy import PersonalData
from pipeline.stream.batches import (
    MAX_BATCH_BYTES,
    Handoff,
    RoutedEvent,
    encode_rows,
    entry_row,
    join_rows,
    record_bytes,
)

log = logging.getLogger(__name__)

LOG_APPEND_TIME = 1  # Kafka's timestamp type of a topic with message.timestamp.type=LogAppendTime
# A record without a value: a delete marker of a compacted topic, which Debezium and other
# change-data-capture connectors send after each delete (tombstones.on.delete, on by default).
TOMBSTONE = ("not JSON: the record has no value (a tombstone, as change-data-capture "
             "connectors send after a delete: Debezium's tombstones.on.delete=false turns them "
             "off); events must be UTF-8 JSON")
# How long a read waits for more records once it has some: at a steady rate a fetch returns the
# few records that arrived since the last, and each read becomes one batch record per target
# partition. Every batch record costs the agents behind it Faust's per-record path, a batch of
# their own with its state writes and acknowledged sends; tiny ones made stage one fall behind
# a steady 1,000 events/s it could carry as a backlog (journeys p50 21 s, docs/streaming.md).
# 0.25 s since the stage runs in its own process: in the worker's thread, the agents' work
# between two reads let records gather; alone, it read every 50 ms and stage one took 5x the
# batches (journeys p99 at 2,000 events/s 4.3-6.8 s, against 2.6-3.5 s at 0.25: docs/streaming.md,
# sixth round).
READ_LINGER_SECONDS = 0.25


class SourceRecord(Protocol):
    """What the stage reads of a consumer record (aiokafka's ConsumerRecord has these)."""

    partition: int
    offset: int
    value: bytes | None
    timestamp: int  # ms
    timestamp_type: int


def arrival_ms(record: SourceRecord, read_ms: int) -> int:
    """When a record reached us: the broker's append time when the topic records it
    (LogAppendTime), else `read_ms`, our clock when we read it; never the producer's own
    CreateTime, set by the clock the `future` verdict judges.

    >>> from types import SimpleNamespace as R
    >>> arrival_ms(R(timestamp=1795367409123, timestamp_type=1), 5)
    1795367409123
    >>> arrival_ms(R(timestamp=1795367409123, timestamp_type=0), 5)
    5
    """
    if record.timestamp_type == LOG_APPEND_TIME:
        return int(record.timestamp)
    return read_ms


@dataclass(slots=True)
class Routed:
    """What one read of the touchpoints topic turns into."""

    batches: dict[int, list[bytes]] = field(default_factory=dict)  # partition -> batch records
    dead_letters: list[tuple[str, bytes]] = field(default_factory=list)  # (reason, letter)
    events: int = 0  # valid events routed
    records: int = 0  # records read


class Router:
    """Validates and places records; no I/O (tested without a broker)."""

    def __init__(self, *, topic: str, partitions: int, max_event_bytes: int,
                 privacy: PersonalData, max_batch_bytes: int = MAX_BATCH_BYTES,
                 handoff: Handoff | None = None) -> None:
        self.topic = topic
        # this process's stage one, when there is one: it takes the events back unencoded
        self.handoff = handoff
        self.partitions = partitions
        self.max_event_bytes = max_event_bytes
        self.privacy = privacy
        self.max_batch_bytes = max_batch_bytes
        # journey key -> partition: murmur2 in Python costs a few microseconds per key
        self._placed: dict[str, int] = {}

    def partition_of(self, key: str) -> int:
        placed = self._placed.get(key)
        if placed is None:
            if len(self._placed) >= 100_000:
                self._placed.clear()
            placed = self._placed[key] = partition_for(key, self.partitions)
        return placed

    def route(self, records: Iterable[SourceRecord], read_ms: int) -> Routed:
        """Batch records per target partition (in read order) and dead letters."""
        out = Routed()
        targets: dict[int, _Pending] = {}
        keep_events = self.handoff is not None
        for record in records:
            out.records += 1
            value = record.value or b""
            try:
                if record.value is None:
                    raise Rejected(NOT_JSON, TOMBSTONE)
                event = self.privacy.scrub(parse_event(value, max_bytes=self.max_event_bytes))
            except Rejected as rejected:
                letter = DeadLetter.from_rejection(
                    rejected, original=value, source_topic=self.topic,
                    source_partition=record.partition, source_offset=record.offset,
                )
                out.dead_letters.append((rejected.reason, self.privacy.seal(letter).to_json()))
                continue
            target = self.partition_of(event.journey_key)
            carried = self.privacy.carry(value, self.topic, record.partition, record.offset)
            arrived = arrival_ms(record, read_ms)
            pending = targets.get(target)
            if pending is None:
                pending = targets[target] = _Pending()
            # The entry's JSON is about as long as the record it was parsed from (the keys'
            # names gone, nulls for the fields left out): judged before it is encoded, each
            # record checked exactly once it is (`_records`).
            size = len(value) + ENTRY_SLACK_BYTES + len(carried)
            if pending.rows and pending.size + size > self.max_batch_bytes:
                out.batches.setdefault(target, []).extend(self._records(pending))
                pending = targets[target] = _Pending()
            pending.rows.append(entry_row(record.partition, record.offset, arrived, carried,
                                          event))
            pending.raws.append(carried)
            pending.raws_bytes += len(carried)
            pending.size += size
            if keep_events:
                pending.events.append(
                    RoutedEvent(record.partition, record.offset, arrived, carried, event))
            out.events += 1
        for target, pending in targets.items():
            out.batches.setdefault(target, []).extend(self._records(pending))
        return out

    def _records(self, pending: _Pending) -> list[bytes]:
        """The batch records of one target's entries: one, unless it passes `max_batch_bytes`
        (entries longer than their estimate), then halves until each fits or holds one
        entry."""
        body = encode_rows(pending.rows)
        handoff = self.handoff
        if (len(pending.rows) > 1 and record_bytes(body, pending.raws_bytes, handoff is not None)
                > self.max_batch_bytes):
            return [record for half in pending.halves() for record in self._records(half)]
        return [join_rows(body, pending.raws,
                          None if handoff is None else handoff.put(pending.events))]


# What an entry's JSON may be longer than the record it was parsed from, as the batch records
# are cut (the cut is checked exactly once a record is encoded): on the generator's mix no
# entry passes it (tests/unit/stream/test_entry.py), most are shorter than their record.
ENTRY_SLACK_BYTES = 64


@dataclass(slots=True)
class _Pending:
    """A target partition's entries not yet in a batch record."""

    rows: list[list[Any]] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    events: list[RoutedEvent] = field(default_factory=list)  # with a handoff
    raws_bytes: int = 0
    size: int = 0  # estimated, as cut

    def halves(self) -> tuple[_Pending, _Pending]:
        half = len(self.rows) // 2
        first, second = _Pending(), _Pending()
        for part, cut in ((first, slice(None, half)), (second, slice(half, None))):
            part.rows = self.rows[cut]
            part.raws = self.raws[cut]
            part.events = self.events[cut]
            part.raws_bytes = sum(map(len, part.raws))
        return first, second


class EntryMetrics(Protocol):
    def entry_read(self, routed: Routed) -> None: ...

    def entry_lag(self, partition: int, lag: int) -> None: ...

    def entry_expired(self, partition: int, records: int) -> None: ...


class EntryStage:
    """The stage's Kafka side: consume, route, produce, commit (see the module docstring)."""

    def __init__(self, router: Router, *, bootstrap: str, group_id: str, batches_topic: str,
                 dead_letters_topic: str, client_options: dict[str, Any], max_records: int,
                 metrics: EntryMetrics, fetch: FetchSize = AIOKAFKA_DEFAULT) -> None:
        self.router = router
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.batches_topic = batches_topic
        self.dead_letters_topic = dead_letters_topic
        self.client_options = client_options
        self.max_records = max_records
        self.metrics = metrics
        self.fetch = fetch
        self._lock = asyncio.Lock()  # one read is routed and committed before a rebalance
        self._stopping = False
        self._clients: tuple[Any, ...] = ()  # the consumer and producer while running
        # what this run committed per partition since the last rebalance (`_commit_positions`)
        self._committed: dict[Any, int] = {}
        # partitions `read_or_reset` moved past deleted records (or to the start of a topic
        # made again) since the last commit: committed at their new position even when no
        # record follows (pipeline/kafka_expiry.py)
        self._moved: set[Any] = set()

    def stop(self) -> None:
        self._stopping = True

    async def abandon(self, within: float = 0.5) -> None:
        """Stop at once (the worker is gone): leave the consumer group, bounded by `within`
        seconds, so the next entry stage gets the partitions without waiting for a session
        timeout. A read not yet committed is read and sent again by it (at least once)."""
        self.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.gather(*(c.stop() for c in self._clients)), within)

    async def run(self) -> None:
        """Until stopped. A failure (a broker gone, a commit refused after a rebalance) restarts
        the consumer, which then resumes from the committed offsets: what was sent but not
        committed is sent again (see the module docstring)."""
        delay = 1.0
        while not self._stopping:
            try:
                await self._run_once()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("entry stage: %s: %s; restarting in %.0f s from the committed "
                            "offsets", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _run_once(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

        stage = self
        self._committed.clear()  # a new consumer: nothing read by it yet
        self._moved.clear()

        class FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                async with stage._lock:  # the read in progress is sent and committed first
                    stage._committed.clear()

            async def on_partitions_assigned(self, assigned: Any) -> None:
                pass

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="none",  # `_getmany` decides
            max_poll_records=self.max_records,
            # aiokafka prefetches up to 50 MiB by default: a whole backlog decoded in memory at
            # once, which glibc then keeps (the worker memory test: RSS +48 MiB in its last third)
            fetch_max_bytes=4 * 1024 * 1024, **self.fetch.options(), **self.client_options,
            # A transactional producer's aborted records are not events (Kafka Streams and
            # Connect with exactly-once, any client's `abort_transaction`): read_uncommitted
            # applied them. A transaction left open holds its partition back until the
            # broker aborts it (the producer's transaction.timeout.ms, 60 s by default).
            isolation_level="read_committed",
            metadata_max_age_ms=METADATA_MAX_AGE_MS,  # pipeline/kafka_metadata.py
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
            max_batch_size=1024 * 1024, max_request_size=2 * 1024 * 1024,
            **self.client_options,
        )
        await self._start(consumer, producer)
        self._clients = (consumer, producer)
        consumer.subscribe([self.router.topic], listener=FinishBeforeRevoke())
        try:
            while not self._stopping:
                data = await self._read(consumer)
                async with self._lock:
                    if data:
                        await self._forward(consumer, producer, data)
                    else:  # positions may have passed over what was never returned
                        await self._commit_positions(consumer, ())
        finally:
            self._clients = ()
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _read(self, consumer: Any) -> dict[Any, list[Any]]:
        """Records of one read: up to `max_records`, gathered for at most `READ_LINGER_SECONDS`
        after the first arrive (a backlog fills a read at once and waits for nothing)."""
        data: dict[Any, list[Any]] = await self._getmany(consumer, 200, self.max_records)
        count = sum(len(batch) for batch in data.values())
        if not count:
            return data
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_LINGER_SECONDS
        while count < self.max_records and (left := deadline - loop.time()) > 0:
            more = await self._getmany(consumer, max(1, int(left * 1000)),
                                       self.max_records - count)
            for tp, batch in more.items():  # each partition's records stay in offset order
                data.setdefault(tp, []).extend(batch)
                count += len(batch)
        return data

    async def _getmany(self, consumer: Any, timeout_ms: int, max_records: int
                       ) -> dict[Any, list[Any]]:
        """`consumer.getmany`, and where to read from when a partition has no valid offset:
        records the topic's retention deleted unread are counted, not passed over without a
        word (pipeline/kafka_expiry.py)."""
        return await read_or_reset(
            consumer, timeout_ms, max_records, reader="entry stage",
            counter="peakend_input_records_expired_total",
            expired=lambda tp, records: self.metrics.entry_expired(tp.partition, records),
            moved=lambda tp, offset: self._moved.add(tp))

    async def _commit_positions(self, consumer: Any, read: Iterable[Any]) -> None:
        """Commit the consumer's position of the partitions of this read (`read`) and of those
        read since the last rebalance whose position moved. The position, not the last record's
        offset + 1: it is also past what the consumer passed over without returning (a
        transaction's commit marker, records of an aborted transaction), so the committed
        offset and the lag reach the end of a transactional producer's input, even when those
        come alone at the end of a partition. Every record below a position was returned by a
        read already forwarded (positions move as records are taken); a partition not read
        since the last rebalance is left out (`position` would wait for its first fetch), unless
        `read_or_reset` moved it (its position is where it sought)."""
        owned = consumer.assignment()
        offsets = {}
        moved, self._moved = self._moved, set()
        for tp in {*read, *self._committed, *moved}:
            if tp in owned:
                position = await consumer.position(tp)
                if position != self._committed.get(tp):
                    offsets[tp] = position
        if not offsets:
            return
        await consumer.commit(offsets)
        self._committed.update(offsets)
        for tp, position in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.entry_lag(tp.partition, max(0, highwater - position))

    async def _start(self, *clients: Any) -> None:
        delay = 1.0
        while True:
            try:
                for client in clients:
                    await client.start()
                return
            except Exception as exc:
                log.warning("entry stage: Kafka at %s: %s; retrying in %.0f s",
                            self.bootstrap, exc, delay)
                for client in clients:
                    with contextlib.suppress(Exception):
                        await client.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _forward(self, consumer: Any, producer: Any, data: dict[Any, list[Any]]) -> None:
        # Records of partitions revoked since they were fetched belong to their new owner.
        owned = consumer.assignment()
        records = [r for tp, batch in data.items() if tp in owned for r in batch]
        if not records:
            return
        routed = self.router.route(records, time.time_ns() // 1_000_000)
        sent = [await producer.send(self.batches_topic, value=batch, partition=target)
                for target, batches in routed.batches.items() for batch in batches]
        sent += [await producer.send(self.dead_letters_topic, value=letter)
                 for _, letter in routed.dead_letters]
        await asyncio.gather(*sent)  # acknowledged (acks=all) before the offsets move
        await self._commit_positions(consumer, data)
        self.metrics.entry_read(routed)
