"""Every Faust private name the worker uses (pipeline/stream/faust_private.py), checked against
the installed faust-streaming: these fail when a Faust release renames, retypes or changes one.
And no other module of `pipeline/` reaches for one."""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import faust
import faust.streams
import pytest
from aiokafka import AIOKafkaConsumer
from faust.stores import rocksdb as faust_rocksdb
from faust.tables.table import Table
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from intervaltree import IntervalTree

from pipeline.kafka_fetch import FetchSize
from pipeline.stream import faust_private
from pipeline.stream.faust_private import PeakendConsumer, StoreHookTable, current_event_of
from tests.unit.stream.fake_faust import Event, Message

ROOT = Path(__file__).resolve().parents[3]
FRAMEWORKS = ("faust", "mode", "aiokafka")


def test_current_event_of_is_what_faust_reads_for_a_table_write() -> None:
    assert isinstance(faust.streams._current_event, contextvars.ContextVar)
    event = Event(b"", Message("t", 7, 0))
    before = faust.streams.current_event()
    with current_event_of(event):
        current: object = faust.streams.current_event()  # the fake Event, not a Faust EventT
        assert current is event
    assert faust.streams.current_event() is before
    # Faust's table and its RocksDB store pick the partition of a write from that event
    assert "current_event()" in inspect.getsource(Table.partition_for_key)
    assert "event.message.partition" in inspect.getsource(faust_rocksdb.Store._set)


def test_a_store_write_goes_to_the_database_of_the_named_events_partition(
        tmp_path: Path) -> None:
    app: Any = faust.App("faust-private-test", datadir=str(tmp_path), store="rocksdb://")
    table = app.tables.add(StoreHookTable(app, name="t", partitions=8,
                                          beacon=app.tables.beacon))
    store = table.data
    assert isinstance(store, faust_rocksdb.Store)
    try:
        with current_event_of(Event(b"", Message("t", 5, 0))):
            store["k"] = {"v": 1}
        assert set(store._dbs) == {5}
        with current_event_of(Event(b"", Message("t", 5, 1))):
            assert store["k"] == {"v": 1}
        with current_event_of(Event(b"", Message("t", 2, 0))), pytest.raises(KeyError):
            store["k"]  # another partition's database
        # the database `partition_db` hands the state writer is the one Faust wrote to
        assert faust_private.partition_db(table, 5) is store._dbs[5]
        assert faust_private.partition_db(table, 5)[store._encode_key("k")] == \
            store._encode_value({"v": 1})
        assert "self._db_for_partition(partition)" in inspect.getsource(faust_rocksdb.Store._set)
        # `partition_items` reads one partition's database as `table.items()` reads them all
        with current_event_of(Event(b"", Message("t", 2, 0))):
            store["j"] = {"v": 2}
            store["i"] = [3]
        faust_private.partition_db(table, 5).put(store.offset_key, b"17")  # as Faust keeps it
        assert dict(faust_private.partition_items(table, 5)) == {"k": {"v": 1}}
        assert dict(faust_private.partition_items(table, 2)) == {"j": {"v": 2}, "i": [3]}
        # as if both assigned (Faust's Store method, replaced on this instance)
        store._dbs_for_actives = lambda: iter(store._dbs.values())  # type: ignore[method-assign]
        assert sorted(map(repr, store._items_decoded())) == sorted(map(repr, [
            *faust_private.partition_items(table, 5), *faust_private.partition_items(table, 2)]))
    finally:
        for db in store._dbs.values():
            db.close()


def test_faust_builds_each_table_store_through_new_store_by_url(tmp_path: Path) -> None:
    seen: list[Any] = []

    class Recording(StoreHookTable):
        def configure_store(self, store: Any) -> Any:
            seen.append(store)
            return store

    assert list(inspect.signature(faust.Table._new_store_by_url).parameters) == ["self", "url"]
    app: Any = faust.App("faust-private-hook", datadir=str(tmp_path), store="memory://")
    table = app.tables.add(Recording(app, name="t", partitions=2, beacon=app.tables.beacon))
    assert table.data is seen[0]


def test_a_changelog_prefix_names_the_changelog_topic_whatever_the_apps_id() -> None:
    assert list(inspect.signature(faust.Table._changelog_topic_name).parameters) == ["self"]
    app: Any = faust.App("deployment-stage-two", store="memory://")
    pinned = app.tables.add(StoreHookTable(app, name="segment-state", partitions=2,
                                           beacon=app.tables.beacon,
                                           changelog_prefix="deployment"))
    plain = app.tables.add(StoreHookTable(app, name="other", partitions=2,
                                          beacon=app.tables.beacon))
    assert pinned.changelog_topic.get_topic_name() == "deployment-segment-state-changelog"
    assert plain.changelog_topic.get_topic_name() == "deployment-stage-two-other-changelog"
    # and the topic Faust makes for it is its compacted changelog, as any table's
    assert pinned.changelog_topic.compacting and pinned.changelog_topic.internal


