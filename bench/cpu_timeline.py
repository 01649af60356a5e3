"""Second by second, how busy each process on the machine is during a throughput run: the
worker (and its busiest threads), its entry, stage-two and sink children, the broker,
ClickHouse and the load generator.

    .venv/bin/python -m bench.cpu_timeline [--events 60000] [--span-hours 24]

Why: a CPU profile says where a process spends its time, not whether it is the one the run
waits for. This shows whether the worker's main thread is saturated (then its CPU per event
bounds the rate) or waits while the other processes hold the cores (then only the machine's
CPU per event, all processes together, does), and which stage holds the records still to do.
The run is `bench/bench_pipeline.py`'s throughput phase after its warm-up; CPU is read from
/proc every second (user + system); the generator's column includes this sampler's own lag
readings (kafka-python).
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.bench_pipeline import (
    EventSource,
    child_pids,
    child_role,
    running_stream,
    throughput,
    warm_up,
)
from bench.host import cpu_model, loadavg, proc_cpu_seconds, stack_servers_cpu_seconds
from pipeline.settings import Settings
from pipeline.stream.lag import LagReader
from tests.support.stack import ClickHouseUrls

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid`, by `name/tid`."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii",
                      errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / TICK
    return out


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]  # process -> CPU seconds so far
    threads: dict[str, float] = field(default_factory=dict)
    behind: dict[str, int] = field(default_factory=dict)  # consumer group -> records


def behind_by_group(lag: dict[str, int], app_id: str) -> dict[str, int]:
    """`LagReader.read()` ("group/topic" -> records) summed by stage: entry, agents, sink."""
    out = {"entry": 0, "agents": 0, "sink": 0}
    for name, records in lag.items():
        group = name.split("/", 1)[0]
        stage = ("entry" if group == f"{app_id}-entry"
                 else "agents" if group in (app_id, f"{app_id}-stage-two") else "sink")
        out[stage] += records
    return out


def sampler(worker: int, children: dict[str, int], every_s: float, out: list[Sample],
            stop: threading.Event, settings: Settings) -> None:
    with LagReader(settings) as lags:
        while not stop.is_set():
            cpu = {"worker": proc_cpu_seconds(worker), "generator": time.process_time(),
                   **stack_servers_cpu_seconds()}
            for role, pid in children.items():
                cpu[role] = proc_cpu_seconds(pid)
            out.append(Sample(time.perf_counter(), cpu, thread_cpu(worker),
                              behind_by_group(lags.read(), settings.app_id)))
            stop.wait(every_s)


def report(samples: list[Sample]) -> list[str]:
    names = ["worker", "entry", "stage-two", "sink", "kafka", "clickhouse", "generator"]
    lines = ["| s | " + " | ".join(names) + " | all | busiest worker threads | records behind: "
             "entry / agents / sink |", "|---:|" + "---:|" * (len(names) + 1) + "---|---|"]
    busy: dict[str, list[float]] = {n: [] for n in [*names, "all"]}
    for a, b in itertools.pairwise(samples):
        dt = b.at - a.at
        shares = {n: (b.cpu.get(n, 0.0) - a.cpu.get(n, 0.0)) / dt for n in names}
        total = sum(shares.values())
        threads = sorted(((b.threads[k] - a.threads.get(k, 0.0)) / dt, k) for k in b.threads)
        lines.append(f"| {a.at - samples[0].at:.0f} | "
                     + " | ".join(f"{100 * shares[n]:.0f}%" for n in names)
                     + f" | {100 * total:.0f}% | "
                     + ", ".join(f"{k.split('/')[0]} {100 * v:.0f}%"
                                 for v, k in reversed(threads[-2:]))
                     + " | " + " / ".join(f"{n:,}" for n in a.behind.values()) + " |")
        if shares["worker"] > 0.2:  # the worker at work, not the settle time after
            for n in names:
                busy[n].append(shares[n])
            busy["all"].append(total)
    lines.append("")
    lines.append("Mean over the seconds the worker was at work: " + ", ".join(
        f"{n} {100 * sum(v) / len(v):.0f}%" for n, v in busy.items() if v)
        + " of one core (the machine has " + f"{os.cpu_count()})")
    return lines


def main() -> int:
    from tests.support.stack import stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--span-hours", type=float, default=24.0)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    args = parser.parse_args()
    env = stack_env()
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    source = EventSource(events_per_s=args.events / (args.span_hours * 3600))
    print(f"cpu_timeline: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
          f"load {loadavg()}", flush=True)
    with running_stream(env["PEAKEND_KAFKA_BOOTSTRAP"], ch) as stream:
        warm_up(stream, source)
        phase = source.phase(args.events)  # made before the sampling starts
        worker = stream.workers[0].proc.pid
        children = {child_role(pid): pid for pid in child_pids(worker)}
        samples: list[Sample] = []
        stop = threading.Event()
        thread = threading.Thread(target=sampler, daemon=True, args=(
            worker, children, args.every, samples, stop, stream.settings()))
        thread.start()
        run = throughput(stream, phase)
        stop.set()
        thread.join()
    print(f"{run.rate:,.0f} events/s ({run.events:,} in {run.seconds:.1f} s), worker + children "
          f"{run.cpu_per_event_us:.0f} us/event, load {run.load}")
    print("\n".join(report(samples)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
