"""TouchpointEvent -> schema-v1 JSON, the inverse of the parser.

Fields left unset are omitted rather than written as null: null is not a valid value for any
optional field in v1. Producers that hold the original bytes should send those instead
(TouchpointProducer does), which keeps records byte-for-byte as written.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from pipeline.core.event import Signals, Survey, TouchpointEvent

_ZERO = timedelta(0)


def format_occurred_at(moment: datetime) -> str:
    """RFC 3339 with the event's own offset; `Z` for UTC; fraction only when there is one.

    >>> from datetime import timezone
    >>> format_occurred_at(datetime(2026, 11, 22, 17, 10, 9, 123000, tzinfo=timezone.utc))
    '2026-11-22T17:10:09.123000Z'
    """
    text = moment.isoformat()
    if moment.utcoffset() == _ZERO and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


# Field names of each optional part, in schema order: `dataclasses.fields` builds its tuple
# anew at every call, which cost more than the rest of `_present` on the entry stage's path
# (once per event with signals or a survey).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (Signals, Survey)}


def _present(part: Signals | Survey) -> dict[str, Any]:
    """The fields of an optional part that are set, in schema order (absent stays absent)."""
    return {name: value for name in _FIELD_NAMES[type(part)]
            if (value := getattr(part, name)) is not None}


def event_to_dict(event: TouchpointEvent) -> dict[str, Any]:
    """A dict that `parse_dict` turns back into an equal event (and the schema accepts)."""
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "schema_version": event.schema_version,
        "occurred_at": format_occurred_at(event.occurred_at),
        "producer": event.producer,
        "customer_id": event.customer_id,
    }
    if event.journey_id is not None:
        out["journey_id"] = event.journey_id
    out["type"] = event.type
    out["touchpoint"] = event.touchpoint
    out["channel"] = event.channel
    out["stage"] = event.stage
    if event.valence is not None:
        out["valence"] = event.valence
    if event.signals is not None:
        out["signals"] = _present(event.signals)
    if event.survey is not None:
        out["survey"] = _present(event.survey)
    if event.outcome is not None:
        out["outcome"] = event.outcome
    if event.attributes:
        out["attributes"] = dict(event.attributes)
    return out


def event_to_json(event: TouchpointEvent) -> bytes:
    """Compact UTF-8 JSON of `event_to_dict`, as sent to Kafka."""
    return json.dumps(
        event_to_dict(event), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def event_from_dict(data: dict[str, Any], occurred_ms: int = -1) -> TouchpointEvent:
    """The event `event_to_dict` made, rebuilt WITHOUT validation: only for dicts this process
    or another peakend stage made from a validated event (`pipeline.stream.batches`), never for
    input. `occurred_ms`, when given, is the event's own (the parser's, not recomputed).

    >>> from datetime import timezone
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, 1, 2, 3, 4000, tzinfo=timezone.utc),
    ...                     "p", "c1", "survey", "web", "web", "use", survey=Survey(nps=9),
    ...                     signals=Signals(transfers=2), attributes={"tier": "gold"})
    >>> event_from_dict(event_to_dict(e), e.occurred_ms) == e
    True
    """
    signals = data.get("signals")
    survey = data.get("survey")
    return TouchpointEvent(
        data["event_id"],
        datetime.fromisoformat(data["occurred_at"]),
        data["producer"],
        data["customer_id"],
        data["type"],
        data["touchpoint"],
        data["channel"],
        data["stage"],
        data.get("journey_id"),
        data["schema_version"],
        data.get("valence"),
        None if signals is None else Signals(**signals),
        None if survey is None else Survey(**survey),
        data.get("outcome"),
        data.get("attributes") or {},
        occurred_ms,
    )
