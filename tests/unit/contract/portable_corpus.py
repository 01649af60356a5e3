"""The shared contract corpus for other languages: tests/portable_contract/corpus.jsonl.

One JSON line per record: `name`, the record's bytes (`b64`), the verdict of `peakend validate`
(`peakend`: "accepted" or the dead-letter reason) and `beyond_schema`: for a record rejected by a
rule JSON Schema cannot express (docs/contract.md, "Rules JSON Schema cannot express"), that
rule's name; a generic validator may accept such a record. Every other record gets the same
verdict from every JSON Schema 2020-12 validator (test_contract_portable.py checks Python's
jsonschema, Ajv and santhosh-tekuri/jsonschema against it).

The cases: the hand-written corpus (contract_corpus.py), hostile ones below, and mutations of
valid events drawn with a fixed seed. Rewrite the file after changing any of them:
    .venv/bin/python tests/unit/contract/portable_corpus.py
"""

from __future__ import annotations

import base64
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: the corpus modules beside it

from contract_corpus import BASE, INVALID, SCHEMA_EXAMPLES, SCHEMA_PATH, VALID, encode, event
from jsonschema import Draft202012Validator

from pipeline.contract import Rejected, parse_event

_SCHEMA_VALIDATOR = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()),
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
CORPUS_PATH = Path(__file__).resolve().parents[2] / "portable_contract" / "corpus.jsonl"

# The rules of schema v1 a JSON Schema cannot state; `beyond_schema` below tells which one decides.
BEYOND_SCHEMA: dict[str, str] = {
    "size_limit": "records above PEAKEND_MAX_EVENT_BYTES are rejected before parsing",
    "duplicate_key": "no duplicate keys (a generic decoder keeps the last value)",
    "lone_surrogate": "no lone surrogate escapes (a generic decoder keeps or replaces them)",
    "integer_literal": "integer fields take integer literals only (JSON Schema: 9.0 is 9)",
    "double_rounding": "numbers are read as IEEE 754 doubles (I-JSON): a validator computing with "
                       "exact decimals can judge a literal that rounds across a bound otherwise",
}


def _raw(text: str) -> bytes:
    return text.encode("utf-8")


def _nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels - 1):
        value = {"x": value}
    return value


_BASE_TEXT = encode(BASE)[:-1]  # without the closing brace, to append hand-written members

