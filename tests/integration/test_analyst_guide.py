"""Every SQL example in docs/analyst-guide.md runs on the real server (as the read-only user) and
on chdb against the scenario data, and returns what a Python computation from the same records
says it must. The SQL is parsed out of the guide, so the doc and the test cannot drift."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.storage import oracle, scenario
from tests.unit.storage.ch_helpers import (
    Databases,
    engine_databases,
)

pytestmark = pytest.mark.integration

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "analyst-guide.md"
_EXAMPLE = re.compile(r"<!-- example: (\w+) -->\s*```sql\n(.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    found = _EXAMPLE.findall(GUIDE.read_text(encoding="utf-8"))
    names = [n for n, _ in found]
    assert len(names) == len(set(names)), "example names must be unique"
    return dict(found)


@pytest.fixture(scope="module", params=["server", "chdb"])
def loaded(request: pytest.FixtureRequest) -> Iterator[Databases]:
    urls = request.getfixturevalue("clickhouse_urls") if request.param == "server" else None
    with engine_databases(request.param, "pe_guide", urls) as dbs:
        scenario.load(dbs.writer)
        yield dbs


def test_guide_has_at_least_twelve_checked_examples() -> None:
    names = set(examples())
    assert len(names) >= 12
    assert names == set(oracle.expected(scenario.build())), "every example needs an oracle"


@pytest.mark.parametrize("name", sorted(examples()))
def test_example(loaded: Databases, name: str) -> None:
    sql = examples()[name]
    rows = loaded.reader.query(sql)
    want = oracle.expected(scenario.build())[name]
    assert want, f"{name}: the scenario must give this example something to find"
    oracle.assert_rows(rows, want, f"{name} on {loaded.engine}")
