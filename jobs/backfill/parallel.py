"""`peakend backfill --workers N`: the partitions' stage one in N processes, stage two here.

Like the stream, stage one (journeys and survey buckets, per input partition) needs only its own
partition's events, so each worker runs `ExperienceEngine` for a share of the partitions
(forked; each reads the files itself and builds events only for its rows). The one exception:
copies of one event_id under journey keys of different partitions are judged by the engine's
claims (one event_id, one journey: pipeline/core/claims.py), which must see every copy, so
partitions linked by such an event_id run in one worker (`linked_partitions`, a pass over the
event_id column first; without repeated event_ids every partition is its own group).

Stage two, the drop detector, needs the partials of every partition in the order the single-process
engine hands them over: each worker records its engine's ticks (row position, partition, the merged
watermark at that row, which every worker can compute because all rows move the watermarks, and the
flushed partials); the parent replays all ticks sorted by (position, partition) into one detector,
exactly the calls `ExperienceEngine.process` would make reading the rows in file order. Records are
merged per batch (journey and metric keys never span partitions), written by the parent, and the
checkpoint advances as in a one-process run.
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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.backfill.checkpoint import Checkpoint
from jobs.backfill.options import BackfillOptions, Result
from jobs.backfill.serial import Backfill, Tick, _column
from jobs.backfill.writer import Pending, Writer
from jobs.columns import clean_rows
from jobs.parquet_schema import BatchDicts, event_batches
from jobs.progress import Progress
from pipeline.core.config import CoreConfig
from pipeline.core.engine import Emitted
from pipeline.storage.warehouse import Warehouse


def _worker(conn: Connection, files: Sequence[str], config: CoreConfig,
            options: BackfillOptions, owned: frozenset[int], first: bool, linked: bool
            ) -> None:
    try:
        backfill = Backfill(config, options, owned=owned, reject_here=first, linked=linked)

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


def linked_partitions(files: Sequence[str], batch_rows: int, backfill: Backfill
                      ) -> list[frozenset[int]]:
    """The partitions that must run in one process: those holding copies of one event_id
    under different journey keys (their claims judge each other), grouped transitively; every
    other partition is a group of its own. Reads the event_id column of every file (C++), then
    the key columns of the rows whose event_id repeats only."""
    partitions = backfill.partitions
    parent = list(range(partitions))

    def root(p: int) -> int:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    chunks = [chunk for name in files
              for chunk in pq.read_table(name, columns=["event_id"]).column(0).chunks]
    repeated = pa.array([], pa.string())
    if chunks:
        counts = pc.value_counts(pa.chunked_array(chunks).cast(pa.string()))
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        first_of: dict[str, int] = {}  # event_id -> a partition holding a copy
        for name in files:
            for batch in event_batches(pq.ParquetFile(name), batch_rows):
                mask = pc.is_in(_column(batch, "event_id"), value_set=repeated)
                picked = batch.filter(mask)
                if not picked.num_rows:
                    continue
                clean = clean_rows(picked, backfill.max_bytes)
                key_of = backfill.builder.key({n: _column(picked, n).to_pylist()
                                               for n in ("journey_id", "customer_id")})
                ids = _column(picked, "event_id").to_pylist()
                dicts = BatchDicts(picked)
                for i in range(picked.num_rows):
                    if clean[i]:
                        event_id, key = ids[i], key_of(i)
                    else:  # the contract's verdict; a rejected row is no copy
                        event = backfill._slow(name, 0, dicts.row(i))
                        if event is None:
                            continue
                        event_id, key = event.event_id, event.journey_key
                    partition = backfill.partition(key)
                    other = first_of.setdefault(event_id, partition)
                    parent[root(partition)] = root(other)
    groups: dict[int, set[int]] = {}
    for p in range(partitions):
        groups.setdefault(root(p), set()).add(p)
    return [frozenset(g) for g in groups.values()]


def share_out(groups: Sequence[frozenset[int]], workers: int) -> list[frozenset[int]]:
    """Groups of partitions given to at most `workers` processes, the largest group first to
    the process with the fewest partitions (no process without partitions).

    >>> share_out([frozenset({0}), frozenset({1, 3}), frozenset({2})], 2)
    [frozenset({1, 3}), frozenset({0, 2})]
    """
    shares: list[set[int]] = [set() for _ in range(min(workers, len(groups)))]
    for group in sorted(groups, key=lambda g: (-len(g), min(g))):
        min(shares, key=len).update(group)
    return [frozenset(s) for s in shares]


def run_parallel(files: Sequence[str], total: int, warehouse: Warehouse | None,
                 config: CoreConfig, options: BackfillOptions, workers: int,
                 checkpoint: Checkpoint | None) -> Result:
    """The run in `workers` forked processes (stage one) and this one (stage two, writes)."""
    context = multiprocessing.get_context("fork")
    options = replace(options, raw_events=options.raw_events and warehouse is not None)
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
    # no process needs another's claims (see linked_partitions); a rejected row's letter is
    # the first worker's to write, so this pass writes none
    judge = Backfill(config, options, reject_here=False)
    groups = linked_partitions(files, options.batch_rows, judge)
    shares = share_out(groups, workers)
    try:
        for w, owned in enumerate(shares):
            receive, send = context.Pipe(duplex=False)
            proc = context.Process(target=_worker, name=f"peakend-backfill-{w}", daemon=True,
                                   args=(send, files, config, options, owned, w == 0,
                                         any(len(g) > 1 and g <= owned for g in groups)))
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
            digests: dict[int, int] = {}
            ticks: list[Tick] = []
            for message in messages:
                part: Pending = message[4]
                pending.journeys.update(part.journeys)
                pending.metrics.update(part.metrics)
                pending.dead_letters.extend(part.dead_letters)
                applied.extend(part.applied)
                digests.update(part.digests)
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
                    raw.raw(batch, applied, digests)
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
