"""Events generated from the published schema (hypothesis-jsonschema) run through replay and
every output row inserts into the real ClickHouse 18.16 server (`scripts/stack.sh`).

The chdb half of the property is tests/unit/contract/test_schema_generated.py; both use the
same helpers, so the two engines are held to the same rows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.storage.warehouse import Warehouse
from tests.support.stack import ClickHouseUrls
from tests.unit.storage.ch_helpers import server_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "contract"))
from schema_roundtrip import EDGE_EVENTS, insert_all, outputs
from schema_strategy import schema_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(clickhouse_urls: ClickHouseUrls) -> Iterator[Warehouse]:
    with server_database(clickhouse_urls.admin, clickhouse_urls.writer, clickhouse_urls.reader,
                         prefix="pe_contract") as dbs:
        yield dbs.writer


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(schema_events())
def test_schema_valid_events_go_through_replay_into_clickhouse_18(
        server: Warehouse, obj: dict[str, Any]) -> None:
    insert_all(server, outputs(obj))


def test_edge_events_insert_into_clickhouse_18(server: Warehouse) -> None:
    """The limits themselves (first and last instants, largest numbers, NUL and astral
    characters, longest strings) on the server."""
    for obj in EDGE_EVENTS:
        insert_all(server, outputs(obj))
