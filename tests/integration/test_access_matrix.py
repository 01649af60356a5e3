"""Access as data (issue 21): for every ClickHouse user of the stack (admin `default`,
`peakend_writer`, `peakend_reader`) and every table and view the migrations create, whether it
may read, write and alter, checked on the real 18.16 server.

It runs on the private stack of tests/integration/tls_stack.py (its own server and database):
the probes insert rows and add columns, which must not touch the shared stack's tables. The
users and profiles are the same (scripts/clickhouse/users.xml.in).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.storage import migrate
from pipeline.storage.warehouse import ServerWarehouse
from tests.integration.tls_stack import tls_stack

pytestmark = pytest.mark.integration

USERS = ("admin", "writer", "reader")
OPERATIONS = ("read", "write", "alter")
# The rule, once: who may do what on a table and on a view. 18.16 has no per-table grants, so a
# profile decides for every object of a kind; views are never written or altered (they hold no
# data; a migration replaces them).
ALLOWED: dict[str, dict[str, set[str]]] = {
    "table": {"admin": {"read", "write", "alter"}, "writer": {"read", "write", "alter"},
              "reader": {"read"}},
    "view": {"admin": {"read"}, "writer": {"read"}, "reader": {"read"}},
}


@pytest.fixture(scope="module")
def warehouses() -> Iterator[dict[str, ServerWarehouse]]:
    with tls_stack("clickhouse") as env:
        urls = {"admin": env["PEAKEND_CLICKHOUSE_ADMIN_URL"],
                "writer": env["PEAKEND_CLICKHOUSE_URL"],
                "reader": env["PEAKEND_CLICKHOUSE_READER_URL"]}
        opened = {user: ServerWarehouse(url) for user, url in urls.items()}
        try:
            migrate.migrate(opened["writer"], cluster="")
            yield opened
        finally:
            for warehouse in opened.values():
                warehouse.close()


def objects(admin: ServerWarehouse) -> dict[str, str]:
    """Every table and view of the database: name -> 'table' or 'view'."""
    found = admin.query("SELECT name, engine FROM system.tables WHERE database = %(db)s",
                        {"db": admin.database})
    return {str(name): "view" if str(engine) in {"View", "MaterializedView"} else "table"
            for name, engine in found}


def attempt(warehouse: ServerWarehouse, operation: str, name: str) -> bool:
    """Whether the server lets this user do `operation` on `name` (the probe changes nothing
    that stays: no rows are inserted, an added column is dropped again)."""
    statements = {
        "read": [f"SELECT count() FROM {name}"],
        "write": [f"INSERT INTO {name} SELECT * FROM {name} WHERE 0"],
        "alter": [f"ALTER TABLE {name} ADD COLUMN access_probe UInt8",
                  f"ALTER TABLE {name} DROP COLUMN access_probe"],
    }[operation]
    try:
        for statement in statements:
            warehouse.execute(statement)
    except Exception:  # the server's refusal, whatever its code, is the answer
        return False
    return True


def test_every_user_on_every_table_and_view(warehouses: dict[str, ServerWarehouse]) -> None:
    found = objects(warehouses["admin"])
    # every table of the migrations is in the matrix, and the views of 002
    assert {"journeys", "metric_buckets", "alerts", "dead_letters", "touchpoint_events",
            "schema_migrations"} <= set(found)
    assert "view" in found.values()
    got: dict[tuple[str, str, str], bool] = {}
    for name in sorted(found):
        for user in USERS:
            for operation in OPERATIONS:
                got[user, name, operation] = attempt(warehouses[user], operation, name)
    want = {(user, name, operation): operation in ALLOWED[kind][user]
            for name, kind in found.items() for user in USERS for operation in OPERATIONS}
    wrong = sorted(f"{user} {operation} {name}: {'allowed' if got[key] else 'refused'}, "
                   f"expected {'allowed' if want[key] else 'refused'}"
                   for key in want for user, name, operation in [key] if got[key] != want[key])
    assert not wrong, "access differs from the matrix:\n" + "\n".join(wrong)


def test_the_reader_reads_the_dead_letter_columns_it_needs_and_nothing_raw_by_default(
    warehouses: dict[str, ServerWarehouse],
) -> None:
    """18.16 has no column grants and a view does not shield its table (it checks the caller's
    access to the table it reads): what keeps raw personal data from the reader is that no
    table holds it (pseudonymisation before storage, sealed dead letters). The columns the
    operators' view needs are readable."""
    reader = warehouses["reader"]
    columns = reader.query(
        "SELECT name FROM system.columns WHERE database = %(db)s AND table = 'dead_letters'",
        {"db": reader.database})
    assert {"original_form", "original_sha256", "redacted"} <= {str(c[0]) for c in columns}
    reader.query("SELECT reason, original_form, redacted FROM dead_letters LIMIT 1")
