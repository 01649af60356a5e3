"""Stage one restarted, or crashed, in the simulated stream (tests/unit/stream/simulate.py):
which metric records start a bucket anew, and whether the buckets still equal the engine's.

    .venv/bin/python -m bench.sim_restarts [--events 8000 --seed 21 --span 3d] [--every 10]
        [--lags 1,3,8] [--old-resend]

The input is `peakend generate`'s, with the arguments of the three-day SIGKILL fault run
(`bench.faults --only kill --events 8000 --kill-rate 1200 --kill-span 3d`: seed 21, 2% late),
so the same file. Two models, each every `--every` batches of 200 events on 4 partitions:

- restart: stage one rebuilt from the state it wrote (a SIGKILL after the state write: the
  restore's own re-sends, nothing processed again);
- crash, lag K: stage one rebuilt from the state of K batches earlier and the events since
  processed again (a SIGKILL after the outputs of K batches left but before their state was
  written).

For each: buckets unequal to the engine's when records are kept as ClickHouse keeps them (the
highest version; of two equal ones the last) and when the last one sent is kept, and the records
whose version did not grow past their bucket's with other content (lower, equal).
`--old-resend`: the restore's re-send as before git 787c624 (to buckets final by stage one's
stream time too), for comparison (docs/streaming.md, twentieth round).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.faults import event_span, positive
from pipeline.settings import Settings
from pipeline.stream import messages
from pipeline.stream.partition import PartitionProcessor, StageOneOutput
from tests.unit.stream.simulate import SimulatedStream
from tests.unit.stream.test_stages import engine_results, summed

ROOT = Path(__file__).resolve().parents[1]


class CrashingStream(SimulatedStream):
    """Stage one rebuilt every `every` batches from the state of `lag` batches earlier, the
    events since processed again (lag 0: from the state just written, nothing again)."""

    def __init__(self, *args: Any, every: int, lag: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every, self.lag = every, lag

    def run(self, lines: Iterable[bytes]) -> SimulatedStream:
        data = list(lines)
        pending: dict[int, list[StageOneOutput]] = {}
        count = i = batches = 0
        states: list[tuple[int, list[dict[str, Any]], list[int]]] = []
        crashed: set[int] = set()
        while i < len(data):
            line = data[i]
            i += 1
            if not self.take(line, count, pending):
                continue
            count += 1
            if count % self.batch:
                continue
            self._send(pending)
            pending = {}
            batches += 1
            states.append((i, copy.deepcopy(self.stage_one_state),
                           [proc.watermark for proc in self.stage_one]))
            if batches % self.every or batches in crashed or len(states) <= self.lag:
                continue
            crashed.add(batches)
            at, state, watermarks = states[-1 - self.lag]
            self.restart_stage_one(pending, (state, watermarks))
            if self.lag:
                del states[-self.lag:]
                i, batches = at, batches - self.lag
        return self.finish(pending)


def old_resend_end(self: PartitionProcessor, journey: Any, out: StageOneOutput) -> None:
    """`PartitionProcessor._resend_end` before git 787c624: to final buckets too."""
    if journey.counted is None:
        return
    at_ms, negative, segments = journey.counted
    contribution = (at_ms - at_ms % self.bucket_ms, negative)
    for dim, value in segments:
        out.contributions.append(messages.end(dim, value, journey.id, contribution))


def lags(text: str) -> list[int]:
    """`--lags`: whole numbers above 0, comma-separated; else argparse's one-line error."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each lag must be 1 or more")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive(int), default=8000)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--span", default="3d", type=event_span)
    parser.add_argument("--every", type=positive(int), default=10)
    parser.add_argument("--lags", default="1,3,8", type=lags,
                        help="comma-separated batches the state lags its outputs by (each > 0)")
    parser.add_argument("--old-resend", action="store_true")
    args = parser.parse_args(argv)
    if args.old_resend:
        PartitionProcessor._resend_end = old_resend_end  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--events",
                        str(args.events), "--seed", str(args.seed), "--span", args.span,
                        "--late-fraction", "0.02", "--output", str(path), "--quiet"],
                       cwd=ROOT, check=True)
        data = path.read_bytes().splitlines()
    config = Settings.from_env({}).core_config()
    journeys, metrics = engine_results(data, 4, config)
    want = summed(metrics)
    print(f"{len(data):,} events, seed {args.seed}, {args.span}; restore's re-send: "
          f"{'as before 787c624' if args.old_resend else 'current'}")
    print("| model | buckets unequal, kept by version | kept as last sent | records at a "
          "lower version | at an equal version, other content | journeys equal |")
    print("|---|---:|---:|---:|---:|---|")
    for lag in [0, *args.lags]:
        sim = CrashingStream(config, 4, 200, every=args.every, lag=lag).run(data)
        by_version = summed(list(sim.metrics.values()))
        by_arrival = summed(list(sim.metrics_in_arrival_order.values()))
        lower = sum(1 for held, sent in sim.version_ties if sent.version < held.version)
        equal = len(sim.version_ties) - lower
        name = "restart" if lag == 0 else f"crash, lag {lag}"
        print(f"| {name} | {sum(1 for k in want if by_version.get(k) != want[k])} | "
              f"{sum(1 for k in want if by_arrival.get(k) != want[k])} | {lower} | {equal} | "
              f"{sim.journeys == journeys} |", flush=True)


if __name__ == "__main__":
    main()
