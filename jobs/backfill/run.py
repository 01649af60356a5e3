"""`run_backfill`: open and check the files, load or start the checkpoint, fix the arrival time
of the `future` verdict, then run in one process (`serial`) or several (`parallel`)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pyarrow.parquet as pq

from jobs.backfill.checkpoint import Checkpoint, fingerprint
from jobs.backfill.options import BackfillOptions, Result, worker_count
from jobs.backfill.parallel import run_parallel
from jobs.backfill.serial import run_serial
from jobs.parquet_schema import check_schema
from pipeline.core.config import CoreConfig
from pipeline.core.gcpolicy import tuned_gc
from pipeline.storage.warehouse import Warehouse


def run_backfill(files: Sequence[str], warehouse: Warehouse | None, config: CoreConfig,
                 options: BackfillOptions | None = None) -> Result:
    """Backfill `files` into `warehouse` (None: run the core only, write nothing).

    `options.workers`: processes running the partitions' core (`jobs.backfill.parallel`), at
    most one per partition; None: one per CPU; 1: everything in this process."""
    options = options or BackfillOptions()
    parquet_files = []
    total = 0
    for name in files:
        parquet = pq.ParquetFile(name)
        check_schema(parquet.schema_arrow, name)
        parquet_files.append(parquet)
        total += parquet.metadata.num_rows
    checkpoint: Checkpoint | None = None
    resumed: tuple[int, int] | None = None
    if options.checkpoint_path is not None:
        scrub = options.personal_data()
        secret = hashlib.sha256(b"peakend-backfill:" + scrub.key).hexdigest()[:16]
        key = fingerprint(files, options.partitions, options.batch_rows, config,
                          f"{options.target}|{secret}|{scrub.keep_comments}", options.raw_events)
        checkpoint = None if options.restart else Checkpoint.load(options.checkpoint_path, key)
        if checkpoint is not None:
            resumed = (checkpoint.file_index, checkpoint.row)
        else:
            checkpoint = Checkpoint(options.checkpoint_path, key)
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

    workers = worker_count(options.workers, options.partitions)
    if options.workers is None and checkpoint is not None and checkpoint.state_file is not None:
        # the engine state is one process's (a parallel run saves none and recomputes from
        # the first row): unless --workers asks otherwise, continue in one process from it
        workers = 1
    with tuned_gc():  # long-lived journey state: see pipeline/core/gcpolicy.py
        if workers > 1:
            result = run_parallel(files, total, warehouse, config, options, workers, checkpoint)
        else:
            result = run_serial(files, parquet_files, total, warehouse, config, options,
                                checkpoint)
    return replace(result, resumed_from=resumed)
