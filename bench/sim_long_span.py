"""The simulated stream (tests/unit/stream/simulate.py: both stages wired in memory as the
worker wires them) against `ExperienceEngine` over a long span, no crash: which metric buckets
differ, and how many negative-end contributions reached a bucket past final (a journey with a
producer id closes after 7 idle days, into the bucket of its last event) and how many reached
one the segment stage had already evicted (none since negative_end buckets are held
`WindowConfig.end_hold_ms` past final: docs/streaming.md, "Exact results with at-least-once
delivery", point 5).

    .venv/bin/python -m bench.sim_long_span [--events 20000 --span 14d --seed 5] [--flush 200,2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.faults import event_span, positive
from bench.sim_restarts import lags
from pipeline.settings import Settings
from tests.unit.stream.simulate import SimulatedStream
from tests.unit.stream.test_stages import engine_results, summed

ROOT = Path(__file__).resolve().parents[1]


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
          "a final bucket | of them to an evicted bucket | journeys equal |")
    print("|---:|---:|---:|---:|---|")
    for flush in args.flush:
        sim = SimulatedStream(config, 4, flush).run(data)
        past_final, past_eviction = sim.ends_past()
        got = summed(list(sim.metrics.values()))
        unequal = [k for k in got.keys() | want.keys() if got.get(k) != want.get(k)]
        print(f"| {flush:,} | {len(unequal)} | {past_final} | {past_eviction} "
              f"| {sim.journeys == journeys} |", flush=True)
        for key in sorted(unequal)[:5]:
            print(f"    {key}: stream n {got.get(key, [0])[0]:g}, engine n "
                  f"{want.get(key, [0])[0]:g}")


if __name__ == "__main__":
    main()
