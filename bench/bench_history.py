"""CPU per event of a replay over 1 day vs 90 days of history, at the same event-time rate.

    .venv/bin/python -m bench.bench_history [--days 1,90] [--rate 0.25] [--repeat 3]
                                            [--short-runs 5] [--path core|replay|both]
                                            [--dir /tmp/peakend-history] [--gc state,off,...]
                                            [--alongside]

Issue 13 item 5: a replay or backfill must not slow down per event as history builds up (the
drop detector keeps a week of minute buckets per series; it used to scan all of them at every
step). Both runs use `peakend generate` journeys at the same rate (`--rate` events per second
of event time, so 90 days hold 90x the events of 1 day) and the default core configuration.

- `core`: the engine as `peakend replay` drives it (`ExperienceEngine.process` per event, state
  gc policy), over events generated and parsed beforehand in chunks of 20,000 (generation and
  parsing not timed; the generated events are pickled into `--dir` by the first run of each
  length and unpickled by the others: delete the files after changing the generator, and a
  `.lock` left by a run stopped while making its file). This
  is the part whose cost could grow with history.
  `--gc` runs it under other collector policies too (rows in turn), and each run reports the
  CPU time spent in the collector (gc.callbacks) and its collections by generation.
- `replay`: the `peakend replay FILE --output DIR` command (JSON parsing, contract, core,
  output files) in a child process, on JSONL files generated once into `--dir` and reused.
  The child imports the command's modules first and times `pipeline.cli.main` alone
  (`time.process_time`), less the same in-process time on an empty file (output files made,
  nothing to replay) measured right after it. Interpreter start and imports (1.0-1.8 s of CPU,
  as much as a whole 1-day replay) are reported apart: subtracting them from the child's
  rusage, as this script first did, left the 1-day samples spread from 113 to 192 us/event.

Each run is a fresh process, the lengths interleaved; CPU time is `time.process_time` (core,
and the replay command inside its child), divided by the events. A 1-day core run takes under
a second of CPU, so one sample of it is at the mercy of the machine's load in that second (on
the shared 2-vCPU machine the same run gave 45 and 82 us/event a minute apart): in each round
every length but the longest runs `--short-runs` times, so both lengths are sampled over
about the same span of time. `--alongside` goes further: the shorter lengths run back to back
on the other CPU for as long as each run of the longest lasts, so both are sampled over the
very same minutes (and share the machine with each other, as with a neighbour). Prints the
machine, date, load and git commit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from pipeline.core.config import CoreConfig
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

ROOT = Path(__file__).resolve().parent.parent


START = "2026-01-01T00:00:00Z"
SEED = 3
CHUNK = 20_000
DAY_S = 86_400


class GcPolicy:
    """What a run does with the collector on top of the state policy (`tuned_gc`)."""

    def begin(self) -> None:
        pass

    def step(self) -> None:
        pass

    def chunk_start(self) -> None:
        """Before each chunk is fed to the core (after its untimed parsing)."""

    def chunk(self, events: int) -> None:
        """After each chunk of `events` events (`CHUNK`, timed)."""

    def end(self) -> None:
        pass


class Paced(GcPolicy):
    """The state policy with `YoungPacer` (what replay and backfill run): the young
    threshold follows the events per young collection, checked after every chunk."""

    def __init__(self, every: int = 100) -> None:
        self.every = every

    def begin(self) -> None:
        from pipeline.core.gcpolicy import YoungPacer

        self.pacer = YoungPacer(self.every, min(100, self.every))

    def chunk_start(self) -> None:
        self.pacer.skip()  # the chunk's parsing made young collections replay would not

    def chunk(self, events: int) -> None:
        self.pacer.pace(events)


class Thresholds(GcPolicy):
    def __init__(self, young: int, middle: int, full: int) -> None:
        self.thresholds = (young, middle, full)

    def begin(self) -> None:
        import gc

        gc.set_threshold(*self.thresholds)


class FreezeEvery(GcPolicy):
    """`gc.freeze()` every `every` events: the state alive then is never walked again by a
    middle or full collection."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.left = every

    def step(self) -> None:
        self.left -= 1
        if self.left == 0:
            import gc

            gc.freeze()
            self.left = self.every


class Disabled(GcPolicy):
    def begin(self) -> None:
        import gc

        gc.disable()

    def end(self) -> None:
        import gc

        gc.enable()


