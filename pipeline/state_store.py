"""The worker's RocksDB stores: one memory budget for every partition database of its tables.

Faust opens one RocksDB database per table and partition (2 tables x `PEAKEND_PARTITIONS`
databases on a worker that owns every partition: 24 at the default 12), and by default gives
each its own 64 MiB write buffer (up to 3 of them) and its own 2 GiB block cache. The worker only
writes to its stores while it runs (state is read back once, when a partition is assigned), so
nothing made RocksDB flush: every rewrite of a journey's state stayed in the memtables, and the
worker's RSS grew with the events read until each database's 64 MiB buffer would have filled
(issue 14: 447 MiB at 150,000 events, no flush, ~215 MiB of memtables at shutdown).

Here every database of the worker shares one LRU cache and one write buffer manager:

- `CACHE_BYTES` (48 MiB): the one block cache; it holds data blocks, the index and filter
  blocks (`cache_index_and_filter_blocks`, so open SST files cost no memory outside it) and is
  charged for the memtables, so RocksDB's memory is about this figure whatever the number of
  partitions;
- `WRITE_BUFFER_TOTAL_BYTES` (16 MiB): the memtables of all databases together; past it the
  database being written flushes (no write stall: `allow_stall` is off);
- `WRITE_BUFFER_BYTES` (4 MiB) and `MAX_WRITE_BUFFERS` (2): one database's memtable flushes at
  4 MiB, and one more may fill while it does;
- `MAX_OPEN_FILES` (64 per database): table readers are few (the state of a partition is a few
  MiB), and a bound keeps file handles at 64 x databases.

These are constants, not settings: RocksDB is only read at restore, so a cache smaller than the
state costs a slower restore, never a wrong result, and the state itself (open journeys, the
buckets within the lateness) is bounded by the core, not by these numbers. The number of
databases stays 2 per partition: merging the two tables would change the state layout and the
changelog topics for no saving once the memory is shared (an idle database costs a few hundred
KiB). docs/reliability.md has the worker's RSS over 1 million events with these options and with
Faust's defaults (`python -m bench.faults --only memory --memory-worker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb

from pipeline.stream.faust_private import StoreHookTable

__all__ = [
    "CACHE_BYTES",
    "MAX_OPEN_FILES",
    "MAX_WRITE_BUFFERS",
    "WRITE_BUFFER_BYTES",
    "WRITE_BUFFER_TOTAL_BYTES",
    "SharedRocksDBOptions",
    "StateTable",
    "shared_options",
    "state_table",
]

MIB = 1024 * 1024
CACHE_BYTES = 48 * MIB
WRITE_BUFFER_TOTAL_BYTES = 16 * MIB
WRITE_BUFFER_BYTES = 4 * MIB
MAX_WRITE_BUFFERS = 2
MAX_OPEN_FILES = 64


class SharedRocksDBOptions(faust_rocksdb.RocksDBOptions):
    """Faust's RocksDB options with one cache and one write buffer manager for every database
    opened through this object (one object per worker process: see `StateTable`)."""

    def __init__(
        self,
        *,
        cache_bytes: int = CACHE_BYTES,
        write_buffer_total_bytes: int = WRITE_BUFFER_TOTAL_BYTES,
        write_buffer_bytes: int = WRITE_BUFFER_BYTES,
        max_write_buffers: int = MAX_WRITE_BUFFERS,
        max_open_files: int = MAX_OPEN_FILES,
    ) -> None:
        super().__init__(
            max_open_files=max_open_files,
            write_buffer_size=write_buffer_bytes,
            max_write_buffer_number=max_write_buffers,
            block_cache_size=cache_bytes,
            use_rocksdict=True,
        )
        self.cache = rocksdict.Cache(cache_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            write_buffer_total_bytes, False, self.cache
        )

    def open(self, path: Path, *, read_only: bool = False) -> Any:
        # Faust's own open() builds the options twice (a second cache each time); one here.
        db = rocksdict.Rdict(
            str(path), options=self.as_options(), access_type=rocksdict.AccessType.read_write()
        )
        db.set_read_options(rocksdict.ReadOptions())
        return db

    def as_options(self) -> Any:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files or MAX_OPEN_FILES)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options

    def memory(self) -> dict[str, int]:
        """Bytes in the shared cache (memtables included) and in the memtables."""
        return {"cache": self.cache.get_usage(), "memtables": self.write_buffers.get_usage()}


class StateTable(StoreHookTable):
    """A Faust table whose RocksDB partition databases open with `rocksdb_options` (None: Faust's
    defaults, kept for the comparison runs of bench/faults.py)."""

    def __init__(self, app: Any, *, rocksdb_options: SharedRocksDBOptions | None = None,
                 **kwargs: Any) -> None:
        self.rocksdb_options = rocksdb_options
        super().__init__(app, **kwargs)

    def configure_store(self, store: Any) -> Any:
        if self.rocksdb_options is not None and isinstance(store, faust_rocksdb.Store):
            store.rocksdb_options = self.rocksdb_options
        return store


def shared_options() -> SharedRocksDBOptions | None:
    """The options of one worker's stores (bench/faults.py replaces this to compare runs with
    Faust's defaults)."""
    return SharedRocksDBOptions()


def state_table(app: Any, name: str, partitions: int,
                options: SharedRocksDBOptions | None, changelog_prefix: str | None = None
                ) -> Any:
    """`app.Table(name, partitions=partitions)` as a `StateTable` opened with `options`, its
    changelog topic `<changelog_prefix>-<name>-changelog` (None: named after the app's id)."""
    return app.tables.add(StateTable(app, name=name, partitions=partitions,
                                     beacon=app.tables.beacon, rocksdb_options=options,
                                     changelog_prefix=changelog_prefix))
