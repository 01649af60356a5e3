"""The whole pipeline on the real servers: Kafka -> Faust worker(s) -> ClickHouse.

    .venv/bin/python -m bench.bench_pipeline [--events N] [--workers 1]

Worker processes are started exactly as the integration tests start them
(`tests.support.stream.stream_setup` / `Worker`: `peakend worker` subprocesses with their
own topics, consumer groups, state directory and ClickHouse database).

Throughput (end to end): with the worker(s) started and warmed up (a small batch produced and
`wait_caught_up` returned), N events are produced as fast as kafka-python takes them; the clock
runs from the first send until `pipeline.stream.lag.wait_caught_up` reports every consumer
group (worker: input and contributions; ClickHouse sink: every output topic and the raw events)
at the end of its topics, i.e. the sink has inserted and committed everything. The moment is the
first of the zero readings that `wait_caught_up` then confirms for `settle_s`: its return time
minus `settle_s` (resolution: one poll, 0.25 s, plus the worker's 1 s commit interval and the
sink's 0.5 s batch interval, which delay the offsets that the reading sees).

Latency (produce -> queryable): at an offered rate R, events are sent at a steady pace (send i
is due at t0 + i/R; the sender sleeps when ahead) for D seconds. A sample of events are probes:
the wall time (time.time()) just before `producer.send` is recorded. A reader thread with its own
ClickHouse connection polls every 0.1 s (`SELECT event_id FROM touchpoint_events WHERE event_id
IN probes` and `SELECT journey_id, max(events) FROM journeys WHERE journey_id IN ... GROUP BY
journey_id`). An event is queryable in touchpoint_events when its row is there, and in journeys
when the journey that contains it has a row whose `events` count includes it: the journey id and
the count after the event are computed beforehand by running the stage-one processor
(`PartitionProcessor`, one per Kafka partition, events placed by the Kafka partitioner, customer
ids scrubbed like the worker does) over the same events. Latency = start time of the first poll
that saw it - send time, so each figure is exact to within one poll period plus one query.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import json
import pstats
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.host import (
    loadavg,
    proc_cpu_seconds,
    proc_minor_faults,
    proc_peak_rss_mib,
    stack_servers_cpu_seconds,
)
from bench.load_producer import send_records
from jobs.generate import GeneratorConfig, encode_event, generate_events
from pipeline.contract import Rejected, event_to_dict, parse_event
from pipeline.core.partitioner import partition_for
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings
from pipeline.storage.tables import rows
from pipeline.storage.warehouse import ServerWarehouse
from pipeline.stream import messages
from pipeline.stream.partition import PartitionProcessor, coalesce
from pipeline.stream.segments import SegmentStage
from tests.support.stack import ClickHouseUrls
from tests.support.stream import StreamSetup, Worker, remove_stream_resources, stream_setup

ROOT = Path(__file__).resolve().parents[1]

# `bench/worker_ab.py` runs this file inside older versions too: the consumer-lag module was
# `pipeline.stream.progress` before it was renamed
try:
    _lag = importlib.import_module("pipeline.stream.lag")
except ModuleNotFoundError:
    _lag = importlib.import_module("pipeline.stream.progress")
wait_caught_up = _lag.wait_caught_up

MINUTE = 60_000


# -- events --------------------------------------------------------------------------------

@dataclass
class Phase:
    """Pre-encoded events of one measurement, keyed like the producer library."""

    keys: list[bytes | None]
    values: list[bytes]
    end_ms: int  # largest event time: the next phase starts after it (no late events)
    start_ms: int = 0  # where its event time starts

    def __len__(self) -> int:
        return len(self.values)


class EventSource:
    """Consecutive phases of generated events; each phase has its own id prefix and starts after
    the previous one in event time, so later phases never fall behind the allowed lateness."""

    def __init__(self, start_ms: int = 1_795_000_000_000, events_per_s: float = 200.0) -> None:
        self.next_ms = start_ms
        self.events_per_s = events_per_s
        self.tag = uuid.uuid4().hex[:6]
        self.count = 0

    def phase(self, n: int) -> Phase:
        self.count += 1
        config = GeneratorConfig(
            events=n, seed=self.count, start_ms=self.next_ms,
            span_ms=max(MINUTE, round(n / self.events_per_s * 1000)),
            id_prefix=f"b{self.tag}p{self.count}",
        )
        keys: list[bytes | None] = []
        values: list[bytes] = []
        end = self.next_ms
        for event in generate_events(config):
            value = encode_event(event)
            parsed = parse_event(value)
            end = max(end, parsed.occurred_ms)
            keys.append(parsed.journey_key.encode())
            values.append(value)
        start, self.next_ms = self.next_ms, end + MINUTE
        return Phase(keys, values, end, start)


# -- system facts ----------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    """Live children of a process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(x) for x in handle.read().split()]
    except OSError:
        return []


