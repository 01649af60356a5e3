"""The parser and the published JSON Schema give the same verdict on every record."""

from __future__ import annotations

import json

import pytest
from contract_corpus import INVALID, SCHEMA_EXAMPLES, VALID
from contract_oracle import SCHEMA, VALIDATOR, is_rfc3339_date_time, schema_accepts
from jsonschema import Draft202012Validator

from pipeline.contract import Rejected, parse_event

CORPUS = [(name, data) for name, data in VALID] + [(c.name, c.data) for c in INVALID]


def parser_accepts(data: bytes) -> bool:
    try:
        parse_event(data)
    except Rejected:
        return False
    return True


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_field_has_a_description_and_examples() -> None:
    def walk(node: dict[str, object], path: str) -> None:
        for name, sub in node.get("properties", {}).items():  # type: ignore[attr-defined]
            assert sub.get("description"), f"{path}{name} has no description"
            assert sub.get("examples"), f"{path}{name} has no examples"
            walk(sub, f"{path}{name}.")

    walk(SCHEMA, "")


def test_schema_examples_cover_every_type() -> None:
    assert {e["type"] for e in SCHEMA_EXAMPLES} == {"interaction", "survey", "journey_end",
                                                    "outcome"}


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[name for name, _ in CORPUS])
def test_parser_agrees_with_schema(name: str, data: bytes) -> None:
    assert parser_accepts(data) == schema_accepts(data)


def test_corpus_verdicts_are_the_intended_ones() -> None:
    assert all(schema_accepts(data) for _, data in VALID)
    assert not any(schema_accepts(case.data) for case in INVALID)


def test_integer_rule_is_stricter_than_plain_json_schema() -> None:
    # Documented in the schema: a generic validator accepts 9.0; v1 does not.
    obj = json.loads(VALID[1][1])
    obj["type"] = "survey"
    obj["survey"] = {"nps": 9.0}
    assert Draft202012Validator(SCHEMA).is_valid(obj)
    assert not VALIDATOR.is_valid(obj)


def test_date_time_checker_matches_rfc3339_validator_when_installed() -> None:
    try:
        from rfc3339_validator import validate_rfc3339
    except ImportError:  # optional: the oracle is self-contained
        validate_rfc3339 = None
    samples = ["2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2028-02-29T00:00:00Z",
               "0000-01-01T00:00:00Z", "2026-01-01T00:00:00.5+01:00", "2026-01-01T00:00:60Z",
               "2026-01-01T00:00:00", "2026-01-01t00:00:00z"]
    for text in samples:
        if validate_rfc3339 is not None:
            assert is_rfc3339_date_time(text) == validate_rfc3339(text.upper()), text
    assert not is_rfc3339_date_time("2026-13-01T00:00:00Z")
    assert is_rfc3339_date_time("2028-02-29T00:00:00Z")
