"""Faults and scaling on a real cluster (scripts/cluster.sh): three Kafka brokers (replication
factor 3, min.insync.replicas 2), ZooKeeper, two ClickHouse 18.16 replicas of one shard behind
Distributed tables (`PEAKEND_CLICKHOUSE_CLUSTER`).

    .venv/bin/python bench/cluster.py faults  [--events N] [--json FILE]
    .venv/bin/python bench/cluster.py scaling [--events N] [--workers 1,2,4] [--json FILE]

faults: one stream under load, with a broker SIGKILLed and restarted, then the ClickHouse
replica the sink does not write to stopped and restarted (it catches up from the other through
ZooKeeper); then the same measure as bench/faults.py (lost 0, duplicates 0, tables = replay), on
both replicas. scaling: a backlog of N events on 12 partitions, then 1, 2, 4 worker processes
until caught up: events/s end to end, CPU seconds of each worker, CPU per event.
Leaves the cluster running; `bash scripts/cluster.sh stop` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402

from bench.faults import (  # noqa: E402
    FaultResult,
    Supervisor,
    ch_count,
    generate_lines,
    measure,
    settle,
)
from pipeline.contract import Rejected, parse_event  # noqa: E402
from pipeline.storage.warehouse import ServerWarehouse  # noqa: E402
from pipeline.stream.progress import wait_caught_up  # noqa: E402
from pipeline.stream.topics import ensure_topics  # noqa: E402
from tests.conftest import ClickHouseUrls  # noqa: E402
from tests.integration.stream_util import StreamSetup, Worker, stream_setup  # noqa: E402

CLUSTER = ROOT / "scripts" / "cluster.sh"


class ClusterStack:
    """The loopback cluster of scripts/cluster.sh (its own state directory and ports)."""

    def __init__(self) -> None:
        self.env = dict(os.environ)

    def run(self, *args: str, timeout: float = 900) -> str:
        proc = subprocess.run(["bash", str(CLUSTER), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/cluster.sh {' '.join(args)} failed "
                               f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def start(self, *services: str) -> None:
        self.run("start", *services)

    def stop(self, *services: str) -> None:
        self.run("stop", *services)

    def kill(self, *services: str) -> None:
        self.run("kill", *services)

    def variables(self) -> dict[str, str]:
        out = {}
        for line in self.run("env").splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                out[name] = value
        return out

    def urls(self, replica: int = 1) -> ClickHouseUrls:
        env, suffix = self.variables(), "" if replica == 1 else f"_{replica}"
        return ClickHouseUrls(writer=env[f"PEAKEND_CLICKHOUSE_URL{suffix}"],
                              reader=env[f"PEAKEND_CLICKHOUSE_READER_URL{suffix}"],
                              admin=env[f"PEAKEND_CLICKHOUSE_ADMIN_URL{suffix}"])


def cluster_setup(stack: ClusterStack, tmp: Path, partitions: int = 12) -> StreamSetup:
    """Fresh topics (3 replicas) and a fresh database on both replicas, the worker's tables
    Replicated behind Distributed (the sink migrates with PEAKEND_CLICKHOUSE_CLUSTER)."""
    env = stack.variables()
    setup = stream_setup(tmp, env["PEAKEND_KAFKA_BOOTSTRAP"], stack.urls(1), partitions,
                         PEAKEND_CLICKHOUSE_CLUSTER=env["PEAKEND_CLICKHOUSE_CLUSTER"],
                         PEAKEND_KAFKA_REPLICATION_FACTOR=env["PEAKEND_KAFKA_REPLICATION_FACTOR"])
    second = ServerWarehouse(stack.urls(2).admin)
    try:
        second.execute(f"CREATE DATABASE IF NOT EXISTS {setup.database}")
    finally:
        second.close()
    return setup


def on_replica(setup: StreamSetup, stack: ClusterStack, replica: int) -> StreamSetup:
    """The same tables read through another replica (its Distributed tables read the local
    replica first: prefer_localhost_replica)."""
    base = stack.urls(replica).writer.rsplit("/", 1)[0]
    return replace(setup, writer_url=f"{base}/{setup.database}")


def produce(bootstrap: str, topic: str, lines: list[bytes], rate: float = 0,
            sent: list[int] | None = None) -> None:
    """Like stream_util.produce_lines (journey key, in order), idempotent with retries so a
    broker lost under load neither drops nor repeats input."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             enable_idempotence=True, retries=2**31 - 1,
                             max_request_size=4 * 1024 * 1024, request_timeout_ms=15_000)
    t0 = time.monotonic()
    try:
        for count, line in enumerate(lines, start=1):
            try:
                key: bytes | None = parse_event(line).journey_key.encode()
            except Rejected:
                key = None
            producer.send(topic, key=key, value=line)
            if sent is not None:
                sent[0] = count
            if rate and count % 200 == 0:
                ahead = count / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    finally:
        producer.close()


