"""ClickHouse sink: output topics -> tables, at least once, exact through versioned upserts.

A plain aiokafka consumer (its own group, manual commits): it reads the output topics, turns
records into rows (`pipeline.storage.tables`), inserts a batch per table when it holds
`batch_rows` rows or `batch_seconds` have passed, and commits the Kafka offsets only after every
row of the batch either landed or became a dead letter. On a rebalance it flushes before giving
partitions up.

Failures are told apart (`pipeline.storage.warehouse.failure_kind`, docs/reliability.md):
- the connection (refused, reset, a timeout: `SINK_TIMEOUTS` make a hung server fail within
  ~11 s): ClickHouse is down (`peakend_clickhouse_up` 0); the batch and its offsets are held and
  retried with capped exponential backoff until it lands. Nothing acknowledged is lost and a
  redelivered row is absorbed by ReplacingMergeTree(version).
- the server refusing for a reason of its own (table missing, memory, read-only): the same retry,
  but ClickHouse is up (it answered); `peakend_sink_insert_failures` counts the attempts.
- the content of rows (a value the column cannot hold: a DateTime before 1970, 2^31 in an Int32):
  the batch is split in halves until the rows to blame stand alone (`isolate`); those become dead
  letters `clickhouse_rejected` on the dead-letter topic (original record, table and ClickHouse's
  message; `peakend_sink_rejected_rows`), the rest is inserted. A rejected row of the
  dead_letters table itself is logged in full instead (sending it there again would loop).
- a record that does not read into rows at all (not a JSON object on an output topic, a batch
  record of an unknown format: another producer on the topic): a dead letter `unreadable`
  (`UnreadableRecord`), counted the same way; the records around it go on.

Before its first insert the sink applies the ClickHouse migrations, retrying while ClickHouse is
away (one log line per attempt): the worker's Kafka-to-Kafka stages never wait for ClickHouse.

It runs as `peakend sink`, a child process the worker starts (`SinkProcess`), so that it has a
core and an event loop of its own; the worker's /metrics relays the child's sink metrics
(`RelayedSinkMetrics`). With embedded chdb (one process may open it) or `PEAKEND_SINK_PROCESS=false`
it runs as a task inside the worker instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaError

from pipeline.child_process import ChildProcess, child_metric_families, die_with, run_as_child
from pipeline.contract.dead_letters import (
    MAX_DEAD_LETTER_BYTES,
    UNREADABLE_REASON,
    DeadLetter,
)
from pipeline.core.gcpolicy import SINK_THRESHOLDS, tune_gc
from pipeline.kafka_expiry import read_or_reset
from pipeline.kafka_fetch import sink_fetch
from pipeline.kafka_metadata import METADATA_MAX_AGE_MS
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.settings import Settings
from pipeline.storage import migrate as migrations
from pipeline.storage.tables import TOUCHPOINT_EVENTS, columnar, touchpoint_columns
from pipeline.storage.warehouse import (
    DDL_TIMEOUTS,
    SINK_TIMEOUTS,
    Timeouts,
    Warehouse,
    connect,
    failure_kind,
    short_error,
)
from pipeline.stream.batches import (
    DIGEST_AT,
    EVENT_AT,
    OCCURRED_MS_AT,
    RAW_AT,
    decode_entries,
)
from pipeline.stream.topics import journey_events_topic, topic_tables

log = logging.getLogger(__name__)

REJECTED_REASON = "clickhouse_rejected"


class UnreadableRecord(ValueError):
    """A record of a topic the sink reads that does not decode into rows: not a JSON object
    on an output topic, or not a batch record of a format this version knows."""


T = TypeVar("T")


def loads(value: bytes) -> Any:
    """`json.loads(value)`, faster: msgspec (the standard library's decoder was 7% of the sink's
    CPU) for what it reads exactly as `json` does: integers of any length, correctly rounded
    floats, the last of a repeated key. The rest goes to `json`, which gives the same value or
    error as before: what msgspec refuses (NaN, 1e400, a lone surrogate, UTF-16, a BOM, invalid
    UTF-8). (orjson read an integer beyond 64 bits as a float: the records had to be searched
    for long digit runs first, 3% of the sink.)

    >>> loads(b'{"a": 1, "b": [0.5, "x"]}'), loads(b'[NaN]'), loads(b'[12345678901234567890123]')
    ({'a': 1, 'b': [0.5, 'x']}, [nan], [12345678901234567890123])
    """
    try:
        return _decode_json(value)
    except msgspec.DecodeError:
        return json.loads(value)


_decode_json = msgspec.json.Decoder().decode


def _output_row(value: bytes) -> dict[str, Any]:
    """The row of an output topic's record: its JSON object."""
    row = loads(value)
    if not isinstance(row, dict):
        raise UnreadableRecord(f"a JSON {type(row).__name__}, not an object")
    return row


