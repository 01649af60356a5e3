"""ClickHouse sink: output topics -> tables, at least once, exact through versioned upserts.

A plain aiokafka consumer (its own group, manual commits) inside the worker: it reads the output
topics, turns records into rows (`pipeline.storage.tables`), inserts a batch per table when it
holds `batch_rows` rows or `batch_seconds` have passed, and commits the Kafka offsets only after
every insert of the batch succeeded. When ClickHouse is away it retries with capped exponential
backoff, holding the batch (and so the offsets) until it lands: nothing acknowledged is lost and
a redelivered row is absorbed by ReplacingMergeTree(version). On a rebalance it flushes before
giving partitions up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from pipeline.contract import Rejected, event_to_dict, parse_event
from pipeline.observability import WorkerMetrics
from pipeline.privacy import PersonalData
from pipeline.settings import Settings
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import Warehouse

log = logging.getLogger(__name__)


def topic_tables(settings: Settings) -> dict[str, str]:
    """Which table each topic lands in."""
    return {
        settings.topic_journeys: "journeys",
        settings.topic_metrics: "metric_buckets",
        settings.topic_alerts: "alerts",
        settings.topic_dead_letters: "dead_letters",
        settings.topic_touchpoints: "touchpoint_events",
    }


class ClickHouseSink:
    def __init__(
        self,
        settings: Settings,
        warehouse: Callable[[], Warehouse],
        metrics: WorkerMetrics,
        *,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.connect = warehouse
        self.metrics = metrics
        self.group_id = group_id or f"{settings.app_id}-clickhouse-sink"
        self.tables = topic_tables(settings)
        self.privacy = PersonalData.from_settings(settings)
        self._warehouse: Warehouse | None = None
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._offsets: dict[TopicPartition, int] = {}
        self._count = 0
        self._first_at: float | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False

    # -- records -> rows ----------------------------------------------------------------------

    def _record(self, topic: str, value: bytes) -> dict[str, Any] | None:
        if topic == self.settings.topic_touchpoints:
            try:
                event = parse_event(value, max_bytes=self.settings.max_event_bytes)
            except (Rejected, RecursionError):
                # stage one sent it to dead letters with its reason. RecursionError: a record
                # nested deeper than the recursion limit (json raises it, not ValueError); the
                # sink must not die on input it does not store (tests/integration/test_faults.py)
                return None
            return event_to_dict(self.privacy.scrub(event))
        record: dict[str, Any] = json.loads(value)
        return record

    def add(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        record = self._record(topic, value)
        if record is not None:
            self._rows.setdefault(self.tables[topic], []).append(record)
            self._count += 1
        self._offsets[TopicPartition(topic, partition)] = offset + 1
        if self._first_at is None:
            self._first_at = time.monotonic()

    def due(self) -> bool:
        if self._first_at is None:
            return False
        waited = time.monotonic() - self._first_at
        full = self._count >= self.settings.sink_batch_rows
        return full or waited >= self.settings.sink_batch_seconds

    # -- inserts ------------------------------------------------------------------------------

    def _insert_all(self) -> None:
        """Blocking: runs in a thread. Inserts every pending table once."""
        if self._warehouse is None:
            self._warehouse = self.connect()
        for table, records in list(self._rows.items()):
            columns, data = rows(table, records)
            started = time.perf_counter()
            self._warehouse.insert(table, columns, data)
            self.metrics.sink_insert_seconds.labels(table).observe(time.perf_counter() - started)
            self.metrics.sink_rows.labels(table).inc(len(data))
            self.metrics.sink_batch_rows.observe(len(data))
            del self._rows[table]  # landed: a retry must not insert it again

    async def flush(self) -> None:
        """Insert the pending batch (retrying until it lands or the sink stops), then commit."""
        if self._first_at is None:
            return
        delay = 0.2
        while True:
            try:
                await asyncio.to_thread(self._insert_all)
                self.metrics.clickhouse_up.set(1)
                break
            except Exception as exc:  # any failure: the batch stays, offsets stay uncommitted
                self.metrics.clickhouse_up.set(0)
                for table in self._rows:
                    self.metrics.sink_insert_failures.labels(table).inc()
                log.warning("ClickHouse insert failed (%s); retrying in %.1f s", exc, delay)
                self._drop_connection()
                if self._stopping:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self._consumer is not None and self._offsets:
            await self._consumer.commit(dict(self._offsets))
        self._offsets.clear()
        self._count = 0
        self._first_at = None

    def _drop_connection(self) -> None:
        if self._warehouse is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._warehouse.close()
            self._warehouse = None

    # -- life cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        sink = self

        class FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
                await sink.flush()

            async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
                return None

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.settings.sink_batch_rows,
            **self.settings.kafka_client_options(),
        )
        consumer.subscribe(list(self.tables), listener=FlushOnRevoke())
        self._consumer = consumer
        await consumer.start()
        try:
            while not self._stopping:
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                for tp, messages in batches.items():
                    for message in messages:
                        if message.value is not None:
                            self.add(tp.topic, tp.partition, message.offset, message.value)
                if self.due():
                    await self.flush()
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stopping = True
