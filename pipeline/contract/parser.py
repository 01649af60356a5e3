"""Bytes -> validated `TouchpointEvent`, or `Rejected` with the first rule broken.

Hand-written over stdlib `json` because the worker parses every input record: jsonschema is
about a hundred times slower. Valid records take `fast.py` first (msgspec), which returns this
parser's event or declines: every verdict and message comes from here.
`schemas/touchpoint-event.v1.json` is the contract; the tests feed one corpus and
Hypothesis-generated events to both and require identical verdicts, so a change here without
the same change there (or the reverse) fails the build. The limits (lengths, ranges,
years, the attribute-key pattern) come from `limits.py`, which backfill's column checks read too.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Literal, NoReturn, cast

from pipeline.contract.decoding import DEFAULT_MAX_BYTES, decode_json
from pipeline.contract.limits import (
    ATTRIBUTE_KEY_MAX,
    ATTRIBUTE_KEY_PATTERN,
    ATTRIBUTE_VALUE_MAX,
    ATTRIBUTES_MAX,
    CES_MAX,
    CES_MIN,
    CES_SCALES,
    COMMENT_MAX,
    CSAT_MAX,
    CSAT_MIN,
    EVENT_ID_MAX,
    FIRST_YEAR,
    JOURNEY_ID_RESERVED,
    LAST_YEAR,
    NPS_MAX,
    NPS_MIN,
    OCCURRED_AT_ANY_YEAR_PATTERN,
    OCCURRED_AT_PATTERN,
    OUTCOMES,
    SCHEMA_VERSION,
    SECONDS_MAX,
    TEXT_MAX,
    TRANSFERS_MAX,
    VALENCE_MAX,
    VALENCE_MIN,
)
from pipeline.contract.rejected import INVALID, NOT_OBJECT, Rejected
from pipeline.core.event import (
    CES_DIRECTIONS,
    CHANNELS,
    EVENT_TYPES,
    STAGES,
    CesDirection,
    Signals,
    Survey,
    TouchpointEvent,
)

REQUIRED = (
    "event_id", "schema_version", "occurred_at", "producer", "customer_id",
    "type", "touchpoint", "channel", "stage",
)
OPTIONAL = ("journey_id", "valence", "signals", "survey", "outcome", "attributes")
SIGNAL_FIELDS = ("wait_seconds", "handle_seconds", "transfers", "resolved", "error")
SURVEY_FIELDS = ("nps", "ces", "ces_scale", "ces_higher_means", "csat", "comment")

_REQUIRED_SET = frozenset(REQUIRED)
_TOP_FIELDS = frozenset(REQUIRED + OPTIONAL)
_SIGNAL_SET = frozenset(SIGNAL_FIELDS)
_SURVEY_SET = frozenset(SURVEY_FIELDS)
_TYPES = frozenset(EVENT_TYPES)
_CHANNELS = frozenset(CHANNELS)
_CES_DIRECTIONS = frozenset(CES_DIRECTIONS)
_STAGES = frozenset(STAGES)
_OUTCOMES = frozenset(OUTCOMES)

# Used with fullmatch, so the pattern's `$` (before a final line feed too, in Python) cannot let
# one through.
_OCCURRED_AT = re.compile(OCCURRED_AT_PATTERN)
# Only to explain a failure: tells "out of range" from "not a date-time" in the message.
_OCCURRED_AT_ANY_YEAR = re.compile(OCCURRED_AT_ANY_YEAR_PATTERN)
_EDGE_DAYS = (f"{FIRST_YEAR}-01-01", f"{LAST_YEAR}-12-31")
_YEARS = f"{FIRST_YEAR}-{LAST_YEAR}"
_ATTRIBUTE_KEY = re.compile(ATTRIBUTE_KEY_PATTERN)
_CES_SCALES = frozenset(CES_SCALES)
_CES_SCALES_TEXT = ", ".join(map(str, CES_SCALES))
_VALENCE_RANGE = f"outside [{VALENCE_MIN:g}, {VALENCE_MAX:g}]"


class RepeatedKeys(dict[str, str]):
    """An attribute map read from a source that can repeat a key (a Parquet map) whose keys did
    repeat: the dict keeps one value per key, `repeated` names the first key seen twice.

    In JSON the same record is not I-JSON (`not_json`); `parse_dict` rejects this one as
    `invalid` naming the key, instead of silently keeping one of the values.
    """

    def __init__(self, pairs: list[tuple[str, str]], repeated: str) -> None:
        super().__init__(pairs)
        self.repeated = repeated


class _Invalid(Exception):
    """Internal: a rule broken inside the object; parse_dict adds the event_id."""


def _fail(path: str, message: str) -> NoReturn:
    raise _Invalid(f"{path}: {message}")


def _show(value: object) -> str:
    """A JSON value as the producer wrote it, cut short so one bad field can't flood a log."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, allow_nan=False)
        except ValueError:
            text = repr(value)  # inf from an overflowing literal such as 1e400
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {_show(value)}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, int | float):
        return f"the number {_show(value)}"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(path: str, expected: str, value: object) -> NoReturn:
    if isinstance(value, bool):
        _fail(path, f"expected {expected}, got the boolean {_show(value)} "
                    "(booleans are not numbers in schema v1)")
    if expected == "an integer" and isinstance(value, float):
        # the hint only for readable values: int(1e300) has 301 digits
        _fail(path, f"{_show(value)} is not an integer (write {int(value)}; integer fields "
                    "reject a fraction or exponent, even .0)"
                    if value.is_integer() and abs(value) < 1e15 else
                    f"{_show(value)} is not an integer")
    _fail(path, f"expected {expected}, got {_kind(value)}")


