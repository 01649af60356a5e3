"""Running real workers against the real broker and ClickHouse, and comparing what lands with
what `peakend replay` computes offline."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from pipeline.contract import Rejected, parse_event
from pipeline.privacy import PersonalData
from pipeline.replay import Replay, with_now
from pipeline.settings import Settings
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import ServerWarehouse
from tests.support.stack import ClickHouseUrls
from tests.support.tables import read_back_values

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class StreamSetup:
    env: dict[str, str]
    database: str
    admin_url: str
    writer_url: str
    topic: str
    partitions: int
    ca_file: str = ""  # verifies the server of a clickhouses:// writer_url

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def warehouse(self) -> ServerWarehouse:
        return ServerWarehouse(self.writer_url, ca_file=self.ca_file)


def stream_setup(
    tmp_path: Path, kafka: str, ch: ClickHouseUrls, partitions: int = 4, **extra: str
) -> StreamSetup:
    """Fresh topics, consumer groups, state directory and ClickHouse database for one test."""
    tag = uuid.uuid4().hex[:8]
    database = f"e2e_{tag}"
    _CREATED.append((kafka, ch.admin, tag, database))
    admin = ServerWarehouse(ch.admin)
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    admin.close()
    base = ch.writer.rsplit("/", 1)[0]
    env = {
        "PEAKEND_KAFKA_BOOTSTRAP": kafka,
        "PEAKEND_APP_ID": f"e2e-{tag}",
        "PEAKEND_TOPIC_TOUCHPOINTS": f"e2e.{tag}.touchpoints",
        "PEAKEND_TOPIC_DEAD_LETTERS": f"e2e.{tag}.dead-letters",
        "PEAKEND_TOPIC_JOURNEYS": f"e2e.{tag}.journeys",
        "PEAKEND_TOPIC_METRICS": f"e2e.{tag}.metrics",
        "PEAKEND_TOPIC_ALERTS": f"e2e.{tag}.alerts",
        "PEAKEND_PARTITIONS": str(partitions),
        "PEAKEND_CLICKHOUSE_URL": f"{base}/{database}",
        "PEAKEND_CLICKHOUSE_DATABASE": database,
        "PEAKEND_SINK_BATCH_SECONDS": "0.5",
        **extra,
    }
    return StreamSetup(
        env=env, database=database, admin_url=ch.admin, writer_url=f"{base}/{database}",
        topic=env["PEAKEND_TOPIC_TOUCHPOINTS"], partitions=partitions,
    )


# Every setup made by this process, until `remove_stream_resources` deletes its topics and
# database. Left behind, they pile up on the shared broker: with thousands of leftover
# partitions its periodic high-watermark checkpoints, metadata responses and log cleaner took
# most of its CPU, which every later test and benchmark paid for (docs/benchmarks.md).
_CREATED: list[tuple[str, str, str, str]] = []  # (bootstrap, ClickHouse admin URL, tag, db)


def remove_stream_resources() -> list[str]:
    """Delete the topics (every topic whose name holds a setup's tag: the named ones and the
    worker's internal ones) and drop the database of every setup this process made since the
    last call. Returns what could not be removed (the caller decides whether that matters);
    called after each integration test (tests/conftest.py) and at exit (benchmarks)."""
    from kafka.admin import KafkaAdminClient

    problems: list[str] = []
    while _CREATED:
        bootstrap, admin_url, tag, database = _CREATED.pop()
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap,
                                     client_id="peakend-test-cleanup")
            try:
                names = [t for t in admin.list_topics() if tag in t]
                if names:
                    admin.delete_topics(names, timeout_ms=30_000)
            finally:
                admin.close()
        except Exception as exc:  # a cleanup failure is reported, not raised
            problems.append(f"topics of {tag}: {type(exc).__name__}: {exc}")
        try:
            warehouse = ServerWarehouse(admin_url)
            try:
                warehouse.execute(f"DROP DATABASE IF EXISTS {database}")
            finally:
                warehouse.close()
        except Exception as exc:
            problems.append(f"database {database}: {type(exc).__name__}: {exc}")
    return problems


atexit.register(remove_stream_resources)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different free ports. Each socket stays bound until all are chosen: two
    `free_port()` calls in a row may get the same port back (a CI run gave a worker's metrics
    and web ports both 59791, and the worker refused to start: they must differ)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class Worker:
    """`peakend worker` in a subprocess with its own state directory and a free metrics port.

    `port_offset` is kept for callers; ports are chosen free so tests running at the same time
    never collide."""

    def __init__(self, setup: StreamSetup, tmp_path: Path, name: str, port_offset: int = 0
                 ) -> None:
        self.log_path = tmp_path / f"worker-{name}.log"
        self.metrics_port, web_port = free_ports(2)
        env = {
            **os.environ,
            **setup.env,
            "PEAKEND_DATA_DIR": str(tmp_path / f"state-{name}"),
            "PEAKEND_METRICS_PORT": str(self.metrics_port),
            "PEAKEND_WEB_PORT": str(web_port),
        }
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker",
             "--loglevel", os.environ.get("PEAKEND_TEST_WORKER_LOGLEVEL", "info")],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metric_samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample the worker's /metrics serves now: (name, sorted labels) -> value."""
        from urllib.request import urlopen

        from prometheus_client.parser import text_string_to_metric_families

        with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(line for line in text if "buffer full" not in line)[-6000:] or "(empty)"


def produce_lines(
    bootstrap: str,
    topic: str,
    lines: Iterable[bytes],
    *,
    on_sent: Callable[[int], None] | None = None,
    client_options: dict[str, str] | None = None,
    idempotent: bool = False,
    one_key: bytes | None = None,
) -> int:
    """Send raw lines keyed like the producer library (journey key), invalid ones unkeyed, in
    order, so each partition sees the order `peakend replay --partitions` assumes.
    `client_options`: `Settings.kafka_client_options()` for a SASL or TLS listener.
    `one_key`: every line under this key instead (one partition, in file order).

    `idempotent`: retries without end and the broker drops the repeats, so a broker lost under
    load (a cluster's leader moving) neither drops nor repeats input."""
    options: dict[str, Any] = dict(enable_idempotence=True, retries=2**31 - 1,
                                   request_timeout_ms=15_000) if idempotent else {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_request_size=4 * 1024 * 1024, **options,
                             **(client_options or {}))
    count = 0
    for line in lines:
        key = one_key
        if key is None:
            try:
                key = parse_event(line).journey_key.encode()
            except Rejected:
                key = None
        producer.send(topic, key=key, value=line)
        count += 1
        if on_sent is not None:
            on_sent(count)
    producer.flush()
    producer.close()
    return count


def group_members(bootstrap: str, group: str) -> int:
    """How many members a consumer group has once it is stable (0 while it rebalances, or
    while a broker started moments ago has no group coordinator yet)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import CoordinatorNotAvailableError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
    except CoordinatorNotAvailableError:
        return 0
    finally:
        admin.close()
    return len(described["members"]) if described["group_state"] == "Stable" else 0


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               on_timeout: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")


# -- comparison --------------------------------------------------------------------------------

def replay_records(lines: list[bytes], partitions: int, settings: Settings) -> Replay:
    # judged against the wall clock, as the worker judges what it reads (`future`)
    replay = Replay(with_now(settings.core_config(), None), partitions, settings.topic_touchpoints,
                    settings.max_event_bytes, PersonalData.from_settings(settings))
    for number, line in enumerate(lines, start=1):
        replay.line(number, line)
    replay.keep(replay.engine.finish())
    return replay


def journeys_in_clickhouse(setup: StreamSetup) -> dict[str, tuple[Any, ...]]:
    columns, _ = rows("journeys", [])
    wh = setup.warehouse()
    try:
        data = wh.query(f"SELECT {', '.join(columns)} FROM journeys FINAL")
    finally:
        wh.close()
    return {row[0]: tuple(row) for row in data}


def journeys_of_replay(replay: Replay) -> dict[str, tuple[Any, ...]]:
    """Replay's journeys as `journeys_in_clickhouse` reads them back."""
    columns, data = rows("journeys", [r.to_dict() for r in replay.journeys.values()])
    return {row[0]: read_back_values("journeys", columns, row) for row in data}


METRIC_SUMS = ("n", "promoters", "passives", "detractors", "total", "total_sq", "easy", "hard",
               "positives")


def _sum_partials(records: Iterable[dict[str, Any]]) -> dict[tuple[Any, ...], list[float]]:
    sums: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0] * len(METRIC_SUMS))
    for r in records:
        key = (r["metric"], r["segment_dim"], r["segment_value"], r["window_start"])
        acc = sums[key]
        for i, name in enumerate(METRIC_SUMS):
            acc[i] += float(r[name])
    # a bucket whose contributions were all retracted is the same as no bucket
    return {k: v for k, v in sums.items() if v[0] != 0}


