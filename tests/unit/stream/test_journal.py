"""`JournalTable` on a real Faust table (RocksDB store, no broker): whatever sequence of batches
is written, a restore (a new table object reading the database, or Faust's recovery applying
the changelog records to an empty database) reads back exactly the states last written; the
changelog cut after any batch, or between a batch's new chunks and the tombstones of the chunks
it compacted, reads back that batch's states; the entries held stay bounded by the keys alive;
keys written one record per key before read back and moved into chunks."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.stream import journal
from pipeline.stream.journal import JOURNAL_MARK, JournalTable, chunk_key
from pipeline.stream.segments import is_journaled_key, member_key
from pipeline.stream.state_writer import ChangelogTable, encode
from tests.unit.stream.test_state_writer import (  # noqa: F401  (the fixture)
    CHANGELOG,
    close,
    delivery,
    event_loop_for_faust,
    faust_table,
    held,
)

PARTITIONS = (1, 4)
KEYS = [f"k{i}" for i in range(12)]

# one batch: a partition, its changed keys (state, or None to delete) and the batch's stream time
batches = st.lists(st.tuples(
    st.sampled_from(PARTITIONS),
    st.dictionaries(st.sampled_from(KEYS), st.none() | st.integers(0, 9) | st.lists(
        st.integers(0, 3), max_size=3), min_size=1, max_size=8),
    st.integers(0, 100)), min_size=1, max_size=40)


def read(state: ChangelogTable, partitions: tuple[int, ...] = PARTITIONS) -> list[Any]:
    """What a worker assigned these partitions reads at their restores."""
    return [item for p in partitions for item in state.partition_items(p)]


def states(items: Any) -> dict[tuple[int, str], Any]:
    return {(value["p"], key): value["s"] for key, value in items}


def recovered(tmp: Path, records: list[Any]) -> Any:
    """A new Faust table rebuilt from `records` as Faust's recovery applies a changelog."""
    table = faust_table(tmp)
    events = [SimpleNamespace(message=SimpleNamespace(
        tp=TP(CHANGELOG, r.partition), offset=offset, key=r.key, value=r.value,
        partition=r.partition)) for offset, r in enumerate(records)]
    table.data.apply_changelog_batch(events, to_key=None, to_value=None)
    return table


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.sets(st.integers(0, 39), max_size=4), st.integers(0, 6))
def test_a_restore_reads_back_the_states_last_written(
        writes: list[tuple[int, dict[str, Any], int]], restarts: set[int], slack: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal, "COMPACT_SLACK", slack)  # compact often
        base = faust_table(Path(tmp) / "ours")
        queue = delivery()
        state = JournalTable(base, queue, "state:t", TP)
        model: dict[tuple[int, str], Any] = {}
        # after each batch: the records sent so far, and where its own new chunks end
        cuts: list[tuple[int, int, dict[tuple[int, str], Any]]] = []
        try:
            for index, (partition, changed, watermark) in enumerate(writes):
                if index in restarts:  # a new worker reading the database
                    state = JournalTable(base, queue, "state:t", TP)
                    assert states(read(state)) == model
                before = len(queue._pending)
                book = state.journals.get(partition)
                alive = 0 if book is None else len(book.where)
                state.write_pairs(partition, sorted(changed.items()), {"w": watermark})
                for key, value in changed.items():
                    if value is None:
                        model.pop((partition, key), None)
                    else:
                        model[(partition, key)] = value
                sent = queue._pending[before:]
                chunks = [r for r in sent if r.value is not None]
                assert all(base.data._decode_key(r.key).startswith(JOURNAL_MARK) for r in sent)
                # the batch's chunks come before its tombstones (a cut between keeps both)
                assert sent[:len(chunks)] == chunks
                assert len(chunks) <= 1  # a small batch is one record, however many keys
                cuts.append((before + len(chunks), len(queue._pending), dict(model)))
                # compaction runs before the batch is added, on the keys alive then
                book = state.journals[partition]
                assert book.entries <= journal.COMPACT_FACTOR * alive + slack + len(changed)
                assert states(read(JournalTable(base, delivery(), "state:t", TP))) == model
            # Faust's recovery from the changelog, cut after any batch or inside one
            for number, (inside, end, expected) in enumerate(cuts[-2:]):
                for cut in (inside, end):
                    restored = recovered(Path(tmp) / f"r{number}-{cut}",
                                         list(queue._pending[:cut]))
                    try:
                        assert states(read(JournalTable(restored, delivery(), "state:t",
                                                        TP))) == expected
                    finally:
                        close(restored)
            # every value read back carries the stream time of a batch of its partition
            seen = {(p, w) for p, _, w in writes}
            for _key, value in read(JournalTable(base, delivery(), "state:t", TP)):
                assert (value["p"], value["w"]) in seen
        finally:
            close(base)


