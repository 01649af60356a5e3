"""One small interface over the two ClickHouse engines peakend runs on.

- `ServerWarehouse`: a ClickHouse server over the native protocol (clickhouse-driver); on these
  machines Debian's 18.16, elsewhere any current server.
- `ChdbWarehouse`: modern ClickHouse in-process (chdb), the embedded default when no server URL is
  configured.

SQL is written once, in the subset both accept, with `%(name)s` placeholders. Values are always
escaped by clickhouse-driver's own escaper (for chdb too), never pasted in by hand. Inserts send
rows as data (native blocks on the server: 18.16 hangs on inline literal VALUES over the native
protocol; JSONEachRow on chdb).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from clickhouse_driver import Client
from clickhouse_driver.util.escape import escape_params

from pipeline.urls import parse_clickhouse_url

Params = Mapping[str, Any]
Row = tuple[Any, ...]


class Warehouse(Protocol):
    engine: str  # "server" or "chdb"
    database: str

    def execute(self, sql: str, params: Params | None = None) -> None: ...

    def query(self, sql: str, params: Params | None = None) -> list[Row]: ...

    def query_with_columns(
        self, sql: str, params: Params | None = None
    ) -> tuple[list[Row], list[tuple[str, str]]]: ...

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int: ...

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> int:
        """Insert one list of values per column (all of equal length); returns the rows."""
        ...

    def version(self) -> tuple[int, ...]: ...

    def close(self) -> None: ...


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def identifier(name: str) -> str:
    """A database or table name from configuration, checked before it is put into SQL (names
    cannot be bound as parameters).

    >>> identifier("peakend_demo")
    'peakend_demo'
    >>> identifier("x; DROP TABLE journeys")
    Traceback (most recent call last):
    ...
    ValueError: not a valid ClickHouse identifier: 'x; DROP TABLE journeys'
    """
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid ClickHouse identifier: {name!r}")
    return name


def _version_tuple(text: str) -> tuple[int, ...]:
    """
    >>> _version_tuple("18.16.1")
    (18, 16, 1)
    >>> _version_tuple("26.9.2.1") > (19, 0)
    True
    """
    return tuple(int(p) for p in text.split(".") if p.isdigit())


class ServerWarehouse:
    """A ClickHouse server reached over the native protocol."""

    engine = "server"

    def __init__(self, url: str, *, settings: Mapping[str, Any] | None = None) -> None:
        # Any password character, raw or percent-encoded (pipeline.urls); urlparse cut a raw '/'.
        parsed = parse_clickhouse_url(url)
        self.database = identifier(parsed.database)
        self._client = Client(
            host=parsed.host,
            port=parsed.port,
            user=parsed.user,
            password=parsed.password,
            database=self.database,
            secure=parsed.secure,
            settings=dict(settings or {}),
            connect_timeout=5,
            send_receive_timeout=60,
        )
        self._lock = threading.Lock()  # one native connection: one query at a time

    def execute(self, sql: str, params: Params | None = None) -> None:
        with self._lock:
            self._client.execute(sql, params)

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        with self._lock:
            return [tuple(r) for r in self._client.execute(sql, params)]

    def query_with_columns(
        self, sql: str, params: Params | None = None
    ) -> tuple[list[Row], list[tuple[str, str]]]:
        with self._lock:
            rows, columns = self._client.execute(sql, params, with_column_types=True)
        return [tuple(r) for r in rows], [(n, t) for n, t in columns]

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        data = [list(r) for r in rows]
        if not data:
            return 0
        with self._lock:
            self._client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", data)
        return len(data)

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> int:
        """A columnar native insert: the driver sends the columns as they are (no row to
        column pass), the fastest way in for batch jobs."""
        size = len(data[0]) if data else 0
        if size == 0:
            return 0
        with self._lock:
            self._client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES",
                                 [list(c) for c in data], columnar=True)
        return size

    def version(self) -> tuple[int, ...]:
        return _version_tuple(str(self.query("SELECT version()")[0][0]))

    def close(self) -> None:
        self._client.disconnect()


_UTC_CONTEXT = SimpleNamespace(server_info=SimpleNamespace(get_timezone=lambda: "UTC"))
_chdb_sessions: dict[str, Any] = {}
_chdb_lock = threading.Lock()


def _chdb_session(path: str) -> Any:
    # chdb allows one embedded server per process: share its session between warehouses.
    from chdb import session

    with _chdb_lock:
        if path not in _chdb_sessions:
            if _chdb_sessions:
                other = next(iter(_chdb_sessions))
                raise RuntimeError(f"chdb is already open at {other}; one path per process")
            Path(path).mkdir(parents=True, exist_ok=True)
            sess = session.Session(path)  # type: ignore[no-untyped-call]
            # Return types as clickhouse-driver does (numbers as numbers, times in UTC).
            for setting in (
                "output_format_json_quote_64bit_integers = 0",
                "session_timezone = 'UTC'",
            ):
                sess.query(f"SET {setting}")  # type: ignore[no-untyped-call]
            _chdb_sessions[path] = sess
        return _chdb_sessions[path]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} to ClickHouse")


def _from_json(value: Any, ch_type: str) -> Any:
    """Give chdb's JSON values the Python types clickhouse-driver returns."""
    if value is None:
        return None
    base = ch_type
    while base.startswith(("Nullable(", "LowCardinality(")):
        base = base[base.index("(") + 1 : -1]
    if base.startswith("DateTime"):
        return datetime.fromisoformat(value)
    if base == "Date":
        return date.fromisoformat(value)
    if base.startswith(("Int", "UInt")) and isinstance(value, str):
        return int(value)
    if base.startswith("Float") and isinstance(value, str):
        return float(value)  # nan, inf
    return value


