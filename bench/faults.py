"""Fault tests on the real servers: what lands in ClickHouse after each fault, against replay.

    .venv/bin/python -m bench.faults [--events N] [--quick] [--only NAME,...] [--json FILE]

Runs every scenario against a private Kafka broker and ClickHouse server started by
scripts/stack.sh under .stack/faults on their own ports (29092/29000), so stopping them does not
disturb anyone else's stack, and prints one row per fault: events sent, events in ClickHouse,
dead letters, duplicates and lost (both must be 0; see `measure`).

Scenarios: worker SIGKILLed 3 times under load; ClickHouse stopped for 60 s under load (15 s with
--quick); ClickHouse hung (SIGSTOP) for 45 s under load; Kafka broker restarted under load; the
broker SIGKILLed and started again; a takeover (two workers, one SIGKILLed, group lag every
second); 10% poison input; and the memory plateau of stage one and two over many days of event
time (in-process, `memory_plateau`; `--memory-worker`: the real worker). tests/integration/
test_faults.py runs the same functions with small sizes in CI.

`--stack-dir .stack/faults2 --port-offset 10000` runs on a second private stack (39092/39000),
e.g. while a long memory run holds the first one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.host import proc_rss_mib
from jobs.generate import parse_span
from pipeline.contract import Rejected, parse_event
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream import heap
from pipeline.stream.lag import wait_caught_up
from pipeline.stream.topics import ensure_topics
from tests.support.stack import ClickHouseUrls
from tests.support.stream import (
    StreamSetup,
    Worker,
    journeys_in_clickhouse,
    journeys_of_replay,
    metrics_differences,
    metrics_in_clickhouse,
    metrics_of_replay,
    produce_lines,
    read_lines,
    replay_records,
    stream_setup,
)

ROOT = Path(__file__).resolve().parents[1]

STACK = ROOT / "scripts" / "stack.sh"
FAULT_STACK_DIR = ROOT / ".stack" / "faults"
FAULT_PORTS = {
    "PEAKEND_KAFKA_PORT": "29092",
    "PEAKEND_KAFKA_CONTROLLER_PORT": "29097",
    "PEAKEND_CLICKHOUSE_TCP_PORT": "29000",
    "PEAKEND_CLICKHOUSE_HTTP_PORT": "28123",
    "PEAKEND_KAFKA_HEAP": "768m",
}


# -- a private stack -----------------------------------------------------------------------------

class ScriptStack:
    """Servers run by one of the repo's scripts (scripts/stack.sh, scripts/cluster.sh) with the
    environment `env`: its commands, and the `export` lines of its `env` command."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.script, self.env = script, env

    def run(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(["bash", str(self.script), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/{self.script.name} {' '.join(args)} failed "
                               f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def variables(self) -> dict[str, str]:
        out = {}
        for line in self.run("env").splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                out[name] = value
        return out


class FaultStack(ScriptStack):
    """Kafka + ClickHouse of our own (scripts/stack.sh with another data directory and ports).

    `directory` and `port_offset` (added to every port of FAULT_PORTS) default to
    PEAKEND_FAULT_STACK_DIR and PEAKEND_FAULT_PORT_OFFSET, else .stack/faults and 0: a second
    private stack (e.g. .stack/faults2 with offset 10000: 39092/39000) lets the faults that kill
    or hang a server run while something else uses the first one (a long memory run)."""

    def __init__(self, directory: Path | None = None, port_offset: int | None = None) -> None:
        if directory is None:
            directory = Path(os.environ.get("PEAKEND_FAULT_STACK_DIR") or FAULT_STACK_DIR)
        if port_offset is None:
            port_offset = int(os.environ.get("PEAKEND_FAULT_PORT_OFFSET") or 0)
        self.directory = directory.resolve()  # scripts/stack.sh changes directory
        ports = {k: v if k == "PEAKEND_KAFKA_HEAP" else str(int(v) + port_offset)
                 for k, v in FAULT_PORTS.items()}
        super().__init__(STACK, {**os.environ, **ports, "PEAKEND_STACK_DIR": str(self.directory)})

    def pid(self, service: str) -> int:
        """The server's own process (scripts/stack.sh's pid file: `java ... kafka.Kafka`,
        `clickhouse-server`), checked against its command line."""
        pid = int((self.directory / service / f"{service}.pid").read_text().split()[0])
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        config = (args[-1] if service == "kafka" else
                  next((a.split("=", 1)[1] for a in args if a.startswith("--config-file=")), ""))
        want = "kafka.Kafka" if service == "kafka" else "clickhouse-server"
        if (want not in " ".join(args)
                or not (cwd / config).resolve().is_relative_to(self.directory)):
            raise RuntimeError(f"pid {pid} of {service} is not our server: {args}")
        return pid

    def signal(self, service: str, sig: int) -> int:
        pid = self.pid(service)
        os.kill(pid, sig)
        return pid

    def kill9(self, service: str, timeout: float = 30) -> int:
        """SIGKILL the server and wait until it is gone (no clean shutdown, no flush)."""
        pid = self.signal(service, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if " Z" in _proc_state(pid):
                break
            time.sleep(0.1)
        return pid

    def _seed_kafka_jars(self) -> None:
        """Hard-link the jars of the main stack when present (saves a Maven run)."""
        mine = self.directory / "kafka" / "libs"
        main = ROOT / ".stack" / "kafka" / "libs"
        if (mine / ".complete").exists() or not (main / ".complete").exists():
            return
        shutil.rmtree(mine, ignore_errors=True)
        mine.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(main, mine, copy_function=os.link)

    def start(self, *services: str) -> None:
        self._seed_kafka_jars()
        self.run("start", *(services or ("kafka", "clickhouse")))

    def stop(self, service: str) -> None:
        self.run("stop", service)

    def restart(self, service: str) -> None:
        self.run("restart", service)

    def shutdown(self) -> None:
        self.run("stop", "kafka", "clickhouse")

    @property
    def bootstrap(self) -> str:
        return self.variables()["PEAKEND_KAFKA_BOOTSTRAP"]

    @property
    def urls(self) -> ClickHouseUrls:
        env = self.variables()
        return ClickHouseUrls(writer=env["PEAKEND_CLICKHOUSE_URL"],
                              reader=env["PEAKEND_CLICKHOUSE_READER_URL"],
                              admin=env["PEAKEND_CLICKHOUSE_ADMIN_URL"])


def _proc_state(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
    return ""


# -- input -------------------------------------------------------------------------------------

def generate_lines(tmp: Path, events: int, seed: int, span: str = "6h",
                   late_fraction: float = 0.02) -> list[bytes]:
    out = tmp / f"events-{seed}.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "generate", "--events", str(events), "--seed",
         str(seed), "--span", span, "--late-fraction", str(late_fraction), "--output", str(out),
         "--quiet"],
        cwd=ROOT, check=True,
    )
    return read_lines(out)


POISON_KINDS = ("random_bytes", "non_utf8", "wrong_types", "not_object", "truncated",
                "duplicate_key", "unknown_field", "nan", "empty", "deep_nesting", "huge")


def poison_record(kind: str, rng: random.Random, valid: bytes, max_event_bytes: int) -> bytes:
    """One bad record of the given kind, built from a valid one where that makes it nastier."""
    event: dict[str, Any] = json.loads(valid)
    if kind == "random_bytes":
        return rng.randbytes(rng.randint(1, 400))
    if kind == "non_utf8":
        return valid[: len(valid) // 2] + b"\xff\xfe\xc3" + valid[len(valid) // 2:]
    if kind == "wrong_types":
        field_, value = rng.choice([("occurred_at", 12345), ("schema_version", "1"),
                                    ("valence", "very bad"), ("attributes", ["a", "b"]),
                                    ("survey", {"nps": "ten"}), ("signals", {"transfers": -3}),
                                    ("customer_id", None), ("event_id", {"id": 1})])
        event[field_] = value
        return json.dumps(event).encode()
    if kind == "not_object":
        return rng.choice([b"[1,2,3]", b'"just a string"', b"42", b"null", b"true"])
    if kind == "truncated":
        return valid[: rng.randint(1, len(valid) - 2)]
    if kind == "duplicate_key":
        return valid[:-1] + b',"event_id":"other"}'
    if kind == "unknown_field":
        event["colour"] = "blue"
        return json.dumps(event).encode()
    if kind == "nan":
        return valid[:-1] + b',"valence":NaN}' if b'"valence"' not in valid else b'{"v":NaN}'
    if kind == "empty":
        return rng.choice([b"", b"   ", b"\n"])
    if kind == "deep_nesting":
        depth = rng.randint(2_000, 20_000)
        return ('{"event_id":"deep","attributes":' + "[" * depth + "]" * depth + "}").encode()
    if kind == "huge":  # above PEAKEND_MAX_EVENT_BYTES, below the broker's 2 MB
        size = rng.randint(max_event_bytes + 1, 1_900_000)
        event.setdefault("survey", {"nps": 5})["comment"] = "x" * size
        return json.dumps(event).encode()[:1_990_000]
    raise ValueError(kind)


def mix_poison(valid_lines: list[bytes], fraction: float, seed: int, max_event_bytes: int,
               huge_every: int = 100, kinds: tuple[str, ...] = POISON_KINDS) -> list[bytes]:
    """Valid lines with `fraction` of the output bad records mixed in (kinds in turn; a huge one
    only every `huge_every`-th bad record, to keep the topic's size sane)."""
    rng = random.Random(seed)
    bad_total = round(len(valid_lines) * fraction / (1 - fraction))
    small = [k for k in kinds if k != "huge"]
    out = list(valid_lines)
    for i in range(bad_total):
        kind = "huge" if "huge" in kinds and i % huge_every == huge_every - 1 else small[
            i % len(small)]
        at = rng.randint(0, len(out))
        out.insert(at, poison_record(kind, rng, rng.choice(valid_lines), max_event_bytes))
    return out


class BackgroundProducer(threading.Thread):
    """Sends lines at about `rate` records/s (0: as fast as possible) while faults happen."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], rate: float = 0,
                 idempotent: bool = False) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.lines, self.rate = bootstrap, topic, lines, rate
        self.idempotent = idempotent
        self.sent = 0
        self.error: BaseException | None = None
        self._t0 = 0.0

    def _pace(self, count: int) -> None:
        self.sent = count
        if self.rate and count % 200 == 0:
            ahead = count / self.rate - (time.monotonic() - self._t0)
            if ahead > 0:
                time.sleep(ahead)

    def records(self) -> Iterable[bytes]:
        """What run() sends (a subclass may stop early)."""
        return self.lines

    def run(self) -> None:
        self._t0 = time.monotonic()
        try:
            produce_lines(self.bootstrap, self.topic, self.records(), on_sent=self._pace,
                          idempotent=self.idempotent)
        except BaseException as exc:  # reported by the scenario
            self.error = exc


# -- measuring ---------------------------------------------------------------------------------

@dataclass
class FaultResult:
    fault: str
    sent: int
    valid: int = 0
    in_clickhouse: int = 0
    dead_letters: int = 0
    dead_letters_expected: int = 0
    duplicates: int = 0
    lost: int = 0
    seconds: float = 0.0
    worker_restarts: int = 0
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        return (f"| {self.fault} | {self.sent:,} | {self.in_clickhouse:,} / {self.valid:,} | "
                f"{self.dead_letters:,} / {self.dead_letters_expected:,} | {self.duplicates} | "
                f"{self.lost} | {self.seconds:.0f} | {'; '.join(self.notes)} |")


HEADER = ("| fault | events sent | valid events in ClickHouse / expected | dead letters / "
          "expected | duplicates | lost | seconds | notes |\n|---|---|---|---|---|---|---|---|")


def _query(setup: StreamSetup, sql: str) -> list[tuple[Any, ...]]:
    wh = setup.warehouse()
    try:
        return wh.query(sql)
    finally:
        wh.close()


def keep_failed_run(setup: StreamSetup, result: FaultResult, logs: Path, keep: Path) -> Path:
    """Every topic of the run (one JSON line per record: partition, offset, timestamp, key and
    value in base64), the result's detail and the worker logs under `logs`, in `keep`/<tag>/
    (`--keep-failed`; the topics themselves go at exit with the run's other resources): what
    explained the SIGKILL x3 negative_end difference (docs/reliability.md)."""
    import base64

    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    tag = setup.env["PEAKEND_APP_ID"].split("-", 1)[1]
    out = keep / tag
    out.mkdir(parents=True, exist_ok=True)
    (out / "detail.json").write_text(json.dumps(result.detail, default=str, indent=1))
    bootstrap = setup.env["PEAKEND_KAFKA_BOOTSTRAP"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="peakend-keep-failed")
    try:
        names = [name for name in admin.list_topics() if tag in name]
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        for name in names:
            parts = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            end = consumer.end_offsets(parts)
            with (out / f"{name}.jsonl").open("w") as dump:
                while any(consumer.position(tp) < end[tp] for tp in parts):
                    for batch in consumer.poll(timeout_ms=2000, max_records=5000).values():
                        for m in batch:
                            dump.write(json.dumps({
                                "p": m.partition, "o": m.offset, "ts": m.timestamp,
                                "k": None if m.key is None else base64.b64encode(m.key).decode(),
                                "v": None if m.value is None
                                else base64.b64encode(m.value).decode()}) + "\n")
    finally:
        consumer.close()
    for log in logs.glob("worker-*.log"):
        shutil.copy(log, out / log.name)
    return out


def measure(setup: StreamSetup, lines: list[bytes], result: FaultResult) -> FaultResult:
    """Compare ClickHouse with `peakend replay` of the same input.

    duplicates: rows visible twice after FINAL (event_id repeated), journeys whose latest state
    differs from replay, metric buckets whose partial sums differ, journeys/buckets/dead letters
    only in ClickHouse. lost: valid events missing from touchpoint_events, journeys and buckets
    only in replay, dead letters missing."""
    settings = setup.settings()
    replay = replay_records(lines, setup.partitions, settings)
    valid_ids = set()
    for line in lines:
        with contextlib.suppress(Rejected):
            valid_ids.add(parse_event(line, max_bytes=settings.max_event_bytes).event_id)
    result.valid = len(valid_ids)
    result.dead_letters_expected = len(replay.dead_letters)
    stored = {str(r[0]) for r in _query(setup, "SELECT event_id FROM touchpoint_events FINAL")}
    result.in_clickhouse = len(stored & valid_ids)
    total, distinct = _query(setup, "SELECT count(), uniqExact(event_id) "
                                    "FROM touchpoint_events FINAL")[0]
    result.dead_letters = int(_query(setup, "SELECT count() FROM dead_letters FINAL")[0][0])
    if result.dead_letters != result.dead_letters_expected:  # which verdicts differ
        result.detail["letters_by_reason"] = {str(r): int(c) for r, c in _query(
            setup, "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason")}
        result.detail["replay_letters_by_reason"] = dict(
            Counter(letter.reason for letter in replay.dead_letters))
    got_j, want_j = journeys_in_clickhouse(setup), journeys_of_replay(replay)
    got_m, want_m = metrics_in_clickhouse(setup), metrics_of_replay(replay)
    differ_j = sum(1 for k in got_j.keys() & want_j.keys() if got_j[k] != want_j[k])
    differ_m = sum(1 for k in got_m.keys() & want_m.keys()
                   if any(abs(a - b) > 1e-9 * max(1.0, abs(b))
                          for a, b in zip(got_m[k], want_m[k], strict=True)))
    d = result.detail
    d.update(
        events_missing=len(valid_ids - stored), event_rows_repeated=int(total) - int(distinct),
        journeys_ch=len(got_j), journeys_replay=len(want_j), journeys_differ=differ_j,
        journeys_only_ch=len(got_j.keys() - want_j.keys()),
        journeys_only_replay=len(want_j.keys() - got_j.keys()),
        buckets_ch=len(got_m), buckets_replay=len(want_m), buckets_differ=differ_m,
        buckets_only_ch=len(got_m.keys() - want_m.keys()),
        buckets_only_replay=len(want_m.keys() - got_m.keys()),
    )
    if differ_m:  # which buckets and sums, so that a rare failure explains itself
        d["buckets_differing"] = metrics_differences(got_m, want_m)[:8]
    extra_letters = max(0, result.dead_letters - result.dead_letters_expected)
    missing_letters = max(0, result.dead_letters_expected - result.dead_letters)
    result.duplicates = (d["event_rows_repeated"] + differ_j + differ_m + d["journeys_only_ch"]
                         + d["buckets_only_ch"] + extra_letters)
    result.lost = (d["events_missing"] + d["journeys_only_replay"] + d["buckets_only_replay"]
                   + missing_letters)
    return result


def settle(setup: StreamSetup, lines: list[bytes], supervise: Callable[[], None],
           timeout: float, result: FaultResult) -> None:
    """Until the pipeline has caught up and the journeys equal replay (or the timeout). Sets
    `result.detail["caught_up"]`: a group that reads nothing, whatever the results so far, is
    a stall (stage two's group once read nothing for 5 min after a broker restart while the
    journeys were right: pipeline/kafka_metadata.py)."""
    settings = setup.settings()
    want = journeys_of_replay(replay_records(lines, setup.partitions, settings))
    deadline = time.monotonic() + timeout
    behind = "not read"
    while time.monotonic() < deadline:
        supervise()
        try:
            wait_caught_up(settings, min(30.0, max(1.0, deadline - time.monotonic())),
                           settle_s=3.0)
        except Exception as exc:  # TimeoutError, or the broker not reachable yet
            behind = str(exc)
            continue
        if journeys_in_clickhouse(setup) == want:
            result.detail["caught_up"] = True
            return
        behind = "caught up, the journeys not yet equal to replay"
        time.sleep(1)
    result.detail["caught_up"] = False
    result.notes.append(f"not settled after {timeout:.0f} s: {behind}"[:400])


class Supervisor:
    """Restarts the worker when it exits, like systemd or Kubernetes would; counts restarts."""

    def __init__(self, setup: StreamSetup, tmp: Path, name: str, port_offset: int) -> None:
        self.setup, self.tmp, self.name, self.port_offset = setup, tmp, name, port_offset
        self.worker = Worker(setup, tmp, name, port_offset)
        self.restarts = 0
        self.exit_codes: list[int | None] = []

    def __call__(self) -> None:
        if not self.worker.alive():
            self.exit_codes.append(self.worker.proc.returncode)
            self.worker.stop()
            self.restarts += 1
            self.worker = Worker(self.setup, self.tmp, self.name, self.port_offset)

    def kill9_and_restart(self) -> None:
        self.worker.kill9()
        self.worker.stop()
        time.sleep(0.5)
        self.worker = Worker(self.setup, self.tmp, self.name, self.port_offset)

    def stop(self) -> None:
        self.worker.stop()


def ch_count(setup: StreamSetup) -> int:
    try:
        return int(_query(setup, "SELECT count() FROM touchpoint_events")[0][0])
    except Exception:  # not created yet, or the server is away
        return -1


def scrape(port: int) -> dict[str, float]:
    """The worker's /metrics as {name{labels}: value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _sum(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


# -- scenarios ---------------------------------------------------------------------------------

def sigkill_under_load(stack: FaultStack, tmp: Path, events: int, kills: int = 3,
                       rate: float = 1500, timeout: float = 600, span: str = "6h",
                       keep: Path | None = None) -> FaultResult:
    """`keep`: a directory where a run whose results differ from replay, or whose worker
    exited unplanned, leaves its topics and worker log (`keep_failed_run`)."""
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4, **WORKER_ENV)
    lines = generate_lines(tmp, events, seed=21, span=span)
    over = "" if span == "6h" else f", {span} of event time"
    result = FaultResult(f"worker SIGKILL x{kills} under load{over}", len(lines))
    started = time.monotonic()
    sup = Supervisor(setup, tmp, "kill", 40)
    producer = BackgroundProducer(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, rate)
    producer.start()
    try:
        for k in range(1, kills + 1):
            target = len(lines) * k // (kills + 1)
            deadline = time.monotonic() + timeout / 2
            while ch_count(setup) < target and time.monotonic() < deadline:
                sup()
                time.sleep(0.2)
            sup.kill9_and_restart()
            result.notes.append(f"kill {k} at {ch_count(setup):,} stored, {producer.sent:,} sent")
        producer.join()
        if producer.error:
            result.notes.append(f"producer: {producer.error!r}")
        settle(setup, lines, sup, timeout, result)
        result.worker_restarts = sup.restarts
        if sup.restarts:
            result.notes.append(f"{sup.restarts} unplanned worker exits {sup.exit_codes}")
        result.seconds = time.monotonic() - started
        measured = measure(setup, lines, result)
        if keep is not None and (measured.duplicates or measured.lost
                                 or measured.worker_restarts):
            measured.notes.append(f"kept in {keep_failed_run(setup, measured, tmp, keep)}")
        return measured
    finally:
        sup.stop()


# The bus topics purged every 2 s (default 30) in the ClickHouse outage and hang runs, so that
# purges fall within every outage: the sink reads `<app>-journey-events` too, and a purge by
# stage one's committed offsets alone deleted what the sink had not inserted (60 s outage,
# 2026-12-06; pipeline/stream/bus_purge.py).
PURGE_DURING_OUTAGES = {"PEAKEND_BUS_PURGE_SECONDS": "2"}


def clickhouse_outage(stack: FaultStack, tmp: Path, events: int, outage_s: float = 60,
                      rate: float = 1000, timeout: float = 600) -> FaultResult:
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4,
                         **{**PURGE_DURING_OUTAGES, **WORKER_ENV})
    lines = generate_lines(tmp, events, seed=22)
    result = FaultResult(f"ClickHouse stopped {outage_s:.0f} s under load", len(lines))
    started = time.monotonic()
    sup = Supervisor(setup, tmp, "chdown", 41)
    producer = BackgroundProducer(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, rate)
    producer.start()
    try:
        deadline = time.monotonic() + 120
        while ch_count(setup) < len(lines) // 5 and time.monotonic() < deadline:
            sup()
            time.sleep(0.2)
        stack.stop("clickhouse")
        down_at = time.monotonic()
        seen_down, failures, alive = False, 0.0, True
        while time.monotonic() - down_at < outage_s:
            time.sleep(1)
            alive = alive and sup.worker.alive()
            try:
                m = scrape(sup.worker.metrics_port)
            except OSError:
                continue
            seen_down = seen_down or m.get("peakend_clickhouse_up", 1.0) == 0.0
            failures = max(failures, _sum(m, "peakend_sink_insert_failures_total"))
        result.detail.update(clickhouse_up_seen_0=seen_down, insert_failures=failures,
                             worker_alive_during_outage=alive, sent_during_outage=producer.sent)
        result.notes.append(f"clickhouse_up=0 seen: {seen_down}; insert failures counted: "
                            f"{failures:.0f}; worker up throughout: {alive}")
        stack.start("clickhouse")
        producer.join()
        settle(setup, lines, sup, timeout, result)
        result.worker_restarts = sup.restarts
        if sup.restarts:
            result.notes.append(f"{sup.restarts} worker exits {sup.exit_codes}")
        result.seconds = time.monotonic() - started
        return measure(setup, lines, result)
    finally:
        sup.stop()
        stack.start("clickhouse")


def kafka_restart(stack: FaultStack, tmp: Path, events: int, rate: float = 1000,
                  timeout: float = 600) -> FaultResult:
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4, **WORKER_ENV)
    lines = generate_lines(tmp, events, seed=23)
    result = FaultResult("Kafka broker restarted under load", len(lines))
    started = time.monotonic()
    first = len(lines) * 3 // 5
    # the worker starts on a backlog of 60%, so the restart comes while it works through it
    # (the topics first: the worker would create them, the broker does not auto-create)
    ensure_topics(setup.settings())
    produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines[:first])
    sup = Supervisor(setup, tmp, "kafka", 42)
    try:
        deadline = time.monotonic() + 120
        while ch_count(setup) < first // 4 and time.monotonic() < deadline:
            sup()
            time.sleep(0.2)
        at = ch_count(setup)
        restart_started = time.monotonic()
        stack.restart("kafka")
        result.notes.append(f"restart at {at:,} of {first:,} stored "
                            f"({time.monotonic() - restart_started:.0f} s down)")
        time.sleep(5)
        sup()
        produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines[first:])
        settle(setup, lines, sup, timeout, result)
        result.worker_restarts = sup.restarts
        result.notes.append(f"worker exits restarted by the supervisor: {sup.restarts} "
                            f"{sup.exit_codes}")
        result.seconds = time.monotonic() - started
        return measure(setup, lines, result)
    finally:
        sup.stop()


