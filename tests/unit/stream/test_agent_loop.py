"""`AgentLoop` and `RebalanceGuard` without a broker: outputs delivered, then state, then acks in
order; a batch a rebalance overtook is dropped (no state, no acks, processors forgotten, events
released) and fences the rest of its generation; `write_state` routes by the event it names."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.streams import current_event

from pipeline.observability import WorkerMetrics
from pipeline.stream.agent_loop import (
    AgentLoop,
    AppliedCounter,
    AppliedOffsets,
    Processed,
    RebalanceGuard,
    held_state,
    write_state,
)
from pipeline.stream.partition import NEVER
from tests.unit.stream.fake_faust import Event, Group, Offsets, Stream


class RecordingAgent:
    """Applies every admitted event; logs each step in `log` (shared with the loop's hooks)."""

    def __init__(self, guard: RebalanceGuard, log: list[Any]) -> None:
        self.guard = guard
        self.log = log

    def process(self, batch: list[Any]) -> Processed:
        processed = Processed()
        for event in self.guard.admitted(batch):
            processed.take(event)
        self.log.append(("process", [e.message.offset for e in processed.done]))
        return processed

    def write_state(self, last_of: dict[int, Any]) -> None:
        self.log.append(("write", {p: e.message.offset for p, e in last_of.items()}))

    def forget(self, partition: int) -> None:
        self.log.append(("forget", partition))


def make_loop(group: Group, log: list[Any], *, rebalance_on_delivery: int | None = None,
              count_applied: AppliedCounter | None = None, state_delivery: bool = False,
              rebalance_on_state_delivery: int | None = None,
              delivered_now: Any = None,
              ) -> tuple[AgentLoop, list[Event]]:
    guard = RebalanceGuard(group, delivered_now)
    released: list[Event] = []
    deliveries = 0

    async def deliver() -> None:
        nonlocal deliveries
        deliveries += 1
        log.append("deliver")
        if deliveries == rebalance_on_delivery:
            group.rebalancing_count += 1  # a rebalance starts while the outputs leave

    async def flush_producer() -> None:
        log.append("flush-faust")

    def release(batch: list[Any]) -> None:
        log.append(("release", [e.message.offset for e in batch]))
        released.extend(batch)

    state_deliveries = 0

    async def deliver_state() -> None:
        nonlocal state_deliveries
        state_deliveries += 1
        log.append("deliver-state")
        if state_deliveries == rebalance_on_state_delivery:
            group.rebalancing_count += 1  # a rebalance starts while the changelog leaves

    loop = AgentLoop(RecordingAgent(guard, log), guard, deliver_outputs=deliver,
                     flush_faust_producer=flush_producer, release=release, take=7,
                     within_seconds=0.25, count_applied=count_applied,
                     deliver_state=deliver_state if state_delivery else None)
    return loop, released


def test_outputs_are_delivered_before_the_state_is_written_and_the_events_acked() -> None:
    log: list[Any] = []
    offsets = Offsets("in")
    batches = [[offsets.event(b"x", p) for p in (0, 1, 0)], [offsets.event(b"y", 1)]]
    stream = Stream(batches)
    loop, released = make_loop(Group(), log)
    asyncio.run(loop.run(stream))
    assert stream.taken == [(7, 0.25)]
    assert log == [("process", [0, 0, 1]), "deliver", "flush-faust",
                   ("write", {0: 1, 1: 0}), ("process", [1]), "deliver", "flush-faust",
                   ("write", {1: 1})]
    assert stream.acked == batches[0] + batches[1]  # every event, in the order taken
    assert released == []


def test_the_changelog_of_the_state_is_delivered_before_the_events_are_acked() -> None:
    log: list[Any] = []
    offsets = Offsets("in")
    batch = [offsets.event(b"x", p) for p in (0, 1)]
    stream = Stream([batch])
    loop, released = make_loop(Group(), log, state_delivery=True)

    async def ack(event: Event) -> bool:
        log.append(("ack", event.message.offset))
        stream.acked.append(event)
        return True

    stream.ack = ack  # type: ignore[method-assign]
    asyncio.run(loop.run(stream))
    assert log == [("process", [0, 0]), "deliver", "flush-faust", ("write", {0: 0, 1: 0}),
                   "deliver-state", ("ack", 0), ("ack", 0)]
    assert released == []


def test_a_rebalance_while_the_changelog_leaves_still_acks_the_batch() -> None:
    log: list[Any] = []
    offsets = Offsets("in")
    group = Group(consumer_generation_id=3)
    first = [offsets.event(b"a", 0, 3), offsets.event(b"b", 2, 3)]
    later = [offsets.event(b"c", 0, 3)]
    stream = Stream([first, later])
    stats = WorkerMetrics.create()
    counter = AppliedCounter(stats, "claims", "claim")
    loop, released = make_loop(group, log, state_delivery=True, rebalance_on_state_delivery=1,
                               count_applied=counter)
    asyncio.run(loop.run(stream))
    # its state is in the changelog before the acks, and the revocation waits for them: the
    # batch is acked and counted, nothing is forgotten or fenced (the next record is applied)
    assert stream.acked == first + later
    assert released == []
    assert not any(step[0] == "forget" for step in log if isinstance(step, tuple))
    assert applied(stats, "claims", "claim") == 3


def test_a_batch_a_rebalance_overtook_is_dropped_and_fences_its_generation() -> None:
    log: list[Any] = []
    offsets = Offsets("in")
    group = Group(consumer_generation_id=3)
    first = [offsets.event(b"a", 0, 3), offsets.event(b"b", 2, 3)]
    later_same_generation = [offsets.event(b"c", 0, 3)]
    stream = Stream([first, later_same_generation])
    loop, released = make_loop(group, log, rebalance_on_delivery=1)
    asyncio.run(loop.run(stream))
    # no state written, nothing acked, both partitions forgotten, every event released
    assert not any(step[0] == "write" for step in log if isinstance(step, tuple))
    assert stream.acked == []
    assert ("forget", 0) in log and ("forget", 2) in log
    assert released == first + later_same_generation
    # the later record of the dropped generation is not applied (it would follow a hole)
    assert ("process", []) in log
    # the next generation's records are applied again
    group.consumer_generation_id = 4
    fresh = [offsets.event(b"d", 0, 4)]
    stream = Stream([fresh])
    asyncio.run(loop.run(stream))
    assert stream.acked == fresh


def test_records_fetched_before_the_current_generation_are_neither_applied_nor_acked() -> None:
    log: list[Any] = []
    offsets = Offsets("in")
    stale, current = offsets.event(b"old", 0, 1), offsets.event(b"new", 0, 2)
    stream = Stream([[stale, current], [stale]])
    loop, released = make_loop(Group(consumer_generation_id=2), log)
    asyncio.run(loop.run(stream))
    assert stream.acked == [current]
    assert released == [stale, stale]
    # a batch with nothing to apply delivers nothing and writes nothing
    assert log[-2:] == [("process", []), ("release", [0])]


def test_records_delivered_before_their_partitions_reading_was_rewound_are_not_applied(
        ) -> None:
    """The consumer's word (`PeakendConsumer.delivered_now`): a copy delivered before a rewind
    is neither applied nor acked; the reading delivers it again."""
    log: list[Any] = []
    offsets = Offsets("in")
    held, first, again = (offsets.event(b"4", 0, 2), offsets.event(b"3", 0, 2),
                          offsets.event(b"4", 0, 2))
    stream = Stream([[held, first, again]])
    loop, released = make_loop(Group(consumer_generation_id=2), log,
                               delivered_now=lambda message: message is not held.message)
    asyncio.run(loop.run(stream))
    assert stream.acked == [first, again]
    assert released == [held]


def applied(stats: WorkerMetrics, stage: str, record: str) -> float | None:
    return stats.registry.get_sample_value(
        "peakend_stage_records_applied_total", {"stage": stage, "record": record})


def test_applied_records_are_counted_once_their_state_is_written_never_for_a_dropped_batch(
        ) -> None:
    log: list[Any] = []
    offsets = Offsets("in")
    stats = WorkerMetrics.create()
    counter = AppliedCounter(stats, "segments", "contribution")
    assert applied(stats, "segments", "contribution") == 0  # the series exists from the start
    settled = [offsets.event(b"a", 0), offsets.event(b"b", 1), offsets.event(b"c", 0)]
    overtaken = [offsets.event(b"d", 2), offsets.event(b"e", 2)]
    loop, released = make_loop(Group(), log, rebalance_on_delivery=2, count_applied=counter)
    asyncio.run(loop.run(Stream([settled, overtaken])))
    assert released == overtaken  # the second batch was dropped...
    assert applied(stats, "segments", "contribution") == 3  # ...and not counted
    assert applied(stats, "segments", "withdrawal") is None  # no withdrawals: no such series


def test_a_batch_record_counts_the_events_it_held_and_withdrawals_apart() -> None:
    stats = WorkerMetrics.create()
    counter = AppliedCounter(stats, "journeys", "event")
    offsets = Offsets("in")
    processed = Processed()
    processed.take(offsets.event(b"batch of 250", 0), records=0)
    processed.applied += 250
    processed.take(offsets.event(b"withdrawals", 1), records=0)
    processed.withdrawals += 2
    counter(processed)
    assert applied(stats, "journeys", "event") == 250
    assert applied(stats, "journeys", "withdrawal") == 2


class CheckedTable(dict[str, Any]):
    """A state table that records the event Faust would route each write by."""

    def __init__(self) -> None:
        super().__init__()
        self.routed: list[tuple[str, int]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        event = current_event()
        assert event is not None, "a table write outside an event goes nowhere in Faust"
        self.routed.append((key, event.message.partition))
        super().__setitem__(key, value)


def test_state_writes_name_the_partition_and_delete_what_became_none() -> None:
    offsets = Offsets("in")
    table = CheckedTable()
    dict.__setitem__(table, "gone", {"p": 5, "s": [1]})  # held before, deleted below
    event = offsets.event(b"", 5)
    write_state(table, event, [("a", [1, 2]), ("gone", None), ("b", {"x": 1})],
                {"w": 42, "o": 7})
    assert table == {"a": {"p": 5, "s": [1, 2], "w": 42, "o": 7},
                     "b": {"p": 5, "s": {"x": 1}, "w": 42, "o": 7}}
    assert table.routed == [("a", 5), ("b", 5)]
    assert current_event() is None  # the stream's own current event is restored afterwards
    other = offsets.event(b"", 1)
    write_state(table, other, [("c", 3)], {})
    assert held_state(table, 5) == ([("a", [1, 2]), ("b", {"x": 1})], 42, 7)
    assert held_state(table, 1) == ([("c", 3)], NEVER, 0)
    assert held_state(table, 9) == ([], NEVER, 0)
    # keys forgotten by time: a table that is not a journal removes them, before the pairs
    # (a key forgotten and written again in one batch stays)
    write_state(table, other, [("c", 4)], {}, forgotten=["a", "c"])
    assert held_state(table, 5) == ([("b", {"x": 1})], 42, 7)
    assert held_state(table, 1) == ([("c", 4)], NEVER, 0)


def test_applied_offsets_pass_over_what_the_restored_state_holds() -> None:
    offsets = AppliedOffsets()
    offsets.restored(3, 5)  # the state holds every record of partition 3 before offset 5
    assert offsets.read_again(3, 4)
    assert not offsets.read_again(3, 5)  # applied now: stored with the next state write
    assert offsets.extra(3) == {"o": 6}
    assert offsets.read_again(3, 5)  # a redelivery of it, once applied
    offsets.forget(3)
    offsets.restored(3, 0)  # a new owner, whose table holds nothing
    assert not offsets.read_again(3, 2) and offsets.extra(3) == {"o": 3}