def test_faust_consumer_keeps_the_bookkeeping_peakend_consumer_overrides() -> None:
    assert list(inspect.signature(Consumer._new_offset).parameters) == ["self", "tp"]
    # logged by PeakendConsumer._add_gap (issue 20): an async method of these parameters
    assert inspect.iscoroutinefunction(Consumer._add_gap)
    assert list(inspect.signature(Consumer._add_gap).parameters) == [
        "self", "tp", "offset_from", "offset_to"]
    init = inspect.getsource(Consumer.__init__)
    for name, kind in (("_acked", "defaultdict(list)"), ("_acked_index", "defaultdict(set)"),
                       ("_gap", "defaultdict(IntervalTree)"),
                       ("_committed_offset", "defaultdict(lambda: None)")):
        assert f"self.{name} = {kind}" in init, name
    assert "self._unacked_messages = WeakSet()" in init
    # Faust's commit asks `_new_offset` for the offset of each partition
    assert "_new_offset(" in inspect.getsource(Consumer._filter_committable_offsets)


def test_peakend_consumer_commits_past_duplicate_acks_in_one_step() -> None:
    tp = ("t", 0)
    consumer: Any = PeakendConsumer.__new__(PeakendConsumer)  # only the bookkeeping is used
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._committed_offset[tp] = 10
    consumer._acked[tp].extend(range(10, 40))
    consumer._acked_index[tp].update(range(10, 40))
    consumer._gap[tp].addi(11, 20)  # offsets acked as well
    assert consumer._new_offset(tp) == 40
    assert consumer._acked[tp] == [] and not consumer._acked_index[tp]


def test_faust_reads_records_and_seeks_through_what_the_gate_overrides() -> None:
    """The offset gate (issue 20) wraps `getmany`, `perform_seek` and `_add_gap`: Faust's
    fetch loop must read records through `self.getmany`, reset its read offset on `seek`, and
    seek to the committed offsets through `perform_seek` at the end of every rebalance."""
    from faust.tables import recovery

    assert inspect.isasyncgenfunction(Consumer.getmany)
    assert list(inspect.signature(Consumer.getmany).parameters) == ["self", "timeout"]
    drain = inspect.getsource(Consumer._drain_messages)
    assert "getmany = self.getmany" in drain and "_add_gap(" in drain
    assert "self._read_offset[ensure_TP(partition)] = offset" in inspect.getsource(Consumer.seek)
    assert "self._committed_offset.update(" in inspect.getsource(Consumer.perform_seek)
    # the readings start from the seek's own answer (`seek_to_committed`), and the gate learns
    # which records the fetch loop handed on through the callback it calls (`_handing_on`)
    assert "await self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)
    assert "callback = self.callback" in drain and "callback(message)" in drain
    assert "self.callback = callback" in inspect.getsource(Consumer.__init__)
    # Faust's stream acks the records it skips (an ended generation among them): `ack` is
    # where the consumer refuses to count those as done
    from faust.streams import Stream
    aiter_source = inspect.getsource(Stream._py_aiter)
    assert "message.generation_id != self.app.consumer_generation_id" in aiter_source
    assert "value is skipped_value" in aiter_source and "event.ack()" in aiter_source
    assert "self._unacked_messages.discard(message)" in inspect.getsource(Consumer.ack)
    assert "notify(self._waiting_for_ack)" in inspect.getsource(Consumer.ack)
    # Faust's flow control empties the agents' channels on resume, through `clear`, which the
    # consumer wraps (`_watch_channel_clears`); the recovery resumes it after its seek
    from mode.utils.queues import FlowControlEvent
    assert "self.clear()" in inspect.getsource(FlowControlEvent.resume)
    assert "flow_control.resume()" in inspect.getsource(recovery.Recovery.on_recovery_completed)
    assert "perform_seek()" in inspect.getsource(recovery.Recovery._resume_streams)
    # the seek PeakendConsumer runs in the consumer thread instead (`_seek`)
    from faust.transport.consumer import ThreadDelegateConsumer
    assert "self._thread.seek(partition, offset)" in inspect.getsource(
        ThreadDelegateConsumer._seek)
    assert "await self._seek(partition, offset)" in inspect.getsource(Consumer.seek)
    assert list(inspect.signature(Consumer.earliest_offsets).parameters) == [
        "self", "partitions"]


class Record:
    def __init__(self, offset: int, generation_id: int = 0, tp: Any = None) -> None:
        self.offset = offset
        self.generation_id = generation_id  # Faust's: the group generation it was fetched in
        self.tp = tp


