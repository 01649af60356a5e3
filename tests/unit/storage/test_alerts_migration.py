"""Alert rows from before migration 004 on chdb (the real server:
tests/integration/test_clickhouse_schema.py)."""

from __future__ import annotations

import uuid

from tests.chdb_util import shared_chdb
from tests.unit.storage.alerts_migration import check_alerts_before_004


def test_alert_rows_from_before_migration_004_still_read_on_chdb() -> None:
    name = f"pe_alerts004_{uuid.uuid4().hex[:10]}"
    wh = shared_chdb(name)
    try:
        check_alerts_before_004(wh, wh)
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {name}")
