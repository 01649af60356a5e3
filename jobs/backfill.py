"""`peakend backfill FILE.parquet [...]`: Parquet events through the core into ClickHouse.

Reads the files (layout: `jobs/parquet_schema.py`) in record batches with pyarrow, validates each
row with the stream's own contract code (`pipeline.contract.parse_dict`, plus the record-size
limit on the row's compact JSON), runs `ExperienceEngine` with the same partition assignment as
`peakend replay --partitions N`, and writes journeys, metric buckets, alerts, dead letters and
the raw validated events through `pipeline.storage.tables` (server URL or embedded chdb).

Output equals `peakend replay` on the same events: journeys and metric partials are the latest
version per key, alerts the latest state per alert, dead letters one per rejected row
(`source_topic` = file name, `source_offset` = row number from 1, like replay's line numbers).

Resume (checkpoint after every flushed batch; `--checkpoint`, default under .stack/backfill/):
the core is deterministic, so a resumed run re-reads the files from the start and recomputes the
engine state without writing anything until the checkpointed row, then writes as usual. Rows a
crashed run wrote after its last checkpoint are written again with the same content and the same
versions: the tables are ReplacingMergeTree keyed by record key (journeys, metric_buckets, alerts
by version; dead_letters by topic/partition/offset; touchpoint_events by event_id), and readers
use FINAL or argMax(version), so the final tables are identical to an uninterrupted run. The
checkpoint is bound to the files (path, size, mtime), the partition count, batch size, core
settings and target; anything else refuses to resume (use --restart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.columns import EventBuilder, Seconds, clean_rows, journey_row, touchpoint_columns
from jobs.parquet_schema import BatchDicts, check_schema, event_batches
from jobs.progress import Progress
from pipeline.contract import Rejected, parse_dict
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.rejected import TOO_LARGE
from pipeline.core.clock import FAR_MS, NEVER_MS
from pipeline.core.config import CoreConfig
from pipeline.core.engine import Emitted, ExperienceEngine
from pipeline.core.event import TouchpointEvent
from pipeline.core.gcpolicy import tuned_gc
from pipeline.core.journeys import REPLACED, letter_reason
from pipeline.core.partitioner import partition_for
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.privacy import PersonalData
from pipeline.replay import add_now_argument, reject_error
from pipeline.settings import Settings
from pipeline.storage.warehouse import Warehouse
from pipeline.urls import warehouse_url_argument

_END = FAR_MS  # position of the ticks of `finish`

MetricKey = tuple[str, str, str, int, int]


def _column(batch: pa.RecordBatch, name: str) -> Any:
    return batch.column(batch.schema.get_field_index(name))


def _json_size(obj: Mapping[str, Any]) -> int:
    """Bytes of the row as a producer would send it (compact UTF-8 JSON, `event_to_json`)."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@dataclass(slots=True)
class Tick:
    """One engine tick of a worker: where it happened (row position over all files, then
    partition), the merged watermark the detector is advanced to, the partials it receives."""

    position: int
    partition: int
    merged: int
    partials: list[MetricRecord]


@dataclass
class Pending:
    """Records produced since the last flush, latest version per key (what the tables keep)."""

    journeys: dict[str, JourneyRecord] = field(default_factory=dict)
    metrics: dict[MetricKey, MetricRecord] = field(default_factory=dict)
    alerts: dict[str, AlertRecord] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # touchpoint_events: row indices (in the current batch) of the events the core applied;
    # `raw` the table's columns built from them, per batch
    applied: list[int] = field(default_factory=list)
    raw: list[list[list[Any]]] = field(default_factory=list)

    def keep(self, emitted: Emitted) -> None:
        journeys = self.journeys
        for journey in emitted.journeys:
            old = journeys.get(journey.journey_id)
            if old is None or journey.version > old.version:
                journeys[journey.journey_id] = journey
        metrics = self.metrics
        for metric in emitted.metrics:
            key = (metric.metric, metric.segment_dim, metric.segment_value, metric.window_start,
                   metric.source_partition)
            old_metric = metrics.get(key)
            if old_metric is None or metric.version > old_metric.version:
                metrics[key] = metric
        for alert in emitted.alerts:
            old_alert = self.alerts.get(alert.alert_id)
            if old_alert is None or alert.version > old_alert.version:
                self.alerts[alert.alert_id] = alert

    def __len__(self) -> int:
        return (len(self.journeys) + len(self.metrics) + len(self.alerts)
                + len(self.dead_letters) + sum(len(c[0]) for c in self.raw))


