"""The core over Parquet record batches in one process (`Backfill`, also each worker's driver in
a parallel run), and the one-process run."""

from __future__ import annotations

import gc
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.backfill.checkpoint import Checkpoint, Position, encode_state
from jobs.backfill.options import BackfillOptions, Result
from jobs.backfill.writer import Pending, Writer
from jobs.columns import EventBuilder, clean_rows, touchpoint_columns
from jobs.parquet_schema import BatchDicts, conform, event_batches
from jobs.progress import Progress
from pipeline.contract import Rejected, parse_dict
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.rejected import TOO_LARGE
from pipeline.core.clock import FAR_MS, NEVER_MS
from pipeline.core.config import CoreConfig
from pipeline.core.engine import Emitted, ExperienceEngine
from pipeline.core.event import TouchpointEvent, content_digest
from pipeline.core.gcpolicy import YoungPacer
from pipeline.core.journeys import REPLACED, letter_reason
from pipeline.core.partitioner import partition_for
from pipeline.core.records import MetricRecord
from pipeline.replay import reject_error
from pipeline.scoring_rules import load_scoring_rules
from pipeline.storage.warehouse import Warehouse

_END = FAR_MS  # position of the ticks of `finish`


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



class Backfill:
    """The core over record batches, collecting what the sinks would write.

    Rows the contract certainly accepts (`jobs.columns.clean_rows`) are built into events
    straight from the columns; the others go through `parse_dict` as dicts. Events then run
    through `ExperienceEngine.process_many`, one call per partition for each stretch of rows
    between two bucket-boundary crossings (the only points where a partition's call reads the
    other partitions: the merged watermark and the drop detector), so the engine ends in the
    state, and emits the records, of `process` called row by row in file order."""

    def __init__(self, config: CoreConfig, options: BackfillOptions | None = None, *,
                 owned: frozenset[int] | None = None, reject_here: bool = True,
                 linked: bool = False, resume: dict[str, Any] | None = None) -> None:
        """`resume`: a `snapshot()` of a `Backfill` made with the same config and options to
        continue from."""
        options = options or BackfillOptions()
        with _collector_paused():
            self.engine = ExperienceEngine(
                config, load_scoring_rules(config.journeys.scoring_rules_path),
                resume=None if resume is None else resume["engine"],
                claims_partitions=options.partitions)  # as replay and the stream
        self.personal = options.personal_data()
        self.partitions = options.partitions
        self.max_bytes = options.max_bytes
        self.raw_events = options.raw_events
        self.lateness_ms = config.journeys.allowed_lateness_ms
        self.clock = config.clock
        self.future_after = (FAR_MS if config.clock.now_ms is None
                             else config.clock.now_ms + config.clock.max_skew_ms)
        self.bucket_ms = self.engine.bucket_ms
        self.pending = Pending()
        self.counts: Counter[str] = Counter()
        self.builder = EventBuilder(self.personal)
        self._partition_of: dict[str, int] = {}
        # the engine's per-partition watermarks as rows are read (ahead of the engine calls)
        self._watermarks: dict[int, int] = {}
        # parallel runs (jobs.backfill.parallel): the partitions this worker runs the core for;
        # None: all of them, with the detector, in this process
        self.owned = owned
        self.reject_here = reject_here  # record dead letters of rows the contract rejects
        # owned partitions hold copies of one event_id (jobs.backfill.parallel.linked_partitions):
        # the claims of one partition withdraw from another, so at a crossing the others catch
        # up first, in the order of a one-process run
        self.linked = linked
        self.position = 0  # rows read before the current batch, over all files
        self.ticks: list[Tick] = []
        if resume is not None:
            self._watermarks = {int(p): int(w) for p, w in resume["watermarks"]}
            self.position = int(resume["position"])

    def snapshot(self) -> dict[str, Any]:
        """Everything a resumed run needs (between two batches, with nothing pending): the
        engine's snapshot (the core's state contract) and the watermarks read ahead of it.
        `Backfill(config, options, resume=...)` continues from it. Counts and caches are not
        part of it."""
        with _collector_paused():
            return {"engine": self.engine.snapshot(),
                    "watermarks": sorted(self._watermarks.items()),
                    "position": self.position}

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

    def raw(self, batch: pa.RecordBatch, applied: Sequence[int] | None = None,
            digests: Mapping[int, int] | None = None) -> None:
        """The touchpoint_events columns of the applied rows of `batch` (default: those this
        process applied, with the digests the core computed for them), into `pending.raw`."""
        pending = self.pending
        if applied is None:
            applied, pending.applied = pending.applied, []
            digests, pending.digests = pending.digests, {}
        if self.raw_events and applied:
            pending.raw.append(touchpoint_columns(batch, applied, self.builder, digests))

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
        digests = pending.digests
        for event, reason, (i, watermark) in zip(events, reasons, rows, strict=True):
            if reason is None:
                applied += 1
                kept.append(i)
                digests[i] = content_digest(event)  # computed by the core: kept with the event
            elif reason == "duplicate":
                self.counts["duplicates"] += 1
            else:
                if reason == REPLACED:
                    # the winner of a conflict, applied in place of the copy that came first:
                    # its row belongs in touchpoint_events (the letter records the conflict)
                    kept.append(i)
                    digests[i] = content_digest(event)
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