def _unknown(path: str, keys: Any, allowed: tuple[str, ...]) -> NoReturn:
    unknown = sorted(str(k) for k in keys if k not in allowed)
    # each name cut short and at most five of them: a record of 60 KiB keys stays one log line
    names = ", ".join(_show(k) for k in unknown[:5])
    if len(unknown) > 5:
        names += f" and {len(unknown) - 5} more"
    what = "field" if len(unknown) == 1 else "fields"
    where = "" if not path else f"{path}: "
    scope = "schema v1 allows" if not path else "allowed"
    hint = ""
    if not path and set(unknown) >= {"schema", "payload"}:
        # Kafka Connect's JsonConverter wraps each record so by default (schemas.enable=true)
        hint = ("; this is a Kafka Connect JsonConverter envelope: set "
                "value.converter.schemas.enable=false so that the record is the event itself")
    raise _Invalid(f"{where}unknown {what} {names} ({scope}: {', '.join(sorted(allowed))})"
                   f"{hint}")


def _text(path: str, value: object, max_length: int = TEXT_MAX) -> str:
    if type(value) is not str:
        _wrong_type(path, "a string", value)
    if not value:
        _fail(path, "must not be empty")
    if len(value) > max_length:
        _fail(path, f"{len(value)} characters, above the maximum {max_length}")
    return value


def _choice(path: str, value: object, allowed: frozenset[str], order: tuple[str, ...]) -> Any:
    if type(value) is str and value in allowed:
        return value
    if type(value) is not str:
        _wrong_type(path, "a string", value)
    _fail(path, f"{_show(value)} is not one of {', '.join(order)}")