class Backfill:
    """The core over record batches, collecting what the sinks would write.

    Rows the contract certainly accepts (`jobs.columns.clean_rows`) are built into events
    straight from the columns; the others go through `parse_dict` as dicts. Events then run
    through `ExperienceEngine.process_many`, one call per partition for each stretch of rows
    between two bucket-boundary crossings (the only points where a partition's call reads the
    other partitions: the merged watermark and the drop detector), so the engine ends in the
    state, and emits the records, of `process` called row by row in file order."""

    def __init__(self, config: CoreConfig, *, partitions: int = 1, max_bytes: int = 65536,
                 keep_comments: bool = False, raw_events: bool = True,
                 personal: PersonalData | None = None, owned: frozenset[int] | None = None,
                 reject_here: bool = True, linked: bool = False) -> None:
        self.engine = ExperienceEngine(config)
        # pseudonymised customer ids and dropped comments, as the stream does before the core
        self.personal = personal or PersonalData(keep_comments=keep_comments)
        self.partitions = partitions
        self.max_bytes = max_bytes
        self.keep_comments = keep_comments
        self.raw_events = raw_events
        self.lateness_ms = config.journeys.allowed_lateness_ms
        self.clock = config.clock
        self.future_after = (FAR_MS if config.clock.now_ms is None
                             else config.clock.now_ms + config.clock.max_skew_ms)
        self.bucket_ms = self.engine.bucket_ms
        self.pending = Pending()
        self.counts: Counter[str] = Counter()
        self.builder = EventBuilder(self.personal)
        self.seconds = Seconds()
        self._partition_of: dict[str, int] = {}
        # the engine's per-partition watermarks as rows are read (ahead of the engine calls)
        self._watermarks: dict[int, int] = {}
        # parallel runs (jobs.backfill_parallel): the partitions this worker runs the core for;
        # None: all of them, with the detector, in this process
        self.owned = owned
        self.reject_here = reject_here  # record dead letters of rows the contract rejects
        # owned partitions hold copies of one event_id (jobs.backfill_parallel.linked_partitions):
        # the claims of one partition withdraw from another, so at a crossing the others catch
        # up first, in the order of a one-process run
        self.linked = linked
        self.position = 0  # rows read before the current batch, over all files
        self.ticks: list[Tick] = []

    def partition(self, key: str) -> int:
        if self.partitions <= 1:
            return 0
        cache = self._partition_of
        partition = cache.get(key)
        if partition is None:
            if len(cache) >= 1_000_000:
                cache.clear()
            partition = cache[key] = partition_for(key, self.partitions)
        return partition

    def batch(self, source: str, first_row: int, batch: pa.RecordBatch) -> None:
        """Every row of one record batch; `first_row` is the row number (from 1) of its first."""
        rows = batch.num_rows
        self.counts["rows"] += rows
        clean = clean_rows(batch, self.max_bytes)
        dicts = BatchDicts(batch)
        if self.owned is not None:
            self._owned_batch(source, first_row, batch, clean, dicts)
            return
        build = self.builder.builder(self.builder.columns(batch))
        width = self.bucket_ms
        watermarks = self._watermarks
        partition_of = self.partition
        # per partition: the events read since its last engine call, with their row index and
        # the partition's watermark when each was read
        groups: dict[int, tuple[list[TouchpointEvent], list[tuple[int, int]]]] = {}
        for i in range(rows):
            if clean[i]:
                event = build(i)
            else:
                slow = self._slow(source, first_row + i, dicts.row(i))
                if slow is None:
                    continue
                event = slow
            partition = partition_of(event.journey_key)
            ms = event.occurred_ms
            previous = watermarks.get(partition, NEVER_MS)
            # a `future` row (the engine rejects it) never moves stream time
            watermark = ms if previous < ms <= self.future_after else previous
            watermarks[partition] = watermark
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = ([], [])
            group[0].append(event)
            group[1].append((i, watermark))
            if watermark // width != previous // width:
                # a possible tick: every other partition catches up to this row first
                for other in [p for p in groups if p != partition]:
                    self._run(source, first_row, other, groups.pop(other), dicts)
                self._run(source, first_row, partition, groups.pop(partition), dicts)
        for partition in list(groups):
            self._run(source, first_row, partition, groups.pop(partition), dicts)
        self.raw(batch)

    def raw(self, batch: pa.RecordBatch, applied: Sequence[int] | None = None) -> None:
        """The touchpoint_events columns of the applied rows of `batch` (default: those this
        process applied), into `pending.raw`."""
        pending = self.pending
        if applied is None:
            applied, pending.applied = pending.applied, []
        if self.raw_events and applied:
            pending.raw.append(touchpoint_columns(batch, applied, self.builder, self.seconds))

    def _owned_batch(self, source: str, first_row: int, batch: pa.RecordBatch,
                     clean: list[bool], dicts: BatchDicts) -> None:
        """`batch` in a worker of a parallel run: the core runs only for the partitions this
        worker owns. Every row still moves the watermarks (first pass, over the key and time
        columns only), so at each bucket-boundary crossing of an owned partition the worker
        records what the engine's tick hands the detector (the flushed partials) and the merged
        watermark it reads; the parent replays those ticks in row order into the one detector.
        The second pass builds the owned rows' events (their columns only) and runs the core."""
        owned = self.owned
        assert owned is not None
        rows = batch.num_rows
        width = self.bucket_ms
        watermarks = self._watermarks
        partition_of = self.partition
        key_of = self.builder.key({name: _column(batch, name).to_pylist()
                                   for name in ("journey_id", "customer_id")})
        ms_of = _column(batch, "occurred_at").cast(pa.int64()).to_pylist()
        # owned rows: (row, partition, watermark, merged watermark at a crossing else None,
        # the event of a row that took the slow path)
        mine: list[tuple[int, int, int, int | None, TouchpointEvent | None]] = []
        for i in range(rows):
            event: TouchpointEvent | None = None
            if clean[i]:
                key, ms = key_of(i), ms_of[i]
            else:
                event = self._slow(source, first_row + i, dicts.row(i))
                if event is None:
                    continue
                key, ms = event.journey_key, event.occurred_ms
            partition = partition_of(key)
            previous = watermarks.get(partition, NEVER_MS)
            # a `future` row (the engine rejects it) never moves stream time
            watermark = ms if previous < ms <= self.future_after else previous
            watermarks[partition] = watermark
            if partition in owned:
                crossing = watermark // width != previous // width
                mine.append((i, partition, watermark,
                             min(watermarks.values()) if crossing else None, event))
        fast = [m[0] for m in mine if m[4] is None]
        build = self.builder.builder(self.builder.columns(
            batch.take(pa.array(fast, type=pa.int64()))))
        groups: dict[int, tuple[list[TouchpointEvent], list[tuple[int, int]]]] = {}
        j = 0
        for i, partition, watermark, merged, slow in mine:
            if slow is None:
                event = build(j)
                j += 1
            else:
                event = slow
            group = groups.get(partition)
            if group is None:
                group = groups[partition] = ([], [])
            group[0].append(event)
            group[1].append((i, watermark))
            if merged is not None:
                if self.linked:
                    for other in [p for p in groups if p != partition]:
                        self._run(source, first_row, other, groups.pop(other), dicts)
                emitted = self._run(source, first_row, partition, groups.pop(partition), dicts)
                if emitted is not None:  # the crossing row was applied: the engine ticked
                    self.ticks.append(Tick(self.position + i, partition, merged,
                                           emitted.metrics))
        for partition in list(groups):
            self._run(source, first_row, partition, groups.pop(partition), dicts)
        self.position += rows

    def _slow(self, source: str, number: int, obj: dict[str, Any]) -> TouchpointEvent | None:
        """A row the fast checks did not clear: the contract's verdict, as the stream gives it."""
        try:
            size = _json_size(obj)
            if size > self.max_bytes:
                raise Rejected(TOO_LARGE, f"record is {size} bytes, above the limit of "
                                          f"{self.max_bytes} (PEAKEND_MAX_EVENT_BYTES); "
                                          "split it or shorten free text")
            event = parse_dict(obj)
        except Rejected as rejected:
            if self.reject_here:
                self.pending.dead_letters.append(DeadLetter.from_rejection(
                    rejected, original=_original(obj), source_topic=source,
                    source_partition=0, source_offset=number))
            return None
        return self.personal.scrub(event)

    def _run(self, source: str, first_row: int, partition: int,
             group: tuple[list[TouchpointEvent], list[tuple[int, int]]],
             dicts: BatchDicts) -> Emitted | None:
        """The engine over one partition's events; returns what it emitted when the last event
        was applied (else None)."""
        events, rows = group
        emitted, reasons = self.engine.process_many(events, partition)
        pending = self.pending
        if self.owned is not None:
            # a worker's detector sees only its own partitions: its alerts are not the run's
            # (the parent's detector replays every worker's ticks)
            emitted.alerts.clear()
        pending.keep(emitted)
        applied = 0
        kept = pending.applied
        for event, reason, (i, watermark) in zip(events, reasons, rows, strict=True):
            if reason is None:
                applied += 1
                kept.append(i)
            elif reason == "duplicate":
                self.counts["duplicates"] += 1
            else:
                if reason == REPLACED:
                    # the winner of a conflict, applied in place of the copy that came first:
                    # its row belongs in touchpoint_events (the letter records the conflict)
                    kept.append(i)
                pending.dead_letters.append(DeadLetter.make(
                    letter_reason(reason),
                    reject_error(reason, event.event_id, event.occurred_ms, watermark,
                                 self.clock, self.lateness_ms, partition),
                    original=_original(dicts.row(i)), source_topic=source,
                    source_partition=partition, source_offset=first_row + i,
                    event_id=event.event_id))
        self.counts["events"] += applied
        return emitted if reasons[-1] is None else None

    def finish(self) -> None:
        if self.owned is None:
            self.pending.keep(self.engine.finish())
            return
        emitted = self.engine.finish()  # ticks every partition, in this order:
        partials: dict[int, list[MetricRecord]] = {p: [] for p in sorted(self.engine.trackers)}
        for record in emitted.metrics:
            partials[record.source_partition].append(record)
        merged = min(self._watermarks.values(), default=NEVER_MS)
        for partition, records in partials.items():
            self.ticks.append(Tick(_END, partition, merged, records))
        emitted.alerts.clear()
        self.pending.keep(emitted)

    def take(self) -> Pending:
        pending, self.pending = self.pending, Pending()
        self.counts["journey_rows"] += len(pending.journeys)
        self.counts["metric_rows"] += len(pending.metrics)
        self.counts["alert_rows"] += len(pending.alerts)
        self.counts["dead_letters"] += len(pending.dead_letters)
        return pending


