"""Throughput of the batch jobs: generate, Parquet read, backfill (core, + ClickHouse).

    .venv/bin/python -m bench.bench_backfill [--events N] [--rate R | --span 1d]
                                             [--workers N] [--url clickhouse://...] [--profile]

Generates N events (event-time rate R per second, default 200/s like bench_core, or over
--span), writes them to JSONL and Parquet, reads the Parquet back (raw batches, and rebuilt
event dicts), then backfills it through the core with no writes, into a fresh embedded chdb,
and, with --url, into a ClickHouse server (a fresh database, dropped afterwards; the URL must
be allowed to create databases). Each backfill runs in one process and with `--workers`
processes (default: one per CPU). Each line gives the wall-clock rate and the rate per
CPU-second of this process and its workers (the machine may be shared: the CPU rate is the
steadier figure; ClickHouse's own CPU is not counted). `--profile` prints where single-process
core-only backfill spends its time.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import platform
import pstats
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from bench.host import cpu_model
from jobs.backfill import BackfillOptions, run_backfill
from jobs.generate import GeneratorConfig, generate_records, parse_duration, write_jsonl
from jobs.generate import write_parquet as write_parquet_file
from jobs.parquet_schema import read_event_dicts
from pipeline.core.config import CoreConfig
from pipeline.storage.migrate import migrate
from pipeline.storage.warehouse import ChdbWarehouse, ServerWarehouse, Warehouse


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (backfill workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(label: str, rows: int, fn: Callable[[], object]) -> float:
    started, cpu = time.perf_counter(), cpu_seconds()
    fn()
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{label:<48} {rows / seconds:>10,.0f} rows/s  ({rows:,} in {seconds:.2f} s; "
          f"{rows / cpu:,.0f} per CPU-s; load {load})", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="events per second of event time (default 200)")
    parser.add_argument("--span", help="event-time span instead of --rate (e.g. 1d)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--url", help="also backfill into this ClickHouse server")
    parser.add_argument("--workers", type=int, default=None,
                        help="backfill processes for the runs with workers (default: one per "
                             "CPU)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    span = parse_duration(args.span) if args.span else round(args.events / args.rate * 1000)
    config = GeneratorConfig(events=args.events, seed=1, span_ms=span, invalid_fraction=0.001)
    print(f"peakend batch-jobs benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}")
    print(f"events: {args.events:,} over {span / 3_600_000:.2f} h of event time "
          f"({args.events / (span / 1000):,.0f}/s), partitions {args.partitions}")
    work = Path(tempfile.mkdtemp(prefix="peakend-bench-"))
    jsonl, parquet = work / "events.jsonl", work / "events.parquet"

    def gen_only() -> None:
        for _ in generate_records(config):
            pass

    def to_jsonl() -> None:
        with open(jsonl, "wb") as out:
            write_jsonl(generate_records(config), out)

    def to_parquet() -> None:
        write_parquet_file((r for r in generate_records(config, json_only=False)
                            if not isinstance(r, bytes)), parquet)

    timed("generate (event dicts only)", args.events, gen_only)
    timed("generate -> JSONL", args.events, to_jsonl)
    timed("generate -> Parquet", args.events, to_parquet)
    rows = pq.ParquetFile(parquet).metadata.num_rows
    print(f"  files: JSONL {jsonl.stat().st_size / 1e6:.1f} MB, "
          f"Parquet {parquet.stat().st_size / 1e6:.1f} MB ({rows:,} rows)")

    def read_batches() -> None:
        for _ in pq.ParquetFile(parquet).iter_batches(batch_size=65_536):
            pass

    def read_dicts() -> None:
        for _ in read_event_dicts(parquet):
            pass

    timed("Parquet read (record batches)", rows, read_batches)
    timed("Parquet read -> event dicts", rows, read_dicts)
    core = CoreConfig()
    workers = args.workers or os.cpu_count() or 1
    workers = max(1, min(workers, args.partitions))

    def core_only(n: int = 1) -> None:
        run_backfill([str(parquet)], None, core,
                     BackfillOptions(partitions=args.partitions, workers=n))

    timed("backfill through the core, no writes, 1 process", rows, core_only)
    if workers > 1:
        timed(f"backfill through the core, no writes, {workers} workers", rows,
              lambda: core_only(workers))

    def into(warehouse: Warehouse, n: int) -> None:
        run_backfill([str(parquet)], warehouse, core,
                     BackfillOptions(partitions=args.partitions, workers=n))

    for n in sorted({1, workers}):
        chdb = ChdbWarehouse(str(work / "chdb"), f"bench{n}")  # one chdb path per process
        migrate(chdb, cluster="")
        timed(f"backfill -> chdb (five tables), {n} process(es)", rows,
              functools.partial(into, chdb, n))
    if args.url:
        admin = ServerWarehouse(args.url)
        base, _, _ = args.url.rpartition("/")
        try:
            for n in sorted({1, workers}):
                name = f"pe_bench_{uuid.uuid4().hex[:8]}"  # a fresh database for each run
                admin.execute(f"CREATE DATABASE {name}")
                server = ServerWarehouse(f"{base}/{name}")
                try:
                    migrate(server, cluster="")
                    timed(f"backfill -> ClickHouse server (five tables), {n} process(es)", rows,
                          functools.partial(into, server, n))
                finally:
                    server.close()
                    admin.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            admin.close()
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(core_only)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
