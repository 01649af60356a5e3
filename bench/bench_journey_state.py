"""What stage one writes to its state table per input event, in the benchmarks' compressed day
and in a live stream's shape, without servers (issue 15; docs/streaming.md, seventeenth round).

    .venv/bin/python -m bench.bench_journey_state [--events 150000] [--compressed-batch 2000]
        [--batch-seconds 0.2] [--partitions 4] [--snapshots 0]

The events are the generator's default mix over one day (what `bench/bench_pipeline.py` and
`bench/run_all.py` send), fed to one `PartitionProcessor` per partition in the worker's order;
after each batch the worker writes every key the batch changed (`dirty_state`, then each pair
encoded as its table write, `{"p": partition, "s": state}`, `state_writer.encode`). Two shapes,
one run, the same events:

- `compressed day`: batches of `--compressed-batch` events, what the worker takes per batch at
  the benchmarks' rate (about 10,000 events/s and a batch every 0.2 s): each batch spans about
  20 minutes of event time, so a customer's events of one session mostly share one batch and
  its key is written once for all of them;
- `live`: a new batch at every `--batch-seconds` of event time, what a live stream (event time
  is wall time) gives at any rate: a customer's events are seconds to minutes apart, so nearly
  every event's key is written in a batch of its own, with everything the key holds (its open
  session's entries so far, and its closed sessions, kept for late events).

For each: state pairs, bytes and journey entries written per input event, the share of the
bytes that are closed sessions written again, and the CPU of `dirty_state` and of the
encoding per input event (process time, under the worker's collector policy).

`--snapshots N`: then, with every event applied, each key the processors hold is snapshotted
(`JourneyTracker.snapshot_key`) and encoded as its table write, N rounds, the best printed per
key: the same work as `dirty_state` without a run's batches around it, steadier from one run to
the next (to compare two builds of the core: `--tree`-less, run it in each tree).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from bench.host import cpu_model, loadavg
from pipeline.cliargs import number, whole
from pipeline.core.event import TouchpointEvent

DAY_MS = 86_400_000
# The two shapes' defaults: the worker's batch at the benchmarks' rate (about 10,000 events/s,
# a batch every 0.2 s), and the worker's batch interval in a live stream.
COMPRESSED_BATCH = 2000
BATCH_SECONDS = 0.2


@dataclass
class Written:
    """What one shape wrote, summed over the run."""

    events: int = 0
    batches: int = 0
    pairs: int = 0
    bytes: int = 0
    closed_bytes: int = 0  # of `bytes`: the closed sessions in the values
    entries: int = 0  # journey entries in the values written
    snapshot_s: float = 0.0
    encode_s: float = 0.0

    def per_event(self) -> PerEvent:
        n = max(1, self.events)  # (a run of only invalid events holds none)
        return PerEvent(self.events / max(1, self.batches), self.pairs / n, self.bytes / n,
                        self.closed_bytes / max(1, self.bytes), self.entries / n,
                        1e6 * self.snapshot_s / n, 1e6 * self.encode_s / n)

    def line(self, name: str) -> str:
        e = self.per_event()
        return (f"{name}: {e.events_per_batch:,.1f} events per batch; per input event "
                f"{e.pairs:.2f} state pairs, {e.bytes:,.0f} bytes ({100 * e.closed_share:.0f}% "
                f"closed sessions written again), {e.entries:.1f} journey entries; CPU per "
                f"input event {e.dirty_state_us:.1f} us dirty_state + {e.encoding_us:.1f} us "
                "encoding")


class PerEvent(NamedTuple):
    """`Written` per input event (and events per batch): what the reports print."""

    events_per_batch: float
    pairs: float
    bytes: float
    closed_share: float  # of the bytes
    entries: float
    dirty_state_us: float
    encoding_us: float


def closed_session_bytes(state: dict[str, Any]) -> int:
    """The bytes of a journey key's closed sessions in its encoded state (`snapshot_key`): what
    every write of the key repeats (`bench_stage_one_days --sizes` uses it too)."""
    from pipeline.stream.state_writer import encode

    return sum(len(encode(session)) for session in state["sessions"]
               if session["status"] == "closed")


def events(count: int) -> list[TouchpointEvent]:
    from jobs.generate import GeneratorConfig, encode_event, generate_events
    from pipeline.contract import Rejected, parse_event

    config = GeneratorConfig(events=count, seed=1, start_ms=1_795_000_000_000, span_ms=DAY_MS,
                             id_prefix="s")
    parsed: list[TouchpointEvent] = []
    for event in generate_events(config):
        try:
            parsed.append(parse_event(encode_event(event)))
        except Rejected:
            continue  # the generator's invalid share: dead letters, no state
    return parsed


def run(evs: list[TouchpointEvent], new_batch: Callable[[int, int], bool], partitions: int
        ) -> Written:
    """Feed `evs` in batches (`new_batch(index, occurred_ms)`: the event at `index` starts a
    new batch) and write each batch's changed keys as the worker does."""
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tuned_gc
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.settings import Settings
    from pipeline.stream.partition import PartitionProcessor
    from pipeline.stream.state_writer import encode

    core = Settings.from_env().core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    processors = {p: PartitionProcessor(p, core, rules) for p in range(partitions)}
    written = Written(events=len(evs))
    touched: set[int] = set()

    def write() -> None:
        for part in sorted(touched):
            started = time.process_time()
            pairs = processors[part].dirty_state()
            snapshotted = time.process_time()
            values = [encode({"p": part, "s": state}) for _, state in pairs]
            written.encode_s += time.process_time() - snapshotted
            written.snapshot_s += snapshotted - started
            written.pairs += len(pairs)
            written.bytes += sum(map(len, values))
            for _, state in pairs:  # (outside the timed parts)
                if isinstance(state, dict):
                    journey = state["journey"]
                    held = [journey] if journey is not None else []
                    held += state["sessions"]
                    written.entries += sum(len(j["entries"]) for j in held)
                    written.closed_bytes += closed_session_bytes(state)
        touched.clear()
        written.batches += 1

    with tuned_gc(STREAM_THRESHOLDS):
        for index, event in enumerate(evs):
            if touched and new_batch(index, event.occurred_ms):
                write()
            part = partition_for(event.journey_key, partitions)
            processors[part].process(event)
            touched.add(part)
        write()
    return written


