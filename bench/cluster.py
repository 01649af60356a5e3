"""Faults and scaling on a real cluster (scripts/cluster.sh): three Kafka brokers (replication
factor 3, min.insync.replicas 2), ZooKeeper, ClickHouse 18.16 as two shards of two replicas
behind Distributed tables (`PEAKEND_CLICKHOUSE_CLUSTER`; PEAKEND_CLUSTER_SHARDS=1: one shard).

    .venv/bin/python -m bench.cluster faults  [--faults GROUP ...] [--rate R] [--json FILE]
    .venv/bin/python -m bench.cluster scaling [--events N] [--workers 1,2,4] [--json FILE]

faults: for each GROUP (faults separated by commas, default one group per fault) a fresh stream
with input arriving at R events/s from before the first fault until after the last one is over;
the faults of a group one after the other (FAULTS: broker-kill, leader-stop, zookeeper,
worker-kill, replica-stop); then the same measure as bench/faults.py (lost 0, duplicates 0,
tables = replay of what was sent) through server 1 and through the replica that was stopped
(the last server), after every shard's replicas are in sync. scaling: a backlog of N events on
12 partitions, then 1, 2, 4 worker processes until caught up: events/s end to end, CPU seconds
of each worker, CPU per event.
Leaves the cluster running; `bash scripts/cluster.sh stop` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.faults import (
    BackgroundProducer,
    FaultResult,
    ScriptStack,
    Supervisor,
    _sum,
    ch_count,
    generate_lines,
    measure,
    scrape,
    settle,
)
from pipeline.contract import Rejected, parse_event
from pipeline.core.partitioner import partition_for
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.stream.lag import wait_caught_up
from pipeline.stream.topics import ensure_topics
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    StreamSetup,
    Worker,
    journeys_in_clickhouse,
    journeys_of_replay,
    metrics_in_clickhouse,
    metrics_of_replay,
    produce_lines,
    replay_records,
    stream_setup,
)

ROOT = Path(__file__).resolve().parents[1]

CLUSTER = ROOT / "scripts" / "cluster.sh"
REPLICAS_PER_SHARD = 2  # scripts/cluster.sh: servers 1 and 2 are shard 1, 3 and 4 shard 2


class ClusterStack(ScriptStack):
    """The loopback cluster of scripts/cluster.sh (its own state directory and ports)."""

    def __init__(self) -> None:
        super().__init__(CLUSTER, dict(os.environ))

    def run(self, *args: str, timeout: float = 900) -> str:
        return super().run(*args, timeout=timeout)

    def start(self, *services: str) -> None:
        self.run("start", *services)

    def stop(self, *services: str) -> None:
        self.run("stop", *services)

    def kill(self, *services: str) -> None:
        self.run("kill", *services)

    def servers(self) -> list[int]:
        """The ClickHouse servers, 1..N (their URLs in `env`: PEAKEND_CLICKHOUSE_URL, _2, ...)."""
        env = self.variables()
        return [1] + [n for n in range(2, 10) if f"PEAKEND_CLICKHOUSE_URL_{n}" in env]

    def shards(self) -> dict[int, list[int]]:
        """Shard number -> its servers."""
        out: dict[int, list[int]] = {}
        for server in self.servers():
            out.setdefault((server - 1) // REPLICAS_PER_SHARD + 1, []).append(server)
        return out

    def urls(self, replica: int = 1) -> ClickHouseUrls:
        env, suffix = self.variables(), "" if replica == 1 else f"_{replica}"
        return ClickHouseUrls(writer=env[f"PEAKEND_CLICKHOUSE_URL{suffix}"],
                              reader=env[f"PEAKEND_CLICKHOUSE_READER_URL{suffix}"],
                              admin=env[f"PEAKEND_CLICKHOUSE_ADMIN_URL{suffix}"])


def cluster_setup(stack: ClusterStack, tmp: Path, partitions: int = 12) -> StreamSetup:
    """Fresh topics (3 replicas) and a fresh database on every server, the worker's tables
    Replicated behind Distributed (the sink migrates with PEAKEND_CLICKHOUSE_CLUSTER)."""
    env = stack.variables()
    setup = stream_setup(tmp, env["PEAKEND_KAFKA_BOOTSTRAP"], stack.urls(1), partitions,
                         PEAKEND_CLICKHOUSE_CLUSTER=env["PEAKEND_CLICKHOUSE_CLUSTER"],
                         PEAKEND_KAFKA_REPLICATION_FACTOR=env["PEAKEND_KAFKA_REPLICATION_FACTOR"])
    for server in stack.servers()[1:]:
        other = ServerWarehouse(stack.urls(server).admin)
        try:
            other.execute(f"CREATE DATABASE IF NOT EXISTS {setup.database}")
        finally:
            other.close()
    return setup


def on_replica(setup: StreamSetup, stack: ClusterStack, replica: int) -> StreamSetup:
    """The same tables read through another server (its Distributed tables read the local
    replica first: prefer_localhost_replica)."""
    base = stack.urls(replica).writer.rsplit("/", 1)[0]
    return replace(setup, writer_url=f"{base}/{setup.database}")


def replicas_in_sync(setup: StreamSetup, stack: ClusterStack, timeout: float) -> float:
    """Seconds until every Replicated table of the database has an empty replication queue on
    every server and the same row count (FINAL) on the replicas of each shard."""
    started = time.monotonic()
    query = ("SELECT sum(queue_size), sum(inserts_in_queue), sum(total_replicas - "
             "active_replicas) FROM system.replicas WHERE database = %(db)s")
    tables = "SELECT table FROM system.replicas WHERE database = %(db)s ORDER BY table"
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            states, totals = [], {}
            for server in stack.servers():
                wh = ServerWarehouse(stack.urls(server).admin)
                try:
                    states.append(wh.query(query, {"db": setup.database})[0])
                    names = [str(r[0]) for r in wh.query(tables, {"db": setup.database})]
                    # names from system.replicas of our own database, not input
                    # FINAL: an insert cut by a ZooKeeper loss ("Unknown status, client must
                    # retry") may leave its part on one replica only, beside the retried copy
                    # that both have: the same rows, so equal after FINAL, not in count()
                    totals[server] = [(name, int(wh.query(
                        f"SELECT count() FROM {setup.database}.{name} FINAL")[0][0]))
                        for name in names]
                finally:
                    wh.close()
            if all(int(q) == 0 and int(i) == 0 and int(d) == 0 for q, i, d in states) and all(
                    totals[s] == totals[servers[0]]
                    for servers in stack.shards().values() for s in servers):
                return time.monotonic() - started
        time.sleep(1)
    raise TimeoutError(f"replicas of {setup.database} not in sync after {timeout:.0f} s")


# -- what differs, when a measure is not exact -------------------------------------------------

JOURNEY_FIELDS_SHOWN = ("status", "close_reason", "events", "moments", "end_event_id",
                        "version")


def explain_differences(setup: StreamSetup, lines: list[bytes], limit: int = 15
                        ) -> dict[str, Any]:
    """Which journeys and metric partials differ from replay, on which journey partition,
    and what each side holds: the journeys' events sent, stored in touchpoint_events, and the
    fields of both versions; the metric buckets (partials summed, as `measure` compares them)
    that differ. Written beside a failed run's logs so that a failure explains itself
    (docs/reliability.md, issue 20)."""
    settings = setup.settings()
    replay = replay_records(lines, setup.partitions, settings)
    got, want = journeys_in_clickhouse(setup), journeys_of_replay(replay)
    columns = rows("journeys", [])[0]
    shown = [columns.index(name) for name in JOURNEY_FIELDS_SHOWN]
    sent: dict[str, list[str]] = {}  # journey key -> event ids, in input order
    for line in lines:
        with contextlib.suppress(Rejected):
            event = parse_event(line, max_bytes=settings.max_event_bytes)
            sent.setdefault(event.journey_key, []).append(event.event_id)
    wh = setup.warehouse()
    try:
        stored: dict[str, int] = {}  # journey key -> events stored
        for journey_id, customer_id, n in wh.query(
                "SELECT journey_id, customer_id, count() FROM touchpoint_events FINAL "
                "GROUP BY journey_id, customer_id"):
            key = str(journey_id or customer_id)
            stored[key] = stored.get(key, 0) + int(n)
    finally:
        wh.close()

    def side(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
        return None if row is None else {
            name: row[i] for name, i in zip(JOURNEY_FIELDS_SHOWN, shown, strict=True)}

    keyed_by, customer = columns.index("keyed_by"), columns.index("customer_id")

    def journey_key(journey: str) -> str:
        """The Kafka key of a journey: its id when the producer gave one, else its customer."""
        row = got.get(journey) or want[journey]
        return journey if row[keyed_by] == "journey_id" else str(row[customer])

    kinds = {"only_replay": sorted(want.keys() - got.keys()),
             "only_clickhouse": sorted(got.keys() - want.keys()),
             "differ": sorted(k for k in got.keys() & want.keys() if got[k] != want[k])}
    by_partition: dict[str, dict[int, int]] = {}
    journeys: list[dict[str, Any]] = []
    for kind, keys in kinds.items():
        counts = by_partition.setdefault(kind, {})
        for journey in keys:
            key = journey_key(journey)
            partition = partition_for(key, setup.partitions)
            counts[partition] = counts.get(partition, 0) + 1
            if len(journeys) < limit * len(kinds) and sum(
                    1 for j in journeys if j["kind"] == kind) < limit:
                journeys.append({
                    "kind": kind, "journey": journey, "key": key, "partition": partition,
                    "key_events_sent": len(sent.get(key, [])),
                    "key_events_stored": stored.get(key, 0),
                    "clickhouse": side(got.get(journey)), "replay": side(want.get(journey)),
                    "fields_differing": [
                        c for i, c in enumerate(columns) if journey in got and journey in want
                        and got[journey][i] != want[journey][i]]})
    got_m, want_m = metrics_in_clickhouse(setup), metrics_of_replay(replay)
    bucket_kinds = {
        "only_replay": sorted(want_m.keys() - got_m.keys()),
        "only_clickhouse": sorted(got_m.keys() - want_m.keys()),
        "differ": sorted(k for k in got_m.keys() & want_m.keys() if any(
            abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(got_m[k], want_m[k],
                                                                  strict=True)))}
    return {"journeys_by_partition": by_partition, "journeys": journeys,
            "buckets": {kind: {"count": len(keys), "examples": [
                {"key": k, "n_clickhouse": got_m[k][0] if k in got_m else None,
                 "n_replay": want_m[k][0] if k in want_m else None} for k in keys[:5]]}
                for kind, keys in bucket_kinds.items()}}


# -- faults ------------------------------------------------------------------------------------

FAULTS = ("broker-kill", "leader-stop", "zookeeper", "worker-kill", "replica-stop")


class UntilStopped(BackgroundProducer):
    """Sends lines at `rate`/s (idempotent, acks=all) until stop(): faults are injected while
    input arrives, however long each takes; what was sent is lines[:sent]."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], rate: float) -> None:
        super().__init__(bootstrap, topic, lines, rate, idempotent=True)
        self._halt = threading.Event()

    def records(self) -> Iterator[bytes]:
        for line in self.lines:
            if self._halt.is_set():
                return
            yield line

    def stop(self) -> int:
        """Stop sending; wait until what was sent is acknowledged; returns how many."""
        self._halt.set()
        self.join()
        return self.sent


