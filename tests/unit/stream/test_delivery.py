"""BatchDelivery without a broker: placement as Kafka's partitioner, order per partition, full
batches split, a failed send retried from a new producer, and `deliver()` returning only once
everything queued before it is acknowledged, whoever sends it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.stream.delivery import BatchDelivery, group, partition_of
from pipeline.stream.outbox import Record

TOPICS = {"journeys": "cx.journeys", "contributions": "app-contributions"}


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: Any) -> object | None:
        if len(self.items) >= self.capacity:
            return None
        self.items.append((key, value))
        return object()


class FakeProducer:
    """Records what a real producer would have delivered; fails the first `failures` sends."""

    def __init__(self, log: list[tuple[str, int, list[tuple[bytes | None, bytes]]]],
                 *, capacity: int = 1000, failures: int = 0, partitions: int = 4) -> None:
        self.log = log
        self.capacity = capacity
        self.failures = failures
        self.partitions = partitions
        self.started = self.stopped = False
        self.acks: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int
                         ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            future.set_exception(ConnectionError("broker away"))
        else:
            self.log.append((topic, partition, list(batch.items)))
            self.acks.append(future)
            asyncio.get_running_loop().call_later(0.01, future.set_result, None)
        return future


def test_partition_of_is_kafkas_default_partitioner() -> None:
    rng = random.Random(3)
    partitioner = DefaultPartitioner()
    for _ in range(500):
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        for partitions in (1, 3, 4, 12):
            every = list(range(partitions))
            assert partition_of(key, partitions) == partitioner(key, every, every)


def test_group_keeps_order_per_partition() -> None:
    rng = random.Random(5)
    records = [Record(rng.choice(list(TOPICS)), f"k{rng.randrange(50)}".encode(),
                      str(i).encode(), rng.choice([None, None, rng.randrange(4)]))
               for i in range(2000)]
    groups = group(records, TOPICS, lambda topic: 4)
    assert sum(len(items) for _, _, items in groups) == len(records)
    assert len({(t, p) for t, p, _ in groups}) == len(groups)
    for topic, partition, items in groups:
        want = [(r.key, r.value) for r in records if TOPICS[r.role] == topic
                and (r.partition if r.partition is not None
                     else partition_of(r.key or b"", 4)) == partition]
        assert items == want


def test_deliver_splits_full_batches_and_retries_from_a_new_producer() -> None:
    log: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
    made: list[FakeProducer] = []

    def make() -> FakeProducer:
        made.append(FakeProducer(log, capacity=3, failures=100 if not made else 0))
        return made[-1]

    delivery = BatchDelivery(make, TOPICS, retry_seconds=0.01)
    records = [Record("contributions", None, str(i).encode(), 1) for i in range(8)]
    delivery.add(records)
    assert len(delivery) == 8
    asyncio.run(delivery.deliver())
    assert len(made) == 2 and made[0].stopped  # the failed producer was closed, a new one sent
    assert [len(items) for _, _, items in log] == [3, 3, 2]  # full batches split
    assert [v for _, _, items in log for _, v in items] == [r.value for r in records]
    assert len(delivery) == 0


def test_deliver_returns_after_records_queued_before_it_are_acknowledged() -> None:
    log: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
    producer = FakeProducer(log)
    delivery = BatchDelivery(lambda: producer, TOPICS)

    async def scenario() -> None:
        delivery.add([Record("journeys", b"a", b"1")])
        first = asyncio.create_task(delivery.deliver())
        await asyncio.sleep(0)  # the first caller is sending, its ack not back yet
        delivery.add([Record("journeys", b"b", b"2")])
        await delivery.deliver()
        assert all(ack.done() for ack in producer.acks)
        assert [v for _, _, items in log for _, v in items] == [b"1", b"2"]
        await first
        await delivery.stop()
        assert producer.stopped

    asyncio.run(scenario())


def test_a_record_larger_than_a_batch_is_a_clear_error_and_stays_queued() -> None:
    log: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
    delivery = BatchDelivery(lambda: FakeProducer(log, capacity=0), TOPICS,
                             retry_seconds=0.01)
    delivery.add([Record("journeys", b"a", b"x" * 10)])

    async def scenario() -> None:
        task = asyncio.create_task(delivery.deliver())
        await asyncio.sleep(0.05)
        assert not task.done() and len(delivery) == 1  # retried, not dropped
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_stop_gives_up_after_its_timeout_and_closes_the_producer() -> None:
    log: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
    made: list[FakeProducer] = []

    def make() -> FakeProducer:
        made.append(FakeProducer(log, failures=1_000))  # a broker that never answers
        return made[-1]

    delivery = BatchDelivery(make, TOPICS, retry_seconds=0.01)
    delivery.add([Record("journeys", b"a", b"1")])
    asyncio.run(delivery.stop(timeout=0.1))
    assert made and all(p.stopped for p in made) and not log


def test_a_record_the_broker_refuses_as_too_large_is_named_in_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """The broker's MessageSizeTooLargeError is retried like any failure (nothing is dropped),
    but no retry can help: the log says which record and what limit to raise."""
    from aiokafka.errors import MessageSizeTooLargeError

    class Refusing(FakeProducer):
        async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int
                             ) -> asyncio.Future[None]:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(MessageSizeTooLargeError())
            return future

    delivery = BatchDelivery(lambda: Refusing([]), TOPICS, retry_seconds=0.01)
    delivery.add([Record("journeys", b"k", b"x" * 5000), Record("journeys", b"k", b"y")])

    async def scenario() -> None:
        task = asyncio.create_task(delivery.deliver())
        await asyncio.sleep(0.05)
        assert not task.done() and len(delivery) == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level("ERROR", logger="pipeline.stream.delivery"):
        asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and "5001 bytes to cx.journeys" in errors[0]
    assert "message.max.bytes" in errors[0]
