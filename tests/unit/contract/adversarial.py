"""Adversarial inputs with their expected outcome, line by line.

A `Case` is one input file: a sequence of `Line`s, each with the outcome the pipeline must give
it: `accepted` (a result), `duplicate` (absorbed as a repeat), or a dead-letter reason with words
its message must contain. Single-line cases test the contract; multi-line cases test what only a
sequence shows (duplicates, lateness). The lead can add `future` and `conflict` cases the same
way (a `Case` with `now=` for `future`, see `Case.now`), without touching the test.

Everything here is built from code so each input says what it is; `CASES` has over 200 of them
(`test_adversarial.py` checks the count).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from contract_corpus import BASE as CORPUS_BASE

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
# outcomes that `peakend validate` (the contract alone) reports; the rest are later stages
CONTRACT_REASONS = ("not_utf8", "not_json", "not_object", "invalid", "too_large")


@dataclass(frozen=True)
class Line:
    data: bytes
    outcome: str = ACCEPTED
    words: tuple[str, ...] = ()  # must all appear in the dead letter's message

    @property
    def contract_outcome(self) -> str:
        """What `peakend validate` says: later-stage outcomes are contract-valid events."""
        return self.outcome if self.outcome in CONTRACT_REASONS else ACCEPTED


@dataclass(frozen=True)
class Case:
    name: str
    lines: tuple[Line, ...]
    # `peakend replay --now` (RFC 3339): when the events reached us. Fixed so that no case
    # depends on the wall clock (replay's default); a `future` case sets its own.
    now: str | None = "2100-01-01T00:00:00Z"
    extra_args: tuple[str, ...] = field(default=())


# the contract corpus's valid event, under this corpus's own ids
BASE: dict[str, Any] = {**CORPUS_BASE, "event_id": "adv-1"}
_COUNTER = [0]


def _next_id() -> str:
    _COUNTER[0] += 1
    return f"adv-{_COUNTER[0]}"


def ev(**changes: Any) -> dict[str, Any]:
    """BASE with a fresh event_id and `changes`; a value of `DROP` removes the field."""
    out = {**BASE, "event_id": _next_id()}
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


DROP = object()


def enc(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def with_raw(obj: dict[str, Any], key: str, raw: str) -> bytes:
    """The event with `key` set to a raw JSON text (numbers and literals json.dumps can't
    write: 1e400, NaN, -0, 400-digit integers...)."""
    text = enc({**obj, key: "@@RAW@@"}).decode()
    return text.replace('"@@RAW@@"', raw).encode("utf-8")


def with_raw_signal(name: str, raw: str) -> bytes:
    return enc(ev(signals={name: "@@RAW@@"})).replace(b'"@@RAW@@"', raw.encode())


def _rows(rows: list[Any]) -> list[Any]:
    """A table of cases, typed loosely: its rows mix empty and non-empty word tuples."""
    return rows


def one(name: str, data: bytes, outcome: str = ACCEPTED, *words: str) -> Case:
    return Case(name, (Line(data, outcome, tuple(words)),))


CASES: list[Case] = []
add = CASES.append

# ---- framing: bytes, encodings, JSON syntax ----------------------------------------------
# Each record of this group follows a valid 4 KiB first line: a *file* that starts with a BOM or
# looks like UTF-16 is recognised as a whole by `peakend validate`/`replay` (one message for the
# file); here the record alone is under test, as a Kafka record would be.
_FIRST = Line(enc(ev(survey={"comment": "first line " * 180},
                    attributes={f"k{i}": "v" * 200 for i in range(12)})))
_valid = enc(ev())
for name, data, reason, words in _rows([
    ("UTF-8 BOM", b"\xef\xbb\xbf" + _valid, "not_json", ("byte order mark",)),
    ("UTF-16-LE with BOM", _valid.decode().encode("utf-16"), "not_utf8", ("UTF-8",)),
    ("UTF-16-BE no BOM", _valid.decode().encode("utf-16-be"), "not_json", ("not JSON",)),
    ("UTF-32", _valid.decode().encode("utf-32"), "not_utf8", ("UTF-8",)),
    ("latin-1 byte in a string", _valid.replace(b"cust-42", b"c\xfcst"), "not_utf8",
     ("byte offset",)),
    ("overlong UTF-8 slash", _valid.replace(b"cust-42", b"c\xc0\xafst"), "not_utf8",
     ("invalid start byte",)),
    ("UTF-8 encoded surrogate", _valid.replace(b"cust-42", b"c\xed\xa0\x80st"), "not_utf8",
     ("UTF-8",)),
    ("truncated UTF-8 sequence", _valid.replace(b"cust-42", b"c\xe2\x82"), "not_utf8",
     ("UTF-8",)),
    ("5-byte UTF-8 lead", _valid.replace(b"cust-42", b"c\xf8\x88\x80\x80\x80"), "not_utf8",
     ("UTF-8",)),
    ("raw NUL between tokens", _valid.replace(b",", b",\x00", 1), "not_json", ("not JSON",)),
    ("raw control char in a string", _valid.replace(b"cust-42", b"cu\x01st"), "not_json",
     ("Invalid control character",)),
    ("raw tab in a string", _valid.replace(b"cust-42", b"cu\tst"), "not_json",
     ("Invalid control character",)),
    ("trailing comma", _valid[:-1] + b",}", "not_json", ("not JSON",)),
    ("single quotes", _valid.replace(b'"', b"'"), "not_json", ("not JSON",)),
    ("line comment", b"// event\n"[:-1] + _valid, "not_json", ("not JSON",)),
    ("block comment", b"/*x*/" + _valid, "not_json", ("not JSON",)),
    ("unquoted key", _valid.replace(b'"stage"', b"stage"), "not_json", ("not JSON",)),
    ("truncated", _valid[:-5], "not_json", ("not JSON",)),
    ("only an opening brace", b"{", "not_json", ("not JSON",)),
    ("two objects", _valid + _valid, "not_json",
     ("Extra data", "send exactly one event object per record")),
    ("object then garbage", _valid + b"x", "not_json", ("Extra data",)),
    ("JSON Lines in one record", _valid + b" " + _valid, "not_json", ("Extra data",)),
    # a serializer that adds Confluent Schema Registry's header: a zero byte, a 4-byte id
    ("registry header, small schema id", b"\x00\x00\x00\x00\x07" + _valid, "not_json",
     ("Schema Registry", "schema id 7", "without the 5-byte header")),
    ("registry header, schema id not UTF-8", b"\x00\x00\x00\x00\xc8" + _valid, "not_utf8",
     ("Schema Registry", "schema id 200")),
    ("a NUL byte alone", b"\x00", "not_json", ("not JSON",)),
    # Kafka Connect's JsonConverter with schemas.enable=true (its default) wraps every record
    ("Kafka Connect envelope", b'{"schema": {"type": "struct", "fields": [], "optional": false},'
     b' "payload": ' + _valid + b"}", "invalid",
     ("unknown fields 'payload', 'schema'", "value.converter.schemas.enable=false")),
    ("hex number", with_raw(ev(), "valence", "0x1"), "not_json", ("not JSON",)),
    ("leading zero", with_raw(ev(), "valence", "00"), "not_json", ("not JSON",)),
    ("plus sign", with_raw(ev(), "valence", "+1"), "not_json", ("not JSON",)),
    ("bare fraction", with_raw(ev(), "valence", ".5"), "not_json", ("not JSON",)),
    ("trailing dot", with_raw(ev(), "valence", "1."), "not_json", ("not JSON",)),
    ("NaN", with_raw(ev(), "valence", "NaN"), "not_json", ("NaN",)),
    ("-Infinity", with_raw(ev(), "valence", "-Infinity"), "not_json", ("-Infinity",)),
    ("Infinity in signals", with_raw_signal("wait_seconds", "Infinity"), "not_json",
     ("Infinity",)),
    ("nan lower case", with_raw(ev(), "valence", "nan"), "not_json", ("not JSON",)),
    ("undefined", with_raw(ev(), "valence", "undefined"), "not_json", ("not JSON",)),
    ("True capitalised", with_raw_signal("resolved", "True"), "not_json", ("not JSON",)),
    ("4301-digit integer", with_raw(ev(), "valence", "1" * 4301), "not_json",
     ("more than 4300 digits",)),
    ("lone high surrogate", enc(ev()).replace(b"cust-42", b"c\\ud800"), "not_json",
     ("surrogate",)),
    ("lone low surrogate", enc(ev()).replace(b"cust-42", b"c\\udc00"), "not_json",
     ("surrogate",)),
    ("reversed surrogate pair", enc(ev()).replace(b"cust-42", b"\\ude00\\ud83d"), "not_json",
     ("surrogate",)),
    ("lone surrogate in a key", enc(ev(attributes={"a": "b"})).replace(b'"a"', b'"\\ud800"'),
     "not_json", ("surrogate",)),
    ("bad escape", enc(ev()).replace(b"cust-42", b"c\\x41"), "not_json", ("not JSON",)),
    ("short unicode escape", enc(ev()).replace(b"cust-42", b"c\\u41"), "not_json",
     ("not JSON",)),
    ("duplicate top-level key", enc(ev())[:-1] + b',"stage":"use"}', "not_json",
     ("duplicate key 'stage'",)),
    ("duplicate key differing only by escape", enc(ev())[:-1] + b',"st\\u0061ge":"use"}',
     "not_json", ("duplicate key 'stage'",)),
    ("duplicate attribute key", enc(ev())[:-1] + b',"attributes":{"a":"1","a":"2"}}',
     "not_json", ("duplicate key 'a'",)),
    ("duplicate signal key", enc(ev())[:-1] + b',"signals":{"transfers":1,"transfers":9}}',
     "not_json", ("duplicate key 'transfers'",)),
    ("a lone NUL byte", b"\x00", "not_json", ("not JSON",)),
]):
    add(Case(name, (_FIRST, Line(data, reason, words))))

for name, value, words in _rows([
    ("array", [BASE], ("an array",)), ("empty array", [], ("an array",)),
    ("string", "event", ("the string",)), ("number", 42, ("the number 42",)),
    ("true", True, ("the boolean true",)), ("null", None, ("null",)),
    ("array of many events", [BASE] * 3, ("an array",)),
]):
    add(one(f"not an object: {name}", enc(value), "not_object", *words))

# ---- size ---------------------------------------------------------------------------------
_pad_base = enc(ev(touchpoint="x"))
add(one("exactly 65536 bytes", _pad_base[:-1] + b" " * (65536 - len(_pad_base)) + b"}"))
add(one("65537 bytes", _pad_base[:-1] + b" " * (65537 - len(_pad_base)) + b"}", "too_large",
        "65537 bytes", "PEAKEND_MAX_EVENT_BYTES"))
add(one("1 MiB of whitespace", b" " * (1 << 20) + _valid, "too_large", "above the limit"))
add(one("huge comment", enc(ev(survey={"comment": "x" * 70000})), "too_large",
        "above the limit"))

# ---- nesting ------------------------------------------------------------------------------
for depth in (33, 100, 990, 5000, 10000):  # 10000 objects: 60,001 bytes, under the size limit
    add(one(f"object nested {depth}", ('{"a":' * depth + "1" + "}" * depth).encode(), "invalid",
            "nested more than 32 levels"))
for depth in (33, 100, 990, 5000, 30000):
    add(one(f"array nested {depth}", ("[" * depth + "]" * depth).encode(), "not_object",
            "nested more than 32 levels"))
for depth in (33, 990):
    nested = "[" * depth + "]" * depth
    add(one(f"attributes nested {depth}",
            with_raw(ev(), "attributes", nested), "invalid", "nested more than 32 levels"))
add(one("deep after garbage", b"x" + b"[" * 100, "not_json", "nested more than 32 levels"))
add(one("nested 31 in an unknown field", with_raw(ev(), "extra", "[" * 31 + "]" * 31), "invalid",
        "unknown field 'extra'"))
add(one("brackets inside a comment are text", enc(ev(survey={"comment": "[{" * 500}))))
add(one("escaped quotes and brackets in a string",
        enc(ev(survey={"comment": '\\"[[[[' * 100 + '"' * 10}))))
add(one("nested objects as attribute value", enc(ev(attributes={"a": {"b": "c"}})), "invalid",
        "attributes.a: expected a string, got an object"))

# ---- numbers ------------------------------------------------------------------------------
for name, raw, outcome, words in _rows([
    ("valence -0.0", "-0.0", ACCEPTED, ()),
    ("valence -0", "-0", ACCEPTED, ()),
    ("valence 1e-400 underflows to 0", "1e-400", ACCEPTED, ()),
    ("valence 1.0000000000000001 reads as 1.0", "1.0000000000000001", ACCEPTED, ()),
    ("valence 1E0", "1E0", ACCEPTED, ()),
    ("valence -1", "-1", ACCEPTED, ()),
    ("valence 1.00001", "1.00001", "invalid", ("outside [-1, 1]",)),
    ("valence 1e308", "1e308", "invalid", ("outside [-1, 1]",)),
    ("valence 1e309", "1e309", "invalid", ("not a finite number",)),
    ("valence -1e999999999", "-1e999999999", "invalid", ("not a finite number",)),
    ("valence 400 digits", "1" + "0" * 400, "invalid", ("outside [-1, 1]",)),
    ("valence -400 digits", "-" + "9" * 400, "invalid", ("outside [-1, 1]",)),
    ("valence 4300 digits", "1" * 4300, "invalid", ("outside [-1, 1]",)),
    ("valence string", '"0.5"', "invalid", ("expected a number, got the string",)),
    ("valence true", "true", "invalid", ("booleans are not numbers",)),
    ("valence null", "null", "invalid", ("got null",)),
    ("valence array", "[0.5]", "invalid", ("got an array",)),
    ("valence object", '{"v":0.5}', "invalid", ("got an object",)),
    ("valence 1e-300 tiny", "1e-300", ACCEPTED, ()),
]):
    add(one(name, with_raw(ev(), "valence", raw), outcome, *words))

for field_name in ("wait_seconds", "handle_seconds"):
    for name, raw, outcome, words in _rows([
        ("0", "0", ACCEPTED, ()),
        ("-0.0", "-0.0", ACCEPTED, ()),
        ("one year", "31536000", ACCEPTED, ()),
        ("one year float", "31536000.0", ACCEPTED, ()),
        ("1e-320 subnormal", "1e-320", ACCEPTED, ()),
        ("just above a year", "31536000.000001", "invalid", ("above the maximum 31536000",)),
        ("1e308", "1e308", "invalid", ("above the maximum 31536000",)),
        ("400 digits", "1" + "0" * 400, "invalid", ("above the maximum 31536000",)),
        ("1e400", "1e400", "invalid", ("not a finite number",)),
        ("-1", "-1", "invalid", ("below the minimum 0",)),
        ("-400 digits", "-" + "1" * 400, "invalid", ("below the minimum 0",)),
        ("string", '"60"', "invalid", ("expected a number, got the string '60'",)),
        ("false", "false", "invalid", ("booleans are not numbers",)),
    ]):
        add(one(f"{field_name} {name}", with_raw_signal(field_name, raw), outcome, *words))

for name, raw, outcome, words in _rows([
    ("0", "0", ACCEPTED, ()),
    ("-0", "-0", ACCEPTED, ()),
    ("Int32 max", "2147483647", ACCEPTED, ()),
    ("2**31", "2147483648", "invalid", ("above the maximum 2147483647",)),
    ("2**63", "9223372036854775808", "invalid", ("above the maximum 2147483647",)),
    ("400 digits", "9" * 400, "invalid", ("above the maximum 2147483647",)),
    ("-1", "-1", "invalid", ("below the minimum 0",)),
    ("1.0", "1.0", "invalid", ("is not an integer (write 1",)),
    ("1e0", "1e0", "invalid", ("is not an integer",)),
    ("1e300", "1e300", "invalid", ("is not an integer",)),
    ("1.5", "1.5", "invalid", ("is not an integer",)),
    ("true", "true", "invalid", ("got the boolean true",)),
    ("string", '"3"', "invalid", ("got the string '3'",)),
    ("null", "null", "invalid", ("got null",)),
]):
    add(one(f"transfers {name}", with_raw_signal("transfers", raw), outcome, *words))

for name, raw, outcome, words in _rows([
    ("resolved 1", "1", "invalid", ("expected a boolean",)),
    ("resolved 0", "0", "invalid", ("expected a boolean",)),
    ("resolved 'false'", '"false"', "invalid", ("expected a boolean",)),
    ("resolved null", "null", "invalid", ("expected a boolean",)),
]):
    add(one(name, with_raw_signal("resolved", raw), outcome, *words))


def survey(**answers: Any) -> dict[str, Any]:
    return ev(type="survey", survey=answers)


for name, obj, outcome, words in _rows([
    ("nps 0", survey(nps=0), ACCEPTED, ()),
    ("nps 10", survey(nps=10), ACCEPTED, ()),
    ("nps 11", survey(nps=11), "invalid", ("above the maximum 10",)),
    ("nps 256 (UInt8 wrap)", survey(nps=256), "invalid", ("above the maximum 10",)),
    ("nps -1", survey(nps=-1), "invalid", ("below the minimum 0",)),
    ("nps 10.0", survey(nps=10.0), "invalid", ("not an integer",)),
    ("nps true", survey(nps=True), "invalid", ("got the boolean true",)),
    ("nps '9'", survey(nps="9"), "invalid", ("got the string '9'",)),
    ("csat 5", survey(csat=5), ACCEPTED, ()),
    ("csat 0", survey(csat=0), "invalid", ("below the minimum 1",)),
    ("ces 1 of 5", survey(ces=1, ces_scale=5), ACCEPTED, ()),
    ("ces 7 of 5", survey(ces=7, ces_scale=5), "invalid", ("above the maximum 5",)),
    ("ces without scale", survey(ces=3), "invalid", ("ces_scale: required",)),
    ("ces_scale 6", survey(ces=3, ces_scale=6), "invalid", ("not one of 5, 7",)),
    ("ces_scale '7'", survey(ces=3, ces_scale="7"), "invalid", ("got the string '7'",)),
    ("survey with comment only", survey(comment="hi"), "invalid", ("this one has none",)),
    ("survey null", ev(type="survey", survey=None), "invalid", ("expected an object",)),
    ("survey unknown answer", survey(nps=3, stars=5), "invalid", ("unknown field 'stars'",)),
    ("comment 2000 astral chars", survey(nps=1, comment="\U0001f600" * 2000), ACCEPTED, ()),
    ("comment 2001 chars", survey(nps=1, comment="x" * 2001), "invalid",
     ("2001 characters, above the maximum 2000",)),
    ("comment with NUL", survey(nps=1, comment="a\u0000b"), ACCEPTED, ()),
    ("comment with every control char", survey(nps=1, comment="".join(map(chr, range(32)))),
     ACCEPTED, ()),
    ("comment of RTL override and zero-width", survey(nps=1, comment="\u202e\u200b\ufeff"),
     ACCEPTED, ()),
    ("comment is a number", survey(nps=1, comment=5), "invalid", ("got the number 5",)),
]):
    add(one(name, enc(obj), outcome, *words))

# ---- strings ------------------------------------------------------------------------------
for field_name in ("event_id", "producer", "customer_id", "journey_id", "touchpoint"):
    for name, value, outcome, words in _rows([
        ("200 chars", "x" * 200, ACCEPTED, ()),
        ("200 astral chars", "\U0001f600" * 200, ACCEPTED, ()),
        ("201 chars", "x" * 201, "invalid", ("201 characters, above the maximum 200",)),
        ("60 KiB", "x" * 60000, "invalid", ("60000 characters, above the maximum 200",)),
        ("empty", "", "invalid", ("must not be empty",)),
        ("NUL", "\u0000", ACCEPTED, ()),
        ("newline and quote", 'a\n"b', ACCEPTED, ()),
        ("number", 7, "invalid", ("expected a string, got the number 7",)),
        ("null", None, "invalid", ("expected a string, got null",)),
        ("array", ["x"], "invalid", ("expected a string, got an array",)),
    ]):
        obj = ev(**{field_name: value})
        if field_name == "event_id" and outcome == ACCEPTED:
            obj = {**obj, "event_id": f"{value}{_next_id()}"[-200:] if value else value}
        add(one(f"{field_name} {name}", enc(obj), outcome, field_name, *words))

# ---- enums and type confusions --------------------------------------------------------------
for name, obj, words in _rows([
    ("type upper case", ev(type="Interaction"), ("type: 'Interaction' is not one of",)),
    ("type with trailing space", ev(type="survey "), ("type: 'survey ' is not one of",)),
    ("channel Cyrillic e", ev(channel="w\u0435b"), ("is not one of web",)),
    ("channel full-width", ev(channel="\uff57\uff45\uff42"), ("is not one of web",)),
    ("stage null", ev(stage=None), ("stage: expected a string, got null",)),
    ("channel number", ev(channel=1), ("channel: expected a string, got the number 1",)),
    ("schema_version 1.0", ev(schema_version=1.0), ("schema_version: 1.0 is not 1",)),
    ("schema_version true", ev(schema_version=True), ("schema_version: true is not 1",)),
    ("schema_version '1'", ev(schema_version="1"), ("schema_version: '1' is not 1",)),
    ("schema_version 2", ev(schema_version=2), ("schema_version: 2 is not 1",)),
    ("outcome on a survey", survey(nps=3) | {"outcome": "churn"}, ("only allowed when type",)),
    ("outcome event without outcome", ev(type="outcome"), ("outcome: required",)),
    ("outcome unknown", ev(type="outcome", outcome="fraud"), ("'fraud' is not one of",)),
    ("signals as array", ev(signals=[]), ("signals: expected an object, got an array",)),
    ("signals unknown", ev(signals={"wait": 3}), ("signals: unknown field 'wait'",)),
    ("attributes as string", ev(attributes="eu"), ("attributes: expected an object",)),
    ("missing event_id", ev(event_id=DROP), ("event_id: required field is missing",)),
    ("missing occurred_at", ev(occurred_at=DROP), ("occurred_at: required field is missing",)),
    ("empty object", {}, ("event_id: required field is missing",)),
    ("journey_id as object", ev(journey_id={"id": 1}),
     ("journey_id: expected a string, got an object",)),
]):
    add(one(name, enc(obj), "invalid", *words))

# ---- unknown fields: bounded messages -------------------------------------------------------
add(one("unknown field with a 60 KiB name", enc(ev(**{"k" * 60000: 1})), "invalid",
        "unknown field 'kkkk", "..."))
add(one("5000 unknown fields", enc(ev(**{f"u{i}": 1 for i in range(5000)})), "invalid",
        "unknown fields", "and 4995 more"))
add(one("unknown field NUL", enc(ev(**{"\u0000": 1})), "invalid", "unknown field '\\x00'"))
add(one("unknown field differing by case", enc(ev(Stage="use")), "invalid",
        "unknown field 'Stage'"))

# ---- attributes -----------------------------------------------------------------------------
for name, attrs, outcome, words in _rows([
    ("32 entries", {f"k{i}": "v" for i in range(32)}, ACCEPTED, ()),
    ("33 entries", {f"k{i}": "v" for i in range(33)}, "invalid", ("33 entries",)),
    ("3000 entries", {f"k{i}": "v" for i in range(3000)}, "invalid", ("3000 entries",)),
    ("key 64 chars", {"k" * 64: "v"}, ACCEPTED, ()),
    ("key 65 chars", {"k" * 65: "v"}, "invalid", ("does not match",)),
    ("key 60 KiB", {"k" * 60000: "v"}, "invalid", ("does not match", "...")),
    ("key with accent", {"r\u00e9gion": "eu"}, "invalid", ("does not match",)),
    ("key with dot", {"a.b": "c"}, "invalid", ("does not match",)),
    ("key with NUL", {"a\u0000": "c"}, "invalid", ("does not match",)),
    ("key upper case", {"Tier": "gold"}, "invalid", ("does not match",)),
    ("key empty", {"": "x"}, "invalid", ("does not match",)),
    ("value 200 astral chars", {"tier": "\U0001f600" * 200}, ACCEPTED, ()),
    ("value 201 chars", {"tier": "x" * 201}, "invalid", ("201 characters",)),
    ("value NUL", {"tier": "\u0000"}, ACCEPTED, ()),
    ("value empty", {"tier": ""}, ACCEPTED, ()),
    ("value number", {"tier": 1}, "invalid", ("expected a string, got the number 1",)),
    ("value boolean", {"tier": False}, "invalid", ("got the boolean false",)),
    ("value null", {"tier": None}, "invalid", ("got null",)),
    ("key named like a field", {"channel": "web", "event_id": "x"}, ACCEPTED, ()),
]):
    add(one(f"attributes {name}", enc(ev(attributes=attrs)), outcome, *words))

# ---- occurred_at ----------------------------------------------------------------------------
for text in _rows([
    "2000-01-01T00:00:00Z", "2000-01-01T00:00:00+00:00", "2000-01-01T00:00:00-23:59",
    "2000-01-02T00:00:00+23:59", "2099-12-31T23:59:59.999999999Z", "2099-12-31T23:59:59+23:59",
    "2099-12-31T00:00:00-00:00", "2099-12-30T23:59:59-23:59", "2000-02-29T12:00:00Z",
    "2096-02-29T12:00:00Z", "2026-11-22T17:10:09.1Z", "2026-11-22T17:10:09+14:00",
]):
    add(one(f"occurred_at {text}", enc(ev(occurred_at=text))))
for text in _rows([
    "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "1960-06-01T00:00:00Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+14:00", "0000-01-01T00:00:00Z", "2000-01-01T00:59:59+01:00",
    "2000-01-01T23:59:59+00:01", "2099-12-31T23:00:00-01:00", "2099-12-31T00:00:00-00:01",
]):
    add(one(f"occurred_at out of range {text}", enc(ev(occurred_at=text)), "invalid",
            "outside the years 2000-2099 UTC"))
for text in _rows([
    "2026-11-22T17:10:09", "2026-11-22 17:10:09Z", "2026-11-22t17:10:09z",
    "2026-11-22T17:10:09,123Z", "20261122T171009Z", "2026-W47-7T17:10:09Z", "2026-326T17:10:09Z",
    "2026-11-22T17:10Z", "2026-11-22T17:10:60Z", "2026-11-22T24:00:00Z", "2026-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z", "2026-11-22T17:10:09.1234567890Z", "2026-11-22T17:10:09+2400",
    "2026-11-22T17:10:09+24:00", "2026-11-22T17:10:09+01", " 2026-11-22T17:10:09Z",
    "2026-11-22T17:10:09Z ", "2026-11-22T17:10:09Z\n", "\uff12\uff10\uff12\uff16-11-22T17:10:09Z",
    "2026-11-22T17:10:09.Z", "+2026-11-22T17:10:09Z", "2026-11-22T17:10:09UTC", "",
    "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z",
]):
    add(one(f"occurred_at malformed {text!r}", enc(ev(occurred_at=text)), "invalid",
            "occurred_at", "is not an RFC 3339 date-time"))
add(one("occurred_at epoch ms number", enc(ev(occurred_at=1795367409123)), "invalid",
        "occurred_at: expected an RFC 3339 date-time string, got the number"))

# ---- sequences: what only several lines show ------------------------------------------------
_dup = ev()
add(Case("same event twice", (Line(enc(_dup)), Line(enc(_dup), DUPLICATE))))
_dup3 = ev()
add(Case("same event three times, re-encoded", (
    Line(enc(_dup3)), Line(json.dumps(_dup3, indent=None).encode(), DUPLICATE),
    Line(enc(_dup3) + b"  ", DUPLICATE))))
_first = ev(journey_id="j-late", occurred_at="2026-11-22T00:00:00Z")
_later = ev(journey_id="j-late2", occurred_at="2026-11-25T00:00:00Z")
_late = ev(journey_id="j-late", occurred_at="2026-11-22T00:10:00Z")
add(Case("late after stream time moved 3 days", (
    Line(enc(_first)), Line(enc(_later)), Line(enc(_late), "late", ("late",)))))
add(Case("bad lines do not move stream time or stop the file", (
    Line(enc(ev(occurred_at="2026-11-22T00:00:00Z"))),
    Line(enc(ev(occurred_at="2099-12-31T00:00:00Z", valence=2)), "invalid", ("valence",)),
    Line(b"\xff", "not_utf8", ("UTF-8",)),
    Line(("[" * 2000).encode(), "not_object", ("nested",)),
    Line(enc(ev(occurred_at="2026-11-22T00:05:00Z"))))))
add(Case("a rejected copy is not a duplicate of the good one", (
    Line(enc(_dup | {"event_id": "adv-same", "valence": 9}), "invalid", ("valence",)),
    Line(enc(_dup | {"event_id": "adv-same"})))))
# Reserved for the lead: `future` (occurred_at further ahead than PEAKEND_MAX_CLOCK_SKEW_SECONDS
# of when the event reached us; give `now=`) and `conflict` (an event_id seen before with other
# content) cases go here, as `Case(name, (Line(...), Line(..., "future", ("future",))), now=...)`.

# ---- reserved journey ids, clocks and conflicts ---------------------------------------------
def _digest(obj: dict[str, Any]) -> int:
    from pipeline.contract import parse_event
    from pipeline.core.event import content_digest

    return content_digest(parse_event(enc(obj)))


for jid in _rows(["c1@2026-11-22T17:10:00.000Z", "order@shop", "@", "x@"]):
    add(one(f"journey_id with '@' {jid!r}", enc(ev(journey_id=jid)), "invalid",
            "journey_id", "must not contain '@'"))
add(one("journey_id with a lookalike at sign", enc(ev(journey_id="order\uff20shop"))))
# a producer clock ahead: judged against when the file reached us (`--now`), not moving stream
# time, so the on-time events behind it are still accepted
_on_time = [ev(occurred_at=f"2026-11-22T17:{m:02d}:00Z", customer_id="c-clock")
            for m in range(10, 16)]
for ahead, now in _rows([("2026-11-24T17:12:00Z", "2026-11-22T17:20:00Z"),
                         ("2099-12-31T23:59:59Z", "2026-11-22T17:20:00Z"),
                         ("2026-11-22T17:25:01Z", "2026-11-22T17:20:00Z")]):
    add(Case(f"clock ahead {ahead} at {now}", (
        Line(enc(_on_time[0])),
        Line(enc(ev(occurred_at=ahead, customer_id="c-bad-clock")), "future",
             ("ahead of", "clock skew")),
        *[Line(enc(e)) for e in _on_time[1:]]), now=now))
add(Case("within the clock skew is on time", (
    Line(enc(ev(occurred_at="2026-11-22T17:25:00Z"))),), now="2026-11-22T17:20:00Z"))
add(Case("a future event is not a duplicate later", (
    Line(enc(_on_time[0] | {"event_id": "adv-f", "occurred_at": "2026-11-24T00:00:00Z"}),
         "future", ("ahead of",)),
    Line(enc(_on_time[0] | {"event_id": "adv-f"}))), now="2026-11-22T17:20:00Z"))
# the same event_id with other content: one conflict dead letter for the copy that came second,
# whatever the order; a third copy equal to either is a duplicate or a conflict again
for field_name, one_value, other_value in _rows([
        ("valence", 0.5, -0.5), ("touchpoint", "hotline", "chat"), ("producer", "a", "b"),
        ("occurred_at", "2026-11-22T17:10:00Z", "2026-11-22T17:11:00Z"),
        ("attributes", {"region": "eu"}, {"region": "us"})]):
    first = ev(customer_id="c-conflict") | {field_name: one_value}
    second = first | {field_name: other_value}
    kept = min((first, second), key=_digest)  # the smaller content digest wins
    lost = second if kept is first else first
    add(Case(f"conflict on {field_name}", (
        Line(enc(first)), Line(enc(second), "conflict", ("different content",)),
        Line(enc(kept), DUPLICATE), Line(enc(lost), "conflict", ("this one is not applied",)))))
_survey = ev(type="survey", survey={"nps": 10}, journey_id="j-conflict")
add(Case("conflicting survey answers, both orders", (
    Line(enc(_survey)), Line(enc(_survey | {"survey": {"nps": 0}}), "conflict",
                             ("different content",)))))
add(Case("conflicting survey answers, other order", (
    Line(enc(_survey | {"event_id": "adv-c2", "survey": {"nps": 0}})),
    Line(enc(_survey | {"event_id": "adv-c2"}), "conflict", ("different content",)))))
add(Case("the same instant in another offset is the same event", (
    Line(enc(ev(event_id="adv-off", occurred_at="2026-11-22T17:10:00Z"))),
    Line(enc(ev(event_id="adv-off", occurred_at="2026-11-22T18:10:00+01:00")), DUPLICATE))))