def child_role(pid: int) -> str:
    """"entry", "sink" or "stage-two": the `peakend` command a child of the worker runs (else its
    pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return str(pid)
    return next((a.decode() for a in args if a in (b"entry", b"sink", b"stage-two")), str(pid))


# -- workers ---------------------------------------------------------------------------------

@dataclass
class Stream:
    setup: StreamSetup
    workers: list[Worker]
    workdir: Path
    sent_until_ms: int = -1  # the latest event time of the phases sent (`begin`)

    def settings(self) -> Settings:
        return self.setup.settings()

    def processes(self) -> list[tuple[int, str]]:
        """(pid, role) of every live worker process ("worker") and of its children ("entry",
        "stage-two", "sink")."""
        found: list[tuple[int, str]] = []
        for w in self.workers:
            if w.alive():
                found.append((w.proc.pid, "worker"))
                found += [(pid, child_role(pid)) for pid in child_pids(w.proc.pid)]
        return found

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds by process role, summed over the workers."""
        return self._summed_by_role(proc_cpu_seconds)

    def faults_by_role(self) -> dict[str, float]:
        """Minor page faults so far by process role, summed over the workers."""
        return self._summed_by_role(proc_minor_faults)

    def _summed_by_role(self, read: Callable[[int], float]) -> dict[str, float]:
        total: dict[str, float] = {}
        for pid, role in self.processes():
            with contextlib.suppress(OSError):
                total[role] = total.get(role, 0.0) + read(pid)
        return total

    def peak_rss_mib_by_role(self) -> dict[str, float]:
        """The largest peak resident set (VmHWM, since start) of the processes of each role."""
        peak: dict[str, float] = {}
        for pid, role in self.processes():
            with contextlib.suppress(OSError):
                peak[role] = max(peak.get(role, 0.0), proc_peak_rss_mib(pid))
        return peak

    def begin(self, phase: Phase) -> None:
        """Take `phase` as the next one sent: it must start after every phase sent before in
        event time. A phase made before the warm-up's (and sent after it) lies behind stream
        time: its events are late, and the run measures that instead (profile_worker did)."""
        if phase.start_ms <= self.sent_until_ms:
            raise ValueError(f"phase starting at {phase.start_ms} ms is behind the events "
                             f"already sent (until {self.sent_until_ms} ms): make each phase "
                             "just before sending it")
        self.sent_until_ms = phase.end_ms

    def check_alive(self) -> None:
        for w in self.workers:
            if not w.alive():
                raise RuntimeError(f"worker died:\n{w.log_tail()}")


@contextlib.contextmanager
def running_stream(kafka: str, ch: ClickHouseUrls, *, workers: int = 1, partitions: int = 4,
                   **extra: str) -> Iterator[Stream]:
    """Fresh topics and database, `workers` worker processes; torn down afterwards (the
    topics deleted and the database dropped: `remove_stream_resources`)."""
    workdir = Path(tempfile.mkdtemp(prefix="peakend-bench-pipeline-"))
    setup = stream_setup(workdir, kafka, ch, partitions=partitions, **extra)
    procs = []
    try:
        for i in range(workers):
            procs.append(Worker(setup, workdir, f"w{i}", i))  # free ports chosen by Worker
        yield Stream(setup, procs, workdir)
    finally:
        for w in procs:
            w.stop()
        for problem in remove_stream_resources():
            print(f"cleanup: {problem}", file=sys.stderr)