def _original(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write(warehouse: Warehouse, pending: Pending, insert_rows: int = 200_000) -> int:
    """Insert the pending records (rows as `pipeline.storage.tables.rows` maps them)."""
    from pipeline.storage.tables import TABLES, rows

    seconds = Seconds()
    written = 0
    groups: list[tuple[str, list[list[Any]]]] = [
        ("journeys", _transpose([journey_row(r, seconds) for r in pending.journeys.values()])),
        ("metric_buckets", _transpose(rows(
            "metric_buckets", [r.to_dict() for r in pending.metrics.values()])[1])),
        ("alerts", _transpose(rows("alerts", [r.to_dict() for r in pending.alerts.values()])[1])),
        ("dead_letters", _transpose(rows("dead_letters",
                                         [d.to_dict() for d in pending.dead_letters])[1])),
    ]
    groups.extend(("touchpoint_events", columns) for columns in pending.raw)
    for table, data in groups:
        columns = TABLES[table].columns
        size = len(data[0]) if data else 0
        for start in range(0, size, insert_rows):
            chunk = data if size <= insert_rows else [c[start:start + insert_rows] for c in data]
            written += warehouse.insert_columns(table, columns, chunk)
    return written


def _transpose(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


class Writer:
    """Writes batches and advances the checkpoint in a thread, in order, while the caller works
    on the next batch (the core, or receiving the workers' results; the driver's socket waits
    release the GIL). `put` raises the error of an earlier write, `close` waits for all."""

    def __init__(self, warehouse: Warehouse | None, checkpoint: Checkpoint | None) -> None:
        self.warehouse = warehouse
        # `resumed` stays where the run started, so "written by the run we resume" is asked of a
        # fixed position; the thread advances its own copy (asking the live one raced: a reader
        # could see the next file's index beside the previous file's row and skip a batch).
        self.resumed = checkpoint
        self.checkpoint = None if checkpoint is None else replace(checkpoint)
        self.written = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue[tuple[Pending, tuple[int, int] | None] | None] = \
            queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._loop, name="peakend-backfill-writer",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # failed: drain until closed
            pending, reached = item
            try:
                if self.warehouse is not None:
                    self.written += write(self.warehouse, pending)
                if self.checkpoint is not None and reached is not None:
                    self.checkpoint.file_index, self.checkpoint.row = reached
                    self.checkpoint.save()
            except BaseException as exc:  # raised in the parent thread by put / close
                self.error = exc

    def put(self, pending: Pending, reached: tuple[int, int] | None) -> None:
        self._raise()
        self.queue.put((pending, reached))

    def put_batch(self, pending: Pending, reached: tuple[int, int], done: int, meter: Progress,
                  stop_after_rows: int | None) -> None:
        """Queue the batch ending at `reached` (file index, rows of it) unless the run we resume
        wrote it (its state was rebuilt from it, nothing is written twice), then report `done`
        rows; `stop_after_rows`: the simulated crash of the tests."""
        if not self.covered(*reached):
            self.put(pending, reached)
        meter.update(done)
        if stop_after_rows is not None and done >= stop_after_rows:
            self.close()
            raise Interrupted(f"stopped after {done} rows")

    def covered(self, file_index: int, row_end: int) -> bool:
        """Were rows up to `row_end` of file `file_index` written by the run we resume?"""
        return self.resumed is not None and self.resumed.covers(file_index, row_end)

    def close(self) -> None:
        """Wait for every queued write; raise the error of a failed one."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


# checkpoints


def fingerprint(files: Sequence[str], partitions: int, batch_rows: int, config: CoreConfig,
                target: str, raw_events: bool) -> str:
    # not `--now`: a resumed run keeps the first run's (Checkpoint.now_ms), whatever the clock
    config = replace(config, clock=replace(config.clock, now_ms=None))
    parts: list[Any] = [partitions, batch_rows, repr(config), target, raw_events]
    for name in files:
        stat = os.stat(name)
        parts.append((str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


@dataclass
class Checkpoint:
    path: Path
    fingerprint: str
    file_index: int = 0  # next file to write
    row: int = 0  # rows of that file already written
    complete: bool = False
    now_ms: int | None = None  # when the events reached us (`--now`), fixed by the first run

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Checkpoint | None:
        """The saved checkpoint, None when there is none; ValueError when it is another run's."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if data.get("fingerprint") != fingerprint:
            raise ValueError(f"checkpoint {path} belongs to another backfill (other files, "
                             "settings, partitions or target); use --restart to start over")
        now = data.get("now_ms")
        return cls(path, fingerprint, int(data["file_index"]), int(data["row"]),
                   bool(data["complete"]), None if now is None else int(now))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "file_index": self.file_index,
                                   "row": self.row, "complete": self.complete,
                                   "now_ms": self.now_ms}),
                       encoding="utf-8")
        os.replace(tmp, self.path)

    def covers(self, file_index: int, row_end: int) -> bool:
        """Were rows up to `row_end` of file `file_index` written by an earlier run?"""
        return self.complete or file_index < self.file_index or (
            file_index == self.file_index and row_end <= self.row)


