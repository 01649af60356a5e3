"""chdb opens one data directory per process: tests share it through this helper."""

from __future__ import annotations

import tempfile

from pipeline.storage.warehouse import ChdbWarehouse

_PATH = tempfile.mkdtemp(prefix="peakend-chdb-tests-")


def shared_chdb(database: str = "peakend_test") -> ChdbWarehouse:
    return ChdbWarehouse(_PATH, database)