def isolate(
    chunks: list[list[T]],
    insert: Callable[[list[T]], object],
    rejected: list[tuple[T, BaseException]],
    kind: Callable[[BaseException], str] = failure_kind,
) -> None:
    """Insert every item of `chunks`, isolating the items whose content is refused.

    `chunks` is a stack (the last chunk goes next) that this function consumes: a chunk leaves
    it once inserted; a chunk refused for its content (`kind(exc) == "content"`) is replaced by
    its two halves, and a single refused item goes to `rejected` with its error. Any other
    failure propagates with `chunks` and `rejected` holding exactly what is left and what was
    refused, so a retry resumes where it stopped: nothing is inserted twice, nothing skipped.
    A batch of n rows with k bad ones takes about 2k log2(n/k) + 1 inserts.

    >>> landed, refused = [], []
    >>> def insert(chunk):
    ...     if any(x < 0 for x in chunk):
    ...         raise OverflowError("argument out of range")
    ...     landed.extend(chunk)
    >>> isolate([[1, 2, -3, 4, 5, -6, 7]], insert, refused)
    >>> (sorted(landed), [x for x, _ in refused])
    ([1, 2, 4, 5, 7], [-3, -6])
    """
    while chunks:
        chunk = chunks[-1]
        try:
            insert(chunk)
        except Exception as exc:
            if kind(exc) != "content":
                raise
            chunks.pop()
            if len(chunk) == 1:
                rejected.append((chunk[0], exc))
            else:
                middle = len(chunk) // 2
                chunks.append(chunk[middle:])
                chunks.append(chunk[:middle])  # the first half goes first: order is kept
            continue
        chunks.pop()


async def own_metadata(consumer: AIOKafkaConsumer, topics: list[str]) -> None:
    """One metadata request for `topics` only, as aiokafka's own refresh sends it (into a
    throwaway `ClusterMetadata`: the consumer's state is not touched); KafkaError when no
    broker answers. `consumer.topics()` asks for every topic of the cluster: on the shared
    broker of the benchmarks (2,838 topics) each call decoded ~10,000 partitions, 0.18 s of CPU
    every 5 s, about a fifth of the sink's CPU in a py-spy profile (docs/streaming.md)."""
    client = consumer._client  # aiokafka has no public call for some topics' metadata
    if not await client._metadata_update(ClusterMetadata(), topics):
        raise KafkaError("Unable to get cluster metadata over all known brokers")


@dataclass(slots=True)
class Pending:
    """One row waiting for its insert, with the Kafka record it came from (for dead letters)."""

    record: Any  # the record's dict, or a touchpoint's batch entry (its flat row)
    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def event_id(self) -> str:
        """The event id of the record, '' when it has none (for its dead letter)."""
        record = self.record
        found = record[EVENT_AT] if isinstance(record, list) else record.get("event_id")
        return found if isinstance(found, str) else ""


class SinkRecord(Protocol):
    """What the sink reads of a Kafka record (aiokafka's ConsumerRecord)."""

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> int | None: ...


class Read(NamedTuple):
    """One record handed to `ClickHouseSink.add`."""

    offset: int
    value: bytes | None
    timestamp: int | None


# A row waiting for its insert: a touchpoint's batch entry (its flat row, which names its
# source itself), or a `Pending` for the other tables' records.
Held = Pending | list[Any]


