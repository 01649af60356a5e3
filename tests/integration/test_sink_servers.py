"""The ClickHouse sink against the real servers when ClickHouse misbehaves (issue 13 item 3,
issue 14 item 4): rows ClickHouse 18.16 refuses become dead letters and the rest arrives; a hung
server counts as down within ~15 s; the sink migrates and waits while ClickHouse is away; the sink
child dies with its worker.

"Hung" and "away" are made by a small TCP relay in this process between the sink and the shared
ClickHouse server (`Relay`): it forwards, refuses, or holds every byte (what a SIGSTOPped server
does to an open connection), so no test pauses the server other engineers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.contract.dead_letters import DeadLetter
from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.storage.sink import REJECTED_REASON, ClickHouseSink, isolate
from pipeline.storage.warehouse import SINK_TIMEOUTS, ServerWarehouse, connect
from tests.integration.kafka_util import create_topic
from tests.support.children import kill_both, seconds_to_outlive_a_sigkill
from tests.support.stack import ClickHouseUrls
from tests.unit.storage.test_sink_isolation import journey_record

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Relay:
    """127.0.0.1:port -> target. mode "up" forwards, "down" closes every connection at once,
    "hung" accepts and forwards nothing (open connections freeze mid-stream)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "up"
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "down":
            self._drop_all()

    def _drop_all(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            self._sockets.append(client)
            if self.mode == "hung":
                continue  # held open, never answered
            upstream = socket.create_connection(self.target)
            self._sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while self.mode == "hung":
                    time.sleep(0.02)
                if self.mode == "down":
                    break
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self._drop_all()


def _through(url: str, port: int, database: str) -> str:
    parsed = urlparse(url)
    netloc = parsed.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunparse(parsed._replace(netloc=netloc, path="/" + database))


class Setup:
    """A fresh (empty, unmigrated) database, fresh topics, and a relay to the server."""

    def __init__(self, kafka: str, ch: ClickHouseUrls) -> None:
        tag = uuid.uuid4().hex[:8]
        self.database = f"sink_{tag}"
        self.admin = ServerWarehouse(ch.admin)
        self.admin.execute(f"CREATE DATABASE {self.database}")
        parsed = urlparse(ch.writer)
        self.relay = Relay((parsed.hostname or "127.0.0.1", parsed.port or 9000))
        self.direct_url = _through(ch.writer, parsed.port or 9000, self.database)
        self.env = {
            "PEAKEND_KAFKA_BOOTSTRAP": kafka,
            "PEAKEND_APP_ID": f"sink-{tag}",
            "PEAKEND_TOPIC_TOUCHPOINTS": f"sink.{tag}.touchpoints",
            "PEAKEND_TOPIC_DEAD_LETTERS": f"sink.{tag}.dead-letters",
            "PEAKEND_TOPIC_JOURNEYS": f"sink.{tag}.journeys",
            "PEAKEND_TOPIC_METRICS": f"sink.{tag}.metrics",
            "PEAKEND_TOPIC_ALERTS": f"sink.{tag}.alerts",
            "PEAKEND_PARTITIONS": "2",
            "PEAKEND_CLICKHOUSE_URL": _through(ch.writer, self.relay.port, self.database),
            "PEAKEND_CLICKHOUSE_DATABASE": self.database,
            "PEAKEND_SINK_BATCH_SECONDS": "0.3",
        }
        self.settings = Settings.from_env(self.env)
        for name, value in self.env.items():
            if name.startswith("PEAKEND_TOPIC_"):
                create_topic(kafka, value, partitions=2)
        self.metrics = WorkerMetrics.create()

    def sink(self, *, migrate: bool = True) -> ClickHouseSink:
        s = self.settings
        return ClickHouseSink(
            s, lambda: connect(s.clickhouse_url, database=s.clickhouse_database,
                               timeouts=SINK_TIMEOUTS),
            self.metrics, migrate=migrate)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        warehouse = ServerWarehouse(self.direct_url)
        try:
            return warehouse.query(sql)
        finally:
            warehouse.close()

    def count(self, table: str) -> int:
        """Rows in `table`, 0 while the sink has not created it yet."""
        if not self.query(f"EXISTS TABLE {table}")[0][0]:
            return 0
        return int(self.query(f"SELECT count() FROM {table}")[0][0])

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})

    def close(self) -> None:
        self.relay.close()
        self.admin.execute(f"DROP DATABASE IF EXISTS {self.database}")
        self.admin.close()