class YoungEvery(GcPolicy):
    """Automatic collection off; a young collection every `every` events (and a middle one
    every `middle` young ones). CPython triggers a young collection after `threshold`
    allocations net of frees, and after months of history every event frees old state as it
    allocates new, so young collections come rarely and walk a generation far larger than the
    cache; counted in events, they come as often at 90 days as at 1."""

    def __init__(self, every: int, middle: int = 50_000) -> None:
        self.every = every
        self.middle = middle
        self.left = every
        self.young = 0

    def begin(self) -> None:
        import gc

        gc.disable()

    def step(self) -> None:
        self.left -= 1
        if self.left == 0:
            import gc

            self.left = self.every
            self.young += 1
            gc.collect(1 if self.young % self.middle == 0 else 0)

    def end(self) -> None:
        import gc

        gc.enable()


GC_POLICIES: dict[str, GcPolicy] = {
    "young100ev": YoungEvery(100),
    "young500ev": YoungEvery(500),
    "state": GcPolicy(),
    "paced": Paced(),
    "paced50": Paced(50),
    "paced25": Paced(25),
    "freeze20k": FreezeEvery(20_000),
    "young150": Thresholds(150, 333_000, 100),
    "young300": Thresholds(300, 166_000, 100),
    "young10k": Thresholds(10_000, 50_000, 100),
    "young100k": Thresholds(100_000, 50_000, 100),
    "off": Disabled(),
}


def events_for(days: int, rate: float) -> int:
    return round(rate * days * DAY_S)


def events_cache(folder: Path, days: int, rate: float) -> Path:
    """Where the core path keeps the generated events of one length, parsed to dicts."""
    return folder / f"events-{days}d-{events_for(days, rate)}-seed{SEED}-dicts.pickle"


class GcClock:
    """CPU time spent in the cyclic collector while `timing` is set (gc.callbacks)."""

    def __init__(self) -> None:
        self.timing = False
        self.cpu_s = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.timing:
            return
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu_s += time.process_time() - self._started
            self.collections[info["generation"]] += 1


def chunks(cache: Path) -> Iterator[list[dict[str, Any]]]:
    """The generated events as dicts, `CHUNK` at a time (one pickle each; the parsed events
    themselves do not survive pickling into the compiled build)."""
    with cache.open("rb") as source:
        while True:
            try:
                yield pickle.load(source)
            except EOFError:
                return


def run_core(days: int, rate: float, gc_policy: str, folder: Path) -> dict[str, float]:
    """One measurement of the core path in this process."""
    import gc

    from jobs.generate import GeneratorConfig, generate_events
    from pipeline.contract.parser import parse_dict
    from pipeline.core.config import DAY_MS
    from pipeline.core.engine import ExperienceEngine
    from pipeline.core.gcpolicy import STATE_THRESHOLDS, tuned_gc
    from pipeline.core.timefmt import parse_ms

    n = events_for(days, rate)
    cache = events_cache(folder, days, rate)
    lock = cache.with_suffix(".lock")
    try:
        # one process makes the file; another bench (the same lengths from another tree, run
        # at the same time) waits for it
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        while not cache.exists():
            time.sleep(1.0)
    if not cache.exists():
        config = GeneratorConfig(events=n, seed=SEED, start_ms=parse_ms(START),
                                 span_ms=days * DAY_MS)
        source = generate_events(config)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        with partial.open("wb") as out:
            while chunk := list(islice(source, CHUNK)):
                pickle.dump(chunk, out, protocol=pickle.HIGHEST_PROTOCOL)
        partial.rename(cache)
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    cpu = 0.0
    done = alerts = metrics = 0
    clock = GcClock()
    gc.callbacks.append(clock)
    policy = GC_POLICIES[gc_policy]
    with tuned_gc(STATE_THRESHOLDS):
        policy.begin()
        for dicts in chunks(cache):
            parsed = [parse_dict(e) for e in dicts]
            policy.chunk_start()
            started = time.process_time()
            clock.timing = True
            for event in parsed:
                emitted, _ = engine.process(event, 0)
                alerts += len(emitted.alerts)
                metrics += len(emitted.metrics)
                policy.step()
            policy.chunk(len(parsed))
            clock.timing = False
            cpu += time.process_time() - started
            done += len(parsed)
        started = time.process_time()
        clock.timing = True
        emitted = engine.finish()
        clock.timing = False
        cpu += time.process_time() - started
        alerts += len(emitted.alerts)
        metrics += len(emitted.metrics)
        policy.end()
    gc.callbacks.remove(clock)
    return {"events": done, "cpu_s": cpu, "alerts": alerts, "metric_records": metrics,
            "gc_cpu_s": clock.cpu_s, "gc_young": clock.collections[0],
            "gc_middle": clock.collections[1], "gc_full": clock.collections[2]}


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
    empty = folder / "history-empty.jsonl"
    empty.touch()
    cpu, startup, alerts = replay_cpu(path)
    # The command's fixed cost in the process (settings, rules, eight output files made and
    # renamed) is the same call on an empty file, taken off.
    fixed, _, _ = replay_cpu(empty)
    return {"events": n, "cpu_s": cpu - fixed, "alerts": alerts, "fixed_cpu_s": fixed,
            "startup_cpu_s": startup}


