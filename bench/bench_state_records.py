"""What the segment stage writes to its state table, without servers (docs/streaming.md, "State
records never grow with the traffic").

    .venv/bin/python -m bench.bench_state_records [--journeys 60000] [--answers 60000]
        [--series 10] [--events 40000]

Four shapes:
- `live bucket`: `--journeys` journeys close into segment `all`'s current minute bucket over
  100 flushes, as at ~10,000 events/s with a flush every 0.1 s: CPU of apply + flush + state
  write, bytes written (key and value, encoded as the worker's table writes them) and the
  largest record (the broker takes none over 1 MiB);
- `live answers`: `--answers` survey answers (NPS, CES and CSAT in turn) arrive in segment
  `all`'s current minute bucket over 600 flushes, as in a live stream with a flush every 0.1 s
  (event time is wall time, so the current bucket grows all minute; the compressed day below
  spreads a day over the run, and every bucket stays small): CPU of apply + flush + state
  dirty pairs per answer;
- `week-old series`: `--series` segments' NPS and CES drop series, each holding a week of
  minute buckets (what a live stream holds once a week old; the benchmarks' compressed day
  holds at most one): CPU and size of one series written whole (`snapshot_key` and its
  encoding: the layout before), against one save of the segment stage's layout a minute
  later (its head and the parts that changed, `snapshot_head` and `drain_parts`), under the
  worker's collector policy. The stage saves every series that changed at least every 30 s
  (`SegmentStage.dirty_state`);
- `compressed day`: the contributions stage one makes from `--events` generated events over one
  day (the benchmarks' shape: every bucket small), in batches of 1,000 events: segment stage
  CPU, state records and bytes per input event (best of 3).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.host import cpu_model, loadavg


def live_bucket(journeys: int) -> str:
    from pipeline.core.config import CoreConfig
    from pipeline.stream import messages
    from pipeline.stream.segments import SegmentStage
    from pipeline.stream.state_writer import encode

    stage = SegmentStage(CoreConfig())
    per_flush = max(1, journeys // 100)
    started = time.process_time()
    total = biggest = records = 0
    for flush in range(0, journeys, per_flush):
        for i in range(flush, min(journeys, flush + per_flush)):
            stage.apply(messages.end("all", "all", f"c-{i:07d}@2026-11-22T17:10:00.000Z",
                                     (60_000, i % 3 == 0))[1])
        stage.flush()
        for key, value in stage.dirty_state():
            size = len(encode(key)) + (0 if value is None else len(encode({"p": 0, "s": value})))
            total, biggest, records = total + size, max(biggest, size), records + 1
    cpu = time.process_time() - started
    return (f"live bucket: {journeys:,} journeys closing into one minute bucket over 100 "
            f"flushes: {cpu:.2f} s CPU ({1e6 * cpu / journeys:.0f} us per journey), "
            f"{total / 1e6:.1f} MB of state in {records:,} records, largest record "
            f"{biggest / 1024:,.1f} KiB")


def live_answers(answers: int, flushes: int = 600) -> str:
    from pipeline.core.config import CoreConfig
    from pipeline.stream import messages
    from pipeline.stream.segments import SegmentStage

    scores: dict[str, Callable[[int], int]] = {
        "nps": lambda i: i % 11, "ces": lambda i: 1 + i % 7, "csat": lambda i: 1 + i % 5}
    out = []
    for metric, score in scores.items():
        stage = SegmentStage(CoreConfig())
        per_flush = max(1, answers // flushes)
        started = time.process_time()
        for flush in range(0, answers, per_flush):
            for i in range(flush, min(answers, flush + per_flush)):
                stage.apply(messages.answer("all", "all", metric, 60_000, f"e{i:08d}",
                                            score(i))[1])
            stage.flush()
            stage.dirty_state()
        out.append(f"{metric} {1e6 * (time.process_time() - started) / answers:.1f}")
    return (f"live answers: {answers:,} answers into one minute bucket over {flushes} flushes, "
            f"us per answer: {', '.join(out)}")


def week_old_series(segments: int) -> str:
    """Each series saved whole (the layout before: `snapshot_key`) against one save of the
    stream's layout a minute later (its head and the parts that changed: the new minute's
    part, the part of the minute forgotten)."""
    from pipeline.core.config import CoreConfig
    from pipeline.core.drops import DropDetector
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tuned_gc
    from pipeline.core.segment_totals import SegmentTotals
    from pipeline.stream.state_writer import encode

    config = CoreConfig()
    bucket = config.windows.bucket_ms
    # a week and the window held, then half an hour more: buckets are being forgotten, and
    # the current part (an hour) is half full
    minutes = 7 * 24 * 60 + 90
    detector = DropDetector(config.drops, bucket, config.windows.rolling_ms, keep_parts=True)
    all_totals = [SegmentTotals("channel", f"c{seg}", bucket) for seg in range(segments)]

    def minute_of_answers(minute: int) -> None:
        for totals in all_totals:
            totals.add_answer("nps", minute * bucket, f"e{minute}", minute % 11)
            totals.add_answer("ces", minute * bucket, f"e{minute}", 1 + minute % 7)

    for minute in range(minutes):
        minute_of_answers(minute)
    for totals in all_totals:
        for record in totals.flush():
            detector.apply_partial(record)
    detector.advance(minutes * bucket)
    keys = sorted(detector.drain_dirty())
    for key in keys:
        detector.drain_parts(key)
    with tuned_gc(STREAM_THRESHOLDS):
        started = time.process_time()
        states = [detector.snapshot_key(key) for key in keys]
        snapped = time.process_time()
        sizes = [len(encode({"p": 0, "s": state})) for state in states]
        encoded = time.process_time()
    # a minute later: a new bucket per series, the window moved, the oldest bucket forgotten
    minute_of_answers(minutes)
    for totals in all_totals:
        for record in totals.flush():
            detector.apply_partial(record)
    detector.advance((minutes + 1) * bucket)
    with tuned_gc(STREAM_THRESHOLDS):
        parts_started = time.process_time()
        saved = [[(key, detector.snapshot_head(key)), *detector.drain_parts(key)]
                 for key in sorted(detector.drain_dirty())]
        parts_snapped = time.process_time()
        part_sizes = [sum(len(encode({"p": 0, "s": state})) for _, state in save)
                      for save in saved]
        parts_encoded = time.process_time()
    n = len(keys)
    state_ms, encode_ms = 1e3 * (snapped - started) / n, 1e3 * (encoded - snapped) / n
    parts_ms = 1e3 * (parts_snapped - parts_started) / len(saved)
    parts_encode_ms = 1e3 * (parts_encoded - parts_snapped) / len(saved)
    held = len(detector._series[keys[0]].held_buckets())
    return (f"week-old series: {n} series of {held:,} minute buckets: written whole (the "
            f"layout before), state {state_ms:.2f} ms and encoding {encode_ms:.2f} ms per "
            f"series, {sum(sizes) / n / 1024:,.1f} KiB each; as head and changed parts a "
            f"minute later, state {parts_ms:.3f} ms and encoding {parts_encode_ms:.3f} ms per "
            f"series, {sum(part_sizes) / len(saved) / 1024:,.1f} KiB each in "
            f"{sum(len(save) for save in saved) / len(saved):.1f} records")


def compressed_day(events: int) -> str:
    from bench.bench_segment_stage import contributions
    from pipeline.core.config import CoreConfig
    from pipeline.stream.segments import SegmentStage
    from pipeline.stream.state_writer import encode

    config = CoreConfig()
    batches = contributions(events, 1000)  # stage one's messages, per 1,000 events

    def run() -> tuple[float, float, float]:
        stage = SegmentStage(config, sources=4)
        started = time.process_time()
        records = size = 0
        for batch in batches:
            for message in batch:
                stage.apply(message)
            stage.flush()
            for key, value in stage.dirty_state():
                records += 1
                size += len(encode(key)) + (0 if value is None
                                            else len(encode({"p": 0, "s": value})))
            stage.drain_forgotten()  # forgotten by time: nothing written for them
        n = events
        return (time.process_time() - started) * 1e6 / n, records / n, size / n

    us, records, size = min(run() for _ in range(3))
    return (f"compressed day: {events:,} events over a day: segment stage {us:.1f} "
            f"us/event, {records:.2f} state records and {size:.0f} bytes per event")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--journeys", type=int, default=60_000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--answers", type=int, default=60_000)
    parser.add_argument("--series", type=int, default=10)
    args = parser.parse_args()
    from pipeline import core_build

    print(f"bench_state_records: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}")
    print(live_bucket(args.journeys))
    print(live_answers(args.answers))
    print(week_old_series(args.series))
    print(compressed_day(args.events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
