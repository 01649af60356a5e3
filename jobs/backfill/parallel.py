"""`peakend backfill --workers N`: the partitions' stage one in N processes, stage two here.

Like the stream, stage one (journeys and survey buckets, per input partition) needs only its own
partition's events, so worker w runs `ExperienceEngine` for the partitions p with p % N == w
(forked; each reads the files itself and builds events only for its rows). Stage two, the drop
detector, needs the partials of every partition in the order the single-process engine hands
them over: each worker records its engine's ticks (row position, partition, the merged
watermark at that row, which every worker can compute because all rows move the watermarks, and
the flushed partials); the parent replays all ticks sorted by (position, partition) into one
detector, exactly the calls `ExperienceEngine.process` would make reading the rows in file order.
Records are merged per batch (journey and metric keys never span partitions), written by the
parent, and the checkpoint advances as in a one-process run.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.backfill.checkpoint import Checkpoint
from jobs.backfill.options import BackfillOptions, Result
from jobs.backfill.serial import Backfill, Tick
from jobs.backfill.writer import Pending, Writer
from jobs.parquet_schema import event_batches
from jobs.progress import Progress
from pipeline.core.config import CoreConfig
from pipeline.core.engine import Emitted
from pipeline.storage.warehouse import Warehouse


def _worker(conn: Connection, files: Sequence[str], config: CoreConfig,
            options: BackfillOptions, owned: frozenset[int], first: bool) -> None:
    try:
        backfill = Backfill(config, options, owned=owned, reject_here=first)

        def send(kind: str, *where: int) -> None:
            counts = Counter({k: backfill.counts[k] for k in ("events", "duplicates")})
            backfill.counts.clear()
            conn.send((kind, *where, backfill.pending, backfill.ticks, counts))
            backfill.pending, backfill.ticks = Pending(), []

        for index, name in enumerate(files):
            source = Path(name).name
            row = 0
            for batch in event_batches(pq.ParquetFile(name), options.batch_rows):
                backfill.batch(source, row + 1, batch)
                row += batch.num_rows
                send("batch", index, row, batch.num_rows)
        backfill.finish()
        send("finish", 0, 0, 0)
    except BaseException:  # reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _batches(files: Sequence[str], batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    for index, name in enumerate(files):
        for batch in event_batches(pq.ParquetFile(name), batch_rows):
            yield index, batch


def run_parallel(files: Sequence[str], total: int, warehouse: Warehouse | None,
                 config: CoreConfig, options: BackfillOptions, workers: int,
                 checkpoint: Checkpoint | None) -> Result:
    """The run in `workers` forked processes (stage one) and this one (stage two, writes)."""
    context = multiprocessing.get_context("fork")
    options = replace(options, raw_events=options.raw_events and warehouse is not None)
    partitions = options.partitions
    conns: list[Connection] = []
    procs = []
    # the parent's own Backfill: its engine's detector is the run's stage two, and it builds
    # the touchpoint_events columns from the rows the workers applied
    raw = Backfill(config, options)
    detector = raw.engine.detector
    batches = _batches(files, options.batch_rows)
    batch_file = 0
    counts: Counter[str] = Counter()
    meter = Progress("backfill", total, enabled=options.progress)
    done = 0
    writer = Writer(warehouse, checkpoint)
    try:
        for w in range(workers):
            owned = frozenset(p for p in range(partitions) if p % workers == w)
            receive, send = context.Pipe(duplex=False)
            proc = context.Process(target=_worker, name=f"peakend-backfill-{w}", daemon=True,
                                   args=(send, files, config, options, owned, w == 0))
            proc.start()
            send.close()
            conns.append(receive)
            procs.append(proc)
        while True:
            messages = [conn.recv() for conn in conns]
            for message in messages:
                if message[0] == "error":
                    raise RuntimeError(f"backfill worker failed:\n{message[1]}")
            kind, index, row, rows = messages[0][:4]
            if any(m[:4] != messages[0][:4] for m in messages):
                raise RuntimeError("backfill workers read different batches")
            pending = Pending()
            applied: list[int] = []
            ticks: list[Tick] = []
            for message in messages:
                part: Pending = message[4]
                pending.journeys.update(part.journeys)
                pending.metrics.update(part.metrics)
                pending.dead_letters.extend(part.dead_letters)
                applied.extend(part.applied)
                ticks.extend(message[5])
                counts.update(message[6])
            ticks.sort(key=lambda t: (t.position, t.partition))
            alerts = []
            for tick in ticks:
                for record in tick.partials:
                    detector.apply_partial(record)
                alerts.extend(detector.advance(tick.merged))
            pending.keep(Emitted(alerts=alerts))
            if kind == "batch":
                batch_file, batch = next(batches)
                if (index, batch.num_rows) != (batch_file, rows):
                    raise RuntimeError("backfill workers read different batches")
                if not writer.covered(index, row):
                    raw.pending = pending
                    raw.raw(batch, applied)
            counts["rows"] += rows
            counts["journey_rows"] += len(pending.journeys)
            counts["metric_rows"] += len(pending.metrics)
            counts["alert_rows"] += len(pending.alerts)
            counts["dead_letters"] += len(pending.dead_letters)
            if kind == "finish":
                writer.put(pending, None)
                writer.close()
                break
            done += rows
            writer.put_batch(pending, (index, row), done, meter, options.stop_after_rows)
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        writer.close()
    written = writer.written
    if checkpoint is not None:
        checkpoint.finished(len(files))
    seconds = meter.finish()
    return Result(done, counts, seconds, written)


__all__ = ["run_parallel"]
