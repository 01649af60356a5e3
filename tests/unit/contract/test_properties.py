"""Property tests: generated and mutated events get the same verdict from parser and schema."""

from __future__ import annotations

import json
from typing import Any

from contract_oracle import schema_accepts
from contract_strategies import JSON_VALUES, mutated_events, occurred_at, valid_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract import Rejected, event_to_dict, event_to_json, parse_event
from pipeline.core.event import TouchpointEvent

# Generation is what is slow on a loaded 2-core machine (FailedHealthCheck "input generation is
# slow" there); the properties themselves are unchanged.
_LOADED = [HealthCheck.too_slow, HealthCheck.data_too_large]


def verdict(data: bytes) -> bool:
    try:
        parse_event(data)
    except Rejected:
        return False
    return True


def as_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


@given(valid_events())
@settings(max_examples=400, suppress_health_check=_LOADED, deadline=None)
def test_generated_valid_events_pass_both(obj: dict[str, Any]) -> None:
    data = as_bytes(obj)
    assert schema_accepts(data)
    event = parse_event(data)
    assert isinstance(event, TouchpointEvent)
    assert event.journey_key == obj.get("journey_id", obj["customer_id"])


@given(mutated_events())
@settings(max_examples=1500, suppress_health_check=_LOADED, deadline=None)
def test_mutated_events_get_the_same_verdict(obj: dict[str, Any]) -> None:
    data = as_bytes(obj)
    assert verdict(data) == schema_accepts(data)


@given(JSON_VALUES)
def test_arbitrary_json_gets_the_same_verdict(value: Any) -> None:
    data = as_bytes(value)
    assert verdict(data) == schema_accepts(data)


@given(st.text(alphabet="0123456789-T:Z+.tz ", max_size=32) | occurred_at())
@settings(max_examples=800, suppress_health_check=_LOADED, deadline=None)
def test_timestamps_get_the_same_verdict(text: str) -> None:
    obj = {"event_id": "e", "schema_version": 1, "occurred_at": text, "producer": "p",
           "customer_id": "c", "type": "interaction", "touchpoint": "t", "channel": "web",
           "stage": "use"}
    data = as_bytes(obj)
    assert verdict(data) == schema_accepts(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_rejected(data: bytes) -> None:
    try:
        parse_event(data)
    except Rejected as rejected:
        assert rejected.reason in {"not_utf8", "not_json", "not_object", "invalid"}
    assert verdict(data) == schema_accepts(data)


@given(valid_events())
@settings(max_examples=300, suppress_health_check=_LOADED, deadline=None)
def test_event_to_dict_round_trips(obj: dict[str, Any]) -> None:
    event = parse_event(as_bytes(obj))
    again = event_to_dict(event)
    assert schema_accepts(as_bytes(again))
    assert parse_event(event_to_json(event)) == event
    assert event_to_dict(parse_event(event_to_json(event))) == again
