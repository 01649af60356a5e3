"""Backfill's Parquet reader applies the contract's limits like the JSON parser: the fast path
(`clean_rows`) never clears a row the parser would reject, and the slow path (`BatchDicts` ->
`parse_dict`) rejects it by name instead of crashing or silently changing it.

The table of edge rows is built from `pipeline.contract.limits` (the one declaration both paths
read): at every limit, the value just inside and just outside, every allowed value of every enum
and one that is not. Each row goes through `parse_event` as JSON and through backfill's two
paths as Parquet; the verdicts must be the same (accepted, or the same reason and message), and
a valid row must stay on the fast path. A limit hard-coded on one side only therefore fails here
whichever way it is moved.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pytest

from jobs.columns import MAX_FAST_MS, MIN_FAST_MS, clean_rows
from jobs.parquet_schema import SCHEMA, BatchDicts, events_to_batch
from pipeline.contract import Rejected, parse_dict, parse_event
from pipeline.contract import limits as lim
from pipeline.core.event import CES_DIRECTIONS, CHANNELS, EVENT_TYPES, STAGES
from pipeline.core.timefmt import format_ms, parse_ms

BASE: dict[str, Any] = {
    "event_id": "pq-1", "schema_version": 1, "occurred_at": "2026-11-22T17:10:09.123Z",
    "producer": "p", "customer_id": "c", "type": "interaction", "touchpoint": "t",
    "channel": "web", "stage": "use",
}


def _with_attribute_pairs(batch: pa.RecordBatch, pairs: list[tuple[str, str]]) -> pa.RecordBatch:
    index = SCHEMA.get_field_index("attributes")
    column = pa.array([pairs], type=SCHEMA.field("attributes").type)
    return batch.set_column(index, SCHEMA.field("attributes"), column)


def test_repeated_map_keys_are_rejected_not_merged() -> None:
    batch = _with_attribute_pairs(events_to_batch([BASE]), [("region", "eu"), ("tier", "gold"),
                                                           ("region", "us")])
    assert clean_rows(batch, 65536) == [False]
    with pytest.raises(Rejected) as caught:
        parse_dict(BatchDicts(batch).row(0))
    assert caught.value.reason == "invalid"
    assert "attributes.region: key 'region' appears more than once" in caught.value.error


def test_distinct_map_keys_stay_on_the_fast_path() -> None:
    batch = _with_attribute_pairs(events_to_batch([BASE]), [("region", "eu"), ("tier", "gold")])
    assert clean_rows(batch, 65536) == [True]
    assert parse_dict(BatchDicts(batch).row(0)).attributes == {"region": "eu", "tier": "gold"}


def test_a_timestamp_datetime_cannot_hold_is_rejected_not_a_crash() -> None:
    batch = events_to_batch([BASE])
    index = SCHEMA.get_field_index("occurred_at")
    far = pa.array([900_000_000_000_000], type=pa.int64()).cast(SCHEMA.field("occurred_at").type)
    batch = batch.set_column(index, SCHEMA.field("occurred_at"), far)  # about year 30,000
    assert clean_rows(batch, 65536) == [False]
    with pytest.raises(Rejected) as caught:
        parse_dict(BatchDicts(batch).row(0))
    assert "occurred_at: '900000000000000 ms since 1970-01-01T00:00:00Z'" in caught.value.error


def _survey(**fields: Any) -> dict[str, Any]:
    return {"type": "survey", "survey": fields}


def _down(value: float) -> float:
    return math.nextafter(value, -math.inf)


def _up(value: float) -> float:
    return math.nextafter(value, math.inf)


def _edges() -> list[tuple[str, dict[str, Any], bool]]:
    """(name, change to BASE, valid?) at every limit of `pipeline.contract.limits`."""
    cases: list[tuple[str, dict[str, Any], bool]] = []

    def add(name: str, change: dict[str, Any], valid: bool) -> None:
        cases.append((name, change, valid))

    texts = [("event_id", lim.EVENT_ID_MAX)] + [
        (name, lim.TEXT_MAX) for name in ("producer", "customer_id", "touchpoint", "journey_id")]
    for name, most in texts:
        add(f"{name} at the maximum", {name: "x" * most}, True)
        add(f"{name} at the maximum, astral", {name: "\U0001f600" * most}, True)
        add(f"{name} above the maximum", {name: "x" * (most + 1)}, False)
        add(f"{name} empty", {name: ""}, False)
    add("journey_id with the reserved character",
        {"journey_id": f"c{lim.JOURNEY_ID_RESERVED}1"}, False)
    add("comment at the maximum", {"survey": {"comment": "x" * lim.COMMENT_MAX}}, True)
    add("comment above the maximum", {"survey": {"comment": "x" * (lim.COMMENT_MAX + 1)}}, False)
    add("schema_version", {"schema_version": lim.SCHEMA_VERSION}, True)
    for version in (lim.SCHEMA_VERSION - 1, lim.SCHEMA_VERSION + 1):
        add(f"schema_version {version}", {"schema_version": version}, False)

    for name, ms, valid in [("first", lim.FIRST_MS, True), ("before", lim.FIRST_MS - 1, False),
                            ("last", lim.END_MS - 1, True), ("after", lim.END_MS, False),
                            ("last fast", MAX_FAST_MS - 1, True),
                            ("first slow", MAX_FAST_MS, True)]:
        add(f"occurred_at {name}", {"occurred_at": format_ms(ms)}, valid)

    add("valence at the minimum", {"valence": lim.VALENCE_MIN}, True)
    add("valence at the maximum", {"valence": lim.VALENCE_MAX}, True)
    add("valence below the minimum", {"valence": _down(lim.VALENCE_MIN)}, False)
    add("valence above the maximum", {"valence": _up(lim.VALENCE_MAX)}, False)
    for name in ("wait_seconds", "handle_seconds"):
        for value, valid in [(0.0, True), (-0.0, True), (_down(0.0), False),
                             (float(lim.SECONDS_MAX), True), (_up(lim.SECONDS_MAX), False)]:
            add(f"{name} {value!r}", {"signals": {name: value}}, valid)
    for value, valid in [(0, True), (-1, False), (lim.TRANSFERS_MAX, True),
                         (lim.TRANSFERS_MAX + 1, False)]:
        add(f"transfers {value}", {"signals": {"transfers": value}}, valid)

    for name, low, high in [("nps", lim.NPS_MIN, lim.NPS_MAX),
                            ("csat", lim.CSAT_MIN, lim.CSAT_MAX)]:
        for value in (low - 1, low, high, high + 1):
            add(f"{name} {value}", _survey(**{name: value}), low <= value <= high)
    for scale in lim.CES_SCALES:
        for ces in (lim.CES_MIN - 1, lim.CES_MIN, scale, scale + 1):
            add(f"ces {ces} of {scale}", _survey(ces=ces, ces_scale=scale),
                lim.CES_MIN <= ces <= scale)
    for scale in range(min(lim.CES_SCALES) - 1, lim.CES_MAX + 2):
        if scale not in lim.CES_SCALES:
            add(f"ces_scale {scale}", _survey(ces=lim.CES_MIN, ces_scale=scale), False)
    add("ces without ces_scale", _survey(ces=lim.CES_MIN), False)
    add("ces_scale without ces", _survey(nps=lim.NPS_MIN, ces_scale=lim.CES_MAX), True)
    for direction in CES_DIRECTIONS:
        add(f"ces_higher_means {direction}",
            _survey(ces=lim.CES_MIN, ces_scale=lim.CES_MAX, ces_higher_means=direction), True)
    add("ces_higher_means unknown",
        _survey(ces=lim.CES_MIN, ces_scale=lim.CES_MAX, ces_higher_means="harder"), False)
    add("ces_higher_means without ces_scale",
        _survey(nps=lim.NPS_MIN, ces_higher_means=CES_DIRECTIONS[0]), False)

    scored = _survey(nps=lim.NPS_MIN)
    for kind in EVENT_TYPES:
        extra = scored if kind == "survey" else (
            {"outcome": lim.OUTCOMES[0]} if kind == "outcome" else {})
        add(f"type {kind}", {**extra, "type": kind}, True)
    for outcome in lim.OUTCOMES:
        add(f"outcome {outcome}", {"type": "outcome", "outcome": outcome}, True)
    for channel in CHANNELS:
        add(f"channel {channel}", {"channel": channel}, True)
    for stage in STAGES:
        add(f"stage {stage}", {"stage": stage}, True)
    for name, first in [("type", EVENT_TYPES[0]), ("channel", CHANNELS[0]),
                        ("stage", STAGES[0])]:
        add(f"{name} upper-case", {name: first.upper()}, False)
        add(f"{name} empty", {name: ""}, False)
    add("outcome unknown", {"type": "outcome", "outcome": "fax"}, False)
    add("outcome missing", {"type": "outcome"}, False)
    add("outcome on another type", {"outcome": lim.OUTCOMES[0]}, False)
    add("survey without a score", _survey(comment="only"), False)
    add("survey event without a survey", {"type": "survey"}, False)

    add("attributes at the maximum",
        {"attributes": {f"k{i}": "v" for i in range(lim.ATTRIBUTES_MAX)}}, True)
    add("attributes above the maximum",
        {"attributes": {f"k{i}": "v" for i in range(lim.ATTRIBUTES_MAX + 1)}}, False)
    add("attribute key at the maximum", {"attributes": {"a" * lim.ATTRIBUTE_KEY_MAX: "v"}}, True)
    add("attribute key above the maximum",
        {"attributes": {"a" * (lim.ATTRIBUTE_KEY_MAX + 1): "v"}}, False)
    for key in ("A", "1a", "_a", "a-b", "a\n", "\u00e9"):
        add(f"attribute key {key!r}", {"attributes": {key: "v"}}, False)
    add("attribute value at the maximum", {"attributes": {"a": "x" * lim.ATTRIBUTE_VALUE_MAX}},
        True)
    add("attribute value above the maximum",
        {"attributes": {"a": "x" * (lim.ATTRIBUTE_VALUE_MAX + 1)}}, False)
    return cases


EDGES = _edges()
ACCEPTED = ("accepted", "")


def _verdict(parse: Any) -> tuple[str, str]:
    try:
        parse()
    except Rejected as rejected:
        return rejected.reason, rejected.error
    return ACCEPTED


def test_both_paths_give_the_same_verdict_at_every_limit() -> None:
    rows = [{**BASE, **change} for _, change, _ in EDGES]
    batch = events_to_batch(rows)
    clean = clean_rows(batch, 65536)
    dicts = BatchDicts(batch)
    wrong = []
    for i, ((name, _, valid), row) in enumerate(zip(EDGES, rows, strict=True)):
        stream = _verdict(lambda row=row: parse_event(json.dumps(row).encode()))
        # backfill: a clean row is accepted as is; any other gets the parser's exact verdict
        slow = _verdict(lambda i=i: parse_dict(dicts.row(i)))
        backfill = ACCEPTED if clean[i] else slow
        fast_time = MIN_FAST_MS <= parse_ms(row["occurred_at"]) < MAX_FAST_MS
        if (stream == ACCEPTED) != valid:
            wrong.append(f"{name}: the parser says {stream}, the limits say valid={valid}")
        if backfill != stream or slow != stream:
            wrong.append(f"{name}: stream {stream}, backfill {backfill} (clean {clean[i]})")
        elif clean[i] != (valid and fast_time):
            wrong.append(f"{name}: valid={valid} but clean={clean[i]}")
    assert not wrong, "\n".join(wrong)
    assert len(EDGES) > 100
