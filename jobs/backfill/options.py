"""What a backfill run is asked to do (one frozen options object, passed whole from the command
line through `run_backfill` to the serial or parallel run and the core's batch driver) and what
it reports."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.privacy import PersonalData


@dataclass(frozen=True)
class BackfillOptions:
    """How to run a backfill; the defaults are `peakend backfill`'s without its flags."""

    partitions: int = 1  # spread events like Kafka's default partitioner (replay --partitions)
    batch_rows: int = 65_536  # rows per record batch, write and checkpoint
    max_bytes: int = 65536  # the record-size limit (PEAKEND_MAX_EVENT_BYTES)
    keep_comments: bool = False  # keep survey comments (when `personal` is not given)
    raw_events: bool = True  # write the validated events to touchpoint_events
    checkpoint_path: Path | None = None  # None: neither resume nor record
    target: str = ""  # where the rows go, part of the checkpoint's fingerprint
    restart: bool = False  # ignore an existing checkpoint
    # save the engine's state with the checkpoint after the first batch this many seconds
    # (wall clock) after the last save (0: after every batch; None: never, a resumed run
    # recomputes from the first row); docs/jobs.md "Resume"
    snapshot_seconds: float | None = 600.0
    progress: bool = False  # progress on stderr
    stop_after_rows: int | None = None  # the simulated crash of the tests (`Interrupted`)
    personal: PersonalData | None = None  # pseudonymisation; None: ids kept as given
    workers: int | None = None  # processes for the partitions' core; None: one per CPU

    def personal_data(self) -> PersonalData:
        """Pseudonymised customer ids and dropped comments, as the stream does before the core."""
        return self.personal or PersonalData(keep_comments=self.keep_comments)


@dataclass
class Result:
    rows: int
    counts: Counter[str]
    seconds: float
    written: int
    resumed_from: tuple[int, int] | None = None  # the checkpoint's written position
    restored_from: tuple[int, int] | None = None  # the engine state's position (rows not read)


def worker_count(workers: int | None, partitions: int) -> int:
    """The processes a backfill runs: `workers` (None: one per CPU), at most one per partition.

    >>> worker_count(8, 3), worker_count(1, 12)
    (3, 1)
    """
    if workers is None:
        workers = os.cpu_count() or 1
    return max(1, min(workers, partitions))