def partition_leader(bootstrap: str, topic: str, partition: int = 0) -> int:
    """The node id of the broker leading `partition` of `topic`."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_topics([topic])[0]
    finally:
        admin.close()
    # kafka-python 3 names the fields leader_id and partition_index (2.x: leader, partition)
    return int(next(p.get("leader_id", p.get("leader", -1)) for p in described["partitions"]
                    if p.get("partition_index", p.get("partition")) == partition))


@dataclass
class FaultRun:
    """What a fault needs while it is injected, and where it writes what it saw."""
    stack: ClusterStack
    setup: StreamSetup
    sup: Supervisor
    producer: UntilStopped
    result: FaultResult
    down_s: float
    zookeeper_s: float
    victim: Worker | None = None

    def wait(self, seconds: float, each: Callable[[], None] = lambda: None) -> None:
        """`seconds`, restarting the worker if it exits (as systemd would), `each` every 2 s."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sup()
            each()
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def note(self, text: str) -> None:
        self.result.notes.append(f"{text} ({ch_count(self.setup):,} stored, "
                                 f"{self.producer.sent:,} sent)")


def fault_broker_kill(run: FaultRun) -> None:
    run.stack.kill("kafka2")
    run.note("kafka2 SIGKILLed")
    run.wait(run.down_s)
    run.stack.start("kafka2")
    run.note("kafka2 back")


