"""The parser's fast path (`pipeline/contract/fast.py`) gives the strict parser's event or
declines, for every record: the corpora (valid, invalid, hostile, adversarial), events drawn
from the published schema, mutations of valid events, and records written with repeated keys,
nulls, long digit runs and other spellings. And it does not decline what it is for: the valid
records without an escape."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from adversarial import CASES
from contract_strategies import JSON_VALUES, mutated_events, valid_events
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from portable_corpus import cases
from schema_strategy import schema_events

from jobs.generate import GeneratorConfig, encode_record, generate_records
from pipeline.contract import Rejected, event_to_dict, parse_event
from pipeline.contract.fast import parse_valid
from pipeline.contract.parser import parse_strict
from pipeline.core.event import TouchpointEvent

RECORDS = [data for _, data in cases()] + [line.data for case in CASES for line in case.lines]


def exact(event: TouchpointEvent) -> bytes:
    """Everything the event holds, types included (1 against 1.0, -0.0 against 0.0), with its
    instant and offset."""
    return orjson.dumps([event_to_dict(event), event.occurred_at.isoformat(),
                         [type(v).__name__ for v in event_to_dict(event).values()]])


def agrees(data: bytes) -> TouchpointEvent | None:
    """Asserts that the fast path gives the strict parser's event or declines; returns the
    fast path's event."""
    fast = parse_valid(data)
    try:
        strict = parse_strict(data)
    except Rejected as rejected:
        assert fast is None, f"the fast path accepted what the strict parser rejects: " \
                             f"{rejected} ({data[:300]!r})"
        return None
    except Exception as exc:  # a crash of the strict parser: named in the failure
        pytest.fail(f"the strict parser raised {exc!r} on {data[:300]!r}")
    if fast is not None:
        assert exact(fast) == exact(strict), data[:300]
    return fast


def test_the_corpora_get_the_strict_verdicts() -> None:
    accepted = sum(agrees(data) is not None for data in RECORDS)
    assert len(RECORDS) > 400 and accepted > 50, (len(RECORDS), accepted)


def test_the_generators_mix_takes_the_fast_path_every_time() -> None:
    """What it is for: a generated day (the benchmarks' mix) is never declined."""
    config = GeneratorConfig(events=3_000, seed=11)
    for record in generate_records(config):
        data = encode_record(record)
        assert agrees(data) is not None, data[:300]


def _spellings(obj: Any) -> list[bytes]:
    return [json.dumps(obj, ensure_ascii=False).encode(),
            json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(),
            json.dumps(obj, ensure_ascii=False, indent=1).encode(),
            json.dumps(obj).encode()]  # \u escapes: declined, decided by the strict parser


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(schema_events())
def test_events_drawn_from_the_schema_take_the_fast_path(obj: dict[str, Any]) -> None:
    for data in _spellings(obj):
        fast = agrees(data)
        assert fast is not None or b"\\" in data, data[:300]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_events(), mutated_events()))
def test_valid_and_mutated_events_agree(obj: dict[str, Any]) -> None:
    for data in _spellings(obj):
        agrees(data)


# Values that the two decoders could read apart: long digit runs, numbers at the float limits,
# integers written as floats, booleans, nulls, nested objects.
NUMBERS = st.sampled_from([
    "0", "-0", "-0.0", "1.0", "1e0", "10E-1", "0.30000000000000000000001", "1" * 40,
    "-" + "9" * 25, "31536000.0000000000000000001", "31536000", "31536001", "1e400", "-1e400",
    "4.9e-324", "2.4703282292062327e-324", "0.99999999999999999999", "-1.00000000000000000001",
    "2147483647", "2147483648", "9.0", "9", "10", "11", "true", "null", "{}", "[]", '"9"',
])
FIELDS = st.sampled_from([
    ("valence",), ("signals", "wait_seconds"), ("signals", "handle_seconds"),
    ("signals", "transfers"), ("signals", "resolved"), ("survey", "nps"), ("survey", "ces"),
    ("survey", "ces_scale"), ("survey", "csat"), ("schema_version",), ("journey_id",),
    ("attributes", "tier"), ("outcome",), ("survey", "comment"), ("event_id",),
])


