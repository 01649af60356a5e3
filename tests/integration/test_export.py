"""peakend export on both engines: the latest version per key, as Parquet, with --since."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.backfill import BackfillOptions, run_backfill
from jobs.export import export_table
from pipeline.cli import main
from pipeline.storage.tables import TABLES
from tests.unit.storage.ch_helpers import Databases, chdb_database, engine_databases

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "jobs"))

from backfill_util import CORE, EVENTS, write_both

pytestmark = pytest.mark.integration


@pytest.fixture(params=["server", "chdb"])
def dbs(request: pytest.FixtureRequest) -> Iterator[Databases]:
    urls = request.getfixturevalue("clickhouse_urls") if request.param == "server" else None
    with engine_databases(request.param, "pe_export", urls) as d:
        yield d


def test_export_round_trip(dbs: Databases, tmp_path: Path) -> None:
    _, parquet, _ = write_both(EVENTS, tmp_path)
    run_backfill([str(parquet)], dbs.writer, CORE, BackfillOptions(partitions=2, batch_rows=1000))
    # write everything a second time: export must still give one row per key
    run_backfill([str(parquet)], dbs.writer, CORE, BackfillOptions(partitions=2, batch_rows=1000))
    for table in TABLES:
        columns = TABLES[table].columns
        want = sorted(dbs.reader.query(f"SELECT {', '.join(columns)} FROM {table} FINAL"),
                      key=repr)
        out = tmp_path / f"{table}.parquet"
        count = export_table(dbs.reader, table, out, chunk_rows=700)
        got = pq.read_table(out)
        assert got.num_rows == count == len(want), table
        assert tuple(got.column_names) == columns
        rows = [tuple(r[c] for c in columns) for r in got.to_pylist()]
        naive = [tuple(v.replace(tzinfo=None) if hasattr(v, "tzinfo") else v for v in row)
                 for row in rows]
        assert sorted(naive, key=repr) == want, table
        keys = [tuple(r[k] for k in TABLES[table].key) for r in got.to_pylist()]
        assert len(set(keys)) == len(keys)


def test_export_since(dbs: Databases, tmp_path: Path) -> None:
    _, parquet, _ = write_both(EVENTS, tmp_path)
    run_backfill([str(parquet)], dbs.writer, CORE, BackfillOptions(batch_rows=1000))
    (cut,) = dbs.reader.query("SELECT quantile(0.5)(ended_at_ms) FROM journeys FINAL")[0]
    cut = int(cut)
    out = tmp_path / "late.parquet"
    export_table(dbs.reader, "journeys", out, since_ms=cut)
    table = pq.read_table(out)
    want = dbs.reader.query("SELECT count() FROM journeys FINAL WHERE ended_at_ms >= %(c)s",
                            {"c": cut})[0][0]
    assert table.num_rows == want > 0
    assert min(table.column("ended_at_ms").to_pylist()) >= cut


def test_export_cli_on_chdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with chdb_database(prefix="pe_export_cli") as d:
        _, parquet, _ = write_both(EVENTS, tmp_path)
        run_backfill([str(parquet)], d.writer, CORE, BackfillOptions(batch_rows=1000))
        from tests.chdb_util import _PATH

        monkeypatch.setenv("PEAKEND_CLICKHOUSE_DATABASE", d.writer.database)
        monkeypatch.setenv("PEAKEND_CHDB_PATH", _PATH)
        out = tmp_path / "alerts.parquet"
        assert main(["export", "--table", "alerts", "--output", str(out), "--url", "",
                     "--quiet"]) == 0
        assert pq.read_table(out).num_rows == d.reader.query(
            "SELECT count() FROM alerts FINAL")[0][0] > 0
