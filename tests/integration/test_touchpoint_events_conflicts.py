"""touchpoint_events follows the core's conflict rule on ClickHouse 18.16 (issue 14): of two
copies of one event_id with other content, `FINAL` shows the one with the smaller content digest
whatever the insert order; migration 003 carries the rows of the old table over and resumes
after an interruption. The same checks on chdb: tests/unit/storage/test_touchpoint_conflicts.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pipeline.storage.warehouse import ServerWarehouse
from tests.support.stack import ClickHouseUrls
from tests.unit.storage import touchpoint_conflicts as tc
from tests.unit.storage.ch_helpers import server_database, with_database

pytestmark = pytest.mark.integration


@contextmanager
def empty_database(urls: ClickHouseUrls) -> Iterator[ServerWarehouse]:
    """A database without any migration, written by the pipeline's user."""
    name = f"pe_mig003_{uuid.uuid4().hex[:10]}"
    admin = ServerWarehouse(urls.admin)
    admin.execute(f"CREATE DATABASE {name}")
    writer = ServerWarehouse(with_database(urls.writer, name))
    try:
        yield writer
    finally:
        writer.close()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def test_final_shows_the_core_winner_in_both_orders(clickhouse_urls: ClickHouseUrls) -> None:
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_conflict") as dbs:
        assert dbs.writer.version()[:2] == (18, 16)
        assert tc.check_both_orders(dbs.writer, dbs.reader) == 2 * len(tc.CHANGES)


def test_migration_003_carries_the_old_rows_over(clickhouse_urls: ClickHouseUrls) -> None:
    with empty_database(clickhouse_urls) as writer:
        tc.check_carry_over(writer)


def test_migration_003_resumes_after_an_interruption(clickhouse_urls: ClickHouseUrls) -> None:
    with empty_database(clickhouse_urls) as writer:
        tc.check_interrupted(writer)
