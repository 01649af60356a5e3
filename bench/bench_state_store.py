"""What RocksDB costs the worker for its journey state, background threads included: stage one's
state writes of generated events, into partition databases opened with the worker's options
(`pipeline.state_store.SharedRocksDBOptions`), and with variants of them, alternating.

    .venv/bin/python -m bench.bench_state_store [--events 100000] [--batch 1000] [--rounds 2]

The journey-state pairs come from `PartitionProcessor.dirty_state()` after every `--batch`
events (4 partitions), encoded as the worker encodes them (`state_writer.encode`), and are
written per partition and batch as one `WriteBatch`, as `ChangelogTable.write_pairs` does; no
changelog, no Kafka. CPU is the whole process's (`time.process_time`: RocksDB's flush and
compaction threads included), per input event: the writes, then a flush of every database and
two seconds for the compactions it sets off. The pairs are generated once and cached in
`--dir`. Why: `bench/thread_cpu.py` showed RocksDB's background threads at about 5% of the
worker's CPU in `bench_pipeline` (docs/streaming.md, thirteenth round).
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rocksdict

from bench.host import cpu_model, loadavg
from pipeline.state_store import SharedRocksDBOptions

Batch = list[tuple[int, list[tuple[bytes, bytes | None]]]]  # (partition, its pairs) per batch
PARTITIONS = 4


def journey_state_writes(events: int, batch: int) -> list[Batch]:
    from jobs.generate import GeneratorConfig, generate_events
    from pipeline.contract.parser import parse_dict
    from pipeline.core.config import CoreConfig
    from pipeline.core.partitioner import partition_for
    from pipeline.scoring_rules import load_scoring_rules
    from pipeline.stream.partition import PartitionProcessor
    from pipeline.stream.state_writer import encode

    parsed = [parse_dict(d) for d in generate_events(GeneratorConfig(events=events, seed=9))]
    processors = [PartitionProcessor(p, CoreConfig(), load_scoring_rules())
                  for p in range(PARTITIONS)]
    out: list[Batch] = []
    for start in range(0, events, batch):
        for event in parsed[start:start + batch]:
            processors[partition_for(event.journey_key, PARTITIONS)].process(event)
        out.append([(proc.partition, [
            (encode(key), None if state is None else
             encode({"p": proc.partition, "s": state, "w": proc.watermark}))
            for key, state in proc.dirty_state()]) for proc in processors])
    return out


class Variant(SharedRocksDBOptions):
    """The worker's options, with the table compression replaced when `compression` is set,
    and writes without RocksDB's write-ahead log when `wal` is False."""

    def __init__(self, compression: Any = None, wal: bool = True) -> None:
        super().__init__()
        self.compression = compression
        self.write_options = rocksdict.WriteOptions()
        # rocksdict's stub declares disable_wal a method; at run time it is a settable
        # attribute (a getset descriptor), which this assignment sets.
        self.write_options.disable_wal = not wal  # type: ignore[method-assign, assignment]

    def as_options(self) -> Any:
        options = super().as_options()
        if self.compression is not None:
            options.set_compression_type(self.compression)
        return options


VARIANTS = {
    "worker's options": lambda: Variant(),
    "no compression": lambda: Variant(rocksdict.DBCompressionType.none()),
    "no write-ahead log": lambda: Variant(wal=False),
}


def one_run(name: str, batches: list[Batch], events: int, root: Path) -> str:
    folder = Path(tempfile.mkdtemp(prefix="state-store-", dir=root))
    options = VARIANTS[name]()
    databases = [options.open(folder / f"p{p}") for p in range(PARTITIONS)]
    gc.collect()
    started = time.process_time()
    for batch in batches:
        for partition, pairs in batch:
            writes = rocksdict.WriteBatch(raw_mode=True)
            for key, value in pairs:
                if value is None:
                    writes.delete(key)
                else:
                    writes.put(key, value)
            databases[partition].write(writes, options.write_options)
    written = time.process_time()
    for database in databases:
        database.flush(True)
    time.sleep(2.0)  # the compactions the flushes set off run on RocksDB's threads
    done = time.process_time()
    for database in databases:
        database.close()
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    shutil.rmtree(folder)
    per = 1e6 / events
    return (f"{name:18s} writes {(written - started) * per:5.2f} + flush and compaction "
            f"{(done - written) * per:5.2f} = {(done - started) * per:5.2f} us per event; "
            f"{size / 1e6:.0f} MB on disk (load {loadavg()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    cache = args.dir / f"peakend-journey-state-{args.events}-{args.batch}.pickle"
    if cache.exists():
        with cache.open("rb") as handle:
            batches: list[Batch] = pickle.load(handle)  # our own cache file
    else:
        batches = journey_state_writes(args.events, args.batch)
        with cache.open("wb") as handle:
            pickle.dump(batches, handle, pickle.HIGHEST_PROTOCOL)
    pairs = sum(len(p) for batch in batches for _, p in batch)
    size = sum(len(v or b"") for batch in batches for _, p in batch for _, v in p)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, nproc {os.cpu_count()}; "
          f"{args.events:,} events, batches of {args.batch}: {pairs / args.events:.3f} "
          f"journey-state writes and {size / args.events:.0f} bytes per event")
    for round_ in range(1, args.rounds + 1):
        for name in VARIANTS:
            print(f"round {round_}: {one_run(name, batches, args.events, args.dir)}", flush=True)


if __name__ == "__main__":
    main()