def replicas_in_sync(setup: StreamSetup, stack: ClusterStack, timeout: float) -> float:
    """Seconds until every Replicated table of the database has an empty replication queue and
    the same row count on both replicas."""
    started = time.monotonic()
    query = ("SELECT sum(queue_size), sum(inserts_in_queue), sum(total_replicas - "
             "active_replicas) FROM system.replicas WHERE database = %(db)s")
    tables = "SELECT table FROM system.replicas WHERE database = %(db)s ORDER BY table"
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            states, totals = [], []
            for replica in (1, 2):
                wh = ServerWarehouse(stack.urls(replica).admin)
                try:
                    states.append(wh.query(query, {"db": setup.database})[0])
                    names = [str(r[0]) for r in wh.query(tables, {"db": setup.database})]
                    # names from system.replicas of our own database, not input
                    totals.append([(name, int(wh.query(
                        f"SELECT count() FROM {setup.database}.{name}")[0][0]))
                        for name in names])
                finally:
                    wh.close()
            if all(int(q) == 0 and int(i) == 0 and int(d) == 0 for q, i, d in states) \
                    and totals[0] == totals[1]:
                return time.monotonic() - started
        time.sleep(1)
    raise TimeoutError(f"replicas of {setup.database} not in sync after {timeout:.0f} s")


# -- faults ------------------------------------------------------------------------------------

def faults_under_load(stack: ClusterStack, tmp: Path, events: int, rate: float = 600,
                      broker: str = "kafka2", down_s: float = 20,
                      timeout: float = 600) -> tuple[FaultResult, FaultResult]:
    """One stream under load: `broker` SIGKILLed at a quarter of the input stored, restarted
    `down_s` later; at half, ClickHouse replica 2 (the sink writes to replica 1) stopped for
    `down_s` and restarted. Returns the measure through replica 1 and through replica 2."""
    setup = cluster_setup(stack, tmp)
    lines = generate_lines(tmp, events, seed=31)
    result = FaultResult(f"cluster: {broker} SIGKILLed, ClickHouse replica 2 stopped "
                         f"{down_s:.0f} s, under load", len(lines))
    started = time.monotonic()
    ensure_topics(setup.settings())
    sup = Supervisor(setup, tmp, "cluster", 0)
    sent = [0]
    errors: list[BaseException] = []

    def send() -> None:
        try:
            produce(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, rate, sent)
        except BaseException as exc:  # reported in the notes
            errors.append(exc)

    producer = threading.Thread(target=send, daemon=True)
    producer.start()
    try:
        def until_stored(fraction: float) -> None:
            deadline = time.monotonic() + timeout / 2
            while ch_count(setup) < len(lines) * fraction and time.monotonic() < deadline:
                sup()
                time.sleep(0.5)

        until_stored(0.25)
        stack.kill(broker)
        result.notes.append(f"{broker} SIGKILLed at {ch_count(setup):,} stored, "
                            f"{sent[0]:,} sent")
        pause(sup, down_s)
        stack.start(broker)
        result.notes.append(f"{broker} back at {ch_count(setup):,} stored")
        until_stored(0.5)
        stack.stop("clickhouse2")
        result.notes.append(f"replica 2 stopped at {ch_count(setup):,} stored, "
                            f"{sent[0]:,} sent")
        pause(sup, down_s)
        stack.start("clickhouse2")
        producer.join()
        if errors:
            result.notes.append(f"producer: {errors[0]!r}")
        settle(setup, lines, sup, timeout)
        result.worker_restarts = sup.restarts
        if sup.restarts:
            result.notes.append(f"{sup.restarts} unplanned worker exits {sup.exit_codes}")
        catch_up = replicas_in_sync(setup, stack, timeout=180)
        result.notes.append(f"replica 2 in sync {catch_up:.0f} s after the stream settled")
        result.seconds = time.monotonic() - started
        first = measure(setup, lines, result)
        second = measure(on_replica(setup, stack, 2), lines,
                         FaultResult(result.fault + " (read on replica 2)", len(lines)))
        return first, second
    finally:
        sup.stop()
        with contextlib.suppress(RuntimeError):
            stack.start()


