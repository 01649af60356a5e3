"""`peakend drivers` over chdb equals the offline run on the same events; the job's table,
view and the quadrant panel's query on chdb (the real server:
tests/integration/test_drivers_clickhouse.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.storage.ch_helpers import chdb_database
from tests.unit.storage.drivers_check import (
    check_answers_after_the_journey,
    check_clickhouse_equals_offline,
    offline,
)


def test_drivers_on_chdb_equal_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = offline(tmp_path, monkeypatch)
    with chdb_database(prefix="pe_drivers") as dbs:
        check_clickhouse_equals_offline(dbs, want)


def test_answers_after_the_journey_on_chdb_equal_offline(tmp_path: Path) -> None:
    with chdb_database(prefix="pe_drivers_after") as dbs:
        check_answers_after_the_journey(dbs, tmp_path)