HOSTILE: list[tuple[str, bytes]] = [
    # years and offsets that validators read differently (issue 22)
    *((f"occurred_at {text}", encode(event(occurred_at=text))) for text in (
        "0000-01-01T00:00:00Z", "0000-12-31T23:59:59+23:59", "0001-01-01T00:00:00Z",
        "2026-11-22T17:10:09-00:00", "2026-11-22T17:10:09+23:59", "2026-11-22T17:10:09-23:59",
        "2026-11-22T17:10:09+24:00", "2026-11-22T17:10:09-00:60", "2000-01-01T00:00:00-00:00",
        "2000-01-01T00:00:00+00:01", "2000-01-01T00:00:00-23:59", "2099-12-31T23:59:59-00:00",
        "2099-12-31T00:00:00+23:59", "2099-12-31T00:00:00-00:01", "2026-11-22T17:10:09.0Z",
        "2026-11-22T17:10:09,5Z", "2026-11-22T17:10:09 Z", "+2026-11-22T17:10:09Z",
        "2026-11-22T17:10:09Z\r", " 2026-11-22T17:10:09Z", "2026-11-22T17:10Z",
        "2026-W47-7T17:10:09Z", "2026-326T17:10:09Z", "20261122T171009Z",
        "2026-11-22T17:10:09\u00a0Z", "2026-11-22T17:10:09.\u0661Z", "2024-02-29T12:00:00+23:59",
        "2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
    )),
    # huge and odd numbers
    ("nps 10**20", encode(event(type="survey", survey={"nps": 10**20}))),
    ("nps -0", _BASE_TEXT.replace(b'"interaction"', b'"survey"') + b', "survey": {"nps": -0}}'),
    ("transfers 2**53+1", encode(event(signals={"transfers": 2**53 + 1}))),
    ("transfers -2**63", encode(event(signals={"transfers": -(2**63)}))),
    ("transfers 1e2", _BASE_TEXT + b', "signals": {"transfers": 1e2}}'),
    ("transfers 2147483647.0", _BASE_TEXT + b', "signals": {"transfers": 2147483647.0}}'),
    ("nps 1E1", _BASE_TEXT.replace(b'"interaction"', b'"survey"') + b', "survey": {"nps": 1E1}}'),
    ("nps 9.000", _BASE_TEXT.replace(b'"interaction"', b'"survey"')
     + b', "survey": {"nps": 9.000}}'),
    ("valence 1e-400", _BASE_TEXT + b', "valence": 1e-400}'),
    ("valence -1.0000000000000000001", _BASE_TEXT + b', "valence": -1.0000000000000000001}'),
    ("wait 1e308", encode(event(signals={"wait_seconds": 1e308}))),
    ("wait 4300 digits", _BASE_TEXT + b', "signals": {"wait_seconds": 1' + b"0" * 4299 + b"}}"),
    ("wait 5000 digits", _BASE_TEXT + b', "signals": {"wait_seconds": 1' + b"0" * 4999 + b"}}"),
    ("schema_version 1e0", _BASE_TEXT.replace(b'"schema_version": 1', b'"schema_version": 1e0')
     + b"}"),
    ("schema_version 01", _BASE_TEXT.replace(b'"schema_version": 1', b'"schema_version": 01')
     + b"}"),
    ("valence +0.5", _BASE_TEXT + b', "valence": +0.5}'),
    ("valence .5", _BASE_TEXT + b', "valence": .5}'),
    # duplicate keys: the same value, a different one that a last-wins reader takes as valid
    ("duplicate key same value", _BASE_TEXT + b', "producer": "hotline-ivr"}'),
    ("duplicate type last one valid", _raw(
        '{"type": "survey", ' + encode(BASE).decode()[1:])),
    ("duplicate nested key last one valid", _BASE_TEXT.replace(b'"interaction"', b'"survey"')
     + b', "survey": {"nps": 11, "nps": 3}}'),
    ("duplicate attribute key", _BASE_TEXT + b', "attributes": {"region": "eu", "region": "us"}}'),
    # nesting
    ("attributes nested 33 levels", encode(event(attributes={"region": _nested(32)}))),
    ("unknown field nested 40 levels", encode(event(extra=_nested(40)))),
    ("array nested 5000 levels", _BASE_TEXT + b', "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("unknown field nested 3 levels", encode(event(extra=_nested(3)))),
    # strings
    ("lone low surrogate", encode(BASE).replace(b"cust-42", b"cust\\udc00")),
    ("surrogate pair escaped", encode(BASE).replace(b"cust-42", b"cust\\ud83d\\ude00")),
    ("NUL in customer_id", encode(event(customer_id="cust\u0000"))),
    ("raw control character", encode(BASE).replace(b"cust-42", b"cust\x01")),
    ("journey_id with @", encode(event(journey_id="a@b"))),
    ("attribute key trailing CR", encode(event(attributes={"region\r": "eu"}))),
    ("attribute key with newline inside", encode(event(attributes={"reg\nion": "eu"}))),
    ("attribute key non-ASCII letter", encode(event(attributes={"r\u00e9gion": "eu"}))),
    ("attribute key Kelvin sign", encode(event(attributes={"\u212aey": "eu"}))),
    ("attribute key 64 chars then newline", encode(event(attributes={"a" * 64 + "\n": "v"}))),
    ("event_id 200 astral chars", encode(event(event_id="\U0001f600" * 200))),
    ("event_id 201 astral chars", encode(event(event_id="\U0001f600" * 201))),
    ("comment 2000 astral chars", encode(event(survey={"comment": "\U0001f600" * 2000}))),
    ("overlong UTF-8", encode(BASE).replace(b"cust-42", b"cust\xc0\xaf")),
    ("encoded surrogate bytes", encode(BASE).replace(b"cust-42", b"cust\xed\xa0\x80")),
    ("trailing comma", _BASE_TEXT + b",}"),
    ("single quotes", encode(BASE).replace(b'"cust-42"', b"'cust-42'")),
    ("comment in JSON", _BASE_TEXT + b" /* c */}"),
]

_WRONG_VALUES: list[Any] = [None, True, 0, -1, 1.5, 2**31, "", "x" * 201, [], {}, "phone",
                            "2026-11-22T17:10:09Z", {"nps": 3}, ["a"]]
_OPTIONAL: dict[str, Any] = {
    "journey_id": "case-1", "valence": 0.25, "signals": {"wait_seconds": 30, "transfers": 1},
    "survey": {"nps": 7}, "attributes": {"region": "eu"}, "outcome": "churn",
}


def mutations(seed: int = 22, count: int = 200) -> list[tuple[str, bytes]]:
    """Valid events with one or two fields dropped, replaced or added, drawn with `seed`."""
    rng = random.Random(seed)
    starts = [json.loads(data) for _, data in VALID if data.strip().startswith(b"{")]
    out: list[tuple[str, bytes]] = []
    for i in range(count):
        obj = dict(rng.choice(starts))
        steps = []
        for _ in range(rng.randint(1, 2)):
            action = rng.choice(("drop", "replace", "add", "type"))
            if action == "drop" and obj:
                key = rng.choice(sorted(obj))
                obj.pop(key)
                steps.append(f"drop {key}")
            elif action == "add":
                key = rng.choice(sorted(_OPTIONAL))
                obj[key] = _OPTIONAL[key]
                steps.append(f"add {key}")
            elif action == "type":
                obj["type"] = rng.choice(("interaction", "survey", "journey_end", "outcome"))
                steps.append(f"type {obj['type']}")
            else:
                key = rng.choice(sorted(obj)) if obj else "event_id"
                value = rng.choice(_WRONG_VALUES)
                obj[key] = value
                steps.append(f"{key}={json.dumps(value)[:20]}")
        out.append((f"mutation {i}: " + ", ".join(steps), encode(obj)))
    return out


def peakend_verdict(data: bytes) -> tuple[str, str]:
    """(verdict, error) as `peakend validate` gives them: "accepted" or the dead-letter reason."""
    try:
        parse_event(data)
    except Rejected as rejected:
        return rejected.reason, rejected.error
    return "accepted", ""


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def beyond_schema(data: bytes, reason: str, error: str) -> str | None:
    """The rule JSON Schema cannot state that decides this record's verdict, if any."""
    if reason == "too_large":
        return "size_limit"
    if reason == "not_json" and "duplicate key" in error:
        return "duplicate_key"
    if reason == "not_json" and "surrogate" in error:
        return "lone_surrogate"
    try:
        value = json.loads(data)
        exact = json.loads(data, parse_float=Decimal)
    except (ValueError, RecursionError):
        return None
    if reason == "invalid" and peakend_verdict(encode(_integral_floats_as_ints(value)))[0] == (
            "accepted"):
        return "integer_literal"
    if _SCHEMA_VALIDATOR.is_valid(value) != _SCHEMA_VALIDATOR.is_valid(exact):
        return "double_rounding"
    return None


def cases() -> list[tuple[str, bytes]]:
    named = [*VALID, *((case.name, case.data) for case in INVALID), *HOSTILE, *mutations()]
    assert len({name for name, _ in named}) == len(named), "case names must be unique"
    assert SCHEMA_EXAMPLES, "the schema's examples are part of VALID"
    return named


def build() -> list[dict[str, Any]]:
    records = []
    for name, data in cases():
        verdict, error = peakend_verdict(data)
        records.append({"name": name, "b64": base64.b64encode(data).decode("ascii"),
                        "peakend": verdict, "beyond_schema": beyond_schema(data, verdict, error)})
    return records


def render(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


if __name__ == "__main__":
    CORPUS_PATH.write_text(render(build()), encoding="utf-8")
    print(f"{CORPUS_PATH}: {len(cases())} records")