def _with_raw(obj: dict[str, Any], path: tuple[str, ...], raw: str) -> bytes:
    marker = "\u0001raw\u0001"
    out = json.loads(json.dumps(obj))
    parent = out
    for key in path[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    parent[path[-1]] = marker
    return json.dumps(out, ensure_ascii=False).replace(json.dumps(marker), raw).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events(), FIELDS, NUMBERS)
@example({"event_id": "e", "schema_version": 1, "occurred_at": "2026-11-22T17:10:09Z",
          "producer": "p", "customer_id": "c", "type": "survey", "touchpoint": "t",
          "channel": "web", "stage": "purchase", "survey": {"nps": 9}}, ("survey", "nps"), "9.0")
def test_numbers_and_literals_written_any_way_agree(obj: dict[str, Any],
                                                     path: tuple[str, ...], raw: str) -> None:
    agrees(_with_raw(obj, path, raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events(), st.data())
def test_a_repeated_key_is_declined_wherever_it_is(obj: dict[str, Any],
                                                   data: st.DataObject) -> None:
    """The same key twice, with the same value or another one, at the top, in signals, survey
    or attributes: msgspec keeps the last silently, the strict parser refuses; the fast path
    must decline."""
    text = json.dumps(obj, ensure_ascii=False)
    objects = [key for key in ("signals", "survey", "attributes") if obj.get(key)]
    where = data.draw(st.sampled_from(["", *objects]))
    target = obj if not where else obj[where]
    key = data.draw(st.sampled_from(sorted(target)))
    value = data.draw(st.one_of(st.just(target[key]), JSON_VALUES))
    repeated = f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}, "
    if not where:
        text = "{" + repeated + text[1:]
    else:
        opening = f"{json.dumps(where)}: {{"
        at = text.index(opening) + len(opening)
        text = text[:at] + repeated + text[at:]
    record = text.encode()
    assert parse_valid(record) is None, record
    with pytest.raises(Rejected):
        parse_strict(record)
    with pytest.raises(Rejected):
        parse_event(record)


def test_the_fast_path_is_the_parsers_and_declines_to_the_strict_verdict() -> None:
    """`parse_event` is the fast path, else the strict parser: a declined record gets the
    strict parser's verdict and message."""
    valid = next(data for data in RECORDS if parse_valid(data) is not None)
    assert exact(parse_event(valid)) == exact(parse_strict(valid))
    for data in RECORDS:
        if parse_valid(data) is None:
            try:
                strict = parse_strict(data)
            except Rejected as rejected:
                with pytest.raises(Rejected) as caught:
                    parse_event(data)
                assert (caught.value.reason, str(caught.value)) == (rejected.reason,
                                                                   str(rejected))
            else:
                assert exact(parse_event(data)) == exact(strict)


@pytest.mark.parametrize("path,limit", [
    (("event_id",), 200), (("producer",), 200), (("journey_id",), 200),
    (("survey", "comment"), 2000), (("attributes", "tier"), 200),
])
@pytest.mark.parametrize("char", ["x", "é", "\U0001f600"])
def test_lengths_count_characters_not_bytes(path: tuple[str, ...], limit: int,
                                            char: str) -> None:
    """At the limit and one past it, in one-, two- and four-byte characters: the fast path
    counts characters, as the strict parser and the schema do."""
    base = {"event_id": "e", "schema_version": 1, "occurred_at": "2026-11-22T17:10:09Z",
            "producer": "p", "customer_id": "c", "type": "survey", "touchpoint": "t",
            "channel": "web", "stage": "purchase", "survey": {"nps": 9}}
    for size, accepted in ((limit, True), (limit + 1, False)):
        data = _with_raw(base, path, json.dumps(char * size, ensure_ascii=False))
        assert (agrees(data) is not None) is accepted, (path, size, char)
