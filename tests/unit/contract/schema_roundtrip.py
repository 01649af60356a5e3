"""One schema-valid event through the whole pipeline: parser, replay (the core), table rows,
and an insert into a ClickHouse engine. Shared by the chdb unit test and the server test."""

from __future__ import annotations

import json
from typing import Any
from weakref import WeakKeyDictionary

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


# warehouse -> event_id -> (version, stored values) of the copy the table keeps: the databases
# live for a module, so an event_id drawn twice has several copies, and touchpoint_events
# (ReplacingMergeTree ordered by event_id) keeps the one with the highest version once merged.
_KEPT: WeakKeyDictionary[Warehouse, dict[str, tuple[int, tuple[Any, ...]]]] = (
    WeakKeyDictionary())


def insert_all(warehouse: Warehouse, records: dict[str, list[dict[str, Any]]]) -> None:
    """Every record into its table, then reads the events row back: the stored text and numbers
    are the ones that went in (an engine that silently cut a string at a NUL would fail here)."""
    version = -1
    for table, items in records.items():
        columns, rows = tables.rows(table, items)
        assert warehouse.insert(table, columns, rows) == len(rows)
        if table == "touchpoint_events":
            version = rows[0][columns.index("version")]
    event = records["touchpoint_events"][0]
    found = warehouse.query(
        "SELECT customer_id, touchpoint, attribute_values, transfers, wait_seconds"
        " FROM touchpoint_events WHERE event_id = %(id)s", {"id": event["event_id"]})
    signals = event.get("signals") or {}
    attributes = event.get("attributes") or {}
    wait = signals.get("wait_seconds")
    want = (event["customer_id"], event["touchpoint"], [attributes[k] for k in sorted(attributes)],
            signals.get("transfers"), None if wait is None else float(wait))
    # an earlier copy of this event_id with a higher version may have replaced this one
    copies = _KEPT.setdefault(warehouse, {})
    kept = copies.get(event["event_id"])
    if kept is None or version >= kept[0]:
        copies[event["event_id"]] = (version, want)
    else:
        want = kept[1]
    assert want in [(r[0], r[1], list(r[2]), r[3], r[4]) for r in found], (want, found)


_BASE: dict[str, Any] = {
    "schema_version": 1, "producer": "p", "customer_id": "c", "type": "interaction",
    "touchpoint": "t", "channel": "web", "stage": "use"}
# The limits themselves: first and last instants, the largest numbers, NUL and astral
# characters, the longest strings (and, together, near the 64 KiB size limit).
_EDGES: list[dict[str, Any]] = [
    {"occurred_at": "2000-01-01T00:00:00Z"},
    {"occurred_at": "2099-12-31T23:59:59.999999999Z"},
    {"occurred_at": "2099-12-31T23:59:59+14:00"},
    {"occurred_at": "2000-01-01T00:00:00-12:00",
     "signals": {"transfers": 2_147_483_647, "wait_seconds": 31_536_000,
                 "handle_seconds": 0.000001}},
    {"occurred_at": "2026-11-22T17:10:09Z", "customer_id": "a\u0000b\U0001f600\u202e",
     "touchpoint": "\u0000" * 200, "valence": -0.0,
     "attributes": {f"k{i}": "\U0001f600" * 200 for i in range(32)}},
    {"occurred_at": "2026-11-22T17:10:09Z", "type": "survey",
     "survey": {"nps": 10, "ces": 5, "ces_scale": 5, "csat": 1, "comment": "\u0000" * 2000}},
]
EDGE_EVENTS = [{**_BASE, "event_id": f"edge-{i}", **change} for i, change in enumerate(_EDGES)]
