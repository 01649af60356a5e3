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
does. Each batch's outputs are coalesced per partition as the journeys agent does (its journey
records built once per flush: `defer_records`). Per day: CPU per event of processing, coalescing
and writing (the parse left out), of it the collector's, the process's resident memory at the
day's end, and per event the journey records sent, the state pairs written and their bytes
(`--sizes`: the closed sessions' share of them, encoded apart inside the timed region).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    parser.add_argument("--profile", type=whole(1), default=None, metavar="N",
                        help="also print each day's N functions of most own time (cProfile; "
                             "with PEAKEND_PURE_CORE=1 the core's functions show by name)")
    parser.add_argument("--sizes", action="store_true",
                        help="also encode each key's closed sessions apart for their share of "
                             "the state bytes (costs CPU: leave out when timing)")
    args = parser.parse_args()
    from bench.bench_journey_state import closed_session_bytes
    from bench.bench_pipeline import EventSource
    from pipeline import core_build
    from pipeline.contract import Rejected, parse_event
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tuned_gc
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.settings import Settings
    from pipeline.stream.partition import PartitionProcessor, coalesce
    from pipeline.stream.state_writer import encode

    print(f"bench_stage_one_days: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}; "
          f"{args.events:,} generated events a day, batches of {args.batch:,}, "
          f"{args.partitions} partitions", flush=True)
    source = EventSource(events_per_s=args.events / 86_400)
    core = Settings.from_env().core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    # as the journeys agent runs them: records built per flush, where the processor can
    # (`defer_records`, docs/streaming.md, twenty-second round; trees from before build them
    # per event), and each batch's outputs coalesced
    deferred = hasattr(PartitionProcessor, "drain_journeys")
    processors = {p: (PartitionProcessor(p, core, rules, defer_records=True) if deferred
                      else PartitionProcessor(p, core, rules)) for p in range(args.partitions)}
    # the collector's time while `timing` is set: the parse's collections are not stage one's
    collector = GcClock()
    gc.callbacks.append(collector)
    with tuned_gc(STREAM_THRESHOLDS):
        for day in range(1, args.days + 1):
            values = source.phase(args.events).values
            spent = 0.0
            collected_before = collector.cpu_s
            applied = 0
            pairs = written = of_sessions = records = 0
            profiler = cProfile.Profile() if args.profile else None
            for start in range(0, len(values), args.batch):
                batch = []
                for value in values[start:start + args.batch]:
                    try:
                        batch.append(parse_event(value))
                    except Rejected:
                        continue  # the generator's invalid share: dead letters, no state
                started = time.process_time()
                collector.timing = True
                if profiler is not None:
                    profiler.enable()
                outputs: dict[int, list[Any]] = {}
                for event in batch:
                    part = partition_for(event.journey_key, args.partitions)
                    outputs.setdefault(part, []).append(processors[part].process(event))
                for part in sorted(outputs):
                    if deferred:
                        outputs[part].append(processors[part].drain_journeys())
                    records += len(coalesce(outputs[part]).journeys)
                    for _, state in processors[part].dirty_state():
                        value = encode({"p": part, "s": state})
                        pairs += 1
                        written += len(value)
                        if args.sizes and isinstance(state, dict):
                            of_sessions += closed_session_bytes(state)
                if profiler is not None:
                    profiler.disable()
                collector.timing = False
                spent += time.process_time() - started
                applied += len(batch)
            del values
            n = max(1, applied)
            collected = collector.cpu_s - collected_before
            print(f"day {day}: {1e6 * spent / n:.2f} us per event (collector "
                  f"{1e6 * collected / n:.2f}); resident {proc_rss_mib():,.0f} MiB; "
                  f"journey keys held {sum(len(p.tracker.keys()) for p in processors.values()):,}; "
                  f"journey records {records / n:.2f}, state pairs {pairs / n:.2f} and bytes "
                  f"{written / n:,.0f} per event"
                  + (f" (closed sessions {of_sessions / max(1, written):.0%})" if args.sizes
                     else ""), flush=True)
            if profiler is not None:
                print(own_times(profiler, n, args.profile), flush=True)
    return 0


def own_times(profiler: cProfile.Profile, events: int, top: int) -> str:
    """The `top` functions of most own time in `profiler`, in us per event (profiled time)."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = sorted(((tottime, calls, func) for func, (_, calls, tottime, _, _)
                   in stats.items()), reverse=True)[:top]
    return "\n".join(f"  {1e6 * tottime / events:7.2f} us  {calls / events:6.2f} calls  "
                     f"{Path(func[0]).name}:{func[1]}({func[2]})" for tottime, calls, func in rows)


if __name__ == "__main__":
    raise SystemExit(main())