class Interrupted(Exception):
    """Raised by `run_backfill(stop_after_rows=...)`: a simulated crash for tests."""


@dataclass
class Result:
    rows: int
    counts: Counter[str]
    seconds: float
    written: int
    resumed_from: tuple[int, int] | None


def worker_count(workers: int | None, partitions: int) -> int:
    """The processes a backfill runs: `workers` (None: one per CPU), at most one per partition.

    >>> worker_count(8, 3), worker_count(1, 12)
    (3, 1)
    """
    if workers is None:
        workers = os.cpu_count() or 1
    return max(1, min(workers, partitions))


def run_backfill(files: Sequence[str], warehouse: Warehouse | None, config: CoreConfig, *,
                 partitions: int = 1, batch_rows: int = 65_536, max_bytes: int = 65536,
                 keep_comments: bool = False, raw_events: bool = True,
                 checkpoint_path: Path | None = None, target: str = "",
                 restart: bool = False, progress: bool = False,
                 stop_after_rows: int | None = None,
                 personal: PersonalData | None = None, workers: int | None = None) -> Result:
    """Backfill `files` into `warehouse` (None: run the core only, write nothing).

    `workers`: processes running the partitions' core (`jobs.backfill_parallel`), at most one
    per partition; None: one per CPU; 1: everything in this process."""
    parquet_files = []
    total = 0
    for name in files:
        parquet = pq.ParquetFile(name)
        check_schema(parquet.schema_arrow, name)
        parquet_files.append(parquet)
        total += parquet.metadata.num_rows
    checkpoint: Checkpoint | None = None
    resumed: tuple[int, int] | None = None
    if checkpoint_path is not None:
        scrub = personal or PersonalData(keep_comments=keep_comments)
        secret = hashlib.sha256(b"peakend-backfill:" + scrub.key).hexdigest()[:16]
        key = fingerprint(files, partitions, batch_rows, config,
                          f"{target}|{secret}|{scrub.keep_comments}", raw_events)
        checkpoint = None if restart else Checkpoint.load(checkpoint_path, key)
        if checkpoint is not None:
            resumed = (checkpoint.file_index, checkpoint.row)
        else:
            checkpoint = Checkpoint(checkpoint_path, key)
            checkpoint.save()
    if checkpoint is not None and checkpoint.complete:
        return Result(0, Counter(), 0.0, 0, resumed)
    # the `future` verdict judges every row against one arrival time: `--now`, else the wall
    # clock of the first run (a resumed run re-runs earlier rows through the core: same verdicts)
    now = config.clock.now_ms
    if checkpoint is not None and checkpoint.now_ms is not None:
        now = checkpoint.now_ms
    if now is None:
        now = time.time_ns() // 1_000_000
    config = replace(config, clock=replace(config.clock, now_ms=now))
    if checkpoint is not None and checkpoint.now_ms != now:
        checkpoint.now_ms = now
        checkpoint.save()

    workers = worker_count(workers, partitions)
    with tuned_gc():  # long-lived journey state: see pipeline/core/gcpolicy.py
        if workers > 1:
            from jobs.backfill_parallel import run_parallel

            return run_parallel(
                files, total, warehouse, config, workers=workers, partitions=partitions,
                batch_rows=batch_rows, max_bytes=max_bytes, keep_comments=keep_comments,
                raw_events=raw_events, checkpoint=checkpoint, resumed=resumed,
                progress=progress, stop_after_rows=stop_after_rows, personal=personal)
        return _run(files, parquet_files, total, warehouse, config, partitions, batch_rows,
                    max_bytes, keep_comments, raw_events, checkpoint, resumed, progress,
                    stop_after_rows, personal)


