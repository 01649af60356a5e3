"""The real ClickHouse server takes writes from the writer, refuses them from the reader, and the
same DDL runs on the embedded chdb engine."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from clickhouse_driver.errors import ServerException

from pipeline.storage.warehouse import ChdbWarehouse, ServerWarehouse, Warehouse
from tests.support.stack import ClickHouseUrls

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    journey_id String,
    ended_at DateTime,
    peak_valence Nullable(Float64),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ended_at)
ORDER BY journey_id
"""

ROWS = [
    ("j-1", datetime(2026, 11, 1, 10, 0, 0), -0.9, 1),
    ("j-1", datetime(2026, 11, 1, 10, 5, 0), -0.7, 2),
    ("j-2", datetime(2026, 11, 2, 9, 0, 0), None, 1),
]


def _roundtrip(wh: Warehouse, table: str) -> list[tuple[object, ...]]:
    wh.execute(DDL.format(table=table))
    assert wh.insert(table, ["journey_id", "ended_at", "peak_valence", "version"], ROWS) == 3
    return wh.query(
        f"SELECT journey_id, argMax(peak_valence, version), max(version) FROM {table} "
        "WHERE journey_id IN %(ids)s GROUP BY journey_id ORDER BY journey_id",
        {"ids": ("j-1", "j-2")},
    )


EXPECTED = [("j-1", -0.7, 2), ("j-2", None, 1)]


def test_writer_inserts_over_native_protocol_and_reads_back(
    clickhouse_urls: ClickHouseUrls,
) -> None:
    table = f"stack_test_{uuid.uuid4().hex[:8]}"
    writer = ServerWarehouse(clickhouse_urls.writer)
    try:
        assert writer.version() >= (18, 16)
        assert _roundtrip(writer, table) == EXPECTED
    finally:
        writer.execute(f"DROP TABLE IF EXISTS {table}")
        writer.close()


def test_reader_is_refused_writes_and_ddl(clickhouse_urls: ClickHouseUrls) -> None:
    table = f"stack_test_{uuid.uuid4().hex[:8]}"
    writer = ServerWarehouse(clickhouse_urls.writer)
    reader = ServerWarehouse(clickhouse_urls.reader)
    try:
        writer.execute(DDL.format(table=table))
        with pytest.raises(ServerException, match="readonly"):
            reader.insert(table, ["journey_id", "ended_at", "peak_valence", "version"], ROWS[:1])
        with pytest.raises(ServerException, match="readonly"):
            reader.execute(f"DROP TABLE {table}")
        with pytest.raises(ServerException, match="readonly"):
            reader.execute("SET max_execution_time = 0")  # cannot lift its own limits
        assert reader.query(f"SELECT count() FROM {table}") == [(0,)]
    finally:
        writer.execute(f"DROP TABLE IF EXISTS {table}")
        writer.close()
        reader.close()


def test_wrong_password_is_refused(clickhouse_urls: ClickHouseUrls) -> None:
    bad = clickhouse_urls.writer.replace("peakend_writer:", "peakend_writer:x")
    with pytest.raises(ServerException):
        ServerWarehouse(bad).query("SELECT 1")


def test_same_ddl_runs_on_chdb(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.chdb_util import shared_chdb

    wh: ChdbWarehouse = shared_chdb()
    table = f"stack_test_{uuid.uuid4().hex[:8]}"
    assert wh.version() >= (23,)
    assert _roundtrip(wh, table) == EXPECTED
    wh.execute(f"DROP TABLE {table}")


def _columnar_roundtrip(wh: Warehouse, table: str) -> list[tuple[object, ...]]:
    wh.execute(DDL.format(table=table))
    columns = [list(c) for c in zip(*ROWS, strict=True)]
    assert wh.insert_columns(table, ["journey_id", "ended_at", "peak_valence", "version"],
                             columns) == 3
    assert wh.insert_columns(table, ["journey_id"], [[]]) == 0
    return wh.query(
        f"SELECT journey_id, argMax(peak_valence, version), max(version) FROM {table} "
        "GROUP BY journey_id ORDER BY journey_id")


def test_columnar_inserts_equal_row_inserts_on_both_engines(
        clickhouse_urls: ClickHouseUrls) -> None:
    from tests.chdb_util import shared_chdb

    table = f"stack_test_{uuid.uuid4().hex[:8]}"
    writer = ServerWarehouse(clickhouse_urls.writer)
    try:
        assert _columnar_roundtrip(writer, table) == EXPECTED
    finally:
        writer.execute(f"DROP TABLE IF EXISTS {table}")
        writer.close()
    chdb = shared_chdb()
    assert _columnar_roundtrip(chdb, table) == EXPECTED
    chdb.execute(f"DROP TABLE {table}")
