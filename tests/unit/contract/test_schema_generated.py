"""Events generated from the published schema (hypothesis-jsonschema) are accepted by the
parser, run through replay without an exception, and every output row inserts into chdb.

The same property against the real ClickHouse 18.16 server is
tests/integration/test_contract_schema_clickhouse.py. Generation from this schema is slow
(about a second per event on a busy machine), so the example count is small and fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from schema_roundtrip import EDGE_EVENTS, insert_all, outputs
from schema_strategy import schema_events

from pipeline.storage.warehouse import Warehouse
from tests.unit.storage.ch_helpers import chdb_database

GENERATED = settings(
    max_examples=25,
    deadline=None,  # generation dominates and varies with load; the parse is microseconds
    derandomize=True,  # the same events in every run: a failure is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def chdb() -> Iterator[Warehouse]:
    with chdb_database(prefix="pe_contract") as dbs:
        yield dbs.writer


@GENERATED
@given(schema_events())
def test_schema_valid_events_go_through_replay_into_chdb(chdb: Warehouse,
                                                          obj: dict[str, Any]) -> None:
    insert_all(chdb, outputs(obj))


@pytest.mark.parametrize("obj", EDGE_EVENTS, ids=lambda o: o["event_id"])
def test_edge_events_insert_into_chdb(chdb: Warehouse, obj: dict[str, Any]) -> None:
    insert_all(chdb, outputs(obj))
