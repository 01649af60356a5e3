"""ClickHouse access on the real server (docs/design.md 4): the pipeline writes as `peakend_writer`;
`peakend_reader` cannot write, change the schema or lift its limits, and its limits stop heavy
queries. Extends tests/integration/test_stack_clickhouse.py (which covers INSERT, DROP TABLE and
`SET max_execution_time` for the reader) without repeating it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from clickhouse_driver.errors import ServerException

from pipeline.observability import WorkerMetrics
from pipeline.settings import Settings
from pipeline.storage.sink import ClickHouseSink
from pipeline.storage.warehouse import ServerWarehouse, connect
from tests.support.stack import ClickHouseUrls, stack_env

pytestmark = pytest.mark.integration


def who(wh: ServerWarehouse) -> str:
    """The user the server sees for this connection (18.16 has no currentUser())."""
    marker = f"peakend-access-probe-{uuid.uuid4().hex}"
    rows = wh.query(f"SELECT user FROM system.processes WHERE query LIKE '%{marker}%'")
    assert rows, "the probe query did not see itself in system.processes"
    return str(rows[0][0])


@pytest.fixture
def table(clickhouse_urls: ClickHouseUrls) -> Iterator[str]:
    name = f"access_test_{uuid.uuid4().hex[:8]}"
    writer = ServerWarehouse(clickhouse_urls.writer)
    writer.execute(f"CREATE TABLE {name} (k String, v UInt64) ENGINE = MergeTree ORDER BY k")
    writer.insert(name, ["k", "v"], [("a", 1)])
    yield name
    writer.execute(f"DROP TABLE IF EXISTS {name}")
    writer.close()


def test_pipeline_writes_as_peakend_writer(clickhouse_urls: ClickHouseUrls) -> None:
    settings = Settings.from_env(stack_env())  # what `eval "$(scripts/stack.sh env)"` gives
    sink = ClickHouseSink(
        settings,
        lambda: connect(settings.clickhouse_url, chdb_path=settings.chdb_path,
                        database=settings.clickhouse_database),
        WorkerMetrics.create(),
    )
    wh = sink.connect()
    assert isinstance(wh, ServerWarehouse)
    try:
        assert who(wh) == "peakend_writer"
    finally:
        wh.close()
    reader = ServerWarehouse(clickhouse_urls.reader)
    try:
        assert who(reader) == "peakend_reader"
    finally:
        reader.close()


@pytest.mark.parametrize("statement", [
    "CREATE TABLE {t}_new (k String) ENGINE = Memory",
    "ALTER TABLE {t} ADD COLUMN extra UInt8",
    "ALTER TABLE {t} DELETE WHERE 1",
    "TRUNCATE TABLE {t}",
    "RENAME TABLE {t} TO {t}_moved",
    "INSERT INTO {t} SELECT 'b', 2",
    "CREATE DATABASE access_probe_db",
    "OPTIMIZE TABLE {t} FINAL",
    "SET readonly = 0",
    "SET max_result_rows = 0",
    "SET max_memory_usage = 0",
])
def test_reader_cannot_write_change_schema_or_lift_limits(
    clickhouse_urls: ClickHouseUrls, table: str, statement: str
) -> None:
    reader = ServerWarehouse(clickhouse_urls.reader)
    try:
        with pytest.raises(ServerException):
            reader.execute(statement.format(t=table))
        assert reader.query(f"SELECT count() FROM {table}") == [(1,)]
    finally:
        reader.close()


def test_reader_cannot_lift_limits_through_query_settings(clickhouse_urls: ClickHouseUrls) -> None:
    """Settings sent with each query (the native protocol's per-query settings) do not lift the
    profile's limits either: 18.16 ignores them for a readonly user (it does not refuse them)."""
    reader = ServerWarehouse(clickhouse_urls.reader,
                             settings={"max_result_rows": 0, "max_execution_time": 0,
                                       "max_memory_usage": 0})
    try:
        with pytest.raises(ServerException, match=r"(?i)limit for result"):
            reader.query("SELECT number FROM system.numbers LIMIT 1000001")
        effective: dict[str, str] = dict(reader.query(
            "SELECT name, value FROM system.settings WHERE name IN "
            "('readonly', 'max_result_rows', 'max_execution_time', 'max_memory_usage')"))
        assert effective == {"readonly": "1", "max_result_rows": "1000000",
                             "max_execution_time": "30", "max_memory_usage": "2000000000"}
    finally:
        reader.close()


def test_reader_limits_stop_heavy_queries(clickhouse_urls: ClickHouseUrls) -> None:
    reader = ServerWarehouse(clickhouse_urls.reader)
    try:
        # max_result_rows = 1,000,000 (result_overflow_mode = throw)
        with pytest.raises(ServerException, match=r"(?i)limit for result|rows"):
            reader.query("SELECT number FROM system.numbers LIMIT 1000001")
        assert len(reader.query("SELECT number FROM system.numbers LIMIT 1000")) == 1000
        # max_memory_usage = 2 GB: a 3.2 GB array cannot be built
        with pytest.raises(ServerException, match=r"(?i)memory limit"):
            reader.query("SELECT length(groupArray(number)) FROM "
                         "(SELECT number FROM system.numbers LIMIT 400000000)")
        # max_execution_time = 30 s: an endless scan is stopped
        started = time.monotonic()
        with pytest.raises(ServerException, match=r"(?i)timeout|time"):
            reader.query("SELECT count() FROM system.numbers WHERE NOT ignore(sipHash64(number))")
        assert 25 <= time.monotonic() - started <= 90
    finally:
        reader.close()