def produce(bootstrap: str, topic: str, phase: Phase) -> float:
    """Everything as fast as possible; seconds until acknowledged (`bench.load_producer`)."""
    return send_records(bootstrap, topic, phase.keys, phase.values)


def warm_up(stream: Stream, source: EventSource, n: int = 500, timeout: float = 180) -> None:
    """Workers joined, topics and tables created, first batch through: what is timed next is
    steady-state work, not start-up."""
    phase = source.phase(n)
    stream.begin(phase)
    produce(stream.settings().kafka_bootstrap, stream.setup.topic, phase)
    try:
        wait_caught_up(stream.settings(), timeout, settle_s=3.0, poll_s=0.5)
    except TimeoutError:
        stream.check_alive()
        raise
    stream.check_alive()


# -- throughput ------------------------------------------------------------------------------

def topic_records(settings: Settings) -> dict[str, int]:
    """Records in every topic of this run (input, outputs, contributions, changelogs): the
    sum of end offsets, by topic name without the run's tag."""
    from kafka import KafkaConsumer, TopicPartition

    tag = settings.app_id.split("-", 1)[1]
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                             **settings.kafka_client_options())
    try:
        out: dict[str, int] = {}
        for topic in sorted(t for t in consumer.topics() if tag in t):
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            name = topic.replace(settings.app_id + "-", "").replace(f"e2e.{tag}.", "")
            out[name] = sum(consumer.end_offsets(tps).values())
        return out
    finally:
        consumer.close()


def log_notes(stream: Stream) -> dict[str, float]:
    """From the workers' logs: Faust's 'producer buffer full' warnings and the longest
    'Timer commit is overlapping' runtime (a commit waits for every pending send)."""
    full = 0
    longest = 0.0
    for w in stream.workers:
        for line in w.log_path.read_text(errors="replace").splitlines():
            if "producer buffer full" in line:
                full += 1
            elif "Timer commit is overlapping" in line and "runtime=" in line:
                longest = max(longest, float(line.split("runtime=")[1].split(")")[0]))
    return {"buffer_full_warnings": full, "longest_commit_s": longest}


def sink_rows(stream: Stream) -> dict[str, float]:
    """Rows the workers' sinks inserted so far, by table (`peakend_sink_rows_total`, which
    each worker's /metrics relays from its sink)."""
    counts: dict[str, float] = {}
    for w in stream.workers:
        with contextlib.suppress(OSError):
            for (name, labels), value in w.metric_samples().items():
                if name == "peakend_sink_rows_total":
                    table = dict(labels)["table"]
                    counts[table] = counts.get(table, 0.0) + value
    return counts


@dataclass
class Throughput:
    workers: int
    events: int
    seconds: float  # first send -> every stage caught up
    produce_seconds: float
    worker_cpu_seconds: float
    load: str
    records: dict[str, int] = field(default_factory=dict)  # written per topic in the run
    notes: dict[str, float] = field(default_factory=dict)
    # this benchmark process meanwhile: the load generator (kafka-python producing the events)
    # and the lag polling; reported apart from the worker's CPU
    generator_cpu_seconds: float = 0.0
    # the stack's servers meanwhile (the broker, ClickHouse): CPU seconds by server
    server_cpu_seconds: dict[str, float] = field(default_factory=dict)
    # worker_cpu_seconds split by process ("worker", "entry", "stage-two", "sink")
    cpu_seconds_by_role: dict[str, float] = field(default_factory=dict)
    # the largest resident set of each process role, from its start to the run's end (MiB)
    peak_rss_mib_by_role: dict[str, float] = field(default_factory=dict)
    # rows the sinks inserted in the run, by table
    sink_rows: dict[str, float] = field(default_factory=dict)
    # minor page faults of each process role in the run: a page the allocator gave back to the
    # kernel and takes again costs a fault each time (docs/streaming.md, thirty-seventh round)
    faults_by_role: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_per_event_us(self) -> float:
        return self.worker_cpu_seconds / self.events * 1e6

    def cpu_split(self) -> str:
        """The CPU per event by process, e.g. "entry 19 + sink 21 + worker 52 us"."""
        parts = [f"{role} {spent / self.events * 1e6:.0f}"
                 for role, spent in sorted(self.cpu_seconds_by_role.items())]
        return " + ".join(parts) + " us"

    def fault_split(self) -> str:
        """Minor page faults per event by process, e.g. "entry 0.06 + sink 0.19 ... per event"."""
        return " + ".join(f"{role} {n / self.events:.2f}"
                          for role, n in sorted(self.faults_by_role.items())) + " per event"

    def peak_rss(self) -> str:
        """The peak resident set by process, e.g. "entry 120 / sink 95 / worker 310 MiB"."""
        return " / ".join(f"{role} {mib:.0f}"
                          for role, mib in sorted(self.peak_rss_mib_by_role.items())) + " MiB"


