"""`peakend migrate`: apply the ClickHouse migrations in schemas/clickhouse/, in order, once.

Migrations are `NNN_name.sql` files of `;`-terminated statements written in the SQL subset that
ClickHouse 18.16 and current ClickHouse (chdb) both accept, without database prefixes (they run
in the warehouse's database). Applied ones are recorded in `schema_migrations` with a checksum;
running again applies only new files, and a changed file that was already applied is an error
(write a new migration instead).

Processes migrating at once (workers started together: each sink migrates) take turns: the one
that creates the table `schema_migrations_lock` (a `CREATE TABLE` without `IF NOT EXISTS`
succeeds for exactly one of them) migrates and drops it; the others wait for it, then find
nothing left to do. Guards alone (below) did not make them safe: four at once on the real
server interleaved migration 003's rebuild and could leave `touchpoint_events` renamed away
for good (tests/integration/test_migrate_concurrent.py). A lock older than `LOCK_STALE_SECONDS`
(its holder died) is broken, with a warning. The lock is per server: on a cluster, point every
process at the same server or run `peakend migrate` once before starting the workers.

With a cluster (`PEAKEND_CLICKHOUSE_CLUSTER` or `--cluster`), each `CREATE TABLE name ... ENGINE =
XMergeTree(args)` becomes `name_local ON CLUSTER c` with `ReplicatedXMergeTree('/clickhouse/
tables/{shard}/<db>/name_local', '{replica}', args)` plus `name ON CLUSTER c` as a `Distributed`
table sharded by the statement's `-- shard_key:` expression; views and drops get `ON CLUSTER c`.
Column comments are left out on a cluster: ClickHouse 18.16 refuses a second replica of a
Replicated table that has them.
`peakend migrate --print` shows the generated SQL without touching any server.

A statement that cannot be written idempotently (`RENAME TABLE`, `INSERT ... SELECT`: migration
003 swaps a rebuilt table in) carries a guard line, checked on the warehouse right before it runs:
`-- unless_column: table.column` (run only while the table has no such column) or `-- if_table:
table` (run only while the table exists). A migration interrupted half-way then resumes where it
stopped when run again, and a second process migrating at the same time skips what the first
did (or fails and retries, never doing it twice). With a cluster a `RENAME TABLE a TO b` renames
`a_local` to `b_local` ON CLUSTER and recreates the Distributed tables over them (sharded by the
statement's `-- shard_key:`), a `DROP TABLE` drops both the Distributed and the `_local` table,
and an `INSERT ... SELECT` runs as written, through the Distributed tables of the node migrating.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline.settings import Settings
from pipeline.storage.warehouse import Warehouse, connect, error_code
from pipeline.urls import warehouse_url_argument

# Package data (pipeline/schemas links to the repository's schemas/): there in a wheel too.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "schemas" / "clickhouse"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32 COMMENT 'migration number (NNN of NNN_name.sql)',
    name String COMMENT 'migration file name',
    checksum String COMMENT 'SHA-256 of the file as applied',
    applied_at DateTime COMMENT 'when it was applied (UTC)'
)
ENGINE = ReplacingMergeTree()
ORDER BY version
"""


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def statements(self, database: str, cluster: str = "") -> list[str]:
        return render(self.text, database, cluster)

    def steps(self, database: str, cluster: str = "") -> list[Step]:
        return steps(self.text, database, cluster)


