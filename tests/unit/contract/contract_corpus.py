"""One corpus of valid and invalid records, fed to both the parser and the JSON Schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "touchpoint-event.v1.json"
SCHEMA_EXAMPLES: list[dict[str, Any]] = json.loads(SCHEMA_PATH.read_text())["examples"]

BASE: dict[str, Any] = {
    "event_id": "ivr-000123",
    "schema_version": 1,
    "occurred_at": "2026-11-22T17:10:09.123Z",
    "producer": "hotline-ivr",
    "customer_id": "cust-42",
    "type": "interaction",
    "touchpoint": "hotline",
    "channel": "phone",
    "stage": "after_sales",
}
_DROP = object()


def event(**changes: Any) -> dict[str, Any]:
    """BASE with fields replaced; a value of DROP removes the field."""
    out = dict(BASE)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


DROP = _DROP


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def padded_to(size: int) -> bytes:
    """A valid event of exactly `size` bytes, padded with whitespace before the closing brace."""
    raw = encode(event(touchpoint="x"))
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


@dataclass(frozen=True)
class Bad:
    name: str
    data: bytes
    reason: str
    fragment: str


def bad(name: str, obj: Any, reason: str, fragment: str) -> Bad:
    return Bad(name, obj if isinstance(obj, bytes) else encode(obj), reason, fragment)


VALID: list[tuple[str, bytes]] = [
    *((f"schema example {i} ({e['type']})", encode(e)) for i, e in enumerate(SCHEMA_EXAMPLES)),
    ("minimal", encode(BASE)),
    ("compact separators", json.dumps(BASE, separators=(",", ":")).encode()),
    ("offset +05:30", encode(event(occurred_at="2026-11-22T17:10:09+05:30"))),
    ("offset -00:00", encode(event(occurred_at="2026-11-22T17:10:09-00:00"))),
    ("nine fraction digits", encode(event(occurred_at="2026-11-22T17:10:09.123456789Z"))),
    ("leap day", encode(event(occurred_at="2028-02-29T00:00:00Z"))),
    ("first instant 2000-01-01Z", encode(event(occurred_at="2000-01-01T00:00:00Z"))),
    ("2000-01-01 negative offset", encode(event(occurred_at="2000-01-01T00:00:00-05:00"))),
    ("2000-01-02 with +14:00", encode(event(occurred_at="2000-01-02T00:00:00+14:00"))),
    ("last instant 2099", encode(event(occurred_at="2099-12-31T23:59:59.999999999Z"))),
    ("2099-12-31 positive offset", encode(event(occurred_at="2099-12-31T23:00:00+05:00"))),
    ("2099-12-30 with -12:00", encode(event(occurred_at="2099-12-30T23:59:59-12:00"))),
    ("valence -1 integer", encode(event(valence=-1))),
    ("valence 1.0", encode(event(valence=1.0))),
    ("valence 0", encode(event(valence=0))),
    ("valence exponent", encode(event(valence=-5e-1))),
    ("journey_end marker", encode(event(type="journey_end"))),
    ("survey csat only", encode(event(type="survey", survey={"csat": 5}))),
    ("survey nps 0 and 10", encode(event(type="survey", survey={"nps": 0}))),
    ("survey nps 10", encode(event(type="survey", survey={"nps": 10}))),
    ("ces 5 on scale 5", encode(event(type="survey", survey={"ces": 5, "ces_scale": 5}))),
    ("ces 7 on scale 7", encode(event(type="survey", survey={"ces": 7, "ces_scale": 7}))),
    ("ces_scale alone", encode(event(survey={"ces_scale": 7}))),
    ("ces 2 on scale 5, more effort", encode(event(type="survey", survey={
        "ces": 2, "ces_scale": 5, "ces_higher_means": "more_effort"}))),
    ("ces 6 on scale 7, less effort", encode(event(type="survey", survey={
        "ces": 6, "ces_scale": 7, "ces_higher_means": "less_effort"}))),
    ("comment only on interaction", encode(event(survey={"comment": "nice"}))),
    ("comment 2000 chars", encode(event(survey={"comment": "é" * 2000}))),
    ("empty comment", encode(event(survey={"comment": ""}))),
    ("empty survey on interaction", encode(event(survey={}))),
    ("empty signals", encode(event(signals={}))),
    ("all signals", encode(event(signals={"wait_seconds": 0, "handle_seconds": 1.5,
                                          "transfers": 0, "resolved": True, "error": False}))),
    ("wait one year", encode(event(signals={"wait_seconds": 31536000}))),
    ("handle one year as float", encode(event(signals={"handle_seconds": 31536000.0}))),
    ("transfers Int32 max", encode(event(signals={"transfers": 2147483647}))),
    ("ids 200 chars", encode(event(producer="p" * 200, customer_id="c" * 200,
                                   journey_id="j" * 200, touchpoint="t" * 200))),
    ("empty attributes", encode(event(attributes={}))),
    ("32 attributes", encode(event(attributes={f"k{i}": "v" for i in range(32)}))),
    ("attribute key 64 chars", encode(event(attributes={"a" * 64: "v"}))),
    ("attribute value 200 chars", encode(event(attributes={"region": "x" * 200}))),
    ("empty attribute value", encode(event(attributes={"region": ""}))),
    ("event_id 200 chars", encode(event(event_id="e" * 200))),
    ("unicode ids", encode(event(customer_id="客户-42", touchpoint="收银台"))),
    ("escaped surrogate pair", json.dumps(event(customer_id="cust-\U0001f600")).encode()),
    ("every outcome value", encode(event(type="outcome", outcome="upgrade"))),
    ("whitespace around", b"  \n" + encode(BASE) + b"\n "),
    ("exactly max bytes", padded_to(65536)),
]

_ALLOWED = "schema v1 allows"

INVALID: list[Bad] = [
    # framing: size, encoding, JSON, shape
    bad("one byte too large", padded_to(65537), "too_large", "65537 bytes, above the limit"),
    bad("latin-1 bytes", encode(BASE).replace(b"cust-42", "cüst".encode("latin-1")),
        "not_utf8", "invalid"),
    bad("utf-16", json.dumps(BASE).encode("utf-16"), "not_utf8", "UTF-8"),
    bad("truncated JSON", encode(BASE)[:-1], "not_json", "not JSON"),
    bad("empty record", b"", "not_json", "empty"),
    bad("blank record", b"   ", "not_json", "empty"),
    bad("two objects", encode(BASE) + encode(BASE), "not_json", "Extra data"),
    bad("NaN valence", encode(BASE)[:-1] + b', "valence": NaN}', "not_json", "NaN"),
    bad("Infinity wait", encode(BASE)[:-1] + b', "signals": {"wait_seconds": Infinity}}',
        "not_json", "Infinity"),
    bad("duplicate key", encode(BASE)[:-1] + b', "customer_id": "other"}', "not_json",
        "duplicate key 'customer_id'"),
    bad("nested duplicate key", encode(event(type="survey"))[:-1]
        + b', "survey": {"nps": 3, "nps": 11}}', "not_json", "duplicate key 'nps'"),
    bad("lone surrogate", encode(BASE).replace(b"cust-42", b"cust\\ud800"), "not_json",
        "surrogate"),
    bad("UTF-8 BOM", b"\xef\xbb\xbf" + encode(BASE), "not_json", "BOM"),
    bad("array", [BASE], "not_object", "an array"),
    bad("string", "event", "not_object", "the string 'event'"),
    bad("null", None, "not_object", "null"),
    bad("number", 1, "not_object", "the number 1"),
    # required fields
    *(bad(f"missing {name}", event(**{name: DROP}), "invalid", f"{name}: required field is missing")
      for name in ("event_id", "schema_version", "occurred_at", "producer", "customer_id",
                   "type", "touchpoint", "channel", "stage")),
    bad("empty object", {}, "invalid", "event_id: required field is missing"),
    # unknown fields
    bad("unknown top-level", event(colour="red"), "invalid",
        f"unknown field 'colour' ({_ALLOWED}: attributes, channel"),
    bad("typo of a field", event(journeyid="j1"), "invalid", "unknown field 'journeyid'"),
    bad("unknown signal", event(signals={"waits": 3}), "invalid",
        "signals: unknown field 'waits' (allowed: error, handle_seconds"),
    bad("unknown survey field", event(survey={"nps": 3, "score": 3}), "invalid",
        "survey: unknown field 'score'"),
    # identifiers and enums
    bad("empty event_id", event(event_id=""), "invalid", "event_id: must not be empty"),
    bad("event_id 201 chars", event(event_id="e" * 201), "invalid",
        "event_id: 201 characters, above the maximum 200"),
    bad("numeric event_id", event(event_id=123), "invalid",
        "event_id: expected a string, got the number 123"),
    bad("empty customer_id", event(customer_id=""), "invalid", "customer_id: must not be empty"),
    bad("null customer_id", event(customer_id=None), "invalid",
        "customer_id: expected a string, got null"),
    bad("empty producer", event(producer=""), "invalid", "producer: must not be empty"),
    bad("empty touchpoint", event(touchpoint=""), "invalid", "touchpoint: must not be empty"),
    bad("empty journey_id", event(journey_id=""), "invalid", "journey_id: must not be empty"),
    bad("null journey_id", event(journey_id=None), "invalid", "journey_id: expected a string"),
    bad("schema_version 2", event(schema_version=2), "invalid", "schema_version: 2 is not 1"),
    bad("schema_version 1.0", event(schema_version=1.0), "invalid", "schema_version: 1.0 is not 1"),
    bad("schema_version true", event(schema_version=True), "invalid",
        "schema_version: true is not 1"),
    bad("schema_version string", event(schema_version="1"), "invalid",
        "schema_version: '1' is not 1"),
    bad("unknown type", event(type="click"), "invalid", "type: 'click' is not one of interaction"),
    bad("upper-case channel", event(channel="Web"), "invalid", "channel: 'Web' is not one of web"),
    bad("unknown stage", event(stage="post_purchase"), "invalid",
        "stage: 'post_purchase' is not one of pre_purchase"),
    bad("type as list", event(type=["survey"]), "invalid", "type: expected a string, got an array"),
    # occurred_at
    *(bad(f"occurred_at {text!r}", event(occurred_at=text), "invalid",
          f"occurred_at: {text!r} is not an RFC 3339 date-time with offset")
      for text in (
          "2026-13-01T00:00:00Z",  # month 13
          "2026-02-30T00:00:00Z",  # no such day
          "2027-02-29T00:00:00Z",  # not a leap year
          "2026-11-22T17:10:09",  # naive
          "2026-11-22 17:10:09Z",  # space separator
          "2026-11-22t17:10:09z",  # lower case
          "2026-11-22T24:00:00Z",  # hour 24
          "2026-12-31T23:59:60Z",  # leap second
          "2026-11-22T17:10:09.Z",  # empty fraction
          "2026-11-22T17:10:09.1234567890Z",  # 10 fraction digits
          "2026-11-22T17:10:09+0100",  # offset without colon
          "2026-11-22T17:10:09+24:00",  # offset out of range
          "2026-11-22",  # date only
          "2026-11-22T17:10:09Z\n",  # trailing newline
          "\uff11\uff19\uff19\uff19-01-01T00:00:00Z",  # full-width digits
          "1763831409",  # epoch seconds as text
      )),
    *(bad(f"occurred_at {text!r}", event(occurred_at=text), "invalid",
          f"occurred_at: {text!r} is outside the years 2000-2099 UTC")
      for text in (
          "0000-01-01T00:00:00Z",  # year 0
          "0001-01-01T00:00:00+14:00",  # crashed the time formatter
          "9999-12-31T23:59:59-01:00",  # crashed the time formatter
          "1960-06-01T00:00:00Z",  # ClickHouse DateTime cannot store it
          "2200-01-01T00:00:00Z",
          "1999-12-31T23:59:59Z",
          "2100-01-01T00:00:00Z",
          "2000-01-01T00:30:00+01:00",  # 1999 in UTC
          "2099-12-31T23:30:00-01:00",  # 2100 in UTC
      )),
    bad("occurred_at epoch number", event(occurred_at=1763831409), "invalid",
        "occurred_at: expected an RFC 3339 date-time string, got the number 1763831409"),
    # valence
    bad("valence 1.5", event(valence=1.5), "invalid", "valence: 1.5 is outside [-1, 1]"),
    bad("valence -2", event(valence=-2), "invalid", "valence: -2 is outside [-1, 1]"),
    bad("valence true", event(valence=True), "invalid",
        "valence: expected a number, got the boolean true (booleans are not numbers"),
    bad("valence string", event(valence="0.5"), "invalid",
        "valence: expected a number, got the string '0.5'"),
    bad("valence null", event(valence=None), "invalid", "valence: expected a number, got null"),
    bad("valence 1e400", encode(BASE)[:-1] + b', "valence": 1e400}', "invalid",
        "valence: inf is not a finite number"),
    # signals
    bad("signals array", event(signals=[1]), "invalid",
        "signals: expected an object, got an array"),
    bad("negative wait", event(signals={"wait_seconds": -1}), "invalid",
        "signals.wait_seconds: -1 is below the minimum 0"),
    bad("negative handle", event(signals={"handle_seconds": -0.5}), "invalid",
        "signals.handle_seconds: -0.5 is below the minimum 0"),
    bad("wait above a year", event(signals={"wait_seconds": 31536000.5}), "invalid",
        "signals.wait_seconds: 31536000.5 is above the maximum 31536000"),
    bad("handle 1e300", event(signals={"handle_seconds": 1e300}), "invalid",
        "signals.handle_seconds: 1e+300 is above the maximum 31536000"),
    bad("400-digit wait", encode(BASE)[:-1] + b', "signals": {"wait_seconds": 1' + b"0" * 400
        + b"}}", "invalid", "signals.wait_seconds: 1000000000"),
    bad("400-digit valence", encode(BASE)[:-1] + b', "valence": -1' + b"0" * 400 + b"}",
        "invalid", "valence: -100000000"),
    bad("transfers 2**31", event(signals={"transfers": 2**31}), "invalid",
        "signals.transfers: 2147483648 is above the maximum 2147483647"),
    bad("400-digit transfers", event(signals={"transfers": 10**400}), "invalid",
        "signals.transfers: 1000000000"),
    *(bad(f"{name} 201 chars", event(**{name: "x" * 201}), "invalid",
          f"{name}: 201 characters, above the maximum 200")
      for name in ("producer", "customer_id", "journey_id", "touchpoint")),
    bad("overflowing wait", encode(BASE)[:-1] + b', "signals": {"wait_seconds": 1e999}}',
        "invalid", "signals.wait_seconds: inf is not a finite number"),
    bad("transfers 2.0", event(signals={"transfers": 2.0}), "invalid",
        "signals.transfers: 2.0 is not an integer (write 2"),
    bad("transfers 2.5", event(signals={"transfers": 2.5}), "invalid",
        "signals.transfers: 2.5 is not an integer"),
    bad("transfers -1", event(signals={"transfers": -1}), "invalid",
        "signals.transfers: -1 is below the minimum 0"),
    bad("transfers true", event(signals={"transfers": True}), "invalid",
        "signals.transfers: expected an integer, got the boolean true"),
    bad("resolved 1", event(signals={"resolved": 1}), "invalid",
        "signals.resolved: expected a boolean (true or false), got the number 1"),
    bad("error 'true'", event(signals={"error": "true"}), "invalid",
        "signals.error: expected a boolean (true or false), got the string 'true'"),
    # survey
    bad("nps 11", event(type="survey", survey={"nps": 11}), "invalid",
        "survey.nps: 11 is above the maximum 10"),
    bad("nps -1", event(type="survey", survey={"nps": -1}), "invalid",
        "survey.nps: -1 is below the minimum 0"),
    bad("nps 9.0", event(type="survey", survey={"nps": 9.0}), "invalid",
        "survey.nps: 9.0 is not an integer (write 9"),
    bad("nps '9'", event(type="survey", survey={"nps": "9"}), "invalid",
        "survey.nps: expected an integer, got the string '9'"),
    bad("nps false", event(type="survey", survey={"nps": False}), "invalid",
        "survey.nps: expected an integer, got the boolean false"),
    bad("ces 8 on scale 7", event(type="survey", survey={"ces": 8, "ces_scale": 7}), "invalid",
        "survey.ces: 8 is above the maximum 7"),
    bad("ces 6 on scale 5", event(type="survey", survey={"ces": 6, "ces_scale": 5}), "invalid",
        "survey.ces: 6 is above the maximum 5 of ces_scale 5"),
    bad("ces 0", event(type="survey", survey={"ces": 0, "ces_scale": 7}), "invalid",
        "survey.ces: 0 is below the minimum 1"),
    bad("ces without scale", event(type="survey", survey={"ces": 4}), "invalid",
        "survey.ces_scale: required when survey.ces is given"),
    bad("ces_scale 10", event(type="survey", survey={"ces": 4, "ces_scale": 10}), "invalid",
        "survey.ces_scale: 10 is not one of 5, 7"),
    bad("ces_scale 7.0", event(type="survey", survey={"ces": 4, "ces_scale": 7.0}), "invalid",
        "survey.ces_scale: 7.0 is not an integer"),
    bad("ces direction without scale", event(type="survey", survey={
        "nps": 9, "ces_higher_means": "more_effort"}), "invalid",
        "survey.ces_scale: required when survey.ces_higher_means is given"),
    bad("ces direction 'harder'", event(type="survey", survey={
        "ces": 2, "ces_scale": 5, "ces_higher_means": "harder"}), "invalid",
        "survey.ces_higher_means: 'harder' is not one of less_effort, more_effort"),
    bad("ces direction true", event(type="survey", survey={
        "ces": 2, "ces_scale": 5, "ces_higher_means": True}), "invalid",
        "survey.ces_higher_means: expected a string, got the boolean true"),
    bad("csat 0", event(type="survey", survey={"csat": 0}), "invalid",
        "survey.csat: 0 is below the minimum 1"),
    bad("csat 6", event(type="survey", survey={"csat": 6}), "invalid",
        "survey.csat: 6 is above the maximum 5"),
    bad("comment 2001 chars", event(survey={"comment": "x" * 2001}), "invalid",
        "survey.comment: 2001 characters, above the maximum 2000"),
    bad("comment number", event(survey={"comment": 5}), "invalid",
        "survey.comment: expected a string, got the number 5"),
    bad("survey event without survey", event(type="survey"), "invalid",
        "survey: a 'survey' event needs a survey object with at least one of nps, ces, csat"),
    bad("survey event with comment only", event(type="survey", survey={"comment": "hi"}),
        "invalid", "(this one has none)"),
    bad("survey string", event(type="survey", survey="nps=9"), "invalid",
        "survey: expected an object, got the string 'nps=9'"),
    # outcome
    bad("outcome event without outcome", event(type="outcome"), "invalid",
        "outcome: required when type is 'outcome'"),
    bad("outcome on interaction", event(outcome="churn"), "invalid",
        "outcome: only allowed when type is 'outcome', this event's type is 'interaction'"),
    bad("unknown outcome", event(type="outcome", outcome="fraud"), "invalid",
        "outcome: 'fraud' is not one of churn"),
    # attributes
    bad("attributes array", event(attributes=["eu"]), "invalid",
        "attributes: expected an object of string values, got an array"),
    bad("attribute key upper-case", event(attributes={"Region": "eu"}), "invalid",
        "attributes.Region: key 'Region' does not match"),
    bad("attribute key with dash", event(attributes={"sales-region": "eu"}), "invalid",
        "key 'sales-region' does not match"),
    bad("attribute key starting with digit", event(attributes={"1st": "x"}), "invalid",
        "key '1st' does not match"),
    bad("attribute key empty", event(attributes={"": "x"}), "invalid", "key '' does not match"),
    bad("attribute key 65 chars", event(attributes={"a" * 65: "v"}), "invalid", "does not match"),
    bad("attribute key trailing newline", event(attributes={"region\n": "eu"}), "invalid",
        "does not match"),
    bad("attribute value number", event(attributes={"tier": 3}), "invalid",
        "attributes.tier: expected a string, got the number 3"),
    bad("attribute value null", event(attributes={"tier": None}), "invalid",
        "attributes.tier: expected a string, got null"),
    bad("attribute value 201 chars", event(attributes={"tier": "x" * 201}), "invalid",
        "attributes.tier: 201 characters, above the maximum 200"),
    bad("33 attributes", event(attributes={f"k{i}": "v" for i in range(33)}), "invalid",
        "attributes: 33 entries, above the maximum 32"),
]
