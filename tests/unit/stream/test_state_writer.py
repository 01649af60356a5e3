"""`ChangelogTable` on a real Faust table (RocksDB store, no broker): a batch of state written
in one `WriteBatch` is what Faust's own `table[key] = value` writes (same bytes, same partition
database), its changelog records are what Faust's changelog would hold (same key and value
bytes, tombstones for deleted keys, on the state's partition), Faust's recovery applying them
rebuilds the same database, and the acknowledged changelog offset is stored where Faust's
recovery reads it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP
from faust.utils import json as faust_json
from hypothesis import given
from hypothesis import strategies as st

from pipeline.stream.agent_loop import write_state
from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.faust_private import partition_items
from pipeline.stream.outbox import Record
from pipeline.stream.state_writer import ChangelogTable, StateDelivery, encode
from tests.support.faust_tables import rocksdb_table
from tests.unit.stream.fake_faust import Event, Message

CHANGELOG = "app-t-changelog"


@pytest.fixture(autouse=True)
def event_loop_for_faust() -> Any:
    """A Faust app takes the current event loop when built; an earlier test's `asyncio.run`
    leaves none."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


def faust_table(tmp_path: Path, name: str = "t") -> Any:
    return rocksdb_table(tmp_path, name)


def close(table: Any) -> None:
    for db in table.data._dbs.values():
        db.close()


def held(table: Any, partition: int) -> dict[str, Any]:
    """What one partition's database holds, decoded by Faust (`table.items()` would list the
    partitions the consumer is assigned only: none here)."""
    return dict(partition_items(table, partition))


def changelog_events(records: list[Record]) -> list[SimpleNamespace]:
    """The changelog messages of `records` (all with their partition), offsets from 0."""
    events = []
    for offset, r in enumerate(records):
        assert r.partition is not None
        events.append(SimpleNamespace(message=SimpleNamespace(
            tp=TP(CHANGELOG, r.partition), offset=offset, key=r.key, value=r.value,
            partition=r.partition)))
    return events


def delivery() -> BatchDelivery:
    return BatchDelivery(lambda: None, {"state:t": CHANGELOG})  # type: ignore[arg-type,return-value]


_atoms = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text())
# state values as the stages make them (tuples are written as arrays), and dicts whose keys are
# not all str
_states = st.recursive(
    _atoms, lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=4)
                           | st.dictionaries(st.integers(-(2**63), 2**63 - 1)
                                             | st.text(max_size=3), inner,
                                             max_size=4)),
    max_leaves=20)


@given(_states)
def test_state_values_are_encoded_as_fausts_json_codec_encodes_them(value: Any) -> None:
    # the bytes Faust's own `table[key] = value` writes (its json codec), so a restore reads
    # ours as it reads its own
    # Faust annotates its dumps as str; with orjson installed it is orjson's, which gives bytes
    assert encode(value) == cast(bytes, faust_json.dumps(value))


def test_a_batch_write_is_what_faust_writes_key_by_key(tmp_path: Path) -> None:
    ours, theirs = faust_table(tmp_path / "a"), faust_table(tmp_path / "b")
    try:
        state = ChangelogTable(ours, delivery(), "state:t", TP)
        pairs: list[tuple[str, Any]] = [("j-1", {"events": [1, 2], "at": 1.5}),
                                        ("bucket:ch=web|nps|0", {"v": 3, "m": {"e\x1fj": 9}}),
                                        ("__watermark__", 123)]
        event = Event(b"", Message("in", 5, 0))
        write_state(state, event, pairs, {"w": 7})
        write_state(theirs, event, pairs, {"w": 7})  # Faust's own path, key by key
        for key, _ in pairs:
            key_bytes = ours.data._encode_key(key)
            assert key_bytes == theirs.data._encode_key(key)
            assert ours.data._db_for_partition(5)[key_bytes] == \
                theirs.data._db_for_partition(5)[key_bytes]
        assert set(ours.data._dbs) == {5}  # the state's partition only
        assert held(ours, 5) == held(theirs, 5)
        assert held(ours, 5)["__watermark__"] == {"p": 5, "s": 123, "w": 7}
        # a deleted key is gone from the database and leaves a tombstone
        write_state(state, event, [("j-1", None)], {})
        assert "j-1" not in held(ours, 5)
        assert state.delivery._pending[-1] == ("state:t", ours.data._encode_key("j-1"), None, 5)
    finally:
        close(ours)
        close(theirs)


def test_faust_recovery_from_the_changelog_records_rebuilds_the_database(
        tmp_path: Path) -> None:
    ours, restored = faust_table(tmp_path / "a"), faust_table(tmp_path / "b")
    try:
        queue = delivery()
        state = ChangelogTable(ours, queue, "state:t", TP)
        state.write_pairs(3, [("a", [1]), ("b", {"x": None})], {"w": 1})
        state.write_pairs(3, [("a", None), ("c", 2)], {})
        records = list(queue._pending)
        assert [(r.role, r.partition) for r in records] == [("state:t", 3)] * 4
        # what Faust's changelog reader hands its store on recovery: these records, in order
        events = changelog_events(records)
        restored.data.apply_changelog_batch(events, to_key=None, to_value=None)
        assert held(restored, 3) == held(ours, 3) == {"b": {"p": 3, "s": {"x": None}, "w": 1},
                                                      "c": {"p": 3, "s": 2}}
    finally:
        close(ours)
        close(restored)


