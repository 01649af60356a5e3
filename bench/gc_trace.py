"""The cyclic collector's share of each stream process's CPU, during `bench/bench_pipeline.py`.

    .venv/bin/python -m bench.gc_trace [--thresholds 5000,200,100] [--at-batch-ends]
        [--census] [--runner bench_pipeline|profile_worker] -- --events 200000 --rates 5000

Runs `bench.bench_pipeline` with the given arguments, with a `sitecustomize` module on
PYTHONPATH that records every collection of every Python process of the run (the benchmark,
the worker, its entry stage and sink): generation, duration, the process's CPU time at its end.
Then prints, for the worker and its two children, the young (generation 0) and middle
(generation 1) collections and the time in them against the CPU the process had used by its
last one (full collections left out of both). Full collections are listed apart: nearly all
are explicit (`gc.collect()` in Faust's RocksDB store on a rebalance and at stop, after the
measured phase). The shares cover the whole run (start-up, warm-up, the measured phase and the
latency phases), not the measured phase alone.

`--runner profile_worker` runs `bench.profile_worker` instead (its arguments after `--`, e.g.
`-- --events 200000 --days-before 2`) and splits the worker's collections by phase, each
phase ending when its line is printed: a first day against the steady state a worker reaches
once it holds and forgets days of state (docs/streaming.md, twenty-first round).

Two knobs for trying another policy without editing the worker (issue 15, docs/streaming.md
"eleventh round"):
- `--thresholds Y,M,O`: the thresholds the stream processes get where they would set
  `gcpolicy.STREAM_THRESHOLDS` (the worker, the entry stage) or `SINK_THRESHOLDS` (the sink);
- `--at-batch-ends`: automatic young collections off in the worker; a young collection (a middle
  one every M-th) runs after an agent acks a batch once Y net allocations are due, where fewer
  of a batch's objects are alive.

And `--census` (docs/streaming.md "seventeenth round"): every 10th young collection of each
process under a stream policy, the objects it is about to walk, counted by type (exact tuples
by their first item's type and their length), printed as the mean per sampled collection.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

SITECUSTOMIZE = '''
import gc, json, os, sys, time
_dir = os.environ["PEAKEND_GC_TRACE_DIR"]
_started = [0.0]
_log = [None]

_census = [0] if os.environ.get("PEAKEND_GC_TRACE_CENSUS") else None


def _count_young():
    # what this young collection is about to walk, by type (exact tuples by their first item's
    # type and length: entries, pairs, ...); every 10th young collection under a stream policy
    # [objects, the references they hold]: a collection visits every reference of every
    # object it walks (touching the referent's header, out of cache when it is old state)
    counts = {}
    for obj in gc.get_objects(0):
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if kind is tuple and obj:
            name += f"[{type(obj[0]).__name__} x{len(obj)}]"
        held = counts.setdefault(name, [0, 0])
        held[0] += 1
        held[1] += len(gc.get_referents(obj))
    with open(os.path.join(_dir, f"{os.getpid()}.census"), "a") as out:
        out.write(json.dumps(counts) + "\\n")


def _trace(phase, info):
    if phase == "start":
        if (_census is not None and info["generation"] == 0
                and gc.get_threshold()[0] >= 10_000):  # a stream policy, not start-up's
            _census[0] += 1
            if _census[0] % 10 == 5:
                _count_young()
        _started[0] = time.perf_counter()
        return
    spent = time.perf_counter() - _started[0]
    if _log[0] is None:
        _log[0] = open(os.path.join(_dir, f"{os.getpid()}.log"), "a", buffering=1)
        _log[0].write("# " + " ".join((getattr(sys, "argv", None) or [])[:3]) + "\\n")
    _log[0].write(f"{time.process_time():.4f} {info['generation']} {spent * 1e3:.3f} "
                  f"{time.time():.3f}\\n")

gc.callbacks.append(_trace)
_wanted = os.environ.get("PEAKEND_GC_TRACE_THRESHOLDS")
if _wanted:
    _set = gc.set_threshold
    _new = tuple(int(x) for x in _wanted.split(","))

    def _replace(*thresholds):
        from pipeline.core import gcpolicy
        policies = (gcpolicy.STREAM_THRESHOLDS, getattr(gcpolicy, "SINK_THRESHOLDS", None))
        _set(*(_new if tuple(thresholds) in policies else thresholds))
    gc.set_threshold = _replace
if os.environ.get("PEAKEND_GC_TRACE_AT_BATCH_ENDS"):
    def _patch():
        from pipeline.core.gcpolicy import STREAM_THRESHOLDS
        from pipeline.stream import agent_loop
        young, middle, _ = (tuple(int(x) for x in _wanted.split(",")) if _wanted
                            else STREAM_THRESHOLDS)
        run = agent_loop.AgentLoop.run

        class Stream:
            def __init__(self, stream):
                self.stream = stream

            def __getattr__(self, name):
                return getattr(self.stream, name)

            async def ack(self, event):
                await self.stream.ack(event)
                counts = gc.get_count()
                if counts[0] >= young:
                    gc.collect(1 if counts[1] >= middle else 0)

        async def run_collecting(self, stream):
            gc.set_threshold(1 << 30, middle, 100)
            await run(self, Stream(stream))
        agent_loop.AgentLoop.run = run_collecting
    import builtins
    _import = builtins.__import__

    def _hook(name, *args, **kwargs):
        module = _import(name, *args, **kwargs)
        if name == "pipeline.stream.agent_loop" and not getattr(_hook, "done", False):
            _hook.done = True
            _patch()
        return module
    builtins.__import__ = _hook
'''


ROLES = ("worker", "entry", "stage-two", "sink")


def traced_processes(folder: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(role, log, its lines) of every stream process the trace logged (the first line of a
    log names the command: `# -m worker ...`)."""
    for log in sorted(folder.glob("*.log")):
        text = log.read_text().splitlines()
        role = next((r for r in ROLES if text and f" {r}" in text[0]), None)
        if role is not None:
            yield role, log, text


