"""What the follow-up stage holds and writes for a loyal customer, day after day
(docs/followups.md, "How it runs").

    .venv/bin/python -m bench.bench_followup_history [--days 200] [--every 25] [--customers 1]
        [--visits-per-day 1]

Each customer visits every day (`--visits-per-day` times, evenly spaced: more than 30 minutes
apart, so each visit is a journey of its own; a bot or a shared customer id visits 40 times a
day): an interaction with a negative valence, then a survey answer with NPS 1 a minute later (a
detractor: a follow-up candidate). The events go through
`peakend replay`'s own path (`pipeline.replay.Replay`: parser, engine, follow-up tracker), in
time order. Every `--every` days it prints, for the first customer: the journeys and events its
follow-up state holds, the cases each of its updates sends again, the bytes of its state as
the worker's follow-up table writes it after each update (`state_writer.encode` of
`FollowupTracker.snapshot_key`), and the CPU of what each update of the customer costs the
follow-up stage: its cases worked out again (`FollowupTracker.cases_of`, what `apply` does for
every customer it changes) and its state encoded for the table write (best of 50); and the CPU
per line of the replay itself since the previous row (parser, engine and tracker).

Why: a customer's follow-up state is forgotten whole once stream time passes its *last* input
plus the horizon (`followup_rules.horizon_ms`); a customer who comes back within the horizon
kept every journey and event it ever had, every update worked out and sent again every case it
ever had, and the stream wrote the whole of it at every update. `FollowupTracker._prune` now
forgets what stream time has left two horizons behind. `--no-prune` runs the tracker without it,
as before, to compare.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import orjson

from bench.host import cpu_model, loadavg
from pipeline.cliargs import whole

DAY_S = 86_400
START_S = 1_790_000_000  # 2026-09-21


def visit(customer: str, day: int, index: int = 0, per_day: int = 1) -> list[bytes]:
    """The two events of `customer`'s visit `index` (of `per_day`) on `day`."""
    at = START_S + day * DAY_S + index * (DAY_S // per_day)

    def stamp(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    base = {"schema_version": 1, "producer": "bench", "customer_id": customer,
            "touchpoint": "web", "channel": "web", "stage": "use"}
    visit_id = f"{customer}-{day}" if per_day == 1 else f"{customer}-{day}-{index}"
    return [orjson.dumps({**base, "event_id": f"{visit_id}-visit", "type": "interaction",
                          "occurred_at": stamp(at), "valence": -0.5}),
            orjson.dumps({**base, "event_id": f"{visit_id}-answer", "type": "survey",
                          "occurred_at": stamp(at + 60), "survey": {"nps": 1}})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=whole(1, 100_000), default=200)
    parser.add_argument("--every", type=whole(1), default=25)
    parser.add_argument("--customers", type=whole(1, 100_000), default=1)
    parser.add_argument("--visits-per-day", type=whole(1, 40), default=1,
                        help="visits of each customer per day, evenly spaced (a journey each)")
    parser.add_argument("--no-prune", action="store_true",
                        help="keep every input of an active customer (the tracker before)")
    args = parser.parse_args()
    from pipeline.core.gcpolicy import tune_gc
    from pipeline.followup_rules import horizon_ms, load_rules
    from pipeline.privacy import PersonalData
    from pipeline.replay import Replay
    from pipeline.settings import Settings
    from pipeline.stream.state_writer import encode

    settings = Settings.from_env()
    config = settings.core_config()
    rules = load_rules(settings.followup_rules)
    replay = Replay(config, 4, "bench", settings.max_event_bytes,
                    PersonalData.from_settings(settings), rules)
    horizon = horizon_ms(rules, config.journeys.max_length_ms,
                         config.journeys.allowed_lateness_ms)
    if args.no_prune:
        from pipeline.core.followups import FollowupTracker
        replay.followups = FollowupTracker(rules, horizon, prune=False)
    print(f"bench_followup_history: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, load "
          f"{loadavg()}; {args.customers} customer(s) visiting {args.visits_per_day} time(s) a day "
          f"for {args.days} days; "
          f"follow-up horizon {horizon / 86_400_000:g} days; "
          f"{'no pruning' if args.no_prune else 'pruning'}")
    print("| day | journeys held | events held | cases sent per update | state bytes per write "
          "| CPU per update: cases + state encoding | replay CPU per line since the row before |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    tune_gc()
    tracker = replay.followups
    first = "c0"
    line = 0
    lines_before, cpu_before = 0, time.process_time()
    for day in range(args.days):
        for visit_index in range(args.visits_per_day):
            for index in range(args.customers):
                for raw in visit(f"c{index}", day, visit_index, args.visits_per_day):
                    line += 1
                    replay.line(line, raw)
        if (day + 1) % args.every == 0 or day + 1 == args.days:
            per_line = (time.process_time() - cpu_before) / (line - lines_before)
            customer = tracker.customers.get(first)
            if customer is None:
                print(f"| {day + 1} | 0 | 0 | 0 | 0 | - | {1e6 * per_line:.0f} us |")
                lines_before, cpu_before = line, time.process_time()
                continue
            best = float("inf")
            for _ in range(50):
                started = time.process_time()
                tracker.cases_of(first, customer, customer.version())
                size = len(encode(tracker.snapshot_key(first)))
                best = min(best, time.process_time() - started)
            print(f"| {day + 1} | {len(customer.journeys)} | {len(customer.events)} | "
                  f"{len(customer.emitted)} | {size:,} | {1e6 * best:.0f} us | "
                  f"{1e6 * per_line:.0f} us |", flush=True)
            lines_before, cpu_before = line, time.process_time()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
