"""What one long producer journey costs stage one's state writes, as its events add up.

    .venv/bin/python -m bench.bench_long_journey [--days 30] [--every-seconds 60] [--rows 6]

One customer sends an event every `--every-seconds` under one producer `journey_id` (a device's
heartbeat, an order id reused by mistake) for `--days` of event time, at most the journey's
maximum length (`PEAKEND_MAX_JOURNEY_SECONDS`, 30 days by default): every event stays in that
one journey. The events go through the engine as `peakend replay` applies them; `--rows` times
along the way it prints the journey's entries, the bytes of its key's state as stage one's table
writes it (`state_writer.encode` of `JourneyTracker.snapshot_key`: the stream writes a changed
key whole, once per batch that changed it) and the CPU of one such write (best of 5), and the
engine's CPU per event since the row before (parsing included).

Why: a journey's state holds every entry of its open session, so in the stream each write of a
long journey's key costs in proportion to its events so far (docs/streaming.md, Known limits).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.host import cpu_model, loadavg
from pipeline.cliargs import whole

DAY_S = 86_400
START_MS = 1_790_000_000_000  # 2026-09-21


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=whole(1, 30), default=30)
    parser.add_argument("--every-seconds", type=whole(1, DAY_S), default=60)
    parser.add_argument("--rows", type=whole(1, 1000), default=6)
    args = parser.parse_args()
    import orjson

    from pipeline import core_build
    from pipeline.contract import parse_event
    from pipeline.core.config import CoreConfig
    from pipeline.core.engine import ExperienceEngine
    from pipeline.core.gcpolicy import tune_gc
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.stream.state_writer import encode

    total = args.days * DAY_S // args.every_seconds
    print(f"bench_long_journey: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}; one "
          f"journey, an event every {args.every_seconds} s for {args.days} days ({total:,} "
          "events)")
    print("| day | entries held | state bytes per write | CPU per write: snapshot + encoding "
          "| engine CPU per event since the row before |")
    print("|---:|---:|---:|---:|---:|")
    tune_gc()
    engine = ExperienceEngine(CoreConfig(), load_scoring_rules())
    marks = {total * (row + 1) // args.rows for row in range(args.rows)}
    done, cpu_before = 0, time.process_time()
    for index in range(total):
        ms = START_MS + index * args.every_seconds * 1000
        event = parse_event(orjson.dumps({
            "schema_version": 1, "event_id": f"beat-{index}", "producer": "bench",
            "customer_id": "device-1", "journey_id": "device-1-session",
            "occurred_at": datetime.fromtimestamp(ms / 1000, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "type": "interaction", "touchpoint": "app", "channel": "app", "stage": "use",
            "valence": 0.4 if index % 7 else -0.6}))
        engine.process(event, 0, arrived_ms=ms)
        if index + 1 in marks:
            per_event = (time.process_time() - cpu_before) / (index + 1 - done)
            tracker = engine.trackers[0]
            state = tracker.snapshot_key("device-1-session")
            assert state is not None
            best = float("inf")
            for _ in range(5):
                started = time.process_time()
                size = len(encode(tracker.snapshot_key("device-1-session")))
                best = min(best, time.process_time() - started)
            held = [state["journey"]] if state.get("journey") else []
            entries = sum(len(journey["entries"]) for journey in held + state["sessions"])
            print(f"| {(index + 1) * args.every_seconds / DAY_S:.1f} | {entries:,} | {size:,} "
                  f"| {1e3 * best:.2f} ms | {1e6 * per_event:.1f} us |", flush=True)
            done, cpu_before = index + 1, time.process_time()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