def summarize(folder: Path) -> list[str]:
    lines = []
    for role, log, text in traced_processes(folder):
        count: defaultdict[int, int] = defaultdict(int)
        spent: defaultdict[int, float] = defaultdict(float)
        cpu = 0.0
        for row in text[1:]:
            at, generation, ms = row.split()[:3]
            count[int(generation)] += 1
            spent[int(generation)] += float(ms) / 1e3
            cpu = float(at)
        cpu -= spent[2]  # the full collections: start-up, rebalances, stop
        share = (spent[0] + spent[1]) / cpu * 100 if cpu > 0 else 0.0
        lines.append(f"{role}: young {count[0]} in {spent[0]:.2f} s, middle {count[1]} in "
                     f"{spent[1]:.2f} s = {share:.1f}% of its other {cpu:.1f} s of CPU; full "
                     f"{count[2]} in {spent[2]:.2f} s")
        census = log.with_suffix(".census")
        if census.exists():
            lines.extend(young_census(role, census))
    return lines


def young_census(role: str, path: Path, top: int = 15) -> list[str]:
    """The objects a young collection of `role` walks, by type: the mean of the sampled
    collections, the `top` types."""
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    total: Counter[str] = Counter()
    refs: Counter[str] = Counter()
    for sample in samples:
        for name, (objects, references) in sample.items():
            total[name] += objects
            refs[name] += references
    n = len(samples)
    lines = [f"  {role}, a young collection walks {sum(total.values()) / n:,.0f} objects "
             f"holding {sum(refs.values()) / n:,.0f} references (mean of {n} sampled); "
             "by objects:"]
    lines += [f"    {count / n:9,.0f}  {name}  ({refs[name] / n:,.0f} references)"
              for name, count in total.most_common(top)]
    lines.append("    by references held:")
    lines += [f"    {count / n:9,.0f}  {name}  ({total[name] / n:,.0f} objects)"
              for name, count in refs.most_common(top) if count]
    return lines