def load(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, ordered by number; a repeated number is an error.

    Gaps are allowed: numbers are reserved per branch when several are developed at once, and
    `migrate` applies every migration not yet recorded, whatever its number."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    for before, migration in itertools.pairwise(found):
        if migration.version == before.version:
            raise MigrationError(
                f"{migration.name}: migration number {migration.version:03d} is taken by "
                f"{before.name} (no repeats)"
            )
    if found and found[0].version < 1:
        raise MigrationError(f"{found[0].name}: migration numbers start at 001")
    return found


class Guard(NamedTuple):
    """When a statement still has to run: `unless_column` (`table.column` absent) or
    `if_table` (`table` present)."""

    kind: str
    table: str
    column: str = ""

    def line(self) -> str:
        target = f"{self.table}.{self.column}" if self.column else self.table
        return f"-- {self.kind}: {target}"


class Statement(NamedTuple):
    sql: str
    shard_key: str = ""
    guard: Guard | None = None


def _guard(kind: str, target: str) -> Guard:
    parts = target.split(".")
    if kind == "unless_column" and len(parts) == 2 and all(_IDENT.match(p) for p in parts):
        return Guard(kind, parts[0], parts[1])
    if kind == "if_table" and len(parts) == 1 and _IDENT.match(parts[0]):
        return Guard(kind, parts[0])
    raise MigrationError(f"bad guard line '-- {kind}: {target}' "
                         "(unless_column: table.column, if_table: table)")


def split(text: str) -> list[tuple[str, str]]:
    """`;`-terminated statements -> (statement without comment lines, shard key or '').

    >>> split("-- c\\nSELECT 1\\n-- shard_key: cityHash64(a)\\n;\\nSELECT 2;")
    [('SELECT 1', 'cityHash64(a)'), ('SELECT 2', '')]
    """
    return [(s.sql, s.shard_key) for s in parse(text)]


def parse(text: str) -> list[Statement]:
    """`split`, each statement with its guard line too.

    >>> parse("-- if_table: old\\nDROP TABLE IF EXISTS old;")
    [Statement(sql='DROP TABLE IF EXISTS old', shard_key='', guard=Guard(kind='if_table', \
table='old', column=''))]
    """
    out: list[Statement] = []
    lines: list[str] = []
    shard_key = ""
    guard: Guard | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            directive = stripped[2:].strip()
            if directive.startswith("shard_key:"):
                shard_key = directive[len("shard_key:"):].strip()
            for kind in ("unless_column", "if_table"):
                if directive.startswith(kind + ":"):
                    guard = _guard(kind, directive[len(kind) + 1:].strip())
            continue
        if stripped.endswith(";"):
            lines.append(line.rstrip()[:-1])
            statement = "\n".join(lines).strip()
            if statement:
                out.append(Statement(statement, shard_key, guard))
            lines, shard_key, guard = [], "", None
        else:
            lines.append(line)
    if "\n".join(lines).strip():
        raise MigrationError("the last statement is not terminated by ';'")
    return out


_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\s*\n?\(", re.IGNORECASE)
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)\(([^)]*)\)")
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+) AS", re.IGNORECASE)
_DROP = re.compile(r"^DROP (TABLE|VIEW) IF EXISTS (\w+)$", re.IGNORECASE)
_RENAME = re.compile(r"^RENAME TABLE (\w+ TO \w+(?:\s*,\s*\w+ TO \w+)*)$", re.IGNORECASE)
_ALTER_ADD = re.compile(r"^ALTER TABLE (\w+) (ADD COLUMN .*)$", re.IGNORECASE | re.DOTALL)
# a quote inside a comment is doubled ('the customer''s') or escaped (\')
_COLUMN_COMMENT = re.compile(r"\s+COMMENT\s+'(?:[^'\\]|\\.|'')*'", re.IGNORECASE)
# a table a query reads: FROM/JOIN and a name (not a subquery, a function or a qualified name)
_TABLE_SOURCE = re.compile(r"\b(FROM|JOIN)\s+([A-Za-z_]\w*)\b(?![.(\w])", re.IGNORECASE)
# `IN (SELECT ...)`: on a cluster both sides read Distributed tables, which ClickHouse refuses
# ("Double-distributed IN/JOIN subqueries is denied"); GLOBAL IN runs the subquery once, over
# every shard, and sends its result to the shards
_IN_SUBQUERY = re.compile(r"(?<!GLOBAL )\b((?:NOT\s+)?IN)(\s*\(\s*SELECT\b)", re.IGNORECASE)
_INSERT_SELECT = re.compile(r"^INSERT INTO \w+\s*\([^)]*\)\s*SELECT\b", re.IGNORECASE)


class Step(NamedTuple):
    """The SQL of one statement of a migration file (several with a cluster) and its guard."""

    guard: Guard | None
    statements: list[str]


