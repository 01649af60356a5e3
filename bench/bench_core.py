"""Throughput of the pure core on one CPU core: journey tracker + survey buckets.

    .venv/bin/python -m bench.bench_core [--events N] [--repeat R] [--profile apply|batched]

Generates a realistic mix in memory first (not timed): mostly interactions carrying operational
signals, ~5% survey answers, ~3% journey ends and outcomes, half the events keyed by journey_id
and half by customer (idle-gap journeys), event time moving forward with some jitter so a few
events arrive out of order. Then times the hot path: `JourneyTracker.apply` and
`SurveyBuckets.add_event` per event, plus the per-bucket-boundary work (`advance`, negative-end
deltas, `flush`) exactly as `ExperienceEngine` does it, and the full engine with drop detection;
each per event (`apply` / `process`) and in batches (`apply_many` / `process_many`), under the
default collector, the two caller-owned policies of `pipeline.core.gcpolicy` (the streaming
worker's, and the state policy of replay and backfill) and with the collector disabled.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pipeline.core_build
from bench.host import cpu_model
from pipeline.core.buckets import SurveyBuckets
from pipeline.core.clock import NEVER_MS
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import CHANNELS, NOT_DIGESTED, STAGES, Signals, Survey, TouchpointEvent
from pipeline.core.gcpolicy import STATE_THRESHOLDS, STREAM_THRESHOLDS, tuned_gc
from pipeline.core.journeys import JourneyTracker
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

TOUCHPOINTS = ("checkout", "hotline", "delivery", "chat", "store_visit", "app_login", "search",
               "billing", "returns", "email_support")
REGIONS = ("eu", "us", "apac")
BATCH = 500  # events per batch in the batched paths (a consumer poll)
TIERS = ("basic", "plus", "gold")


def generate(n: int, seed: int = 1) -> list[TouchpointEvent]:
    rng = random.Random(seed)
    start = 1_795_000_000_000
    rate_ms = 5  # ~200 events per second of event time
    customers = max(1000, n // 8)
    out: list[TouchpointEvent] = []
    for i in range(n):
        ms = start + i * rate_ms - (rng.randrange(60_000) if rng.random() < 0.02 else 0)
        c = rng.randrange(customers)
        keyed = c % 2 == 0
        u = rng.random()
        survey = signals = None
        valence = None
        outcome = None
        if u < 0.05:
            kind = "survey"
            survey = Survey(nps=rng.randint(0, 10), csat=rng.randint(1, 5) if u < 0.03 else None,
                            ces=rng.randint(1, 7) if u < 0.02 else None,
                            ces_scale=7 if u < 0.02 else None)
        elif u < 0.07:
            kind = "journey_end"
        elif u < 0.08:
            kind = "outcome"
            outcome = rng.choice(("churn", "repurchase", "complaint"))
        else:
            kind = "interaction"
            if rng.random() < 0.1:
                valence = round(rng.uniform(-1, 1), 2)
            else:
                signals = Signals(wait_seconds=rng.expovariate(1 / 90),
                                  handle_seconds=rng.expovariate(1 / 300),
                                  transfers=rng.choice((0, 0, 0, 1, 2, 3)),
                                  resolved=rng.random() < 0.8,
                                  error=rng.random() < 0.03)
        out.append(TouchpointEvent(
            event_id=f"e{i}", occurred_at=datetime.fromtimestamp(ms / 1000, UTC),
            producer="bench", customer_id=f"c{c}",
            type=kind,  # type: ignore[arg-type]
            touchpoint=rng.choice(TOUCHPOINTS), channel=rng.choice(CHANNELS),
            stage=rng.choice(STAGES), journey_id=f"j{c}-{i // 50_000}" if keyed else None,
            valence=valence, signals=signals, survey=survey, outcome=outcome,
            attributes={"region": rng.choice(REGIONS), "tier": rng.choice(TIERS)},
            occurred_ms=ms))
    return out


def run_tracker_and_buckets(events: list[TouchpointEvent], config: CoreConfig) -> int:
    tracker = JourneyTracker(config.journeys, SCORING_RULES)
    buckets = SurveyBuckets(config.windows)
    width = config.windows.bucket_ms
    apply = tracker.apply
    add_event = buckets.add_event
    watermark = NEVER_MS
    records = 0
    for event in events:
        ms = event.occurred_ms
        previous = watermark
        if ms > watermark:
            watermark = ms
        emitted, reason = apply(event, watermark)
        records += len(emitted)
        if reason is None:
            add_event(event)
        if watermark // width != previous // width:
            records += len(tracker.advance(watermark))
            for delta in tracker.drain_end_deltas():
                buckets.apply_end(delta)
            records += len(buckets.flush())
    return records


def run_tracker_and_buckets_batched(events: list[TouchpointEvent], config: CoreConfig,
                                    batch: int = BATCH) -> int:
    """The same work in batches, as a consumer loop would do it: `apply_many` per batch (one
    record per changed journey and batch), then the boundary work once per batch."""
    tracker = JourneyTracker(config.journeys, SCORING_RULES)
    buckets = SurveyBuckets(config.windows)
    width = config.windows.bucket_ms
    add_event = buckets.add_event
    watermark = NEVER_MS
    records = 0
    for i in range(0, len(events), batch):
        chunk = events[i:i + batch]
        previous = watermark
        emitted, reasons, watermark = tracker.apply_many(chunk, watermark)
        records += len(emitted)
        for event, reason in zip(chunk, reasons, strict=True):
            if reason is None:
                add_event(event)
        if watermark // width != previous // width:
            records += len(tracker.advance(watermark))
        for delta in tracker.drain_end_deltas():
            buckets.apply_end(delta)
        if watermark // width != previous // width:
            records += len(buckets.flush())
    return records


def run_engine(events: list[TouchpointEvent], config: CoreConfig) -> int:
    engine = ExperienceEngine(config, SCORING_RULES)
    records = 0
    for event in events:
        out, _ = engine.process(event)
        records += len(out.journeys) + len(out.metrics) + len(out.alerts)
    return records


def run_engine_batched(events: list[TouchpointEvent], config: CoreConfig,
                       batch: int = BATCH) -> int:
    engine = ExperienceEngine(config, SCORING_RULES)
    records = 0
    for i in range(0, len(events), batch):
        out, _ = engine.process_many(events[i:i + batch])
        records += len(out.journeys) + len(out.metrics) + len(out.alerts)
    return records


def core_mode() -> str:
    """Which core this process runs (scripts/compile_core.py; PEAKEND_PURE_CORE=1: interpreted)."""
    return ("compiled with mypyc (build/core-compiled)" if pipeline.core_build.COMPILED
            else "interpreted (PEAKEND_PURE_CORE=1 or no current compiled build)")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", choices=("apply", "batched"),
                        help="cProfile one tracker path (state gc policy) instead")
    args = parser.parse_args()
    config = CoreConfig()
    events = generate(args.events)
    surveys = sum(1 for e in events if e.survey is not None)
    print(f"peakend core benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}")
    print(f"events: {len(events):,} ({surveys / len(events):.1%} surveys), one core")
    print(f"core: {core_mode()}")
    if args.profile:
        target = {"apply": "run_tracker_and_buckets",
                  "batched": "run_tracker_and_buckets_batched"}[args.profile]
        with tuned_gc(STATE_THRESHOLDS):
            cProfile.runctx(f"{target}(events, config)", globals(), locals(),
                            "/tmp/bench_core.prof")
        pstats.Stats("/tmp/bench_core.prof").sort_stats("tottime").print_stats(20)
        return
    print("events/s = events / CPU seconds of the measuring process (time.process_time, best of "
          f"{args.repeat}); wall seconds in brackets; each row in a process forked after "
          "generation")
    paths = (("tracker + buckets, apply per event", run_tracker_and_buckets),
             (f"tracker + buckets, apply_many ({BATCH}/batch)", run_tracker_and_buckets_batched),
             ("full engine, process per event", run_engine),
             (f"full engine, process_many ({BATCH}/batch)", run_engine_batched))
    for name, fn in paths:
        for mode in MODES:
            cpu, wall, records = measure_forked(fn, events, config, mode, args.repeat)
            print(f"{name} [{mode}]: {len(events) / cpu:,.0f} events/s "
                  f"({cpu:.2f} s CPU, {wall:.2f} s wall, {records:,} records)", flush=True)


MODES = ("default gc", "stream gc policy", "state gc policy", "gc disabled")


def forget_digests(events: list[TouchpointEvent]) -> None:
    """Every event as generated, without the content digest a previous run kept on it
    (`TouchpointEvent.known_digest`): each timed run computes every digest, as replay does."""
    for event in events:
        event.known_digest = NOT_DIGESTED


def measure(fn: Callable[[list[TouchpointEvent], CoreConfig], int],
            events: list[TouchpointEvent], config: CoreConfig, mode: str, repeat: int
            ) -> tuple[float, float, int]:
    """Best CPU and wall seconds of `repeat` runs of `fn` under collector `mode`, and records."""
    best_cpu = best_wall = float("inf")
    records = 0
    for _ in range(repeat):
        forget_digests(events)
        gc.collect()
        with contextlib.ExitStack() as stack:
            if mode == "stream gc policy":  # what the worker does after loading
                stack.enter_context(tuned_gc(STREAM_THRESHOLDS))
            elif mode == "state gc policy":  # replay and backfill
                stack.enter_context(tuned_gc(STATE_THRESHOLDS))
            elif mode == "gc disabled":
                gc.disable()  # what the cyclic GC costs over the growing state
                stack.callback(gc.enable)
            wall, cpu = time.perf_counter(), time.process_time()
            records = fn(events, config)
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
        best_cpu, best_wall = min(best_cpu, cpu), min(best_wall, wall)
    return best_cpu, best_wall, records


def measure_forked(fn: Callable[[list[TouchpointEvent], CoreConfig], int],
                   events: list[TouchpointEvent], config: CoreConfig, mode: str, repeat: int
                   ) -> tuple[float, float, int]:
    """`measure` in a child forked from this process: every row starts from the same heap (the
    generated events), as a real process does, instead of the heap the rows before it left
    behind (in one process, a row measured what the rows before it left in the heap too)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without running the parent's cleanup
        os.close(read)
        status = 1
        try:
            os.write(write, json.dumps(measure(fn, events, config, mode, repeat)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        raise RuntimeError(f"benchmark child failed (status {status}) for {fn.__name__}, {mode}")
    cpu, wall, records = json.loads(b"".join(chunks))
    return float(cpu), float(wall), int(records)

if __name__ == "__main__":
    main()
