"""The ClickHouse sink child's own CPU end to end, at two (or more) versions of the code.

    .venv/bin/python -m bench.sink_ab --rev 656a039 --rev HEAD --rev 656a039 --rev HEAD
        [--events 20000]

`bench/worker_ab.py` gives worker + sink CPU together; this separates them. Each version is
exported as `worker_ab` does it (`git archive`, or `WORKTREE`) with this checkout's
`bench/bench_pipeline.py` and this file copied in, and measured against the local stack in turn
(give the revisions alternating, A B A B, so that both see the same load): a fresh stream
(`bench_pipeline.running_stream`, one worker and its `peakend sink` child), warmed up, then the
generator's default mix over `--span-hours` of event time produced as fast as possible; CPU
(user + system, /proc) of the worker process and of its sink child is read from the first send
until every consumer group is at the end of its topics (`bench_pipeline.throughput`), then over
`--idle` seconds with nothing to do (the sink's fixed costs: polling, probes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.host import cpu_model, loadavg, proc_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"sink CPU ([\d.]+) us/event, worker CPU ([\d.]+) us/event, "
                  r"([\d,]+) events/s; sink idle ([\d.]+)% of a core; load ([\d. ]+)")


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(pid)
    return total


def measure(events: int, span_hours: float, idle: float) -> None:
    """One version (the one this file sits in): prints one LINE."""
    from bench.bench_pipeline import (
        EventSource,
        child_pids,
        running_stream,
        throughput,
        warm_up,
    )
    from tests.support.stack import ClickHouseUrls, stack_env

    env = stack_env()
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    source = EventSource(events_per_s=events / (span_hours * 3600))
    with running_stream(env["PEAKEND_KAFKA_BOOTSTRAP"], ch) as stream:
        warm_up(stream, source)
        phase = source.phase(events)  # after the warm-up's events in event time
        worker = stream.workers[0].proc.pid
        sinks = child_pids(worker)
        sink0, worker0 = _cpu(sinks), _cpu([worker])
        result = throughput(stream, phase)
        sink1, worker1 = _cpu(sinks), _cpu([worker])
        if child_pids(worker) != sinks:
            raise SystemExit("the sink child was restarted during the measurement")
        time.sleep(idle)
        sink_idle = (_cpu(sinks) - sink1) / idle
    n = result.events
    print(f"sink CPU {(sink1 - sink0) / n * 1e6:.1f} us/event, worker CPU "
          f"{(worker1 - worker0) / n * 1e6:.1f} us/event, {result.rate:,.0f} events/s; "
          f"sink idle {sink_idle * 100:.1f}% of a core; load {loadavg()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", action="append", default=[],
                        help="a git revision, or WORKTREE; give them alternating")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--span-hours", type=float, default=24.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--measure", action="store_true",
                        help="measure the version this file sits in (what --rev runs)")
    args = parser.parse_args()
    if args.measure:
        measure(args.events, args.span_hours, args.idle)
        return
    from bench.worker_ab import export

    print(f"{os.cpu_count()} vCPU {cpu_model()}, Python {sys.version.split()[0]}; started "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {loadavg()}", flush=True)
    env = {**os.environ, "PEAKEND_STACK_DIR": os.environ.get("PEAKEND_STACK_DIR",
                                                             str(ROOT / ".stack"))}
    with tempfile.TemporaryDirectory(prefix="peakend-sink-ab-") as tmp:
        for number, rev in enumerate(args.rev):
            tree = Path(tmp) / f"v{number}"
            described = export(rev, tree)
            (tree / "bench" / "sink_ab.py").write_bytes(Path(__file__).read_bytes())
            done = subprocess.run(
                [sys.executable, "-m", "bench.sink_ab", "--measure", "--events",
                 str(args.events), "--span-hours", str(args.span_hours), "--idle",
                 str(args.idle)],
                cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                timeout=3600, check=False)
            found = LINE.search(done.stdout)
            if found is None:
                print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{rev}: no measurement in the output")
            print(f"{rev} ({described}): {found.group(0)}", flush=True)


if __name__ == "__main__":
    main()
