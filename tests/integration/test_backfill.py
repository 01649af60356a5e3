"""peakend backfill on both engines: ClickHouse holds exactly what `peakend replay` outputs for the
same events, and an interrupted backfill resumed from its checkpoint ends with the same tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from jobs.backfill import BackfillOptions, Interrupted, run_backfill
from pipeline.storage.tables import TABLES
from pipeline.storage.warehouse import Warehouse
from tests.unit.storage.ch_helpers import Databases, engine_databases

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "jobs"))

from backfill_util import CORE, EVENTS, RecordingWarehouse, final, replay_tables, write_both

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


def test_resume_from_the_engine_state(dbs: Databases, tmp_path: Path) -> None:
    """Interrupted after 2000 rows with its engine state saved, then after 2000 more without
    (written up to 4000, state at 2000), then killed between an insert and its checkpoint
    (the checkpoint rewound to 3000): the run resumed from the state reads no row before 2000,
    writes 3000 on again, and the tables equal replay's."""
    jsonl, parquet, rows = write_both(EVENTS, tmp_path)
    expected = replay_tables(jsonl, CORE, 2)
    checkpoint = tmp_path / "checkpoint.json"
    options = BackfillOptions(partitions=2, batch_rows=1000, checkpoint_path=checkpoint,
                              workers=1)
    for snapshot_seconds in (0.0, None):
        with pytest.raises(Interrupted):
            run_backfill([str(parquet)], dbs.writer, CORE,
                         replace(options, snapshot_seconds=snapshot_seconds,
                                 stop_after_rows=2000))
    saved = json.loads(checkpoint.read_text())
    assert (saved["row"], saved["state_at"]) == (4000, [0, 2000])
    checkpoint.write_text(json.dumps({**saved, "row": 3000}))
    result = run_backfill([str(parquet)], dbs.writer, CORE, options)
    assert (result.restored_from, result.resumed_from, result.rows) == ((0, 2000), (0, 3000),
                                                                       rows - 2000)
    for table, want in expected.items():
        assert final(table, table_rows(dbs.reader, table)) == want, table
    whole = RecordingWarehouse()  # touchpoint_events of an uninterrupted run
    run_backfill([str(parquet)], whole, CORE,
                 BackfillOptions(partitions=2, batch_rows=1000, workers=1))
    stored = dbs.reader.query("SELECT event_id, version FROM touchpoint_events FINAL")
    assert sorted(stored) == sorted((row["event_id"], row["version"]) for row in
                                    {r["event_id"]: r for r in sorted(
                                        whole.inserted["touchpoint_events"],
                                        key=lambda r: r["version"])}.values())
