"""The migrations on both engines: idempotent, recorded, and the record -> row path round trips."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver.errors import ServerException

from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.storage import migrate, tables
from pipeline.storage.warehouse import ServerWarehouse
from tests.support.stack import ClickHouseUrls
from tests.unit.storage.alerts_migration import check_alerts_before_004
from tests.unit.storage.ch_helpers import (
    Databases,
    chdb_database,
    server_database,
    with_database,
)

pytestmark = pytest.mark.integration

T = 1_795_367_409_123


@pytest.fixture(params=["server", "chdb"])
def dbs(request: pytest.FixtureRequest) -> Iterator[Databases]:
    if request.param == "server":
        urls: ClickHouseUrls = request.getfixturevalue("clickhouse_urls")
        with server_database(urls.admin, urls.writer, urls.reader) as d:
            yield d
    else:
        with chdb_database() as d:
            yield d


def _records() -> dict[str, list[dict[str, object]]]:
    j1 = JourneyRecord("j1", "c1", "journey_id", "open", "", T, T + 1000, 1.0, 2, 2, -0.9,
                       "hotline", T, "e1", 0.2, "web", -0.9, "hotline", 0.2, "web", "web",
                       "use", T + 1000, "e2", -0.35, -0.35, "", 1)
    j1b = JourneyRecord(**{**j1.to_dict(), "status": "closed", "close_reason": "journey_end",
                           "version": 2, "started_at": T, "ended_at": T + 1000,
                           "peak_at": T, "end_at": T + 1000})
    j2 = JourneyRecord("j2", "c2", "customer_gap", "closed", "idle_gap", T, T, 0.0, 1, 0, None,
                       "", None, "", None, "", None, "", None, "", "", "", None, "", None, None,
                       "churn", 1)
    m = MetricRecord("nps", "all", "all", T - 9123, T + 50_877, 3, 2, 0.0, -60.0, 60.0, 1, 0,
                     1, 0.0, 0.0, 0, 0, 0, 5)
    a = AlertRecord("window_drop:nps:all=all:x", "window_drop", "nps", "all", "all", "firing",
                    "critical", T, None, T - 3_600_000, T, 20.0, 45.0, 150, 2000, 8.0, 32.0,
                    -25.0, 0.0001, 1)
    d = DeadLetter.make("invalid", "survey.nps: 11 is above the maximum 10", original=b'{"x":1}',
                        source_topic="cx.touchpoints", source_partition=2, source_offset=7,
                        event_id="e9")
    event = {"event_id": "e1", "schema_version": 1, "occurred_at": "2026-11-22T18:10:09.123+01:00",
             "producer": "p", "customer_id": "c1", "journey_id": "j1", "type": "interaction",
             "touchpoint": "hotline", "channel": "phone", "stage": "after_sales",
             "signals": {"wait_seconds": 3600, "transfers": 4, "resolved": False},
             "attributes": {"region": "north"}}
    rec = {
        "journeys": [j1.to_dict(), j1b.to_dict(), j2.to_dict()],
        "metric_buckets": [m.to_dict()],
        "alerts": [a.to_dict()],
        "dead_letters": [d.to_dict()],
        "touchpoint_events": [event, event],  # at-least-once: the same event twice
    }
    return rec


def test_migrate_is_idempotent_and_recorded(dbs: Databases) -> None:
    assert migrate.migrate(dbs.writer, cluster="") == []  # the fixture already migrated
    names = [m.name for m in migrate.load()]
    recorded = dbs.writer.query("SELECT name FROM schema_migrations ORDER BY version")
    assert [r[0] for r in recorded] == names
    existing = {r[0] for r in dbs.reader.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert set(tables.TABLES) <= existing


def test_changed_migration_is_refused(dbs: Databases, tmp_path: Path) -> None:
    for m in migrate.load():
        (tmp_path / m.name).write_text(m.text + ("\n-- edited\n" if m.version == 1 else ""))
    with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
        migrate.migrate(dbs.writer, cluster="", directory=tmp_path)


def test_records_round_trip_through_rows(dbs: Databases) -> None:
    for table, records in _records().items():
        columns, data = tables.rows(table, records)
        assert dbs.writer.insert(table, columns, data) == len(records)
    got = dbs.reader.query(
        "SELECT journey_id, argMax(status, version), argMax(peak_valence, version), "
        "argMax(peak_at_ms, version), max(version) FROM journeys GROUP BY journey_id "
        "ORDER BY journey_id")
    assert got == [("j1", "closed", -0.9, T, 2), ("j2", "closed", None, None, 1)]
    rows, _ = dbs.reader.query_with_columns(
        "SELECT window_start, window_start_ms, source_partition, n, ci_low FROM metric_buckets")
    assert rows[0][1] == T - 9123 and rows[0][2:] == (3, 2, -60.0)
    assert str(rows[0][0])[:19] == "2026-11-22 17:10:00"
    (alert,) = dbs.reader.query("SELECT state, resolved_at, p_value, n FROM alerts")
    assert alert == ("firing", None, 0.0001, 150)
    (dead,) = dbs.reader.query("SELECT reason, source_offset, event_id FROM dead_letters")
    assert dead == ("invalid", 7, "e9")
    events = dbs.reader.query(
        "SELECT event_id, occurred_at_ms, transfers, resolved, error, "
        "attribute_values[indexOf(attribute_keys, 'region')] FROM touchpoint_events FINAL")
    assert events == [("e1", T, 4, 0, None, "north")]
    (score,) = dbs.reader.query("SELECT avg(peak_end_score) FROM journeys WHERE version = 2")
    assert math.isclose(score[0], -0.35)


def test_reader_cannot_change_the_schema(clickhouse_urls: ClickHouseUrls) -> None:
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer,
                         clickhouse_urls.reader) as dbs:
        with pytest.raises(ServerException, match="readonly"):
            dbs.reader.execute("DROP TABLE journeys")
        with pytest.raises((ServerException, migrate.MigrationError), match="readonly"):
            migrate.migrate(dbs.reader, cluster="", directory=_one_new_migration())


def _one_new_migration() -> Path:
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="peakend-mig-"))
    for m in migrate.load():
        (directory / m.name).write_text(m.text)
    n = max(m.version for m in migrate.load()) + 1  # numbers may have gaps
    (directory / f"{n:03d}_extra.sql").write_text(
        "CREATE TABLE IF NOT EXISTS extra (a String) ENGINE = MergeTree() ORDER BY a;\n")
    return directory


def test_alert_rows_from_before_migration_004_still_read(
        clickhouse_urls: ClickHouseUrls) -> None:
    name = f"pe_alerts004_{uuid.uuid4().hex[:10]}"
    admin = ServerWarehouse(clickhouse_urls.admin)
    admin.execute(f"CREATE DATABASE {name}")
    writer = ServerWarehouse(with_database(clickhouse_urls.writer, name))
    reader = ServerWarehouse(with_database(clickhouse_urls.reader, name))
    try:
        assert writer.version()[:2] == (18, 16)
        check_alerts_before_004(writer, reader)
    finally:
        writer.close()
        reader.close()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
