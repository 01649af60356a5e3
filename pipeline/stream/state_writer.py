"""A state table written once per batch: its local RocksDB database in one `WriteBatch`, its
changelog records in aiokafka batches beside the outputs, not one Faust `send_soon` per key.

Why: a py-spy profile of the worker on the generator's default mix (docs/streaming.md,
"Throughput work, issue 15, third round") spent about a third of its samples on Faust's
per-record changelog path: for every key a table write serialises the value, puts it in RocksDB,
and queues a `send_soon` (a buffer entry, a `publish_message`, an aiokafka `send`, a callback
that writes the changelog offset back into RocksDB). The worker wrote ~2.5 changelog records per
input event (claims 0.9, segment buckets 1.3, journeys and follow-ups 0.16 each). Here a
partition's changed keys are encoded once (orjson, the bytes Faust's json codec writes), put in
its database in one `WriteBatch`, and queued as records on the table's changelog partition in
the worker's `BatchDelivery` (pipeline/stream/delivery.py), which sends each partition's
records as one aiokafka batch.

What stays as before, so a restore reads what Faust wrote: the changelog topic, its partition
(the one of the state's partition), the key and value bytes, a tombstone (value None) for a
deleted key, and the changelog offset stored in the partition's database
(`Store.set_persisted_offset`, Faust's public store method) once the records are acknowledged,
from which Faust's recovery reads the changelog on. An offset stored late only makes a restore
read a few records again: each is the value the database holds already or an older one the
later records overwrite.

Order (pipeline/stream/agent_loop.py): outputs delivered, then this write (local database at
once, changelog queued), then `deliver()` waits for the changelog records, then the batch's
events are acked.

The local database is trusted only as far as the changelog confirmed it. A SIGKILL between a
write and its changelog acknowledgement leaves the database ahead of the changelog: a worker
restarted on the same directory would go on from it (and pass over the records its state
holds), the changelog never receiving that batch's values, so the next worker to take the
partition over would restore without them, its events committed and never read again. Before
every write a marker file is made beside the partition's database (`unconfirmed_marker`); it is
removed once the changelog has acknowledged what the database holds and the offset is stored
(at most once a second: under load nearly every partition is being written at any instant, so
a SIGKILL then has most of them rebuilt whatever the period).
At start, `discard_unconfirmed` removes every partition database whose marker is still there:
Faust then rebuilds it from the changelog, and the records after the committed offset are read
and applied again. A crash before the acks leaves state ahead of the committed offsets, which
the stages absorb (re-read events are duplicates: docs/streaming.md, "Exact results with
at-least-once delivery"). On a revocation the worker delivers what is queued before it gives
the partitions up (`Revocations`), so the next owner's restore sees these records.
No Faust import: the one Faust private name used (the partition's database) is
`faust_private.partition_db`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import rocksdict

from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.faust_private import partition_db, partition_items
from pipeline.stream.outbox import Record

log = logging.getLogger(__name__)


def unconfirmed_marker(table: Any, partition: int) -> Path:
    """The file beside a partition's RocksDB database (Faust's `Store.partition_path`) that says
    the database may hold writes the changelog has not acknowledged (see the module)."""
    path = Path(table.data.partition_path(partition))
    return path.with_name(path.name + ".unconfirmed")


def discard_unconfirmed(tables: Iterable[Any], partitions: int,
                        marker: Callable[[Any, int], Path] = unconfirmed_marker) -> list[Path]:
    """Remove each partition database of `tables` whose marker is there, and the marker (call
    before Faust opens them: it rebuilds a missing database from the changelog). Returns the
    databases removed."""
    removed = []
    for table in tables:
        for partition in range(partitions):
            flag = marker(table, partition)
            if not flag.exists():
                continue
            database = flag.with_name(flag.name.removesuffix(".unconfirmed"))
            log.warning("state %s: the worker stopped before the changelog confirmed the last "
                        "writes; rebuilt from the changelog, its input read again from the "
                        "committed offset", database)
            shutil.rmtree(database, ignore_errors=True)
            flag.unlink()
            removed.append(database)
    return removed


# The options of Faust's json codec (faust.utils.json.dumps with orjson): the same bytes as a
# `table[key] = value` write (tests/unit/stream/test_state_writer.py compares them).
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=JSON_OPTIONS)


# A state value whose record would pass MAX_VALUE_BYTES is written in pieces: the broker takes
# no record over 1 MiB (message.max.bytes), and the delivery would retry such a record for
# ever, holding every output behind it. One journey of about 10,000 events (a producer that
# sends a constant journey_id, a bot's session that never idles) was enough. Its key then
# holds a header `{"p": partition, "pieces": [generation, count]}` and the encoded value's text
# sits in `count` records keyed `piece_key(generation, i, key)`. Records of one partition leave
# in order (pieces, header, then the previous generation's tombstones), so a changelog cut
# anywhere holds either the old header and pieces or the new ones, never a mix.
MAX_VALUE_BYTES = 512 * 1024
PIECE_CHARS = 256 * 1024  # JSON escaping can double a piece's text: each record stays < 1 MiB
PIECE_MARK = "\x00piece:"


def piece_key(generation: int, index: int, key: str) -> str:
    """The key of one piece of a value written in pieces (no key of the stages starts with
    NUL)."""
    return f"{PIECE_MARK}{generation}:{index}:{key}"


def assemble(items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Every (key, value) a table holds, values written in pieces put back together (the
    pieces themselves not listed)."""
    held = list(items)
    pieces = {key: value for key, value in held if key.startswith(PIECE_MARK)}
    for key, value in held:
        if key.startswith(PIECE_MARK):
            continue
        if isinstance(value, dict) and "pieces" in value:
            generation, count = value["pieces"]
            try:
                text = "".join(pieces[piece_key(generation, i, key)]["t"] for i in range(count))
            except KeyError as exc:
                raise RuntimeError(f"state key {key!r}: piece {exc} of generation {generation} "
                                   "is missing from its table") from None
            yield key, orjson.loads(text)
        else:
            yield key, value


