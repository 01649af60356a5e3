"""The worker's RocksDB stores share one memory budget (pipeline/state_store.py, issue 14): with
Faust's default options every partition database kept each rewrite of a state key in its own
64 MiB memtable, and the worker's RSS grew with the events read."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import RocksDBOptions

from pipeline import state_store
from pipeline.app import create_app
from pipeline.settings import Settings

MIB = 1024 * 1024
DATABASES = 24  # 2 tables x the default 12 partitions


def _memtables(dbs: list[Any], which: str = "cur-size-all-mem-tables") -> int:
    return sum(db.property_int_value(f"rocksdb.{which}") or 0 for db in dbs)


def _settled_memtables(dbs: list[Any], timeout: float = 10.0) -> int:
    """All memtables once the flushes already running or pending have finished: those are
    background work, and on a loaded machine they lag behind the writes (the bound then held
    only after they caught up: 50.6 MB seen once mid-flush against a bound of 48)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (
            _memtables(dbs, "num-running-flushes") or _memtables(dbs, "mem-table-flush-pending")):
        time.sleep(0.05)
    return _memtables(dbs)


def _rewrite(options: Any, root: Path, puts: int) -> tuple[int, int]:
    """Rewrites 2,000 keys of ~1.3 kB state per database, round robin over 24 databases the
    way the worker writes its partitions; returns the largest total of the memtables being
    written to (the active ones) and of all memtables once pending flushes finished."""
    dbs = [options.open(root / f"db{i}") for i in range(DATABASES)]
    rng = random.Random(7)
    state = json.dumps({"s": ["x" * 40] * 30}).encode()
    active = settled = 0
    try:
        for step in range(puts):
            dbs[step % DATABASES].put(f"k{rng.randrange(2000)}".encode(),
                                      state + str(step).encode())
            if step % 5000 == 0:
                active = max(active, _memtables(dbs, "cur-size-active-mem-table"))
                settled = max(settled, _settled_memtables(dbs))
        active = max(active, _memtables(dbs, "cur-size-active-mem-table"))
        return active, max(settled, _settled_memtables(dbs))
    finally:
        for db in dbs:
            db.close()


def test_shared_options_bound_the_memtables_of_every_database_together(tmp_path: Path) -> None:
    # ~80 MB of state rewrites: Faust's defaults keep them all in memory, the shared write
    # buffer manager flushes past 16 MiB in total (a flush runs in the background, so the
    # memtables being flushed count too: at most one more buffer per database being written).
    puts = 60_000
    shared_active, shared = _rewrite(state_store.SharedRocksDBOptions(), tmp_path / "shared",
                                     puts)
    _, faust = _rewrite(RocksDBOptions(use_rocksdict=True), tmp_path / "faust", puts)
    # the memtables taking writes: within the budget (the manager flushes one past 7/8 of it),
    # plus one put's growth
    assert shared_active <= state_store.WRITE_BUFFER_TOTAL_BYTES + state_store.WRITE_BUFFER_BYTES
    assert shared <= state_store.WRITE_BUFFER_TOTAL_BYTES + 8 * state_store.WRITE_BUFFER_BYTES
    assert faust > 60 * MIB
    assert faust > 2 * shared


def test_every_database_of_the_worker_shares_the_one_cache_and_write_buffer_manager(
    tmp_path: Path,
) -> None:
    # both stages' tables in one process (with stage two apart, each process has its own
    # cache and manager, shared by the databases of its one table)
    app: Any = create_app(Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path),
                                             "PEAKEND_STAGE_TWO_PROCESS": "false"}),
                          migrate=False)
    tables = [app.tables[name] for name in ("journey-state", "segment-state")]
    options = {id(table.rocksdb_options) for table in tables}
    assert all(isinstance(t, state_store.StateTable) for t in tables)
    assert len(options) == 1 and tables[0].rocksdb_options is not None
    shared = tables[0].rocksdb_options
    before = shared.write_buffers.get_usage()
    for table in tables:
        store = table.data
        assert store.rocksdb_options is shared
        for partition in (0, 5):
            store._db_for_partition(partition).put(b"key", b"v" * 300_000)
    # the four databases' writes are charged to the one manager and its cache
    assert shared.write_buffers.get_usage() - before >= 4 * 300_000
    assert shared.cache.get_usage() >= shared.write_buffers.get_usage()
    for table in tables:
        for db in table.data._dbs.values():
            db.close()


def test_faust_defaults_stay_available_for_comparison_runs(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    monkeypatch.setattr(state_store, "shared_options", lambda: None)
    app: Any = create_app(Settings.from_env({"PEAKEND_DATA_DIR": str(tmp_path)}), migrate=False)
    store = app.tables["journey-state"].data
    assert type(store.rocksdb_options) is RocksDBOptions
    assert store.rocksdb_options.write_buffer_size == 64 * MIB