class ChdbWarehouse:
    """ClickHouse in-process (chdb): no server, data kept in a directory."""

    engine = "chdb"

    def __init__(self, path: str, database: str = "peakend") -> None:
        self.path = str(Path(path).resolve())
        self.database = identifier(database)
        self._session = _chdb_session(self.path)
        self._lock = threading.Lock()
        self._raw(f"CREATE DATABASE IF NOT EXISTS {database}")

    def _raw(self, sql: str, fmt: str = "CSV") -> str:
        with self._lock:
            result = self._session.query(sql, fmt)
        return str(result)

    def _bind(self, sql: str, params: Params | None) -> str:
        if not params:
            return sql
        return str(sql % escape_params(dict(params), _UTC_CONTEXT))

    def _in_database(self, sql: str) -> str:
        # chdb has no per-connection default database: name it with USE in the same call.
        return f"USE {self.database}; {sql}"

    def execute(self, sql: str, params: Params | None = None) -> None:
        self._raw(self._in_database(self._bind(sql, params)))

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        return self.query_with_columns(sql, params)[0]

    def query_with_columns(
        self, sql: str, params: Params | None = None
    ) -> tuple[list[Row], list[tuple[str, str]]]:
        text = self._raw(self._in_database(self._bind(sql, params)), "JSONCompact")
        if not text.strip():
            return [], []
        doc = json.loads(text)
        columns = [(m["name"], m["type"]) for m in doc["meta"]]
        rows = [
            tuple(_from_json(v, t) for v, (_, t) in zip(r, columns, strict=True))
            for r in doc["data"]
        ]
        return rows, columns

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        lines = [
            json.dumps(dict(zip(columns, r, strict=True)), default=_json_default) for r in rows
        ]
        if not lines:
            return 0
        body = "\n".join(lines)
        self._raw(
            self._in_database(f"INSERT INTO {table} ({', '.join(columns)}) FORMAT JSONEachRow\n")
            + body
        )
        return len(lines)

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> int:
        return self.insert(table, columns, zip(*data, strict=True))

    def version(self) -> tuple[int, ...]:
        return _version_tuple(self._raw("SELECT version()").strip().strip('"'))

    def close(self) -> None:
        """The embedded engine stays open for the life of the process (chdb: one per process)."""


def connect(url: str, *, chdb_path: str = ".stack/chdb", database: str = "peakend") -> Warehouse:
    """A warehouse for `url`: clickhouse://user:pass@host:port/db, or chdb when url is empty.

    `chdb:///abs/path` or `chdb://rel/path` names an embedded data directory explicitly.
    """
    if not url:
        return ChdbWarehouse(chdb_path, database)
    if url.startswith("chdb://"):
        return ChdbWarehouse(url[len("chdb://") :] or chdb_path, database)
    return ServerWarehouse(url)
