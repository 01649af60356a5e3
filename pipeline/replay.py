"""`peakend replay EVENTS.jsonl --output DIR`: run the core over a file of events, no servers.

Each line goes through the event contract parser (rejects become dead letters), then through
`ExperienceEngine`. With `--partitions N` every event is placed like Kafka's default partitioner
places its key, so per-partition stream time (and with it lateness and alert timing) is what the
stream would see. Writes journeys.jsonl (latest state per journey), metrics.jsonl (latest state
per bucket partial), alerts.jsonl (every alert state change), dead_letters.jsonl,
windows.jsonl (hourly and daily windows per metric and segment, the rows of the ClickHouse views
`metrics_hourly` and `metrics_daily`: `pipeline.core.windows`) and followups.jsonl (latest state
per follow-up case, docs/followups.md), and drivers_events.parquet / drivers_journeys.parquet,
the inputs of `peakend drivers` (`pipeline.driver_inputs`).

Input: UTF-8 JSON Lines, plain or gzip (`pipeline.contract.jsonl`); a file that is not JSON
Lines at all is refused with one line. Output: the files replace those of an earlier run
together, or not at all (`pipeline.outputs`); the output directory must not hold the input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from pipeline import driver_inputs
from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.jsonl import NotJsonLines, iter_records, open_binary
from pipeline.core.clock import FUTURE, NEVER_MS, conflict_error, future_error, late_error
from pipeline.core.config import HOUR_MS, ClockConfig, CoreConfig
from pipeline.core.engine import Emitted, ExperienceEngine
from pipeline.core.event import TouchpointEvent
from pipeline.core.followups import (
    CaseRecord,
    FollowupEvent,
    FollowupJourney,
    FollowupRules,
    FollowupTracker,
)
from pipeline.core.gcpolicy import PACE_EVENTS, YoungPacer, tune_gc
from pipeline.core.journeys import CONFLICT, REPLACED, letter_reason
from pipeline.core.partitioner import partition_for
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.core.timefmt import parse_ms
from pipeline.core.windows import windows_in_key_order
from pipeline.driver_inputs import DriverInputs
from pipeline.followup_rules import FollowupRulesError, horizon_ms, load_rules
from pipeline.metric_runs import MetricKey, MetricRuns
from pipeline.outputs import OutputDir, OutputError
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", help="JSONL file of touchpoint events ('-' for stdin)")
    parser.add_argument("--output", required=True, help="directory for the output files")
    parser.add_argument("--partitions", type=int, default=1,
                        help="spread events over N partitions like Kafka's default partitioner "
                             "(murmur2 of the journey key); default 1")
    add_now_argument(parser)


def add_now_argument(parser: argparse.ArgumentParser) -> None:
    """`--now`: when the events of a file reached us, for the `future` verdict (shared by
    replay and backfill so both judge clocks the same way)."""
    parser.add_argument(
        "--now", type=parse_now, default=None, metavar="RFC3339",
        help="the time the events reached us: an event dated more than "
             "PEAKEND_MAX_CLOCK_SKEW_SECONDS ahead of it is a dead letter `future` and does not "
             "move stream time (default: the wall clock when the run starts, as the stream "
             "judges an event by the time it reads it)")


def parse_now(text: str) -> int:
    """`--now` as epoch milliseconds, with a one-line error argparse prints."""
    try:
        ms = parse_ms(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time with an offset, e.g. 2026-11-22T17:10:00Z"
        ) from None
    return ms


def with_now(config: CoreConfig, explicit: int | None) -> CoreConfig:
    """`config` for a batch run whose events reached us at `--now` (default: the wall clock)."""
    now = explicit if explicit is not None else time.time_ns() // 1_000_000
    return replace(config, clock=replace(config.clock, now_ms=now))


def reject_error(reason: str, event_id: str, event_ms: int, watermark_ms: int,
                 clock: ClockConfig, lateness_ms: int, partition: int) -> str:
    """The dead-letter message of an event the engine rejected with `reason` in a batch run."""
    if reason == FUTURE and clock.now_ms is not None:
        return future_error(event_ms, clock.now_ms, clock.max_skew_ms)
    if reason in (CONFLICT, REPLACED):
        return conflict_error(event_id, reason == REPLACED)
    return late_error(event_ms, watermark_ms, lateness_ms, partition)


class Replay:
    """Collects the engine's output the way the sinks would keep it (latest version wins)."""

    def __init__(self, config: CoreConfig, partitions: int, source: str, max_bytes: int,
                 privacy: PersonalData | None = None,
                 followup_rules: FollowupRules | None = None) -> None:
        self.engine = ExperienceEngine(
            config, load_scoring_rules(config.journeys.scoring_rules_path),
            claims_partitions=partitions)  # the claims as the stream's claims stage: by partition
        self.clock = config.clock
        self.privacy = privacy or PersonalData()
        self.partitions = partitions
        self.source = source
        self.max_bytes = max_bytes
        self.lateness_ms = config.journeys.allowed_lateness_ms
        self.ces_5_more_effort = config.journeys.ces_5_more_effort
        self.journeys: dict[str, JourneyRecord] = {}
        # the metric records: those still held (`metrics`) and those spilled to runs on disk
        self.metric_runs = MetricRuns()
        self.metrics: dict[MetricKey, MetricRecord] = self.metric_runs.held
        self.metric_keys: int | None = None  # how many keys `write` wrote to metrics.jsonl
        self.alerts: list[AlertRecord] = []
        self.dead_letters: list[DeadLetter] = []
        self.counts: Counter[str] = Counter()
        rules = followup_rules if followup_rules is not None else load_rules()
        self.followups = FollowupTracker(rules, horizon_ms(
            rules, config.journeys.max_length_ms, config.journeys.allowed_lateness_ms))
        self.cases: dict[str, CaseRecord] = {}
        self.followups_evicted_at = NEVER_MS
        self.driver_inputs = DriverInputs(self.engine.rules, self.ces_5_more_effort)

    def line(self, number: int, raw: bytes) -> None:
        self.counts["lines"] += 1
        try:
            event = self.privacy.scrub(parse_event(raw, max_bytes=self.max_bytes))
        except Rejected as rejected:
            self.dead_letters.append(self.privacy.seal(DeadLetter.from_rejection(
                rejected, original=raw, source_topic=self.source, source_partition=0,
                source_offset=number)))
            return
        partition = partition_for(event.journey_key, self.partitions)
        emitted, reason = self.engine.process(event, partition)
        self.keep(emitted)
        if reason == "duplicate":
            self.counts["duplicates"] += 1
        elif reason is not None:
            self.dead_letters.append(self.privacy.seal(DeadLetter.make(
                letter_reason(reason), self.reject_error(reason, event, partition),
                original=raw, source_topic=self.source, source_partition=partition,
                source_offset=number, event_id=event.event_id)))
        else:
            self.counts["events"] += 1
            self.driver_inputs.add(event)
        if reason is None or (self.engine.cross_journey and reason != "duplicate"):
            # a copy judged against another journey key's copy was applied by the stream's
            # journey stage before its claim was judged, and fed to the follow-up stage then
            signal = FollowupEvent.from_event(event, self.ces_5_more_effort)
            if signal is not None:
                self.keep_cases(self.followups.apply(events=[signal]))

    def reject_error(self, reason: str, event: TouchpointEvent, partition: int) -> str:
        """The dead-letter message of an event the engine rejected with `reason`."""
        return reject_error(reason, event.event_id, event.occurred_ms,
                            self.engine.watermarks.get(partition, event.occurred_ms),
                            self.clock, self.lateness_ms, partition)

    def keep(self, emitted: Emitted) -> None:
        for journey in emitted.journeys:
            old = self.journeys.get(journey.journey_id)
            if old is None or journey.version > old.version:
                self.journeys[journey.journey_id] = journey
        keep_metric = self.metric_runs.keep
        for metric in emitted.metrics:
            keep_metric(metric)
        self.alerts.extend(emitted.alerts)
        if emitted.journeys:
            self.keep_cases(self.followups.apply(
                journeys=[FollowupJourney.from_record(r) for r in emitted.journeys]))
            watermark = max(self.engine.watermarks.values())
            if watermark >= self.followups_evicted_at + FOLLOWUP_EVICT_EVERY_MS:
                self.followups.advance(watermark)  # forget customers out of reach
                self.followups_evicted_at = watermark

    def spill_metrics(self) -> int:
        """Move the metric records of buckets every partition's stream time has left a
        lateness and an hour behind out of memory (`MetricRuns.spill`); how many went. Their
        later records, if any, still count (the runs' merge keeps the latest version)."""
        if not self.engine.watermarks:
            return 0
        before = min(self.engine.watermarks.values()) - self.lateness_ms - HOUR_MS
        return self.metric_runs.spill(before)

    def keep_cases(self, cases: list[CaseRecord]) -> None:
        """Latest version of each follow-up case, as the sink keeps them."""
        for case in cases:
            old = self.cases.get(case.case_id)
            if old is None or case.version >= old.version:
                self.cases[case.case_id] = case

    def write(self, directory: Path | OutputDir) -> None:
        """The files, replacing an earlier run's together or not at all; OutputError."""
        if isinstance(directory, OutputDir):
            outputs = directory
        else:
            outputs = OutputDir(directory, OUTPUT_FILES)
            outputs.prepare()
        with outputs.transaction() as tx:
            _write_by_key(tx.open("journeys.jsonl"), self.journeys)
            with tx.open("metrics.jsonl") as handle:
                # the windows sum the metric records as they are written, one series at a time
                _write(tx.open("windows.jsonl"), (w.to_dict() for w in windows_in_key_order(
                    self._metrics_written(handle))))
            _write(tx.open("alerts.jsonl"), (r.to_dict() for r in self.alerts))
            _write(tx.open("dead_letters.jsonl"), (d.to_dict() for d in self.dead_letters))
            _write_by_key(tx.open("followups.jsonl"), self.cases)
            with tx.open(driver_inputs.EVENTS_FILE) as handle:
                self.driver_inputs.write_events(handle)
            with tx.open(driver_inputs.JOURNEYS_FILE) as handle:
                DriverInputs.write_journeys(handle, self.journeys.values(),
                                            os.path.getsize(tx.staged["journeys.jsonl"].path))

    def _metrics_written(self, handle: BinaryIO) -> Iterator[MetricRecord]:
        """Each key's latest metric record, its line written to `handle` (in key order) as it
        is handed on (to the windows)."""
        keys = 0
        for record in self.metric_runs.merged():
            handle.write(orjson.dumps(record.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
            keys += 1
            yield record
        self.metric_keys = keys

    def summary(self, seconds: float) -> str:
        statuses = Counter(r.status for r in self.journeys.values())
        reasons = Counter(d.reason for d in self.dead_letters)
        states = Counter(a.state for a in self.alerts)
        rate = self.counts["lines"] / seconds if seconds > 0 else 0.0
        return "\n".join([
            f"read {self.counts['lines']} records in {seconds:.2f} s ({rate:,.0f}/s), "
            f"{self.counts['events']} applied, {self.counts['duplicates']} duplicates dropped",
            "journeys: " + _counts(statuses, ("open", "closed", "superseded")),
            f"metric partials: "
            f"{len(self.metrics) if self.metric_keys is None else self.metric_keys}",
            "alerts: " + _counts(states, ("firing", "resolved")),
            f"dead letters: {len(self.dead_letters)}"
            + (f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})"
               if reasons else ""),
            "follow-up cases: " + _counts(Counter(c.status for c in self.cases.values()),
                                          ("open", "closed", "withdrawn")),
        ])