def _number(path: str, value: object, low: float, high: float, limits: str) -> float:
    """A JSON number in [low, high]; `limits` is how the message states the range."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            _fail(path, f"{_show(value)} is not a finite number (the literal overflows a double)")
    elif kind is not int:
        _wrong_type(path, "a number", value)
    # compared before float(): Python reads an integer literal of any length exactly, and
    # float(10**400) raises OverflowError
    if not low <= value <= high:  # type: ignore[operator]
        _fail(path, f"{_show(value)} is {limits}")
    return float(value)  # type: ignore[arg-type]


def _integer(path: str, value: object, low: int | None, high: int | None) -> int:
    if type(value) is not int:
        _wrong_type(path, "an integer", value)
    if low is not None and value < low:
        _fail(path, f"{_show(value)} is below the minimum {low}")
    if high is not None and value > high:
        _fail(path, f"{_show(value)} is above the maximum {high}")
    return value


def _boolean(path: str, value: object) -> bool:
    if type(value) is not bool:
        _fail(path, f"expected a boolean (true or false), got {_kind(value)}")
    return value


def _occurred_at(value: object) -> datetime:
    if type(value) is not str:
        _wrong_type("occurred_at", "an RFC 3339 date-time string", value)
    if _OCCURRED_AT.fullmatch(value) is not None:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass  # a day the calendar does not have, or year 0
    if _OCCURRED_AT_ANY_YEAR.fullmatch(value) is not None and (
            not FIRST_YEAR <= int(value[:4]) <= LAST_YEAR or value[:10] in _EDGE_DAYS):
        _fail("occurred_at", f"{_show(value)} is outside the years {_YEARS} UTC that the "
                             f"tables store (on {_EDGE_DAYS[0]} and {_EDGE_DAYS[1]} write the "
                             "time in UTC)")
    _fail("occurred_at", f"{_show(value)} is not an RFC 3339 date-time with offset "
                         "(e.g. 2026-11-22T17:10:09.123Z or 2026-11-22T18:10:09+01:00)")


def _seconds(name: str, item: object) -> float:
    if (type(item) is int or type(item) is float) and item < 0:
        _fail(f"signals.{name}", f"{_show(item)} is below the minimum 0")
    return _number(f"signals.{name}", item, 0, SECONDS_MAX,
                   f"above the maximum {SECONDS_MAX} (one year)")


def _signals(value: object) -> Signals:
    if type(value) is not dict:
        _wrong_type("signals", "an object", value)
    wait = handle = resolved = error = None
    transfers = None
    for key, item in value.items():
        kind = type(item)
        if key == "wait_seconds":
            wait = item if kind is float and 0 <= item <= SECONDS_MAX else _seconds(key, item)
        elif key == "handle_seconds":
            handle = item if kind is float and 0 <= item <= SECONDS_MAX else _seconds(key, item)
        elif key == "transfers":
            transfers = item if kind is int and 0 <= item <= TRANSFERS_MAX else _integer(
                "signals.transfers", item, 0, TRANSFERS_MAX)
        elif key == "resolved":
            resolved = item if kind is bool else _boolean("signals.resolved", item)
        elif key == "error":
            error = item if kind is bool else _boolean("signals.error", item)
        else:
            _unknown("signals", value.keys(), SIGNAL_FIELDS)
    return Signals(wait, handle, transfers, resolved, error)


def _survey(value: object) -> Survey:
    if type(value) is not dict:
        _wrong_type("survey", "an object", value)
    if not value.keys() <= _SURVEY_SET:
        _unknown("survey", value.keys(), SURVEY_FIELDS)
    nps = value.get("nps")
    ces = value.get("ces")
    scale = value.get("ces_scale")
    csat = value.get("csat")
    comment = value.get("comment")
    direction = value.get("ces_higher_means")
    if nps is not None or "nps" in value:
        nps = _integer("survey.nps", nps, NPS_MIN, NPS_MAX)
    if scale is not None or "ces_scale" in value:
        if type(scale) is not int:
            _wrong_type("survey.ces_scale", "an integer", scale)
        if scale not in _CES_SCALES:
            _fail("survey.ces_scale", f"{scale} is not one of {_CES_SCALES_TEXT}")
    if ces is not None or "ces" in value:
        ces = _integer("survey.ces", ces, CES_MIN, CES_MAX)
        if scale is None:
            _fail("survey.ces_scale", "required when survey.ces is given (5 or 7: the answer "
                                      "scale, so a 4 on 1-5 is not read as a 4 on 1-7)")
        if ces > scale:
            _fail("survey.ces", f"{ces} is above the maximum {scale} of ces_scale {scale}")
    if direction is not None or "ces_higher_means" in value:
        direction = _choice("survey.ces_higher_means", direction, _CES_DIRECTIONS, CES_DIRECTIONS)
        if scale is None:
            _fail("survey.ces_scale", "required when survey.ces_higher_means is given (the "
                                      "scale whose direction it declares)")
    if csat is not None or "csat" in value:
        csat = _integer("survey.csat", csat, CSAT_MIN, CSAT_MAX)
    if comment is not None or "comment" in value:
        if type(comment) is not str:
            _wrong_type("survey.comment", "a string", comment)
        if len(comment) > COMMENT_MAX:
            _fail("survey.comment", f"{len(comment)} characters, above the maximum {COMMENT_MAX}")
    return Survey(nps, ces, cast(Literal[5, 7] | None, scale), csat, comment,
                  cast(CesDirection | None, direction))


# Attribute keys repeat across events (region, tier...): remember the valid ones, bounded so a
# producer sending random keys cannot grow it without limit.
_GOOD_ATTRIBUTE_KEYS: set[str] = set()
_GOOD_ATTRIBUTE_KEYS_MAX = 4096


def _attribute_key(key: str) -> None:
    if _ATTRIBUTE_KEY.fullmatch(key) is None:
        # the path shows at most as many characters as a valid key has: the message shows the
        # rest, cut
        shown = key if len(key) <= ATTRIBUTE_KEY_MAX else key[:ATTRIBUTE_KEY_MAX - 3] + "..."
        _fail(f"attributes.{shown}", f"key {_show(key)} does not match "
                                     f"^{ATTRIBUTE_KEY_PATTERN}$ (lower-case snake_case, at "
                                     f"most {ATTRIBUTE_KEY_MAX} characters)")
    if len(_GOOD_ATTRIBUTE_KEYS) < _GOOD_ATTRIBUTE_KEYS_MAX:
        _GOOD_ATTRIBUTE_KEYS.add(key)


def _attributes(value: object) -> dict[str, str]:
    if type(value) is not dict:
        if isinstance(value, RepeatedKeys):
            _fail(f"attributes.{value.repeated}",
                  f"key {_show(value.repeated)} appears more than once in the map; keys must be "
                  "unique (the same event as JSON is rejected as a duplicate key)")
        _wrong_type("attributes", "an object of string values", value)
    if len(value) > ATTRIBUTES_MAX:
        _fail("attributes", f"{len(value)} entries, above the maximum {ATTRIBUTES_MAX}")
    good_keys = _GOOD_ATTRIBUTE_KEYS
    for key, item in value.items():
        if key not in good_keys:
            _attribute_key(key)
        if type(item) is not str:
            _wrong_type(f"attributes.{key}", "a string", item)
        if len(item) > ATTRIBUTE_VALUE_MAX:
            _fail(f"attributes.{key}",
                  f"{len(item)} characters, above the maximum {ATTRIBUTE_VALUE_MAX}")
    return value


def _build(obj: dict[str, Any]) -> TouchpointEvent:
    keys = obj.keys()
    if not keys <= _TOP_FIELDS:
        _unknown("", keys, REQUIRED + OPTIONAL)
    if not keys >= _REQUIRED_SET:
        missing = next(name for name in REQUIRED if name not in obj)
        _fail(missing, "required field is missing")

    # Fast paths inline (this runs for every input record); the helpers explain failures.
    event_id = obj["event_id"]
    if type(event_id) is not str or not 0 < len(event_id) <= EVENT_ID_MAX:
        _text("event_id", event_id, EVENT_ID_MAX)
    version = obj["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        _fail("schema_version", f"{_show(version)} is not {SCHEMA_VERSION} (this parser reads "
                                f"schema v{SCHEMA_VERSION} only)")
    occurred_at = _occurred_at(obj["occurred_at"])
    producer = obj["producer"]
    if type(producer) is not str or not 0 < len(producer) <= TEXT_MAX:
        _text("producer", producer)
    customer_id = obj["customer_id"]
    if type(customer_id) is not str or not 0 < len(customer_id) <= TEXT_MAX:
        _text("customer_id", customer_id)
    kind = obj["type"]
    if type(kind) is not str or kind not in _TYPES:
        _choice("type", kind, _TYPES, EVENT_TYPES)
    touchpoint = obj["touchpoint"]
    if type(touchpoint) is not str or not 0 < len(touchpoint) <= TEXT_MAX:
        _text("touchpoint", touchpoint)
    channel = obj["channel"]
    if type(channel) is not str or channel not in _CHANNELS:
        _choice("channel", channel, _CHANNELS, CHANNELS)
    stage = obj["stage"]
    if type(stage) is not str or stage not in _STAGES:
        _choice("stage", stage, _STAGES, STAGES)

    if len(keys) == 9:  # the common case: nothing optional to look at
        journey_id = valence = signals = survey = outcome = None
        attributes: dict[str, str] = {}
    else:
        journey_id = obj.get("journey_id")
        if journey_id is not None or "journey_id" in obj:
            journey_id = _text("journey_id", journey_id)
            if JOURNEY_ID_RESERVED in journey_id:
                _fail("journey_id", f"must not contain {JOURNEY_ID_RESERVED!r} (reserved for "
                      "the journey ids the pipeline derives, such as "
                      f"<customer_id>{JOURNEY_ID_RESERVED}<time>)")
        valence = obj.get("valence")
        if valence is not None or "valence" in obj:
            valence = _number("valence", valence, VALENCE_MIN, VALENCE_MAX, _VALENCE_RANGE)
        signals = obj.get("signals")
        if signals is not None or "signals" in obj:
            signals = _signals(signals)
        survey = obj.get("survey")
        if survey is not None or "survey" in obj:
            survey = _survey(survey)
        outcome = obj.get("outcome")
        if outcome is not None or "outcome" in obj:
            outcome = _choice("outcome", outcome, _OUTCOMES, OUTCOMES)
        attributes = obj.get("attributes", {})
        if "attributes" in obj:
            attributes = _attributes(attributes)

    if kind == "survey" and (survey is None or not survey.has_score()):
        _fail("survey", "a 'survey' event needs a survey object with at least one of nps, ces, "
                        "csat" + ("" if survey is None else " (this one has none)"))
    if kind == "outcome":
        if outcome is None:
            _fail("outcome", f"required when type is 'outcome' (one of {', '.join(OUTCOMES)})")
    elif outcome is not None:
        _fail("outcome", f"only allowed when type is 'outcome', this event's type is {kind!r}")

    return TouchpointEvent(
        event_id, occurred_at, producer, customer_id, kind, touchpoint, channel, stage,
        journey_id, SCHEMA_VERSION, valence, signals, survey, outcome, attributes,
    )


def parse_dict(obj: object) -> TouchpointEvent:
    """Validate an already-decoded JSON value against schema v1.

    >>> parse_dict({"event_id": "e1"}).event_id
    Traceback (most recent call last):
    ...
    pipeline.contract.rejected.Rejected: invalid: schema_version: required field is missing
    """
    if type(obj) is not dict:
        raise Rejected(NOT_OBJECT, f"the record is {_kind(obj)}, not a JSON object "
                                   "(send exactly one event object per record)")
    try:
        return _build(obj)
    except _Invalid as exc:
        raw_id = obj.get("event_id")
        event_id = raw_id if type(raw_id) is str and len(raw_id) <= EVENT_ID_MAX else ""
        raise Rejected(INVALID, str(exc), event_id) from None


def parse_strict(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TouchpointEvent:
    """Bytes of one record -> the validated event, or `Rejected` naming the first broken rule:
    the strict way, which every verdict comes from (`pipeline.contract.parse_event` tries the
    fast path, `fast.py`, first).

    >>> parse_strict(b'[1]').reason
    Traceback (most recent call last):
    ...
    pipeline.contract.rejected.Rejected: not_object: the record is an array, not a JSON object \
(send exactly one event object per record)
    """
    return parse_dict(decode_json(data, max_bytes))
