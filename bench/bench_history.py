"""CPU per event of a replay over 1 day vs 90 days of history, at the same event-time rate.

    .venv/bin/python bench/bench_history.py [--days 1,90] [--rate 0.25] [--repeat 3]
                                            [--short-runs 5] [--path core|replay|both]
                                            [--dir /tmp/peakend-history]

Issue 13 item 5: a replay or backfill must not slow down per event as history builds up (the
drop detector keeps a week of minute buckets per series; it used to scan all of them at every
step). Both runs use `peakend generate` journeys at the same rate (`--rate` events per second
of event time, so 90 days hold 90x the events of 1 day) and the default core configuration.

- `core`: the engine as `peakend replay` drives it (`ExperienceEngine.process` per event, state
  gc policy), over events generated and parsed beforehand in chunks of 20,000 (generation and
  parsing not timed). This is the part whose cost could grow with history.
- `replay`: the whole `peakend replay FILE --output DIR` command (JSON parsing, contract, core,
  output files) in a child process, on JSONL files generated once into `--dir` and reused.

Each run is a fresh process, the lengths interleaved; CPU time is `time.process_time` (core)
or the child's user + system time (replay), divided by the events. A 1-day core run takes under
a second of CPU, so one sample of it is at the mercy of the machine's load in that second (on
the shared 2-vCPU machine the same run gave 45 and 82 us/event a minute apart): in each round
every length but the longest runs `--short-runs` times, so both lengths are sampled over
about the same span of time. Prints the machine, date, load and git commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = "2026-01-01T00:00:00Z"
SEED = 3
CHUNK = 20_000
DAY_S = 86_400


def events_for(days: int, rate: float) -> int:
    return round(rate * days * DAY_S)


def run_core(days: int, rate: float) -> dict[str, float]:
    """One measurement of the core path in this process."""
    from jobs.generate import GeneratorConfig, generate_events
    from pipeline.contract.parser import parse_dict
    from pipeline.core.config import DAY_MS
    from pipeline.core.engine import ExperienceEngine
    from pipeline.core.gcpolicy import STATE_THRESHOLDS, tuned_gc
    from pipeline.core.timefmt import parse_ms

    n = events_for(days, rate)
    config = GeneratorConfig(events=n, seed=SEED, start_ms=parse_ms(START), span_ms=days * DAY_MS)
    source = generate_events(config)
    engine = ExperienceEngine()
    cpu = 0.0
    done = alerts = metrics = 0
    with tuned_gc(STATE_THRESHOLDS):
        while True:
            chunk = [parse_dict(e) for e in islice(source, CHUNK)]
            if not chunk:
                break
            started = time.process_time()
            for event in chunk:
                emitted, _ = engine.process(event, 0)
                alerts += len(emitted.alerts)
                metrics += len(emitted.metrics)
            cpu += time.process_time() - started
            done += len(chunk)
        started = time.process_time()
        emitted = engine.finish()
        cpu += time.process_time() - started
        alerts += len(emitted.alerts)
        metrics += len(emitted.metrics)
    return {"events": done, "cpu_s": cpu, "alerts": alerts, "metric_records": metrics}


def run_replay(days: int, rate: float, folder: Path) -> dict[str, float]:
    """One measurement of `peakend replay` in a child process (files generated once)."""
    n = events_for(days, rate)
    path = folder / f"history-{days}d-{n}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".tmp")
        subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--events", str(n),
                        "--span", f"{days}d", "--start", START, "--seed", str(SEED),
                        "--output", str(partial), "--quiet"], check=True, cwd=ROOT)
        partial.rename(path)
    with tempfile.TemporaryDirectory(prefix="peakend-history-") as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", str(path), "--output",
                        out], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        alerts = len((Path(out) / "alerts.jsonl").read_bytes().splitlines())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"events": n, "cpu_s": cpu, "alerts": alerts}


def one(path: str, days: int, rate: float, folder: str) -> dict[str, float]:
    """A single measurement in a fresh process (every row starts from the same heap)."""
    proc = subprocess.run([sys.executable, __file__, "--one", path, "--days", str(days),
                           "--rate", str(rate), "--dir", folder],
                          check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pipeline"], cwd=ROOT,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes under pipeline/" if dirty else "")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="1,90", help="history lengths in days (default 1,90)")
    parser.add_argument("--rate", type=float, default=0.25,
                        help="events per second of event time (default 0.25: 21,600 a day)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--short-runs", type=int, default=5,
                        help="runs of each length but the longest per round (default 5)")
    parser.add_argument("--path", choices=("core", "replay", "both"), default="core")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "peakend-history"),
                        help="where the replay path keeps its generated JSONL files")
    parser.add_argument("--one", choices=("core", "replay"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        days = int(args.days)
        result = (run_core(days, args.rate) if args.one == "core"
                  else run_replay(days, args.rate, Path(args.dir)))
        print(json.dumps(result))
        return
    import pipeline.core_build

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    lengths = [int(d) for d in args.days.split(",")]
    paths = ["core", "replay"] if args.path == "both" else [args.path]
    print(f"bench_history: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, git {commit()}")
    print(f"machine: nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}, "
          f"core {'compiled' if pipeline.core_build.COMPILED else 'interpreted'}")
    longest = max(lengths)
    print(f"rate {args.rate:g} events/s of event time, seed {SEED}, start {START}, "
          f"best and median of {args.repeat} rounds (shorter lengths {args.short_runs} runs "
          f"a round), each run in a fresh process")
    print(f"load at start: {load()}")
    for path in paths:
        # Interleaved (1 d, 90 d, 1 d, 90 d, ...): on a shared machine the load moves, and CPU
        # time per event rises with it (caches), so both lengths should see the same loads.
        per_event: dict[int, list[float]] = {days: [] for days in lengths}
        for attempt in range(args.repeat):
            runs = [days for days in lengths
                    for _ in range(1 if days == longest else max(1, args.short_runs))]
            for days in runs:
                result = one(path, days, args.rate, args.dir)
                per_event[days].append(result["cpu_s"] / result["events"] * 1e6)
                print(f"  run {attempt + 1}: {path} {days} d {int(result['events']):,} events, "
                      f"alerts {int(result['alerts'])}, "
                      f"{per_event[days][-1]:.1f} us/event (load {load()})", flush=True)
        for days in lengths:
            samples = per_event[days]
            print(f"{path:6} {days:3d} d {events_for(days, args.rate):>9,} events  "
                  f"CPU us/event min {min(samples):7.1f}  median {statistics.median(samples):7.1f}",
                  flush=True)
        first = lengths[0]
        for days in lengths[1:]:
            best = min(per_event[days]) / min(per_event[first])
            middle = statistics.median(per_event[days]) / statistics.median(per_event[first])
            print(f"{path:6} {days} d / {first} d per event: min {best:.2f}x, "
                  f"median {middle:.2f}x")
    print(f"load at end: {load()}")


if __name__ == "__main__":
    main()
