"""Stage one's CPU and memory day after day, without servers (issue 15's steady state, issue 13
item 5; docs/streaming.md, twenty-first round).

    .venv/bin/python -m bench.bench_stage_one_days [--events 200000] [--days 3] [--batch 2000]
        [--partitions 4]

Each day is the next `--events` of the generator's default mix over one day of event time
(`bench.bench_pipeline.EventSource`: what `bench.profile_worker --days-before` sends), parsed a
batch at a time (so only what stage one keeps stays alive, as in the worker), fed to one
`PartitionProcessor` per partition, and after each batch every changed key is written as the
worker writes it (`dirty_state`, each pair encoded by `state_writer.encode`). Under the worker's
collector policy. From the second day on, stage one holds the day before and forgets it as
stream time moves (journeys closed and evicted, their keys tombstoned), which a first day never
does. Per day: CPU per event of processing and writing (the parse left out), of it the
collector's, and the process's resident memory at the day's end.
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime

from bench.bench_history import GcClock
from bench.host import cpu_model, loadavg, proc_rss_mib
from pipeline.cliargs import whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=whole(1), default=200_000, help="events per day")
    parser.add_argument("--days", type=whole(1, 30), default=3)
    parser.add_argument("--batch", type=whole(1), default=2000,
                        help="events per batch (the worker's at the benchmarks' rate)")
    parser.add_argument("--partitions", type=whole(1, 10_000), default=4)
    args = parser.parse_args()
    from bench.bench_pipeline import EventSource
    from pipeline import core_build
    from pipeline.contract import Rejected, parse_event
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tuned_gc
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.settings import Settings
    from pipeline.stream.partition import PartitionProcessor
    from pipeline.stream.state_writer import encode

    print(f"bench_stage_one_days: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}; "
          f"{args.events:,} generated events a day, batches of {args.batch:,}, "
          f"{args.partitions} partitions", flush=True)
    source = EventSource(events_per_s=args.events / 86_400)
    core = Settings.from_env().core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    processors = {p: PartitionProcessor(p, core, rules) for p in range(args.partitions)}
    # the collector's time while `timing` is set: the parse's collections are not stage one's
    collector = GcClock()
    gc.callbacks.append(collector)
    with tuned_gc(STREAM_THRESHOLDS):
        for day in range(1, args.days + 1):
            values = source.phase(args.events).values
            spent = 0.0
            collected_before = collector.cpu_s
            applied = 0
            for start in range(0, len(values), args.batch):
                batch = []
                for value in values[start:start + args.batch]:
                    try:
                        batch.append(parse_event(value))
                    except Rejected:
                        continue  # the generator's invalid share: dead letters, no state
                started = time.process_time()
                collector.timing = True
                touched: set[int] = set()
                for event in batch:
                    part = partition_for(event.journey_key, args.partitions)
                    processors[part].process(event)
                    touched.add(part)
                for part in sorted(touched):
                    for _, state in processors[part].dirty_state():
                        encode({"p": part, "s": state})
                collector.timing = False
                spent += time.process_time() - started
                applied += len(batch)
            del values
            n = max(1, applied)
            collected = collector.cpu_s - collected_before
            print(f"day {day}: {1e6 * spent / n:.2f} us per event (collector "
                  f"{1e6 * collected / n:.2f}); resident {proc_rss_mib():,.0f} MiB; "
                  f"journey keys held {sum(len(p.tracker.keys()) for p in processors.values()):,}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