def metrics_in_clickhouse(setup: StreamSetup) -> dict[tuple[Any, ...], list[float]]:
    wh = setup.warehouse()
    try:
        data = wh.query(
            "SELECT metric, segment_dim, segment_value, window_start_ms, "
            f"{', '.join(METRIC_SUMS)} FROM metric_buckets FINAL"
        )
    finally:
        wh.close()
    names = ("metric", "segment_dim", "segment_value", "window_start", *METRIC_SUMS)
    return _sum_partials(dict(zip(names, row, strict=True)) for row in data)


def metrics_of_replay(replay: Replay) -> dict[tuple[Any, ...], list[float]]:
    out = []
    for record in replay.metrics.values():
        d = record.to_dict()
        d["window_start"] = record.window_start
        out.append(d)
    return _sum_partials(out)


def metrics_differences(got: dict[tuple[Any, ...], list[float]],
                        want: dict[tuple[Any, ...], list[float]]) -> list[str]:
    """What keeps ClickHouse's metric buckets from equalling replay's; empty when they do."""
    if got.keys() != want.keys():
        return [f"buckets only in ClickHouse: {sorted(got.keys() - want.keys())[:5]}; "
                f"only in replay: {sorted(want.keys() - got.keys())[:5]}"]
    return [f"{key} {name}: ClickHouse {a}, replay {b}"
            for key, values in want.items()
            for name, a, b in zip(METRIC_SUMS, got[key], values, strict=True)
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)]


