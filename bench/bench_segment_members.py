"""Memory the segment stage holds per negative_end bucket member (docs/streaming.md, Known
limits): journeys that end in six segments (the generator's mix: all, touchpoint, channel,
stage and two attributes), each segment's contributions decoded from their own batch record as
the worker reads them, applied and written (`dirty_state`, which keeps each member's state key
to forget it later). tracemalloc's traced bytes after the decoded records are dropped, per
member, the journey ids' strings included: held as members (before their buckets are final),
and sealed (past final, held for the journey idle time as counts and journey ids, after a
watermark made them final and their keys were written and forgotten). The state keys the
worker's journal holds beside (pipeline/stream/journal.py) are not in these figures.

    .venv/bin/python -m bench.bench_segment_members [--journeys 20000]
"""

from __future__ import annotations

import argparse
import gc
import os
import tracemalloc
from datetime import UTC, datetime

import orjson

from bench.faults import positive
from bench.host import cpu_model
from pipeline.settings import Settings
from pipeline.stream import messages
from pipeline.stream.segments import SegmentStage

SEGMENTS = (("all", "all"), ("touchpoint", "web"), ("channel", "web"), ("stage", "buy"),
            ("region", "eu"), ("tier", "gold"))
JOURNEYS_PER_BUCKET = 40  # a minute bucket of a busy segment; 1: one of a sparse segment


def batch_records(journeys: int, per_bucket: int = JOURNEYS_PER_BUCKET) -> list[bytes]:
    """One batch record per segment, each with every journey's negative-end contribution."""
    records = []
    for dim, value in SEGMENTS:
        items = [messages.end(dim, value, f"c{i:07d}@2026-11-22T17:10:00.000Z",
                              (60_000 * (i // per_bucket), i % 3 == 0))[1]
                 for i in range(journeys)]
        records.append(orjson.dumps(messages.batch(items)))
    return records


def bytes_per_member(journeys: int, sealed: bool = False,
                     per_bucket: int = JOURNEYS_PER_BUCKET) -> float:
    """Traced bytes the stage holds per member once the records are applied and written
    (`sealed`: and their buckets made final), `per_bucket` journeys in each bucket."""
    # a hold of 20 days (the idle time; the default is 7): one journey per minute bucket
    # spans 14 days at the default size, all of it held
    config = Settings.from_env({"PEAKEND_JOURNEY_IDLE_SECONDS": str(20 * 86_400)}).core_config()
    stage = SegmentStage(config, sources=1)
    records = batch_records(journeys, per_bucket)
    last_end = 60_000 * (journeys // per_bucket + 1)
    final = last_end + config.windows.allowed_lateness_ms + 2 * config.windows.bucket_ms
    gc.collect()
    tracemalloc.start()
    try:
        decoded = [orjson.loads(record) for record in records]
        stage.process_batch(decoded)
        stage.dirty_state()
        del decoded
        if sealed:
            stage.process_batch([messages.watermark(0, final)])
            stage.dirty_state()
            stage.drain_forgotten()
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    counted = sum(record.n for totals in stage.totals.values() for record in totals.records())
    assert counted == journeys * len(SEGMENTS), counted
    assert all(totals.is_sealed(0) == sealed for totals in stage.totals.values())
    return held / counted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=positive(int), default=20_000)
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, load {load}; "
          f"{args.journeys:,} journeys x {len(SEGMENTS)} segments, bytes per member held")
    for per_bucket in (JOURNEYS_PER_BUCKET, 1):
        print(f"  {per_bucket} per bucket: {bytes_per_member(args.journeys, False, per_bucket):.0f}"
              f" as members, {bytes_per_member(args.journeys, True, per_bucket):.0f} sealed")


if __name__ == "__main__":
    main()