def throughput(stream: Stream, phase: Phase, timeout: float = 600, settle_s: float = 3.0
               ) -> Throughput:
    settings = stream.settings()
    stream.begin(phase)
    before = topic_records(settings)
    notes_before = log_notes(stream)
    rows0 = sink_rows(stream)
    cpu0 = stream.cpu_by_role()
    faults0 = stream.faults_by_role()
    servers0 = stack_servers_cpu_seconds()
    generator0 = time.process_time()
    started = time.perf_counter()
    produce_s = produce(settings.kafka_bootstrap, stream.setup.topic, phase)
    wait_caught_up(settings, timeout, settle_s=settle_s, poll_s=0.25)
    seconds = time.perf_counter() - settle_s - started
    by_role = {role: spent - cpu0.get(role, 0.0) for role, spent in stream.cpu_by_role().items()}
    cpu = sum(by_role.values())
    faults = {role: n - faults0.get(role, 0) for role, n in stream.faults_by_role().items()}
    generator = time.process_time() - generator0
    servers = {name: spent - servers0[name] for name, spent in stack_servers_cpu_seconds().items()
               if name in servers0}
    stream.check_alive()
    after = topic_records(settings)
    records = {t: n - before.get(t, 0) for t, n in after.items()}
    notes = log_notes(stream)
    notes["buffer_full_warnings"] -= notes_before["buffer_full_warnings"]
    rows = {table: n - rows0.get(table, 0.0) for table, n in sink_rows(stream).items()}
    return Throughput(len(stream.workers), len(phase), seconds, produce_s, cpu, loadavg(),
                      records, notes, generator, servers, by_role, stream.peak_rss_mib_by_role(),
                      {table: n for table, n in rows.items() if n}, faults)


# -- latency ---------------------------------------------------------------------------------

def journey_probes(phase: Phase, settings: Settings) -> list[tuple[str, int] | None]:
    """For each event: (journey id, events count once it is applied) as ClickHouse will show it,
    from the stage-one processors over the same events; None when it has no journey effect."""
    core = settings.core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    privacy = PersonalData.from_settings(settings)
    procs: dict[int, PartitionProcessor] = {}
    out: list[tuple[str, int] | None] = []
    for key, value in zip(phase.keys, phase.values, strict=True):
        try:
            event = privacy.scrub(parse_event(value, max_bytes=settings.max_event_bytes))
        except Rejected:
            out.append(None)
            continue
        part = partition_for(key.decode() if key else event.journey_key, settings.partitions)
        proc = procs.get(part)
        if proc is None:
            proc = procs[part] = PartitionProcessor(part, core, rules)
        result = proc.process(event)
        mine = [r for r in result.journeys if r.customer_id == event.customer_id
                and r.started_at <= event.occurred_ms <= r.ended_at]
        if result.reject or not mine:
            out.append(None)
            continue
        best = max(mine, key=lambda r: r.events)
        out.append((best.journey_id, best.events))
    return out


