"""`peakend backfill FILE.parquet [...]`: Parquet events through the core into ClickHouse.

The package: `options` (one frozen `BackfillOptions` for a run, its `Result`), `run`
(`run_backfill`), `serial` (the core over record batches, `Backfill`; the one-process run),
`parallel` (`--workers N`), `writer` (pending records, inserts, the writer thread),
`checkpoint` (resume), `cli` (`peakend backfill`, `python -m jobs.backfill`).

Reads the files (layout: `jobs/parquet_schema.py`) in record batches with pyarrow, validates each
row with the stream's own contract code (`pipeline.contract.parse_dict`, plus the record-size
limit on the row's compact JSON), runs `ExperienceEngine` with the same partition assignment as
`peakend replay --partitions N`, and writes journeys, metric buckets, alerts, dead letters and
the raw validated events through `pipeline.storage.tables` (server URL or embedded chdb).

Output equals `peakend replay` on the same events: journeys and metric partials are the latest
version per key, alerts the latest state per alert, dead letters one per rejected row
(`source_topic` = file name, `source_offset` = row number from 1, like replay's line numbers).

Resume (docs/jobs.md "Resume"): after every written batch the checkpoint (`--checkpoint`,
default under .stack/backfill/) records the position written; every `--snapshot-every` seconds a
one-process run also saves the engine's state (`Backfill.snapshot()`, the core's snapshot
contract) at a position no later than the written one. A resumed run restores that state and
reads on from its position (a parallel run, or one without a state, recomputes from the first
row), runs the rows up to the written position through the core without writing, then writes.
Rows a crashed run wrote after its last checkpoint are written again with the same content and
the same versions: the tables are ReplacingMergeTree keyed by record key, and readers use FINAL
or argMax(version), so the final tables are identical to an uninterrupted run. The checkpoint is
bound to the files (path, size, mtime), the partition count, batch size, core settings and
target, its state file also to the state format and the core's sources; anything else is
refused in one line naming the file (use --restart).
"""

from jobs.backfill.checkpoint import Checkpoint, fingerprint
from jobs.backfill.cli import add_arguments, run
from jobs.backfill.options import BackfillOptions, Result, worker_count
from jobs.backfill.run import run_backfill
from jobs.backfill.serial import Backfill, Tick
from jobs.backfill.writer import Interrupted, Pending, Writer, write

__all__ = ["Backfill", "BackfillOptions", "Checkpoint", "Interrupted", "Pending", "Result", "Tick",
           "Writer", "add_arguments", "fingerprint", "run", "run_backfill", "worker_count",
           "write"]
