"""Every peakend benchmark in one run on this machine, written to docs/benchmarks.md.

    .venv/bin/python -m bench.run_all [--quick] [--output docs/benchmarks.md]

Starts the real servers (scripts/stack.sh start kafka clickhouse) when needed, then measures in
the same run: the raw client limits (bench_raw), contract parse/validate (bench_contract's
events), the core (bench_core's paths), the batch jobs (generate -> Parquet -> backfill), the
pipeline end to end with one and two workers (bench_pipeline: throughput, produce-to-queryable
latency at several offered rates), the worker's own work in-process with a cProfile of it, and a
py-spy profile of a real worker and its children, the entry stage and the sink (where the time
goes, by stage; py-spy is a dev dependency). `--quick` (about 3 minutes) uses small sizes; the
full run takes longer. The load average is recorded next to every figure: other people use the
machine.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import platform
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bench_core, bench_journey_state, bench_raw, peers, spy_summary
from bench import bench_pipeline as bp
from bench.bench_contract import make_event
from bench.host import cpu_model, loadavg
from bench.profile_worker import profiled_throughput
from jobs.backfill import BackfillOptions, run_backfill, worker_count
from jobs.generate import GeneratorConfig, generate_records, write_parquet
from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.settings import Settings
from pipeline.storage.migrate import migrate
from pipeline.storage.warehouse import ServerWarehouse
from tests.support.stack import ClickHouseUrls

ROOT = Path(__file__).resolve().parents[1]

# issue 15's targets (and the backfill's, issue 7)
TARGET_E2E = 10_000  # events/s, Kafka to every ClickHouse table caught up, 1 worker
TARGET_E2E_GOAL = 20_000
TARGET_CPU_US = 80  # worker + sink CPU per event (its entry and sink children included)
TARGET_P99_S = 5.0  # journeys, produce to queryable
TARGET_LATENCY_RATE = 5_000  # offered events/s at which the p99 is judged
TARGET_BACKFILL = 300_000
# The generator's default mix over one day of event time (surveys and metric records as dense
# as in real use: a shorter span packs more events into each one-minute bucket)
EVENT_SPAN_S = 86_400


@dataclass(frozen=True)
class Sizes:
    raw_events: int
    insert_rows: int
    contract_events: int
    core_events: int
    backfill_events: int
    e2e_events: int
    rates: tuple[float, ...]
    latency_seconds: float
    max_latency_events: int
    profile_events: int
    two_workers_rates: tuple[float, ...]
    peer_events: int
    journey_state_events: int
    # Throughput phases of `e2e_events` run on the 1-worker stream after its first day (and
    # its latency phases), each the next day of event time: the last one is the steady state,
    # the state of the days before held and forgotten as the allowed lateness (a day) passes,
    # which a first day on an empty worker never reaches (docs/streaming.md, eighteenth round:
    # 69 -> 104 us of worker CPU per event from the first day to the second)
    later_days: int = 0


QUICK = Sizes(raw_events=50_000, insert_rows=50_000, contract_events=30_000,
              core_events=60_000, backfill_events=30_000, e2e_events=6_000,
              rates=(500, 1000), latency_seconds=4, max_latency_events=0,
              profile_events=5_000, two_workers_rates=(), peer_events=20_000,
              journey_state_events=20_000, later_days=0)
# e2e_events: 200,000 (was 50,000): "caught up" is read from committed offsets (the worker
# commits every second, the check polls every 0.25 s), a tail of up to ~1.3 s that was a fifth
# of a 50,000-event run at 11,000 events/s; the 1-worker runs of one version gave 8,556 and
# 11,037 events/s within the hour (docs/streaming.md, eighth round).
FULL = Sizes(raw_events=300_000, insert_rows=200_000, contract_events=200_000,
             core_events=400_000, backfill_events=200_000, e2e_events=200_000,
             rates=(1000, 2000, TARGET_LATENCY_RATE), latency_seconds=10,
             max_latency_events=10_000, profile_events=30_000, two_workers_rates=(1000,),
             peer_events=100_000, journey_state_events=150_000, later_days=2)


# py-spy's samples per second and thread: enough for a few thousand samples over the profiled
# phase, few enough that the sampling itself stays out of the figures (it reads the process
# from outside, and runs on the same 2 cores).
SPY_RATE = 50


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def load() -> str:
    return loadavg()


# -- machine -------------------------------------------------------------------------------

def machine(admin_url: str) -> dict[str, str]:
    import aiokafka
    import clickhouse_driver
    import faust
    import kafka.version

    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    stack_dir = Path(os.environ.get("PEAKEND_STACK_DIR", ROOT / ".stack"))
    jars = sorted(glob.glob(str(stack_dir / "kafka" / "libs" / "kafka_2.13-*.jar")))
    kafka_version = Path(jars[0]).stem.split("-", 1)[1] if jars else "unknown"
    wh = ServerWarehouse(admin_url)
    try:
        ch_version = str(wh.query("SELECT version()")[0][0])
    finally:
        wh.close()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short", "--", "pipeline", "jobs"], cwd=ROOT,
                           text=True, capture_output=True).stdout.split()[1::2]
    return {
        "code": f"git {head}" + (f" plus uncommitted changes to {', '.join(dirty)}"
                                 if dirty else " (pipeline/ and jobs/ clean)"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kafka": f"Apache Kafka {kafka_version} (KRaft, one broker, local)",
        "clickhouse": f"ClickHouse server {ch_version} (local)",
        "clients": (f"kafka-python {kafka.version.__version__}, aiokafka {aiokafka.__version__}, "
                    f"clickhouse-driver {'.'.join(map(str, clickhouse_driver.VERSION))}, "
                    f"faust-streaming {faust.__version__}"),
        "load_start": load(),
    }


# -- single-core benchmarks (the existing benchmarks' functions) ----------------------------

def contract_rate(n: int, rounds: int = 3) -> dict[str, Any]:
    import random

    rng = random.Random(42)
    start = datetime(2026, 11, 22, tzinfo=UTC)
    records = [json.dumps(make_event(rng, i, start), separators=(",", ":")).encode()
               for i in range(n)]
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        for record in records:
            with contextlib.suppress(Rejected):
                parse_event(record)
        best = max(best, n / (time.perf_counter() - began))
    return {"rate": best, "events": n, "bytes": sum(map(len, records)) / n, "load": load()}


def core_rates(n: int, repeat: int = 2) -> dict[str, Any]:
    config = CoreConfig()
    events = bench_core.generate(n)
    out: dict[str, Any] = {"events": n}
    paths: dict[str, Callable[[list[Any], CoreConfig], int]] = {
        "tracker_buckets_batched": bench_core.run_tracker_and_buckets_batched,
        "engine_batched": bench_core.run_engine_batched,
        "engine": bench_core.run_engine,
    }
    for name, fn in paths.items():
        # replay's and backfill's collector policy, in a forked child (bench_core.measure_forked)
        cpu, _, _ = bench_core.measure_forked(fn, events, config, "state gc policy", repeat)
        out[name] = n / cpu
    out["load"] = load()
    out["mode"] = bench_core.core_mode()
    return out


def backfill_rates(n: int, admin_url: str, partitions: int = 12) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="peakend-bench-backfill-"))
    parquet = work / "events.parquet"
    config = GeneratorConfig(events=n, seed=1, span_ms=round(n / 200 * 1000),
                             invalid_fraction=0.001)
    began = time.perf_counter()
    rows = write_parquet((r for r in generate_records(config, json_only=False)
                          if not isinstance(r, bytes)), parquet)
    gen_s = time.perf_counter() - began
    core = CoreConfig()
    began = time.perf_counter()
    run_backfill([str(parquet)], None, core, BackfillOptions(partitions=partitions))
    core_s = time.perf_counter() - began
    name = f"pe_bench_{uuid.uuid4().hex[:8]}"
    admin = ServerWarehouse(admin_url)
    admin.execute(f"CREATE DATABASE {name}")
    server = ServerWarehouse(f"{admin_url.rsplit('/', 1)[0]}/{name}")
    try:
        migrate(server, cluster="")
        began = time.perf_counter()
        run_backfill([str(parquet)], server, core, BackfillOptions(partitions=partitions))
        server_s = time.perf_counter() - began
    finally:
        server.close()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
    return {"events": rows, "generate": rows / gen_s, "core": rows / core_s,
            "server": rows / server_s, "partitions": partitions, "load": load(),
            "workers": worker_count(None, partitions)}


# -- the pipeline ----------------------------------------------------------------------------

def journey_state_shapes(n: int) -> dict[str, Any]:
    """Stage one's state writes per event in the benchmarks' compressed day and in a live
    stream's batches (`bench/bench_journey_state.py`): what the end-to-end figures leave out."""
    return {"events": n, "shapes": bench_journey_state.shapes(n), "load": load()}


