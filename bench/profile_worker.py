"""A py-spy profile of the real worker (and its children) during the throughput phase of
`bench/bench_pipeline.py`, with the Kafka records written per input event per topic.

    .venv/bin/python -m bench.profile_worker [--events 60000] [--rate 50] [--out /tmp/prof]
        [--native] [--days-before 2]
    .venv/bin/python -m bench.spy_summary /tmp/prof/worker.txt

The stream is started and warmed up exactly as bench_pipeline.py does it; py-spy (which must
be installed: `.venv/bin/pip install py-spy`) is attached to the worker process and its
children (entry stage, sink) only once the warm-up has caught up, and stopped when the
measured events are all in ClickHouse, so the profile holds the steady-state work of those
events and nothing else.

`--days-before N`: N unprofiled phases of `--events` first, each the next span of event time
(a day by default), so the profiled one is the stream's steady state: the state of the days
before held, and forgotten as the allowed lateness (a day) passes, which a first day never
reaches (docs/streaming.md, eighteenth round). Each phase's rate and CPU are printed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from bench.bench_pipeline import (
    EventSource,
    Phase,
    Stream,
    Throughput,
    child_pids,
    child_role,
    running_stream,
    throughput,
    warm_up,
)
from bench.host import loadavg
from pipeline.cliargs import whole
from tests.support.stack import ClickHouseUrls


def spy(pid: int, output: Path, rate: int, native: bool = False) -> subprocess.Popen[bytes]:
    """py-spy on `pid`: by default without stopping it (`--nonblocking`); `native`: with the C
    frames (compiled core, orjson, the collector), which py-spy reads only by stopping the
    process at each sample, so it runs slower while sampled."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    how = ["--native"] if native else ["--nonblocking"]
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", *how,
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profiled_throughput(stream: Stream, phase: Phase, out: Path, rate: int = 50,
                        native: bool = False) -> tuple[Throughput, dict[str, Path]]:
    """`throughput` of `phase` with py-spy attached to the worker and its children for exactly
    that phase (attach after the warm-up, stop when the events are all in ClickHouse); returns
    the run and the profile of each process ("worker", "entry", "stage-two", "sink"), py-spy's
    raw format."""
    out.mkdir(parents=True, exist_ok=True)
    worker = stream.workers[0].proc.pid
    profiles = {"worker": out / "worker.txt"}
    spies = [spy(worker, profiles["worker"], rate, native)]
    for pid in child_pids(worker):
        name = child_role(pid)
        profiles[name] = path = out / f"{name}.txt"
        spies.append(spy(pid, path, rate, native))
    try:
        t = throughput(stream, phase)
    finally:
        for each in spies:  # py-spy writes its file when interrupted
            each.send_signal(signal.SIGINT)
        for each in spies:
            each.wait(timeout=60)
    return t, {name: path for name, path in profiles.items() if path.exists()}


def main() -> None:
    from tests.support.stack import stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--span-hours", type=float, default=24.0)
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("/tmp/peakend-profile"))
    parser.add_argument("--native", action="store_true",
                        help="C frames too (py-spy stops the processes at each sample)")
    parser.add_argument("--days-before", type=whole(0), default=0,
                        help="unprofiled phases (a span of event time each) before the profiled "
                             "one")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = stack_env()
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    source = EventSource(events_per_s=args.events / (args.span_hours * 3600))
    with running_stream(env["PEAKEND_KAFKA_BOOTSTRAP"], ch) as stream:
        warm_up(stream, source)
        for day in range(args.days_before):
            before = throughput(stream, source.phase(args.events))
            print(f"unprofiled phase {day + 1}: {before.rate:,.0f} events/s, "
                  f"{before.cpu_split()}; minor page faults {before.fault_split()}; "
                  f"peak RSS {before.peak_rss()}; records per event: "
                  + ", ".join(
                      f"{k} {v / before.events:.3f}" for k, v in sorted(before.records.items())
                      if v), flush=True)
        # after the warm-up: each phase starts after the one before in event time (made
        # before, the measured events were a day behind the warm-up's stream time)
        phase = source.phase(args.events)
        load_before = loadavg()
        t, profiles = profiled_throughput(stream, phase, args.out, args.rate, args.native)
    print(f"{t.rate:,.0f} events/s ({t.events:,} in {t.seconds:.1f} s); worker + children CPU "
          f"{t.cpu_per_event_us:.0f} us/event; peak RSS {t.peak_rss()}; load {load_before} "
          f"before, {t.load} after")
    per_event = {k: v / t.events for k, v in sorted(t.records.items()) if v}
    print("Kafka records written per input event: "
          + ", ".join(f"{k} {v:.3f}" for k, v in per_event.items()))
    print("profiles: " + ", ".join(str(path) for path in profiles.values()))


if __name__ == "__main__":
    main()