def gated_consumer(monkeypatch: pytest.MonkeyPatch, fetches: list[list[int]], tp: Any,
                   log_start: int = 0, committed: dict[Any, int] | None = None
                   ) -> tuple[Any, list[tuple[Any, int]]]:
    """A PeakendConsumer over Faust's consumer with its fetches, seeks and offset lookups
    replaced: each `getmany` call yields the next fetch's offsets of `tp`; the seek to the
    committed offsets (Faust's own `perform_seek`) finds `committed` (a test may change it;
    none: never committed)."""
    from types import SimpleNamespace

    from faust.transport.drivers import aiokafka as faust_aiokafka

    seeks: list[tuple[Any, int]] = []

    async def getmany(self: Any, timeout: float) -> Any:
        # Faust's: records carry the generation of their fetch, and the fetch ends as soon as
        # the generation changes
        generation = self.app.consumer_generation_id
        for offset in fetches.pop(0):
            if self.app.consumer_generation_id != generation:
                break
            yield tp, Record(offset, generation, tp)

    async def seek(self: Any, partition: Any, offset: int) -> None:
        seeks.append((partition, offset))

    async def earliest_offsets(self: Any, *partitions: Any) -> dict[Any, int]:
        return {p: log_start for p in partitions}

    found = {} if committed is None else committed

    async def seek_to_committed(self: Any) -> dict[Any, int | None]:  # aiokafka's answer
        return {tp: found.get(tp)}

    for name, fake in (("getmany", getmany), ("seek", seek),
                       ("earliest_offsets", earliest_offsets),
                       ("seek_to_committed", seek_to_committed)):
        monkeypatch.setattr(faust_aiokafka.Consumer, name, fake)
    monkeypatch.setattr(faust_aiokafka.Consumer, "assignment", lambda self: {tp})
    consumer: Any = PeakendConsumer.__new__(PeakendConsumer)
    consumer.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: t == "t"),
                                   consumer_generation_id=1, in_recovery=False)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._read_offset = defaultdict(lambda: None)
    return consumer, seeks


async def seek_then_read(consumer: Any, fetches: int) -> list[int]:
    """The end of a rebalance (the consumer's seek), then the offsets `fetches` fetches
    deliver."""
    await consumer.perform_seek()
    out = []
    for _ in range(fetches):
        out += [message.offset async for _, message in consumer.getmany(1.0)]
    return out


