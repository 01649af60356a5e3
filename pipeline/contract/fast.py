"""The parser's fast path: a record decoded and type-checked by msgspec in C, for the records
that are valid (nearly all of them); every other record goes the strict way.

`pipeline.contract.parse_event` tries `parse_valid` first. It returns the event only when the
strict parser (`parser.parse_strict`: `decoding.decode_json`, then `parser.parse_dict`) would
return the very same event, and None otherwise: a record it declines is parsed again by the
strict parser, which gives the verdict and its message. So the fast path never decides a
rejection and never accepts a record the strict parser rejects. What makes that hold:

- Declined before decoding: a record over the size limit, and one with a backslash (every
  string is then as written: no escape, no lone surrogate), as `decoding._decode_fast` does.
- msgspec refuses what the strict decoder refuses here (invalid UTF-8, a BOM, NaN, control
  characters in strings, trailing data, 1e400), and the structs below refuse any type, value
  or field the schema does not allow: unknown fields, null (a field left out takes the default
  None, which no field's type admits from the record), a float where an integer is due,
  booleans for numbers, strings too long or empty, numbers out of range, values outside the
  enums. Every type and limit comes from `limits.py` and the core's enums, as the strict
  parser's. Integers are read exactly at any length (as Python's `json`), and numbers for
  float fields are correctly rounded (as `float()`), so no guard on long digit runs is needed.
- A repeated key: msgspec keeps the last value silently. Outside strings a `:` only separates a
  key from its value, so the record's `:` count is its keys plus the colons inside its strings;
  msgspec's encoding of the decoded struct (which leaves out the fields at their default,
  `omit_defaults`, and escapes no `:`) counts the kept keys plus the colons of the kept
  strings. A repeated key makes the record's count the larger: declined (the argument of
  `decoding._decode_fast`).
- The rules across fields and the checks msgspec does not do are the strict parser's own
  functions or conditions (occurred_at's pattern and calendar, attribute keys, ces against its
  scale, a survey's score, the outcome against the type, the reserved character in journey_id),
  and any failure declines.

tests/unit/contract/test_fast_path.py requires, for the corpus, Hypothesis events drawn from
the published schema and mutations of them, that the fast path gives the strict parser's event
or declines. Why: the entry stage parses every input record, and with this path in front
`parse_event` reads 1.87 times as many records per second as the strict parser alone
(`python -m bench.bench_contract`; docs/streaming.md, thirty-sixth round).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pipeline.contract.decoding import DEFAULT_MAX_BYTES
from pipeline.contract.limits import (
    CES_MAX,
    CES_MIN,
    CES_SCALES,
    COMMENT_MAX,
    CSAT_MAX,
    CSAT_MIN,
    EVENT_ID_MAX,
    JOURNEY_ID_RESERVED,
    NPS_MAX,
    NPS_MIN,
    OUTCOMES,
    SCHEMA_VERSION,
    SECONDS_MAX,
    TEXT_MAX,
    TRANSFERS_MAX,
    VALENCE_MAX,
    VALENCE_MIN,
)
from pipeline.contract.parser import REQUIRED, _attributes, _Invalid, _occurred_at
from pipeline.core.event import CES_DIRECTIONS, CHANNELS, EVENT_TYPES, STAGES, Signals, Survey
from pipeline.core.event import TouchpointEvent as Event


def _one_of(values: tuple[Any, ...]) -> Any:
    return Literal.__getitem__(values)  # Literal["a", "b", ...] from the declared tuple


def _optional(kind: Any) -> tuple[Any, None]:
    """The type and default of a field that may be left out but, when given, holds a value:
    None when left out, and null refused (the strict parser refuses it too)."""
    return kind, None


def _text(longest: int, shortest: int = 1) -> Any:
    return Annotated[str, Meta(min_length=shortest, max_length=longest)]


def _int(low: int, high: int) -> Any:
    return Annotated[int, Meta(ge=low, le=high)]


def _float(low: float, high: float) -> Any:
    return Annotated[float, Meta(ge=low, le=high)]


_SIGNALS = msgspec.defstruct("Signals", [
    ("wait_seconds", *_optional(_float(0, SECONDS_MAX))),
    ("handle_seconds", *_optional(_float(0, SECONDS_MAX))),
    ("transfers", *_optional(_int(0, TRANSFERS_MAX))),
    ("resolved", *_optional(bool)),
    ("error", *_optional(bool)),
], forbid_unknown_fields=True, omit_defaults=True)

_SURVEY = msgspec.defstruct("Survey", [
    ("nps", *_optional(_int(NPS_MIN, NPS_MAX))),
    ("ces", *_optional(_int(CES_MIN, CES_MAX))),
    ("ces_scale", *_optional(_one_of(CES_SCALES))),
    ("ces_higher_means", *_optional(_one_of(CES_DIRECTIONS))),
    ("csat", *_optional(_int(CSAT_MIN, CSAT_MAX))),
    ("comment", *_optional(_text(COMMENT_MAX, shortest=0))),
], forbid_unknown_fields=True, omit_defaults=True)

_REQUIRED_TYPES: dict[str, Any] = {
    "event_id": _text(EVENT_ID_MAX),
    "schema_version": _one_of((SCHEMA_VERSION,)),
    "occurred_at": str,  # pattern and calendar: the strict parser's `_occurred_at`
    "producer": _text(TEXT_MAX),
    "customer_id": _text(TEXT_MAX),
    "type": _one_of(EVENT_TYPES),
    "touchpoint": _text(TEXT_MAX),
    "channel": _one_of(CHANNELS),
    "stage": _one_of(STAGES),
}
_EVENT = msgspec.defstruct("Event", [
    *((name, _REQUIRED_TYPES[name]) for name in REQUIRED),
    ("journey_id", *_optional(_text(TEXT_MAX))),
    ("valence", *_optional(_float(VALENCE_MIN, VALENCE_MAX))),
    ("signals", *_optional(_SIGNALS)),
    ("survey", *_optional(_SURVEY)),
    ("outcome", *_optional(_one_of(OUTCOMES))),
    # keys, values and their count: the strict parser's `_attributes` (with its memo of keys)
    ("attributes", *_optional(dict[str, str])),
], forbid_unknown_fields=True, omit_defaults=True)

_decode = msgspec.json.Decoder(_EVENT).decode
_encode = msgspec.json.Encoder().encode


def parse_valid(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Event | None:
    """The event `parser.parse_strict(data, max_bytes=max_bytes)` returns, when msgspec reads the
    record and every rule holds; None when the strict parser must decide (see the module).

    >>> parse_valid(b'{"event_id": "e1", "schema_version": 1, "producer": "web", '
    ...     b'"occurred_at": "2026-11-22T17:10:09Z", "customer_id": "c1", "type": "survey", '
    ...     b'"touchpoint": "checkout", "channel": "web", "stage": "purchase", '
    ...     b'"survey": {"nps": 9}}').survey.nps
    9
    >>> parse_valid(b'{"event_id": "e1", "event_id": "e2"}') is None
    True
    """
    if len(data) > max_bytes or b"\\" in data:
        return None
    try:
        parsed: Any = _decode(data)  # an `_EVENT` (a struct type made at import)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if data.count(b":") != _encode(parsed).count(b":"):
        return None  # a repeated key
    kind = parsed.type
    signals = parsed.signals
    if signals is not None:
        signals = Signals(signals.wait_seconds, signals.handle_seconds, signals.transfers,
                          signals.resolved, signals.error)
    survey = parsed.survey
    if survey is not None:
        scale = survey.ces_scale
        ces = survey.ces
        if scale is None and (ces is not None or survey.ces_higher_means is not None):
            return None  # ces_scale is required with ces and with ces_higher_means
        if ces is not None and ces > scale:
            return None
        survey = Survey(survey.nps, ces, scale, survey.csat, survey.comment,
                        survey.ces_higher_means)
    if kind == "survey" and (survey is None or not survey.has_score()):
        return None
    outcome = parsed.outcome
    if (kind == "outcome") != (outcome is not None):
        return None  # an outcome is required with type outcome, and refused with any other
    journey_id = parsed.journey_id
    if journey_id is not None and JOURNEY_ID_RESERVED in journey_id:
        return None
    attributes = parsed.attributes
    try:
        occurred_at = _occurred_at(parsed.occurred_at)
        attributes = {} if attributes is None else _attributes(attributes)
    except _Invalid:
        return None
    return Event(
        parsed.event_id, occurred_at, parsed.producer, parsed.customer_id, kind,
        parsed.touchpoint, parsed.channel, parsed.stage, journey_id, SCHEMA_VERSION,
        parsed.valence, signals, survey, outcome, attributes,
    )
