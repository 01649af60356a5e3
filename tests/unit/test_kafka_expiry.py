"""`read_or_reset` without a broker: a consumer double that raises as aiokafka does."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.structs import TopicPartition

from pipeline.kafka_expiry import read_or_reset

A, B, C = (TopicPartition("cx.touchpoints", p) for p in range(3))


class Consumer:
    """getmany raises `error` once, then returns `records`; bounds requests are recorded."""

    def __init__(self, error: Exception | None, starts: dict[Any, int],
                 ends: dict[Any, int], records: dict[Any, list[Any]] | None = None) -> None:
        self.error = error
        self.starts, self.ends = starts, ends
        self.records = records or {}
        self.requests: list[tuple[str, list[Any]]] = []
        self.seeks: dict[Any, int | str] = {}

    async def getmany(self, timeout_ms: int, max_records: int | None) -> dict[Any, list[Any]]:
        error, self.error = self.error, None
        if error is not None:
            raise error
        return self.records

    async def seek_to_beginning(self, *tps: Any) -> None:
        self.seeks.update(dict.fromkeys(tps, "beginning"))

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks[tp] = offset

    async def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.requests.append(("beginning", sorted(tps)))
        return {tp: self.starts[tp] for tp in tps}

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.requests.append(("end", sorted(tps)))
        return {tp: self.ends[tp] for tp in tps}


def read(consumer: Consumer) -> tuple[dict[Any, list[Any]], list[tuple[Any, int]]]:
    expired: list[tuple[Any, int]] = []
    data = asyncio.run(read_or_reset(
        consumer, 100, 10, reader="entry stage", counter="peakend_input_records_expired_total",
        expired=lambda tp, records: expired.append((tp, records))))
    return data, expired


def test_records_read_are_returned_as_they_are() -> None:
    consumer = Consumer(None, {}, {}, {A: ["r1", "r2"]})
    assert read(consumer) == ({A: ["r1", "r2"]}, [])
    assert consumer.seeks == {} and consumer.requests == []


def test_a_partition_without_a_committed_offset_starts_at_its_beginning() -> None:
    consumer = Consumer(NoOffsetForPartitionError(A, B), {}, {})
    assert read(consumer) == ({}, [])
    assert consumer.seeks == {A: "beginning", B: "beginning"}


def test_deleted_records_are_counted_and_logged_and_reading_goes_on_at_the_start(
        caplog: pytest.LogCaptureFixture) -> None:
    # A's offset 10 is below its start 50 (retention deleted 40 records unread); B's offset
    # 900 is beyond its end 20 (the topic made again): moved, nothing counted; C's 5 below 8.
    consumer = Consumer(OffsetOutOfRangeError({A: 10, B: 900, C: 5}),
                        starts={A: 50, B: 0, C: 8}, ends={A: 70, B: 20, C: 9})
    with caplog.at_level(logging.WARNING):
        data, expired = read(consumer)
    assert data == {}
    assert expired == [(A, 40), (C, 3)]
    assert consumer.seeks == {A: 50, B: 0, C: 8}
    # the bounds of every partition out of range in one request each, not one per partition
    assert consumer.requests == [("beginning", [A, B, C]), ("end", [A, B, C])]
    lines = [r.getMessage() for r in caplog.records]
    assert any("40 records of cx.touchpoints partition 0 (offsets 10 to 49)" in line
               and "peakend_input_records_expired_total" in line for line in lines)
    assert any("offset 900 of cx.touchpoints partition 1 is beyond its end (20)" in line
               for line in lines)


def test_the_reader_is_told_where_each_partition_out_of_range_reads_on() -> None:
    """What the reader commits when no record follows: otherwise its committed offset stays
    below the log's start and the deleted records count as lag for ever."""
    consumer = Consumer(OffsetOutOfRangeError({A: 10, B: 900}), starts={A: 50, B: 0},
                        ends={A: 70, B: 20})
    moved: dict[Any, int] = {}
    asyncio.run(read_or_reset(consumer, 100, 10, reader="sink", counter="c",
                              expired=lambda tp, records: None, moved=moved.__setitem__))
    assert moved == {A: 50, B: 0}
    first_read = Consumer(NoOffsetForPartitionError(C), {}, {})
    asyncio.run(read_or_reset(first_read, 100, 10, reader="sink", counter="c",
                              expired=lambda tp, records: None, moved=moved.__setitem__))
    assert C not in moved  # a first read: nothing committed yet, nothing to move past