def answer_lookups(monkeypatch: pytest.MonkeyPatch,
                   answers: list[dict[Any, int] | Exception]) -> None:
    """The broker's answers to the consumer's first-offset lookups, in turn (an exception: no
    answer), with no pause before a held record is read again."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    async def earliest_offsets(self: Any, *partitions: Any) -> dict[Any, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(faust_aiokafka.Consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(PeakendConsumer, "HOLD_SECONDS", 0.0)


def test_peakend_consumer_seeks_back_over_a_hole_and_commits_nothing_past_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20's loss: a partition with no committed offset, read from 3 after a rebalance.
    Today's Faust hands 3-5 over and commits 6 over 0-2; the consumer seeks it to 0 when the
    rebalance ends, and the gate drops what was fetched before that seek."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 7)
    consumer, seeks = gated_consumer(monkeypatch, [[3, 4, 5], [0, 1, 2, 3, 4, 5, 3]], tp)

    assert asyncio.run(seek_then_read(consumer, fetches=2)) == [0, 1, 2, 3, 4, 5]
    assert seeks == [(tp, 0)]
    consumer._acked[tp].extend([3, 4])  # acked first, 0-2 still with the agent
    assert consumer._new_offset(tp) is None
    consumer._acked[tp].extend([0, 1, 2])
    assert consumer._new_offset(tp) == 5


def test_a_record_read_while_the_first_offset_is_unknown_is_read_again_not_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker does not answer the first-offset lookup: the fetched records cannot be
    delivered yet, and the partition is sought back to the first of them (once per fetch), so
    they come again; once the lookup succeeds they are delivered. Before, they were dropped and
    never read again: a partition whose last records came then stayed unapplied."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 2)
    consumer, seeks = gated_consumer(monkeypatch, [[4, 5, 6], [4, 5, 6], [4, 5, 6]], tp)
    answers: list[dict[Any, int] | Exception] = [
        TimeoutError("no answer"), TimeoutError("no answer"), TimeoutError("no answer"),
        {tp: 4}]
    answer_lookups(monkeypatch, answers)

    async def read() -> list[list[int]]:
        await consumer.perform_seek()  # its lookup: no answer
        return [[message.offset async for _, message in consumer.getmany(1.0)]
                for _ in range(3)]

    # fetch 1: no answer to the retry before it nor for record 4 (5 and 6 wait for the seek
    # back to 4); fetch 2: the retry before it gets the answer, 4-6 delivered
    assert asyncio.run(read()) == [[], [4, 5, 6], []]
    assert seeks == [(tp, 4), (tp, 4)]


def test_a_rebalance_during_a_first_offset_lookup_leaves_no_hole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster fault stream's loss (issue 20): a record waits in `getmany` for its
    partition's first offset while a rebalance ends (a new generation, the gate reset by the
    seek to the committed offsets). Admitted after the lookup, it went to the agents stamped
    with the ended generation, which they refuse, and the new reading moved past it: the
    partition's later records were applied without it and its commits stuck before it. It
    must be left to the refetch instead, which delivers it in the new generation."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    tp = TP("t", 3)
    consumer, seeks = gated_consumer(monkeypatch, [[0, 1, 2], [0, 1, 2]], tp)
    lookups = 0

    async def earliest_offsets(self: Any, *partitions: Any) -> dict[Any, int]:
        nonlocal lookups
        lookups += 1
        if lookups == 1:  # the first rebalance's lookup: no answer
            raise TimeoutError("no answer")
        if lookups == 2:  # getmany's lookup for record 0: a rebalance ends meanwhile
            consumer.app.consumer_generation_id = 2
            await consumer.perform_seek()
        return {tp: 0}

    monkeypatch.setattr(faust_aiokafka.Consumer, "earliest_offsets", earliest_offsets)

    async def read() -> list[tuple[int, int]]:
        await consumer.perform_seek()
        return [(message.offset, message.generation_id)
                for _ in range(2) async for _, message in consumer.getmany(1.0)]

    # before the fix: [(0, 1), (1, 2), (2, 2)], record 0 of generation 1 refused by the agents
    assert asyncio.run(read()) == [(0, 2), (1, 2), (2, 2)]
    assert all(offset == 0 for _, offset in seeks)  # never sought past the hole


def test_a_record_of_an_ended_generation_does_not_move_the_gate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's consumer thread moved the group's generation on after the fetch (a rebalance
    began): such records are refused by the agents and read again after the rebalance's seek,
    so the gate lets them by without counting them as delivered."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    tp = TP("t", 4)
    consumer, _ = gated_consumer(monkeypatch, [], tp)
    fetches = [[Record(0, 1), Record(1, 1)], [Record(0, 2), Record(1, 2)]]

    async def getmany(self: Any, timeout: float) -> Any:
        for record in fetches.pop(0):
            yield tp, record

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", getmany)

    async def read() -> list[list[int]]:
        await consumer.perform_seek()
        consumer.app.consumer_generation_id = 2
        stale = [message.offset async for _, message in consumer.getmany(1.0)]
        await consumer.perform_seek()  # the end of the rebalance
        return [stale, [message.offset async for _, message in consumer.getmany(1.0)]]

    assert asyncio.run(read()) == [[], [0, 1]]


def test_a_partition_never_committed_is_sought_to_its_first_offset_when_a_rebalance_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its only record was fetched in the generation before (then dropped): aiokafka would read
    on past it, and with no later record the gate never saw the hole."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 2)
    consumer, seeks = gated_consumer(monkeypatch, [[], [0]], tp)

    assert asyncio.run(seek_then_read(consumer, fetches=2)) == [0]
    assert seeks == [(tp, 0)]


def test_a_never_committed_partition_whose_lookup_failed_is_sought_once_it_succeeds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup at the end of the rebalance fails and the partition's position is past its
    records (fetched in the ended generation): no record will arrive to reveal the hole, so
    `getmany` retries the lookup and seeks the partition to its first offset."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 5)
    consumer, seeks = gated_consumer(monkeypatch, [[], [0]], tp)
    answers: list[dict[Any, int] | Exception] = [TimeoutError("no answer"), {tp: 0}]
    answer_lookups(monkeypatch, answers)

    async def read() -> list[int]:
        await consumer.perform_seek()  # its lookup: no answer
        assert seeks == []
        return [message.offset for _ in range(2) async for _, message in consumer.getmany(1.0)]

    assert asyncio.run(seek_then_read(consumer, fetches=2)) == [0]
    assert seeks == [(tp, 0)]


def test_a_partition_whose_reading_is_stuck_before_waiting_records_is_sought_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Loops of the two-worker test stalled with a partition's gate expecting offset 1 while
    its log held up to 7 and no record arrived: its fetch position had ended past the offset
    the rebalance reset the gate to. The consumer seeks every gated partition to its gate's
    offset when a rebalance ends, and again when nothing reaches a gate for `stall_seconds`
    while its log holds the expected record."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    tp = TP("t", 6)
    consumer, seeks = gated_consumer(monkeypatch, [[], [4, 5]], tp, committed={tp: 4})
    monkeypatch.setattr(faust_aiokafka.Consumer, "highwater", lambda self, tp: 9)
    consumer.offset_gate.stall_seconds = 0.0

    async def read() -> list[int]:
        await consumer.perform_seek()
        assert seeks == [(tp, 4)]  # at the end of the rebalance
        return [message.offset for _ in range(2) async for _, message in consumer.getmany(1.0)]

    assert asyncio.run(read()) == [4, 5]
    assert seeks == [(tp, 4), (tp, 4)]  # the second: nothing came while 4-8 waited


def test_faust_recovery_keeps_what_the_recovery_watch_reads() -> None:
    """`recovery_progress` reads Faust's recovery (its start, what each changelog partition has
    left, when its last record came, the last offset applied) and the stalled partitions are
    read again through `seek_wait`, which resets Faust's read offset (a record below it is
    dropped by the fetch loop)."""
    from faust.tables.manager import TableManager
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    started = inspect.getsource(Recovery._set_recovery_started)
    assert "self._recovery_started_at = monotonic()" in started
    assert "self.in_recovery = True" in started and "self.app.in_recovery = True" in started
    assert "self._active_events_received_at.clear()" in started
    slurp = inspect.getsource(Recovery._slurp_changelogs.fun)  # a mode ServiceTask
    assert "active_events_received_at[tp] = now" in slurp and "offsets[tp] = offset" in slurp
    assert "offset > seen_offset" in slurp  # a record read again is passed over
    assert "changelog_queue.get()" in slurp
    assert "highwater - offsets[tp]" in inspect.getsource(Recovery.active_remaining)
    assert isinstance(inspect.getattr_static(TableManager, "recovery"), property)
    assert isinstance(inspect.getattr_static(TableManager, "changelog_queue"), property)
    seek_wait = inspect.getsource(AIOKafkaConsumerThread._seek_wait)
    assert "consumer.seek(tp, offset)" in seek_wait
    assert "self.consumer._read_offset[tp] = offset" in seek_wait
    drain = inspect.getsource(Consumer._drain_messages)
    assert "if r_offset is None or offset >= r_offset:" in drain


def recovering_consumer(monkeypatch: pytest.MonkeyPatch, tp: Any, gated: Any) -> tuple[
        Any, Any, list[dict[Any, int]], list[tuple[Any, int]]]:
    """A PeakendConsumer whose app is restoring `tp` (a changelog partition: 4 records applied,
    offsets 0-3, of 10), its agents' partition `gated` paused meanwhile; the seeks it makes."""
    from collections import Counter
    from types import SimpleNamespace

    waits: list[dict[Any, int]] = []

    async def seek_wait(self: Any, partitions: dict[Any, int]) -> None:
        waits.append(dict(partitions))

    recovery = SimpleNamespace(
        in_recovery=True, _recovery_started_at=time.monotonic() - 60,
        _active_events_received_at={}, active_offsets=Counter({tp: 3}),
        active_remaining=lambda: Counter({tp: 6}))
    consumer, seeks = gated_consumer(monkeypatch, [[] for _ in range(8)], gated,
                                    committed={gated: 4})
    monkeypatch.setattr(PeakendConsumer, "seek_wait", seek_wait)
    monkeypatch.setattr(faust_aiokafka.Consumer, "highwater", lambda self, tp: 9)
    consumer.app.in_recovery = True
    consumer.app.tables = SimpleNamespace(recovery=recovery,
                                          changelog_queue=asyncio.Queue())
    consumer._active_partitions = {tp}
    consumer._paused_partitions = {gated}
    consumer.flow_active = True
    consumer.offset_gate.stall_seconds = 0.0
    return consumer, recovery, waits, seeks


