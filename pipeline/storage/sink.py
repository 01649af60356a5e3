"""ClickHouse sink: output topics -> tables, at least once, exact through versioned upserts.

A plain aiokafka consumer (its own group, manual commits): it reads the output
topics, turns records into rows (`pipeline.storage.tables`), inserts a batch per table when it
holds `batch_rows` rows or `batch_seconds` have passed, and commits the Kafka offsets only after
every insert of the batch succeeded. When ClickHouse is away it retries with capped exponential
backoff, holding the batch (and so the offsets) until it lands: nothing acknowledged is lost and
a redelivered row is absorbed by ReplacingMergeTree(version). On a rebalance it flushes before
giving partitions up.

It runs as `peakend sink`, a child process the worker starts (`SinkProcess`), so that it has a
core and an event loop of its own; the worker's /metrics relays the child's sink metrics
(`RelayedSinkMetrics`). With embedded chdb (one process may open it) or `PEAKEND_SINK_PROCESS=false`
it runs as a task inside the worker instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.request import urlopen

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
            # stopping: land what is held (best effort; a failure leaves it uncommitted)
            with contextlib.suppress(Exception):
                await self.flush()
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stopping = True


# -- the sink as a child process of the worker -------------------------------------------------

SINK_METRICS = (
    "peakend_sink_batch_rows",
    "peakend_sink_insert_seconds",
    "peakend_sink_rows",
    "peakend_sink_insert_failures",
    "peakend_clickhouse_up",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RelayedSinkMetrics:
    """A collector for the worker's registry: the sink child's metrics, read from its /metrics
    at every scrape (nothing while the child is not up)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return
        for family in text_string_to_metric_families(text):
            if family.name in SINK_METRICS:
                yield family


class SinkProcess:
    """Runs `peakend sink` as a child of the worker, restarts it if it dies, stops it with the
    worker; the child also stops by itself when the worker dies (even by SIGKILL)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.port = _free_port()
        registry = metrics.registry
        for name in ("sink_batch_rows", "sink_insert_seconds", "sink_rows",
                     "sink_insert_failures", "clickhouse_up"):
            with contextlib.suppress(KeyError):
                registry.unregister(getattr(metrics, name))
        registry.register(RelayedSinkMetrics(self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PEAKEND_METRICS_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "sink", "--parent-pid", str(os.getpid())],
            env=env,
        )

    async def run(self) -> None:
        try:
            while True:
                self.start()
                assert self.proc is not None
                while self.proc.poll() is None:
                    await asyncio.sleep(0.5)
                log.warning("the sink process exited with %s; starting it again",
                            self.proc.returncode)
                await asyncio.sleep(1.0)
        finally:
            self.stop()

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # the child flushes its batch and commits, then exits
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="stop when this process (the worker) is gone")


def _die_with(parent_pid: int) -> None:
    """Ask Linux for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG); best effort."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    """`peakend sink`: output topics -> ClickHouse in this process, until SIGTERM/SIGINT (or,
    with --parent-pid, until that process is gone)."""
    from pipeline.storage.warehouse import connect

    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING)
    metrics = WorkerMetrics.create()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    sink = ClickHouseSink(
        settings,
        lambda: connect(settings.clickhouse_url, chdb_path=settings.chdb_path,
                        database=settings.clickhouse_database),
        metrics,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sink.stop)
        if args.parent_pid:
            _die_with(args.parent_pid)

            async def watch_parent() -> None:
                while os.getppid() == args.parent_pid:
                    await asyncio.sleep(0.5)
                sink.stop()

            watcher = asyncio.ensure_future(watch_parent())
        try:
            await sink.run()
        finally:
            if args.parent_pid:
                watcher.cancel()

    asyncio.run(main())
    return 0
