"""The backfill's touchpoint_events columns per row, with the content digests the core computed
carried along (as `jobs/backfill` now does) against building each row's event again to digest
it (as before). No servers.

    .venv/bin/python -m bench.bench_touchpoint_rows [--events 50000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.host import cpu_model, loadavg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    from jobs.columns import EventBuilder, touchpoint_columns
    from jobs.generate import GeneratorConfig, generate_events
    from jobs.parquet_schema import events_to_batch
    from pipeline import core_build
    from pipeline.core.event import content_digest
    from pipeline.privacy import PersonalData

    batch = events_to_batch(list(generate_events(GeneratorConfig(events=args.events, seed=5))))
    builder = EventBuilder(PersonalData())
    build = builder.builder(builder.columns(batch))
    digests = {i: content_digest(build(i)) for i in range(batch.num_rows)}
    applied = list(range(batch.num_rows))
    best: dict[str, float] = {}
    for _ in range(3):
        for name, carried in (("events built again", None), ("digests carried", digests)):
            started = time.process_time()
            touchpoint_columns(batch, applied, builder, carried)
            spent = (time.process_time() - started) * 1e6 / len(applied)
            best[name] = min(best.get(name, spent), spent)
    print(f"bench_touchpoint_rows: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}")
    print(", ".join(f"{name} {us:.1f} us/row" for name, us in best.items())
          + f" (best of 3, {len(applied):,} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
