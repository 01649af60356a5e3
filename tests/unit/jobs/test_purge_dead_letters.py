"""Retention of the dead_letters table without TTL (ClickHouse 18.16 has none): whole monthly
partitions past the retention are dropped, the rest stays (docs/privacy.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from jobs.purge_dead_letters import purge
from pipeline.contract.dead_letters import DeadLetter
from pipeline.storage import migrate
from pipeline.storage.tables import rows
from tests.chdb_util import shared_chdb


def test_purge_drops_whole_months_past_the_retention_only() -> None:
    warehouse = shared_chdb("purge_probe")
    try:
        warehouse.execute("DROP TABLE IF EXISTS dead_letters")
        warehouse.execute("DROP TABLE IF EXISTS schema_migrations")
        migrate.migrate(warehouse, cluster="")
        letters = [DeadLetter.make("invalid", "e", original=b"{}", source_topic="t",
                                   source_partition=0, source_offset=n,
                                   received_at=datetime(2026, month, 15, tzinfo=UTC))
                   for n, month in enumerate((8, 9, 10, 11))]
        warehouse.insert("dead_letters", *rows("dead_letters", [x.to_dict() for x in letters]))
        today = date(2026, 11, 30)
        assert purge(warehouse, 45, today=today, dry_run=True) == ["202608", "202609"]
        assert warehouse.query("SELECT count() FROM dead_letters")[0][0] == 4
        assert purge(warehouse, 45, today=today) == ["202608", "202609"]
        left = warehouse.query("SELECT source_offset FROM dead_letters ORDER BY source_offset")
        assert [r[0] for r in left] == [2, 3]
        assert purge(warehouse, 45, today=today) == []
    finally:
        warehouse.close()
