"""The entry stage in a process of its own (`peakend entry`, started by the worker).

The worker's main thread bounds its rate: it runs the Faust agents, their outputs and state
writes, and (in one process) the entry stage, which was about a quarter of its samples
(docs/streaming.md, "sixth round"). As a child the entry stage gets its own event loop and
core, as the ClickHouse sink does (`pipeline.child_process`); nothing else changes: the same
`EntryStage` reads the touchpoints in its own consumer group and writes the same batch records
and dead letters, so stage one reads them from Kafka as it reads those of any other worker.
The price is the handoff (`pipeline.stream.batches.Handoff`): stage one decodes every batch
record instead of taking the events back from memory.

The child reports its counts to the worker on its stdout, one JSON line every
`REPORT_SECONDS` (`EntryReport`); the worker adds them to its own metrics (`EntryProcess`), so
`/metrics` shows the same families either way. `PEAKEND_ENTRY_PROCESS=false` (or embedded
chdb, where the tests want one process) runs the stage as a task of the worker instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import IO

import orjson

from pipeline.child_process import ChildProcess, die_with, run_as_child
from pipeline.core.gcpolicy import STREAM_THRESHOLDS, tune_gc
from pipeline.kafka_fetch import stream_fetch
from pipeline.privacy import PersonalData
from pipeline.settings import Settings
from pipeline.stream.batches import Handoff
from pipeline.stream.entry import EntryMetrics, EntryStage, Routed, Router
from pipeline.stream.topics import journey_events_topic

log = logging.getLogger(__name__)

REPORT_SECONDS = 0.5


def build_entry_stage(settings: Settings, metrics: EntryMetrics,
                      handoff: Handoff | None = None) -> EntryStage:
    """The entry stage of `settings`, in the worker (with its stage one's `handoff`) or in
    its own process (none)."""
    s = settings
    return EntryStage(
        Router(topic=s.topic_touchpoints, partitions=s.partitions,
               max_event_bytes=s.max_event_bytes, privacy=PersonalData.from_settings(s),
               handoff=handoff),
        bootstrap=s.kafka_bootstrap, group_id=f"{s.app_id}-entry",
        batches_topic=journey_events_topic(s), dead_letters_topic=s.topic_dead_letters,
        client_options=s.aiokafka_client_options(), max_records=s.stream_batch_events,
        metrics=metrics, fetch=stream_fetch(s.stream_batch_seconds),
    )


class EntryReport:
    """The child's side of the counts: gathered between reports, written as one JSON line
    (`{"records": n, "dead": {reason: n}, "lag": {partition: n}, "expired": {partition: n},
    "at": unix seconds of the last read}`), nothing when there is nothing new."""

    def __init__(self) -> None:
        self.records = 0
        self.dead: Counter[str] = Counter()
        self.lag: dict[str, int] = {}
        self.expired: Counter[str] = Counter()
        self.at = 0.0

    def entry_read(self, routed: Routed) -> None:
        self.records += routed.records
        self.dead.update(reason for reason, _ in routed.dead_letters)
        self.at = time.time()

    def entry_lag(self, partition: int, lag: int) -> None:
        self.lag[str(partition)] = lag

    def entry_expired(self, partition: int, records: int) -> None:
        self.expired[str(partition)] += records

    def take(self) -> bytes | None:
        """The report since the last one, or None."""
        if not (self.records or self.lag or self.expired):
            return None
        line = orjson.dumps({"records": self.records, "dead": self.dead, "lag": self.lag,
                             "expired": self.expired, "at": self.at}) + b"\n"
        self.records, self.dead, self.lag, self.expired = 0, Counter(), {}, Counter()
        return line

    async def write_every(self, out: IO[bytes], seconds: float = REPORT_SECONDS) -> None:
        try:
            while True:
                await asyncio.sleep(seconds)
                self.flush(out)
        finally:
            self.flush(out)

    def flush(self, out: IO[bytes]) -> None:
        line = self.take()
        if line is None:
            return
        try:
            out.write(line)
            out.flush()
        except (BrokenPipeError, ValueError):
            # the worker that reads the reports is gone (killed: the pipe's other end closed)
            # and this child is on its way out (`run_as_child`): nobody is left to tell. Raised
            # from the report task, it printed a traceback into the worker's log at each kill.
            pass


def apply_report(line: bytes, entry_read: Callable[[int, dict[str, int], float], None],
                 entry_lag: Callable[[int, int], None],
                 entry_expired: Callable[[int, int], None]) -> None:
    """Hand one `EntryReport` line to the worker's metrics.

    >>> seen = []
    >>> apply_report(b'{"records":3,"dead":{"invalid":1},"lag":{"2":5},"expired":{"1":7},'
    ...              b'"at":1.5}\\n', *[lambda *a: seen.append(a)] * 3)
    >>> seen
    [(3, {'invalid': 1}, 1.5), (2, 5), (1, 7)]
    """
    report = orjson.loads(line)
    if report["records"]:
        entry_read(int(report["records"]), {str(k): int(v) for k, v in report["dead"].items()},
                   float(report["at"]))
    for partition, lag in report["lag"].items():
        entry_lag(int(partition), int(lag))
    for partition, records in report.get("expired", {}).items():
        entry_expired(int(partition), int(records))


class EntryProcess(ChildProcess):
    """Runs `peakend entry` as a child of the worker; its reports go to `entry_read`,
    `entry_lag` and `entry_expired` (the worker's `EntryStats.add`, `.entry_lag` and
    `.entry_expired`)."""

    def __init__(self, entry_read: Callable[[int, dict[str, int], float], None],
                 entry_lag: Callable[[int, int], None],
                 entry_expired: Callable[[int, int], None]) -> None:
        super().__init__("entry", on_line=lambda line: apply_report(
            line, entry_read, entry_lag, entry_expired))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="stop at once when this process (the worker) is gone; report "
                             "counts to it on stdout")


def run(args: argparse.Namespace) -> int:
    """`peakend entry`: touchpoints -> journey batches and dead letters in this process, until
    SIGTERM/SIGINT (or, with --parent-pid, until that process is gone)."""
    if args.parent_pid:
        die_with(args.parent_pid)  # first: the worker may be killed while this one starts
    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING)
    tune_gc(STREAM_THRESHOLDS, freeze=False)  # the worker's collector policy (gcpolicy.py)
    report = EntryReport()
    stage = build_entry_stage(settings, report)

    async def main() -> None:
        # the reports are for the worker: run by hand (no parent), the stage logs only
        writer = (asyncio.ensure_future(report.write_every(sys.stdout.buffer))
                  if args.parent_pid else None)
        try:
            await run_as_child(args.parent_pid, "entry stage", run=stage.run, stop=stage.stop,
                               abandon=lambda: stage.abandon(0.5))
        finally:
            if writer is not None:
                writer.cancel()

    asyncio.run(main())
    return 0
