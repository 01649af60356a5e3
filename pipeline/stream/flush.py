"""The owner of the worker's outputs on their way out: the outbox and its delivery.

Outputs wait in the outbox (pipeline/stream/outbox.py) and leave coalesced, per flush, not per
event, into `BatchDelivery` (pipeline/stream/delivery.py: their own producer, one aiokafka batch
per topic partition). No committed offset covers an output not yet delivered: an agent acks a
batch's events only after `deliver()` returned for its outputs (pipeline/stream/agent_loop.py),
and Faust commits acked offsets only. Besides the agents, the worker flushes every 0.2 s, before
every commit, on a revocation and before shutdown (pipeline/stream/worker.py).
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.observability import WorkerMetrics
from pipeline.stream.delivery import BatchDelivery
from pipeline.stream.outbox import FOLLOWUPS, JOURNEYS, METRICS, Outbox

COUNTED_ROLES = (JOURNEYS, METRICS, FOLLOWUPS)  # peakend_records_out_total{topic}


class OutputFlusher:
    """Moves what the outbox holds into the delivery queue (`flush`, synchronous, so any step
    of any agent may call it), and the queue to Kafka (`deliver`)."""

    def __init__(self, outbox: Outbox, delivery: BatchDelivery, stats: WorkerMetrics) -> None:
        self.outbox = outbox
        self.delivery = delivery
        self.stats = stats
        # Outputs that wait somewhere else than the outbox (the segment stages' buckets not
        # yet sent), moved into the outbox before every flush.
        self.before_flush: list[Callable[[], None]] = []

    def flush(self) -> None:
        """Queue every output waiting for the next `deliver()`, and count it."""
        for move_into_outbox in self.before_flush:
            move_into_outbox()
        if not self.outbox:
            return
        drained = self.outbox.drain()
        self.delivery.add(drained.records)  # sent by the next `deliver()`
        for reason, closed in drained.closed.items():
            self.stats.journeys_closed.labels(reason).inc(closed)
        for role in COUNTED_ROLES:
            self.stats.records_out.labels(self.delivery.topic_of[role]).inc(drained.counts[role])

    async def deliver(self) -> None:
        """Send what is queued; returns once the broker acknowledged all of it."""
        await self.delivery.deliver()

    async def flush_and_deliver(self) -> None:
        self.flush()
        await self.delivery.deliver()

    async def stop(self) -> None:
        """Before shutdown: what waits leaves (within the delivery's timeout), then the producer
        closes."""
        self.flush()
        await self.delivery.stop()
