"""bench/fuzz_internal.py: mutated internal records never make an agent fail, and a failure is
reported when one does."""

from __future__ import annotations

import re
import sys

import pytest

from bench import fuzz_internal
from pipeline.stream import messages


def run(monkeypatch: pytest.MonkeyPatch, seconds: str, seed: str) -> int:
    monkeypatch.setattr(sys, "argv", ["fuzz_internal", "--events", "150", "--seconds", seconds,
                                      "--seed", seed])
    return fuzz_internal.main()


def test_no_agent_fails_on_mutated_records(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, "3", "5") == 0
    out = capsys.readouterr().out
    counts = dict(re.findall(r"(app-[a-z-]+) ([\d,]+)", out))
    assert set(counts) == set(fuzz_internal.AGENTS), out
    assert all(int(n.replace(",", "")) > 20 for n in counts.values()), out
    assert "; 0 made an agent fail" in out


def test_an_agent_that_fails_is_reported(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A contributions reader that lets a TypeError out (as the kind `[]` did before): the run
    names the topic, the exception and the place, and exits 1."""
    real = messages.read

    def careless(value: bytes) -> dict[str, object]:
        made = real(value)
        if len(value) % 2:
            raise TypeError("unhashable type: 'list'")
        return made

    monkeypatch.setattr(messages, "read", careless)
    assert run(monkeypatch, "2", "6") == 1
    out = capsys.readouterr().out
    assert re.search(r"\d+ x app-contributions: TypeError at \S+\.py:\d+: unhashable", out), out