@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a snapshot is built or loaded: the millions of
    containers it creates set off full collections over the whole engine state (with them a
    snapshot of a 1-day file took 3 times as long; the snapshot makes no reference cycles)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _original(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")



def run_serial(files: Sequence[str], parquet_files: Sequence[pq.ParquetFile], total: int,
               warehouse: Warehouse | None, config: CoreConfig, options: BackfillOptions,
               checkpoint: Checkpoint | None) -> Result:
    """The whole run in this process: every batch of every file through one `Backfill`, from
    the checkpoint's engine state when it has one (the rows before it are not read again),
    saving the engine's state every `options.snapshot_seconds`."""
    options = replace(options, raw_events=options.raw_events and warehouse is not None)
    with _collector_paused():  # the state's millions of containers: see _collector_paused
        state = None if checkpoint is None else checkpoint.load_state()
        backfill = Backfill(config, options, resume=None if state is None else state.backfill)
        start: Position = (0, 0) if state is None else state.position
        state = None  # the loaded JSON tree: freed now, not held through the run
    if start != (0, 0):
        # the restored engine joins what the run froze at its start (gcpolicy.tune_gc, without
        # its collection: the paused collector saw no garbage cycles made by the load)
        gc.freeze()
    not_read = sum(p.metadata.num_rows for p in parquet_files[:start[0]]) + start[1]
    meter = Progress("backfill", total - not_read, enabled=options.progress)
    writer = Writer(warehouse, checkpoint)
    done = 0
    last_snapshot = time.monotonic()
    # young collections per events, not per net allocations (pipeline/core/gcpolicy.py); the
    # parallel workers are not paced: each sees every row but feeds the core only its own
    pacer = YoungPacer()
    try:
        for index, (name, parquet) in enumerate(zip(files, parquet_files, strict=True)):
            if index < start[0]:
                continue
            source = Path(name).name
            row = start[1] if index == start[0] else 0
            for batch in _batches_from(parquet, options.batch_rows, row):
                covered = writer.covered(index, row + batch.num_rows)
                # no raw event columns for rows a resumed run will not write
                backfill.raw_events = options.raw_events and not covered
                backfill.batch(source, row + 1, batch)
                pacer.pace(batch.num_rows)
                row += batch.num_rows
                done += batch.num_rows
                snapshot: bytes | None = None
                if (checkpoint is not None and not covered
                        and options.snapshot_seconds is not None
                        and time.monotonic() - last_snapshot >= options.snapshot_seconds):
                    snapshot = encode_state(backfill.snapshot())
                    last_snapshot = time.monotonic()
                writer.put_batch(backfill.take(), (index, row), done, meter,
                                 options.stop_after_rows, snapshot)
        backfill.finish()
        writer.put(backfill.take(), None)
    finally:
        writer.close()
    if checkpoint is not None:
        checkpoint.finished(len(files))
    seconds = meter.finish()
    return Result(done, backfill.counts, seconds, writer.written,
                  restored_from=None if start == (0, 0) else start)


def _batches_from(parquet: pq.ParquetFile, batch_rows: int, first_row: int
                  ) -> Iterator[pa.RecordBatch]:
    """The record batches of `parquet` from row `first_row` (0: all). Whole row groups before
    it are not read. (The batches may be cut elsewhere than in the run that saved the state:
    the engine ends in the same state and emits the same records however rows are batched.)"""
    if first_row == 0:
        yield from event_batches(parquet, batch_rows)
        return
    metadata = parquet.metadata
    group = 0
    skipped = 0
    while group < metadata.num_row_groups and \
            skipped + metadata.row_group(group).num_rows <= first_row:
        skipped += metadata.row_group(group).num_rows
        group += 1
    if group == metadata.num_row_groups:
        return
    for batch in parquet.iter_batches(batch_size=batch_rows,
                                      row_groups=range(group, metadata.num_row_groups)):
        if skipped + batch.num_rows <= first_row:
            skipped += batch.num_rows
            continue
        if skipped < first_row:
            batch = batch.slice(first_row - skipped)
        skipped = first_row
        yield conform(batch)
