"""The simulated stream (tests/unit/stream/simulate.py: both stages wired in memory as the
worker wires them) against `ExperienceEngine` over a long span, no crash: which metric buckets
differ, and how many negative-end contributions reached a bucket the segment stage had already
evicted (a journey with a producer id closes after 7 idle days, into the bucket of its last
event: docs/streaming.md, Known limits).

    .venv/bin/python -m bench.sim_long_span [--events 20000 --span 14d --seed 5] [--flush 200,2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.faults import event_span, positive
from bench.sim_restarts import lags
from pipeline.settings import Settings
from pipeline.stream import messages
from pipeline.stream.segments import SegmentStage
from tests.unit.stream.simulate import SimulatedStream
from tests.unit.stream.test_stages import engine_results, summed

ROOT = Path(__file__).resolve().parents[1]


class CountingStream(SimulatedStream):
    """Counts the negative-end contributions that reach a bucket past its segment stage's
    eviction horizon (the stage makes it anew)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.past_horizon = 0
        for stage in self.stage_two:
            self._count(stage)

    def _count(self, stage: SegmentStage) -> None:
        apply = stage._apply

        def counted(message: dict[str, Any]) -> None:
            c = message.get("c")
            if message["t"] == messages.END and c is not None \
                    and int(c[0]) + stage.bucket_ms <= stage.evicted_before:
                self.past_horizon += 1
            apply(message)

        stage._apply = counted  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive(int), default=20_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--span", default="14d", type=event_span)
    parser.add_argument("--flush", default="200,2000", type=lags,
                        help="comma-separated events per simulated flush (each > 0)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--events",
                        str(args.events), "--seed", str(args.seed), "--span", args.span,
                        "--output", str(path), "--quiet"], cwd=ROOT, check=True)
        data = path.read_bytes().splitlines()
    config = Settings.from_env({}).core_config()
    journeys, metrics = engine_results(data, 4, config)
    want = summed(metrics)
    print(f"{len(data):,} events, seed {args.seed}, {args.span}, 4 partitions")
    print("| events per flush | buckets unequal to the engine | negative-end contributions to "
          "an evicted bucket | journeys equal |")
    print("|---:|---:|---:|---|")
    for flush in args.flush:
        sim = CountingStream(config, 4, flush)
        sim.run(data)
        got = summed(list(sim.metrics.values()))
        unequal = [k for k in got.keys() | want.keys() if got.get(k) != want.get(k)]
        print(f"| {flush:,} | {len(unequal)} | {sim.past_horizon} | {sim.journeys == journeys} |",
              flush=True)
        for key in sorted(unequal)[:5]:
            print(f"    {key}: stream n {got.get(key, [0])[0]:g}, engine n "
                  f"{want.get(key, [0])[0]:g}")


if __name__ == "__main__":
    main()