class ChangelogTable:
    """One Faust table (RocksDB store, changelog topic), written through `write_pairs` and read
    (at restore) through `items`."""

    def __init__(self, table: Any, delivery: BatchDelivery, role: str,
                 topic_partition: Callable[[str, int], Any],
                 database: Callable[[Any, int], Any] = partition_db,
                 read_partition: Callable[[Any, int], Iterable[tuple[str, Any]]] = partition_items,
                 marker: Callable[[Any, int], Path] = unconfirmed_marker,
                 marker_sweep_seconds: float = 1.0) -> None:
        self.table = table
        self.marker = marker  # (table, partition) -> its database's unconfirmed marker
        # Markers of confirmed partitions go at most this often: a file made and removed per
        # partition and batch costs two system calls each time; one left a little longer only
        # has a restart after a crash rebuild that partition too.
        self.marker_sweep_seconds = marker_sweep_seconds
        self._swept = time.monotonic()
        self.read_partition = read_partition  # (table, partition) -> its decoded (key, value)s
        self.delivery = delivery
        self.role = role  # the delivery's role whose topic is this table's changelog
        self.topic = delivery.topic_of[role]
        self.topic_partition = topic_partition  # (topic, partition) -> Faust's TP
        self.database = database
        self._unpersisted: set[int] = set()  # partitions written since their offset was stored
        self._marked: set[int] = set()  # partitions whose unconfirmed marker is there
        # (partition, key) -> (generation, count) of the pieces its value is written in
        self._pieces: dict[tuple[int, str], tuple[int, int]] = {}

    def partition_items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """Every (key, value) of one partition, read from its database alone (Faust decodes
        them), values written in pieces put back together; that partition's piece bookkeeping
        is rebuilt from them. Read at the partition's restore, before it is written: a worker
        restoring N partitions reads each once (it read all N at each, N times in all)."""
        held = list(self.read_partition(self.table, partition))
        self._pieces = {at: piece for at, piece in self._pieces.items() if at[0] != partition}
        self._pieces.update({(partition, key): (value["pieces"][0], value["pieces"][1])
                             for key, value in held
                             if isinstance(value, dict) and "pieces" in value})
        return assemble(held)

    def write_pairs(self, partition: int, pairs: list[tuple[str, Any]],
                    extra: dict[str, Any]) -> None:
        """Write the changed keys of `partition` (`pairs`: key, state or None to delete), each
        as `{"p": partition, "s": state, **extra}`: at once to the local database, and queued
        for the changelog (sent by the next `deliver()`)."""
        if not pairs:
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        records: list[Record] = []
        role = self.role

        def put(key_bytes: bytes, value: bytes | None) -> None:
            if value is None:
                batch.delete(key_bytes)
            else:
                batch.put(key_bytes, value)
            records.append(Record(role, key_bytes, value, partition))

        for key, state in pairs:
            key_bytes = encode(key)
            old = self._pieces.pop((partition, key), None) if self._pieces else None
            generation = 0
            if state is None:
                put(key_bytes, None)
            else:
                value = encode({"p": partition, "s": state, **extra})
                if len(value) <= MAX_VALUE_BYTES:
                    put(key_bytes, value)
                else:
                    generation = 1 if old is None else old[0] + 1
                    text = value.decode()
                    count = 0
                    for start in range(0, len(text), PIECE_CHARS):
                        put(encode(piece_key(generation, count, key)),
                            encode({"p": partition, "t": text[start:start + PIECE_CHARS]}))
                        count += 1
                    put(key_bytes, encode({"p": partition, "pieces": [generation, count]}))
                    self._pieces[(partition, key)] = (generation, count)
            if old is not None and old[0] != generation:
                for index in range(old[1]):
                    put(encode(piece_key(old[0], index, key)), None)
        self.write_database(partition, batch, records)

    def write_database(self, partition: int, batch: Any, records: list[Record]) -> None:
        """Write `batch` to the partition's database and queue `records`, its changelog
        records; the partition's unconfirmed marker is made first (see the module)."""
        if partition not in self._marked:
            self.marker(self.table, partition).touch()
            self._marked.add(partition)
        self.database(self.table, partition).write(batch)
        self.delivery.add(records)
        self._unpersisted.add(partition)

    def persist_offsets(self) -> None:
        """Store in each written partition's database the changelog offset the broker
        acknowledged last (call after `deliver()`), where Faust's recovery reads on from; then
        the unconfirmed markers go (at most every `marker_sweep_seconds`)."""
        for partition in sorted(self._unpersisted):
            offset = self.delivery.last_offsets.get((self.topic, partition))
            if offset is not None:
                self.table.data.set_persisted_offset(self.topic_partition(self.topic, partition),
                                                     offset)
        self._unpersisted.clear()
        # Everything queued is acknowledged now (`BatchDelivery.deliver` returns when nothing
        # waits), so every marker can go.
        if self._marked and time.monotonic() - self._swept >= self.marker_sweep_seconds:
            self.confirm_markers()

    def confirm_markers(self) -> None:
        """Remove the unconfirmed markers: call only when the changelog has acknowledged every
        write (nothing waits in the delivery)."""
        for partition in self._marked:
            self.marker(self.table, partition).unlink(missing_ok=True)
        self._marked.clear()
        self._swept = time.monotonic()


class StateDelivery:
    """The changelog records of every `ChangelogTable` delivered (with whatever outputs wait in
    the same delivery), then their offsets stored: what an agent awaits before it acks."""

    def __init__(self, delivery: BatchDelivery, tables: list[ChangelogTable]) -> None:
        self.delivery = delivery
        self.tables = tables

    async def __call__(self) -> None:
        await self.delivery.deliver()
        for table in self.tables:
            table.persist_offsets()

    def confirm_all(self) -> None:
        """At shutdown, once the delivery has stopped: when nothing is left unacknowledged,
        every table's markers go (a clean stop must not have the next start rebuild)."""
        if len(self.delivery) == 0:
            for table in self.tables:
                table.confirm_markers()
