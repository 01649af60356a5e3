"""Lint: SQL in pipeline/ and jobs/ is parameterised (docs/design.md 4).

Every string that is built by interpolation (f-string, `%`, `.format`) and reads like SQL is
found by walking the AST. Values must travel as query parameters (`%(name)s` with a params dict,
or rows passed as data to `insert`), never be pasted into the text. Identifiers (table, column,
database, cluster names) cannot be parameters in ClickHouse, so they may be interpolated, but
each such place is listed below with where the identifier comes from. A new interpolation fails
this test until it is reviewed and added here; an identifier that comes from configuration must
be checked against a plain-identifier pattern before it reaches SQL.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(
    r"\b(SELECT|INSERT INTO|CREATE (TABLE|VIEW|DATABASE)|DROP (TABLE|VIEW|DATABASE)|ALTER TABLE|"
    r"TRUNCATE|OPTIMIZE TABLE|USE|SET|DELETE|FROM|WHERE|ON CLUSTER|ENGINE =)\b"
)

# Where an interpolated piece comes from.
CODE = "identifier from code constants (table/column names of pipeline.storage.tables etc.)"
CHECKED = "identifier checked against a known list or a plain-identifier pattern first"
FROM_CONFIG = "identifier from settings/URL, NOT validated before it reaches SQL"
BINDING = "the parameter binding itself (clickhouse-driver's escape_params)"

# (file, expression as ast.unparse prints it) -> provenance. Reviewed by hand.
REVIEWED: dict[tuple[str, str], str] = {
    # ServerWarehouse.insert / ChdbWarehouse.insert: callers pass table names from
    # topic_tables()/TABLES and columns from tables.rows(); rows go as data.
    ("pipeline/storage/warehouse.py", "table"): CODE,
    ("pipeline/storage/warehouse.py", "', '.join(columns)"): CODE,
    ("pipeline/storage/warehouse.py", "setting"): CODE,
    ("pipeline/storage/warehouse.py", "sql"): CODE,  # USE {db}; {sql}: the sql is the caller's
    ("pipeline/storage/warehouse.py", "escape_params(dict(params), _UTC_CONTEXT)"): BINDING,
    # ChdbWarehouse: CREATE DATABASE IF NOT EXISTS {database} / USE {self.database}; the name
    # comes from PEAKEND_CLICKHOUSE_DATABASE and is not checked (see the test below).
    ("pipeline/storage/warehouse.py", "database"): FROM_CONFIG,
    ("pipeline/storage/warehouse.py", "self.database"): FROM_CONFIG,
    # migrate.render: names matched by \w+ regexes in the migration files; cluster and database
    # checked by _IDENT before use.
    ("pipeline/storage/migrate.py", "local"): CODE,
    ("pipeline/storage/migrate.py", "name"): CODE,
    ("pipeline/storage/migrate.py", "cluster"): CHECKED,
    ("pipeline/storage/migrate.py", "database"): CHECKED,
    ("pipeline/storage/migrate.py", "shard_key"): CODE,
    ("pipeline/storage/migrate.py", "view.group(1)"): CODE,
    ("pipeline/storage/migrate.py", "source"): CODE,  # RENAME TABLE pairs, \w+ in the file
    ("pipeline/storage/migrate.py", "LOCK_TABLE"): CODE,  # the migration lock's name, a constant
    # export: table checked against TABLES; columns/keys from TABLES; values as %(since)s etc.
    ("jobs/export.py", "columns"): CHECKED,
    ("jobs/export.py", "table"): CHECKED,
    ("jobs/export.py", "inner"): CHECKED,
    ("jobs/export.py", "where"): CHECKED,
    ("jobs/export.py", "order"): CHECKED,
    ("jobs/export.py", "SINCE_COLUMNS[table]"): CHECKED,
    ("jobs/export.py", "TABLES[table].key[0]"): CHECKED,
    ("jobs/export.py", "', '.join(TABLES[table].columns)"): CHECKED,
    # demo: a fixed database name
    ("pipeline/demo.py", "database"): CODE,
    # purge-dead-letters: DROP PARTITION {month}, month matched YYYYMM (digits) from system.parts
    ("jobs/purge_dead_letters.py", "TABLE"): CODE,
    ("jobs/purge_dead_letters.py", "month"): CHECKED,
    # migrate.render ALTER TABLE ... ADD COLUMN: name \w+, change from the migration file
    ("pipeline/storage/migrate.py", "change"): CODE,
    # migrate.render DROP ... ON CLUSTER: `DROP TABLE IF EXISTS {database}.{name}`, built above
    # from a \w+ match and the checked database
    ("pipeline/storage/migrate.py", "dropped"): CODE,
    # the HTML report's valence histogram: `column` is one of two constant column names
    ("pipeline/report_html.py", "column"): CODE,
}


@dataclass(frozen=True)
class Interpolation:
    path: str
    line: int
    kind: str  # f-string, %, format
    expression: str
    text: str


def _literal(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left) + _literal(node.right)
    return ""


def interpolations(path: Path) -> list[Interpolation]:
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), filename=rel)
    found: list[Interpolation] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = _literal(node)
            if SQL.search(text):
                for value in node.values:
                    if isinstance(value, ast.FormattedValue):
                        found.append(Interpolation(rel, node.lineno, "f-string",
                                                   ast.unparse(value.value), text))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            text = _literal(node.left)
            left_is_sql_name = isinstance(node.left, ast.Name) and node.left.id == "sql"
            if SQL.search(text) or left_is_sql_name:
                found.append(Interpolation(rel, node.lineno, "%", ast.unparse(node.right),
                                           text or "sql"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "format"):
            text = _literal(node.func.value)
            if SQL.search(text):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    found.append(Interpolation(rel, node.lineno, "format", ast.unparse(arg),
                                               text))
    return found


def all_interpolations() -> list[Interpolation]:
    out: list[Interpolation] = []
    for folder in ("pipeline", "jobs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            out.extend(interpolations(path))
    return out


def _is_message(item: Interpolation) -> bool:
    """Error messages and help texts mention SQL words too; they never reach a server."""
    if item.kind == "%":
        return False
    return bool(re.match(r"^\s*(\{\}|[a-z])", item.text)) and not re.match(
        r"^\s*(\{\}\s*(FROM|WHERE|ON)|SET |USE )", item.text)


def test_lint_finds_interpolated_sql() -> None:
    """The lint itself works: it sees the three ways of pasting a value into SQL."""
    source = (
        "def f(x, t):\n"
        "    a = f\"SELECT * FROM t WHERE id = '{x}'\"\n"
        "    b = \"SELECT * FROM t WHERE id = '%s'\" % x\n"
        "    c = \"DELETE FROM {} WHERE id = 1\".format(t)\n"
    )
    path = ROOT / "tests" / "unit" / "_lint_probe.py"
    path.write_text(source)
    try:
        found = interpolations(path)
    finally:
        path.unlink()
    assert [(i.kind, i.expression) for i in found] == [("f-string", "x"), ("%", "x"),
                                                       ("format", "t")]


def test_review_list_is_current() -> None:
    seen = {(i.path, i.expression) for i in all_interpolations()}
    stale = sorted(set(REVIEWED) - seen)
    assert not stale, f"reviewed entries that no longer occur (remove them): {stale}"


def test_sql_is_parameterised() -> None:
    unreviewed = [
        i for i in all_interpolations()
        if not _is_message(i) and (i.path, i.expression) not in REVIEWED
    ]
    assert not unreviewed, "values or unreviewed identifiers pasted into SQL:\n" + "\n".join(
        f"  {i.path}:{i.line} {i.kind} {{{i.expression}}} in {i.text[:80]!r}" for i in unreviewed
    )


def test_identifiers_from_configuration_are_validated() -> None:
    """Finding of issue 8: the embedded engine pastes PEAKEND_CLICKHOUSE_DATABASE into
    `CREATE DATABASE IF NOT EXISTS {database}` and `USE {database}; {sql}` unchecked, so a
    database setting such as `x; DROP DATABASE peakend` runs a second statement. The server
    path passes it as the connection's database (safe); migrate.render checks it only in
    cluster mode. Fix (pipeline/storage/warehouse.py): in ChdbWarehouse.__init__, before any
    SQL, `if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database): raise ValueError(...)`."""
    from tests.chdb_util import shared_chdb

    shared_chdb()  # the shared embedded engine is open (one per process)
    probe = "peakend_lint_probe"
    hostile = f"{probe}; CREATE DATABASE {probe}_injected"
    with pytest.raises(ValueError):
        shared_chdb(hostile)
    names = {str(r[0]) for r in shared_chdb().query("SELECT name FROM system.databases")}
    assert f"{probe}_injected" not in names, "a second statement ran through the database name"