def replay_cpu(path: Path) -> tuple[float, float, int]:
    """CPU seconds of `peakend replay path` in a child process, timed inside it from after
    its imports (`timed_replay`); the child's other CPU (interpreter start, imports); the
    alerts it wrote."""
    with tempfile.TemporaryDirectory(prefix="peakend-history-") as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-m", "bench.bench_history", "--timed-replay",
                               str(path), "--dir", out], check=True, cwd=ROOT,
                              capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        alerts = len((Path(out) / "alerts.jsonl").read_bytes().splitlines())
    inside = float(proc.stdout.strip().splitlines()[-1])
    whole = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return inside, whole - inside, alerts


# The replay path's collector (`--replay-gc`), passed to the replay children by environment:
# "policy" is the command's own; "off" disables automatic collection before the command
# starts (replay makes no reference cycles: `bench/replay_cycles.py`).
REPLAY_GC_VARIABLE = "PEAKEND_BENCH_REPLAY_GC"


def load_replay() -> None:
    """What `peakend replay` imports, loaded before any clock starts (pyarrow imports pandas
    at its first array, 0.6 s: an import too)."""
    import pyarrow

    import pipeline.cli
    import pipeline.replay  # noqa: F401

    pyarrow.array([0])


def timed_replay(path: str, out: str, collector: str = "policy") -> float:
    """`peakend replay path --output out` in this process, its modules imported first; the
    CPU seconds of the command itself. `collector`: "policy" (the command's own) or "off"
    (automatic collection disabled for the command's whole run, and left so)."""
    import pipeline.cli

    load_replay()
    if collector == "off":
        gc.disable()
    started = time.process_time()
    with open(os.devnull, "w") as quiet:
        saved, sys.stdout = sys.stdout, quiet
        try:
            status = pipeline.cli.main(["replay", path, "--output", out])
        finally:
            sys.stdout = saved
    spent = time.process_time() - started
    if status != 0:
        raise SystemExit(f"peakend replay {path} exited {status}")
    return spent


