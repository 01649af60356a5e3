"""PEAKEND_FOLLOWUP_RULES: a tuned copy of the follow-up rules (docs/followups.md, "Tuning") is
what `peakend replay` and `peakend worker` apply; a bad one stops them with one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.contract import event_to_json
from pipeline.core.event import Survey
from pipeline.followup_rules import DEFAULT_RULES_PATH
from tests.unit.core.scenarios import MIN, T0, event

NOW = ["--now", "2027-06-01T00:00:00Z"]


def tuned_rules(tmp_path: Path, detractor_at_most: int, version: int = 2) -> Path:
    """The bundled rules with the detractor threshold moved (a CX team calling back 0-2 only)."""
    data = json.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    data["version"] = version
    for trigger in data["triggers"]:
        if trigger["name"] == "detractor":
            trigger["at_most"] = detractor_at_most
    path = tmp_path / f"rules-{detractor_at_most}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def answers(tmp_path: Path) -> Path:
    """Two customers' NPS answers: a 1 and a 5 (both detractors by the NPS classes)."""
    lines = [event_to_json(event("s-1", T0, customer="c1", type="survey", touchpoint="chat",
                                 survey=Survey(nps=1))),
             event_to_json(event("s-5", T0 + MIN, customer="c5", type="survey",
                                 touchpoint="chat", survey=Survey(nps=5)))]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def cases_of(directory: Path) -> dict[str, tuple[str, int]]:
    lines = (directory / "followups.jsonl").read_text(encoding="utf-8").splitlines()
    return {c["customer_id"]: (c["trigger"], c["rules_version"])
            for c in map(json.loads, lines) if c["status"] != "withdrawn"}


def test_replay_applies_the_rules_file_the_setting_names(
        answers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEAKEND_FOLLOWUP_RULES", raising=False)
    assert main(["replay", str(answers), "--output", str(tmp_path / "bundled"), *NOW]) == 0
    assert cases_of(tmp_path / "bundled") == {"c1": ("detractor", 1), "c5": ("detractor", 1)}
    monkeypatch.setenv("PEAKEND_FOLLOWUP_RULES", str(tuned_rules(tmp_path, 2)))
    assert main(["replay", str(answers), "--output", str(tmp_path / "tuned"), *NOW]) == 0
    assert cases_of(tmp_path / "tuned") == {"c1": ("detractor", 2)}  # the 5 no longer opens one


@pytest.mark.parametrize("command", [["replay", "EVENTS", "--output", "OUT"], ["worker"]])
@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read the follow-up rules"),
    ("{not json", "not JSON"),
    ('{"version": 1}', "'cooldown_days' is a required property"),
])
def test_a_bad_rules_file_stops_the_command_with_one_line_naming_it(
        answers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], command: list[str], content: str | None,
        expected: str) -> None:
    rules = tmp_path / "my-rules.json"
    if content is not None:
        rules.write_text(content, encoding="utf-8")
    monkeypatch.setenv("PEAKEND_FOLLOWUP_RULES", str(rules))
    # the worker checks the file before it connects to anything: no broker is needed here
    monkeypatch.setenv("PEAKEND_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    argv = [{"EVENTS": str(answers), "OUT": str(tmp_path / "out")}.get(a, a) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(rules) in err and expected in err
    assert err.startswith(f"peakend {command[0]}: ")
    assert not (tmp_path / "out" / "followups.jsonl").exists()


def test_the_rules_version_is_a_positive_integer(tmp_path: Path) -> None:
    from pipeline.followup_rules import FollowupRulesError, load_rules

    assert load_rules(tuned_rules(tmp_path, 6, version=7)).version == 7
    for bad, expected in [(0, "0 is less than the minimum of 1"), ("2", "'2' is not of type")]:
        path = tuned_rules(tmp_path, 6)
        data = json.loads(path.read_text(encoding="utf-8"))
        data["version"] = bad
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(FollowupRulesError, match=f"at version: {expected}"):
            load_rules(path)
