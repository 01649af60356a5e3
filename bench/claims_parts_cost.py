"""What judging the claims by claims partition costs the engine (docs/core.md, "One event_id,
one journey"): `ExperienceEngine.process` over `--partitions` journey partitions with the
claims in one part against one part per claims partition, as `replay --partitions N` and
`backfill --partitions N` run them since 2026-12-08, alternating, round by round.

    .venv/bin/python -m bench.claims_parts_cost [--events 200000] [--partitions 12] [--rounds 3]

Each figure is `bench_core.measure_forked` (CPU time, best of 3, the state collector policy)
in a child forked after generation, so both start from the same heap.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable

from bench import bench_core
from pipeline.cliargs import whole
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import TouchpointEvent
from pipeline.core.partitioner import partition_for


def engine_path(partitions: int, claims_partitions: int
                ) -> Callable[[list[TouchpointEvent], CoreConfig], int]:
    """`process` for every event on its journey partition; the records emitted."""
    def run(events: list[TouchpointEvent], config: CoreConfig) -> int:
        engine = ExperienceEngine(config, bench_core.SCORING_RULES,
                                  claims_partitions=claims_partitions)
        records = 0
        for event in events:
            out, _ = engine.process(event, partition_for(event.journey_key, partitions))
            records += len(out.journeys) + len(out.metrics) + len(out.alerts)
        return records
    run.__name__ = f"claims_in_{claims_partitions}_parts"
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=whole(1), default=200_000)
    parser.add_argument("--partitions", type=whole(2), default=12)
    parser.add_argument("--rounds", type=whole(1), default=3)
    args = parser.parse_args()
    events = bench_core.generate(args.events)
    paths = {1: engine_path(args.partitions, 1),
             args.partitions: engine_path(args.partitions, args.partitions)}
    rates: dict[int, list[float]] = {parts: [] for parts in paths}
    print(f"{args.events:,} events (bench_core.generate), {args.partitions} journey partitions, "
          f"core {bench_core.core_mode()}; load {os.getloadavg()[0]:.1f}")
    for round_ in range(1, args.rounds + 1):
        for parts, path in paths.items():
            cpu, _, _ = bench_core.measure_forked(path, events, CoreConfig(), "state gc policy",
                                                  3)
            rates[parts].append(args.events / cpu)
            print(f"round {round_}: claims in {parts} part(s): {rates[parts][-1]:,.0f} events "
                  "per CPU second", flush=True)
    one = statistics.median(rates[1])
    many = statistics.median(rates[args.partitions])
    print(f"medians (load {os.getloadavg()[0]:.1f}): one part {one:,.0f}, {args.partitions} "
          f"parts {many:,.0f} events per CPU second: x{many / one:.2f}")


if __name__ == "__main__":
    main()
