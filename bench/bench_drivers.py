"""Key drivers over a million journeys on one core (issue 18: "under a minute").

    .venv/bin/python -m bench.bench_drivers [--journeys 1000000] [--bootstrap 200]

Journeys with planted importances (10 touchpoints, each visited with probability 0.4, so ~4
moments and one NPS answer per journey, as `jobs.planted`) are made in memory first as core
events (not timed: reading and validating JSON is the contract's cost, measured by
bench_contract.py). Timed, in CPU seconds of this process with BLAS held to one thread:

1. features: every journey and every event into `FeatureBuilder` (journey matching, valence
   through the core's `moment_valence`, the outcome) and `build()`;
2. analysis: `analyse()` with the exact Shapley decomposition (2^10 subsets) and the bootstrap.

Prints a Markdown section for docs/benchmarks-drivers.md with the machine, date and load average.

    .venv/bin/python -m bench.bench_drivers --from-files 20000 [--copies 50]

The command as a user runs it, from files: for each size, the same planted model written as
JSON Lines by `jobs.planted` (visit 0.4, with `journey_end` markers: ~6 events per journey),
`peakend replay` over it, then as child processes, their CPU seconds (user + system) and peak
memory from the operating system:

- `peakend drivers --journeys OUT/journeys.jsonl --json`: replay's Parquet inputs
  (`pipeline.driver_inputs`), the one pass;
- `peakend drivers EVENTS --journeys OLD/journeys.jsonl --json`: a directory holding only
  journeys.jsonl and dead_letters.jsonl, as an older replay left it: each event is read and
  validated by the contract again. The two outputs are compared (equal to 1e-12).

Replay's own cost of the Parquet inputs is timed in this process: `DriverInputs.add` for every
event replay applied (parsed beforehand, not timed) and the two files written, against the
replay child's CPU seconds (after a warm-up: pyarrow's first conversion imports modules, ~0.5 s
of CPU once per process, not per event). `--copies K`: then the Parquet inputs of the
replayed journeys K times over, ids suffixed so no two copies share a journey, customer or event
(the same rows a replay of K such disjoint sets would write, up to the order), and `peakend
drivers` over those N x K journeys: a million without a 1.6 GB file and an hour of replay first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # one core: set before numpy loads its BLAS

import numpy as np  # noqa: E402

import pipeline.core_build  # noqa: E402
from jobs.drivers import FeatureBuilder, analyse, top_negative  # noqa: E402
from pipeline.core.event import Survey, TouchpointEvent  # noqa: E402
from pipeline.core.valence import moment_valence  # noqa: E402
from pipeline.scoring_rules import load_scoring_rules  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

WEIGHTS = {"hotline": 0.9, "delivery": 0.6, "checkout": 0.4, "returns": 0.3, "chat": 0.2,
           "store_visit": 0.15, "app_login": 0.1, "search": 0.05, "billing": 0.02, "email": 0.0}
START_MS = 1_788_220_800_000
AT = datetime.fromtimestamp(START_MS / 1000, UTC)


def make(first: int, count: int, rng: random.Random) -> list[TouchpointEvent]:
    """The events of journeys first .. first + count - 1."""
    names = list(WEIGHTS)
    scale = sum(WEIGHTS.values())
    events: list[TouchpointEvent] = []
    for j in range(first, first + count):
        jid = f"j{j}"
        total = 0.0
        for name in names:
            if rng.random() < 0.4:
                valence = round(rng.uniform(-1.0, 1.0), 3)
                total += WEIGHTS[name] * valence
                events.append(TouchpointEvent(f"{jid}-{name}", AT, "bench", jid, "interaction",
                                              name, "web", "use", jid, valence=valence,
                                              occurred_ms=START_MS + j))
        nps = max(0, min(10, round(5 + 5 * (total + rng.gauss(0.0, 0.3)) / scale)))
        events.append(TouchpointEvent(f"{jid}-s", AT, "bench", jid, "survey", "survey", "web",
                                      "use", jid, survey=Survey(nps=nps),
                                      occurred_ms=START_MS + j + 1))
    return events


CHUNK = 50_000  # journeys made (untimed) and fed (timed) at a time: memory stays small


def sample_sizes(sizes: list[int], bootstrap: int) -> None:
    """How many journeys with an answer the analysis needs: for each size, the planted model
    (10 drivers) analysed with the bootstrap, as an analyst would see it."""
    rules = load_scoring_rules()
    print("\n### Sample size (planted model, 10 drivers, weights "
          f"{', '.join(f'{k} {v}' for k, v in WEIGHTS.items())})\n")
    print("| journeys with NPS | R^2 | top-3 ranking right | hotline share [95% CI] | "
          "drivers significant (of 9 with weight > 0) | email (weight 0) significant |")
    print("|---:|---:|---|---|---:|---|")
    for n in sizes:
        builder = FeatureBuilder()
        for j in range(n):
            builder.journey(f"j{j}", "journey_id", f"j{j}", START_MS, START_MS + 10, "closed",
                            None, "")
        for event in make(0, n, random.Random(n)):
            builder.event(event, moment_valence(event, rules))
        results = {d.driver: d for d in analyse(builder.build(), bootstrap=bootstrap, seed=1,
                                                default_expectation=0.0)}
        ranking = sorted(results, key=lambda d: -results[d].importance)
        hot = results["hotline"]
        r2 = hot.r2
        planted = sum(1 for k, w in WEIGHTS.items() if w > 0 and results[k].significant)
        print(f"| {n:,} | {r2:.2f} | {ranking[:3] == list(WEIGHTS)[:3]} | "
              f"{hot.share:.0%} [{hot.importance_low / r2:.0%}, {hot.importance_high / r2:.0%}] "
              f"| {planted} | {results['email'].significant} |")


def _child_run(argv: list[str], env: dict[str, str] | None = None
               ) -> tuple[float, float, int]:
    """Run `peakend ARGV` as a child process (BLAS one thread, the environment's settings);
    its (CPU seconds, wall seconds, peak RSS MiB)."""
    wall = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT,
                             stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own usage, not all children's
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - wall
    if child.returncode != 0:
        raise SystemExit(f"peakend {argv[0]} exited with status {child.returncode}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss // 1024


def _drivers_child(tmp: Path, name: str, *inputs: str) -> tuple[tuple[float, float, int],
                                                                list[dict[str, object]]]:
    """`peakend drivers INPUTS` as a child (`_child_run`): its usage and its rows."""
    rows_file = tmp / f"drivers-{name}.jsonl"
    usage = _child_run(["drivers", *inputs, "--json", "--expect-default", "0", "--output",
                        str(rows_file)])
    return usage, [json.loads(line) for line in rows_file.read_text().splitlines()]


def _ranking(rows: list[dict[str, object]]) -> list[str]:
    return [str(r["driver"]) for r in sorted(rows, key=lambda r: -float(str(r["importance"])))]


def _same_rows(a: list[dict[str, object]], b: list[dict[str, object]]) -> bool:
    def close(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return abs(x - y) <= 1e-12
        return x == y
    return len(a) == len(b) and all(r.keys() == s.keys() and all(close(r[k], s[k]) for k in r)
                                    for r, s in zip(a, b, strict=True))


def _hook_cpu(events: Path, out: Path) -> float:
    """CPU seconds of replay's Parquet inputs (module docstring): `DriverInputs.add` for the
    events replay applied, then both files written (to /dev/null)."""
    from pipeline.contract import parse_event
    from pipeline.core.records import JourneyRecord
    from pipeline.driver_inputs import DriverInputs
    from pipeline.settings import Settings
    settings = Settings.from_env()
    rejected = {json.loads(line)["source_offset"]
                for line in (out / "dead_letters.jsonl").read_text().splitlines()}
    parsed = [parse_event(line) for number, line in
              enumerate(events.read_bytes().splitlines(), start=1) if number not in rejected]
    journeys = [JourneyRecord.from_dict(json.loads(line))
                for line in (out / "journeys.jsonl").read_text().splitlines()]
    flag = settings.core_config().journeys.ces_5_more_effort
    warm = DriverInputs(load_scoring_rules(), flag)  # pyarrow's first conversion imports
    for event in parsed[:100]:  # modules (~0.5 s CPU once per process): not per event
        warm.add(event)
    with open(os.devnull, "wb") as sink:
        warm.write_events(sink)
    inputs = DriverInputs(load_scoring_rules(), flag)
    cpu = time.process_time()
    for event in parsed:
        inputs.add(event)
    with open(os.devnull, "wb") as sink:
        inputs.write_events(sink)
        DriverInputs.write_journeys(sink, journeys, (out / "journeys.jsonl").stat().st_size)
    return time.process_time() - cpu


def _copies(out: Path, target: Path, copies: int) -> int:
    """Replay's Parquet inputs in `out`, `copies` times with suffixed ids, into `target` (with
    an empty journeys.jsonl: the command reads the Parquet files beside it); the journeys."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline import driver_inputs
    target.mkdir()
    (target / "journeys.jsonl").write_bytes(b"")
    journeys = 0
    empty = {driver_inputs.JOURNEYS_JSONL_BYTES: "0"}  # the size of that journeys.jsonl
    for name, schema in ((driver_inputs.JOURNEYS_FILE,
                          driver_inputs.JOURNEY_SCHEMA.with_metadata(empty)),
                         (driver_inputs.EVENTS_FILE, driver_inputs.EVENT_SCHEMA)):
        table = pq.read_table(out / name)
        with pq.ParquetWriter(target / name, schema, compression="zstd",
                              use_dictionary=driver_inputs.DICTIONARY_COLUMNS) as writer:
            for k in range(copies):
                copy = table
                for column in ("journey_id", "customer_id", "event_id"):
                    if column in schema.names:
                        i = schema.names.index(column)
                        copy = copy.set_column(i, column, pc.binary_join_element_wise(
                            copy.column(column), f"~{k}", ""))
                writer.write_table(copy)
                if name == driver_inputs.JOURNEYS_FILE:
                    journeys += copy.num_rows
    return journeys


