"""peakend backfill on both engines: ClickHouse holds exactly what `peakend replay` outputs for the
same events, and an interrupted backfill resumed from its checkpoint ends with the same tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.backfill import BackfillOptions, Interrupted, run_backfill
from pipeline.storage.tables import TABLES
from pipeline.storage.warehouse import Warehouse
from tests.unit.storage.ch_helpers import Databases, engine_databases

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "jobs"))

from backfill_util import CORE, EVENTS, final, replay_tables, write_both

pytestmark = pytest.mark.integration


@pytest.fixture(params=["server", "chdb"])
def dbs(request: pytest.FixtureRequest) -> Iterator[Databases]:
    urls = request.getfixturevalue("clickhouse_urls") if request.param == "server" else None
    with engine_databases(request.param, "pe_backfill", urls) as d:
        yield d


def table_rows(warehouse: Warehouse, table: str) -> list[dict[str, Any]]:
    columns = TABLES[table].columns
    rows = warehouse.query(f"SELECT {', '.join(columns)} FROM {table} FINAL")
    return [dict(zip(columns, row, strict=True)) for row in rows]


@pytest.mark.parametrize("partitions", [1, 4])
def test_backfill_equals_replay(dbs: Databases, tmp_path: Path, partitions: int) -> None:
    jsonl, parquet, _ = write_both(EVENTS, tmp_path)
    expected = replay_tables(jsonl, CORE, partitions)
    result = run_backfill([str(parquet)], dbs.writer, CORE,
                          BackfillOptions(partitions=partitions, batch_rows=1500))
    assert expected["alerts"] and expected["dead_letters"]
    for table, want in expected.items():
        assert final(table, table_rows(dbs.reader, table)) == want, table
    events = dbs.reader.query("SELECT count() FROM touchpoint_events FINAL")[0][0]
    assert events == result.counts["events"]


def test_resume_after_interruption(dbs: Databases, tmp_path: Path) -> None:
    jsonl, parquet, _ = write_both(EVENTS, tmp_path)
    expected = replay_tables(jsonl, CORE, 2)
    checkpoint = tmp_path / "checkpoint.json"
    with pytest.raises(Interrupted):
        run_backfill([str(parquet)], dbs.writer, CORE,
                     BackfillOptions(partitions=2, batch_rows=1000, checkpoint_path=checkpoint,
                                     stop_after_rows=4000))
    result = run_backfill([str(parquet)], dbs.writer, CORE,
                          BackfillOptions(partitions=2, batch_rows=1000,
                                          checkpoint_path=checkpoint))
    assert result.resumed_from == (0, 4000)
    for table, want in expected.items():
        assert final(table, table_rows(dbs.reader, table)) == want, table