@pytest.fixture()
def setup(kafka_bootstrap: str, clickhouse_urls: ClickHouseUrls) -> Iterator[Setup]:
    s = Setup(kafka_bootstrap, clickhouse_urls)
    try:
        yield s
    finally:
        s.close()


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        metas = [producer.send(topic, value=v, partition=i % 2).get(timeout=30)
                 for i, v in enumerate(values)]
    finally:
        producer.close()
    return [(m.partition, m.offset) for m in metas]


async def _until(check: Any, timeout: float, what: str) -> float:
    """Seconds until `check()` (run in a thread) is true; AssertionError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(check):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _run_sink_until(setup: Setup, sink: ClickHouseSink, letters: int, good: int) -> None:
    """Run `sink` until the dead_letters table holds `letters` rows and journeys `good`."""

    async def main() -> None:
        task = asyncio.ensure_future(sink.run())
        try:
            await _until(lambda: setup.count("dead_letters") >= letters, 90,
                         "the refused records in the dead_letters table")
            await _until(lambda: setup.count("journeys") >= good, 30, "the good rows")
        finally:
            sink.stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(main())


def _assert_committed_past(kafka_bootstrap: str, sink: ClickHouseSink, topic: str,
                           coordinates: list[tuple[int, int]]) -> None:
    """The sink's group committed every partition of `topic` past the records produced."""
    ends = {p: max(o for q, o in coordinates if q == p) + 1 for p, _ in coordinates}
    reader = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=sink.group_id,
                           enable_auto_commit=False)
    try:
        got = {p: reader.committed(TopicPartition(topic, p)) for p in ends}
    finally:
        reader.close()
    assert got == ends


def _poison(i: int) -> tuple[bytes, str]:
    """Journey records ClickHouse 18.16 (through clickhouse-driver's native blocks) refuses."""
    record = json.loads(journey_record(i, 2))
    kind = i % 4
    if kind == 0:
        record["started_at"] = "1960-01-01T00:00:00.000Z"  # DateTime is seconds since 1970
        return json.dumps(record).encode(), "argument out of range"
    if kind == 1:
        record["ended_at"] = "2200-01-01T00:00:00.000Z"  # past 2106 (UInt32 seconds)
        return json.dumps(record).encode(), "format requires 0 <= number <= 4294967295"
    if kind == 2:
        record["events"] = -1  # UInt32
        return json.dumps(record).encode(), "Column events"
    record["moments"] = 2**32  # UInt32
    return json.dumps(record).encode(), "Column moments"


def test_poison_rows_become_dead_letters_and_the_rest_arrives(setup: Setup,
                                                               kafka_bootstrap: str) -> None:
    good = [journey_record(i, 3) for i in range(200)]
    poison = [_poison(i) for i in range(1000, 1004)]
    values = good[:100] + [p for p, _ in poison[:2]] + good[100:] + [p for p, _ in poison[2:]]
    coordinates = _produce(kafka_bootstrap, setup.settings.topic_journeys, values)
    poison_at = {coordinates[values.index(p)]: why for p, why in poison}
    sink = setup.sink()  # an empty database: the sink applies the migrations itself
    _run_sink_until(setup, sink, len(poison), len(good))
    stored = {r[0] for r in setup.query("SELECT journey_id FROM journeys")}
    assert stored == {f"j{i}" for i in range(200)}
    letters = [DeadLetter.from_dict(dict(zip(
        ("reason", "error", "source_topic", "source_partition", "source_offset", "received_at",
         "event_id", "original_b64"), (*r[:5], r[5].isoformat() + "+00:00", *r[6:]),
        strict=True)))
        for r in setup.query(
            "SELECT reason, error, source_topic, source_partition, source_offset, received_at, "
            "event_id, original_b64 FROM dead_letters")]
    assert len(letters) == len(poison)  # each once: the batch was not retried
    for letter in letters:
        assert letter.reason == REJECTED_REASON
        assert letter.source_topic == setup.settings.topic_journeys
        why = poison_at[(letter.source_partition, letter.source_offset)]
        assert "journeys" in letter.error and why in letter.error, letter.error
        assert letter.original in {p for p, _ in poison}
    assert setup.sample("peakend_sink_rejected_rows_total", {"table": "journeys"}) == 4
    assert setup.sample("peakend_sink_insert_failures_total", {"table": "journeys"}) is None
    assert setup.sample("peakend_clickhouse_up") == 1
    # and the sink moved on: its offsets cover every record
    _assert_committed_past(kafka_bootstrap, sink, setup.settings.topic_journeys, coordinates)


