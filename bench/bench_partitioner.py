"""What placing a record costs: Kafka's default partitioner (`pipeline.core.partitioner`) over the
journey keys of the generator's default mix, in the build of the core this process runs.

    .venv/bin/python -m bench.bench_partitioner [--events 100000] [--partitions 12] [--rounds 5]

Every record the stream places by key goes through it: the entry stage's batch records, the
worker's outputs (`delivery.group`), and `replay` and `backfill` once per event. CPU per key,
best of `--rounds` passes over the same keys (docs/core.md, Performance).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.host import cpu_model, loadavg
from pipeline.cliargs import whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=whole(1), default=100_000)
    parser.add_argument("--partitions", type=whole(1, 10_000), default=12)
    parser.add_argument("--rounds", type=whole(1, 100), default=5)
    args = parser.parse_args()
    from bench.bench_pipeline import EventSource
    from pipeline import core_build
    from pipeline.core.partitioner import partition_for

    keys = [key.decode() for key in EventSource().phase(args.events).keys if key is not None]
    best = float("inf")
    for _ in range(args.rounds):
        started = time.process_time()
        for key in keys:
            partition_for(key, args.partitions)
        best = min(best, time.process_time() - started)
    mean_length = sum(map(len, keys)) / len(keys)
    print(f"bench_partitioner: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}; "
          f"{len(keys):,} journey keys (mean {mean_length:.0f} characters), "
          f"{args.partitions} partitions: {1e6 * best / len(keys):.3f} us per key, best of "
          f"{args.rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