def one(path: str, days: int, rate: float, folder: str, gc_policy: str) -> dict[str, float]:
    """A single measurement in a fresh process (every row starts from the same heap)."""
    proc = subprocess.run([sys.executable, "-m", "bench.bench_history", "--one", path,
                           "--days", str(days), "--rate", str(rate), "--dir", folder,
                           "--gc", gc_policy],
                          check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result



def measured_alongside(path: str, lengths: list[int], rate: float, folder: str, policy: str
                       ) -> list[tuple[int, dict[str, float]]]:
    """The longest length once, and the shorter ones in turn, back to back, on the other CPU
    for as long as it runs: both see the same minutes of this machine (its speed moves by 20-50%
    from one minute to the next, and a run of a day lasts a second, one of 90 days minutes).
    The longest run's result first."""
    longest = max(lengths)
    shorter = [days for days in lengths if days != longest]
    outcome: list[dict[str, float]] = []
    worker = threading.Thread(target=lambda: outcome.append(
        one(path, longest, rate, folder, policy)))
    worker.start()
    beside: list[tuple[int, dict[str, float]]] = []
    while worker.is_alive():
        for days in shorter:
            beside.append((days, one(path, days, rate, folder, policy)))
    worker.join()
    if not outcome:
        raise SystemExit(f"the {longest} d run failed")
    return [(longest, outcome[0]), *beside]


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
    parser.add_argument("--gc", default="state",
                        help="collector policies of the core path, comma-separated, each run "
                             f"in turn ({', '.join(GC_POLICIES)}; default state)")
    parser.add_argument("--replay-gc", choices=("policy", "off"), default="policy",
                        help="the replay path's collector: the command's own policy, or off "
                             "for the whole command")
    parser.add_argument("--alongside", action="store_true",
                        help="run the shorter lengths back to back beside each run of the "
                             "longest, on the other CPU, instead of before it")
    parser.add_argument("--one", choices=("core", "replay"), help=argparse.SUPPRESS)
    parser.add_argument("--timed-replay", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timed_replay:
        print(timed_replay(args.timed_replay, args.dir,
                           os.environ.get(REPLAY_GC_VARIABLE, "policy")))
        return
    os.environ[REPLAY_GC_VARIABLE] = args.replay_gc  # the replay children read it
    if args.one:
        days = int(args.days)
        result = (run_core(days, args.rate, args.gc, Path(args.dir)) if args.one == "core"
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
    policies = args.gc.split(",")
    unknown = [name for name in policies if name not in GC_POLICIES]
    if unknown:
        parser.error(f"--gc: unknown policy {', '.join(unknown)} (known: {', '.join(GC_POLICIES)})")
    rows = [(path, policy) for path in paths
            for policy in (policies if path == "core" else
                           ["replay's own" if args.replay_gc == "policy" else "off"])]
    # Interleaved (1 d, 90 d, 1 d, 90 d, ..., and the rows in turn within each): on a shared
    # machine the load moves, and CPU time per event rises with it (caches), so every row and
    # length should see the same loads.
    per_event: dict[tuple[str, str, int], list[float]] = {
        (path, policy, days): [] for path, policy in rows for days in lengths}
    gc_per_event: dict[tuple[str, str, int], list[float]] = {key: [] for key in per_event}
    for attempt in range(args.repeat):
        runs = [days for days in lengths
                for _ in range(1 if days == longest else max(1, args.short_runs))]
        if args.alongside:
            runs = [longest]  # the shorter ones run beside it (`measured_alongside`)
        for days in runs:
            for path, policy in rows:
                policy_arg = policy if path == "core" else ""
                if args.alongside:
                    beside = measured_alongside(path, lengths, args.rate, args.dir, policy_arg)
                    for short_days, result in beside[1:]:
                        per_event[(path, policy, short_days)].append(
                            result["cpu_s"] / result["events"] * 1e6)
                    print(f"  run {attempt + 1}: {path} {len(beside) - 1} shorter runs beside "
                          f"the {longest} d run: " + ", ".join(
                              f"{r['cpu_s'] / r['events'] * 1e6:.0f}" for _, r in beside[1:])
                          + " us/event", flush=True)
                    result = beside[0][1]
                else:
                    result = one(path, days, args.rate, args.dir, policy_arg)
                key = (path, policy, days)
                per_event[key].append(result["cpu_s"] / result["events"] * 1e6)
                collector = ""
                if "fixed_cpu_s" in result:
                    # (beside other runs, the children's rusage mixes them: no start-up figure)
                    startup = ("" if args.alongside else
                               f"; start and imports apart: {result['startup_cpu_s']:.2f} s")
                    collector = (f" (in-process fixed cost taken off: "
                                 f"{result['fixed_cpu_s']:.2f} s{startup})")
                if "gc_cpu_s" in result:
                    gc_per_event[key].append(result["gc_cpu_s"] / result["events"] * 1e6)
                    collector = (f" (collector {gc_per_event[key][-1]:.1f}: "
                                 f"{int(result['gc_young'])}/{int(result['gc_middle'])}/"
                                 f"{int(result['gc_full'])} collections)")
                print(f"  run {attempt + 1}: {path} gc {policy} {days} d "
                      f"{int(result['events']):,} events, alerts {int(result['alerts'])}, "
                      f"{per_event[key][-1]:.1f} us/event{collector} (load {load()})",
                      flush=True)
    for path, policy in rows:
        for days in lengths:
            key = (path, policy, days)
            samples = per_event[key]
            collector = (f"  collector median {statistics.median(gc_per_event[key]):5.1f}"
                         if gc_per_event[key] else "")
            print(f"{path:6} gc {policy:10} {days:3d} d {events_for(days, args.rate):>9,} events"
                  f"  CPU us/event min {min(samples):7.1f}  median "
                  f"{statistics.median(samples):7.1f}{collector}", flush=True)
        first = lengths[0]
        for days in lengths[1:]:
            short, long = per_event[(path, policy, first)], per_event[(path, policy, days)]
            print(f"{path:6} gc {policy:10} {days} d / {first} d per event: "
                  f"min {min(long) / min(short):.2f}x, "
                  f"median {statistics.median(long) / statistics.median(short):.2f}x")
    print(f"load at end: {load()}")


if __name__ == "__main__":
    main()