def from_files(sizes: list[int], copies: int) -> None:
    """`peakend drivers` from replay's files, per size (module docstring)."""
    from jobs.planted import planted_events
    load_before = os.getloadavg()
    rows = []
    copied = []
    with tempfile.TemporaryDirectory(prefix="bench-drivers-") as name:
        tmp = Path(name)
        for n in sizes:
            events = tmp / f"events-{n}.jsonl"
            count = 0
            with events.open("w") as handle:
                for event in planted_events(n, WEIGHTS, visit=0.4, seed=n):
                    handle.write(json.dumps(event, separators=(",", ":")) + "\n")
                    count += 1
            out = tmp / f"out-{n}"
            replay = _child_run(["replay", str(events), "--output", str(out), "--now",
                                 "2030-01-01T00:00:00Z"])
            one_pass, results = _drivers_child(tmp, f"{n}", "--journeys",
                                               str(out / "journeys.jsonl"))
            older = tmp / f"older-{n}"
            older.mkdir()
            for kept in ("journeys.jsonl", "dead_letters.jsonl"):
                (older / kept).write_bytes((out / kept).read_bytes())
            again, old_results = _drivers_child(tmp, f"{n}-older", str(events), "--journeys",
                                                str(older / "journeys.jsonl"))
            ranking = _ranking(results)
            if copies > 1:
                total = _copies(out, tmp / f"copies-{n}", copies)
                usage, many = _drivers_child(tmp, f"{n}x{copies}", "--journeys",
                                             str(tmp / f"copies-{n}" / "journeys.jsonl"))
                copied.append((n, total, usage, _ranking(many)[:3]))
            # last: the parsed events make this process big, and a child's peak RSS counts
            # its parent's memory at fork (Linux keeps the high-water mark across exec)
            hook = _hook_cpu(events, out)
            rows.append((n, count, events.stat().st_size, replay, hook, one_pass, again,
                         _same_rows(results, old_results), ranking[:3]))
            events.unlink()
    load_after = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    print("### From files: the command as a user runs it\n")
    print(f"`.venv/bin/python -m bench.bench_drivers --from-files "
          f"{','.join(str(n) for n in sizes)}"
          f"{f' --copies {copies}' if copies > 1 else ''}` on "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, git "
          f"{commit}, {os.cpu_count()} vCPU {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, core "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'}; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after. CPU: user + system seconds of "
          "the child process.\n")
    print("| journeys | events (file) | `peakend replay` CPU s | of it the Parquet inputs CPU s "
          "| `peakend drivers` one pass: CPU s / wall s / peak RSS MiB | per 100,000 journeys "
          "CPU s | the events read again (older replay): CPU s / wall s / peak RSS MiB | "
          "same rows | top 3 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for n, count, size, replay, hook, one, again, same, top in rows:
        print(f"| {n:,} | {count:,} ({size / 2**20:.0f} MiB) | {replay[0]:.1f} | "
              f"{hook:.2f} ({hook / replay[0]:.1%}) | {one[0]:.1f} / {one[1]:.1f} / {one[2]} | "
              f"{one[0] / n * 100_000:.1f} | {again[0]:.1f} / {again[1]:.1f} / {again[2]} | "
              f"{same} | {', '.join(top)} |")
    if copied:
        print("\n| journeys (copies of the replayed) | `peakend drivers` one pass CPU s | wall s "
              "| peak RSS MiB | top 3 |")
        print("|---:|---:|---:|---:|---|")
        for n, total, usage, top in copied:
            print(f"| {total:,} ({total // n} x {n:,}) | {usage[0]:.1f} | {usage[1]:.1f} | "
                  f"{usage[2]} | {', '.join(top)} |")


BENCH_DATABASE = "peakend_bench_drivers"


def over_clickhouse(n: int) -> None:
    """`peakend drivers --clickhouse` over n planted journeys backfilled into a database of
    their own (`BENCH_DATABASE`, dropped and made again) of the ClickHouse at
    PEAKEND_CLICKHOUSE_ADMIN_URL / PEAKEND_CLICKHOUSE_URL (scripts/stack.sh env)."""
    from jobs.parquet_schema import ParquetEventWriter
    from jobs.planted import planted_events
    from pipeline.storage.warehouse import ServerWarehouse
    admin_url = os.environ["PEAKEND_CLICKHOUSE_ADMIN_URL"]
    writer_url = os.environ["PEAKEND_CLICKHOUSE_URL"].rsplit("/", 1)[0] + f"/{BENCH_DATABASE}"
    admin = ServerWarehouse(admin_url.rsplit("/", 1)[0] + "/default")
    admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
    admin.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    env = {**os.environ, "PEAKEND_CLICKHOUSE_URL": writer_url,
           "PEAKEND_CLICKHOUSE_READER_URL": writer_url,
           "PEAKEND_CLICKHOUSE_DATABASE": BENCH_DATABASE}
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-drivers-ch-") as name:
            events = Path(name) / "events.parquet"
            with ParquetEventWriter(events) as writer:
                chunk: list[dict[str, object]] = []
                for event in planted_events(n, WEIGHTS, visit=0.4, seed=n):
                    chunk.append(event)
                    if len(chunk) == 65_536:
                        writer.write(chunk)
                        chunk = []
                writer.write(chunk)
            backfill = _child_run(["backfill", str(events), "--workers", "1",
                                   "--no-checkpoint", "--quiet", "--now",
                                   "2030-01-01T00:00:00Z"], env)
            rows_file = Path(name) / "drivers.jsonl"
            usage = _child_run(["drivers", "--clickhouse", "--json", "--expect-default", "0",
                                "--output", str(rows_file)], env)
            results = [json.loads(line) for line in rows_file.read_text().splitlines()]
        counts = admin.query(
            f"SELECT (SELECT count() FROM {BENCH_DATABASE}.journeys_latest), "
            f"(SELECT count() FROM {BENCH_DATABASE}.touchpoint_events FINAL)")
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
        admin.close()
    load_after = os.getloadavg()
    journeys, events_n = counts[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    print("### Over ClickHouse\n")
    print(f"`.venv/bin/python -m bench.bench_drivers --clickhouse {n}` on "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, git {commit}, {os.cpu_count()} vCPU, "
          f"Python {platform.python_version()}, core "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'}, ClickHouse on the "
          f"same machine; load average {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after. CPU: user + system seconds of "
          "the child process (the ClickHouse server's own time is in the wall time only).\n")
    print("| journeys (journeys_latest) | events (touchpoint_events) | `peakend backfill` CPU s "
          "/ wall s | `peakend drivers --clickhouse` CPU s / wall s / peak RSS MiB | per "
          "100,000 journeys CPU s | top 3 |")
    print("|---:|---:|---:|---:|---:|---|")
    print(f"| {journeys:,} | {events_n:,} | {backfill[0]:.1f} / {backfill[1]:.1f} | "
          f"{usage[0]:.1f} / {usage[1]:.1f} / {usage[2]} | {usage[0] / n * 100_000:.1f} | "
          f"{', '.join(_ranking(results)[:3])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--sample-sizes", default="",
                        help="comma-separated journey counts: only the sample-size table")
    parser.add_argument("--from-files", default="",
                        help="comma-separated journey counts: only the from-files table")
    parser.add_argument("--copies", type=int, default=1,
                        help="--from-files: also drivers over the replayed journeys' Parquet "
                             "inputs this many times over")
    parser.add_argument("--clickhouse", type=int, default=0, metavar="JOURNEYS",
                        help="only `peakend drivers --clickhouse` over this many journeys "
                             "backfilled into a database of their own")
    args = parser.parse_args()
    if args.clickhouse:
        over_clickhouse(args.clickhouse)
        return
    if args.from_files:
        from_files([int(x) for x in args.from_files.split(",")], args.copies)
        return
    if args.sample_sizes:
        sample_sizes([int(x) for x in args.sample_sizes.split(",")], args.bootstrap)
        return
    load_before = os.getloadavg()
    rules = load_scoring_rules()
    rng = random.Random(1)
    builder = FeatureBuilder()
    cpu_features = wall_features = 0.0
    events = 0
    for first in range(0, args.journeys, CHUNK):
        count = min(CHUNK, args.journeys - first)
        chunk = make(first, count, rng)
        events += len(chunk)
        cpu, wall = time.process_time(), time.perf_counter()
        for j in range(first, first + count):
            builder.journey(f"j{j}", "journey_id", f"j{j}", START_MS, START_MS + 10, "closed",
                            None, "")
        for event in chunk:
            builder.event(event, moment_valence(event, rules))
        cpu_features += time.process_time() - cpu
        wall_features += time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    features = builder.build()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    cpu0 = cpu1 - (cpu1 - cpu) - cpu_features
    wall0 = wall1 - (wall1 - wall) - wall_features
    results = analyse(features, method="auto", bootstrap=args.bootstrap, seed=1,
                      default_expectation=0.0)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    load_after = os.getloadavg()

    by_importance = [d.driver for d in sorted(results, key=lambda d: -d.importance)]
    planted = [name for name in WEIGHTS if WEIGHTS[name] > 0.05]
    recovered = by_importance[: len(planted)] == planted
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    top = top_negative(results)
    print(f"## Key drivers (issue 18): {args.journeys:,} journeys on one core\n")
    print(f"`.venv/bin/python -m bench.bench_drivers --journeys {args.journeys} --bootstrap "
          f"{args.bootstrap}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, git {commit}, "
          f"{os.cpu_count()} vCPU {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, numpy {np.__version__} (BLAS one thread), core "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'}; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after (other engineers' tests share "
          "the machine). CPU: seconds of CPU time of the process; wall: elapsed seconds.\n")
    print("| stage | CPU s | wall s | what |")
    print("|---|---:|---:|---|")
    print(f"| features | {cpu1 - cpu0:.1f} | {wall1 - wall0:.1f} | {args.journeys:,} journeys, "
          f"{events:,} core events into `FeatureBuilder`, `build()` |")
    print(f"| analysis | {cpu2 - cpu1:.1f} | {wall2 - wall1:.1f} | `analyse()`: "
          f"{results[0].method}, {len(results)} drivers, {args.bootstrap} bootstrap "
          "resamples |")
    print(f"| total | {cpu2 - cpu0:.1f} | {wall2 - wall0:.1f} | |\n")
    print(f"R^2 {results[0].r2:.3f}; planted ranking recovered: {recovered} "
          f"({', '.join(by_importance)}); fix first: {top.driver if top else '-'}.")


if __name__ == "__main__":
    main()