def server_connector(settings: Settings, timeouts: Timeouts) -> Callable[[], Warehouse]:
    """Opens the sink's ClickHouse (server or chdb, as the settings say) with `timeouts`."""
    return lambda: connect(settings.clickhouse_url, chdb_path=settings.chdb_path,
                           database=settings.clickhouse_database, timeouts=timeouts,
                           ca_file=settings.clickhouse_ssl_cafile)


def ddl_connector(settings: Settings) -> Callable[[], Warehouse] | None:
    """The migrations' own connection (`DDL_TIMEOUTS`) to a ClickHouse server; None for
    embedded chdb, which one process opens once (the migrations then share the inserts')."""
    return server_connector(settings, DDL_TIMEOUTS) if settings.clickhouse_url else None


class ClickHouseSink:
    def __init__(
        self,
        settings: Settings,
        warehouse: Callable[[], Warehouse],
        metrics: WorkerMetrics,
        *,
        group_id: str | None = None,
        migrate: bool = True,
        send_dead_letters: Callable[[list[bytes]], Awaitable[None]] | None = None,
        ddl_warehouse: Callable[[], Warehouse] | None = None,
    ) -> None:
        """`warehouse` opens the connection for inserts; `ddl_warehouse` (default: the same)
        one for the migrations, which may take minutes on a cluster (`DDL_TIMEOUTS`)."""
        self.settings = settings
        self.connect = warehouse
        self.connect_for_ddl = ddl_warehouse
        self.metrics = metrics
        self.group_id = group_id or f"{settings.app_id}-clickhouse-sink"
        self.tables = topic_tables(settings)
        self._journey_events = journey_events_topic(settings)
        self.migrate = migrate
        self.migrated = not migrate
        self._send = send_dead_letters
        self._warehouse: Warehouse | None = None
        self._rows: dict[str, list[Held]] = {}
        # Rows of a batch being inserted, per table (see `isolate`), and the rows refused.
        self._stacks: dict[str, list[list[Held]]] = {}
        self._rejected: list[tuple[str, Pending, BaseException]] = []
        self._offsets: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._count = 0
        self._first_at: float | None = None
        self._oldest_ts: float | None = None  # wall time of the oldest pending record
        self._in_flight_since: float | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        # Computed at each scrape: a hung insert shows while it hangs, not after it returns.
        metrics.sink_insert_in_flight.set_function(self._in_flight_seconds)
        metrics.sink_oldest_pending.set_function(self._oldest_pending_seconds)

    def _in_flight_seconds(self) -> float:
        since = self._in_flight_since
        return 0.0 if since is None else time.monotonic() - since

    def _oldest_pending_seconds(self) -> float:
        oldest = self._oldest_ts
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    # -- records -> rows ----------------------------------------------------------------------

    def add(self, topic: str, partition: int, offset: int, value: bytes,
            timestamp_ms: int | None = None) -> None:
        """Hold one record of `topic`; `timestamp_ms` is its Kafka timestamp (for the lag)."""
        self.add_records(topic, partition, [Read(offset, value, timestamp_ms)])

    def add_records(self, topic: str, partition: int, records: Sequence[SinkRecord]) -> None:
        """Hold the records of one topic partition, in offset order, as one read returned them
        (tombstones passed over). Per read, not per record: the table, the offset to commit
        and the oldest timestamp are settled once for all of them."""
        if not records:
            return
        table = self.tables[topic]
        held = self._rows.setdefault(table, [])
        # A touchpoint's row is the batch entry as it is (`tables.touchpoint_columns`): it keeps
        # where its event came from, for a dead letter should ClickHouse refuse it (`_refused`).
        def output_rows(value: bytes, offset: int) -> Sequence[Held]:
            return [Pending(_output_row(value), topic, partition, offset, value)]

        def batch_entries(value: bytes, offset: int) -> Sequence[Held]:
            return decode_entries(value)

        rows_of = batch_entries if topic == self._journey_events else output_rows
        count = 0
        for record in records:
            value = record.value
            if value is None:
                continue
            try:
                rows = rows_of(value, record.offset)
            except (ValueError, RecursionError) as exc:
                self._unreadable(table, topic, partition, record.offset, value, exc)
                count += 1
                continue
            held.extend(rows)
            count += len(rows)
        self._count += count
        self._offsets[TopicPartition(topic, partition)] = records[-1].offset + 1
        if self._first_at is None:
            self._first_at = time.monotonic()
        # a record without a timestamp (`add` without one) counts as written now
        known = [s for r in records if (s := r.timestamp) is not None]
        written = min(known) / 1000 if known else time.time()
        if len(known) < len(records):
            written = min(written, time.time())
        if self._oldest_ts is None or written < self._oldest_ts:
            self._oldest_ts = written

    def _unreadable(self, table: str, topic: str, partition: int, offset: int, value: bytes,
                    exc: BaseException) -> None:
        """Another producer on the topic, or a newer worker's format: a dead letter with the
        record, not a sink that fails on it at every restart and never commits."""
        self._rejected.append((table, Pending({}, topic, partition, offset, value),
                               exc if isinstance(exc, UnreadableRecord)
                               else UnreadableRecord(short_error(exc, 500))))
        self.metrics.sink_rejected_rows.labels(table).inc()

    def _refused(self, row: Held) -> Pending:
        """The held row with the record it came from, for its dead letter: a touchpoint's batch
        entry names its source partition, offset and raw record itself."""
        if isinstance(row, Pending):
            return row
        return Pending(row, self.settings.topic_touchpoints, row[0], row[1], row[RAW_AT])

    def due(self) -> bool:
        if self._first_at is None:
            return False
        waited = time.monotonic() - self._first_at
        full = self._count >= self.settings.sink_batch_rows
        return full or waited >= self.settings.sink_batch_seconds

    # -- inserts ------------------------------------------------------------------------------

    def _insert_chunk(self, table: str, chunk: list[Any]) -> None:
        assert self._warehouse is not None
        # A record the table mapping cannot convert is refused like a value ClickHouse refuses.
        # Built and sent as columns: no row tuples, and the driver skips its own row-to-column
        # pass (`RowOrientedBlock`); the columns are rebuilt from the records at each attempt,
        # so a half of a refused chunk is just the columns of its records.
        if table == TOUCHPOINT_EVENTS.name:  # batch entries as they are (`add_records`)
            columns, data = touchpoint_columns(chunk, EVENT_AT, OCCURRED_MS_AT, DIGEST_AT)
        else:
            columns, data = columnar(table, [p.record for p in chunk])
        started = time.perf_counter()
        self._in_flight_since = time.monotonic()
        try:
            self._warehouse.insert_columns(table, columns, data)
        finally:
            self._in_flight_since = None
        self.metrics.sink_insert_seconds.labels(table).observe(time.perf_counter() - started)
        self.metrics.sink_rows.labels(table).inc(len(chunk))
        self.metrics.sink_batch_rows.observe(len(chunk))

    def _insert_all(self) -> None:
        """Blocking: runs in a thread. Inserts every pending table once (see `isolate`)."""
        if self._warehouse is None:
            self._warehouse = self.connect()
        for table in list(self._stacks):
            refused: list[tuple[Held, BaseException]] = []

            def insert(chunk: list[Held], table: str = table) -> None:
                self._insert_chunk(table, chunk)

            try:
                isolate(self._stacks[table], insert, refused)
            finally:
                for row, exc in refused:
                    self._rejected.append((table, self._refused(row), exc))
                    self.metrics.sink_rejected_rows.labels(table).inc()
            del self._stacks[table]  # landed: a retry must not insert it again

    async def _commit(self) -> None:
        if self._consumer is not None and self._offsets:
            await self._consumer.commit(dict(self._offsets))
        self._offsets.clear()

    async def moved(self, tp: TopicPartition, offset: int) -> None:
        """A partition out of range reads on at `offset` (pipeline/kafka_expiry.py): committed
        with what the sink holds once it has landed, or now when it holds nothing (no flush
        would come until a record arrives)."""
        self._offsets[tp] = max(self._offsets.get(tp, offset), offset)
        self._positions[tp] = offset
        if self._first_at is None:
            await self._commit()

    async def flush(self) -> None:
        """Insert the pending batch (retrying until it lands or the sink stops), send the rows
        ClickHouse refused to dead letters, then commit."""
        if self._first_at is None:
            return
        for table, items in self._rows.items():
            if items:
                self._stacks.setdefault(table, []).insert(0, items)
        self._rows.clear()
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(self._insert_all)
                self.metrics.clickhouse_up.set(1)
                break
            except Exception as exc:  # the rest of the batch stays, offsets stay uncommitted
                kind = failure_kind(exc)
                # Only a connection failure or a timeout means ClickHouse is down; a server that
                # answered with an error is up (and PeakendSinkInsertFailing says it refuses).
                self.metrics.clickhouse_up.set(0 if kind == "connection" else 1)
                for table in self._stacks:
                    self.metrics.sink_insert_failures.labels(table).inc()
                what = ("ClickHouse unreachable" if kind == "connection"
                        else "ClickHouse refused the insert")
                log.warning("%s (%s); retrying in %.1f s", what, short_error(exc), delay)
                self._drop_connection()
                if self._stopping:
                    raise
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
        await self._dead_letters()
        await self._commit()
        self._count = 0
        self._first_at = None
        self._oldest_ts = None

    async def _dead_letters(self) -> None:
        """Send the refused rows to the dead-letter topic (retrying) before the commit."""
        if not self._rejected:
            return
        letters: list[bytes] = []
        for table, pending, exc in self._rejected:
            if isinstance(exc, UnreadableRecord):
                reason = UNREADABLE_REASON
                error = (f"the sink cannot read this record of {pending.topic} (for table "
                         f"{table}): {exc}; nothing of it is stored in ClickHouse")
            else:
                reason = REJECTED_REASON
                error = f"ClickHouse refused this row of table {table}: {short_error(exc, 2000)}"
            log.warning("%s (from %s partition %d offset %d); it goes to dead letters",
                        error, pending.topic, pending.partition, pending.offset)
            if table == "dead_letters":
                # Its own topic would bring it back here: keep it in the log, whole.
                log.error("a dead letter ClickHouse refused, not stored in ClickHouse: %s",
                          pending.value.decode("utf-8", "replace"))
                continue
            event_id = pending.event_id
            letter = DeadLetter.make(
                reason, error, original=pending.value, source_topic=pending.topic,
                source_partition=pending.partition, source_offset=pending.offset,
                event_id=event_id,
            )
            letters.append(PersonalData.from_settings(self.settings).seal(
                letter, MAX_DEAD_LETTER_BYTES).to_json())
        delay = 0.5
        while letters:
            try:
                await self._send_letters(letters)
                break
            except Exception as exc:
                log.warning("cannot send %d dead letter(s) to %s (%s); retrying in %.1f s",
                            len(letters), self.settings.topic_dead_letters, short_error(exc),
                            delay)
                if self._stopping:
                    raise
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
        self._rejected.clear()

    async def _send_letters(self, letters: list[bytes]) -> None:
        if self._send is not None:
            await self._send(letters)
            return
        if self._producer is None:
            raise RuntimeError("the sink has no Kafka producer (not running)")
        sent = [await self._producer.send(self.settings.topic_dead_letters, value)
                for value in letters]
        await asyncio.gather(*sent)  # acknowledged by the broker (acks=all)

    def _drop_connection(self) -> None:
        if self._warehouse is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._warehouse.close()
            self._warehouse = None

    # -- life cycle ---------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the sink is told to stop."""
        if self._stop_event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    def _migrate_once(self) -> list[str]:
        if self.connect_for_ddl is None:
            if self._warehouse is None:
                self._warehouse = self.connect()
            return migrations.migrate(self._warehouse, cluster=self.settings.clickhouse_cluster)
        ddl = self.connect_for_ddl()
        try:
            return migrations.migrate(ddl, cluster=self.settings.clickhouse_cluster)
        finally:
            ddl.close()

    async def apply_migrations(self) -> bool:
        """Apply the migrations, retrying with backoff while ClickHouse is away or refuses;
        one log line per failed attempt. False when told to stop first."""
        delay, attempt = 1.0, 0
        while not self._stopping:
            attempt += 1
            try:
                names = await asyncio.to_thread(self._migrate_once)
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                kind = failure_kind(cause)
                self.metrics.clickhouse_up.set(0 if kind == "connection" else 1)
                self._drop_connection()
                log.warning("ClickHouse migrations, attempt %d: %s; the sink waits and "
                            "retries in %.0f s (Kafka stages keep running)",
                            attempt, short_error(exc), delay)
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.metrics.clickhouse_up.set(1)
            if names:
                print(f"applied migrations: {', '.join(names)}", flush=True)
            self.migrated = True
            return True
        return False

    async def _start_kafka(self, *clients: Any) -> bool:
        delay, attempt = 1.0, 0
        while not self._stopping:
            attempt += 1
            try:
                for client in clients:
                    await client.start()
            except Exception as exc:
                self.metrics.kafka_up.set(0)
                log.warning("Kafka at %s, attempt %d: %s; retrying in %.0f s",
                            self.settings.kafka_bootstrap, attempt, short_error(exc), delay)
                for client in clients:
                    with contextlib.suppress(Exception):
                        await client.stop()
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.metrics.kafka_up.set(1)
            return True
        return False

    async def _probe_kafka(self, consumer: AIOKafkaConsumer, every: float = 5.0,
                           timeout: float = 5.0) -> None:
        """`peakend_kafka_up`: can this process fetch the metadata of its topics within 5 s?"""
        up = True
        while not self._stopping:
            try:
                await asyncio.wait_for(own_metadata(consumer, list(self.tables)),
                                       timeout=timeout)
                now_up = True
            except Exception as exc:
                now_up = False
                if up:  # one line per outage, not one per probe
                    log.warning("Kafka at %s unreachable (%s)", self.settings.kafka_bootstrap,
                                short_error(exc) if str(exc) else type(exc).__name__)
            if now_up and not up:
                log.warning("Kafka at %s reachable again", self.settings.kafka_bootstrap)
            up = now_up
            self.metrics.kafka_up.set(1 if up else 0)
            await self._sleep(every)

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        behind: dict[str, int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            position = self._positions.get(tp)
            if end is None or position is None:
                continue
            behind[tp.topic] = behind.get(tp.topic, 0) + max(0, end - position)
        for topic, records in behind.items():
            self.metrics.sink_lag_records.labels(topic).set(records)

    async def run(self) -> None:
        sink = self
        self._stop_event = asyncio.Event()
        if self._stopping:
            self._stop_event.set()

        class FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                await sink.flush()

            async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                return None

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="none",  # `read_or_reset` decides: expired records are counted
            isolation_level="read_committed",
            max_poll_records=self.settings.sink_batch_rows,
            # Fewer, fuller fetches (pipeline/kafka_fetch.py): with aiokafka's fetch_min_bytes=1
            # the broker answered as soon as any of the ~60 partitions had a record. The rows
            # wait for the next flush anyway: waiting up to half the batch interval adds none.
            **sink_fetch(self.settings.sink_batch_seconds).options(),
            metadata_max_age_ms=METADATA_MAX_AGE_MS,  # pipeline/kafka_metadata.py
            **self.settings.aiokafka_client_options(),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
            **self.settings.aiokafka_client_options(),
        )
        if not await self._start_kafka(consumer, producer):
            return
        self._consumer, self._producer = consumer, producer
        probe = asyncio.ensure_future(self._probe_kafka(consumer))
        try:
            if self.migrate and not await self.apply_migrations():
                return
            consumer.subscribe(list(self.tables), listener=FlushOnRevoke())
            lag_at = 0.0
            while not self._stopping:
                moved: dict[TopicPartition, int] = {}
                batches = await read_or_reset(
                    consumer, 100, 5000, reader="sink",
                    counter="peakend_sink_records_expired_total",
                    expired=lambda tp, records: self.metrics.sink_expired.labels(
                        tp.topic).inc(records),
                    moved=moved.__setitem__)
                for tp, offset in moved.items():
                    await self.moved(tp, offset)
                for tp, messages in batches.items():
                    self.add_records(tp.topic, tp.partition, messages)
                    if messages:
                        self._positions[tp] = messages[-1].offset + 1
                if time.monotonic() - lag_at >= 1.0:
                    self._update_lag(consumer)
                    lag_at = time.monotonic()
                if self.due():
                    await self.flush()
            # stopping: land what is held (best effort; a failure leaves it uncommitted)
            with contextlib.suppress(Exception):
                await self.flush()
        finally:
            probe.cancel()
            with contextlib.suppress(BaseException):
                await probe
            await consumer.stop()
            await producer.stop()

    def stop(self) -> None:
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def abandon(self, within: float = 0.5) -> None:
        """Stop at once without flushing (the worker is gone): leave the consumer group so that
        the next sink gets the partitions without waiting for a session timeout. The held batch
        is uncommitted and is read again by that sink."""
        self.stop()
        clients = [c for c in (self._consumer, self._producer) if c is not None]
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.gather(*(c.stop() for c in clients)), within)


