"""A state table kept as a journal: one changelog record per batch and partition, not one per
changed key.

Why: on the generator's default mix the claims stage changes a key for every event (its claim,
then its removal a day later) and the segment stage one per changed bucket member: 1.06 and
0.85 changelog records per input event (`bench/profile_worker.py`, docs/streaming.md,
"seventh round"), each its own RocksDB put, Kafka record and, on the broker, its own entry of a
compacted topic. A `JournalTable` writes the changed keys of one batch and partition as one
*chunk*: one record `{"p": partition, "j": [[key, state or None], ...], **extra}` under the key
`chunk_key(partition, seq)`, seq counting up per partition. The state a restore reads is the
chunks replayed in seq order, a later entry of a key replacing an earlier one and None
removing it (`replay`).

Chunks are never rewritten in place; the oldest are *compacted* away instead: while the
entries held exceed `COMPACT_FACTOR` times the keys alive (plus `COMPACT_SLACK`), the oldest
chunk goes (a tombstone), and those of its entries that are still the current value of their
key are written again in the new chunk. Removing only the oldest keeps removals right: a
removal entry can only be needed to hide an older entry of its key, and every older chunk is
gone before its own chunk is. The records of one write leave in order (the new chunks, then the
tombstones of the compacted ones), so a changelog cut between them holds both copies of a
moved entry, never neither. Bounded: at most `COMPACT_FACTOR` entries held per key alive, each
entry written again at most once per compaction that reaches it.

A write is read back whole or not at all: when its entries take more than one chunk, each of
its chunks names the write's last chunk (`"n": seq`), and a restore replays such a chunk only
if that last chunk is there too (chunks go oldest first, so a complete write's last chunk
outlives the others). A changelog cut inside a write (a crash while it was being delivered)
leaves the state of the write before; the chunks of the broken write are deleted at the next
write, and their seqs never used again. Entries that must be read together (a drop series'
head and the parts written with it: pipeline/stream/segments.py) can rely on it.

A state that forgets keys *by time* (claims past the lateness horizon, the members of evicted
buckets) need not write a removal entry each: `forget_keys` drops them from the bookkeeping
without writing anything, so compaction no longer writes their entries again and they leave
the changelog with their chunks. Until then a restore still reads them; the state keeps the
horizon it forgot up to (an entry of its own, in the same writes) and forgets them again on
restore, then tells the table (pipeline/stream/claims.py, pipeline/stream/segments.py). A
removal entry was a second entry per key once a day of state is held (docs/streaming.md,
nineteenth round).

Keys a table's `journaled` predicate leaves out stay one record per key (`ChangelogTable`,
with its pieces for values over 512 KiB), and a key is always written the same way; they are
written after the chunks, so a key moved into the journal is deleted from its old layout after
its new entry (the segment table's whole drop series of the layout before: a week of buckets
each, read, rewritten as a head and parts, deleted). Keys the table held
before it was a journal (written one record per key) are read as a chunk older than any other
(`LEGACY`), moved into chunks at the next write and deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import rocksdict

from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.faust_private import partition_db
from pipeline.stream.outbox import Record
from pipeline.stream.split import encoded_groups
from pipeline.stream.state_writer import MAX_VALUE_BYTES, ChangelogTable, encode, piece_key

JOURNAL_MARK = "\x00journal:"  # no stage key starts with NUL
LEGACY = -1  # the seq of the keys a partition held one record per key, before any chunk
COMPACT_FACTOR = 3
COMPACT_SLACK = 4096
# A chunk's entries stay under this many bytes, so a chunk of many entries fits in one record
# with room to spare (MAX_VALUE_BYTES: the largest value the changelog writes as one record).
CHUNK_BYTES = 256 * 1024


def chunk_key(partition: int, seq: int) -> str:
    """The table key of chunk `seq` of `partition` (digits padded: keys sort as their seqs).

    >>> chunk_key(3, 42)
    '\\x00journal:3:000000000042'
    """
    return f"{JOURNAL_MARK}{partition}:{seq:012d}"


def chunk_seq(key: str) -> int:
    """The seq of a chunk's key.

    >>> chunk_seq(chunk_key(3, 42))
    42
    """
    return int(key.rsplit(":", 1)[1])


def always(key: str) -> bool:
    """The `journaled` predicate of a table whose every key goes in chunks."""
    return True


@dataclass(slots=True)
class PartitionJournal:
    """Which chunk holds the current value of each key of one partition, and how many entries
    the chunks hold: what `JournalTable` needs to choose and compact chunks (no states: those
    are read back from the partition's database when a chunk is compacted)."""

    next_seq: int = 0
    chunks: dict[int, list[str]] = field(default_factory=dict)  # seq -> its keys; oldest first
    alive: dict[int, int] = field(default_factory=dict)  # seq -> its entries still current
    where: dict[str, int] = field(default_factory=dict)  # key alive -> seq of its current value
    entries: int = 0

    def book(self, seq: int, pairs: Iterable[tuple[str, Any]]) -> None:
        """Chunk `seq` (newer than every chunk booked) holds `pairs` (key, state or None)."""
        where, alive = self.where, self.alive
        keys: list[str] = []
        current = 0
        for key, state in pairs:
            old = where.pop(key, None)
            if old is not None and old in alive:
                alive[old] -= 1
            if state is not None:
                where[key] = seq
                current += 1
            keys.append(key)
        self.chunks[seq] = keys
        alive[seq] = current
        self.entries += len(keys)
        self.next_seq = max(self.next_seq, seq + 1)

    def forget(self, keys: Iterable[str]) -> None:
        """The keys' values are no longer current, though no entry says so: the state that
        forgot them forgets them again after a restore (`JournalTable.forget_keys`)."""
        where, alive = self.where, self.alive
        for key in keys:
            old = where.pop(key, None)
            if old is not None and old in alive:
                alive[old] -= 1

    def overdue(self, pending: int = 0) -> bool:
        """Whether the oldest chunk should go (`pending`: entries about to be written again)."""
        return (bool(self.chunks) and self.entries + pending
                > COMPACT_FACTOR * len(self.where) + COMPACT_SLACK)

    def pop_oldest(self) -> tuple[int, list[str]]:
        """Forget the oldest chunk: its seq and its keys whose current value it holds (to be
        written again; until then `where` still names the chunk)."""
        seq = next(iter(self.chunks))
        keys = self.chunks.pop(seq)
        self.entries -= len(keys)
        if not self.alive.pop(seq):
            return seq, []
        where = self.where
        return seq, [key for key in keys if where.get(key) == seq]


def broken(chunks: Iterable[tuple[int, dict[str, Any]]]) -> set[int]:
    """The seqs of chunks whose write is not all there (its last chunk, `"n"`, is missing).

    >>> broken([(1, {"j": [], "n": 2}), (2, {"j": [], "n": 2}), (3, {"j": [], "n": 4})])
    {3}
    """
    chunks = list(chunks)
    present = {seq for seq, _ in chunks}
    return {seq for seq, value in chunks if value.get("n", seq) not in present}


def replay(chunks: Iterable[tuple[int, dict[str, Any]]], held: dict[str, Any]) -> dict[str, Any]:
    """The values a partition's chunks (seq, decoded chunk value), given in seq order, leave in
    `held` (key -> table value `{"p", "s", **extra}`, updated in place and returned); the
    chunks of a write that is not all there are left out (`broken`).

    >>> replay([(1, {"p": 0, "j": [["a", 1]]}), (2, {"p": 0, "j": [["a", None], ["b", 2]]})], {})
    {'b': {'p': 0, 's': 2}}
    >>> replay([(1, {"p": 0, "j": [["a", 1]]}), (2, {"p": 0, "j": [["a", 2]], "n": 3})], {})
    {'a': {'p': 0, 's': 1}}
    """
    chunks = list(chunks)
    skip = broken(chunks)
    for seq, value in chunks:
        if seq in skip:
            continue
        extra = {k: v for k, v in value.items() if k != "j" and k != "n"}
        for key, state in value["j"]:
            if state is None:
                held.pop(key, None)
            else:
                held[key] = {**extra, "s": state}
    return held


class JournalTable(ChangelogTable):
    """A `ChangelogTable` whose `journaled` keys are written in chunks (see the module)."""

    def __init__(self, table: Any, delivery: BatchDelivery, role: str,
                 topic_partition: Callable[[str, int], Any],
                 database: Callable[[Any, int], Any] = partition_db,
                 journaled: Callable[[str], bool] = always) -> None:
        super().__init__(table, delivery, role, topic_partition, database)
        self.journaled = journaled
        self.journals: dict[int, PartitionJournal] = {}
        # partition -> the states of its LEGACY keys, until they are moved into chunks
        self._legacy: dict[int, dict[str, Any]] = {}
        # partition -> the chunk keys of a write not all there (`broken`), deleted at the next
        # write
        self._broken: dict[int, list[bytes]] = {}

    def partition_items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """Every (key, value) of one partition, its chunks replayed; its journal is rebuilt
        from what the partition's database holds (read at its restore, before it is
        written)."""
        chunks: list[tuple[int, dict[str, Any]]] = []
        legacy: dict[str, Any] = {}
        plain: list[tuple[str, Any]] = []
        for key, value in super().partition_items(partition):
            if key.startswith(JOURNAL_MARK):
                chunks.append((chunk_seq(key), value))
            elif self.journaled(key):
                legacy[key] = value
            else:
                plain.append((key, value))
        self.journals.pop(partition, None)
        self._legacy.pop(partition, None)
        self._broken.pop(partition, None)
        if legacy:
            self._legacy[partition] = {key: value["s"] for key, value in legacy.items()}
        if chunks or legacy:
            journal = self.journals[partition] = PartitionJournal()
            if legacy:
                journal.book(LEGACY, ((key, True) for key in legacy))
            chunks.sort(key=lambda chunk: chunk[0])
            skip = broken(chunks)
            # a broken write's seqs are never used again: a chunk written under its last seq
            # would make its other chunks look whole
            beyond = max((max(seq, int(value.get("n", seq))) + 1 for seq, value in chunks),
                         default=0)
            if skip:
                self._broken[partition] = [encode(chunk_key(partition, seq))
                                           for seq in sorted(skip)]
                chunks = [chunk for chunk in chunks if chunk[0] not in skip]
            for seq, value in chunks:
                journal.book(seq, ((key, state) for key, state in value["j"]))
            journal.next_seq = max(journal.next_seq, beyond)
            plain.extend(replay(chunks, legacy).items())
        return iter(plain)

    def forget_keys(self, partition: int, keys: Iterable[str]) -> None:
        """Forget journaled keys without writing anything: no removal entry, and compaction
        no longer writes their entries again, so they leave the changelog with their chunks.
        For states that forget by time, and forget again on restore what a replay of the
        chunks still holds (the claims stage and the segment stage's bucket members:
        pipeline/stream/claims.py, segments.py); a key forgotten here and then written again
        is alive again. Keys outside the journal are removed as
        `write_pairs` removes them (they have no chunk to leave with)."""
        journaled = self.journaled
        keys = list(keys)
        journal = self.journals.get(partition)
        if journal is not None:
            journal.forget(key for key in keys if journaled(key))
        plain = [(key, None) for key in keys if not journaled(key)]
        if plain:
            super().write_pairs(partition, plain, {})

    def write_pairs(self, partition: int, pairs: list[tuple[str, Any]],
                    extra: dict[str, Any]) -> None:
        """The journaled keys in chunks first, then the others one record per key (so a key
        moved into a journal is deleted from its old layout after its new entry)."""
        journaled = self.journaled
        plain: list[tuple[str, Any]] = []
        if journaled is always:  # the claims table: no call per key (it showed in profiles)
            entries = list(pairs)
        else:
            entries = []
            for pair in pairs:
                (entries if journaled(pair[0]) else plain).append(pair)
        if entries or partition in self._broken:
            self._write_entries(partition, entries, extra)
        if plain:
            super().write_pairs(partition, plain, extra)

    def _write_entries(self, partition: int, entries: list[tuple[str, Any]],
                       extra: dict[str, Any]) -> None:
        journal = self.journals.get(partition)
        if journal is None:
            journal = self.journals[partition] = PartitionJournal()
        written = {key for key, _ in entries}
        # A removal needs an entry only while an older chunk holds the key's value.
        entries = [(key, state) for key, state in entries
                   if state is not None or key in journal.where]
        dropped, moved = self._compact(partition, journal, written)
        dropped.extend(self._broken.pop(partition, ()))
        entries.extend(moved)
        if not entries and not dropped:
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        records: list[Record] = []
        tail = _extra_fields(extra)
        groups = list(_chunks(entries))
        if len(groups) > 1:  # every chunk names the write's last one (module docstring)
            tail = b',"n":%d%b' % (journal.next_seq + len(groups) - 1, tail)
        for group, body in groups:
            seq = journal.next_seq
            key_bytes = encode(chunk_key(partition, seq))
            value = b'{"p":%d,"j":%b%b}' % (partition, body, tail)
            batch.put(key_bytes, value)
            records.append(Record(self.role, key_bytes, value, partition))
            journal.book(seq, group)
        for key_bytes in dropped:
            batch.delete(key_bytes)
            records.append(Record(self.role, key_bytes, None, partition))
        self.write_database(partition, batch, records)

    def _compact(self, partition: int, journal: PartitionJournal, written: set[str]
                 ) -> tuple[list[bytes], list[tuple[str, Any]]]:
        """The oldest chunks due to go (their record keys) and the entries of theirs to write
        again (those still current and not written anew in this batch)."""
        dropped: list[bytes] = []
        moved: list[tuple[str, Any]] = []
        while journal.overdue(len(moved)):
            seq, current = journal.pop_oldest()
            current = [key for key in current if key not in written]
            if seq == LEGACY:
                states = self._legacy.pop(partition, {})
                moved.extend((key, states[key]) for key in current)
                for key in states:
                    dropped.append(encode(key))
                    pieces = self._pieces.pop((partition, key), None)
                    if pieces is not None:
                        dropped.extend(encode(piece_key(pieces[0], i, key))
                                       for i in range(pieces[1]))
                continue
            key_bytes = encode(chunk_key(partition, seq))
            if current:
                stored = self.database(self.table, partition)[key_bytes]
                held = dict(orjson.loads(stored)["j"])
                moved.extend((key, held[key]) for key in current)
            dropped.append(key_bytes)
        return dropped, moved


def _extra_fields(extra: dict[str, Any]) -> bytes:
    """`extra` as the tail of a JSON object: b',"w":7' for {"w": 7}, b'' for {}."""
    return b"," + encode(extra)[1:-1] if extra else b""


def _chunks(entries: list[tuple[str, Any]]
            ) -> Iterator[tuple[Sequence[tuple[str, Any]], bytes]]:
    """The entries in groups of at most CHUNK_BYTES, each with its JSON array (an entry larger
    alone in its group; one too large for a record at all is a bug of the table's
    `journaled`). Nearly every batch is one group, encoded in one call; a larger one is cut
    without encoding each entry alone (`split.encoded_groups`)."""
    for group, body in encoded_groups(entries, CHUNK_BYTES, encode):
        if len(group) == 1 and len(body) > MAX_VALUE_BYTES - 1024:
            raise ValueError(f"state key {group[0][0]!r}: a {len(body)}-byte value cannot go in a "
                             "journal chunk; the table must write such keys one per record")
        yield group, body
