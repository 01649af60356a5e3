"""What a backfill hands to ClickHouse: the records pending since the last flush (latest version
per key), their insert, and the thread that writes batches in order and advances the
checkpoint."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from jobs.backfill.checkpoint import Checkpoint, Position
from jobs.columns import journey_row
from jobs.progress import Progress
from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.engine import Emitted
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.storage.tables import TABLES, rows
from pipeline.storage.warehouse import Warehouse

MetricKey = tuple[str, str, str, int, int]


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
    # row index -> the content digest of the event the core applied there (its row's version:
    # computed once, by the core, instead of building the row's event again)
    digests: dict[int, int] = field(default_factory=dict)
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


class Interrupted(Exception):
    """Raised by `run_backfill(stop_after_rows=...)`: a simulated crash for tests."""



def write(warehouse: Warehouse, pending: Pending, insert_rows: int = 200_000) -> int:
    """Insert the pending records (rows as `pipeline.storage.tables.rows` maps them)."""
    written = 0
    groups: list[tuple[str, list[list[Any]]]] = [
        ("journeys", _transpose([journey_row(r) for r in pending.journeys.values()])),
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
        self.queue: queue.Queue[tuple[Pending, Position | None, bytes | None] | None] = \
            queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._loop, name="peakend-backfill-writer",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # failed: drain until closed
            pending, reached, state = item
            try:
                if self.warehouse is not None:
                    self.written += write(self.warehouse, pending)
                if self.checkpoint is not None and reached is not None:
                    self.checkpoint.file_index, self.checkpoint.row = reached
                    if state is None:
                        self.checkpoint.save()
                    else:  # every row up to `reached` is written: the state may count now
                        self.checkpoint.save_state(reached, state)
            except BaseException as exc:  # raised in the parent thread by put / close
                self.error = exc

    def put(self, pending: Pending, reached: Position | None, state: bytes | None = None
            ) -> None:
        """Queue `pending`, then the checkpoint's advance to `reached` and, if given, the
        engine `state` (`checkpoint.encode_state`) of that position."""
        self._raise()
        self.queue.put((pending, reached, state))

    def put_batch(self, pending: Pending, reached: Position, done: int, meter: Progress,
                  stop_after_rows: int | None, state: bytes | None = None) -> None:
        """Queue the batch ending at `reached` (file index, rows of it) unless the run we resume
        wrote it (its state was rebuilt from it, nothing is written twice), then report `done`
        rows; `state`: the engine state after it; `stop_after_rows`: the simulated crash of the
        tests."""
        if not self.covered(*reached):
            self.put(pending, reached, state)
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

