"""The drop detector alone, on the very calls a replay makes of it (issue 13 item 5: what it
costs per event over a short and a long history), as `bench/bench_followup_calls.py` does for
the follow-up tracker.

    PEAKEND_PURE_CORE=1 .venv/bin/python -m bench.bench_detector_calls capture EVENTS.jsonl CALLS.pickle
    .venv/bin/python -m bench.bench_detector_calls time CALLS.pickle [CALLS.pickle ...]
                                                          [--repeat 3] [--no-gc]

`capture` runs `peakend replay EVENTS.jsonl --partitions 4` (into a temporary directory) with
every `DropDetector.apply_partial` and `advance` recorded, and pickles them with the number of
lines replayed. It needs the interpreted core (`PEAKEND_PURE_CORE=1`): a compiled class cannot
be patched. `time` feeds each capture to a fresh detector (the configuration `peakend replay`
uses by default), best CPU time of `--repeat` runs per line of the replay, and prints the
alerts it returned. The collector runs as in the process unless `--no-gc` (the captured calls
are frozen out of its way first). Files for 1 and 90 days: `bench/bench_history.py --path
replay` leaves them in its `--dir`.
"""  # noqa: E501

from __future__ import annotations

import gc
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import pipeline.core_build
from bench.captures import capture_or_time
from bench.host import cpu_model, loadavg

Call = tuple[int, Any]  # (0, a metric record's values) or (1, a watermark)


def capture(events: Path, out: Path) -> int:
    """Replay `events`, recording the detector's calls into `out`; the calls recorded."""
    from pipeline import cli
    from pipeline.core import drops

    if pipeline.core_build.COMPILED:
        raise SystemExit("capture needs the interpreted core: PEAKEND_PURE_CORE=1")
    calls: list[Call] = []
    apply_partial, advance = drops.DropDetector.apply_partial, drops.DropDetector.advance

    def recorded_apply(self: Any, record: Any) -> None:
        calls.append((0, tuple(record)))
        apply_partial(self, record)

    def recorded_advance(self: Any, watermark_ms: int) -> Any:
        calls.append((1, watermark_ms))
        return advance(self, watermark_ms)

    drops.DropDetector.apply_partial = recorded_apply  # type: ignore[method-assign]
    drops.DropDetector.advance = recorded_advance  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="detector-calls-") as folder:
            status = cli.main(["replay", str(events), "--partitions", "4", "--output", folder])
    finally:
        drops.DropDetector.apply_partial = apply_partial  # type: ignore[method-assign]
        drops.DropDetector.advance = advance  # type: ignore[method-assign]
    if status != 0:
        raise SystemExit(f"replay of {events} failed ({status})")
    with events.open("rb") as source:
        lines = sum(1 for _ in source)
    with out.open("wb") as handle:
        pickle.dump((lines, calls), handle, pickle.HIGHEST_PROTOCOL)
    return len(calls)


def time_calls(path: Path, repeat: int, collector: bool) -> str:
    from pipeline.core.config import CoreConfig
    from pipeline.core.drops import DropDetector
    from pipeline.core.records import MetricRecord

    with path.open("rb") as handle:
        lines, raw = pickle.load(handle)  # our own capture file
    calls: list[Call] = [(kind, tuple.__new__(MetricRecord, value) if kind == 0 else value)
                         for kind, value in raw]
    config = CoreConfig()
    gc.collect()
    gc.freeze()
    if not collector:
        gc.disable()
    best = float("inf")
    alerts = 0
    try:
        for _ in range(repeat):
            detector = DropDetector(config.drops, config.windows.bucket_ms,
                                    config.windows.rolling_ms)
            apply_partial, advance = detector.apply_partial, detector.advance
            alerts = 0
            started = time.process_time()
            for kind, value in calls:
                if kind == 0:
                    apply_partial(value)
                else:
                    alerts += len(advance(value))
            best = min(best, time.process_time() - started)
    finally:
        gc.enable()
        gc.unfreeze()
    partials = sum(1 for kind, _ in calls if kind == 0)
    return (f"{path.name}: {lines:,} lines, {partials / lines:.2f} partials a line: "
            f"{best / lines * 1e6:.2f} us per line (best of {repeat}), {alerts} alerts")


def main() -> None:
    args = capture_or_time(__doc__.splitlines()[0])
    if args.command == "capture":
        print(f"{capture(args.events, args.out):,} calls recorded in {args.out}")
        return
    print(f"{cpu_model()}, core {'compiled' if pipeline.core_build.COMPILED else 'interpreted'}"
          f", collector {'off' if args.no_gc else 'on'}; load {loadavg()}")
    for path in args.captures:
        print(time_calls(path, args.repeat, not args.no_gc), flush=True)


if __name__ == "__main__":
    main()
