"""`OutputFlusher` and the worker's revocation handler without a broker: what waits outside the
outbox joins the same flush, records leave in the outbox's order and are counted per topic, and
a revocation delivers every output before it forgets the partitions that left."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.core.config import CoreConfig
from pipeline.observability import WorkerMetrics
from pipeline.stream import messages
from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.flush import OutputFlusher
from pipeline.stream.outbox import JOURNEYS, METRICS, Outbox
from pipeline.stream.segments import SegmentStage
from pipeline.stream.worker import FlushBeforeCommit, Revocations
from tests.unit.stream.fake_faust import TP
from tests.unit.stream.test_agents import TOPICS
from tests.unit.stream.test_delivery import FakeProducer

SENT = list[tuple[str, int, list[tuple[bytes | None, bytes]]]]


def flusher(sent: SENT) -> OutputFlusher:
    return OutputFlusher(Outbox(2), BatchDelivery(lambda: FakeProducer(sent, partitions=2),
                                                  TOPICS), WorkerMetrics.create())


def nps_message(value: int, bucket_ms: int) -> dict[str, Any]:
    return messages.batch([messages.answer("all", "all", "nps", bucket_ms, "e1", value)[1]])


def test_held_buckets_leave_with_every_flush_and_are_counted() -> None:
    sent: SENT = []
    outputs = flusher(sent)
    stage = SegmentStage(CoreConfig(), sources=1)
    outputs.before_flush.append(lambda: outputs.outbox.add_segment_output(stage.flush()))
    outputs.flush()
    assert len(outputs.delivery) == 0  # nothing waited anywhere: nothing queued
    # an answer the stage holds back (its bucket is not final): it leaves with the next flush
    applied = stage.apply(nps_message(9, 1_790_000_040_000))
    assert not applied.metrics
    outputs.outbox.add_segment_output(applied)
    outputs.flush()
    queued = len(outputs.delivery)
    asyncio.run(outputs.deliver())
    metrics = [item for topic, _, items in sent if topic == TOPICS[METRICS] for item in items]
    assert queued == len(metrics) > 0
    counted = outputs.stats.records_out.labels(TOPICS[METRICS])._value.get()
    assert counted == len(metrics)
    assert outputs.stats.records_out.labels(TOPICS[JOURNEYS])._value.get() == 0


class Forgetting:
    def __init__(self, log: list[Any], name: str) -> None:
        self.log, self.name = log, name

    def forget(self, partition: int) -> None:
        self.log.append((self.name, partition))


def test_a_revocation_delivers_the_outputs_before_forgetting_the_partitions_that_left() -> None:
    sent: SENT = []
    log: list[Any] = []
    outputs = flusher(sent)
    outputs.outbox.add_followup_input(b"c1", {"e": ["x"]})

    async def deliver() -> None:
        log.append(("delivered", len(outputs.delivery)))
        await BatchDelivery.deliver(outputs.delivery)

    outputs.delivery.deliver = deliver  # type: ignore[method-assign]
    revocations = Revocations(outputs, {"in-a": Forgetting(log, "a"),  # type: ignore[dict-item]
                                        "in-b": Forgetting(log, "b")})  # type: ignore[dict-item]
    asyncio.run(revocations.on_revoked(None, [TP("in-b", 3), TP("elsewhere", 1), TP("in-a", 0)]))
    assert log == [("delivered", 1), ("b", 3), ("a", 0)]
    assert [topic for topic, _, _ in sent] == [TOPICS["followup-inputs"]]


def test_the_commit_sensor_queues_what_waits() -> None:
    outputs = flusher([])
    outputs.outbox.add_followup_input(b"c1", {"e": ["x"]})
    FlushBeforeCommit(outputs).on_commit_initiated(consumer=None)
    assert not outputs.outbox and len(outputs.delivery) == 1
