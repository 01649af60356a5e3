"""bench/fuzz_fast_path.py: the long differential run of the parser's fast path finds a
disagreement when there is one, and reports none on the tree as it is."""

from __future__ import annotations

import random
import re
import sys

import pytest

from bench import fuzz_fast_path
from pipeline.contract import fast
from pipeline.contract.parser import parse_strict


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["fuzz_fast_path", "--events", "200", *args])
    return fuzz_fast_path.main()


def test_no_disagreement_on_the_tree_as_it_is(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, "--seconds", "2", "--seed", "5") == 0
    out = capsys.readouterr().out
    found = re.search(r"([\d,]+) mutants: ([\d,]+) accepted by the strict parser, ([\d,]+) of "
                      r"them by the fast path .*; 0 disagreements", out)
    assert found is not None, out
    tried, valid, fast_path = (int(found[i].replace(",", "")) for i in (1, 2, 3))
    assert tried > 1000 and 0 < fast_path <= valid < tried


def test_a_fast_path_that_accepts_what_it_should_not_is_reported(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A fast path that gives an event for records it should decline: the run reports them
    and exits 1."""
    real = fast.parse_valid
    template = fast.parse_valid(b'{"event_id":"e1","schema_version":1,"occurred_at":'
                                b'"2026-11-22T17:10:09Z","producer":"p","customer_id":"c",'
                                b'"type":"interaction","touchpoint":"t","channel":"web",'
                                b'"stage":"use"}')
    assert template is not None

    def careless(data: bytes, max_bytes: int = 65536) -> object:
        made = real(data, max_bytes)
        if made is None and b'"event_id"' in data:
            return template  # accepts what the real one declines (and the strict one rejects)
        return made

    monkeypatch.setattr(fast, "parse_valid", careless)
    assert run(monkeypatch, "--seconds", "1", "--seed", "6") == 1
    out = capsys.readouterr().out
    assert re.search(r"; [1-9][\d,]* disagreements", out), out
    assert "the fast path accepted what the strict parser rejects" in out \
        or "the two parsers' events differ" in out


def test_mutants_are_many_and_get_more_than_one_verdict() -> None:
    rng = random.Random(1)
    seed = b'{"event_id":"e1","schema_version":1}'
    mutants = {fuzz_fast_path.mutate(seed, rng) for _ in range(200)}
    assert len(mutants) > 150
    verdicts = set()
    for data in mutants:
        try:
            parse_strict(data)
            verdicts.add("accepted")
        except Exception as exc:  # Rejected: its reason
            verdicts.add(getattr(exc, "reason", type(exc).__name__))
    assert len(verdicts) >= 2, verdicts
