"""A Faust table on RocksDB without a broker: what the state writers' tests and
`bench/bench_journal.py` write to (the same store, partition databases and codec as the
worker's tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.stores import rocksdb as faust_rocksdb

from pipeline.stream.faust_private import StoreHookTable


def rocksdb_table(folder: Path, name: str = "t", partitions: int = 8) -> Any:
    """Table `name` of a new Faust app whose data lives in `folder` (needs a current event
    loop: a Faust app takes it when built)."""
    app: Any = faust.App(f"state-writer-{name}", datadir=str(folder), store="rocksdb://")
    table = app.tables.add(StoreHookTable(app, name=name, partitions=partitions,
                                          beacon=app.tables.beacon))
    assert isinstance(table.data, faust_rocksdb.Store)
    return table