def pipeline_runs(kafka: str, ch: ClickHouseUrls, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {"partitions": 4}
    source = bp.EventSource(events_per_s=sizes.e2e_events / EVENT_SPAN_S)
    log("pipeline, 1 worker: start and warm up")
    with bp.running_stream(kafka, ch, workers=1, partitions=4) as stream:
        bp.warm_up(stream, source)
        log("pipeline, 1 worker: throughput")
        out["t1"] = bp.throughput(stream, source.phase(sizes.e2e_events))
        lat = []
        for rate in sizes.rates:
            log(f"pipeline, 1 worker: latency at {rate:,.0f}/s")
            lat.append(bp.latency(stream, source.phase(int(rate * sizes.latency_seconds)), rate))
        if sizes.max_latency_events:
            log("pipeline, 1 worker: latency flat out")
            lat.append(bp.latency(stream, source.phase(sizes.max_latency_events), 0))
        out["lat1"] = lat
        later = []
        for day in range(sizes.later_days):
            log(f"pipeline, 1 worker: throughput, day {day + 2} of event time")
            later.append(bp.throughput(stream, source.phase(sizes.e2e_events)))
        out["t1_later"] = later
    log("in-process stage work (+ cProfile)")
    phase = source.phase(sizes.e2e_events)
    settings = Settings.from_env({"PEAKEND_PARTITIONS": "4"})
    out["stage"] = bp.stage_rate(phase, settings, profile=True)
    out["stage_load"] = load()
    log("pipeline, 2 workers: start and warm up")
    with bp.running_stream(kafka, ch, workers=2, partitions=4) as stream:
        bp.warm_up(stream, source)
        log("pipeline, 2 workers: throughput")
        out["t2"] = bp.throughput(stream, source.phase(sizes.e2e_events))
        lat = []
        for rate in sizes.two_workers_rates:
            log(f"pipeline, 2 workers: latency at {rate:,.0f}/s")
            lat.append(bp.latency(stream, source.phase(int(rate * sizes.latency_seconds)), rate))
        out["lat2"] = lat
    # The same first day and later days with stage two inside the worker's process
    # (PEAKEND_STAGE_TWO_PROCESS=false, pipeline/stream/stage_two.py), the default until
    # 2026-12-06, as the alternative of record.
    log("pipeline, 1 worker, stage two inside: start and warm up")
    with bp.running_stream(kafka, ch, workers=1, partitions=4,
                           PEAKEND_STAGE_TWO_PROCESS="false") as stream:
        bp.warm_up(stream, source)
        log("pipeline, 1 worker, stage two inside: throughput")
        out["t1_inside"] = bp.throughput(stream, source.phase(sizes.e2e_events))
        inside_later = []
        for day in range(sizes.later_days):
            log(f"pipeline, 1 worker, stage two inside: throughput, day {day + 2} of event time")
            inside_later.append(bp.throughput(stream, source.phase(sizes.e2e_events)))
        out["t1_inside_later"] = inside_later
    log("a real worker and its children under py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="peakend-bench-prof-"))
    with bp.running_stream(kafka, ch, workers=1) as stream:
        bp.warm_up(stream, source)
        out["tprof"], profiles = profiled_throughput(
            stream, source.phase(sizes.profile_events), workdir, SPY_RATE)
    out["profile"] = {name: spy_summary.read(path) for name, path in profiles.items()}
    return out


def steady_note(later: list[bp.Throughput], value: str) -> str:
    """The steady state's figure beside the first day's in a headline cell (`value`: "rate" or
    "cpu"), or nothing when the run had no later days."""
    if not later:
        return ""
    last = later[-1]
    shown = (f"{fmt(last.rate)} events/s" if value == "rate"
             else f"{last.cpu_per_event_us:.0f} us ({last.cpu_split()})")
    return (f"; **steady state** (day {len(later) + 1} of event time on the same worker, the "
            f"days before held and forgotten): {shown}")


def run_labels(t1: bp.Throughput, later: list[bp.Throughput], t2: bp.Throughput,
               inside: list[bp.Throughput] | None = None) -> list[tuple[str, bp.Throughput]]:
    """The end-to-end runs in the report's order, named (`inside`: stage two in the worker's
    process, its first day and later days)."""
    return ([("1 worker, first day", t1)]
            + [(f"1 worker, day {n + 2}", t) for n, t in enumerate(later)]
            + [("2 workers, first day", t2)]
            + [(f"1 worker, stage two inside, {'first day' if n == 0 else f'day {n + 1}'}", t)
               for n, t in enumerate(inside or [])])


def steady_verdict(ok_first: bool, ok_last: bool | None) -> str:
    """The verdict on the first day, and on the steady state when it was measured.

    >>> steady_verdict(True, None), steady_verdict(True, False)
    ('**met**', 'first day **met**; steady state **missed**')
    """
    if ok_last is None:
        return verdict(ok_first)
    return f"first day {verdict(ok_first)}; steady state {verdict(ok_last)}"


# -- report ----------------------------------------------------------------------------------

def interpretation(t1: bp.Throughput, profiles: dict[str, spy_summary.Summary] | None,
                   peer_runs: list[peers.PeerRun]) -> str:
    """What the run's own figures say, in words: written from them, so it cannot go stale."""
    by_peer = {r.peer: r for r in peer_runs}
    lines = ["## Reading the figures", ""]
    worker = (profiles or {}).get("worker")
    if worker is not None:
        lines.append(
            f"- The worker spends {t1.cpu_per_event_us:.0f} us of CPU per event (with its "
            "children, the entry stage and the sink). In the worker's profile, "
            f"{spy_summary.peakend_share(worker):.0%} of the "
            "samples are peakend's own work (validation, the stages, outputs, state writes) "
            "and the rest Faust, aiokafka, RocksDB and the event loops: the framework's "
            "per-record cost is no longer what bounds the worker, its per-event Python is.")
    if "faust" in by_peer and "quix" in by_peer:
        faust, quix = by_peer["faust"], by_peer["quix"]
        lines.append(
            f"- A Faust app doing almost nothing per record costs {faust.cpu_us_per_event:.0f} us "
            f"per event, {faust.cpu_us_per_event / quix.cpu_us_per_event:.1f}x what Quix "
            f"Streams costs for the same job ({quix.cpu_us_per_event:.0f} us): per-record "
            "framework paths are what peakend's batch records (docs/streaming.md) avoid.")
    lines.append(
        f"- The worker's CPU per event against the {TARGET_CPU_US} us budget: "
        f"{t1.cpu_per_event_us / TARGET_CPU_US:.1f}x. Where it goes, by stage and process, "
        "is under \"Where the time goes\" above; what each round of work changed, in "
        "docs/streaming.md.")
    lines.append("")
    return "\n".join(lines)


def fmt(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def write_report(path: Path, m: dict[str, str], quick: bool, raw: dict[str, Any],
                 contract: dict[str, Any], core: dict[str, Any], backfill: dict[str, Any],
                 pipe: dict[str, Any], peer_runs: list[peers.PeerRun],
                 started: float, state: dict[str, Any]) -> None:
    t1: bp.Throughput = pipe["t1"]
    later: list[bp.Throughput] = pipe.get("t1_later", [])
    steady = later[-1] if later else None
    t2: bp.Throughput = pipe["t2"]
    stage: bp.StageRate = pipe["stage"]
    consume = raw["consume"].per_s
    core_rate = core["engine_batched"]
    lats: list[bp.Latency] = pipe["lat1"]
    sustained_ok = [x for x in lats if x.offered and x.achieved >= 0.95 * x.offered
                    and x.summary("journey")[2] < TARGET_P99_S]
    best_ok = max((x.offered for x in sustained_ok), default=0.0)
    worker_rate_cpu = 1e6 / t1.cpu_per_event_us if t1.cpu_per_event_us else float("nan")
    L: list[str] = []
    add = L.append
    add("# Benchmarks")
    add("")
    add(f"Written by `python -m bench.run_all{' --quick' if quick else ''}` on {m['date']} in "
        f"{(time.perf_counter() - started) / 60:.1f} min. Every figure below was measured in "
        "that one run on this machine; the load average (1, 5, 15 min) is given next to "
        "each, because other engineers run tests on the same machine at the same time. "
        + ("This is the quick suite: small sizes, fewer loads, no 2-worker latency, no "
           "flat-out latency run; numbers are noisier than a full run's." if quick else ""))
    add("")
    add("Other measurements, each from its own script: the worker version against version "
        "([benchmarks-worker.md](benchmarks-worker.md), `bench/worker_ab.py`), the claims "
        "stage's cost ([benchmarks-claims.md](benchmarks-claims.md)), key drivers "
        "([benchmarks-drivers.md](benchmarks-drivers.md)), the core "
        "([core.md](core.md), Performance), the fault runs ([reliability.md](reliability.md)).")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    for key, label in (("nproc", "nproc"), ("cpu", "CPU"), ("ram", "RAM"), ("python", "Python"),
                       ("kafka", "Kafka"), ("clickhouse", "ClickHouse"), ("clients", "Clients"),
                       ("date", "Date"), ("code", "Code measured"),
                       ("load_start", "Load average at start")):
        add(f"| {label} | {m[key]} |")
    add("")
    add("Everything shares the 2 cores: the broker (JVM), the ClickHouse server, the worker "
        "process(es), the benchmark's producer and reader, and whatever else runs.")
    add("")
    at_target_rate = [x for x in lats if x.offered == TARGET_LATENCY_RATE]
    latency_ok = bool(at_target_rate) and all(
        x.achieved >= 0.95 * x.offered and x.caught_up
        and x.summary("journey")[2] < TARGET_P99_S for x in at_target_rate)
    p99_at_target = (" / ".join(f"{x.summary('journey')[2]:.1f} s" for x in at_target_rate)
                     or "not measured in this run")
    add("## Headline and targets (issue 15)")
    add("")
    add("| Target | Measured | Verdict |")
    add("|---|---|---|")
    steady_rate_ok = None if steady is None else steady.rate >= TARGET_E2E
    steady_cpu_ok = None if steady is None else steady.cpu_per_event_us <= TARGET_CPU_US
    add(f"| end to end >= {TARGET_E2E:,} events/s, 1 worker (goal {TARGET_E2E_GOAL:,}) | "
        f"first day {fmt(t1.rate)} events/s (load {t1.load})"
        f"{steady_note(later, 'rate')} | "
        f"{steady_verdict(t1.rate >= TARGET_E2E, steady_rate_ok)} |")
    add(f"| worker + sink CPU <= {TARGET_CPU_US} us per event | first day "
        f"{t1.cpu_per_event_us:.0f} us (1 worker); {t2.cpu_per_event_us:.0f} us (2 workers, "
        f"both processes and their sinks){steady_note(later, 'cpu')} | "
        f"{steady_verdict(t1.cpu_per_event_us <= TARGET_CPU_US, steady_cpu_ok)} |")
    add(f"| journeys p99 produce-to-queryable < {TARGET_P99_S:.0f} s at "
        f"{TARGET_LATENCY_RATE:,} events/s offered | {p99_at_target}; highest offered rate "
        f"kept up with p99 < {TARGET_P99_S:.0f} s: {fmt(best_ok)} events/s | "
        f"{verdict(latency_ok)} |")
    add(f"| 2 workers at least as fast as 1 | {fmt(t2.rate)} against {fmt(t1.rate)} events/s "
        f"(x{t2.rate / t1.rate:.2f}) | {verdict(t2.rate >= t1.rate)} |")
    add(f"| backfill >= {TARGET_BACKFILL:,} events/s (issue 7) | {fmt(backfill['core'])} "
        f"events/s through the core, {fmt(backfill['server'])} into the ClickHouse server | "
        f"{verdict(backfill['core'] >= TARGET_BACKFILL)} |")
    add("")
    add(f"Sizing a cluster: one worker process (with its children) spends "
        f"{t1.cpu_per_event_us:.0f} us of CPU per event here, so one core carries at most "
        f"{fmt(1e6 / t1.cpu_per_event_us)} events/s before the broker and ClickHouse take "
        "their share; the load generator's CPU is not in that figure (below).")
    add("")
    add("## Side by side: the same events through the frameworks themselves")
    add("")
    add(f"`bench/peers.py`: {peer_runs[0].events:,}+ events of the generator's default mix over "
        "one day, keyed by journey, 4 partitions. The peers' job is simpler than peakend's "
        "(`json.loads`, a dict per journey in RocksDB-backed state, one output per event: no "
        "validation, no core, no ClickHouse), so their figures are ceilings for a framework, "
        "not competitors' results. Clock: first output to last (start-up left out); CPU: the "
        "app's process over the same window.")
    add("")
    add("| What | events/s | CPU per event | peakend's events/s as a share | load after |")
    add("|---|---:|---:|---:|---|")
    for r in peer_runs:
        add(f"| {r.what} | {fmt(r.per_s)} | {r.cpu_us_per_event:.0f} us | "
            f"{t1.rate / r.per_s:.1%} | {r.load} |")
    add(f"| **peakend** worker end to end (Kafka to every ClickHouse table), 1 worker | "
        f"**{fmt(t1.rate)}** | {t1.cpu_per_event_us:.0f} us (worker + sink) | 100% | "
        f"{t1.load} |")
    add("")
    add("## Raw limits of the clients")
    add("")
    add(f"Realistic schema-v1 events from `jobs.generate` ({raw['produce'].what.rsplit(', ', 1)[1]}"
        "), keyed by journey like the producer library; 4-partition topic. "
        f"Load {raw['load']}.")
    add("")
    add("| What | records/s | MB/s | records | seconds |")
    add("|---|---:|---:|---:|---:|")
    for r in raw.values():
        if not isinstance(r, bench_raw.Rate):
            continue
        add(f"| {r.what} | {fmt(r.per_s)} | {fmt(r.mb_per_s, 1) if r.nbytes else ''} | "
            f"{r.count:,} | {r.seconds:.2f} |")
    add("")
    add("## Single-core stages (the existing benchmarks' code)")
    add("")
    add("| What | events/s | notes | load |")
    add("|---|---:|---|---|")
    add(f"| contract parse + validate (`bench_contract.make_event` mix) | {fmt(contract['rate'])} "
        f"| {contract['events']:,} records, mean {contract['bytes']:.0f} bytes, best of 3, wall "
        f"| {contract['load']} |")
    add(f"| core: tracker + buckets, `apply_many` | {fmt(core['tracker_buckets_batched'])} | "
        f"`bench_core.generate({core['events']:,})`, state gc policy, CPU time, best of 2; core "
        f"{core['mode']} | "
        f"{core['load']} |")
    add(f"| core: full engine, `process_many` (with drop detection) | "
        f"{fmt(core['engine_batched'])} | same | {core['load']} |")
    add(f"| core: full engine, `process` per event | {fmt(core['engine'])} | same | "
        f"{core['load']} |")
    add(f"| generate -> Parquet | {fmt(backfill['generate'])} | {backfill['events']:,} events "
        f"| {backfill['load']} |")
    add(f"| backfill through the core, no writes | {fmt(backfill['core'])} | "
        f"`run_backfill`, {backfill['partitions']} partitions, {backfill['workers']} worker "
        f"processes (the default: one per CPU), wall | {backfill['load']} |")
    add(f"| backfill -> ClickHouse server (five tables) | {fmt(backfill['server'])} | same, "
        f"fresh database | {backfill['load']} |")
    add(f"| worker's own work in-process (no Faust/Kafka/RocksDB) | {fmt(stage.rate)} | "
        f"`bench_pipeline.stage_work`, {stage.events:,} events, CPU time | "
        f"{pipe['stage_load']} |")
    add("")
    add("## Stage one's state writes: the compressed day against a live stream")
    add("")
    add(f"`bench/bench_journey_state.py`: the same {state['events']:,} generated events (the "
        "default mix over one day) through stage one's processors, each batch's changed keys "
        "encoded as the worker writes them; CPU time of `dirty_state` and the encoding, under "
        "the worker's collector policy. The end-to-end runs below send a day of event time in "
        "seconds, so a worker batch (0.2 s) spans about 20 minutes of event time and writes a "
        "customer's key once for many of its events; in a live stream (event time is wall "
        "time) nearly every event's key is written in a batch of its own. The figures below "
        f"are the compressed day's; a live stream pays the second row (load {state['load']}).")
    add("")
    add("| shape | events per batch | state pairs per event | bytes per event | of them closed "
        "sessions | journey entries per event | dirty_state + encoding per event |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    for name, written in state["shapes"]:
        e = written.per_event()
        add(f"| {name} | {e.events_per_batch:,.1f} | {e.pairs:.2f} | {e.bytes:,.0f} | "
            f"{100 * e.closed_share:.0f}% | {e.entries:.1f} | "
            f"{e.dirty_state_us:.1f} + {e.encoding_us:.1f} us |")
    add("")
    add("## The pipeline end to end")
    add("")
    add(f"Kafka -> Faust worker -> ClickHouse, {pipe['partitions']} input partitions, the worker "
        "started like the integration tests start it (`tests/support/stream.py`: own "
        "topics, groups, state directory and database; sink batch interval 0.5 s), warmed up "
        "with 500 events first.")
    add("")
    add("| Run | events | seconds (first send -> all caught up) | events/s | producer "
        "done after | worker + sink CPU per event | of it, by process | peak RSS by process | "
        "load generator CPU per event | broker CPU per event | ClickHouse CPU per event | load |")
    add("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|")
    inside: list[bp.Throughput] = ([pipe["t1_inside"], *pipe.get("t1_inside_later", [])]
                                   if "t1_inside" in pipe else [])
    runs = run_labels(t1, later, t2, inside)

    def server_us(t: Any, name: str) -> str:
        spent = t.server_cpu_seconds.get(name)
        return "n/a" if spent is None else f"{spent / t.events * 1e6:.0f} us"

    for label, t in runs:
        add(f"| {label} | {t.events:,} | {t.seconds:.1f} | **{fmt(t.rate)}** | "
            f"{t.produce_seconds:.1f} s | {t.cpu_per_event_us:.0f} us | {t.cpu_split()} | "
            f"{t.peak_rss()} | {t.generator_cpu_seconds / t.events * 1e6:.0f} us | "
            f"{server_us(t, 'kafka')} | {server_us(t, 'clickhouse')} | {t.load} |")
    add("")
    add("The broker and ClickHouse share the same cores: their CPU per event (from their "
        "processes' /proc times over the same window) is what the machine spends beside the "
        "worker on each event. By process: the worker (the Faust agents), its entry stage and "
        "its ClickHouse sink (its two children), summed over the workers; peak RSS is each "
        "process's largest resident set since it started (VmHWM), the warm-up included.")
    add("")
    add("ClickHouse rows inserted per input event during the one-worker run (the sink's "
        "`peakend_sink_rows_total` by table): " + ", ".join(
            f"{table} {n / t1.events:.3f}" for table, n in sorted(t1.sink_rows.items())) + ".")
    add("")
    add("Kafka records written per input event during the throughput runs (every topic of the "
        "run: outputs, the contributions repartition, the tables' changelogs):")
    add("")
    add("| Topic | " + " | ".join(label for label, _ in runs) + " |")
    add("|---|" + "---:|" * len(runs))
    for topic in sorted(set().union(*(t.records for _, t in runs))):
        add(f"| {topic} | " + " | ".join(f"{t.records.get(topic, 0) / t.events:.2f}"
                                         for _, t in runs) + " |")
    add("| **all** | " + " | ".join(f"{sum(t.records.values()) / t.events:.2f}"
                                    for _, t in runs) + " |")
    if later:
        add("")
        add("The later days ran on the same one-worker stream after its first day and its "
            f"latency phases, each the next {later[0].events:,} events of the generator's "
            "default mix (the next day of event time). From the second day the worker holds "
            "the day before and forgets it as the allowed lateness (a day) passes: journey keys "
            "evicted (their tombstones), claims forgotten, buckets and their members evicted, "
            "which the first day on an empty worker never does. The steady state is the last of "
            "them (docs/streaming.md, eighteenth round).")
    add("")
    add(f"Worker logs during those runs: Faust's 'producer buffer full' warnings "
        f"{t1.notes.get('buffer_full_warnings', 0):.0f} (1 worker) / "
        f"{t2.notes.get('buffer_full_warnings', 0):.0f} (2 workers); longest 'Timer commit is "
        f"overlapping' runtime {t1.notes.get('longest_commit_s', 0):.1f} s / "
        f"{t2.notes.get('longest_commit_s', 0):.1f} s (the commit waits until every pending "
        "send is acknowledged).")
    add("")
    add(f"Scaling 1 -> 2 workers: x{t2.rate / t1.rate:.2f} (2 cores, shared with the broker, "
        "ClickHouse and the producer).")
    if inside:
        pairs = [("first day", t1, inside[0])]
        if later and len(inside) > len(later):
            pairs.append((f"day {len(later) + 1}", later[-1], inside[len(later)]))
        add("")
        add("Stage two in a process of its own (the default, `PEAKEND_STAGE_TWO_PROCESS=true`, "
            "docs/streaming.md, thirtieth round) against stage two inside the worker's process "
            "(`=false`), 1 worker, same events: " + "; ".join(
                f"{name} x{t.rate / i.rate:.2f} events/s ({fmt(t.rate)} against {fmt(i.rate)}), "
                f"x{t.cpu_per_event_us / i.cpu_per_event_us:.2f} CPU per event "
                f"({t.cpu_per_event_us:.0f} against {i.cpu_per_event_us:.0f} us)"
                for name, t, i in pairs) + ".")
    add("")
    add("Ratios:")
    add("")
    add(f"- pipeline / raw aiokafka consume: {t1.rate / consume:.2%} (1 worker), "
        f"{t2.rate / consume:.2%} (2 workers)")
    add(f"- pipeline / core (full engine, batched): {t1.rate / core_rate:.2%} (1 worker), "
        f"{t2.rate / core_rate:.2%} (2 workers)")
    add(f"- pipeline / in-process stage work: {t1.rate / stage.rate:.2%} (1 worker)")
    add("")
    add("### Produce-to-queryable latency")
    add("")
    add("| Workers | offered events/s | sent events/s | events | probes | touchpoint_events "
        "p50 / p95 / p99 / max (s) | journeys p50 / p95 / p99 / max (s) | not matched | poll "
        "period | load |")
    add("|---:|---:|---:|---:|---:|---|---|---:|---:|---|")
    for workers, lat_list in ((1, lats), (2, pipe["lat2"])):
        for x in lat_list:
            lat_raw = " / ".join(f"{v:.2f}" for v in x.summary("raw"))
            j = " / ".join(f"{v:.2f}" for v in x.summary("journey"))
            offered = fmt(x.offered) if x.offered else "max (flat out)"
            add(f"| {workers} | {offered} | {fmt(x.achieved)} | {x.events:,} | {x.probes:,} | "
                f"{lat_raw} | {j} | {x.missing_raw} / {x.missing_journey}"
                f"{'' if x.caught_up else ' (backlog not drained)'} | {x.poll_s:.2f} s | "
                f"{x.load} |")
    add("")
    add("An offered rate above what the worker sustains fills a backlog, so the latency there "
        "grows with the length of the run (it measures the queue, not the pipeline).")
    add("")
    add("## Where the time goes")
    add("")
    add(f"One worker spends {t1.cpu_per_event_us:.0f} us of CPU per event with its children "
        "(the entry stage and the sink; all processes, user + system, during the throughput "
        "run), i.e. at most "
        f"{fmt(worker_rate_cpu)} events per CPU second.")
    add("")
    profiles: dict[str, spy_summary.Summary] | None = pipe.get("profile")
    if profiles:
        tprof: bp.Throughput = pipe["tprof"]
        samples = sum(p.total for p in profiles.values())
        add(f"py-spy (`bench/profile_worker.py`: sampling every thread of the worker and of its "
            f"children from outside, {SPY_RATE} samples per second and thread) over "
            f"{tprof.events:,} events after the warm-up: {fmt(tprof.rate)} events/s, "
            f"{tprof.cpu_per_event_us:.0f} us of CPU per event under the sampler, load "
            f"{tprof.load}. Each process's samples by the stage they serve "
            "(`bench/spy_summary.py`'s rules: a sample goes to the first stage with a frame on "
            "its stack); us per event = share of the processes' samples x CPU per event:")
        add("")
        add("| Process | Stage | share of its samples | us per event |")
        add("|---|---|---:|---:|")
        for name, summary in profiles.items():
            for stage_name, count in summary.stages.most_common():
                add(f"| {name} | {stage_name} | {count / summary.total:.1%} | "
                    f"{count / samples * tprof.cpu_per_event_us:.0f} |")
        add("")
        worker = profiles.get("worker")
        if worker is not None:
            add(f"peakend's own work (validation, the stages, outputs, state writes) is "
                f"{spy_summary.peakend_share(worker):.0%} of the worker's samples; the rest is "
                "Faust, aiokafka, RocksDB and the event loops. Own time by component "
                "(the compiled core, orjson and RocksDB run in C: their time counts under the "
                "Python line that calls them):")
            add("")
            add("| Process | Component | share of its samples |")
            add("|---|---|---:|")
            for name, summary in profiles.items():
                for comp, count in summary.own.most_common(12):
                    add(f"| {name} | {comp} | {count / summary.total:.1%} |")
            add("")
    else:
        add("(py-spy wrote no profile: see the run's log; `.venv/bin/pip install py-spy`.)")
        add("")
    add("cProfile of the in-process stage work (`bench_pipeline.stage_work`, sorted by own "
        "time):")
    add("")
    add("```")
    add(stage.profile)
    add("```")
    add("")
    add(interpretation(t1, pipe.get("profile"), peer_runs))
    add("## Method")
    add("")
    add("- Raw: `bench/bench_raw.py`. Produce: kafka-python `KafkaProducer(acks=all, "
        "linger_ms=20, batch_size=256 KiB, compression as TouchpointProducer)`, `send` of "
        "pre-encoded records then `flush`. Consume: aiokafka `getmany(max_records=5000)` in a "
        "fresh group from the beginning; the clock starts at the first non-empty fetch (group "
        "join excluded). Insert: one `INSERT INTO journeys (...) VALUES` with `columnar=True` "
        "(clickhouse-driver), rows from real journey records (`pipeline.storage.tables.rows`), "
        "into the table the migrations create, best of 3.")
    add("- Pipeline throughput and latency: see the docstring of `bench/bench_pipeline.py` "
        "(clock from the first send until `wait_caught_up` sees every group caught up, minus "
        "its settle time; latency probes with known event_ids and send times, a reader thread "
        "polling `touchpoint_events` and `journeys` every 0.1 s; a journey probe counts when the "
        "journey that contains the event shows an `events` count that includes it, the id and "
        "count computed beforehand with the stage-one processor over the same events). A "
        "journey probe is 'not matched' when the pipeline had caught up and it was still not "
        "visible.")
    add("- Events: `jobs.generate`'s default mix (1 % delivered late, ~300 bytes each), the "
        "throughput run's events spanning one day of event time (the same density for every "
        "phase), each measurement a fresh id prefix starting after the previous one in event "
        "time. The load generator (`bench/load_producer.py`: aiokafka record batches built in the "
        "benchmark's process, the producer library's partitioning, compression and acks; "
        "kafka-python's per-record send cost 80-120 us of CPU per event on these shared cores) "
        "is measured apart: its CPU is the benchmark process's over the throughput run.")
    add("- Single-core figures: the functions of `bench/bench_core.py` and `bench/bench_contract"
        ".py`'s event mix; backfill with `jobs.backfill.run_backfill` over a Parquet file from "
        "`jobs.generate` (as `bench/bench_backfill.py`).")
    add("")
    path.write_text("\n".join(L) + "\n", encoding="utf-8")


def main() -> int:
    from tests.support.stack import stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (~3 minutes)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), "start", "kafka", "clickhouse"],
                   check=True, capture_output=True)
    env = stack_env()
    kafka = env["PEAKEND_KAFKA_BOOTSTRAP"]
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    m = machine(ch.admin)
    log(f"machine: {m}")
    log("raw client limits")
    raw: dict[str, Any] = dict(bench_raw.run(kafka, ch.admin, sizes.raw_events,
                                             sizes.insert_rows))
    raw["load"] = load()
    for r in raw.values():
        if isinstance(r, bench_raw.Rate):
            log(r.line())
    log("peers: the same simple journey job in other frameworks")
    peer_runs = peers.run(kafka, sizes.peer_events)
    log("contract")
    contract = contract_rate(sizes.contract_events)
    log(f"contract: {contract['rate']:,.0f}/s")
    log("core")
    core = core_rates(sizes.core_events)
    log(f"core: {core}")
    log("backfill")
    backfill = backfill_rates(sizes.backfill_events, ch.admin)
    log(f"backfill: {backfill}")
    log("stage one's state writes, compressed day and live")
    state = journey_state_shapes(sizes.journey_state_events)
    pipe = pipeline_runs(kafka, ch, sizes)
    for key in ("t1", "t2", "tprof"):
        t = pipe[key]
        log(f"{key}: {t.rate:,.0f} events/s, {t.cpu_per_event_us:.0f} us CPU/event")
    out = Path(args.output)
    write_report(out, m, args.quick, raw, contract, core, backfill, pipe, peer_runs, started,
                 state)
    log(f"wrote {out} in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