def poison_input(stack: FaultStack, tmp: Path, events: int, fraction: float = 0.10,
                 kinds: tuple[str, ...] = POISON_KINDS, timeout: float = 600,
                 label: str = "") -> FaultResult:
    """`events` records in all, `fraction` of them bad.

    The harness's own parse (keys for producing, replay for the expected results) must not trip
    over deep nesting the way the worker does (RecursionError, see docs/reliability.md), so it
    raises its own recursion limit; the worker runs with Python's default."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 60_000))
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4, **WORKER_ENV)
    valid = generate_lines(tmp, round(events * (1 - fraction)), seed=24)
    lines = mix_poison(valid, fraction, seed=24,
                       max_event_bytes=setup.settings().max_event_bytes, kinds=kinds)
    result = FaultResult(label or f"poison input {fraction:.0%} of {len(lines):,}", len(lines))
    started = time.monotonic()
    sup = Supervisor(setup, tmp, "poison", 43)
    try:
        produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines)
        settle(setup, lines, sup, timeout, result)
        sup()
        result.worker_restarts = sup.restarts
        result.notes.append(f"worker crashes: {sup.restarts} {sup.exit_codes}")
        if sup.restarts:
            result.detail["log_tail"] = sup.worker.log_tail()
        result.seconds = time.monotonic() - started
        measure(setup, lines, result)
        by_reason = _query(setup, "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason")
        result.detail["dead_letters_by_reason"] = {str(r): int(c) for r, c in by_reason}
        no_reason = _query(setup, "SELECT count() FROM dead_letters FINAL WHERE error = ''")
        result.detail["dead_letters_without_reason"] = int(no_reason[0][0])
        return result
    finally:
        sup.stop()


class MetricsWatch(threading.Thread):
    """Scrapes the worker's /metrics every `every` s in the background: (time, name, value) for
    the names asked for (label sets summed), the clock `time.monotonic()`."""

    def __init__(self, port: Callable[[], int], names: tuple[str, ...], every: float = 0.5
                 ) -> None:
        super().__init__(daemon=True)
        self.port, self.names, self.every = port, names, every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.failed_scrapes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            at = time.monotonic()
            try:
                m = scrape(self.port())
                self.samples.append((at, {n: _sum(m, n) for n in self.names
                                          if any(k.startswith(n) for k in m)}))
            except OSError:  # worker restarting, or its /metrics slow under load
                self.failed_scrapes += 1
            self._halt.wait(max(0.0, self.every - (time.monotonic() - at)))

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)

    def first(self, name: str, test: Callable[[float], bool], after: float) -> float | None:
        """Seconds after `after` of the first sample at or after it where `test(value)` holds."""
        for at, values in self.samples:
            if at >= after and name in values and test(values[name]):
                return at - after
        return None

    def peak(self, name: str, since: float, until: float) -> float:
        return max((v[name] for at, v in self.samples if since <= at <= until and name in v),
                   default=0.0)


def broker_sigkill(stack: FaultStack, tmp: Path, events: int, down_s: float = 5.0,
                   timeout: float = 600) -> FaultResult:
    """The broker's java process SIGKILLed (no clean shutdown: log recovery at restart) while
    the worker works through a backlog, started again through the private stack `down_s` later.
    As in `kafka_restart` the input is produced before the worker starts (60%, its backlog at
    the kill) and after the restart (40%): a producer that loses records while the broker is
    away would count against the pipeline."""
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4, **WORKER_ENV)
    lines = generate_lines(tmp, events, seed=26)
    result = FaultResult("Kafka broker SIGKILL under load", len(lines))
    started = time.monotonic()
    first = len(lines) * 3 // 5
    # the worker starts on a backlog of 60%, so the kill comes while it works through it
    ensure_topics(setup.settings())
    produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines[:first])
    sup = Supervisor(setup, tmp, "brokerkill", 44)
    watch = MetricsWatch(lambda: sup.worker.metrics_port, ("peakend_kafka_up",))
    try:
        deadline = time.monotonic() + 180
        while ch_count(setup) < first // 4 and time.monotonic() < deadline:
            sup()
            time.sleep(0.2)
        at = ch_count(setup)
        watch.start()
        pid = stack.kill9("kafka")
        killed = time.monotonic()
        time.sleep(down_s)
        alive = sup.worker.alive()
        stack.start("kafka")
        back = time.monotonic() - killed
        time.sleep(5)
        sup()
        produce_lines(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines[first:])
        settle(setup, lines, sup, timeout, result)
        watch.stop()
        went_0 = watch.first("peakend_kafka_up", lambda v: v == 0.0, killed)
        up_again = watch.first("peakend_kafka_up", lambda v: v == 1.0, killed + back)
        result.worker_restarts = sup.restarts
        result.detail.update(broker_pid=pid, stored_at_kill=at, broker_back_s=round(back, 1),
                             worker_alive_while_down=alive, kafka_up_0_after_s=went_0,
                             kafka_up_1_after_restart_s=up_again)
        result.notes.append(
            f"kill -9 at {at:,} of {first:,} stored, broker serving again {back:.0f} s later "
            f"({down_s:.0f} s down + start with log recovery); kafka_up=0 "
            + (f"{went_0:.1f} s after the kill" if went_0 is not None else "not seen")
            + f"; worker exits restarted by the supervisor: {sup.restarts} {sup.exit_codes}")
        result.seconds = time.monotonic() - started
        return measure(setup, lines, result)
    finally:
        watch.stop()
        sup.stop()
        stack.start("kafka")


def clickhouse_hang(stack: FaultStack, tmp: Path, events: int, hang_s: float = 45,
                    rate: float = 1000, timeout: float = 600) -> FaultResult:
    """ClickHouse SIGSTOPped for `hang_s` under load, then SIGCONT: a hung server (connections
    accepted by the kernel, nothing answered), not a stopped one. The sink must count it down
    (`peakend_clickhouse_up` 0) within ~15 s (docs/reliability.md, Timeouts)."""
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4,
                         **{**PURGE_DURING_OUTAGES, **WORKER_ENV})
    lines = generate_lines(tmp, events, seed=27)
    result = FaultResult(f"ClickHouse SIGSTOP {hang_s:.0f} s under load", len(lines))
    started = time.monotonic()
    sup = Supervisor(setup, tmp, "chhang", 46)
    producer = BackgroundProducer(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, rate)
    names = ("peakend_clickhouse_up", "peakend_sink_insert_failures_total",
             "peakend_sink_insert_in_flight_seconds", "peakend_sink_oldest_pending_seconds")
    watch = MetricsWatch(lambda: sup.worker.metrics_port, names)
    producer.start()
    stopped = False
    try:
        deadline = time.monotonic() + 180
        while ch_count(setup) < len(lines) // 5 and time.monotonic() < deadline:
            sup()
            time.sleep(0.2)
        at = ch_count(setup)
        watch.start()
        time.sleep(1.5)  # a sample or more from before the hang
        pid = stack.signal("clickhouse", signal.SIGSTOP)
        stopped, hung_at = True, time.monotonic()
        alive = True
        while time.monotonic() - hung_at < hang_s:
            time.sleep(0.5)
            alive = alive and sup.worker.alive()
        stack.signal("clickhouse", signal.SIGCONT)
        stopped, resumed_at = False, time.monotonic()
        sent_during = producer.sent
        producer.join()
        settle(setup, lines, sup, timeout, result)
        watch.stop()
        failures_before = watch.peak("peakend_sink_insert_failures_total", 0, hung_at)
        went_0 = watch.first("peakend_clickhouse_up", lambda v: v == 0.0, hung_at)
        up_again = watch.first("peakend_clickhouse_up", lambda v: v == 1.0, resumed_at)
        result.detail.update(
            clickhouse_pid=pid, stored_at_stop=at, clickhouse_up_0_after_s=went_0,
            clickhouse_up_1_after_sigcont_s=up_again,
            insert_failures=watch.peak("peakend_sink_insert_failures_total", hung_at,
                                       resumed_at) - failures_before,
            in_flight_max_s=watch.peak("peakend_sink_insert_in_flight_seconds", hung_at,
                                       resumed_at),
            oldest_pending_max_s=watch.peak("peakend_sink_oldest_pending_seconds", hung_at,
                                            time.monotonic()),
            worker_alive_during_hang=alive, sent_by_sigcont=sent_during,
            scrapes=len(watch.samples), failed_scrapes=watch.failed_scrapes)
        d = result.detail
        result.worker_restarts = sup.restarts
        result.notes.append(
            "clickhouse_up=0 " + (f"{went_0:.1f} s after SIGSTOP" if went_0 is not None
                                  else "never seen")
            + f"; longest insert in flight {d['in_flight_max_s']:.1f} s; insert failures "
            f"{d['insert_failures']:.0f}; up=1 again "
            + (f"{up_again:.1f} s after SIGCONT" if up_again is not None else "not seen")
            + f"; worker up throughout: {alive}; worker exits: {sup.restarts} {sup.exit_codes}")
        result.seconds = time.monotonic() - started
        return measure(setup, lines, result)
    finally:
        if stopped:
            stack.signal("clickhouse", signal.SIGCONT)
        watch.stop()
        sup.stop()


class GroupLag:
    """The worker's consumer groups' committed offsets (KafkaAdminClient.list_group_offsets,
    kafka-python 3's name for list_consumer_group_offsets) against the end offsets of the topics
    they read, read from outside the groups: the entry stage's group on touchpoints, the Faust
    groups on the internal journey-events and contributions topics (stage one's, and stage
    two's when it runs apart: `consumer_groups` says which reads which)."""

    def __init__(self, setup: StreamSetup) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        from pipeline.stream.lag import consumer_groups
        from pipeline.stream.stage_two import stage_two_group
        from pipeline.stream.topics import contributions_topic, journey_events_topic
        settings = setup.settings()
        bootstrap = setup.env["PEAKEND_KAFKA_BOOTSTRAP"]
        self.group = settings.app_id
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        self.touchpoints = [TopicPartition(setup.topic, p) for p in range(setup.partitions)]
        self.groups = {f"{settings.app_id}-entry": self.touchpoints}
        internal = []
        reads = consumer_groups(settings)
        for group in (self.group, stage_two_group(settings)):
            for topic in reads.get(group, []):
                if topic in (journey_events_topic(settings), contributions_topic(settings)):
                    parts = self.consumer.partitions_for_topic(topic) or set()
                    tps = [TopicPartition(topic, p) for p in sorted(parts)]
                    self.groups.setdefault(group, []).extend(tps)
                    internal += tps
        self.tps = self.touchpoints + internal
        # What a killed worker holds until the broker expires its session: stage one's
        # partitions (its entry child leaves the entry group at once, as it exits with it).
        self.stage_one = [tp for tp in self.groups.get(self.group, [])
                          if tp.topic == journey_events_topic(settings)]

    def members(self) -> int:
        """Members of the Faust group once it is stable (0 while it rebalances)."""
        group = self.admin.describe_groups([self.group])[self.group]
        return len(group["members"]) if group["group_state"] == "Stable" else 0

    def sample(self) -> tuple[dict[Any, int], dict[Any, int]]:
        done: dict[Any, int] = {}
        for group, tps in self.groups.items():
            committed = dict(self.admin.list_group_offsets(group).get(group, {}))
            done.update({tp: max(0, committed[tp].offset) if tp in committed else 0
                         for tp in tps})
        ends = self.consumer.end_offsets(self.tps)
        return done, dict(ends)

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def takeover(stack: FaultStack, tmp: Path, events: int, rate: float = 400,
             timeout: float = 600) -> FaultResult:
    """Two workers share the partitions; one is SIGKILLed while records arrive at `rate`/s; the
    other takes its partitions once the broker expires the dead member's session (20 s, set
    by the worker). Group lag (GroupLag) every second after the kill: when the taken partitions
    (stage one's, on `<app>-journey-events`: the killed worker's entry child leaves its group
    at once, so the touchpoints, which this read until 2026-12-06, never froze) move again,
    when lag reaches 0 after the last record, and the longest 1-per-second crawl
    (tests/support/stream.crawl_seconds, the signature of issue 14)."""
    from tests.support.stream import crawl_seconds

    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=4, **WORKER_ENV)
    ensure_topics(setup.settings())  # before the workers: neither races the other to create
    lines = generate_lines(tmp, events, seed=28)
    result = FaultResult("takeover: 1 of 2 workers SIGKILLed under load", len(lines))
    started = time.monotonic()
    sup = Supervisor(setup, tmp, "survivor", 47)
    victim: Worker | None = None
    group = GroupLag(setup)
    producer = BackgroundProducer(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, lines, rate)
    try:
        deadline = time.monotonic() + 180
        while group.members() != 1 and time.monotonic() < deadline:
            sup()
            time.sleep(1)
        victim = Worker(setup, tmp, "victim", 48)
        while group.members() != 2 and time.monotonic() < deadline:
            sup()
            time.sleep(1)
        if group.members() != 2:
            raise RuntimeError(f"the second worker did not join: {victim.log_tail()[-1500:]}")
        producer.start()
        while producer.sent < len(lines) // 3 and producer.is_alive():
            time.sleep(0.2)
        base, _ = group.sample()
        # both workers committed on their partitions before the kill
        while time.monotonic() < deadline:
            now, _ = group.sample()
            if all(now[tp] > base[tp] for tp in group.stage_one):
                break
            time.sleep(0.5)
        victim.kill9()
        killed = time.monotonic()
        # read after the kill: a commit of the victim's that landed between a sample taken
        # before the kill and the kill made its partitions look as if they moved (the 50k run
        # of 2026-11-30 found no frozen partition that way)
        at_kill = {tp.partition: c for tp, c in group.sample()[0].items()
                   if tp in group.stage_one}
        samples: list[tuple[float, dict[int, int], dict[int, int]]] = []
        series: list[tuple[float, int]] = []
        lag_zero: float | None = None
        produced_all: float | None = None
        while time.monotonic() - killed < timeout:
            sup()
            committed, ends = group.sample()
            t = time.monotonic() - killed
            if produced_all is None and not producer.is_alive():
                produced_all = t
            lag = sum(ends[tp] - committed[tp] for tp in group.tps)
            series.append((t, lag))
            samples.append((t, {tp.partition: committed[tp] for tp in group.stage_one},
                            {tp.partition: ends[tp] for tp in group.stage_one}))
            if produced_all is not None and lag == 0:
                lag_zero = t
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - killed - t)))
        if producer.error:
            result.notes.append(f"producer: {producer.error!r}")
        frozen = [p for p, c in at_kill.items()
                  if all(s[1][p] == c for s in samples if s[0] < 20)]
        moved = [t for t, c, _ in samples if any(c[p] != at_kill[p] for p in frozen)]
        taken = moved[0] if moved and frozen else None
        crawl = crawl_seconds(samples) if samples else 0.0
        settle(setup, lines, sup, timeout, result)
        result.worker_restarts = sup.restarts
        backlog = max((lag for t, lag in series if taken is None or t <= taken), default=0)
        result.detail.update(
            frozen_partitions=frozen, taken_after_kill_s=taken, producer_done_after_kill_s=
            produced_all, lag_0_after_kill_s=lag_zero, lag_max=max((x for _, x in series),
                                                                   default=0),
            backlog_at_takeover=backlog, longest_crawl_s=crawl,
            lag_0_after_takeover_or_last_record_s=None if lag_zero is None or taken is None
            else round(lag_zero - max(taken, produced_all or 0.0), 1),
            lag_every_5s=[(round(t), x) for t, x in series[::5]] + [
                (round(series[-1][0]), series[-1][1])] if series else [])
        d = result.detail
        result.notes.append(
            f"partitions {frozen} of the killed worker moved again "
            + (f"{taken:.0f} s after the kill" if taken is not None else "(not seen)")
            + f"; last record sent {produced_all or 0:.0f} s after; group lag (peak "
            f"{d['lag_max']:,}) 0 " + (f"{lag_zero:.0f} s after the kill, "
                       f"{d['lag_0_after_takeover_or_last_record_s']} s after the takeover or "
                       "the last record" if lag_zero is not None else "never")
            + f"; longest 1/s crawl {crawl:.0f} s; survivor exits: {sup.restarts}")
        result.seconds = time.monotonic() - started
        return measure(setup, lines, result)
    finally:
        group.close()
        if victim is not None:
            victim.stop()
        sup.stop()