# -- the sink as a child process of the worker -------------------------------------------------

# WorkerMetrics attributes the sink owns -> their metric family names (relayed from the child).
SINK_METRIC_ATTRIBUTES = {
    "sink_batch_rows": "peakend_sink_batch_rows",
    "sink_insert_seconds": "peakend_sink_insert_seconds",
    "sink_rows": "peakend_sink_rows",
    "sink_insert_failures": "peakend_sink_insert_failures",
    "sink_rejected_rows": "peakend_sink_rejected_rows",
    "sink_insert_in_flight": "peakend_sink_insert_in_flight_seconds",
    "sink_oldest_pending": "peakend_sink_oldest_pending_seconds",
    "sink_lag_records": "peakend_sink_lag_records",
    "sink_expired": "peakend_sink_records_expired",
    "clickhouse_up": "peakend_clickhouse_up",
    "kafka_up": "peakend_kafka_up",
}
SINK_METRICS = tuple(SINK_METRIC_ATTRIBUTES.values())


class RelayedSinkMetrics:
    """A collector for the worker's registry: the sink child's metrics, read from its /metrics
    at every scrape (nothing while the child is not up); `port` gives the child's port then."""

    def __init__(self, port: Callable[[], int]) -> None:
        self.port = port

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        for name, family in child_metric_families(self.port()).items():
            if name in SINK_METRICS:
                yield family


