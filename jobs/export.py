"""`peakend export --table journeys --output FILE.parquet [--since TIME]`: ClickHouse -> Parquet.

Exports the latest version of every key: `SELECT ... FROM table FINAL` (ReplacingMergeTree keeps
the highest `version` per ORDER BY key; touchpoint_events' version is the inverse of the event's
content digest, so it keeps the copy the core keeps; dead_letters, which has no version, one row
per key), filtered after FINAL so a filter can never surface an older version.
Pages of `--chunk-rows` rows in key order are written as Parquet row groups as they arrive, so
memory stays bounded; progress goes to stderr. Works on the 18.16 server and on chdb (the same
SQL). Column types follow the table: String -> string, DateTime -> timestamp[s, UTC], the `_ms`
columns -> int64, Nullable(...) -> nullable, Array(String) -> list<string>.

The Parquet file is written under a temporary name beside `--output` and renamed over it at the
end (`pipeline.outputs`): a failed export (server gone, disk full, Ctrl-C) leaves the earlier
file, if any, unchanged and no partial file.

`--since` keeps rows whose time column is at or after the given time: journeys by `ended_at`
(last activity), metric_buckets by `window_start`, alerts by `fired_at`, dead_letters by
`received_at`, touchpoint_events by `occurred_at`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.progress import Progress
from pipeline.cliargs import whole
from pipeline.outputs import OutputError, atomic_path, check_file
from pipeline.storage.tables import TABLES
from pipeline.storage.warehouse import Warehouse
from pipeline.urls import warehouse_url_argument

SINCE_COLUMNS = {
    "journeys": "ended_at_ms",
    "metric_buckets": "window_start_ms",
    "alerts": "fired_at_ms",
    "dead_letters": "received_at_ms",
    "touchpoint_events": "occurred_at_ms",
    "followups": "opened_at_ms",
}

# A page is held in memory as Python tuples and then as Arrow arrays: beyond this a typo
# (an extra zero or two) would exhaust the memory instead of exporting faster.
MAX_CHUNK_ROWS = 10_000_000

_SIMPLE: dict[str, pa.DataType] = {
    "String": pa.string(), "Float64": pa.float64(), "Float32": pa.float32(),
    "Int64": pa.int64(), "Int32": pa.int32(), "Int16": pa.int16(), "Int8": pa.int8(),
    "UInt64": pa.uint64(), "UInt32": pa.uint32(), "UInt16": pa.uint16(), "UInt8": pa.uint8(),
    "DateTime": pa.timestamp("s", tz="UTC"), "Date": pa.date32(),
}


def arrow_type(ch_type: str) -> pa.DataType:
    """ClickHouse column type -> Arrow type.

    >>> arrow_type("Nullable(Float64)"), arrow_type("Array(String)"), arrow_type("DateTime")
    (DataType(double), ListType(list<item: string>), TimestampType(timestamp[s, tz=UTC]))
    """
    base = ch_type
    while base.startswith(("Nullable(", "LowCardinality(")):
        base = base[base.index("(") + 1 : -1]
    if base.startswith("Array("):
        return pa.list_(arrow_type(base[len("Array(") : -1]))
    if base.startswith("DateTime"):
        return pa.timestamp("s", tz="UTC")
    try:
        return _SIMPLE[base]
    except KeyError:
        raise ValueError(f"no Parquet mapping for ClickHouse type {ch_type}") from None


def export_sql(table: str, since_ms: int | None) -> str:
    """The paged query: latest version per key, in key order."""
    spec = TABLES[table]
    columns = ", ".join(spec.columns)
    inner = f"SELECT {columns} FROM {table} FINAL"
    where = "" if since_ms is None else f" WHERE {SINCE_COLUMNS[table]} >= %(since)s"
    order = ", ".join(spec.key)
    return (f"SELECT {columns} FROM ({inner}){where} ORDER BY {order} "
            "LIMIT %(limit)s OFFSET %(offset)s")


def export_table(warehouse: Warehouse, table: str, output: str | Path, *,
                 since_ms: int | None = None, chunk_rows: int = 100_000,
                 progress: bool = False) -> int:
    """Write the latest rows of `table` to a Parquet file; the number of rows."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    if chunk_rows < 1:  # 0 would ask for empty pages forever
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    sql = export_sql(table, since_ms)
    count_sql = f"SELECT count() FROM (SELECT {TABLES[table].key[0]} FROM {table} FINAL" + (
        f" WHERE {SINCE_COLUMNS[table]} >= %(since)s)" if since_ms is not None else ")")
    params: dict[str, Any] = {"since": since_ms} if since_ms is not None else {}
    total = int(warehouse.query(count_sql, params)[0][0])
    meter = Progress(f"export {table}", total, enabled=progress)
    # The column types come from the table itself (also when it is empty).
    _, described = warehouse.query_with_columns(
        f"SELECT {', '.join(TABLES[table].columns)} FROM {table} LIMIT 0")
    if not described:  # chdb returns no metadata for an empty result: ask the catalogue
        described = [(str(n), str(t)) for n, t in warehouse.query(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": warehouse.database, "t": table})]
        order = {name: i for i, name in enumerate(TABLES[table].columns)}
        described = sorted((c for c in described if c[0] in order), key=lambda c: order[c[0]])
    schema = pa.schema([pa.field(name, arrow_type(kind), nullable=True)
                        for name, kind in described])
    written = 0
    with atomic_path(Path(output)) as staged, \
            pq.ParquetWriter(str(staged), schema, compression="zstd") as writer:
        offset = 0
        while True:
            rows = warehouse.query(sql, {**params, "limit": chunk_rows, "offset": offset})
            if rows:
                columns = list(zip(*rows, strict=True))
                arrays = [pa.array(list(values), type=f.type)
                          for values, f in zip(columns, schema, strict=True)]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                written += len(rows)
                meter.update(written)
            if len(rows) < chunk_rows:
                break
            offset += chunk_rows
    meter.finish()
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, choices=sorted(TABLES),
                        help="table to export (latest version per key)")
    parser.add_argument("--output", required=True, help="Parquet file to write")
    parser.add_argument("--since", help="only rows at or after this time (RFC 3339, or a "
                                        "duration before now such as 7d)")
    parser.add_argument("--url", default=None, type=warehouse_url_argument,
                        help="clickhouse://user:password@host:port/db (default "
                             "PEAKEND_CLICKHOUSE_READER_URL, else PEAKEND_CLICKHOUSE_URL; "
                             "empty: embedded chdb)")
    parser.add_argument("--chunk-rows", type=whole(1, MAX_CHUNK_ROWS), default=100_000,
                        help="rows per query page and row group, 1 to 10,000,000 "
                             "(default 100000)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _since(text: str | None) -> int | None:
    import time

    from jobs.generate import parse_duration, parse_time

    if text is None:
        return None
    try:
        if "T" in text.upper() or text == "now":
            return parse_time(text)
        return int(time.time() * 1000) - parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"--since: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from pipeline.settings import Settings
    from pipeline.storage.warehouse import connect

    settings = Settings.from_env()
    url = args.url if args.url is not None else (
        settings.clickhouse_reader_url or settings.clickhouse_url)
    try:
        check_file(Path(args.output))  # before connecting: a bad path is found at once
    except OutputError as exc:
        print(f"peakend export: {exc}", file=sys.stderr)
        return exc.status
    try:
        since = _since(args.since)
        warehouse = connect(url, chdb_path=settings.chdb_path,
                            database=settings.clickhouse_database,
                            ca_file=settings.clickhouse_ssl_cafile)
    except ValueError as exc:
        print(f"peakend export: {exc}", file=sys.stderr)
        return 2
    try:
        count = export_table(warehouse, args.table, args.output, since_ms=since,
                             chunk_rows=args.chunk_rows, progress=not args.quiet)
    except OutputError as exc:
        print(f"peakend export: {exc}", file=sys.stderr)
        return exc.status
    except (OSError, ValueError) as exc:
        print(f"peakend export: {exc}", file=sys.stderr)
        return 1
    finally:
        warehouse.close()
    print(f"exported {count:,} rows of {args.table} to {args.output}")
    return 0