def test_one_record_per_batch_and_compaction_keeps_the_entries_bounded(tmp_path: Path) -> None:
    """Claims as the stage writes them: each batch adds 500 keys and removes the 500 of four
    batches before. The records per batch stay one chunk (+ tombstones of compacted chunks),
    the chunks held stay bounded, and the state reads back."""
    table = faust_table(tmp_path)
    queue = delivery()
    state = JournalTable(table, queue, "state:t", TP)
    try:
        for batch in range(60):
            pairs: list[tuple[str, Any]] = [(f"e{batch}-{i}", [i, "j"]) for i in range(500)]
            if batch >= 4:
                pairs += [(f"e{batch - 4}-{i}", None) for i in range(500)]
            before = len(queue._pending)
            state.write_pairs(2, pairs, {})
            assert len([r for r in queue._pending[before:] if r.value is not None]) == 1
        chunks = [k for k in held(table, 2) if k.startswith(JOURNAL_MARK)]
        book = state.journals[2]
        assert len(book.where) == 2000
        # (compaction runs before a batch of 1,000 entries is added)
        assert book.entries <= journal.COMPACT_FACTOR * 2000 + journal.COMPACT_SLACK + 1000
        assert len(chunks) == len(book.chunks) < 20
        expected = {(2, f"e{b}-{i}"): [i, "j"] for b in range(56, 60) for i in range(500)}
        assert states(read(JournalTable(table, delivery(), "state:t", TP), (2,))) == expected
    finally:
        close(table)


def test_keys_written_one_per_record_are_read_and_moved_into_chunks(tmp_path: Path) -> None:
    """A table written before it was a journal: its keys read back, a later chunk overrides
    them, and once compacted they are moved into chunks and deleted."""
    table = faust_table(tmp_path)
    try:
        ChangelogTable(table, delivery(), "state:t", TP).write_pairs(
            3, [("a", 1), ("b", 2), ("c", 3)], {"w": 5})
        queue = delivery()
        state = JournalTable(table, queue, "state:t", TP)
        assert states(read(state, (3,))) == {(3, "a"): 1, (3, "b"): 2, (3, "c"): 3}
        state.write_pairs(3, [("a", 10), ("b", None)], {"w": 6})
        assert states(read(JournalTable(table, delivery(), "state:t", TP), (3,))) == {
            (3, "a"): 10, (3, "c"): 3}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(journal, "COMPACT_SLACK", 0)
            patch.setattr(journal, "COMPACT_FACTOR", 1)
            state.write_pairs(3, [("d", 4)], {"w": 7})
        assert set(held(table, 3)) == {chunk_key(3, 1)}  # a, c and chunk 0 moved into it
        tombstones = {r.key for r in queue._pending if r.value is None}
        assert {encode("a"), encode("b"), encode("c")} <= tombstones
        assert states(read(JournalTable(table, delivery(), "state:t", TP), (3,))) == {
            (3, "a"): 10, (3, "c"): 3, (3, "d"): 4}
    finally:
        close(table)