def fault_leader_stop(run: FaultRun) -> None:
    bootstrap = run.setup.env["PEAKEND_KAFKA_BOOTSTRAP"]
    leader = partition_leader(bootstrap, run.setup.topic)
    run.stack.stop(f"kafka{leader}")
    run.note(f"kafka{leader}, leader of {run.setup.topic.rsplit('.', 1)[1]} partition 0, "
             "stopped")
    run.wait(run.down_s)
    now = partition_leader(bootstrap, run.setup.topic)
    run.result.detail["leader_moved_to"] = now
    run.stack.start(f"kafka{leader}")
    run.note(f"leader moved to kafka{now}; kafka{leader} back")


def fault_zookeeper(run: FaultRun) -> None:
    """ZooKeeper stopped for `zookeeper_s`: the Replicated tables go read-only (inserts fail
    and the sink retries), reads go on; after the restart inserts resume."""
    servers = run.stack.servers()
    reads = {"ok": 0, "failed": 0}

    def read_everywhere() -> None:
        for server in servers:
            try:
                wh = ServerWarehouse(run.stack.urls(server).writer.rsplit("/", 1)[0] + "/"
                                     + run.setup.database)
                try:
                    wh.query("SELECT count() FROM journeys_latest")
                finally:
                    wh.close()
                reads["ok"] += 1
            except Exception:  # counted: reads must go on without ZooKeeper
                reads["failed"] += 1

    def failures() -> float:
        with contextlib.suppress(OSError):
            return _sum(scrape(run.sup.worker.metrics_port), "peakend_sink_insert_failures")
        return -1.0

    before = failures()
    run.stack.stop("zookeeper")
    run.note("ZooKeeper stopped")
    stored_at_stop = ch_count(run.setup)
    run.wait(run.zookeeper_s, read_everywhere)
    stored_while_down = ch_count(run.setup) - stored_at_stop
    insert_failures = failures() - before
    run.stack.start("zookeeper")
    back = time.monotonic()
    at = ch_count(run.setup)
    resumed: float | None = None
    while time.monotonic() - back < 180:
        run.sup()
        if ch_count(run.setup) > at:
            resumed = time.monotonic() - back
            break
        time.sleep(1)
    run.result.detail.update(zookeeper_reads_ok=reads["ok"],
                             zookeeper_reads_failed=reads["failed"],
                             stored_while_zookeeper_down=stored_while_down,
                             insert_failures_while_zookeeper_down=insert_failures,
                             inserts_resumed_after_s=resumed)
    run.note(f"ZooKeeper back: reads while down {reads['ok']} ok, {reads['failed']} failed; "
             f"rows stored while down {stored_while_down:,}; sink insert failures "
             f"{insert_failures:.0f}; inserts resumed "
             + (f"{resumed:.0f} s after" if resumed is not None else "not within 180 s"))