def by_phase(folder: Path, ends: list[tuple[str, float]], role: str = "worker") -> list[str]:
    """`role`'s collections phase by phase: `ends` are (name, wall time it ended), in order;
    a phase runs from the end of the one before (the first from the process's start). Per
    phase: young and middle collections, their time, the mean young collection, and their
    share of the process's CPU between its first and last collection in the phase."""
    text = next((text for name, _, text in traced_processes(folder) if name == role), None)
    if text is None:
        return []
    fields = [row.split() for row in text[1:]]
    rows = [(float(r[0]), int(r[1]), float(r[2]) / 1e3, float(r[3])) for r in fields if len(r) > 3]
    lines = []
    start = float("-inf")
    for name, end in ends:
        inside = [r for r in rows if start < r[3] <= end]
        start = end
        young = [r[2] for r in inside if r[1] == 0]
        middle = [r[2] for r in inside if r[1] == 1]
        cpu = inside[-1][0] - inside[0][0] if len(inside) > 1 else 0.0
        share = 100 * (sum(young) + sum(middle)) / cpu if cpu > 0 else 0.0
        mean = 1e3 * sum(young) / len(young) if young else 0.0
        lines.append(f"{role}, {name}: young {len(young)} in {sum(young):.2f} s (mean {mean:.1f} "
                     f"ms), middle {len(middle)} in {sum(middle):.2f} s = {share:.1f}% of its "
                     f"{cpu:.1f} s of CPU between its first and last collection")
    return lines


# The runners gc_trace can wrap, by name: their modules (under `profile_worker` the worker's
# collections are also split by phase).
RUNNERS = {"bench_pipeline": "bench.bench_pipeline", "profile_worker": "bench.profile_worker"}


def phase_name(line: str) -> str | None:
    """The phase a line of `bench.profile_worker` ends, if it ends one."""
    if line.startswith("unprofiled phase"):
        return line.split(":")[0]
    if " events/s (" in line:  # the profiled phase's line: "9,080 events/s (200,000 in 22 s)"
        return "profiled phase"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", help="Y,M,O in place of the stream and sink policies")
    parser.add_argument("--at-batch-ends", action="store_true")
    parser.add_argument("--census", action="store_true",
                        help="also count what young collections walk, by type (every 10th; "
                             "its own time is outside the collection times, inside the CPU)")
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="bench_pipeline",
                        help="what to run: bench.bench_pipeline, or bench.profile_worker "
                             "(then the worker's collections are also given phase by phase: "
                             "with --days-before, a first day against a steady state)")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    passed = [a for a in args.bench_args if a != "--"]
    with tempfile.TemporaryDirectory(prefix="gc-trace-") as tmp:
        folder = Path(tmp)
        (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = dict(os.environ, PEAKEND_GC_TRACE_DIR=tmp,
                   PYTHONPATH=os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")])))
        if args.thresholds:
            env["PEAKEND_GC_TRACE_THRESHOLDS"] = args.thresholds
        if args.at_batch_ends:
            env["PEAKEND_GC_TRACE_AT_BATCH_ENDS"] = "1"
        if args.census:
            env["PEAKEND_GC_TRACE_CENSUS"] = "1"
        module = RUNNERS[args.runner]
        ends: list[tuple[str, float]] = []
        with subprocess.Popen([sys.executable, "-m", module, *passed], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
            assert child.stdout is not None and child.stderr is not None
            for line in child.stdout:  # read as it comes: a phase ends when its line does
                line = line.rstrip("\n")
                name = phase_name(line) if args.runner == "profile_worker" else None
                if name is not None:
                    ends.append((name, time.time()))
                    print(line[:160])
                elif line.startswith(("end to end", "offered")) and (
                        "journey" in line or line.startswith("end")):
                    print(line)
            errors = child.stderr.read()
        if child.returncode:
            print(errors[-2000:], file=sys.stderr)
            return child.returncode
        print(f"collector (thresholds {args.thresholds or 'the processes own policies'}"
              f"{', at batch ends' if args.at_batch_ends else ''}):")
        for line in summarize(folder):
            print("  " + line)
        if ends:
            print("the worker's collections by phase:")
            for line in by_phase(folder, ends):
                print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