class SinkProcess(ChildProcess):
    """Runs `peakend sink` as a child of the worker (`pipeline.child_process`); the worker's
    /metrics relays the child's sink metrics (`RelayedSinkMetrics`)."""

    def __init__(self, metrics: WorkerMetrics, *, migrate: bool = True) -> None:
        super().__init__("sink", serves_metrics=True)
        self.migrate = migrate
        registry = metrics.registry
        for name in SINK_METRIC_ATTRIBUTES:
            with contextlib.suppress(KeyError):
                registry.unregister(getattr(metrics, name))
        registry.register(RelayedSinkMetrics(lambda: self.metrics_port))

    def command(self) -> list[str]:
        command = super().command()
        return command if self.migrate else [*command, "--no-migrate"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="stop at once when this process (the worker) is gone")
    parser.add_argument("--no-migrate", action="store_true",
                        help="do not apply ClickHouse migrations before the first insert")


def run(args: argparse.Namespace) -> int:
    """`peakend sink`: output topics -> ClickHouse in this process, until SIGTERM/SIGINT (or,
    with --parent-pid, until that process is gone)."""
    if args.parent_pid:
        die_with(args.parent_pid)  # first: the worker may be killed while this one starts
    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING)
    # The sink's collector policy (pipeline/core/gcpolicy.py): with CPython's default (700,
    # 10, 10) a young collection came every few hundred records of a batch and walked the held
    # batch again and again (measured in-process: 7.2 -> 5.6 us per event of touchpoint_events
    # columns with the collector off), and with the worker's (50,000) still about once per
    # batch; asyncio's and aiokafka's cycles are still collected.
    tune_gc(SINK_THRESHOLDS, freeze=False)
    metrics = WorkerMetrics.create()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, certfile=settings.metrics_tls_certfile,
                      keyfile=settings.metrics_tls_keyfile)
    sink = ClickHouseSink(settings, server_connector(settings, SINK_TIMEOUTS), metrics,
                          migrate=not args.no_migrate,
                          ddl_warehouse=ddl_connector(settings))

    async def main() -> None:
        await run_as_child(args.parent_pid, "sink", run=sink.run, stop=sink.stop,
                           abandon=lambda: sink.abandon(0.5))

    asyncio.run(main())
    return 0