FOLLOWUP_EVICT_EVERY_MS = HOUR_MS  # of event time; eviction walks a heap, an hour is plenty


def _counts(counter: Counter[str], names: Iterable[str]) -> str:
    return ", ".join(f"{counter.get(name, 0)} {name}" for name in names)


OUTPUT_FILES = ("journeys.jsonl", "metrics.jsonl", "alerts.jsonl", "dead_letters.jsonl",
                "windows.jsonl", "followups.jsonl", *driver_inputs.FILES)


def _write(opened: AbstractContextManager[BinaryIO], rows: Iterable[dict[str, Any]]) -> None:
    """One compact JSON line per row, encoded as the stream encodes its output records (orjson,
    `pipeline.stream.outbox.to_json`; the standard library's encoder cost a 9-day replay 7% of
    its CPU: docs/core.md, "Cost over long histories")."""
    with opened as handle:
        for row in rows:
            handle.write(orjson.dumps(row))
            handle.write(b"\n")


def _write_by_key(opened: AbstractContextManager[BinaryIO],
                  held: Mapping[Any, JourneyRecord | MetricRecord | CaseRecord]) -> None:
    """One JSON line per record, in key order (journeys.jsonl, followups.jsonl). Encoded in
    the order held, then sorted: the records were allocated in about that order, while key
    order jumps across the whole run's heap. When metrics.jsonl was written this way (714,088
    records at 90 days, all held; now `pipeline.metric_runs`) it took the file from 20.7 to
    11.7 us per replayed event (`bench/bench_replay_write.py`, docs/core.md "Cost over long
    histories")."""
    # One buffer, not a bytes object per line: orjson returns each line in a block of about
    # 4 KB, so holding 59,250 of them took 460 MB more at peak (9 days) where this takes 20.
    encoded = bytearray()
    spans: list[tuple[Any, int, int]] = []
    for key, record in held.items():
        start = len(encoded)
        encoded += orjson.dumps(record.to_dict(), option=orjson.OPT_APPEND_NEWLINE)
        spans.append((key, start, len(encoded)))
    spans.sort(key=itemgetter(0))
    lines = memoryview(encoded)
    with opened as handle:
        for _, start, end in spans:
            handle.write(lines[start:end])