class AckingProducer:
    """aiokafka's producer as `BatchDelivery` uses it: each batch acknowledged at the next
    offset of its partition (`RecordMetadata.offset` is the batch's first offset)."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(8))

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        base = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = base + len(batch)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=base))
        return done


class _Batch:
    """aiokafka's batch builder as `BatchDelivery` fills it: (key, value) per record."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: Any) -> object:
        self.records.append((key, value))
        return object()

    def __len__(self) -> int:
        return len(self.records)


def test_the_acknowledged_changelog_offset_is_stored_for_faust_recovery(tmp_path: Path) -> None:
    table = faust_table(tmp_path)
    try:
        queue = BatchDelivery(AckingProducer, {"state:t": CHANGELOG})
        state = ChangelogTable(table, queue, "state:t", TP)
        state.write_pairs(2, [("a", 1), ("b", 2), ("c", None)], {})
        state.write_pairs(6, [("d", 1)], {})
        run = asyncio.get_event_loop().run_until_complete
        run(StateDelivery(queue, [state])())
        assert table.data.persisted_offset(TP(CHANGELOG, 2)) == 2  # offsets 0, 1, 2
        assert table.data.persisted_offset(TP(CHANGELOG, 6)) == 0
        state.write_pairs(2, [("a", 5)], {})
        run(StateDelivery(queue, [state])())
        assert table.data.persisted_offset(TP(CHANGELOG, 2)) == 3
        assert len(queue) == 0
    finally:
        close(table)


def test_a_database_ahead_of_its_changelog_is_discarded_at_start(tmp_path: Path) -> None:
    """A write makes the partition's unconfirmed marker; the changelog's acknowledgement (and
    the stored offset) removes it. A worker killed in between leaves it: at the next start
    `discard_unconfirmed` removes that partition's database, so Faust rebuilds it from the
    changelog rather than going on from writes the changelog may never have received (and a
    later owner would restore without). Confirmed partitions are kept."""
    from pipeline.stream.state_writer import discard_unconfirmed, unconfirmed_marker

    table = faust_table(tmp_path)
    try:
        queue = BatchDelivery(AckingProducer, {"state:t": CHANGELOG})
        state = ChangelogTable(table, queue, "state:t", TP, marker_sweep_seconds=0)
        run = asyncio.get_event_loop().run_until_complete
        state.write_pairs(2, [("a", 1)], {})
        state.write_pairs(6, [("d", 1)], {})
        assert unconfirmed_marker(table, 2).exists() and unconfirmed_marker(table, 6).exists()
        run(StateDelivery(queue, [state])())
        assert not unconfirmed_marker(table, 2).exists()
        assert not unconfirmed_marker(table, 6).exists()
        clean = ChangelogTable(table, queue, "state:t", TP, marker_sweep_seconds=3600)
        clean.write_pairs(7, [("f", 1)], {})
        clean_delivery = StateDelivery(queue, [clean])
        run(clean_delivery())
        assert unconfirmed_marker(table, 7).exists()
        clean_delivery.confirm_all()  # a clean stop: everything acknowledged, no rebuild
        assert not unconfirmed_marker(table, 7).exists()
        state.write_pairs(2, [("a", 2)], {})  # then killed before the changelog confirmed it
        assert unconfirmed_marker(table, 2).exists()
        database = Path(table.data.partition_path(2))
        # markers go at most every `marker_sweep_seconds`: one left longer is only a rebuild
        slow = ChangelogTable(table, queue, "state:t", TP, marker_sweep_seconds=3600)
        slow.write_pairs(4, [("e", 1)], {})
        slow_delivery = StateDelivery(queue, [slow])
        run(slow_delivery())
        assert unconfirmed_marker(table, 4).exists()
        slow.write_pairs(4, [("e", 2)], {})
        slow_delivery.confirm_all()  # at shutdown, with a write not delivered: kept
        assert unconfirmed_marker(table, 4).exists()
        assert database.is_dir()
    finally:
        close(table)
    restarted = faust_table(tmp_path)  # the same directory, as a restarted worker
    try:
        assert discard_unconfirmed([restarted], 8) == [database,
                                                       Path(restarted.data.partition_path(4))]
        assert not database.exists() and not unconfirmed_marker(restarted, 2).exists()
        assert Path(restarted.data.partition_path(6)).is_dir()  # confirmed: kept
        assert held(restarted, 6) == {"d": {"p": 6, "s": 1}}
        assert held(restarted, 2) == {}  # Faust's recovery reads it from the changelog
        assert restarted.data.persisted_offset(TP(CHANGELOG, 2)) is None  # from its start
        assert discard_unconfirmed([restarted], 8) == []
    finally:
        close(restarted)