def test_records_the_sink_cannot_read_become_dead_letters_and_the_rest_arrives(
        setup: Setup, kafka_bootstrap: str) -> None:
    """Another producer's records on an output topic (text, a JSON array, a string, nesting
    deeper than the decoder goes) on the real broker: each a dead letter `unreadable` in the
    dead_letters table, the good rows stored, the offsets committed past them (a JSON array
    once crashed every flush, so the sink committed nothing)."""
    good = [journey_record(i, 3) for i in range(60)]
    unreadable = [b"hello", b"[1, 2, 3]", b'"just a string"', b"[" * 3000 + b"]" * 3000]
    values = good[:30] + unreadable[:2] + good[30:] + unreadable[2:]
    coordinates = _produce(kafka_bootstrap, setup.settings.topic_journeys, values)
    sink = setup.sink()
    _run_sink_until(setup, sink, len(unreadable), len(good))
    assert {r[0] for r in setup.query("SELECT journey_id FROM journeys")} == {
        f"j{i}" for i in range(60)}
    rows = setup.query("SELECT reason, source_topic, source_partition, source_offset, error "
                       "FROM dead_letters ORDER BY source_partition, source_offset")
    where = {coordinates[values.index(v)] for v in unreadable}
    assert {(r[2], r[3]) for r in rows} == where and len(rows) == len(unreadable)
    assert {(r[0], r[1]) for r in rows} == {("unreadable", setup.settings.topic_journeys)}
    assert all("the sink cannot read this record" in r[4] for r in rows)
    assert setup.sample("peakend_sink_rejected_rows_total", {"table": "journeys"}) == 4
    _assert_committed_past(kafka_bootstrap, sink, setup.settings.topic_journeys, coordinates)


def test_a_server_side_refusal_is_isolated_on_the_real_server(setup: Setup) -> None:
    """18.16 itself refuses Nested arrays of different sizes (Code 190): a server exception, not
    a driver check, is bisected the same way."""
    setup.admin.execute(f"CREATE TABLE {setup.database}.nested_probe "
                        "(a UInt32, n Nested(x String, y String)) ENGINE = MergeTree ORDER BY a")
    warehouse = ServerWarehouse(setup.direct_url, timeouts=SINK_TIMEOUTS)
    items = [(i, ["a"], ["b"]) if i % 17 else (i, ["a", "c"], ["b"]) for i in range(1, 60)]
    refused: list[tuple[tuple[int, list[str], list[str]], BaseException]] = []
    try:
        isolate([items], lambda chunk: warehouse.insert("nested_probe", ("a", "n.x", "n.y"),
                                                        chunk), refused)
    finally:
        warehouse.close()
    assert [r[0][0] for r in refused] == [17, 34, 51]
    assert all("Code: 190" in str(e) for _, e in refused)
    stored = [r[0] for r in setup.query("SELECT a FROM nested_probe ORDER BY a")]
    assert stored == [i for i in range(1, 60) if i % 17]


