"""The published schema gives `peakend validate`'s verdicts in Python, Node and Go.

tests/portable_contract/corpus.jsonl (built by portable_corpus.py) holds each record with the
verdict of `peakend validate`. Python's jsonschema, Ajv 2020 in strict mode (Node) and
santhosh-tekuri/jsonschema v6 (Go, RE2 regular expressions), each decoding JSON as a producer in
that language would, must agree with it on every record, except those rejected by a rule JSON
Schema cannot state (`beyond_schema`; docs/contract.md lists them): `peakend validate` and the
producer library reject those, a generic validator may not. scripts/setup-tools.sh installs the
Node and Go validators (`make setup` runs it).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from portable_corpus import BEYOND_SCHEMA, CORPUS_PATH, build, render

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "schemas" / "touchpoint-event.v1.json"
NODE_CHECK = ROOT / "tests" / "portable_contract" / "node" / "validate.mjs"
GO_CHECK = ROOT / "build" / "contract-check-go"
SETUP = "bash scripts/setup-tools.sh"

CORPUS: list[dict[str, Any]] = [json.loads(line) for line in
                                CORPUS_PATH.read_text(encoding="utf-8").splitlines()]


def _strict_json(text: str) -> Any:
    """RFC 8259 JSON as Python reads it (no NaN/Infinity, which Python's json would take)."""
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=no_constant)


def python_verdicts() -> dict[str, bool]:
    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    verdicts = {}
    for record in CORPUS:
        try:
            value = _strict_json(base64.b64decode(record["b64"]).decode("utf-8"))
        except (ValueError, RecursionError):
            verdicts[record["name"]] = False
            continue
        verdicts[record["name"]] = validator.is_valid(value)
    return verdicts


def _run(command: list[str]) -> dict[str, bool]:
    done = subprocess.run([*command, str(SCHEMA_PATH), str(CORPUS_PATH)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{command[-1]} failed: {done.stderr.strip()}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["name"] for line in lines] == [record["name"] for record in CORPUS]
    return {line["name"]: line["valid"] for line in lines}


def node_verdicts() -> dict[str, bool]:
    modules = NODE_CHECK.parent / "node_modules" / "ajv"
    assert modules.is_dir(), f"Ajv is not installed: run {SETUP}"
    return _run(["node", str(NODE_CHECK)])


def go_verdicts() -> dict[str, bool]:
    assert GO_CHECK.is_file(), f"{GO_CHECK.relative_to(ROOT)} is not built: run {SETUP}"
    return _run([str(GO_CHECK)])


VALIDATORS: dict[str, Callable[[], dict[str, bool]]] = {
    "python-jsonschema": python_verdicts, "node-ajv-strict": node_verdicts,
    "go-santhosh-tekuri": go_verdicts,
}


def test_corpus_file_is_current() -> None:
    assert CORPUS_PATH.read_text(encoding="utf-8") == render(build()), (
        "corpus.jsonl is stale: run .venv/bin/python tests/unit/contract/portable_corpus.py")


def test_corpus_covers_both_verdicts_and_every_beyond_schema_rule() -> None:
    verdicts = {record["peakend"] for record in CORPUS}
    assert {"accepted", "invalid", "not_json", "not_utf8", "not_object", "too_large"} <= verdicts
    assert {record["beyond_schema"] for record in CORPUS} - {None} == set(BEYOND_SCHEMA)


def test_beyond_schema_rules_are_documented() -> None:
    contract = (ROOT / "docs" / "contract.md").read_text()
    section = contract.split("## Rules JSON Schema cannot express", 1)[1].split("\n## ", 1)[0]
    for name in BEYOND_SCHEMA:
        assert f"`{name}`" in section, f"docs/contract.md does not explain {name}"


def test_schema_has_no_lookahead_for_re2() -> None:
    patterns = re.findall(r'"pattern": "([^"]*)"', SCHEMA_PATH.read_text())
    assert patterns
    assert not [p for p in patterns if "(?" in p.replace("(?:", "")], "RE2 has no lookaround"


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
def test_validator_agrees_with_peakend_validate(validator: str) -> None:
    verdicts = VALIDATORS[validator]()
    disagreements = []
    for record in CORPUS:
        peakend_accepts = record["peakend"] == "accepted"
        if record["beyond_schema"] is not None:
            continue
        if verdicts[record["name"]] != peakend_accepts:
            theirs = "accepts" if verdicts[record["name"]] else "rejects"
            disagreements.append(f"{record['name']}: peakend {record['peakend']}, "
                                 f"{validator} {theirs}")
    assert not disagreements, "\n".join(disagreements)


def test_beyond_schema_records_show_the_gap() -> None:
    # Each such rule is a real gap: some validator's verdict differs from peakend's on a record.
    all_verdicts = [run() for run in VALIDATORS.values()]
    differing = {record["beyond_schema"] for record in CORPUS for verdicts in all_verdicts
                 if verdicts[record["name"]] != (record["peakend"] == "accepted")}
    assert differing - {None} == set(BEYOND_SCHEMA)