def fault_worker_kill(run: FaultRun) -> None:
    assert run.victim is not None
    run.victim.kill9()
    run.note("worker 2 of 2 SIGKILLed (not restarted: worker 1 takes its partitions)")
    run.wait(run.down_s)


def fault_replica_stop(run: FaultRun) -> None:
    last = run.stack.servers()[-1]
    run.stack.stop(f"clickhouse{last}")
    run.note(f"ClickHouse server {last} (a replica of the last shard) stopped")
    run.wait(run.down_s)
    run.stack.start(f"clickhouse{last}")
    run.note(f"server {last} back")


INJECT: dict[str, Callable[[FaultRun], None]] = {
    "broker-kill": fault_broker_kill, "leader-stop": fault_leader_stop,
    "zookeeper": fault_zookeeper, "worker-kill": fault_worker_kill,
    "replica-stop": fault_replica_stop,
}


def faults_while_producing(stack: ClusterStack, tmp: Path, faults: Sequence[str],
                           rate: float = 40, warm_s: float = 20, gap_s: float = 10,
                           down_s: float = 20, zookeeper_s: float = 30, timeout: float = 600,
                           seed: int = 31) -> tuple[FaultResult, FaultResult]:
    """One stream on 12 partitions with input arriving at `rate`/s throughout: once the workers
    store rows, `warm_s` more of input, then each fault in turn (`down_s` down, ZooKeeper
    `zookeeper_s`) with `gap_s` after it, and `gap_s` more input after the last. Then the
    stream settles, every shard's replicas get in sync, and the measure of bench/faults.py
    (against replay of what was sent) runs through server 1 and through the last server (the
    replica `replica-stop` stops)."""
    unknown = [f for f in faults if f not in INJECT]
    if unknown:
        raise ValueError(f"unknown faults {unknown} (known: {', '.join(FAULTS)})")
    setup = cluster_setup(stack, tmp)
    # (and up to 300 s until the workers store their first rows)
    budget_s = 300 + warm_s + len(faults) * (max(down_s, zookeeper_s) + 120 + gap_s) + gap_s
    lines = generate_lines(tmp, int(rate * budget_s), seed=seed)
    result = FaultResult(", ".join(faults) + f"; input arriving at {rate:.0f}/s", 0)
    started = time.monotonic()
    ensure_topics(setup.settings())  # before the workers: neither races the other to create
    sup = Supervisor(setup, tmp, "cluster", 0)
    victim = Worker(setup, tmp, "victim") if "worker-kill" in faults else None
    producer = UntilStopped(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, rate)
    run = FaultRun(stack, setup, sup, producer, result, down_s, zookeeper_s, victim)
    try:
        producer.start()
        # the faults come once the workers store what arrives (their sink migrates first: ON
        # CLUSTER DDL on every server, minutes on a busy machine), after `warm_s` more
        deadline = time.monotonic() + timeout
        while ch_count(setup) <= 0 and time.monotonic() < deadline:
            run.wait(1)
        result.notes.append(f"first rows stored {time.monotonic() - started:.0f} s after the "
                            "start")
        run.wait(warm_s)
        arriving = []
        for fault in faults:
            before = producer.sent
            INJECT[fault](run)
            arriving.append(producer.is_alive() and producer.sent > before)
            run.wait(gap_s)
        sent = producer.stop()
        if producer.error:
            result.notes.append(f"producer: {producer.error!r}")
        if sent == len(lines):
            result.notes.append("the input ran out before the last fault was over")
        result.detail["input_arriving_during_each_fault"] = arriving
        lines = lines[:sent]
        result.sent = sent
        settle(setup, lines, sup, timeout, result)
        result.worker_restarts = sup.restarts
        if sup.restarts:
            result.notes.append(f"{sup.restarts} unplanned worker exits {sup.exit_codes}")
        catch_up = replicas_in_sync(setup, stack, timeout=180)
        result.notes.append(f"replicas in sync {catch_up:.0f} s after the stream settled")
        result.seconds = time.monotonic() - started
        last = stack.servers()[-1]
        first = measure(setup, lines, result)
        other = measure(on_replica(setup, stack, last), lines,
                        FaultResult(result.fault + f" (read on server {last})", sent))
        result.detail["database"] = setup.database
        if first.lost or first.duplicates:
            # which journeys and partitions, and what both sides hold: a failure explains itself
            result.detail["explained"] = explain_differences(setup, lines)
        # kept beside the run's logs (a passing test prints nothing); `keep_run` copies them
        # out of pytest's temporary directory when a test fails
        (tmp / "fault-results.json").write_text(json.dumps([asdict(first), asdict(other)],
                                                           default=str, indent=1))
        return first, other
    finally:
        if producer.is_alive():
            producer.stop()
        if victim is not None:
            victim.stop()
        sup.stop()
        with contextlib.suppress(RuntimeError):
            stack.start()


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
    produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, idempotent=True)
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
    parser.add_argument("--faults", nargs="+", default=list(FAULTS),
                        help="groups of faults for one stream each, a group's faults separated "
                             f"by commas (default: one stream per fault of {', '.join(FAULTS)})")
    parser.add_argument("--rate", type=float, default=40, help="input events/s during faults")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tmp", type=Path, default=ROOT / ".stack" / "cluster-bench")
    parser.add_argument("--keep", action="store_true",
                        help="use the running cluster instead of wiping and starting a fresh one")
    args = parser.parse_args(argv)
    stack = ClusterStack()
    if not args.keep:
        # a fresh cluster: a broker restart loads every partition's log first, and with the
        # topics of earlier runs it missed KRaft's registration timeout on this machine
        stack.run("wipe")
    stack.start()
    tmp = args.tmp / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}, ClickHouse shards {len(stack.shards())}", flush=True)
    report: dict[str, Any] = {"machine": machine(), "what": args.what}
    if args.what == "faults":
        print("| fault | events sent | valid in ClickHouse / expected | dead letters / expected "
              "| duplicates | lost | seconds | notes |", flush=True)
        report["results"] = []
        for number, group in enumerate(args.faults):
            run_dir = tmp / f"faults-{number}"
            run_dir.mkdir()
            pair = faults_while_producing(stack, run_dir, group.split(","), rate=args.rate)
            for r in pair:
                print(r.row())
                print(f"    load {os.getloadavg()[0]:.1f},", json.dumps(r.detail, default=str),
                      flush=True)
            report["results"] += [asdict(r) for r in pair]
    else:
        lines = generate_lines(tmp, args.events or 20_000, seed=32)
        rows = []
        print("| workers | events | seconds | events/s | speed-up | CPU s per worker | "
              "CPU µs per event | vs 1 worker |", flush=True)
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
