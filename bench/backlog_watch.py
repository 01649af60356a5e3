"""Where a backlog waits: consumer-group lag and each worker process's CPU, second by second.

    .venv/bin/python -m bench.backlog_watch [--events 200000] [--span-hours 24]
                                            [--env PEAKEND_STREAM_BATCH_RECORDS=4 ...]

Starts one worker on the local stack (`scripts/stack.sh start`) as `bench/bench_pipeline.py`
does, warms it up, sends `--events` of the generator's default mix as fast as the producer can
(in a thread) and prints, once a second until every group has caught up: the lag of each
consumer group (records: the internal topics' records are batch records of many events) and
the CPU share of the worker process and of its children (the entry stage, the sink) over that
second. A stage whose input lag grows while its process is far below one CPU is waiting, not
working (docs/streaming.md, eighth round). `--env NAME=VALUE` sets worker variables.
"""

from __future__ import annotations

import argparse
import threading
import time

from bench.bench_pipeline import (
    EventSource,
    child_pids,
    child_role,
    produce,
    running_stream,
    warm_up,
)
from bench.host import loadavg, proc_cpu_seconds
from pipeline.stream.lag import LagReader


def short(group_topic: str, tag: str) -> str:
    """A lag reading's name without the run's tag."""
    return group_topic.replace(f"e2e-{tag}-", "").replace(f"e2e.{tag}.", "")


def main() -> None:
    from tests.support.stack import ClickHouseUrls, stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--span-hours", type=float, default=24.0)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    env = stack_env()
    ch = ClickHouseUrls(env["PEAKEND_CLICKHOUSE_URL"], env["PEAKEND_CLICKHOUSE_READER_URL"],
                        env["PEAKEND_CLICKHOUSE_ADMIN_URL"])
    source = EventSource(events_per_s=args.events / (args.span_hours * 3600))
    with running_stream(env["PEAKEND_KAFKA_BOOTSTRAP"], ch, workers=1, **extra) as stream:
        warm_up(stream, source)
        phase = source.phase(args.events)
        stream.begin(phase)
        settings = stream.settings()
        tag = settings.app_id.split("-", 1)[1]
        worker = stream.workers[0].proc.pid
        pids = {"worker": worker, **{child_role(pid): pid for pid in child_pids(worker)}}
        print(f"backlog_watch: {args.events:,} events, {extra or 'defaults'}; load {loadavg()}")
        sender = threading.Thread(target=produce, args=(settings.kafka_bootstrap,
                                                        stream.setup.topic, phase))
        started = last_t = time.perf_counter()
        last_cpu = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
        sender.start()
        caught_up = 0
        with LagReader(settings) as reader:
            while caught_up < 2:
                time.sleep(1.0)
                lag = reader.read()
                now = time.perf_counter()
                cpu = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
                shares = "  ".join(f"{name} {(cpu[name] - last_cpu[name]) / (now - last_t):4.0%}"
                                   for name in pids)
                lags = " ".join(f"{short(k, tag)}={v}" for k, v in sorted(lag.items()) if v)
                print(f"{now - started:6.1f} s  {shares}  | lag {lags or 'none'}", flush=True)
                last_cpu, last_t = cpu, now
                caught_up = caught_up + 1 if not any(lag.values()) and not sender.is_alive() else 0
        sender.join()
        print(f"caught up after {time.perf_counter() - started - 2:.1f} s; load {loadavg()}")


if __name__ == "__main__":
    main()
