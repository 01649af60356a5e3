"""What follow-up cases cost: the journey engine alone against the engine + `FollowupTracker`
(the work `peakend replay` and the stream's follow-up stage add), on generated journeys.

    .venv/bin/python -m bench.bench_followups [--events N] [--seed S] [--repeat R]
    .venv/bin/python -m bench.bench_followups --days 3 [--events 200000] [--batch 2000]

Generates N events with the generator's default persona mix over 36 hours of event time (not
timed), parses them, then measures the CPU time (best of R runs, one core; CPU time because the
machine is shared): (a) `ExperienceEngine.process` over every event; (b) the same plus
`FollowupTracker.apply` on every journey record it emits and every survey answer / outcome event,
as replay does. Prints events/s of both, the tracker's share, the inputs the tracker saw, the
cases it opened and the customers it holds at the end.

`--days D`: the stream's shape instead, day after day. `--events` per day of event time over D
days, through the engine first (not timed) for the tracker's inputs, then the inputs of each
`--batch` events at a time as the follow-up stage takes them: `apply`, `advance` to the batch's
latest time, and every changed customer snapshotted. Prints the CPU per event of each day and
what the tracker holds after it: how its cost grows with the days of history held (a first day
holds none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime

import pipeline.core_build
from jobs.generate import GeneratorConfig, generate_events
from jobs.journey_builder import HOUR
from pipeline.cliargs import whole
from pipeline.contract import parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import TouchpointEvent
from pipeline.core.followups import FollowupEvent, FollowupJourney, FollowupTracker
from pipeline.followup_rules import horizon_ms, load_rules
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()


def run(events: list[TouchpointEvent], followups: bool) -> tuple[float, dict[str, int]]:
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    rules = load_rules()
    config = engine.config.journeys
    tracker = FollowupTracker(rules, horizon_ms(rules, config.max_length_ms,
                                                config.allowed_lateness_ms))
    inputs = 0
    cases: set[str] = set()
    started = time.process_time()  # CPU time: the machine is shared, wall time is noise
    for event in events:
        emitted, reason = engine.process(event, 0, arrived_ms=event.occurred_ms)
        if not followups:
            continue
        journeys = [FollowupJourney.from_record(r) for r in emitted.journeys]
        signal = FollowupEvent.from_event(event) if reason is None else None
        signals = [] if signal is None else [signal]
        inputs += len(journeys) + len(signals)
        if journeys or signals:
            for case in tracker.apply(journeys, signals):
                if case.status != "withdrawn":
                    cases.add(case.case_id)
    seconds = time.process_time() - started
    return seconds, {"inputs": inputs, "cases": len(cases), "customers": len(tracker.customers)}


def by_day(days: int, per_day: int, batch: int, seed: int) -> None:
    """`--days`: the tracker's CPU per event, day by day (module docstring)."""
    config = GeneratorConfig(events=days * per_day, seed=seed, span_ms=days * 24 * HOUR,
                             late_fraction=0.0)
    events = sorted((parse_event(json.dumps(e).encode()) for e in generate_events(config)),
                    key=lambda e: e.occurred_ms)
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    rules = load_rules()
    journeys_config = engine.config.journeys
    tracker = FollowupTracker(rules, horizon_ms(rules, journeys_config.max_length_ms,
                                                journeys_config.allowed_lateness_ms))
    inputs: list[tuple[list[FollowupJourney], list[FollowupEvent]]] = []
    for event in events:
        emitted, reason = engine.process(event, 0, arrived_ms=event.occurred_ms)
        signal = FollowupEvent.from_event(event) if reason is None else None
        inputs.append(([FollowupJourney.from_record(r) for r in emitted.journeys],
                       [] if signal is None else [signal]))
    print(f"bench_followups --days: {days} x {per_day:,} events, batches of {batch:,}; "
          f"compiled core {pipeline.core_build.COMPILED}; load {os.getloadavg()[0]:.1f}")
    watermark = 0
    for day in range(days):
        part = inputs[day * per_day:(day + 1) * per_day]
        taken = cases = 0
        started = time.process_time()
        for i in range(0, len(part), batch):
            journeys = [j for js, _ in part[i:i + batch] for j in js]
            signals = [s for _, ss in part[i:i + batch] for s in ss]
            taken += len(journeys) + len(signals)
            cases += len(tracker.apply(journeys, signals))
            watermark = max([watermark, *(j.ended_at for j in journeys),
                             *(s.at_ms for s in signals)])
            tracker.advance(watermark)
            for key in tracker.drain_dirty_keys():
                tracker.snapshot_key(key)
        seconds = time.process_time() - started
        held = sum(len(c.journeys) for c in tracker.customers.values())
        print(f"day {day + 1}: {seconds / len(part) * 1e6:.2f} us per event; inputs "
              f"{taken / len(part):.3f} and cases sent {cases / len(part):.3f} per event; "
              f"customers held {len(tracker.customers):,}, their journeys {held:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=whole(1), default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=whole(1), default=0,
                        help="the stream's shape, day by day (module docstring)")
    parser.add_argument("--batch", type=whole(1), default=2_000)
    args = parser.parse_args()
    if args.days:
        by_day(args.days, args.events, args.batch, args.seed)
        return
    config = GeneratorConfig(events=args.events, seed=args.seed, span_ms=36 * HOUR,
                             late_fraction=0.0)
    events = [parse_event(json.dumps(e).encode()) for e in generate_events(config)]
    base = min(run(events, False)[0] for _ in range(args.repeat))
    timed = [run(events, True) for _ in range(args.repeat)]
    with_followups, counts = min(timed)
    print(json.dumps({
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average_1m": round(os.getloadavg()[0], 1),
        "compiled_core": pipeline.core_build.COMPILED,
        "events": len(events),
        "engine_events_per_s": round(len(events) / base),
        "engine_plus_followups_events_per_s": round(len(events) / with_followups),
        "followups_share_of_time": round(1 - base / with_followups, 3),
        **counts,
    }))


if __name__ == "__main__":
    main()