def test_keys_outside_the_journal_are_written_one_per_record(tmp_path: Path) -> None:
    """The segment table: bucket members in chunks, drop series (large) one per record."""
    table = faust_table(tmp_path)
    queue = delivery()
    try:
        state = JournalTable(table, queue, "state:t", TP, journaled=is_journaled_key)
        member = member_key("all", "nps", 0, "e1")
        series = {"b": [[i, [1.0, 2.0]] for i in range(30_000)]}  # over 512 KiB: in pieces
        state.write_pairs(0, [(member, {"v": 1, "a": [1, 0]}), ("series:nps|all|", series)], {})
        keys = set(held(table, 0))
        assert chunk_key(0, 0) in keys and "series:nps|all|" in keys and member not in keys
        assert states(read(JournalTable(table, delivery(), "state:t", TP,
                                        journaled=is_journaled_key), (0,))) == {
            (0, member): {"v": 1, "a": [1, 0]}, (0, "series:nps|all|"): series}
        with pytest.raises(ValueError, match="cannot go in a journal chunk"):
            state.write_pairs(0, [(member_key("all", "nps", 0, "e2"), "x" * 600_000)], {})
    finally:
        close(table)



def test_a_write_of_several_chunks_reads_back_whole_or_not_at_all(tmp_path: Path) -> None:
    """A write whose entries take several chunks (a drop series' head and parts must never
    be read without each other): Faust's recovery from a changelog cut after any of its
    records reads the write before it, or this one once its chunks are all there; the next
    write deletes the broken chunks and never reuses their seqs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal, "CHUNK_BYTES", 300)
        patch.setattr(journal, "COMPACT_SLACK", 0)  # compaction inside the writes too
        table = faust_table(tmp_path / "ours")
        queue = delivery()
        state = JournalTable(table, queue, "state:t", TP)
        first = {f"k{i}": [i, "first" * 5] for i in range(30)}
        second = {f"k{i}": None if i % 7 == 0 else [i, "second" * 5] for i in range(10, 45)}
        try:
            state.write_pairs(0, sorted(first.items()), {"w": 1})
            before = len(queue._pending)
            state.write_pairs(0, sorted(second.items()), {"w": 2})
            sent = list(queue._pending)
            chunks = [r for r in sent[before:] if r.value is not None]
            assert len(chunks) > 3  # the write took several chunks
            old = {(0, k): v for k, v in first.items()}
            new = {(0, k): v for k, v in {**first, **second}.items() if v is not None}
            for cut in range(before, len(sent) + 1):
                restored = recovered(tmp_path / f"cut-{cut}", sent[:cut])
                try:
                    whole = cut >= before + len(chunks)
                    again = JournalTable(restored, (later := delivery()), "state:t", TP)
                    assert states(read(again, (0,))) == (new if whole else old), cut
                    # the worker after the crash writes on: the broken chunks go, and what
                    # it wrote reads back over the write before
                    again.write_pairs(0, [("k1", "after")], {"w": 3})
                    assert states(read(JournalTable(restored, delivery(), "state:t", TP),
                                       (0,))) == {**(new if whole else old), (0, "k1"): "after"}
                    seqs = [journal.chunk_seq(k) for k in held(restored, 0)
                            if k.startswith(JOURNAL_MARK)]
                    assert not journal.broken(
                        (journal.chunk_seq(k), v) for k, v in
                        ((k, v) for k, v in held(restored, 0).items()
                         if k.startswith(JOURNAL_MARK))), cut
                    written = [r for r in later._pending if r.value is not None]
                    assert all(journal.chunk_seq(restored.data._decode_key(r.key))
                               > max(seqs[:-1], default=-1) for r in written)
                    # and the same from the changelog alone
                    again_restored = recovered(tmp_path / f"again-{cut}",
                                               sent[:cut] + list(later._pending))
                    try:
                        assert states(read(JournalTable(again_restored, delivery(), "state:t",
                                                        TP), (0,))) == {
                            **(new if whole else old), (0, "k1"): "after"}
                    finally:
                        close(again_restored)
                finally:
                    close(restored)
        finally:
            close(table)


class _Event:
    """What `write_state` reads of the batch's last event: its partition."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


