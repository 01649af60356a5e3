"""The contract's limits (`pipeline.contract.limits`, which the parser and backfill's column
checks both read) are the published schema's, number for number and character for character; a
change on one side only fails here."""

from __future__ import annotations

import re

from contract_oracle import SCHEMA

from pipeline.contract import decoding, limits
from pipeline.core.event import CES_DIRECTIONS, CHANNELS, EVENT_TYPES, STAGES


def _range(node: dict[str, object]) -> tuple[object, object]:
    return node["minimum"], node["maximum"]


def test_limits_match_the_schema() -> None:
    props = SCHEMA["properties"]
    assert props["schema_version"]["const"] == limits.SCHEMA_VERSION
    assert props["event_id"]["maxLength"] == limits.EVENT_ID_MAX
    assert props["event_id"]["minLength"] == 1
    for name in ("producer", "customer_id", "journey_id", "touchpoint"):
        assert props[name]["maxLength"] == limits.TEXT_MAX, name
        assert props[name]["minLength"] == 1, name
    assert props["journey_id"]["pattern"] == f"^[^{limits.JOURNEY_ID_RESERVED}]*$"
    assert _range(props["valence"]) == (limits.VALENCE_MIN, limits.VALENCE_MAX)
    signals = props["signals"]["properties"]
    for name in ("wait_seconds", "handle_seconds"):
        assert _range(signals[name]) == (0, limits.SECONDS_MAX)
    assert _range(signals["transfers"]) == (0, limits.TRANSFERS_MAX)
    assert signals["transfers"]["maximum"] == 2**31 - 1  # the Nullable(Int32) column
    survey = props["survey"]
    fields = survey["properties"]
    assert _range(fields["nps"]) == (limits.NPS_MIN, limits.NPS_MAX)
    assert _range(fields["csat"]) == (limits.CSAT_MIN, limits.CSAT_MAX)
    assert _range(fields["ces"]) == (limits.CES_MIN, limits.CES_MAX)
    assert tuple(fields["ces_scale"]["enum"]) == limits.CES_SCALES
    # the schema's one conditional bound: ces up to 5 on the 5-point scale (7 is CES_MAX)
    small = survey["if"]["properties"]["ces_scale"]["const"]
    assert sorted(limits.CES_SCALES) == [small, limits.CES_MAX]
    assert survey["then"]["properties"]["ces"]["maximum"] == small
    assert fields["comment"]["maxLength"] == limits.COMMENT_MAX
    attributes = props["attributes"]
    assert attributes["maxProperties"] == limits.ATTRIBUTES_MAX
    assert attributes["propertyNames"]["pattern"] == f"^{limits.ATTRIBUTE_KEY_PATTERN}$"
    assert attributes["additionalProperties"]["maxLength"] == limits.ATTRIBUTE_VALUE_MAX
    assert props["occurred_at"]["pattern"] == limits.OCCURRED_AT_PATTERN
    assert str(decoding.MAX_DEPTH) in SCHEMA["description"]


def test_enums_match_the_schema() -> None:
    props = SCHEMA["properties"]
    assert tuple(props["type"]["enum"]) == EVENT_TYPES
    assert tuple(props["channel"]["enum"]) == CHANNELS
    assert tuple(props["stage"]["enum"]) == STAGES
    assert tuple(props["outcome"]["enum"]) == limits.OUTCOMES
    assert tuple(props["survey"]["properties"]["ces_higher_means"]["enum"]) == CES_DIRECTIONS


def test_the_attribute_key_pattern_states_the_key_length() -> None:
    key = re.compile(limits.ATTRIBUTE_KEY_PATTERN)
    assert key.fullmatch("a" * limits.ATTRIBUTE_KEY_MAX)
    assert not key.fullmatch("a" * (limits.ATTRIBUTE_KEY_MAX + 1))


def test_the_occurred_at_pattern_states_the_years() -> None:
    """The pattern spells the years out (a regex cannot count): every year around the declared
    ones, and the first and last instants with their neighbours, agree with FIRST_YEAR and
    LAST_YEAR."""
    pattern = re.compile(limits.OCCURRED_AT_PATTERN)
    first, last = limits.FIRST_YEAR, limits.LAST_YEAR
    for year in range(first - 11, last + 12):
        assert bool(pattern.fullmatch(f"{year:04d}-06-15T12:00:00Z")) == (
            first <= year <= last), year
    assert pattern.fullmatch(f"{first}-01-01T00:00:00Z")
    assert pattern.fullmatch(f"{first}-01-01T00:30:00-00:30")
    assert not pattern.fullmatch(f"{first}-01-01T00:30:00+01:00")  # 1999 in UTC
    assert not pattern.fullmatch(f"{first - 1}-12-31T23:59:59.999Z")
    assert pattern.fullmatch(f"{last}-12-31T23:59:59.999Z")
    assert pattern.fullmatch(f"{last}-12-31T23:30:00+01:00")
    assert not pattern.fullmatch(f"{last}-12-31T23:30:00-01:00")  # the next year in UTC
    assert not pattern.fullmatch(f"{last + 1}-01-01T00:00:00Z")


def test_every_string_field_is_bounded() -> None:
    def walk(node: dict[str, object], path: str) -> None:
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            assert "maxLength" in node or "pattern" in node, f"{path} has no length limit"
        for name, sub in node.get("properties", {}).items():  # type: ignore[attr-defined]
            walk(sub, f"{path}{name}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}*.")

    walk(SCHEMA, "")


def test_every_number_field_is_bounded_both_ways() -> None:
    def walk(node: dict[str, object], path: str) -> None:
        if node.get("type") in ("integer", "number") and "enum" not in node \
                and "const" not in node:
            assert "minimum" in node and "maximum" in node, f"{path} is unbounded"
        for name, sub in node.get("properties", {}).items():  # type: ignore[attr-defined]
            walk(sub, f"{path}{name}.")

    walk(SCHEMA, "")