def test_a_value_too_large_for_one_record_is_written_in_pieces_and_read_back_whole(
        tmp_path: Path) -> None:
    """A journey of ~20,000 events has a 2 MiB state: as one record the broker refuses it
    and the delivery retried it for ever. Written in pieces every record stays well under
    1 MiB, Faust's recovery rebuilds the same database, and the table reads back the value;
    a later smaller value or a delete leaves no piece behind."""
    from pipeline.stream.state_writer import MAX_VALUE_BYTES, PIECE_MARK, assemble

    ours, restored = faust_table(tmp_path / "a"), faust_table(tmp_path / "b")
    try:
        queue = delivery()
        state = ChangelogTable(ours, queue, "state:t", TP)
        big = {"entries": [[i, f"evt-{i:08d}-\u00e4\"q", 0.1 * i] for i in range(40_000)]}
        state.write_pairs(3, [("j-big", big), ("j-small", [1])], {"w": 4})
        records = list(queue._pending)
        assert max(len(r.key or b"") + len(r.value or b"") for r in records) < 1024 * 1024
        def is_piece(r: Any) -> bool:
            return bool(ours.data._decode_key(r.key).startswith(PIECE_MARK))

        assert len([r for r in records if is_piece(r)]) >= 3
        # the header comes after its pieces (a changelog cut between them keeps the old value)
        header = [i for i, r in enumerate(records) if r.key == ours.data._encode_key("j-big")]
        assert header and all(is_piece(r) for r in records[:header[0]])
        assert dict(assemble(held(ours, 3).items())) == {
            "j-big": {"p": 3, "s": big, "w": 4}, "j-small": {"p": 3, "s": [1], "w": 4}}
        bigger = {"entries": big["entries"] + [[0, "x", 0.0]] * 10}
        state.write_pairs(3, [("j-big", bigger)], {})  # a new generation, the old one deleted
        assert dict(assemble(held(ours, 3).items()))["j-big"] == {"p": 3, "s": bigger}
        assert len([k for k in held(ours, 3) if k.startswith(PIECE_MARK)]) == len(
            [r for r in queue._pending[len(records):] if r.value is not None]) - 1
        events = changelog_events(queue._pending)
        restored.data.apply_changelog_batch(events, to_key=None, to_value=None)
        assert held(restored, 3) == held(ours, 3)
        state.write_pairs(3, [("j-big", [2])], {})  # small again: every piece deleted
        assert held(ours, 3) == {"j-big": {"p": 3, "s": [2]}, "j-small": {"p": 3, "s": [1],
                                                                          "w": 4}}
        state.write_pairs(3, [("j-big", bigger)], {})
        state.write_pairs(3, [("j-big", None)], {})  # deleted: header and pieces go
        assert list(held(ours, 3)) == ["j-small"]
        assert MAX_VALUE_BYTES < 1024 * 1024
    finally:
        close(ours)
        close(restored)


def test_a_table_read_learns_which_values_are_in_pieces(tmp_path: Path) -> None:
    """After a restart the pieces of a value are known from its header: the next write of the
    key deletes them."""
    from pipeline.stream.state_writer import PIECE_MARK

    table = faust_table(tmp_path)
    try:
        big = ["x" * 1000] * 1200
        ChangelogTable(table, delivery(), "state:t", TP).write_pairs(2, [("k", big)], {})
        again = ChangelogTable(table, delivery(), "state:t", TP)
        assert dict(again.partition_items(2)) == {"k": {"p": 2, "s": big}}
        again.write_pairs(2, [("k", 1)], {})
        assert held(table, 2) == {"k": {"p": 2, "s": 1}}
        assert not [k for k in held(table, 2) if k.startswith(PIECE_MARK)]
    finally:
        close(table)


def test_a_partitions_restore_reads_its_own_database_only(tmp_path: Path) -> None:
    """A worker restoring N partitions reads each partition's database once (it read every
    assigned partition at each restore, N times in all)."""
    from pipeline.stream.agent_loop import held_state

    table = faust_table(tmp_path)
    try:
        writer = ChangelogTable(table, delivery(), "state:t", TP)
        for partition in range(4):
            writer.write_pairs(partition, [(f"k{partition}", [partition])],
                               {"w": 10 + partition, "o": partition})
        reads: list[int] = []

        def counted(faust: Any, partition: int) -> Any:
            reads.append(partition)
            return partition_items(faust, partition)

        state = ChangelogTable(table, delivery(), "state:t", TP, read_partition=counted)
        assert [held_state(state, p) for p in range(4)] == [
            ([(f"k{p}", [p])], 10 + p, p) for p in range(4)]
        assert reads == [0, 1, 2, 3]
    finally:
        close(table)