# one claims record: (event_id, journey key, digest, journey partition, hours after T0 of the
# event and of that partition's stream time)
claims_batches = st.lists(st.lists(st.tuples(
    st.sampled_from([f"e{i}" for i in range(30)]), st.sampled_from(["j-a", "j-b", "c1"]),
    st.integers(0, 5), st.integers(0, 2), st.integers(0, 80), st.integers(0, 80)),
    min_size=1, max_size=6), min_size=1, max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claims_batches, st.sets(st.integers(0, 29), max_size=5), st.integers(0, 4))
def test_claims_forgotten_by_time_are_forgotten_again_on_restore(
        records: list[list[tuple[str, str, int, int, int, int]]], restarts: set[int],
        slack: int) -> None:
    """The claims stage forgets claims by time with no removal entry (`forget_keys`): after
    any batch, a stage restored from the journal (a new table object reading the database)
    holds exactly the claims, stream times and horizon of the live one, and the entries the
    journal holds stay bounded by the claims alive, as with a removal per claim."""
    from pipeline.core.config import CoreConfig
    from pipeline.stream.agent_loop import held_state, write_state
    from pipeline.stream.claims import ClaimsStage, claim_item

    hour = 3_600_000
    t0 = 1_790_000_000_000
    config = CoreConfig()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal, "COMPACT_SLACK", slack)  # compact often
        base = faust_table(Path(tmp))
        state = JournalTable(base, delivery(), "state:t", TP)
        live = ClaimsStage(config, "t")
        try:
            for index, batch in enumerate(records):
                if index in restarts:  # the partition moves to a new worker
                    state = JournalTable(base, delivery(), "state:t", TP)
                    live = ClaimsStage(config, "t")
                    live.restore_keys(held_state(state, 2).pairs)
                alive = len(live.claims)
                live.apply([claim_item(event_id, key, digest, partition, t0 + at * hour,
                                       t0 + watermark * hour, partition, 0, b"{}")
                            for event_id, key, digest, partition, at, watermark in batch])
                write_state(state, _Event(2), live.dirty_state(), {}, live.drain_forgotten())
                book = state.journals[2]
                # the claims alive are the journal's keys alive, less the two state keys
                assert set(book.where) - {"__watermarks__", "__forgotten_before__"} == set(
                    live.claims._claims)
                assert book.entries <= journal.COMPACT_FACTOR * (alive + 2) + slack + 2 * len(
                    batch) + 2
                restored = ClaimsStage(config, "t")
                restored.restore_keys(held_state(JournalTable(base, delivery(), "state:t",
                                                              TP), 2).pairs)
                assert restored.claims.snapshot() == live.claims.snapshot()
                assert (restored.watermarks, restored.forgotten_before) == (
                    live.watermarks, live.forgotten_before)
        finally:
            close(base)