def render(text: str, database: str, cluster: str = "") -> list[str]:
    """The statements of one migration, for one server or (with `cluster`) a cluster.

    >>> sql = "CREATE TABLE IF NOT EXISTS t\\n(a String COMMENT 'key', v UInt64)\\n"
    >>> sql += "ENGINE = ReplacingMergeTree(v)\\nORDER BY a\\n-- shard_key: cityHash64(a)\\n;"
    >>> print(*render(sql, "db"))
    CREATE TABLE IF NOT EXISTS t
    (a String COMMENT 'key', v UInt64)
    ENGINE = ReplacingMergeTree(v)
    ORDER BY a
    >>> for s in render(sql, "db", "c"): print(s)
    CREATE TABLE IF NOT EXISTS t_local ON CLUSTER c
    (a String, v UInt64)
    ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}', v)
    ORDER BY a
    CREATE TABLE IF NOT EXISTS t ON CLUSTER c AS db.t_local
    ENGINE = Distributed(c, db, t_local, cityHash64(a))
    >>> swap = "-- shard_key: cityHash64(a)\\nRENAME TABLE t TO t_old, t_new TO t;"
    >>> for s in render(swap, "db", "c"): print(s)
    RENAME TABLE db.t_local TO db.t_old_local, db.t_new_local TO db.t_local ON CLUSTER c
    DROP TABLE IF EXISTS db.t ON CLUSTER c
    DROP TABLE IF EXISTS db.t_new ON CLUSTER c
    CREATE TABLE IF NOT EXISTS t_old ON CLUSTER c AS db.t_old_local
    ENGINE = Distributed(c, db, t_old_local, cityHash64(a))
    CREATE TABLE IF NOT EXISTS t ON CLUSTER c AS db.t_local
    ENGINE = Distributed(c, db, t_local, cityHash64(a))
    >>> for s in render("DROP TABLE IF EXISTS t_old;", "db", "c"): print(s)
    DROP TABLE IF EXISTS db.t_old ON CLUSTER c
    DROP TABLE IF EXISTS db.t_old_local ON CLUSTER c
    >>> print(*render("CREATE VIEW IF NOT EXISTS v AS SELECT a FROM (SELECT a FROM t FINAL);",
    ...               "db", "c"))
    CREATE VIEW IF NOT EXISTS v ON CLUSTER c AS SELECT a FROM (SELECT a FROM db.t FINAL)
    """
    return [sql for step in steps(text, database, cluster) for sql in step.statements]


def steps(text: str, database: str, cluster: str = "") -> list[Step]:
    """`render`, one `Step` per statement of the file, with the statement's guard."""
    statements = parse(text)
    if not cluster:
        return [Step(s.guard, [s.sql]) for s in statements]
    for name in (cluster, database):
        if not _IDENT.match(name):
            raise MigrationError(f"{name!r} is not a plain identifier")
    return [Step(s.guard, _cluster_form(s, database, cluster)) for s in statements]


def _distributed(name: str, database: str, cluster: str, shard_key: str) -> str:
    local = f"{name}_local"
    # the other nodes run ON CLUSTER DDL in their `default` database: name the database
    return (f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {database}.{local}\n"
            f"ENGINE = Distributed({cluster}, {database}, {local}, {shard_key})")


