"""Several processes migrating one database at once (workers started together each migrate from
their sink): the schema ends complete and each migration is applied once. Before the migration
lock, four of them at once on the real server could leave `touchpoint_events` renamed away for
good (migration 003's rebuild interleaved), and every later migration failed: a loop of the
two-worker stream test hit it under load."""

from __future__ import annotations

import threading
import uuid

import pytest

from pipeline.storage import migrate
from pipeline.storage.warehouse import ServerWarehouse
from tests.support.stack import ClickHouseUrls
from tests.unit.storage.ch_helpers import with_database

pytestmark = pytest.mark.integration

MIGRATORS = 4


@pytest.mark.parametrize("round_", range(3))
def test_migrators_running_at_once_leave_a_complete_schema(
        clickhouse_urls: ClickHouseUrls, round_: int) -> None:
    name = f"pe_test_mig_{uuid.uuid4().hex[:10]}"
    admin = ServerWarehouse(clickhouse_urls.admin)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        warehouses = [ServerWarehouse(with_database(clickhouse_urls.writer, name))
                      for _ in range(MIGRATORS)]
        start = threading.Barrier(MIGRATORS)
        applied: list[list[str]] = []
        errors: list[BaseException] = []

        def run(warehouse: ServerWarehouse) -> None:
            start.wait()
            try:
                applied.append(migrate.migrate(warehouse, cluster=""))
            except BaseException as exc:  # collected: the assertion names them
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(w,)) for w in warehouses]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert errors == []
        every = [m.name for m in migrate.load(migrate.MIGRATIONS_DIR)]
        # each migration applied by exactly one of them
        assert sorted(n for names in applied for n in names) == sorted(every)
        assert migrate.migrate(warehouses[0], cluster="") == []  # nothing left to do
        tables = {row[0] for row in admin.query(
            "SELECT name FROM system.tables WHERE database = %(db)s", {"db": name})}
        assert {"touchpoint_events", "journeys", "metric_buckets", "dead_letters"} <= tables
        assert not {t for t in tables if t.endswith(("_next", "_before_003"))}
        columns = {row[0] for row in admin.query(
            "SELECT name FROM system.columns WHERE database = %(db)s "
            "AND table = 'touchpoint_events'", {"db": name})}
        assert {"version", "ces_higher_means"} <= columns
        for warehouse in warehouses:
            warehouse.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