# -- memory ------------------------------------------------------------------------------------

def rss_mib() -> float:
    try:
        return proc_rss_mib()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_plateau(tmp: Path, events: int = 300_000, days: int = 10, samples: int = 20,
                   env: dict[str, str] | None = None) -> list[dict[str, float]]:
    """Stage one and two in-process over `days` of event time: open journeys, state keys and
    RSS at `samples` points. After the allowed lateness (1 d) closed journeys are evicted, so
    the tracker and the state stop growing although events keep coming. Stage two keeps the
    buckets of the alert baseline (default 7 d) plus the window: its state plateaus after that
    (`env` overrides settings, e.g. a shorter PEAKEND_ALERT_BASELINE_SECONDS)."""
    from pipeline.settings import Settings
    from pipeline.stream.partition import PartitionProcessor
    from pipeline.stream.segments import SegmentStage

    settings = Settings.from_env(env or {})
    core = settings.core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    lines = generate_lines(tmp, events, seed=25, span=f"{days}d", late_fraction=0.01)
    stage_one = PartitionProcessor(0, core, rules)
    stage_two = SegmentStage(core)
    one_keys: set[str] = set()
    two_keys: set[str] = set()
    out: list[dict[str, float]] = []
    every = max(1, len(lines) // samples)
    first_ms: int | None = None
    pending: list[dict[str, Any]] = []
    for i, line in enumerate(lines, start=1):
        try:
            event = parse_event(line)
        except Rejected:
            continue
        result = stage_one.process(event)
        pending.extend(message for _, message in result.contributions)
        if result.watermark is not None:
            from pipeline.stream import messages
            pending.append(messages.watermark(0, result.watermark))
        if len(pending) >= 1000 or i % every == 0:
            stage_two.process_batch(pending)
            pending = []
            for key, state in stage_two.dirty_state():
                (two_keys.discard if state is None else two_keys.add)(key)
            # members of evicted buckets: forgotten by time, no removal written (the table's
            # journal stops carrying them: they are not state the worker holds)
            two_keys.difference_update(stage_two.drain_forgotten())
        if i % 1000 == 0 or i % every == 0:
            for key, state in stage_one.dirty_state():
                (one_keys.discard if state is None else one_keys.add)(key)
        ms = int(event.occurred_at.timestamp() * 1000)
        first_ms = ms if first_ms is None else first_ms
        if i % every == 0:
            out.append({"events": i, "event_hours": (ms - first_ms) / 3_600_000,
                        "open_journeys": len(stage_one.tracker),
                        "stage_one_keys": len(one_keys), "stage_two_keys": len(two_keys),
                        "rss_mib": rss_mib()})
    return out




def generate_file(path: Path, events: int, span: str, seed: int = 25,
                  start: str = "2026-10-01T00:00:00Z") -> Path:
    """`peakend generate` (default persona mix) to a JSONL file, once: an existing file is kept.

    Events must be in the past: the worker dead-letters an event further ahead of the time it
    reads it than `PEAKEND_MAX_CLOCK_SKEW_SECONDS` (`future`). `start` is kept while its span
    ends a day before today; a longer span starts earlier, so it ends then (a 100-day run from
    2026-10-01 on 2026-12-05 had its last 35 days dead-lettered, which looked like a stalled
    worker)."""
    start = span_start(start, span, datetime.now(UTC))
    if not path.exists():
        part = path.with_suffix(".part")
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "generate", "--events", str(events), "--seed",
             str(seed), "--span", span, "--start", start, "--output", str(part), "--quiet"],
            cwd=ROOT, check=True,
        )
        part.rename(path)
    return path


