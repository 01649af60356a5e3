from __future__ import annotations

import json
from pathlib import Path

import pytest
from contract_corpus import INVALID, VALID

from pipeline.cli import main
from pipeline.contract.dead_letters import DeadLetter


def write_mixed(path: Path) -> tuple[int, int]:
    lines = [data for _, data in VALID if b"\n" not in data]
    bad = [case.data for case in INVALID if b"\n" not in case.data and case.data.strip()]
    path.write_bytes(b"\n".join(lines + bad) + b"\n\n")
    return len(lines), len(bad)


def test_clean_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.jsonl"
    path.write_bytes(b"\n".join(data for _, data in VALID[:4]) + b"\n")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "4 records: 4 valid, 0 rejected"


def test_bad_lines_are_listed_with_line_number_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(VALID[0][1] + b"\n\n" + b'{"event_id": "e7"}\n' + b"nope\n")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}:3: invalid: schema_version: required field is missing"
    assert out[1].startswith(f"{path}:4: not_json: not JSON: Expecting value")
    assert out[2] == "3 records: 1 valid, 2 rejected (invalid 1, not_json 1)"


def test_json_mode_prints_dead_letters(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mixed.jsonl"
    good, bad = write_mixed(path)
    assert main(["validate", "--json", str(path)]) == 1
    captured = capsys.readouterr()
    letters = [DeadLetter.from_json(line.encode()) for line in captured.out.splitlines()]
    assert len(letters) == bad
    assert all(letter.source_topic == str(path) for letter in letters)
    lines = path.read_bytes().split(b"\n")
    for letter in letters:
        assert lines[letter.source_offset - 1].rstrip(b"\r") == letter.original
    assert f"{good + bad} records: {good} valid, {bad} rejected" in captured.err
    json.loads(captured.out.splitlines()[0])


def test_max_bytes_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(VALID[0][1] + b"\n")
    assert main(["validate", "--max-bytes", "100", str(path)]) == 1
    assert "too_large" in capsys.readouterr().out


def test_missing_file_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
