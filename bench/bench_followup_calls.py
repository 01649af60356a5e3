"""The follow-up tracker alone, on the very calls a replay makes of it (issue 13 item 5: what it
costs per event over a short and a long history).

    .venv/bin/python -m bench.bench_followup_calls capture EVENTS.jsonl CALLS.pickle
    .venv/bin/python -m bench.bench_followup_calls time CALLS.pickle [CALLS.pickle ...]
                                                         [--repeat 3] [--no-gc]

`capture` runs `peakend replay EVENTS.jsonl` (into a temporary directory) with every
`FollowupTracker.apply` and `advance` recorded, inputs included, and pickles them with the
number of lines replayed. `time` feeds each capture to a fresh tracker (the rules and horizon
`peakend replay` uses with this environment's settings), best CPU time of `--repeat` runs per
line of the replay, and prints the case records returned and a SHA-256 of all of them: two
versions of the tracker must print the same digest for the same capture. The collector runs
as in the process unless `--no-gc` (the captured inputs are frozen out of its way first).
Files for 1 and 90 days: `bench/bench_history.py --path replay` leaves them in its `--dir`.
"""

from __future__ import annotations

import gc
import hashlib
import pickle
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.captures import capture_or_time
from bench.host import cpu_model, loadavg
from pipeline.core.followups import FollowupEvent, FollowupJourney, FollowupTracker

Call = tuple[str, Any, Any]  # ("apply", journeys, events) or ("advance", watermark, None)


def capture(events: Path, out: Path) -> int:
    """Replay `events`, recording the tracker's calls into `out`; the calls recorded."""
    from pipeline import cli

    calls: list[Call] = []
    apply, advance = FollowupTracker.apply, FollowupTracker.advance

    def recorded_apply(self: FollowupTracker, journeys: Iterable[FollowupJourney] = (),
                       events: Iterable[FollowupEvent] = ()) -> Any:
        journeys, events = list(journeys), list(events)
        calls.append(("apply", journeys, events))
        return apply(self, journeys, events)

    def recorded_advance(self: FollowupTracker, watermark_ms: int) -> list[str]:
        calls.append(("advance", watermark_ms, None))
        return advance(self, watermark_ms)

    FollowupTracker.apply = recorded_apply  # type: ignore[method-assign]
    FollowupTracker.advance = recorded_advance  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="followup-calls-") as folder:
            status = cli.main(["replay", str(events), "--output", folder])
    finally:
        FollowupTracker.apply = apply  # type: ignore[method-assign]
        FollowupTracker.advance = advance  # type: ignore[method-assign]
    if status != 0:
        raise SystemExit(f"replay of {events} failed ({status})")
    lines = sum(1 for _ in events.open("rb"))
    with out.open("wb") as handle:
        pickle.dump({"lines": lines, "calls": calls}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return len(calls)


def new_tracker() -> FollowupTracker:
    """A tracker as `peakend replay` makes it with this environment's settings."""
    from pipeline.followup_rules import horizon_ms, load_rules
    from pipeline.settings import Settings

    settings = Settings.from_env()
    journeys = settings.core_config().journeys
    rules = load_rules(settings.followup_rules)
    return FollowupTracker(rules, horizon_ms(rules, journeys.max_length_ms,
                                             journeys.allowed_lateness_ms))


def timed(calls: list[Call], repeat: int, collector: bool) -> tuple[float, int, str]:
    """Best CPU seconds of `repeat` runs, case records returned, their digest."""
    best = float("inf")
    outputs: list[Any] = []
    gc.collect()
    gc.freeze()  # the captured inputs: not the tracker's to walk
    try:
        for _ in range(repeat):
            tracker, outputs = new_tracker(), []
            if not collector:
                gc.disable()
            started = time.process_time()
            for kind, first, second in calls:
                if kind == "apply":
                    outputs.append(tracker.apply(first, second))
                else:
                    tracker.advance(first)
            best = min(best, time.process_time() - started)
            gc.enable()
    finally:
        gc.enable()
        gc.unfreeze()
    digest = hashlib.sha256(repr(outputs).encode()).hexdigest()[:16]
    return best, sum(len(o) for o in outputs), digest


def main() -> None:
    args = capture_or_time(__doc__.split("\n\n")[0])
    if args.command == "capture":
        print(f"{capture(args.events, args.out):,} calls -> {args.out}")
        return
    print(f"bench_followup_calls: {cpu_model()}, load {loadavg()}")
    for path in args.captures:
        with path.open("rb") as handle:
            data = pickle.load(handle)
        seconds, cases, digest = timed(data["calls"], args.repeat, not args.no_gc)
        collector = ", no collector" if args.no_gc else ""
        print(f"{path.name}: {seconds / data['lines'] * 1e6:.2f} us per replayed line "
              f"({data['lines']:,} lines, best of {args.repeat}{collector}); "
              f"{cases:,} case records, digest {digest}")


if __name__ == "__main__":
    main()
