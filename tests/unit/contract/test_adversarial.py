"""The adversarial corpus (adversarial.py) through `peakend validate` and `peakend replay`.

For every case: the exit status, each line's verdict and dead-letter reason, the key words of
its message, and the books (lines read = results + duplicates + dead letters); no traceback
anywhere. Every case runs in-process; the whole corpus also runs once through a real
`peakend validate` process, and a few cases through a real `peakend replay` process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from adversarial import ACCEPTED, CASES, CONTRACT_REASONS, DUPLICATE, Case, Line
from contract_oracle import schema_accepts

from pipeline.cli import main
from pipeline.contract import Rejected, parse_event

PEAKEND = Path(sys.executable).with_name("peakend")
_SUMMARY = re.compile(r"read (\d+) records .*?, (\d+) applied, (\d+) duplicates dropped")
_DEAD = re.compile(r"^dead letters: (\d+)", re.MULTILINE)


def _write(path: Path, lines: tuple[Line, ...] | list[Line]) -> Path:
    for line in lines:
        # one record per line: a raw line break would split it, trailing \r\n is framing
        assert b"\n" not in line.data and not line.data.endswith(b"\r"), line
        assert line.data.strip(), "blank lines are skipped, not records"
    path.write_bytes(b"".join(line.data + b"\n" for line in lines))
    return path


def _check_letter(letter: dict[str, Any], line: Line, where: str) -> None:
    assert letter["reason"] == line.outcome, f"{where}: {letter['reason']}: {letter['error']}"
    for word in line.words:
        assert word in letter["error"], f"{where}: {word!r} not in {letter['error']!r}"
    assert len(letter["error"]) < 1000, f"{where}: message of {len(letter['error'])} chars"


def _replay_args(case: Case, path: Path, out: Path) -> list[str]:
    args = ["replay", str(path), "--output", str(out), *case.extra_args]
    if case.now is not None:
        args += ["--now", case.now]
    return args


def _check_replay(case: Case, out: Path, stdout: str) -> None:
    summary = _SUMMARY.search(stdout)
    dead = _DEAD.search(stdout)
    assert summary is not None and dead is not None, stdout
    read, applied, duplicates = (int(g) for g in summary.groups())
    letters = [json.loads(x) for x in (out / "dead_letters.jsonl").read_text().splitlines()]
    assert int(dead.group(1)) == len(letters)
    assert read == len(case.lines)
    assert read == applied + duplicates + len(letters), stdout  # nothing vanishes
    outcomes = Counter(line.outcome for line in case.lines)
    assert applied == outcomes[ACCEPTED]
    assert duplicates == outcomes[DUPLICATE]
    by_line = {letter["source_offset"]: letter for letter in letters}
    assert len(by_line) == len(letters)
    for number, line in enumerate(case.lines, start=1):
        if line.outcome in (ACCEPTED, DUPLICATE):
            assert number not in by_line, f"{case.name}:{number}: {by_line.get(number)}"
        else:
            _check_letter(by_line[number], line, f"{case.name}:{number}")


def test_the_corpus_is_large_and_covers_every_outcome() -> None:
    assert len(CASES) >= 200
    assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"
    outcomes = {line.outcome for case in CASES for line in case.lines}
    assert {ACCEPTED, DUPLICATE, "late", *CONTRACT_REASONS} <= outcomes


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name[:60])
def test_parser_and_published_schema_agree(case: Case) -> None:
    for line in case.lines:
        try:
            parse_event(line.data)
            ours = True
        except Rejected:
            ours = False
        try:
            theirs = schema_accepts(line.data)
        except RecursionError:  # the oracle's plain json.loads; the parser bounds depth first
            theirs = False
        assert ours == theirs == (line.contract_outcome == ACCEPTED), line.data[:200]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name[:60])
def test_validate_and_replay_give_each_line_its_verdict(
        case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "events.jsonl", case.lines)

    status = main(["validate", "--json", str(path)])
    captured = capsys.readouterr()
    rejected = [line for line in case.lines if line.contract_outcome != ACCEPTED]
    assert status == (1 if rejected else 0), captured.err
    letters = {}
    for text in captured.out.splitlines():
        letter = json.loads(text)
        letters[letter["source_offset"]] = letter
    assert len(letters) == len(rejected)
    for number, line in enumerate(case.lines, start=1):
        if line.contract_outcome == ACCEPTED:
            assert number not in letters, letters.get(number)
        else:
            _check_letter(letters[number], line, f"{case.name}:{number}")
    assert f"{len(case.lines)} records: " in captured.err

    out = tmp_path / "out"
    assert main(_replay_args(case, path, out)) == 0
    captured = capsys.readouterr()
    _check_replay(case, out, captured.out)
    assert "Traceback" not in captured.out + captured.err


def _env() -> dict[str, str]:
    # a real process with the defaults the corpus expects (size limit, lateness)
    return {k: v for k, v in os.environ.items() if not k.startswith("PEAKEND_")}


def test_peakend_validate_process_over_the_whole_corpus(tmp_path: Path) -> None:
    lines = [line for case in CASES for line in case.lines]
    path = _write(tmp_path / "all.jsonl", lines)
    proc = subprocess.run([str(PEAKEND), "validate", "--json", str(path)], capture_output=True,
                          timeout=300, env=_env(), check=False)
    assert b"Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 1
    letters = {}
    for text in proc.stdout.splitlines():
        letter = json.loads(text)
        letters[letter["source_offset"]] = letter
    for number, line in enumerate(lines, start=1):
        if line.contract_outcome == ACCEPTED:
            assert number not in letters
        else:
            _check_letter(letters[number], line, f"line {number}")
    rejected = sum(line.contract_outcome != ACCEPTED for line in lines)
    assert f"{len(lines)} records: {len(lines) - rejected} valid, {rejected} rejected" in (
        proc.stderr.decode())


@pytest.mark.parametrize("name", ["late after stream time moved 3 days",
                                  "bad lines do not move stream time or stop the file",
                                  "same event three times, re-encoded", "object nested 990"])
def test_peakend_replay_process(name: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == name)
    path = _write(tmp_path / "events.jsonl", case.lines)
    out = tmp_path / "out"
    proc = subprocess.run([str(PEAKEND), *_replay_args(case, path, out)], capture_output=True,
                          text=True, timeout=300, env=_env(), check=False)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    _check_replay(case, out, proc.stdout)
