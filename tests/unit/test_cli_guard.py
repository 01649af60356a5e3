"""The command line's last guard: an unexpected error is one line and exit 1, never a traceback
(PEAKEND_TRACEBACK=true shows it)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.replay
from pipeline import cli


def boom(_args: object) -> int:
    raise RuntimeError("Code: 252. DB::Exception: something the command did not expect\nmore")


def test_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(pipeline.replay, "run", boom)
    monkeypatch.delenv("PEAKEND_TRACEBACK", raising=False)
    assert cli.main(["replay", str(tmp_path / "e.jsonl"), "--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("peakend replay: RuntimeError: Code: 252.")
    assert "PEAKEND_TRACEBACK=true" in err


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pipeline.replay, "run", boom)
    monkeypatch.setenv("PEAKEND_TRACEBACK", "true")
    with pytest.raises(RuntimeError, match="did not expect"):
        cli.main(["replay", str(tmp_path / "e.jsonl"), "--output", str(tmp_path)])