def span_start(start: str, span: str, now: datetime) -> str:
    """`start`, or the day that makes `span` end a day before `now`'s day if `start` would not.

    >>> now, first = datetime(2026, 12, 5, 9, tzinfo=UTC), "2026-10-01T00:00:00Z"
    >>> span_start(first, "30d", now), span_start(first, "100d", now)
    ('2026-10-01T00:00:00Z', '2026-08-26T00:00:00Z')
    """
    latest = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    length = timedelta(milliseconds=parse_span(span))
    if first + length <= latest:
        return start
    return (latest - length).strftime("%Y-%m-%dT%H:%M:%SZ")


def process_rss_mib(pid: int) -> float:
    try:
        return proc_rss_mib(pid)
    except OSError:
        return 0.0


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                out += [int(child), *descendants(int(child))]
    return out


class MemoryWorker(Worker):
    """`peakend worker` run by bench/memory_worker.py: the same process, with a memory report
    every second and the RocksDB options chosen by `options` ('shared' or 'faust')."""

    def __init__(self, setup: StreamSetup, tmp: Path, options: str, trace: bool = False
                 ) -> None:
        from tests.support.stream import free_ports
        self.log_path = tmp / f"worker-{options}.log"
        self.report = tmp / f"memory-{options}.jsonl"
        self.metrics_port, web_port = free_ports(2)
        env = {**os.environ, **setup.env, "PEAKEND_DATA_DIR": str(tmp / f"state-{options}"),
               "PEAKEND_METRICS_PORT": str(self.metrics_port),
               "PEAKEND_WEB_PORT": str(web_port)}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.memory_worker", "--report", str(self.report), "--options",
             options, *(["--tracemalloc"] if trace else []), "--", "--loglevel", "warn"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def last_report(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return dict(json.loads(self.report.read_text().splitlines()[-1]))
        return {}


def labelled(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s series (as `scrape` returns them) that carry every label given."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(v for k, v in metrics.items()
               if k.partition("{")[0] == name and all(w in k for w in wanted))


def valid_events(input_path: Path, limit: int, max_event_bytes: int) -> int:
    """How many of the first `limit` lines of `input_path` (all when 0) the entry stage routes
    to stage one: the ones `parse_event` accepts, as `Router.route` decides."""
    valid = 0
    with input_path.open("rb") as f:
        for i, line in enumerate(f):
            if limit and i >= limit:
                break
            with contextlib.suppress(Rejected):
                parse_event(line.rstrip(b"\n"), max_bytes=max_event_bytes)
                valid += 1
    return valid


# Stage one's progress: touchpoint events whose state the journeys agent wrote
# (pipeline/stream/agent_loop.py, `AppliedCounter`), not what the entry stage has read.
APPLIED = "peakend_stage_records_applied_total"
TRIMS = "peakend_heap_trims_total"


def worker_memory(stack: FaultStack, tmp: Path, input_path: Path, options: str,
                  every: int = 50_000, partitions: int = 12, trace: bool = False,
                  limit: int = 0, timeout: float = 7200,
                  env: dict[str, str] | None = None, settle_s: float = 60,
                  rate: float = 0) -> dict[str, Any]:
    """The real worker (`peakend worker`, `partitions` partitions: 2 x that many RocksDB databases)
    reads every line of `input_path` (the first `limit` when given) while a producer sends them
    (at about `rate` lines/s; 0: as fast as it can). Every `every` events *stage one has
    applied* (`peakend_stage_records_applied_total{stage="journeys",record="event"}`; the entry
    stage reads far ahead of it): the worker's RSS, its RocksDB memtables and cache, glibc's
    heap, the sink child's RSS and the worker's open journeys (/metrics). The run lasts until
    stage one has applied every valid event of the input (`valid_events`); then, once no stage's
    applied count has moved for 3 s (at most `settle_s`), a last sample marked `settled`. `env`:
    more settings of the worker. Stage two runs inside the worker's process here
    (`PEAKEND_STAGE_TWO_PROCESS=false` unless `env` says otherwise), so that every stage's
    state is in the one process measured: the samples read its RocksDB and glibc figures."""
    setup = stream_setup(tmp, stack.bootstrap, stack.urls, partitions=partitions,
                         **{"PEAKEND_STAGE_TWO_PROCESS": "false", **(env or {})})
    total = sum(1 for _ in input_path.open("rb"))
    total = min(total, limit) if limit else total
    valid = valid_events(input_path, total, setup.settings().max_event_bytes)
    hours_at: dict[int, float] = {}
    first_ms: list[int] = []

    def lines() -> Any:
        with input_path.open("rb") as f:
            for i, line in enumerate(f):
                if i >= total:
                    return
                if i == 0 or (i + 1) % 1000 == 0:
                    ms = int(datetime.fromisoformat(
                        json.loads(line)["occurred_at"].replace("Z", "+00:00")
                    ).timestamp() * 1000)
                    first_ms[:] = first_ms or [ms]
                    hours_at[i + 1] = (ms - first_ms[0]) / 3_600_000
                yield line.rstrip(b"\n")

    worker = MemoryWorker(setup, tmp, options, trace)
    producer = BackgroundProducer(setup.env["PEAKEND_KAFKA_BOOTSTRAP"], setup.topic, [], rate)
    producer.lines = lines()
    started = time.monotonic()
    producer.start()
    samples: list[dict[str, Any]] = []
    run: dict[str, Any] = {"options": options, "events": total, "valid": valid,
                           "partitions": partitions, "samples": samples, "notes": []}

    def sample(metrics: dict[str, float], applied: float, settled: bool = False) -> None:
        report = worker.last_report()
        sink = sum(process_rss_mib(p) for p in descendants(worker.proc.pid))
        # event time of the line nearest to the count applied (valid lines: nearly the same)
        near = min(hours_at, key=lambda i: abs(i - applied)) if hours_at else 0
        samples.append({
            "events": int(applied), "read": int(_sum(metrics, "peakend_events_in_total")),
            "settled": settled, "event_hours": hours_at.get(near, 0.0),
            "seconds": time.monotonic() - started,
            "open_journeys": metrics.get("peakend_journeys_open", 0.0),
            "applied_by_stage": {stage: labelled(metrics, APPLIED, stage=stage) for stage in
                                 ("journeys", "segments", "followups", "claims")},
            "rss_mib": process_rss_mib(worker.proc.pid), "sink_rss_mib": sink,
            **{k: v / 2**20 if isinstance(v, int) and k.startswith(("m", "r")) else v
               for k, v in report.items() if k not in {"t", "rss"}},
        })
        print(f"    {options}: {samples[-1]['events']:,} events applied "
              f"({samples[-1]['read']:,} read){', settled' if settled else ''}, "
              f"RSS {samples[-1]['rss_mib']:.0f} MiB", flush=True)

    target = every
    applied = 0.0
    try:
        while time.monotonic() - started < timeout:
            if not worker.alive():
                run["notes"].append(f"worker exited {worker.proc.returncode}: "
                                    f"{worker.log_tail()[-500:]}")
                break
            try:
                metrics = scrape(worker.metrics_port)
            except OSError:
                time.sleep(1)
                continue
            applied = labelled(metrics, APPLIED, stage="journeys", record="event")
            if applied >= target or applied >= valid:
                sample(metrics, applied)
                while target <= applied:
                    target += every
            if applied >= valid:
                break
            time.sleep(1)
        else:
            run["notes"].append(f"timed out at {applied:,.0f} of {valid:,} valid events "
                                f"applied by stage one")
        if applied >= valid:
            # the later stages finish what stage one sent them: wait until no count moves
            quiet, since, last = 0, time.monotonic(), -1.0
            while quiet < 3 and time.monotonic() - since < settle_s and worker.alive():
                time.sleep(1)
                with contextlib.suppress(OSError):
                    metrics = scrape(worker.metrics_port)
                    now = _sum(metrics, APPLIED)
                    quiet = quiet + 1 if now == last else 0
                    last = now
            if quiet < 3:
                run["notes"].append(f"the stages did not settle within {settle_s:.0f} s")
            else:
                # the settled sample after the worker's next heap trim (pipeline/stream/heap.py):
                # RSS then shows what the worker holds, not glibc's free pages of a last burst
                trims = _sum(metrics, TRIMS)
                since = time.monotonic()
                while (_sum(metrics, TRIMS) <= trims and worker.alive()
                       and time.monotonic() - since < heap.TRIM_SECONDS + 15):
                    time.sleep(1)
                    with contextlib.suppress(OSError):
                        metrics = scrape(worker.metrics_port)
                if _sum(metrics, TRIMS) <= trims:
                    run["notes"].append("no heap trim within "
                                        f"{heap.TRIM_SECONDS + 15:.0f} s of settling")
                time.sleep(1.1)  # a memory report written after the last batch
                sample(metrics, labelled(metrics, APPLIED, stage="journeys", record="event"),
                       settled=True)
        if producer.error:
            run["notes"].append(f"producer: {producer.error!r}")
        run["seconds"] = time.monotonic() - started
        return run
    finally:
        worker.stop()


def memory_table(runs: list[dict[str, Any]]) -> str:
    """One row per sample of the first run (its RocksDB, glibc heap, Python blocks and sink
    child), with the other runs' RSS and memtables at the same point."""
    head = runs[0]
    name = head["options"]
    cols = ["events applied by stage one", "read by the entry stage", "event time (h)",
            "open journeys", f"worker RSS {name} (MiB)",
            "memtables (MiB)", "RocksDB cache (MiB)", "glibc heap in use / free (MiB)",
            "Python blocks (k)", "sink RSS (MiB)"]
    for r in runs[1:]:
        cols += [f"worker RSS {r['options']} (MiB)", f"memtables {r['options']} (MiB)",
                 f"RSS {r['options']} / {name}"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i, s in enumerate(head["samples"]):
        row = [f"{s['events']:,}{' (settled)' if s.get('settled') else ''}",
               f"{s.get('read', 0):,}", f"{s['event_hours']:.0f}", f"{s['open_journeys']:,.0f}",
               f"{s['rss_mib']:.0f}", f"{s.get('memtables', 0):.1f}",
               f"{s.get('rocksdb_cache', 0):.1f}",
               f"{s.get('malloc_in_use', 0):.0f} / {s.get('malloc_free', 0):.0f}",
               f"{s.get('python_blocks', 0) / 1000:,.0f}", f"{s['sink_rss_mib']:.0f}"]
        for r in runs[1:]:
            o = r["samples"][i] if i < len(r["samples"]) else None
            row += (["-", "-", "-"] if o is None else
                    [f"{o['rss_mib']:.0f}", f"{o.get('memtables', 0):.1f}",
                     f"{o['rss_mib'] / s['rss_mib']:.2f}"])
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- main --------------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores (nproc), {cpu}, Python {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def event_span(text: str) -> str:
    """`--kill-span`: a span `peakend generate --span` takes (`parse_span`), checked when the
    arguments are read (not by a scenario's generator, minutes into a run)."""
    from jobs.generate import parse_span

    try:
        parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def writable_dir(text: str) -> Path:
    """`--keep-failed`: a directory made now and written to later, checked when the arguments
    are read (not when a failing run, minutes in, first writes there)."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".peakend-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a writable directory: "
                                         f"{exc.strerror or exc}") from None
    return path


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argument type: a finite number above 0 of `kind`, else argparse's one-line error."""
    def read(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
        return value
    return read


# Settings every worker of the kill, outage, restart, takeover and poison runs gets
# (`--worker-env`): their stream setups carry them, so the harness's own readers (the lag it
# waits on) see the same configuration as the workers.
WORKER_ENV: dict[str, str] = {}


def worker_variable(text: str) -> tuple[str, str]:
    """`--worker-env`: PEAKEND_NAME=VALUE, the value checked as the worker would check it;
    else argparse's one-line error."""
    from pipeline.settings import Settings, SettingsError

    name, equals, value = text.partition("=")
    if not equals or not name.startswith("PEAKEND_"):
        raise argparse.ArgumentTypeError(f"must be PEAKEND_NAME=VALUE, not {text!r}")
    try:
        Settings.from_env({name: value})
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000,
                        help="events per kill/outage/restart scenario (default 50000)")
    parser.add_argument("--kill-span", default="6h", type=event_span,
                        help="event time the SIGKILL scenario's events span (default 6h; "
                        "several days make the worker forget state past the lateness between "
                        "its kills)")
    parser.add_argument("--kill-rate", type=positive(float), default=1500,
                        help="events/s the SIGKILL scenario sends (1200 with 8,000 events over "
                        "3d: the integration test's setting)")
    parser.add_argument("--repeat", type=positive(int), default=1,
                        help="run each chosen scenario this many times (rare differences)")
    parser.add_argument("--poison-events", type=int, default=100_000)
    parser.add_argument("--memory-events", type=int, default=300_000)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and a 15 s ClickHouse outage")
    parser.add_argument("--only", default="", help="comma-separated: kill,clickhouse,"
                        "clickhouse-hang,kafka,broker-kill,takeover,poison,memory")
    parser.add_argument("--hang-s", type=float, default=45,
                        help="seconds ClickHouse stays SIGSTOPped (default 45)")
    parser.add_argument("--broker-down-s", type=float, default=5,
                        help="seconds between the broker's SIGKILL and its restart (default 5)")
    parser.add_argument("--stack-dir", default="",
                        help="the private stack's directory (default .stack/faults)")
    parser.add_argument("--port-offset", type=int, default=None,
                        help="added to the private stack's ports (default 0: 29092/29000)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--keep-failed", default=None, metavar="DIR", type=writable_dir,
                        help="SIGKILL runs whose results differ from replay, or whose worker "
                        "exited unplanned: keep every topic and the worker log in DIR/<tag>/")
    parser.add_argument("--memory-worker", action="store_true",
                        help="the memory run on the real worker process (with --only memory: "
                        "instead of the in-process stages)")
    parser.add_argument("--memory-input", default="",
                        help="JSONL input of the worker memory run (generated there once when "
                        "missing: --memory-worker-events over --memory-span)")
    parser.add_argument("--memory-worker-events", type=int, default=1_000_000)
    parser.add_argument("--memory-span", default="30d")
    parser.add_argument("--memory-every", type=int, default=50_000,
                        help="sample every N events read (default 50000)")
    parser.add_argument("--memory-options", default="shared,faust",
                        help="RocksDB options to run, in order: shared (the worker's), faust "
                        "(Faust's defaults, the worker before issue 14)")
    parser.add_argument("--memory-partitions", type=int, default=12)
    parser.add_argument("--memory-compare-events", type=int, default=0,
                        help="the runs after the first read only the first N events")
    parser.add_argument("--worker-env", action="append", default=[], type=worker_variable,
                        metavar="PEAKEND_NAME=VALUE",
                        help="a setting for every worker of the fault runs (repeatable), e.g. "
                        "PEAKEND_STAGE_TWO_PROCESS=true")
    parser.add_argument("--memory-tracemalloc", action="store_true",
                        help="trace Python allocations in the worker (slower)")
    args = parser.parse_args(argv)
    WORKER_ENV.update(args.worker_env)
    if args.quick:
        args.events, args.poison_events, args.memory_events = 8_000, 20_000, 60_000
    only = set(filter(None, args.only.split(","))) or {
        "kill", "clickhouse", "clickhouse-hang", "kafka", "broker-kill", "takeover", "poison",
        "memory"}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"peakend-faults-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           text=True, capture_output=True, check=False).stdout.strip()
    print(f"git {commit}{' (uncommitted changes)' if dirty else ''}, load {load()}", flush=True)
    stack = FaultStack(Path(args.stack_dir) if args.stack_dir else None, args.port_offset)
    print(f"private stack: {stack.directory}, Kafka {stack.env['PEAKEND_KAFKA_PORT']}, "
          f"ClickHouse {stack.env['PEAKEND_CLICKHOUSE_TCP_PORT']}", flush=True)
    stack.start()
    results: list[FaultResult] = []
    memory_runs: list[dict[str, Any]] = []
    try:
        plan: list[tuple[str, Callable[[Path], FaultResult]]] = [
            ("kill", lambda root: sigkill_under_load(stack, root / "kill", args.events,
                                                     rate=args.kill_rate, span=args.kill_span,
                                                     keep=args.keep_failed)),
            ("clickhouse", lambda root: clickhouse_outage(stack, root / "ch", args.events,
                                                          outage_s=15 if args.quick else 60)),
            ("clickhouse-hang", lambda root: clickhouse_hang(stack, root / "chhang", args.events,
                                                             hang_s=args.hang_s)),
            ("kafka", lambda root: kafka_restart(stack, root / "kafka", args.events)),
            ("broker-kill", lambda root: broker_sigkill(stack, root / "brokerkill", args.events,
                                                        down_s=args.broker_down_s)),
            ("takeover", lambda root: takeover(stack, root / "takeover", args.events)),
            ("poison", lambda root: poison_input(
                stack, root / "poison-safe", args.poison_events,
                kinds=tuple(k for k in POISON_KINDS if k not in {"deep_nesting", "huge"}),
                label="poison 10% (no deep nesting, no huge)")),
            ("poison", lambda root: poison_input(stack, root / "poison-all",
                                                 args.poison_events,
                                                 label="poison 10% (all kinds)")),
        ]
        # every run in a directory of its own: a worker's state directory is never reused
        runs = [(name, scenario, tmp if args.repeat == 1 else tmp / f"run-{i}")
                for i in range(args.repeat) for name, scenario in plan if name in only]
        for name, scenario, root in runs:
            for sub in (name, "kill", "ch", "chhang", "kafka", "brokerkill", "takeover",
                        "poison-safe", "poison-all"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            try:
                r = scenario(root)
            except Exception as exc:  # keep going: one broken scenario must not hide others
                r = FaultResult(name, 0, notes=[f"scenario failed: {exc!r}"[:300]], lost=-1)
            results.append(r)
            print(HEADER if len(results) == 1 else "", r.row(), sep="\n" if len(results) == 1
                  else "", flush=True)
            print(f"    load {load()},", json.dumps({k: v for k, v in r.detail.items()
                                                 if k != "log_tail"}, default=str), flush=True)
        if "memory" in only and args.memory_worker:
            (tmp / "memw").mkdir(exist_ok=True)
            source = generate_file(
                Path(args.memory_input) if args.memory_input
                else tmp / "memw" / "events.jsonl", args.memory_worker_events, args.memory_span)
            print(f"memory run on the real worker: {source}, load {load()}", flush=True)
            worker_runs: list[dict[str, Any]] = []
            for options in args.memory_options.split(","):
                (tmp / "memw" / options).mkdir(exist_ok=True)
                worker_runs.append(worker_memory(
                    stack, tmp / "memw" / options, source, options, every=args.memory_every,
                    partitions=args.memory_partitions, trace=args.memory_tracemalloc,
                    limit=args.memory_compare_events if worker_runs else 0))
                print(f"  {options}: {worker_runs[-1]['seconds']:.0f} s, load {load()}, notes "
                      f"{worker_runs[-1]['notes']}", flush=True)
            print()
            print(memory_table(worker_runs))
            memory_runs.extend(worker_runs)
        elif "memory" in only:
            (tmp / "mem").mkdir(exist_ok=True)
            plateau = memory_plateau(tmp / "mem", args.memory_events)
            print("\n| events | event time (h) | open journeys | stage-one state keys | "
                  "stage-two state keys | RSS (MiB) |\n|---|---|---|---|---|---|")
            for p in plateau:
                print(f"| {p['events']:,.0f} | {p['event_hours']:.0f} | {p['open_journeys']:,.0f}"
                      f" | {p['stage_one_keys']:,.0f} | {p['stage_two_keys']:,.0f} | "
                      f"{p['rss_mib']:.0f} |")
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps([r.__dict__ for r in results] + memory_runs,
                                                  default=str, indent=1))
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nall lost == 0:", all(r.lost == 0 for r in results))
    return 0 if all(r.lost == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