def wait_for_metrics(setup: StreamSetup, want: dict[tuple[Any, ...], list[float]],
                     timeout: float) -> None:
    """Wait until the metric buckets in ClickHouse equal `want`, values and all. The segments
    stage writes a bucket's partial sums as they come, so the keys can match while a later
    partial (a withdrawn copy's retraction, a late answer) is still on its way: waiting for the
    keys alone and then comparing values races the sink."""
    wait_until(lambda: not metrics_differences(metrics_in_clickhouse(setup), want), timeout,
               "the metric buckets in ClickHouse to equal replay's",
               lambda: "\n".join(metrics_differences(metrics_in_clickhouse(setup), want)[:10]))


def dead_letter_counts(setup: StreamSetup) -> dict[str, int]:
    wh = setup.warehouse()
    try:
        data = wh.query("SELECT reason, count() FROM dead_letters FINAL GROUP BY reason")
    finally:
        wh.close()
    return {str(r): int(c) for r, c in data}


def count(setup: StreamSetup, sql: str) -> int:
    wh = setup.warehouse()
    try:
        return int(wh.query(sql)[0][0])
    except Exception:  # the sink may not have created the table yet
        return -1
    finally:
        wh.close()


def read_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def crawl_seconds(samples: list[tuple[float, dict[int, int], dict[int, int]]],
                  backlog: int = 3) -> float:
    """The longest stretch during which one partition with a backlog (lag > `backlog` records:
    batch records of many events each) had its committed offset move, but by at most one
    offset per second: the signature of issue 14."""
    longest = 0.0
    for p in samples[0][1]:
        start: float | None = None
        for (t0, c0, _), (t1, c1, e1) in itertools.pairwise(samples):
            step = c1[p] - c0[p]
            crawling = e1[p] - c1[p] > backlog and 0 < step <= max(1.0, t1 - t0)
            if crawling and start is None:
                start = t0
            elif not crawling and step != 0:
                start = None
            if start is not None:
                longest = max(longest, t1 - start)
    return longest