def run(args: argparse.Namespace) -> int:
    if args.partitions < 1:
        print("peakend replay: --partitions must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    source = "stdin" if args.events == "-" else Path(args.events).name
    config = with_now(settings.core_config(), args.now)
    try:
        followup_rules = load_rules(settings.followup_rules)
    except FollowupRulesError as exc:
        print(f"peakend replay: {exc}", file=sys.stderr)
        return 2
    replay = Replay(config, args.partitions, source, settings.max_event_bytes,
                    PersonalData.from_settings(settings), followup_rules)
    tune_gc()  # the journey state is long-lived: see pipeline/core/gcpolicy.py
    started = time.perf_counter()
    # The output is checked (and made) before the work, so a bad path costs no computing.
    outputs = OutputDir(Path(args.output), OUTPUT_FILES, inputs=[args.events])
    try:
        outputs.prepare()
    except OutputError as exc:
        print(f"peakend replay: {exc}", file=sys.stderr)
        return exc.status
    pacer = YoungPacer()  # young collections per events, not per net allocations: gcpolicy
    try:
        with open_binary(args.events) as handle:
            for number, raw in iter_records(handle, args.events, note=_note):
                replay.line(number, raw)
                if number % PACE_EVENTS == 0:
                    pacer.pace(PACE_EVENTS)
                    replay.spill_metrics()
    except OSError as exc:  # NotJsonLines included: nothing was written
        outputs.abandon()
        reason = exc if isinstance(exc, NotJsonLines) else (
            f"cannot read {args.events}: {exc.strerror or exc}")
        print(f"peakend replay: {reason}", file=sys.stderr)
        return 2
    replay.keep(replay.engine.finish())
    try:
        replay.write(outputs)
    except OutputError as exc:
        print(f"peakend replay: {exc}", file=sys.stderr)
        return exc.status
    print(replay.summary(time.perf_counter() - started))
    print(f"wrote {args.output}/{', '.join(OUTPUT_FILES)}")
    return 0


def _note(text: str) -> None:
    print(f"peakend replay: {text}", file=sys.stderr)