def snapshot_rounds(evs: list[TouchpointEvent], rounds: int, partitions: int
                    ) -> tuple[int, float, float, float]:
    """(keys, bytes per key, best us per key snapshotting, best us per key encoding) of every
    key held once `evs` are applied, over `rounds` rounds (see the module)."""
    from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tuned_gc
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.settings import Settings
    from pipeline.stream.partition import PartitionProcessor
    from pipeline.stream.state_writer import encode

    core = Settings.from_env().core_config()
    rules = load_scoring_rules(core.journeys.scoring_rules_path)
    processors = {p: PartitionProcessor(p, core, rules) for p in range(partitions)}
    for event in evs:
        processors[partition_for(event.journey_key, partitions)].process(event)
    held = [(p, processor.tracker, sorted(processor.tracker.keys()))
            for p, processor in processors.items()]
    keys = sum(len(k) for _, _, k in held)
    snapshot_s = encode_s = float("inf")
    size = 0
    with tuned_gc(STREAM_THRESHOLDS):
        for _ in range(rounds):
            started = time.process_time()
            states = [(p, [tracker.snapshot_key(key) for key in names])
                      for p, tracker, names in held]
            snapshotted = time.process_time()
            values = [encode({"p": p, "s": state}) for p, part in states for state in part]
            encoded = time.process_time()
            snapshot_s = min(snapshot_s, snapshotted - started)
            encode_s = min(encode_s, encoded - snapshotted)
            size = sum(map(len, values))
            del states, values
    n = max(1, keys)
    return keys, size / n, 1e6 * snapshot_s / n, 1e6 * encode_s / n


def live_batches(batch_seconds: float) -> Callable[[int, int], bool]:
    """`run`'s `new_batch` for a live stream: a new batch whenever event time (in arrival
    order; it never goes back) enters a new slot of `batch_seconds`."""
    slot_ms = max(1, round(batch_seconds * 1000))
    last_slot = [-1]

    def new_batch(_index: int, occurred_ms: int) -> bool:
        slot = occurred_ms // slot_ms
        if slot > last_slot[0]:
            last_slot[0] = slot
            return True
        return False
    return new_batch


def compressed_batches(events_per_batch: int) -> Callable[[int, int], bool]:
    """`run`'s `new_batch` for the benchmarks' compressed day: every `events_per_batch`."""
    return lambda index, _ms: index % events_per_batch == 0


def shapes(count: int, compressed_batch: int = COMPRESSED_BATCH,
           batch_seconds: float = BATCH_SECONDS, partitions: int = 4
           ) -> list[tuple[str, Written]]:
    """[(name, written)] of the compressed day and of the live shape, for the same `count`
    generated events."""
    evs = events(count)
    return [(f"compressed day (batches of {compressed_batch:,} events)",
             run(evs, compressed_batches(compressed_batch), partitions)),
            (f"live (a batch per {batch_seconds:g} s of event time)",
             run(evs, live_batches(batch_seconds), partitions))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=whole(1), default=150_000)
    parser.add_argument("--compressed-batch", type=whole(1), default=COMPRESSED_BATCH)
    parser.add_argument("--batch-seconds", type=number(0, low_open=True), default=BATCH_SECONDS)
    parser.add_argument("--partitions", type=whole(1, 10_000), default=4)
    parser.add_argument("--snapshots", type=whole(0), default=0,
                        help="rounds of snapshotting every key held at the end (0: none)")
    args = parser.parse_args()
    from pipeline import core_build

    print(f"bench_journey_state: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, core "
          f"{'compiled' if core_build.COMPILED else 'interpreted'}, load {loadavg()}; "
          f"{args.events:,} generated events over one day, {args.partitions} partitions")
    written = shapes(args.events, args.compressed_batch, args.batch_seconds, args.partitions)
    for name, shape in written:
        print(shape.line(name))
    (_, compressed), (_, live_run) = written

    def ratio(live: float, base: float) -> str:
        return f"x{live / base:.1f}" if base else "-"

    cpu = ratio(live_run.snapshot_s + live_run.encode_s,
                compressed.snapshot_s + compressed.encode_s)
    print(f"live / compressed: bytes per event {ratio(live_run.bytes, compressed.bytes)}, "
          f"state pairs {ratio(live_run.pairs, compressed.pairs)}, CPU {cpu}")
    if args.snapshots:
        keys, size, snapshot_us, encode_us = snapshot_rounds(events(args.events),
                                                             args.snapshots, args.partitions)
        print(f"every key held ({keys:,}, {size:,.0f} bytes each), best of {args.snapshots} "
              f"rounds: {snapshot_us:.2f} us per key snapshot_key + {encode_us:.2f} us "
              "encoding")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