def test_a_hung_clickhouse_counts_as_down_within_15_s_and_the_batch_lands_after(
    setup: Setup, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture,
) -> None:
    sink = setup.sink()
    topic = setup.settings.topic_journeys
    seen_in_flight: list[float] = []

    async def main() -> float:
        task = asyncio.ensure_future(sink.run())
        try:
            await asyncio.to_thread(_produce, kafka_bootstrap, topic, [journey_record(0, 1)])
            await _until(lambda: setup.count("journeys") == 1, 90,
                         "the first row (connection open)")
            setup.relay.set("hung")  # the open connection freezes, new ones get no answer
            await asyncio.to_thread(_produce, kafka_bootstrap, topic,
                                    [journey_record(1, 1), journey_record(2, 1)])

            def down() -> bool:
                seen_in_flight.append(setup.sample("peakend_sink_insert_in_flight_seconds")
                                      or 0.0)
                return setup.sample("peakend_clickhouse_up") == 0

            took = await _until(down, 40, "clickhouse_up == 0")
            assert (setup.sample("peakend_sink_oldest_pending_seconds") or 0) > took - 1
            setup.relay.set("up")
            await _until(lambda: setup.count("journeys") == 3, 60,
                         "the held batch after the hang")
            await _until(lambda: setup.sample("peakend_clickhouse_up") == 1, 10, "up again")
            return took
        finally:
            sink.stop()
            await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.WARNING):
        took = asyncio.run(main())
    print(f"hung ClickHouse counted as down after {took:.1f} s "
          f"(in-flight gauge peaked at {max(seen_in_flight):.1f} s)")
    # the produce of records 1-2 and the first batch wait take part of the window too
    assert took <= 15.0
    assert max(seen_in_flight) >= 2.0  # the hung insert showed while it hung
    assert (setup.sample("peakend_sink_insert_failures_total", {"table": "journeys"}) or 0) >= 1
    assert setup.sample("peakend_sink_rejected_rows_total", {"table": "journeys"}) is None
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("pipeline")]
    assert any("ClickHouse unreachable" in line for line in lines), lines
    assert not any(r.exc_info for r in caplog.records), "a traceback reached the log"


def test_the_sink_migrates_once_clickhouse_comes_up_and_inserts_only_after(
    setup: Setup, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture,
) -> None:
    setup.relay.set("down")
    _produce(kafka_bootstrap, setup.settings.topic_journeys, [journey_record(5, 1)])
    sink = setup.sink()

    async def main() -> None:
        task = asyncio.ensure_future(sink.run())
        try:
            await _until(lambda: sum("ClickHouse migrations, attempt" in r.getMessage()
                                     for r in caplog.records) >= 2, 30, "two failed attempts")
            assert setup.sample("peakend_clickhouse_up") == 0
            assert setup.sample("peakend_kafka_up") == 1
            assert setup.query("EXISTS TABLE journeys")[0][0] == 0
            setup.relay.set("up")
            await _until(lambda: setup.query("EXISTS TABLE journeys")[0][0] == 1
                         and setup.count("journeys") == 1, 60,
                         "migrations, then the row")
        finally:
            sink.stop()
            await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    attempts = [r.getMessage() for r in caplog.records
                if "ClickHouse migrations, attempt" in r.getMessage()]
    assert all("\n" not in line and "Stack trace" not in line for line in attempts), attempts
    assert not any(r.exc_info for r in caplog.records), "a traceback reached the log"
    assert setup.count("schema_migrations") >= 1


PARENT = """
import sys, time
from pipeline.observability import WorkerMetrics
from pipeline.storage.sink import SinkProcess
child = SinkProcess(WorkerMetrics.create())
child.start()
print(child.proc.pid, child.metrics_port, flush=True)
time.sleep(600)
"""


def test_the_sink_child_dies_within_1_s_of_a_sigkilled_worker(setup: Setup) -> None:
    # The child is busy: ClickHouse hangs, so it sits in a migration attempt that would block
    # for seconds; it must not wait for that.
    setup.relay.set("hung")
    env = {**os.environ, **setup.env}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        pid_text, port_text = parent.stdout.readline().split()
        child_pid, port = int(pid_text), int(port_text)
        deadline = time.monotonic() + 60
        while True:  # up: it serves its metrics, then it is past its start-up
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the sink child never served /metrics"
                time.sleep(0.2)
        time.sleep(2.0)  # inside a hung migration attempt by now
        took = seconds_to_outlive_a_sigkill(parent, child_pid)
        print(f"sink child gone {took:.2f} s after the worker's SIGKILL")
        assert took < 1.0
    finally:
        kill_both(parent, child_pid)