def test_a_changelog_partition_the_recovery_reads_nothing_of_is_read_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A CI run of the two-worker test had a worker wait five minutes on two changelog
    partitions it took over, nothing read. With records left and nothing read for the watch's
    `stall_seconds`, the consumer reads the partition again from after the last offset the
    recovery applied, once per `stall_seconds`; the agents' partitions, paused by Faust
    meanwhile, are not taken for stuck."""
    from faust.types import TP

    tp, gated = TP("app-journey-state-changelog", 2), TP("t", 2)
    consumer, recovery, waits, seeks = recovering_consumer(monkeypatch, tp, gated)

    async def fetch_twice() -> None:
        await consumer.perform_seek()
        seeks.clear()
        for _ in range(2):
            consumer._stall_check_at = 0.0
            [record async for record in consumer.getmany(1.0)]

    asyncio.run(fetch_twice())
    assert waits == [{tp: 4}]  # once: the second check came within stall_seconds of the seek
    assert seeks == []  # the paused agents' partition: not sought
    assert "nothing read for 30 s with 6 records to restore" in caplog.text

    # a record came a moment ago: nothing to do
    recovery._active_events_received_at[tp] = time.monotonic()
    consumer._recovery_watch.stall_seconds = 5.0
    waits.clear()
    consumer._stall_check_at = 0.0
    asyncio.run(fetch_twice())
    assert waits == []


def test_no_recovery_running_reads_no_changelog_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.types import TP

    tp, gated = TP("app-journey-state-changelog", 2), TP("t", 2)
    consumer, recovery, waits, _ = recovering_consumer(monkeypatch, tp, gated)
    recovery.in_recovery = False
    assert faust_private.recovery_progress(consumer.app) is None
    consumer.app.in_recovery = False

    async def fetch() -> None:
        await consumer.perform_seek()
        [record async for record in consumer.getmany(1.0)]

    asyncio.run(fetch())
    assert waits == []


def test_a_record_of_the_next_generation_waits_for_that_generations_seek(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop run of the two-worker test: the group's generation moved on (Faust's consumer
    thread sets it when the partitions are assigned) and a record of the new generation was
    fetched before the seek that ends the rebalance reset the partition's reading. The old
    reading expected exactly that offset and delivered it, so the new owner applied offset 6
    before 1-5 and split customers' journeys. It must wait for the new reading."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 3)
    consumer, _ = gated_consumer(monkeypatch, [[4, 5], [6], [4, 5, 6]], tp, committed={tp: 4})

    async def read() -> list[list[tuple[int, int]]]:
        consumer.app.consumer_generation_id = 2
        await consumer.perform_seek()
        out = [[(m.offset, m.generation_id) async for _, m in consumer.getmany(1.0)]]
        consumer.app.consumer_generation_id = 3  # assigned again; no seek yet
        out.append([(m.offset, m.generation_id) async for _, m in consumer.getmany(1.0)])
        await consumer.perform_seek()  # the end of the rebalance: committed is still 4
        out.append([(m.offset, m.generation_id) async for _, m in consumer.getmany(1.0)])
        return out

    # before the fix the second fetch delivered (6, 3)
    assert asyncio.run(read()) == [[(4, 2), (5, 2)], [], [(4, 3), (5, 3), (6, 3)]]


def test_a_newly_assigned_partition_waits_for_the_rebalances_seek(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop run: a partition moved to this worker and its records were fetched before the
    seek that ends the rebalance gave it a reading; they went to the agents ungated, from
    wherever the fetch stood (offsets 47-84 of a partition committed at 20), and the agents'
    commits stuck before them. Records of an agent topic wait for the partition's reading."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 8)
    consumer, seeks = gated_consumer(monkeypatch, [[47, 48], [20, 21]], tp, committed={tp: 20})

    async def read() -> list[list[int]]:
        early = [m.offset async for _, m in consumer.getmany(1.0)]  # no reading yet
        await consumer.perform_seek()
        return [early, [m.offset async for _, m in consumer.getmany(1.0)]]

    # before the fix: [[47, 48], [20, 21]]: 47 and 48 applied ahead of 20
    assert asyncio.run(read()) == [[], [20, 21]]
    assert seeks == [(tp, 20)]


def test_a_seek_that_a_rebalance_overtook_resets_no_reading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's seek to the committed offsets asks the broker partition by partition; a
    rebalance may end meanwhile (generation 2), after the partition's new owner had committed
    9. Stamped with generation 2 from generation 1's answer (committed 4), the reading
    delivered generation 2's records 4-8, which that owner had applied already. The answer of
    an ended generation resets nothing: generation 2's records wait for its own seek."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    tp = TP("t", 2)
    committed = {tp: 4}
    consumer, seeks = gated_consumer(monkeypatch, [[4, 5, 6], [9, 10]], tp, committed=committed)

    async def seek_to_committed(self: Any) -> dict[Any, int | None]:
        found: dict[Any, int | None] = {tp: committed[tp]}
        committed[tp] = 9  # meanwhile the partition's owner commits, then it comes back here
        consumer.app.consumer_generation_id = 2
        return found

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", seek_to_committed)

    async def read() -> list[list[int]]:
        await consumer.perform_seek()  # began in generation 1
        early = [m.offset async for _, m in consumer.getmany(1.0)]
        await consumer.perform_seek()  # generation 2's own seek
        return [early, [m.offset async for _, m in consumer.getmany(1.0)]]

    # before: [[4, 5, 6], [9, 10]] (4-8 applied twice, 7 and 8 counted as read)
    assert asyncio.run(read()) == [[], [9, 10]]
    assert seeks == [(tp, 9)]


def test_a_seek_overtaken_by_the_next_generations_seek_leaves_its_readings_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop run: a seek to the committed offsets begun in generation 1 (Faust's fetch loop,
    the flow stopped) ended after generation 2's own seek (the recovery's) and reset the
    partition's reading for generation 1: generation 2's records were never delivered and the
    partition stalled. Its answer is not used; generation 2's reading stays."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    tp = TP("t", 2)
    consumer, _ = gated_consumer(monkeypatch, [[0, 1]], tp)
    first_answer = asyncio.Event()
    calls = 0

    async def seek_to_committed(self: Any) -> dict[Any, int | None]:
        nonlocal calls
        calls += 1
        if calls == 1:  # generation 1's seek: its broker answer comes late
            await first_answer.wait()
        return {tp: None}

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", seek_to_committed)

    async def read() -> list[int]:
        stale = asyncio.ensure_future(consumer.perform_seek())
        await asyncio.sleep(0)
        consumer.app.consumer_generation_id = 2
        await consumer.perform_seek()  # the recovery's seek for generation 2
        first_answer.set()
        await stale
        return [(m.offset) async for _, m in consumer.getmany(1.0)]

    # before the fix: [] (the reading stamped with generation 1 admits none of them)
    assert asyncio.run(read()) == [0, 1]


def test_a_delivered_record_faust_did_not_hand_to_the_agents_is_read_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's fetch loop can let a record the gate delivered by without handing it to the
    agents' channels (its read offset past it; its flow suspended while a channel was full,
    which cancels the hand-over). The gate had moved on: the partition's later records were
    applied without it and its commits stuck before it. The consumer learns from its callback
    which records were handed on, and reads the others again."""
    import asyncio

    from faust.types import TP

    tp = TP("t", 1)
    consumer, seeks = gated_consumer(monkeypatch, [[4, 5, 6, 7], [5, 6, 7]], tp,
                                     committed={tp: 4})
    consumer.flow_active = True
    channels: list[int] = []

    async def conductor(message: Any) -> None:
        channels.append(message.offset)

    consumer.callback = consumer._handing_on(conductor)

    async def drain() -> None:  # Faust's fetch loop, which lets offset 5 by the first time
        await consumer.perform_seek()
        for _ in range(2):
            async for _, message in consumer.getmany(1.0):
                if message.offset == 5 and 5 not in seen:
                    seen.add(5)
                    continue
                await consumer.callback(message)

    seen: set[int] = set()
    asyncio.run(drain())
    # before the fix: [4, 6, 7] and no seek back
    assert channels == [4, 5, 6, 7]
    assert seeks == [(tp, 4), (tp, 5)]


