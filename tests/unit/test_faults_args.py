"""`bench.faults` reads its arguments before it starts anything: a wrong `--kill-span` is a
one-line error naming the option, not a scenario that fails minutes into a run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.faults import main, span_start


@pytest.mark.parametrize("span", ["abc", "0", "-3d", "nan", "200w5"])
def test_a_kill_span_that_is_not_a_duration_is_refused_by_name(
        span: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--only", "kill", "--kill-span", span])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --kill-span" in err and "Traceback" not in err


def test_a_kill_span_in_days_is_taken_as_written() -> None:
    from bench.faults import event_span

    assert event_span("3d") == "3d" and event_span("36h") == "36h"


@pytest.mark.parametrize(("option", "value"), [("--kill-rate", "0"), ("--kill-rate", "nan"),
                                               ("--kill-rate", "fast"), ("--repeat", "0"),
                                               ("--repeat", "1.5"), ("--repeat", "-2")])
def test_a_rate_or_repeat_count_not_above_zero_is_refused_by_name(
        option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--only", "kill", option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


@pytest.mark.parametrize(("script", "option", "value"), [
    ("sim_restarts", "--every", "0"), ("sim_restarts", "--lags", "0"),
    ("sim_restarts", "--lags", "1,x"), ("sim_restarts", "--span", "3x"),
    ("sim_restarts", "--events", "-5"), ("sim_long_span", "--flush", "0"),
    ("sim_long_span", "--span", "14q"), ("sim_long_span", "--events", "0")])
def test_sim_scripts_refuse_a_wrong_argument_by_name(
        script: str, option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    sim_main = importlib.import_module(f"bench.{script}").main
    with pytest.raises(SystemExit) as exit_:
        sim_main([option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_generated_fault_inputs_end_a_day_before_today() -> None:
    # an event ahead of the wall clock is a `future` dead letter: a long span moves back
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    assert span_start("2026-10-01T00:00:00Z", "3d", now) == "2026-10-01T00:00:00Z"
    assert span_start("2026-10-01T00:00:00Z", "64d", now) == "2026-10-01T00:00:00Z"
    assert span_start("2026-10-01T00:00:00Z", "65d", now) == "2026-09-30T00:00:00Z"
    assert span_start("2026-10-01T00:00:00Z", "100d", now) == "2026-08-26T00:00:00Z"


def test_keep_failed_must_be_a_writable_directory(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Checked when the arguments are read, not minutes into a run when a failure is kept."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["--keep-failed", str(a_file / "sub"), "--only", "kill"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --keep-failed" in err and "not a writable directory" in err
    assert "Traceback" not in err