def pause(sup: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sup()
        time.sleep(0.5)


# -- scaling -----------------------------------------------------------------------------------

@dataclass
class ScalingRow:
    workers: int
    events: int
    seconds: float
    events_per_s: float
    cpu_s_per_worker: list[float]
    cpu_us_per_event: float


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scaling_run(stack: ClusterStack, tmp: Path, workers: int, lines: list[bytes],
                timeout: float = 900) -> ScalingRow:
    """A backlog of `lines` on 12 partitions, then `workers` processes until caught up."""
    run_dir = tmp / f"scale-{workers}"
    run_dir.mkdir(parents=True, exist_ok=True)
    setup = cluster_setup(stack, run_dir)
    settings = setup.settings()
    ensure_topics(settings)
    produce(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines)
    procs = [Worker(setup, run_dir, f"w{i}") for i in range(workers)]
    started = time.monotonic()
    cpu = [0.0] * workers
    try:
        deadline = started + timeout
        while time.monotonic() < deadline:
            for i, w in enumerate(procs):
                if not w.alive():
                    raise RuntimeError(f"worker {i} exited: {w.log_tail()}")
                cpu[i] = cpu_seconds(w.proc.pid)
            with contextlib.suppress(Exception):
                wait_caught_up(settings, 5.0, settle_s=1.0)
                if ch_count(setup) >= len(lines) * 0.9:
                    break
        else:
            raise TimeoutError(f"{workers} workers not caught up after {timeout:.0f} s")
        seconds = time.monotonic() - started
        for i, w in enumerate(procs):
            cpu[i] = cpu_seconds(w.proc.pid)
    finally:
        for w in procs:
            w.stop()
    return ScalingRow(workers, len(lines), seconds, len(lines) / seconds,
                      [round(c, 1) for c in cpu], sum(cpu) / len(lines) * 1e6)


# -- reports -----------------------------------------------------------------------------------

def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.node()}, {os.cpu_count()} cores, {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average before "
            f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("faults", "scaling"))
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tmp", type=Path, default=ROOT / ".stack" / "cluster-bench")
    args = parser.parse_args(argv)
    stack = ClusterStack()
    # a fresh cluster: a broker restart loads every partition's log first, and with the topics
    # of earlier runs it missed KRaft's registration timeout on this machine
    stack.run("wipe")
    stack.start()
    tmp = args.tmp / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    report: dict[str, Any] = {"machine": machine(), "what": args.what}
    if args.what == "faults":
        first, second = faults_under_load(stack, tmp, args.events or 12_000)
        print("| fault | events sent | valid in ClickHouse / expected | dead letters / expected "
              "| duplicates | lost | seconds | notes |")
        for r in (first, second):
            print(r.row())
            print(json.dumps(r.detail))
        report["results"] = [asdict(first), asdict(second)]
    else:
        lines = generate_lines(tmp, args.events or 20_000, seed=32)
        rows = []
        for n in (int(w) for w in args.workers.split(",")):
            row = scaling_run(stack, tmp, n, lines)
            rows.append(row)
            base = rows[0]
            print(f"| {row.workers} | {row.events:,} | {row.seconds:.0f} | "
                  f"{row.events_per_s:,.0f} | {row.events_per_s / base.events_per_s:.2f} | "
                  f"{row.cpu_s_per_worker} | {row.cpu_us_per_event:,.0f} | "
                  f"{row.cpu_us_per_event / base.cpu_us_per_event:.2f} |", flush=True)
        report["results"] = [asdict(r) for r in rows]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