def test_records_faust_clears_from_the_channels_are_read_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop run of the two-worker test: Faust's recovery seeks to the committed offsets with
    the flow already running, then resumes its flow control, which empties every channel. The
    records the gate delivered in between were gone, the gate past them: journey-events
    offsets 2-10 of a partition never reached the agents and its commits stuck. After a clear
    the reading goes back to the committed offset and the partition is sought there."""
    import asyncio

    from faust.types import TP
    from mode.utils.queues import FlowControlEvent

    tp = TP("t", 3)
    consumer, seeks = gated_consumer(monkeypatch, [[2, 3, 4], [5], [2, 3, 4, 5]], tp,
                                     committed={tp: 2})
    flow_control = FlowControlEvent(initially_suspended=False)
    consumer._watch_channel_clears(flow_control)
    channel: list[int] = []

    async def read() -> None:
        await consumer.perform_seek()
        channel.extend([m.offset async for _, m in consumer.getmany(1.0)])
        flow_control.resume()  # Faust's recovery: empties the channels
        channel.clear()
        for _ in range(2):
            channel.extend([m.offset async for _, m in consumer.getmany(1.0)])

    asyncio.run(read())
    # before the fix: [5] (2-4 thrown away, never read again)
    assert channel == [2, 3, 4, 5]
    assert seeks == [(tp, 2), (tp, 2)]


def test_a_record_delivered_before_a_rewind_is_not_applied_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop run: Faust's stream held offset 4 (waiting for the agent's buffer) while the
    flow control emptied the channel of offset 3; the reading was rewound and delivered 2-4
    again, but the held 4 reached the agent first and was applied before 3, splitting a
    customer's journey. Only records delivered in the partition's current epoch may be
    applied."""
    import asyncio

    from faust.types import TP
    from mode.utils.queues import FlowControlEvent

    tp = TP("t", 2)
    consumer, _ = gated_consumer(monkeypatch, [[2, 3, 4], [2, 3, 4]], tp, committed={tp: 2})
    flow_control = FlowControlEvent(initially_suspended=False)
    consumer._watch_channel_clears(flow_control)

    async def read() -> tuple[list[Any], list[Any]]:
        await consumer.perform_seek()
        before = [m async for _, m in consumer.getmany(1.0)]
        flow_control.resume()  # the channels emptied: 2-4 are read again
        after = [m async for _, m in consumer.getmany(1.0)]
        return before, after

    before, after = asyncio.run(read())
    assert [m.offset for m in after] == [2, 3, 4]
    # before the fix the held copies were applied too: (4 ahead of the re-read 3)
    assert [consumer.delivered_now(m) for m in before] == [False, False, False]
    assert [consumer.delivered_now(m) for m in after] == [True, True, True]


