"""Helpers for the command-line tests: run `peakend` in process or as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs.generate import GeneratorConfig, encode_event, generate_events
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[2]
# the generated events are dated November 2026: they reached us well before this
NOW = "2030-01-01T00:00:00Z"


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The error line; argparse prints its usage lines before it, we print nothing else."""
        assert "Traceback" not in self.err + self.out
        lines = self.err.strip().splitlines()
        assert lines, "no error message"
        if lines[-1].startswith("peakend ") and ": error: argument" in lines[-1]:
            return lines[-1]  # argparse: usage, then one line naming the option
        assert len(lines) == 1, self.err
        return lines[0]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Outcome:
    """`peakend ARGV` in this process; argparse's exit becomes a status like any other."""
    capsys.readouterr()
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return Outcome(status, captured.out, captured.err)


def cli_process(*argv: str, stdin: bytes | None = None) -> Outcome:
    """`peakend ARGV` as a separate process, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=120, check=False)
    return Outcome(proc.returncode, proc.stdout.decode(errors="replace"),
                   proc.stderr.decode(errors="replace"))


def valid_lines(n: int = 6, seed: int = 3) -> list[bytes]:
    """`n` valid schema-v1 events as compact JSON lines."""
    return [encode_event(e) for e in generate_events(GeneratorConfig(events=n, seed=seed))]
