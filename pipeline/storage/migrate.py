"""`peakend migrate`: apply the ClickHouse migrations in schemas/clickhouse/, in order, once.

Migrations are `NNN_name.sql` files of `;`-terminated statements written in the SQL subset that
ClickHouse 18.16 and current ClickHouse (chdb) both accept, without database prefixes (they run
in the warehouse's database). Applied ones are recorded in `schema_migrations` with a checksum;
running again applies only new files, and a changed file that was already applied is an error
(write a new migration instead). Every statement is idempotent (`IF NOT EXISTS`), so two
processes migrating at once do no harm.

With a cluster (`PEAKEND_CLICKHOUSE_CLUSTER` or `--cluster`), each `CREATE TABLE name ... ENGINE =
XMergeTree(args)` becomes `name_local ON CLUSTER c` with `ReplicatedXMergeTree('/clickhouse/
tables/{shard}/<db>/name_local', '{replica}', args)` plus `name ON CLUSTER c` as a `Distributed`
table sharded by the statement's `-- shard_key:` expression; views and drops get `ON CLUSTER c`.
`peakend migrate --print` shows the generated SQL without touching any server.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.settings import Settings
from pipeline.storage.warehouse import Warehouse, connect
from pipeline.urls import warehouse_url_argument

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse"
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


def load(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, ordered by number; gaps and duplicates are errors."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"{migration.name}: expected migration number {expected:03d} (no gaps or repeats)"
            )
    return found


def split(text: str) -> list[tuple[str, str]]:
    """`;`-terminated statements -> (statement without comment lines, shard key or '').

    >>> split("-- c\\nSELECT 1\\n-- shard_key: cityHash64(a)\\n;\\nSELECT 2;")
    [('SELECT 1', 'cityHash64(a)'), ('SELECT 2', '')]
    """
    out: list[tuple[str, str]] = []
    lines: list[str] = []
    shard_key = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            directive = stripped[2:].strip()
            if directive.startswith("shard_key:"):
                shard_key = directive[len("shard_key:"):].strip()
            continue
        if stripped.endswith(";"):
            lines.append(line.rstrip()[:-1])
            statement = "\n".join(lines).strip()
            if statement:
                out.append((statement, shard_key))
            lines, shard_key = [], ""
        else:
            lines.append(line)
    if "\n".join(lines).strip():
        raise MigrationError("the last statement is not terminated by ';'")
    return out


_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\s*\n?\(", re.IGNORECASE)
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)\(([^)]*)\)")
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+) AS", re.IGNORECASE)
_DROP = re.compile(r"^DROP (TABLE|VIEW) IF EXISTS (\w+)$", re.IGNORECASE)


def render(text: str, database: str, cluster: str = "") -> list[str]:
    """The statements of one migration, for one server or (with `cluster`) a cluster.

    >>> sql = "CREATE TABLE IF NOT EXISTS t\\n(a String, v UInt64)\\n"
    >>> sql += "ENGINE = ReplacingMergeTree(v)\\nORDER BY a\\n-- shard_key: cityHash64(a)\\n;"
    >>> print(*render(sql, "db"))
    CREATE TABLE IF NOT EXISTS t
    (a String, v UInt64)
    ENGINE = ReplacingMergeTree(v)
    ORDER BY a
    >>> for s in render(sql, "db", "c"): print(s)
    CREATE TABLE IF NOT EXISTS t_local ON CLUSTER c
    (a String, v UInt64)
    ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}', v)
    ORDER BY a
    CREATE TABLE IF NOT EXISTS t ON CLUSTER c AS t_local
    ENGINE = Distributed(c, db, t_local, cityHash64(a))
    """
    statements = split(text)
    if not cluster:
        return [s for s, _ in statements]
    for name in (cluster, database):
        if not _IDENT.match(name):
            raise MigrationError(f"{name!r} is not a plain identifier")
    out: list[str] = []
    for statement, shard_key in statements:
        table = _CREATE_TABLE.match(statement)
        view = _CREATE_VIEW.match(statement)
        drop = _DROP.match(statement)
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
            out.append(head + sep + body)
            out.append(
                f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local}\n"
                f"ENGINE = Distributed({cluster}, {database}, {local}, {shard_key})"
            )
        elif view:
            out.append(
                f"CREATE VIEW IF NOT EXISTS {view.group(1)} ON CLUSTER {cluster} AS"
                + statement[view.end() :]
            )
        elif drop:
            out.append(f"{statement} ON CLUSTER {cluster}")
        else:
            raise MigrationError(
                f"cluster DDL: no cluster form for statement {statement.splitlines()[0]!r}"
            )
    return out


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
) -> list[str]:
    """Apply the pending migrations; returns the names applied (empty when up to date).

    `cluster` defaults to PEAKEND_CLICKHOUSE_CLUSTER.
    """
    if cluster is None:
        cluster = Settings.from_env().clickhouse_cluster
    migrations = load(directory)
    done = applied(warehouse)
    for version, (name, checksum) in sorted(done.items()):
        known = next((m for m in migrations if m.version == version), None)
        if known is None:
            raise MigrationError(f"{name} was applied but is not in {directory}")
        if known.checksum != checksum:
            raise MigrationError(
                f"{known.name} changed after it was applied (checksum {checksum[:12]} in "
                f"schema_migrations); add a new migration instead of editing an applied one"
            )
    names: list[str] = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in migration.statements(warehouse.database, cluster):
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
              datetime.now(UTC).replace(tzinfo=None, microsecond=0))],
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
                for statement in migration.statements(settings.clickhouse_database, cluster):
                    print(statement + ";\n")
            return 0
        url = settings.clickhouse_url if args.url is None else args.url
        warehouse = connect(url, chdb_path=settings.chdb_path,
                            database=settings.clickhouse_database)
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