def test_a_record_of_an_ended_generation_is_not_counted_as_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust's stream acks every record it skips, among them those fetched in a generation
    that has ended: offset 5, never applied, counted as done let a commit cover it before the
    new reading's agents applied it (and a partition that moved then was read on past it by
    its next owner). It is only forgotten; the current generation's acks count as before."""
    from weakref import WeakSet

    from faust.types import TP

    tp = TP("t", 2)
    consumer, _ = gated_consumer(monkeypatch, [], tp)
    consumer._unacked_messages = WeakSet()
    consumer._waiting_for_ack = None
    consumer._n_acked = 0
    consumer._committed_offset[tp] = 4
    consumer.app.consumer_generation_id = 2

    class Message:
        def __init__(self, offset: int, generation_id: int) -> None:
            self.tp, self.topic, self.offset = tp, tp.topic, offset
            self.generation_id, self.acked = generation_id, False

    skipped, applied = Message(5, 1), Message(4, 2)
    consumer._unacked_messages.update([skipped, applied])
    assert consumer.ack(skipped) is False and skipped.acked
    assert consumer.ack(applied) is True
    assert not consumer._unacked_messages
    # before the fix: 6, over offset 5
    assert consumer._new_offset(tp) == 5


def test_a_seek_runs_in_the_consumer_thread() -> None:
    """aiokafka's consumer is not thread-safe: the seek is handed to the thread that runs it
    (a seek from the event loop's thread crashed the fetcher, see `PeakendConsumer._seek`)."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from faust.types import TP

    done: list[tuple[Any, int, str]] = []

    class Thread:
        def seek(self, partition: Any, offset: int) -> None:
            done.append((partition, offset, threading.current_thread().name))

        async def call_thread(self, fun: Any, *args: Any) -> Any:
            def run() -> None:
                asyncio.run(fun(*args))

            runner = threading.Thread(target=run, name="consumer-thread")
            runner.start()
            runner.join()

    consumer: Any = PeakendConsumer.__new__(PeakendConsumer)
    consumer._thread = Thread()
    consumer._read_offset = {}
    consumer.log = SimpleNamespace(dev=lambda *args: None)
    asyncio.run(consumer.seek(TP("t", 1), 7))
    assert done == [(TP("t", 1), 7, "consumer-thread")]
    assert consumer._read_offset[TP("t", 1)] == 7


def test_peakend_consumer_does_not_count_a_gap_of_a_gated_partition_as_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from faust.types import TP

    tp, other = TP("t", 1), TP("changelog", 1)
    consumer, _ = gated_consumer(monkeypatch, [], tp)
    asyncio.run(consumer._add_gap(tp, 4, 9))
    asyncio.run(consumer._add_gap(other, 4, 9))
    assert not consumer._gap[tp] and consumer._gap[other]


def private_names_used(tree: ast.AST) -> set[str]:
    """Names with one leading underscore imported from a framework or read as attributes."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FRAMEWORKS:
            found.update(a.name for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            found.add(node.attr)
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("_") \
                and not node.name.startswith("__"):
            found.add(node.name)
    return found


def imports_a_framework(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] in FRAMEWORKS for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FRAMEWORKS:
            return True
    return False


async def _nothing(*_: Any) -> None:
    return None


HANDLERS: dict[str, Any] = {"callback": _nothing, "on_partitions_revoked": _nothing,
                            "on_partitions_assigned": _nothing}


def test_the_agents_consumer_asks_the_broker_for_the_transports_fetch(tmp_path: Path) -> None:
    """Faust builds the agents' aiokafka consumer with no `fetch_min_bytes`; ours sets the
    transport's fetch on it before aiokafka's `start` builds its fetcher from them."""
    asyncio.run(_the_transports_fetch(tmp_path))


async def _the_transports_fetch(tmp_path: Path) -> None:
    app: Any = faust.App("faust-private-fetch", datadir=str(tmp_path), broker="kafka://x:1")
    app.transport = faust_private.PeakendTransport(
        app.conf.broker_consumer, app, fetch=FetchSize(65_536, 100))
    consumer = app.transport.create_consumer(**HANDLERS)
    assert isinstance(consumer, PeakendConsumer)
    thread = consumer._thread  # Faust's consumer makes its thread through our factory
    assert isinstance(thread, faust_private.PeakendConsumerThread)
    assert "self._new_consumer_thread()" in inspect.getsource(ThreadDelegateConsumer.__init__)
    kafka = thread._create_worker_consumer(app.transport)
    assert (kafka._fetch_min_bytes, kafka._fetch_max_wait_ms) == (65_536, 100)
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start
    # without a fetch, Faust's own consumer (aiokafka's 1 byte, Faust's 1,500 ms)
    app.transport = faust_private.PeakendTransport(app.conf.broker_consumer, app)
    plain = app.transport.create_consumer(**HANDLERS)._thread
    kafka = plain._create_worker_consumer(app.transport)
    assert (kafka._fetch_min_bytes, kafka._fetch_max_wait_ms) == (1, 1500)


def test_no_other_module_uses_the_faust_private_names() -> None:
    """(Checked in the modules that import Faust, mode or aiokafka: a module that does not
    cannot subclass or hold their objects by name; the core has a `_gap` of its own.)"""
    adapter = ROOT / "pipeline" / "stream" / "faust_private.py"
    framework_private = private_names_used(ast.parse(adapter.read_text())) - {"_"}
    assert {"_current_event", "_new_offset", "_unacked_messages",
            "_new_store_by_url", "_db_for_partition", "_changelog_topic_name"
            } <= framework_private
    leaks = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path == adapter or "build" in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text())
        if not imports_a_framework(tree):
            continue
        used = private_names_used(tree) & framework_private
        leaks += [f"{path.relative_to(ROOT)}: {name}" for name in sorted(used)]
    assert leaks == []


@pytest.mark.parametrize("name", ["PeakendConsumer", "PeakendConsumerThread", "PeakendProducer",
                                  "PeakendTransport",
                                  "StoreHookTable", "current_event_of", "partition_db",
                                  "partition_items", "release"])
def test_the_adapter_exports_what_the_worker_uses(name: str) -> None:
    assert name in faust_private.__all__