@pytest.mark.parametrize("seed", range(8))
def test_bucket_members_forgotten_by_time_are_forgotten_again_on_restore(
        seed: int, tmp_path: Path) -> None:
    """The segment stage forgets the members of evicted buckets with no removal each, and
    a bucket can be made again after its eviction (a withdrawal moves a journey's end back
    into it). Written through a real journal that compacts often, a stage restored after any
    batch holds exactly the live stage's buckets (members, versions) and horizon; the stage
    restarted at random points emits the records of one that never restarted; and the
    journal's keys alive stay the members held."""
    import random

    from pipeline.core.config import CoreConfig, WindowConfig
    from pipeline.stream import messages
    from pipeline.stream.agent_loop import held_state, write_state
    from pipeline.stream.segments import MEMBER_PREFIX, SegmentStage

    rng = random.Random(seed)
    minute = 60_000
    config = CoreConfig(windows=WindowConfig(allowed_lateness_ms=5 * minute))
    segs = [("all", "all"), ("channel", "phone")]

    def stage_of() -> SegmentStage:
        return SegmentStage(config, sources=1, clock=lambda: 0.0, series_every_s=1e9)

    def buckets(stage: SegmentStage) -> set[tuple[object, ...]]:
        return {(seg, r.metric, r.window_start, r.n, r.positives, r.promoters, r.version)
                for seg, totals in stage.totals.items() for r in totals.records()}

    def rows(records: list[Any]) -> dict[tuple[object, ...], tuple[object, ...]]:
        out: dict[tuple[object, ...], tuple[object, ...]] = {}
        for r in records:
            key = (r.metric, r.segment_value, r.window_start)
            if key not in out or r.version >= out[key][-1]:
                out[key] = (r.n, r.positives, r.promoters, r.version)
        return out

    def write(stage: SegmentStage, table: JournalTable) -> None:
        write_state(table, _Event(1), stage.dirty_state(), {}, stage.drain_forgotten())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal, "COMPACT_SLACK", rng.choice([0, 4, 40]))
        base = faust_table(tmp_path)
        table = JournalTable(base, delivery(), "state:t", TP, journaled=is_journaled_key)
        live, plain = stage_of(), stage_of()
        want: list[Any] = []
        got: list[Any] = []
        now = 0
        remade = 0
        try:
            for _batch in range(120):
                for _ in range(rng.randrange(1, 8)):
                    now += rng.choice([0, 0, minute // 2, minute])
                    dim, value = rng.choice(segs)
                    u = rng.random()
                    current = now - now % minute
                    if u < 0.3:
                        message = messages.answer(dim, value, "nps", current,
                                                  f"e{rng.randrange(60)}", rng.randrange(11))[1]
                    elif u < 0.4:
                        message = messages.retract(dim, value, "nps", current,
                                                   f"e{rng.randrange(60)}")[1]
                    else:
                        back = rng.choice([0, 0, 0, minute, 20 * minute])  # 20: evicted
                        start = max(0, current - back)
                        remade += start + minute <= live.evicted_before
                        contribution = None if rng.random() < 0.1 else (start,
                                                                         rng.random() < 0.4)
                        message = messages.end(dim, value, f"j{rng.randrange(25)}",
                                               contribution, rng.random() < 0.1)[1]
                    for stage in (live, plain):
                        stage.apply(message)
                    if rng.random() < 0.3:
                        for stage, out in ((live, got), (plain, want)):
                            out.extend(stage.apply(messages.watermark(0, now)).metrics)
                for stage, out in ((live, got), (plain, want)):
                    out.extend(stage.flush().metrics)
                write(live, table)
                plain.dirty_state()
                plain.drain_forgotten()
                book = table.journals.get(1)
                held_members = {key for key in (book.where if book else {})
                                if key.startswith(MEMBER_PREFIX)}
                assert len(held_members) == sum(len(members) for written in
                                                live._written.values()
                                                for members in written.values())
                restored = stage_of()
                restored.restore_keys(held_state(JournalTable(
                    base, delivery(), "state:t", TP, journaled=is_journaled_key), 1).pairs)
                assert buckets(restored) == buckets(live)
                assert restored.evicted_before == live.evicted_before
                if rng.random() < 0.1:  # the partition moves to a new worker
                    table = JournalTable(base, delivery(), "state:t", TP,
                                         journaled=is_journaled_key)
                    live = stage_of()
                    live.restore_keys(held_state(table, 1).pairs)
                    got.extend(live.flush().metrics)  # a restore re-flushes what was pending
                    write(live, table)
            assert rows(got) == rows(want)
            assert live.evicted_before > 0 and remade  # evictions and buckets made again
        finally:
            close(base)
