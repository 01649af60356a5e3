"""The parser's limits are the published schema's, number for number and character for
character; a change on one side only fails here."""

from __future__ import annotations

from contract_oracle import SCHEMA

from pipeline.contract import decoding, parser


def test_limits_match_the_schema() -> None:
    props = SCHEMA["properties"]
    assert props["event_id"]["maxLength"] == parser.EVENT_ID_MAX
    for name in ("producer", "customer_id", "journey_id", "touchpoint"):
        assert props[name]["maxLength"] == parser.TEXT_MAX, name
        assert props[name]["minLength"] == 1, name
    signals = props["signals"]["properties"]
    for name in ("wait_seconds", "handle_seconds"):
        assert (signals[name]["minimum"], signals[name]["maximum"]) == (0, parser.SECONDS_MAX)
    assert (signals["transfers"]["minimum"], signals["transfers"]["maximum"]) == (
        0, parser.TRANSFERS_MAX)
    assert signals["transfers"]["maximum"] == 2**31 - 1  # the Nullable(Int32) column
    assert props["survey"]["properties"]["comment"]["maxLength"] == parser.COMMENT_MAX
    attributes = props["attributes"]
    assert attributes["maxProperties"] == parser.ATTRIBUTES_MAX
    assert attributes["additionalProperties"]["maxLength"] == parser.ATTRIBUTE_VALUE_MAX
    assert props["occurred_at"]["pattern"] == parser.OCCURRED_AT_PATTERN
    assert str(decoding.MAX_DEPTH) in SCHEMA["description"]


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