@dataclass
class Latency:
    offered: float  # events/s asked for (0: as fast as possible)
    achieved: float  # events/s actually sent
    events: int
    probes: int
    raw: list[float] = field(default_factory=list)  # touchpoint_events
    journey: list[float] = field(default_factory=list)  # journeys
    missing_raw: int = 0
    missing_journey: int = 0
    poll_s: float = 0.0  # mean time between polls
    load: str = ""
    caught_up: bool = True  # the pipeline drained the backlog within the timeout

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]

    def summary(self, which: str) -> tuple[float, float, float, float]:
        values = self.raw if which == "raw" else self.journey
        return (self.pct(values, 50), self.pct(values, 95), self.pct(values, 99),
                max(values) if values else float("nan"))


class Reader(threading.Thread):
    """Polls ClickHouse for the probes (see the module docstring)."""

    def __init__(self, url: str, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.period = period
        self.lock = threading.Lock()
        self.raw_pending: dict[str, float] = {}
        self.journey_pending: dict[tuple[str, int], float] = {}
        self.raw_seen: list[float] = []
        self.journey_seen: list[float] = []
        self.stop_flag = threading.Event()
        self.polls = 0
        self.error: BaseException | None = None

    def probe(self, event_id: str, journey: tuple[str, int] | None, sent: float) -> None:
        with self.lock:
            self.raw_pending[event_id] = sent
            if journey is not None:
                self.journey_pending[journey] = min(sent, self.journey_pending.get(journey, sent))

    def pending(self) -> int:
        with self.lock:
            return len(self.raw_pending) + len(self.journey_pending)

    def run(self) -> None:
        wh = ServerWarehouse(self.url)
        try:
            while not self.stop_flag.is_set():
                began = time.time()
                self.poll(wh, began)
                self.polls += 1
                time.sleep(max(0.0, self.period - (time.time() - began)))
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            wh.close()

    def poll(self, wh: ServerWarehouse, began: float) -> None:
        with self.lock:
            ids = sorted(self.raw_pending, key=self.raw_pending.__getitem__)[:2000]
            journeys: dict[str, list[tuple[int, float]]] = {}
            for (jid, n), sent in self.journey_pending.items():
                journeys.setdefault(jid, []).append((n, sent))
        if ids:
            found = wh.query("SELECT event_id FROM touchpoint_events WHERE event_id IN %(ids)s",
                             {"ids": tuple(ids)})
            with self.lock:
                for (event_id,) in found:
                    if event_id in self.raw_pending:
                        self.raw_seen.append(began - self.raw_pending.pop(event_id))
        if journeys:
            jids = tuple(sorted(journeys)[:2000])
            found = wh.query("SELECT journey_id, max(events) FROM journeys "
                             "WHERE journey_id IN %(ids)s GROUP BY journey_id", {"ids": jids})
            with self.lock:
                for jid, events in found:
                    for n, _ in journeys.get(jid, []):
                        if int(events) >= n and (jid, n) in self.journey_pending:
                            self.journey_seen.append(began - self.journey_pending.pop((jid, n)))


def latency(stream: Stream, phase: Phase, rate: float, *, probes: int = 1500,
            drain_timeout: float = 120) -> Latency:
    """Send `phase` at `rate` events/s (0: flat out) and time probes until queryable."""
    settings = stream.settings()
    stream.begin(phase)
    # a rate above what the workers sustain leaves a backlog: allow ~150 events/s to drain it
    drain_timeout = max(drain_timeout, len(phase) / 150)
    expected = journey_probes(phase, settings)
    every = max(1, len(phase) // probes)
    reader = Reader(stream.setup.writer_url)
    reader.start()
    count = 0

    def probe(i: int) -> None:
        nonlocal count
        if i % every == 0:
            event_id = json.loads(phase.values[i])["event_id"]
            reader.probe(event_id, expected[i], time.time())
            count += 1

    started = time.perf_counter()
    send_records(settings.kafka_bootstrap, stream.setup.topic, phase.keys, phase.values,
                 rate=rate, on_send=probe)
    sent_s = time.perf_counter() - started
    # Until every probe is seen, or the pipeline has caught up (wait_caught_up) and two more
    # seconds of polls found nothing new: what is still missing then never arrives.
    deadline = time.monotonic() + drain_timeout
    while reader.pending() and time.monotonic() < deadline and reader.error is None:
        stream.check_alive()
        if not reader.raw_pending:
            wait_caught_up(settings, drain_timeout, settle_s=1.0, poll_s=0.25)
            time.sleep(2.0)
            break
        time.sleep(0.2)
    reader.stop_flag.set()
    reader.join(timeout=10)
    if reader.error is not None:
        raise RuntimeError(f"reader failed: {reader.error!r}")
    caught_up = True
    try:
        wait_caught_up(settings, drain_timeout, settle_s=1.0, poll_s=0.25)
    except TimeoutError:
        caught_up = False  # reported; the probes still missing are counted as such
    polls_per_s = reader.polls / max(1e-9, time.perf_counter() - started)
    return Latency(
        offered=rate, achieved=len(phase) / sent_s, events=len(phase), probes=count,
        raw=reader.raw_seen, journey=reader.journey_seen,
        missing_raw=len(reader.raw_pending), missing_journey=len(reader.journey_pending),
        poll_s=1 / polls_per_s if polls_per_s else float("nan"), load=loadavg(),
        caught_up=caught_up,
    )


# -- the worker's own work in-process (no Faust, no Kafka, no RocksDB) ----------------------

def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def stage_work(phase: Phase, settings: Settings, batch: int = 1000) -> int:
    """What the worker process does per event outside Faust/aiokafka/RocksDB, in the worker's
    order and batching: stage one (parse, scrub, PartitionProcessor, coalesce, state dicts,
    JSON of the outputs), stage two (SegmentStage over the JSON contributions, state, metric
    JSON) and the sink's own work (re-parse the raw event, rows of every table). Returns the
    number of output messages, to keep the work from being optimised away."""
    core = settings.core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    privacy = PersonalData.from_settings(settings)
    n_parts = settings.partitions
    stage_one: dict[int, PartitionProcessor] = {}
    stage_two: dict[int, SegmentStage] = {}
    state: dict[str, Any] = {}
    produced = 0
    for start in range(0, len(phase), batch):
        keys = phase.keys[start:start + batch]
        values = phase.values[start:start + batch]
        by_partition: dict[int, list[Any]] = {}
        contributions: dict[int, list[bytes]] = {}
        journey_json: list[bytes] = []
        for key, value in zip(keys, values, strict=True):
            part = partition_for(key.decode(), n_parts) if key else 0
            proc = stage_one.get(part)
            if proc is None:
                proc = stage_one[part] = PartitionProcessor(part, core, rules,
                                                            defer_records=True)
            try:
                parsed = privacy.scrub(parse_event(value, max_bytes=settings.max_event_bytes))
            except Rejected:
                continue
            by_partition.setdefault(part, []).append(proc.process(parsed))
        for part, outputs in by_partition.items():
            outputs.append(stage_one[part].drain_journeys())  # as the journeys agent flushes
            for k, s in stage_one[part].dirty_state():
                state[k] = _json({"p": part, "s": s})  # what the table serialises
            out = coalesce(outputs)
            for record in out.journeys:
                journey_json.append(_json(record.to_dict()))
            grouped: dict[str, list[dict[str, Any]]] = {}
            for seg_key, message in out.contributions:
                grouped.setdefault(seg_key, []).append(message)
            for seg_key, items in grouped.items():
                target = partition_for(seg_key, n_parts)
                contributions.setdefault(target, []).append(_json(messages.batch(items)))
            if out.watermark is not None:
                for target in range(n_parts):
                    contributions.setdefault(target, []).append(
                        _json(messages.watermark(part, out.watermark)))
        metric_json: list[bytes] = []
        for part, encoded in contributions.items():
            stage = stage_two.get(part)
            if stage is None:
                stage = stage_two[part] = SegmentStage(core)
            result = stage.process_batch([json.loads(m) for m in encoded])
            for k, s in stage.dirty_state():
                state[k] = _json({"p": part, "s": s})
            for k in stage.drain_forgotten():  # forgotten by time: no removal written
                state.pop(k, None)
            metric_json.extend(_json(r.to_dict()) for r in result.metrics)
        # the sink: raw events re-parsed and scrubbed, every topic's rows built
        raw = []
        for value in values:
            with contextlib.suppress(Rejected):
                raw.append(event_to_dict(privacy.scrub(parse_event(value))))
        rows("touchpoint_events", raw)
        rows("journeys", [json.loads(j) for j in journey_json])
        rows("metric_buckets", [json.loads(m) for m in metric_json])
        produced += len(journey_json) + len(metric_json)
    return produced


@dataclass
class StageRate:
    events: int
    cpu_seconds: float
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.cpu_seconds


def stage_rate(phase: Phase, settings: Settings, *, profile: bool = False,
               top: int = 22) -> StageRate:
    """Events per CPU second of `stage_work` (best of 2), and optionally a cProfile of it."""
    best = float("inf")
    for _ in range(2):
        began = time.process_time()
        stage_work(phase, settings)
        best = min(best, time.process_time() - began)
    text = ""
    if profile:
        prof = cProfile.Profile()
        prof.runcall(stage_work, phase, settings)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        text = _trim_profile(buf.getvalue())
    return StageRate(len(phase), best, text)


def _trim_profile(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    keep = [line.replace(str(ROOT) + "/", "") for line in lines[start:] if line.strip()]
    return "\n".join(keep)


# -- command line ----------------------------------------------------------------------------

def main() -> None:
    from tests.support.stack import stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rates", default="500,2000", help="offered rates for latency")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--span-hours", type=float, default=24.0,
                        help="event time the measured events span (the generator's default mix "
                             "over a day: surveys and metric records as dense as in real use)")
    args = parser.parse_args()
    env = stack_env()
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    source = EventSource(events_per_s=args.events / (args.span_hours * 3600))
    with running_stream(env["PEAKEND_KAFKA_BOOTSTRAP"], ch, workers=args.workers) as stream:
        warm_up(stream, source)
        t = throughput(stream, source.phase(args.events))
        print(f"end to end, {t.workers} worker(s): {t.rate:,.0f} events/s ({t.events:,} in "
              f"{t.seconds:.1f} s; produce {t.produce_seconds:.1f} s; worker CPU "
              f"{t.cpu_per_event_us:.0f} us/event: {t.cpu_split()}; peak RSS {t.peak_rss()}; "
              + "".join(f"{name} {spent / t.events * 1e6:.0f} us/event; "
                        for name, spent in sorted(t.server_cpu_seconds.items()))
              + f"load {t.load})", flush=True)
        per_event = {k: v / t.events for k, v in sorted(t.records.items()) if v}
        print("ClickHouse rows per input event: " + ", ".join(
            f"{table} {n / t.events:.3f}" for table, n in sorted(t.sink_rows.items())),
              flush=True)
        print("Kafka records written per input event: "
              + ", ".join(f"{k} {v:.2f}" for k, v in per_event.items()), flush=True)
        for rate in (float(r) for r in args.rates.split(",")):
            lat = latency(stream, source.phase(int(rate * args.seconds)), rate)
            for which in ("raw", "journey"):
                p50, p95, p99, worst = lat.summary(which)
                print(f"offered {rate:,.0f}/s (sent {lat.achieved:,.0f}/s) {which}: p50 "
                      f"{p50:.2f} s, p95 {p95:.2f} s, p99 {p99:.2f} s, max {worst:.2f} s "
                      f"({lat.probes} probes, missing {lat.missing_raw}/{lat.missing_journey})",
                      flush=True)
    s = stage_rate(source.phase(args.events), Settings.from_env({}))
    print(f"in-process stage work: {s.rate:,.0f} events/CPU-s")


if __name__ == "__main__":
    main()
