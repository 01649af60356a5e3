"""Rows as a query reads them back from ClickHouse, for comparing what was written (or what
`peakend replay` would write, `pipeline.storage.tables.rows`) with what a table holds.

The sink, the backfill and `tables.rows` write a `DateTime` column as epoch seconds
(`tables.to_seconds`: the same instant in any time zone); clickhouse-driver and the chdb
warehouse read it back as a naive UTC `datetime`. Every `DateTime` column has its `<name>_ms`
column right after it, which is how these helpers find them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pipeline.storage.tables import TABLES

_NAIVE_EPOCH = datetime(1970, 1, 1)


def datetime_columns(table: str) -> frozenset[str]:
    """The `DateTime` columns of `table` (those with an `<name>_ms` twin)."""
    columns = TABLES[table].columns
    return frozenset(c for c in columns if f"{c}_ms" in columns)


def _read(value: Any) -> Any:
    return _NAIVE_EPOCH + timedelta(seconds=value) if isinstance(value, int) else value


def read_back(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` (column -> value) with each `DateTime` written as epoch seconds read back."""
    times = datetime_columns(table)
    return {name: _read(value) if name in times else value for name, value in row.items()}


def read_back_values(table: str, columns: Sequence[str], values: Sequence[Any]
                     ) -> tuple[Any, ...]:
    """The same for one row given as values in the order of `columns`."""
    times = datetime_columns(table)
    return tuple(_read(v) if c in times else v for c, v in zip(columns, values, strict=True))
