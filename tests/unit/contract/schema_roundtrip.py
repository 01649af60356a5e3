"""One schema-valid event through the whole pipeline: parser, replay (the core), table rows,
and an insert into a ClickHouse engine. Shared by the chdb unit test and the server test."""

from __future__ import annotations

import json
from typing import Any

from contract_oracle import schema_accepts

from pipeline.contract import event_to_dict, parse_event
from pipeline.core.config import CoreConfig
from pipeline.replay import Replay
from pipeline.storage import tables
from pipeline.storage.warehouse import Warehouse

CONTRACT_REASONS = {"not_utf8", "not_json", "not_object", "invalid", "too_large"}


def encode(obj: dict[str, Any]) -> bytes:
    # what a producer sends: compact UTF-8 (control characters stay \u escapes)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def outputs(obj: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The records of every table for one event that the schema accepts; fails the calling
    test when the parser rejects it or replay raises."""
    data = encode(obj)
    assert schema_accepts(data), obj  # the generator's own claim, checked by the oracle
    event = parse_event(data)  # Rejected here fails the test: the parser must accept it
    replay = Replay(CoreConfig(), 1, "schema-test", 65536)
    replay.line(1, data)
    replay.keep(replay.engine.finish())
    counts = replay.counts
    assert counts["lines"] == counts["events"] + counts["duplicates"] + len(replay.dead_letters)
    # the parser accepted it: a dead letter can only come from a later stage (late, future...)
    assert not {d.reason for d in replay.dead_letters} & CONTRACT_REASONS
    return {
        "touchpoint_events": [event_to_dict(event)],
        "journeys": [r.to_dict() for r in replay.journeys.values()],
        "metric_buckets": [r.to_dict() for r in replay.metrics.values()],
        "alerts": [r.to_dict() for r in replay.alerts],
        "dead_letters": [d.to_dict() for d in replay.dead_letters],
    }


def insert_all(warehouse: Warehouse, records: dict[str, list[dict[str, Any]]]) -> None:
    """Every record into its table, then reads the events row back: the stored text and numbers
    are the ones that went in (an engine that silently cut a string at a NUL would fail here)."""
    for table, items in records.items():
        columns, rows = tables.rows(table, items)
        assert warehouse.insert(table, columns, rows) == len(rows)
    event = records["touchpoint_events"][0]
    found = warehouse.query(
        "SELECT customer_id, touchpoint, attribute_values, transfers, wait_seconds"
        " FROM touchpoint_events WHERE event_id = %(id)s", {"id": event["event_id"]})
    signals = event.get("signals") or {}
    attributes = event.get("attributes") or {}
    want = (event["customer_id"], event["touchpoint"], [attributes[k] for k in sorted(attributes)],
            signals.get("transfers"), signals.get("wait_seconds"))
    assert len(found) == 1, found
    got = found[0]
    assert (got[0], got[1], list(got[2]), got[3]) == want[:4]
    assert (got[4] is None) == (want[4] is None)
    if want[4] is not None:
        assert got[4] == float(want[4])