def _cluster_form(s: Statement, database: str, cluster: str) -> list[str]:
    statement, shard_key = s.sql, s.shard_key
    table = _CREATE_TABLE.match(statement)
    view = _CREATE_VIEW.match(statement)
    drop = _DROP.match(statement)
    rename = _RENAME.match(statement)
    if table:
        name = table.group(1)
        engine = _ENGINE.search(statement)
        if engine is None:
            raise MigrationError(f"{name}: cluster DDL needs a *MergeTree engine")
        if not shard_key:
            raise MigrationError(f"{name}: cluster DDL needs a '-- shard_key:' line")
        local = f"{name}_local"
        args = [f"'/clickhouse/tables/{{shard}}/{database}/{local}'", "'{replica}'"]
        if engine.group(2).strip():
            args.append(engine.group(2).strip())
        replicated = f"ENGINE = Replicated{engine.group(1)}({', '.join(args)})"
        head = f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster}"
        body = statement[table.end() - 1 :]
        body = body[: engine.start() - table.end() + 1] + replicated + body[
            engine.end() - table.end() + 1 :
        ]
        sep = "\n" if statement[table.end() - 2] == "\n" else " "
        # ClickHouse 18.16 refuses a second replica of a Replicated table whose columns carry
        # comments ("Table structure in ZooKeeper is too different from local table
        # structure"): on a cluster the columns go without them (docs/records.md has them)
        body = _COLUMN_COMMENT.sub("", body)
        return [head + sep + body, _distributed(name, database, cluster, shard_key)]
    if view:
        # the other nodes check a view's query in their `default` database: name the database
        select = _TABLE_SOURCE.sub(rf"\1 {database}.\2", statement[view.end() :])
        select = _IN_SUBQUERY.sub(r"GLOBAL \1\2", select)
        return [f"CREATE VIEW IF NOT EXISTS {view.group(1)} ON CLUSTER {cluster} AS" + select]
    if drop:
        dropped = f"DROP {drop.group(1).upper()} IF EXISTS {database}.{drop.group(2)}"
        if drop.group(1).upper() == "VIEW":
            return [f"{dropped} ON CLUSTER {cluster}"]
        # every table of a cluster is a Distributed table over a `_local` one
        return [f"{dropped} ON CLUSTER {cluster}", f"{dropped}_local ON CLUSTER {cluster}"]
    if rename:
        if not shard_key:
            raise MigrationError("RENAME TABLE: cluster DDL needs a '-- shard_key:' line")
        pairs = [tuple(p.split()[::2]) for p in re.split(r"\s*,\s*", rename.group(1))]
        # a Distributed table names its local table: rename the local tables, then put
        # Distributed tables over them under the new names
        out = ["RENAME TABLE " + ", ".join(f"{database}.{source}_local TO {database}.{target}_local"
                                           for source, target in pairs)
               + f" ON CLUSTER {cluster}"]
        out += [f"DROP TABLE IF EXISTS {database}.{source} ON CLUSTER {cluster}"
                for source, _ in pairs]
        out += [_distributed(target, database, cluster, shard_key) for _, target in pairs]
        return out
    if _INSERT_SELECT.match(statement):
        return [statement]  # through the Distributed tables: every shard gets its rows
    alter = _ALTER_ADD.match(statement)
    if alter:
        # the column goes on every replica's local table and on the Distributed table over them
        # (database named: the other nodes run ON CLUSTER DDL in their `default` database; no
        # column comment: 18.16's replicas refuse one, as in CREATE TABLE above)
        name, change = alter.group(1), _COLUMN_COMMENT.sub("", alter.group(2))
        # ClickHouse 18.16 refuses an ALTER ON CLUSTER of a table that is not Replicated when
        # the cluster's shards replicate internally ("isn't replicated, but shard #1 is
        # replicated according to its cluster definition"): the Distributed table is made again
        # over the altered local tables (sharded as declared; inserts fail for a moment and the
        # sink retries them)
        key = shard_key or declared_shard_key(name)
        return [f"ALTER TABLE {database}.{name}_local ON CLUSTER {cluster} {change}",
                f"DROP TABLE IF EXISTS {database}.{name} ON CLUSTER {cluster}",
                _distributed(name, database, cluster, key)]
    raise MigrationError(
        f"cluster DDL: no cluster form for statement {statement.splitlines()[0]!r}"
    )


def declared_shard_key(table: str, directory: Path = MIGRATIONS_DIR) -> str:
    """The `-- shard_key:` of the statement of the migrations in `directory` that creates
    `table` (or renames a table to it): a later ALTER keeps the table's sharding.

    >>> declared_shard_key("dead_letters")
    'cityHash64(source_topic, source_partition, source_offset)'
    """
    key = ""
    for migration in load(directory):
        for statement in parse(migration.text):
            created = _CREATE_TABLE.match(statement.sql)
            renamed = _RENAME.match(statement.sql)
            if (created and created.group(1) == table) or (
                    renamed and re.search(rf"\bTO {table}\b", renamed.group(1))):
                key = statement.shard_key or key
    if not key:
        raise MigrationError(f"table {table} has no '-- shard_key:' line in {directory.name}/: "
                             "a cluster needs it to shard the table again after a new column")
    return key


