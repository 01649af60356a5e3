"""tests/cluster/ runs only when asked for: `pytest -m cluster` (`make cluster-test`). It starts
a three-broker Kafka, ZooKeeper and two ClickHouse shards of two replicas (scripts/cluster.sh)
and takes about 30 minutes on a busy 2-core machine, too long for `make test`;
`-m "not integration"` and `-m integration` do not even collect it."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and "cluster" not in (
            config.option.markexpr or ""):
        return True
    return None