def _run(files: Sequence[str], parquet_files: list[pq.ParquetFile], total: int,
         warehouse: Warehouse | None, config: CoreConfig, partitions: int, batch_rows: int,
         max_bytes: int, keep_comments: bool, raw_events: bool, checkpoint: Checkpoint | None,
         resumed: tuple[int, int] | None, progress: bool, stop_after_rows: int | None,
         personal: PersonalData | None) -> Result:
    backfill = Backfill(config, partitions=partitions, max_bytes=max_bytes,
                        keep_comments=keep_comments,
                        raw_events=raw_events and warehouse is not None,
                        personal=personal)
    meter = Progress("backfill", total, enabled=progress)
    writer = Writer(warehouse, checkpoint)
    try:
        done = _batches(files, parquet_files, backfill, writer, meter, raw_events, warehouse,
                        batch_rows, stop_after_rows)
        backfill.finish()
        writer.put(backfill.take(), None)
    finally:
        writer.close()
    if checkpoint is not None:
        checkpoint.file_index, checkpoint.row, checkpoint.complete = len(files), 0, True
        checkpoint.save()
    seconds = meter.finish()
    return Result(done, backfill.counts, seconds, writer.written, resumed)


def _batches(files: Sequence[str], parquet_files: list[pq.ParquetFile], backfill: Backfill,
             writer: Writer, meter: Progress, raw_events: bool, warehouse: Warehouse | None,
             batch_rows: int, stop_after_rows: int | None) -> int:
    """Every batch of every file through `backfill`, handing each batch's records to
    `writer`; rows read."""
    done = 0
    for index, (name, parquet) in enumerate(zip(files, parquet_files, strict=True)):
        source = Path(name).name
        row = 0
        for batch in event_batches(parquet, batch_rows):
            # no raw event columns for rows a resumed run will not write
            backfill.raw_events = raw_events and warehouse is not None and not (
                writer.covered(index, row + batch.num_rows))
            backfill.batch(source, row + 1, batch)
            row += batch.num_rows
            done += batch.num_rows
            writer.put_batch(backfill.take(), (index, row), done, meter, stop_after_rows)
    return done


# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.parquet",
                        help="event files in the jobs/parquet_schema.py layout, in order")
    parser.add_argument("--url", default=None, type=warehouse_url_argument,
                        help="clickhouse://user:password@host:port/db (default "
                             "PEAKEND_CLICKHOUSE_URL; empty: embedded chdb at PEAKEND_CHDB_PATH)")
    parser.add_argument("--partitions", type=int, default=1,
                        help="spread events over N partitions like Kafka's default partitioner "
                             "(as `peakend replay --partitions`); default 1")
    parser.add_argument("--batch-rows", type=int, default=65_536,
                        help="rows per record batch, write and checkpoint (default 65536)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes running the partitions' core, at most --partitions "
                             "(default: one per CPU; 1: a single process; docs/jobs.md)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file (default .stack/backfill/<run fingerprint>.json)")
    parser.add_argument("--restart", action="store_true",
                        help="ignore an existing checkpoint and start from the first row")
    parser.add_argument("--no-checkpoint", action="store_true", help="do not resume or record")
    parser.add_argument("--no-raw-events", action="store_true",
                        help="do not write the validated events to touchpoint_events")
    parser.add_argument("--dry-run", action="store_true",
                        help="run the core only and report; write nothing to ClickHouse")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_now_argument(parser)


def run(args: argparse.Namespace) -> int:
    workers = 1 if args.workers is None else args.workers
    if min(args.partitions, args.batch_rows, workers) < 1:
        print("peakend backfill: --partitions, --batch-rows and --workers must be at least 1",
              file=sys.stderr)
        return 2
    settings = Settings.from_env()
    config = settings.core_config()
    if args.now is not None:
        config = replace(config, clock=replace(config.clock, now_ms=args.now))
    url = settings.clickhouse_url if args.url is None else args.url
    warehouse: Warehouse | None = None
    target = "dry-run"
    if not args.dry_run:
        from pipeline.storage.migrate import migrate
        from pipeline.storage.warehouse import connect

        warehouse = connect(url, chdb_path=settings.chdb_path,
                            database=settings.clickhouse_database,
                            ca_file=settings.clickhouse_ssl_cafile)
        migrate(warehouse)
        target = f"{warehouse.engine}:{_mask(url) or settings.chdb_path}:{warehouse.database}"
    checkpoint_path: Path | None = None
    if not args.no_checkpoint and not args.dry_run:
        if args.checkpoint:
            checkpoint_path = Path(args.checkpoint)
        else:
            key = fingerprint(args.files, args.partitions, args.batch_rows, config, target,
                              not args.no_raw_events)
            checkpoint_path = Path(".stack/backfill") / f"{key[:16]}.json"
    try:
        result = run_backfill(
            args.files, warehouse, config, partitions=args.partitions,
            batch_rows=args.batch_rows, max_bytes=settings.max_event_bytes,
            keep_comments=settings.keep_comments, raw_events=not args.no_raw_events,
            checkpoint_path=checkpoint_path, target=target, restart=args.restart,
            progress=not args.quiet, personal=PersonalData.from_settings(settings),
            workers=args.workers)
    except (OSError, ValueError, pa.ArrowException) as exc:
        print(f"peakend backfill: {exc}", file=sys.stderr)
        return 1
    finally:
        if warehouse is not None:
            warehouse.close()
    if result.resumed_from is not None and result.rows == 0:
        print(f"peakend backfill: already complete (checkpoint {checkpoint_path}); "
              "--restart to run again")
        return 0
    counts = result.counts
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    lines = [f"read {result.rows:,} rows in {result.seconds:.2f} s ({rate:,.0f}/s), "
             f"{counts['events']:,} applied, {counts['duplicates']:,} duplicates dropped, "
             f"{counts['dead_letters']:,} dead letters"]
    if result.resumed_from is not None:
        f_index, f_row = result.resumed_from
        lines.append(f"resumed after row {f_row:,} of file {f_index + 1} (rows before it were "
                     "re-run through the core without writing)")
    lines.append(f"rows written: {result.written:,} ({counts['journey_rows']:,} journey, "
                 f"{counts['metric_rows']:,} metric, {counts['alert_rows']:,} alert updates)"
                 if warehouse is not None else "dry run: nothing written")
    print("\n".join(lines))
    return 0


def _mask(url: str) -> str:
    """The URL without its password, for fingerprints and messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"


__all__ = ["Backfill", "Checkpoint", "Interrupted", "Pending", "Result", "add_arguments",
           "run", "run_backfill", "write"]