def needed(warehouse: Warehouse, guard: Guard | None) -> bool:
    """Does a statement with this guard still have to run on `warehouse`?"""
    if guard is None:
        return True
    if guard.kind == "if_table":
        found = warehouse.query(
            "SELECT count() FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            {"db": warehouse.database, "t": guard.table})
        return int(found[0][0]) > 0
    found = warehouse.query(
        "SELECT count() FROM system.columns WHERE database = %(db)s AND table = %(t)s "
        "AND name = %(c)s", {"db": warehouse.database, "t": guard.table, "c": guard.column})
    return int(found[0][0]) == 0


LOCK_TABLE = "schema_migrations_lock"
# Longer than any migration takes (each statement's DDL timeout is 200 s), so only a lock whose
# holder died is this old.
LOCK_STALE_SECONDS = 15 * 60
# How long `migrate` waits for another process's migration before it gives up (the sink then
# retries a little later).
LOCK_WAIT_SECONDS = 180.0

# UNKNOWN_TABLE, TABLE_IS_DROPPED: the lock table went away while a query read it.
_TABLE_GONE = frozenset({60, 218})

log = logging.getLogger(__name__)


def _take_lock(warehouse: Warehouse, owner: str) -> bool:
    """Create the lock table: True for exactly one of the processes trying at once."""
    try:
        warehouse.execute(
            f"CREATE TABLE {LOCK_TABLE} (owner String, taken_at DateTime) ENGINE = Memory")
    except Exception as exc:
        if "already exists" in str(exc):
            return False
        raise
    warehouse.insert(LOCK_TABLE, ("owner", "taken_at"),
                     [(owner, _now_seconds())])
    return True


def _lock_holder(warehouse: Warehouse) -> str:
    """Who took the lock (host:pid:...), for the message that names it; '' if unknown."""
    try:
        rows = warehouse.query(f"SELECT any(owner) FROM {LOCK_TABLE}")
    except Exception:  # dropped meanwhile
        return ""
    return str(rows[0][0]) if rows else ""


def _now_seconds() -> int:
    """Now as a `DateTime` value: epoch seconds, which the driver sends as they are (a naive
    datetime it would read in the server's or the client's zone: pipeline.storage.tables)."""
    return int(time.time())


def _lock_age_seconds(warehouse: Warehouse) -> float | None:
    """Seconds since the lock table was created (None: there is none now).

    ClickHouse 18.16 lists a table being created before its metadata file is renamed into
    place, and gives it a `metadata_modification_time` of 0 (1970) meanwhile: read as an age,
    that is 56 years, and a waiter broke a lock taken a moment before, so two processes
    migrated at once (a CI run of tests/integration/test_migrate_concurrent.py). A lock whose
    file is not there yet is being taken now: age 0.
    """
    try:
        rows = warehouse.query(
            "SELECT toUInt32(metadata_modification_time), toUInt32(now()) FROM system.tables "
            "WHERE database = %(db)s AND name = %(t)s",
            {"db": warehouse.database, "t": LOCK_TABLE})
    except Exception as exc:
        if error_code(exc) in _TABLE_GONE:  # dropped while the server listed it
            return None
        raise
    if not rows:
        return None
    modified, now = int(rows[0][0]), int(rows[0][1])
    return 0.0 if modified == 0 else float(max(0, now - modified))


def _acquire_lock(warehouse: Warehouse, *, wait_seconds: float,
                  poll_seconds: float = 0.5) -> None:
    owner = f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
    deadline = time.monotonic() + wait_seconds
    while not _take_lock(warehouse, owner):
        age = _lock_age_seconds(warehouse)
        if age is not None and age > LOCK_STALE_SECONDS:
            log.warning("migrate: breaking the migration lock %s.%s, taken %.0f s ago (its "
                        "holder is gone)", warehouse.database, LOCK_TABLE, age)
            warehouse.execute(f"DROP TABLE IF EXISTS {LOCK_TABLE}")
            continue
        if time.monotonic() >= deadline:
            holder = _lock_holder(warehouse) or "another process"
            raise MigrationError(
                f"{holder} has been migrating {warehouse.database} for {age or 0:.0f} s "
                f"(table {LOCK_TABLE}); if it is gone, drop that table")
        time.sleep(poll_seconds)


def applied(warehouse: Warehouse) -> dict[int, tuple[str, str]]:
    """Migrations recorded in `schema_migrations`: version -> (name, checksum)."""
    warehouse.execute(SCHEMA_MIGRATIONS_DDL)
    rows = warehouse.query(
        "SELECT version, any(name), any(checksum) FROM schema_migrations GROUP BY version"
    )
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def migrate(
    warehouse: Warehouse,
    *,
    cluster: str | None = None,
    directory: Path = MIGRATIONS_DIR,
    lock_wait_seconds: float = LOCK_WAIT_SECONDS,
) -> list[str]:
    """Apply the pending migrations; returns the names applied (empty when up to date).

    `cluster` defaults to PEAKEND_CLICKHOUSE_CLUSTER.
    """
    if cluster is None:
        cluster = Settings.from_env().clickhouse_cluster
    migrations = load(directory)
    done = applied(warehouse)
    _check_applied(migrations, done, directory)
    if all(m.version in done for m in migrations):
        return []  # up to date: no lock needed (the usual start of a worker)
    _acquire_lock(warehouse, wait_seconds=lock_wait_seconds)
    try:
        # another process may have applied some while this one waited
        return _apply(warehouse, migrations, applied(warehouse), cluster)
    finally:
        warehouse.execute(f"DROP TABLE IF EXISTS {LOCK_TABLE}")


def _check_applied(migrations: list[Migration], done: dict[int, tuple[str, str]],
                   directory: Path) -> None:
    for version, (name, checksum) in sorted(done.items()):
        known = next((m for m in migrations if m.version == version), None)
        if known is None:
            raise MigrationError(f"{name} was applied but is not in {directory}")
        if known.checksum != checksum:
            raise MigrationError(
                f"{known.name} changed after it was applied (checksum {checksum[:12]} in "
                f"schema_migrations); add a new migration instead of editing an applied one"
            )


def _apply(warehouse: Warehouse, migrations: list[Migration], done: dict[int, tuple[str, str]],
           cluster: str) -> list[str]:
    names: list[str] = []
    for migration in migrations:
        if migration.version in done:
            continue
        for step in migration.steps(warehouse.database, cluster):
            if not needed(warehouse, step.guard):
                continue
            for statement in step.statements:
                try:
                    warehouse.execute(statement)
                except Exception as exc:
                    first = statement.strip().splitlines()[0]
                    reason = " ".join(str(exc).split("Stack trace:")[0].split())
                    raise MigrationError(f"{migration.name}: {first}: {reason}") from exc
        warehouse.insert(
            "schema_migrations",
            ("version", "name", "checksum", "applied_at"),
            [(migration.version, migration.name, migration.checksum,
              _now_seconds())],
        )
        names.append(migration.name)
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, type=warehouse_url_argument,
        help="clickhouse://user:password@host:port/db (default: PEAKEND_CLICKHOUSE_URL; "
             "empty: the embedded chdb at PEAKEND_CHDB_PATH)")
    parser.add_argument(
        "--cluster", default=None,
        help="cluster name for Replicated + Distributed tables (default: "
             "PEAKEND_CLICKHOUSE_CLUSTER)")
    parser.add_argument(
        "--print", dest="print_only", action="store_true",
        help="print the SQL of every migration and exit, touching no server")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    cluster = settings.clickhouse_cluster if args.cluster is None else args.cluster
    try:
        if args.print_only:
            for migration in load():
                print(f"-- {migration.name}")
                for step in migration.steps(settings.clickhouse_database, cluster):
                    if step.guard is not None:
                        print(step.guard.line())
                    for statement in step.statements:
                        print(statement + ";\n")
            return 0
        url = settings.clickhouse_url if args.url is None else args.url
        warehouse = connect(url, chdb_path=settings.chdb_path,
                            database=settings.clickhouse_database,
                            ca_file=settings.clickhouse_ssl_cafile)
        try:
            names = migrate(warehouse, cluster=cluster)
        finally:
            warehouse.close()
    except MigrationError as exc:
        print(f"peakend migrate: {exc}", file=sys.stderr)
        return 1
    where = "chdb" if warehouse.engine == "chdb" else "server"
    if names:
        print(f"applied {len(names)} migration(s) to {warehouse.database} ({where}): "
              + ", ".join(names))
    else:
        print(f"{warehouse.database} ({where}) is up to date")
    return 0
