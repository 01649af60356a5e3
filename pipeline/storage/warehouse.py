"""One small interface over the two ClickHouse engines peakend runs on.

- `ServerWarehouse`: a ClickHouse server over the native protocol (clickhouse-driver); on these
  machines Debian's 18.16, elsewhere any current server.
- `ChdbWarehouse`: modern ClickHouse in-process (chdb), the embedded default when no server URL is
  configured.

SQL is written once, in the subset both accept, with `%(name)s` placeholders. Values are always
escaped by clickhouse-driver's own escaper (for chdb too), never pasted in by hand. Inserts send
rows as data (native blocks on the server: 18.16 hangs on inline literal VALUES over the native
protocol; JSONEachRow on chdb).

`failure_kind` sorts what an engine raises into the three classes the sink acts on: the
connection (down, hung, timed out: retry), the server refusing work for a reason of its own
(unknown table, memory, read-only, authentication: retry) and the content of the rows (a value the
column type cannot hold: isolate the rows, docs/reliability.md "The sink's failure classes").
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, Protocol

from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors
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


class Timeouts(NamedTuple):
    """clickhouse-driver's socket timeouts, in seconds.

    The defaults suit analysts' queries and batch jobs (a long SELECT may be silent for a while).
    The sink uses `SINK_TIMEOUTS`: a server that accepts connections but never answers (hung,
    SIGSTOP) must count as down within ~15 s, not after the driver's ~60 s.
    """

    connect: float = 5.0  # TCP connect
    send_receive: float = 60.0  # any one send or receive on an open connection
    sync_request: float = 5.0  # the ping the driver sends before reusing a connection


# Worst case on a hung server: ping on the old connection (3 s), then a new connection that
# the kernel accepts but nobody serves, waiting for the server's hello (8 s): ~11 s.
# An insert of a 10,000-row batch never waits 8 s for a single packet from a healthy server.
SINK_TIMEOUTS = Timeouts(connect=3.0, send_receive=8.0, sync_request=3.0)

# The sink's migrations: DDL may rightly be silent for long. `ON CLUSTER` DDL answers only when
# the hosts have run it, and the server gives up after its distributed_ddl_task_timeout (180 s):
# the client waits longer than that. With SINK_TIMEOUTS a cluster under load timed out every
# attempt, and each retry queued the same DDL again behind the last (the sink never migrated).
DDL_TIMEOUTS = Timeouts(connect=3.0, send_receive=200.0, sync_request=3.0)


# Server error codes that say the server cannot take work now, whatever the rows hold.
# (Codes: clickhouse_driver.errors.ErrorCodes and ClickHouse's ErrorCodes.cpp.)
_CONNECTION_CODES = frozenset({
    159,  # TIMEOUT_EXCEEDED
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    279,  # ALL_CONNECTION_TRIES_FAILED
})
_SERVER_CODES = frozenset({
    8, 10, 16,  # THERE_IS_NO_COLUMN, NOT_FOUND_COLUMN_IN_BLOCK, NO_SUCH_COLUMN_IN_TABLE: schema
    23, 24, 74, 75, 76, 77,  # reading/writing the server's own streams and files
    60, 81, 218,  # UNKNOWN_TABLE, UNKNOWN_DATABASE, TABLE_IS_DROPPED: migrations not applied
    164, 242,  # READONLY, TABLE_IS_READ_ONLY
    173, 241,  # CANNOT_ALLOCATE_MEMORY, MEMORY_LIMIT_EXCEEDED
    192, 193, 194, 291, 497, 516,  # users, passwords, access rights
    202, 252,  # TOO_MANY_SIMULTANEOUS_QUERIES, TOO_MANY_PARTS
    225, 236, 319, 394, 425, 473, 999,  # ZooKeeper, aborted, cancelled, system errors
    243,  # NOT_ENOUGH_SPACE
    1000,  # POCO_EXCEPTION (I/O and system errors inside the server)
})
_CODE_IN_TEXT = re.compile(r"Code:\s*(\d+)")
_SPREAD_OVER_PARTITIONS = "Too many partitions for single INSERT block"


def error_code(exc: BaseException) -> int | None:
    """ClickHouse's error code: the driver's `code`, else `Code: N` in the text (chdb).

    >>> error_code(RuntimeError("Code: 53. DB::Exception: Type mismatch"))
    53
    >>> error_code(ValueError("no code")) is None
    True
    """
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE_IN_TEXT.search(str(exc))
    return int(found.group(1)) if found else None


def failure_kind(exc: BaseException) -> str:
    """`connection`, `server` or `content`: how the sink treats a failed insert.

    - `connection`: network errors, timeouts, a broken protocol stream. ClickHouse is down (the
      `peakend_clickhouse_up` gauge); retry the same rows.
    - `server`: the server answered and refused for a reason of its own (table missing, memory,
      read-only, credentials). Retry the same rows; the rows are not to blame.
    - `content`: anything else, chiefly values the column types cannot hold. The driver checks
      them while it encodes the block (TypeMismatchError, Code: 53, "argument out of range") and
      the server checks more (e.g. Code: 190, Nested arrays of different sizes). Split the batch
      to find the rows to blame.

    >>> failure_kind(driver_errors.NetworkError("Code: 210. Connection refused"))
    'connection'
    >>> failure_kind(driver_errors.ServerException("DB::Exception: Table x doesn't exist", 60))
    'server'
    >>> failure_kind(driver_errors.TypeMismatchError("Column a: argument out of range"))
    'content'
    >>> failure_kind(OverflowError("int too big to convert"))
    'content'
    >>> failure_kind(IndexError("pop from empty list"))
    'connection'
    """
    if isinstance(exc, (driver_errors.NetworkError, driver_errors.SocketTimeoutError,
                        driver_errors.UnexpectedPacketFromServerError,
                        driver_errors.UnknownPacketFromServerError,
                        driver_errors.PartiallyConsumedQueryError,
                        EOFError, OSError, socket.timeout, TimeoutError)):
        return "connection"
    if isinstance(exc, AssertionError):
        # The driver's own state check (its compiled buffers), not the rows: in a full-size
        # takeover fault run a burst of bare AssertionErrors was taken for content and 473
        # valid rows went to dead letters. Hold the batch and retry, as for a broken connection.
        return "connection"
    if isinstance(exc, IndexError) and "pop from empty list" in str(exc):
        # The driver reading a connection the server dropped mid-insert (seen twice while
        # ZooKeeper was stopped in a cluster fault run): its buffers, not the rows.
        return "connection"
    code = error_code(exc)
    if isinstance(exc, driver_errors.Error) or code is not None:
        if code in _CONNECTION_CODES:
            return "connection"
        if code == 252 and _SPREAD_OVER_PARTITIONS in str(exc):
            # the same code as TOO_MANY_PARTS, but the batch's fault: its rows span more months
            # than max_partitions_per_insert_block (100 on chdb and current servers, none on
            # 18.16). Retried whole it would block the sink forever; halves insert.
            return "content"
        if code in _SERVER_CODES:
            return "server"
    return "content"


def short_error(exc: BaseException, limit: int = 500) -> str:
    """One line for a log or a dead letter: type and message, without the server's stack trace.

    >>> short_error(RuntimeError("Code: 60. DB::Exception: no table.. Stack trace:\\n0. f"))
    'RuntimeError: Code: 60. DB::Exception: no table..'
    """
    text = " ".join(str(exc).split("Stack trace:")[0].split()) or repr(exc)
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{type(exc).__name__}: {text}"


class ServerWarehouse:
    """A ClickHouse server reached over the native protocol."""

    engine = "server"

    def __init__(
        self,
        url: str,
        *,
        settings: Mapping[str, Any] | None = None,
        timeouts: Timeouts | None = None,
        ca_file: str = "",
    ) -> None:
        # Any password character, raw or percent-encoded (pipeline.urls); urlparse cut a raw '/'.
        parsed = parse_clickhouse_url(url)
        limits = timeouts or Timeouts()
        self.database = identifier(parsed.database)
        # The driver logs each failed connection (refused, timed out, a certificate not
        # trusted) as a warning with its traceback, then raises: every caller says it in one
        # line (commands through the CLI's guard, the sink in its retry log and gauge).
        logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)
        self._client = Client(
            host=parsed.host,
            port=parsed.port,
            user=parsed.user,
            password=parsed.password,
            database=self.database,
            secure=parsed.secure,
            # clickhouses://: the server's certificate and host name are always verified,
            # against `ca_file` (PEAKEND_CLICKHOUSE_SSL_CAFILE) or the system's CAs.
            verify=True,
            ca_certs=ca_file or None,
            settings=dict(settings or {}),
            connect_timeout=limits.connect,
            send_receive_timeout=limits.send_receive,
            sync_request_timeout=limits.sync_request,
        )
        self._lock = threading.Lock()  # one native connection: one query at a time
        self._insert_settings: dict[str, Any] | None = None  # learnt on the first insert

    def _spread_ok(self) -> dict[str, Any]:
        """Insert settings: no cap on the months one insert spans, on servers that have the cap
        (max_partitions_per_insert_block, 100 by default since 19.x; 18.16 knows no such
        setting and refuses unknown ones). Our tables partition by month and a batch of a
        backfill or of a late stream may span years: refusing it would stall the write."""
        if self._insert_settings is None:
            modern = self.version() >= (19, 10)
            self._insert_settings = {"max_partitions_per_insert_block": 0} if modern else {}
        return self._insert_settings

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
        settings = self._spread_ok()
        with self._lock:
            self._client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", data,
                                 settings=settings)
        return len(data)

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> int:
        """A columnar native insert: the driver sends the columns as they are (no row to
        column pass), the fastest way in for batch jobs."""
        size = len(data[0]) if data else 0
        if size == 0:
            return 0
        settings = self._spread_ok()
        with self._lock:
            self._client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES",
                                 [list(c) for c in data], columnar=True, settings=settings)
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
        # no cap on the months one insert spans (see ServerWarehouse._spread_ok)
        self._raw(
            self._in_database(f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS "
                              "max_partitions_per_insert_block = 0 FORMAT JSONEachRow\n")
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


def connect(url: str, *, chdb_path: str = ".stack/chdb", database: str = "peakend",
            timeouts: Timeouts | None = None, ca_file: str = "") -> Warehouse:
    """A warehouse for `url`: clickhouse://user:pass@host:port/db, or chdb when url is empty.

    `chdb:///abs/path` or `chdb://rel/path` names an embedded data directory explicitly.
    `timeouts` applies to a server (chdb runs in this process).
    """
    if not url:
        return ChdbWarehouse(chdb_path, database)
    if url.startswith("chdb://"):
        return ChdbWarehouse(url[len("chdb://") :] or chdb_path, database)
    return ServerWarehouse(url, timeouts=timeouts, ca_file=ca_file)
