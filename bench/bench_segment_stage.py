"""The segments agent's per-batch steps, in-process, on the contributions of the generator's
default mix over one day (the benchmarks' compressed day), written through the worker's own
journal table on a real RocksDB store (no broker).

    .venv/bin/python -m bench.bench_segment_stage [--events 40000] [--batch 250] [--rounds 3]
        [--days 1] [--instructions]

Stage one (`PartitionProcessor`, 4 partitions) turns each `--batch` events into the batch
and watermark messages the worker sends to the segments agent; then, per batch, as
`SegmentsAgent` does: `SegmentStage.apply` for each message and `flush` (apply + flush),
`dirty_state` (of it the drop series' state, `snapshot_key`), and `JournalTable.write_pairs`
(bucket members in journal chunks, series one record per key; the changelog records queued and
dropped). CPU microseconds per input event, collector off while timing (issue 15,
docs/streaming.md "eleventh round").

`--days N` spreads the events over N days of event time (the same density with N times the
events): from the second day the stage evicts the buckets the allowed lateness (a day) has
left behind at every watermark, which a first day never does (docs/streaming.md, eighteenth
round).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.host import cpu_model, loadavg
from pipeline.cliargs import whole


def contributions(events: int, batch: int, days: int = 1) -> list[list[dict[str, Any]]]:
    from jobs.generate import GeneratorConfig, generate_events
    from pipeline.contract.parser import parse_dict
    from pipeline.core.config import CoreConfig
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.stream import messages
    from pipeline.stream.partition import PartitionProcessor, coalesce

    parsed = [parse_dict(d) for d in generate_events(
        GeneratorConfig(events=events, seed=9, span_ms=days * 86_400_000))]
    processors = [PartitionProcessor(p, CoreConfig(), load_scoring_rules()) for p in range(4)]
    batches: list[list[dict[str, Any]]] = []
    for start in range(0, len(parsed), batch):
        outputs: dict[int, list[Any]] = {}
        for event in parsed[start:start + batch]:
            partition = partition_for(event.journey_key, 4)
            outputs.setdefault(partition, []).append(processors[partition].process(event))
        sent: list[dict[str, Any]] = []
        for partition, outs in outputs.items():
            out = coalesce(outs)
            by_segment: dict[str, list[dict[str, Any]]] = {}
            for key, message in out.contributions:
                by_segment.setdefault(key, []).append(message)
            sent += [messages.batch(items) for items in by_segment.values()]
            if out.watermark is not None:
                sent.append(messages.watermark(partition, out.watermark))
        batches.append(sent)
    return batches


class TimedDetector:
    """A `DropDetector` whose `snapshot_key` calls are timed (the rest passed through)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)

    def snapshot_key(self, key: Any) -> Any:
        started = time.process_time()
        try:
            return self.detector.snapshot_key(key)
        finally:
            self.seconds += time.process_time() - started


def one_round(batches: list[list[dict[str, Any]]], events: int) -> dict[str, float]:
    from faust.types import TP

    from pipeline.core.config import CoreConfig
    from pipeline.stream.delivery import BatchDelivery
    from pipeline.stream.journal import JournalTable
    from pipeline.stream.segments import SegmentStage, is_journaled_key
    from tests.support.faust_tables import rocksdb_table

    role = "state:segments"
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as folder:
        table = rocksdb_table(Path(folder), partitions=4)
        delivery = BatchDelivery(lambda: None, {role: "bench-segments-changelog"})  # type: ignore[arg-type,return-value]
        writer = JournalTable(table, delivery, role, TP, journaled=is_journaled_key)
        stage = SegmentStage(CoreConfig(), sources=4)
        detector = TimedDetector(stage.detector)
        stage.detector = detector  # type: ignore[assignment]
        spent = {"apply + flush": 0.0, "dirty_state": 0.0, "write_pairs": 0.0}
        pairs = 0
        gc.collect()
        gc.disable()
        try:
            for batch in batches:
                started = time.process_time()
                for message in batch:
                    stage.apply(message)
                stage.flush()
                applied = time.process_time()
                state = stage.dirty_state()
                drained = time.process_time()
                writer.forget_keys(1, stage.drain_forgotten())
                writer.write_pairs(1, state, {})
                delivery._pending.clear()
                written = time.process_time()
                spent["apply + flush"] += applied - started
                spent["dirty_state"] += drained - applied
                spent["write_pairs"] += written - drained
                pairs += len(state)
        finally:
            gc.enable()
    out = {step: seconds * 1e6 / events for step, seconds in spent.items()}
    out["  of dirty_state: the series' state"] = detector.seconds * 1e6 / events
    out["state pairs per event"] = pairs / events
    return out


def print_instructions(events: int, batch: int, days: int) -> None:
    """One round's instructions per event: callgrind's total with the round minus without."""
    import re
    import subprocess
    import sys

    totals = []
    for rounds in (0, 1):
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             "-m", "bench.bench_segment_stage", "--events", str(events), "--batch", str(batch),
             "--days", str(days), "--rounds-only", str(rounds)],
            capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count from valgrind: {done.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}: {events:,} events over "
          f"{days} day(s) in batches of {batch}: one round "
          f"{(totals[1] - totals[0]) / events:,.0f} instructions per event (callgrind)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=whole(1, 365), default=1,
                        help="days of event time the events span")
    parser.add_argument("--instructions", action="store_true",
                        help="instructions per event of one round instead of CPU time: this "
                             "command run twice under valgrind's callgrind, with and without "
                             "the round (deterministic, unlike time on a shared host)")
    parser.add_argument("--rounds-only", type=int, choices=(0, 1), default=None,
                        help=argparse.SUPPRESS)  # the child runs of --instructions
    args = parser.parse_args()
    if args.instructions:
        print_instructions(args.events, args.batch, args.days)
        return
    import pipeline.core_build

    load = loadavg()
    batches = contributions(args.events, args.batch, args.days)
    if args.rounds_only is not None:  # under callgrind: the setup, and one round or none
        if args.rounds_only:
            one_round(batches, args.events)
        return
    rounds = [one_round(batches, args.events) for _ in range(args.rounds)]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if pipeline.core_build.COMPILED else 'interpreted'}, {args.events:,} "
          f"events over {args.days} day(s) in batches of {args.batch}, {args.rounds} rounds; "
          f"load {load} before, {loadavg()} after")
    print("| step | us per event, each round |")
    print("|---|---|")
    for step in rounds[0]:
        print(f"| {step} | {' / '.join(f'{r[step]:.2f}' for r in rounds)} |")


if __name__ == "__main__":
    main()
