"""bench/claims_parts_cost.py: both paths emit the same records on data without copies under
two keys, and the report is one line per round and a ratio."""

from __future__ import annotations

import re
import sys

import pytest

from bench import bench_core, claims_parts_cost
from pipeline.core.config import CoreConfig


def test_the_parts_change_nothing_on_events_without_copies_under_two_keys() -> None:
    events = bench_core.generate(3_000)
    one = claims_parts_cost.engine_path(4, 1)(events, CoreConfig())
    assert one > 0 and claims_parts_cost.engine_path(4, 4)(events, CoreConfig()) == one


def test_the_report_gives_each_round_and_the_ratio(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["claims_parts_cost", "--events", "500", "--rounds", "1",
                                      "--partitions", "3"])
    claims_parts_cost.main()
    out = capsys.readouterr().out
    assert len(re.findall(r"^round 1: claims in (1|3) part\(s\): [\d,]+ events per CPU second$",
                          out, re.M)) == 2
    assert re.search(r"one part [\d,]+, 3 parts [\d,]+ events per CPU second: x[\d.]+$", out)


def test_bad_arguments_get_one_line(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["claims_parts_cost", "--partitions", "1"])
    with pytest.raises(SystemExit) as exited:
        claims_parts_cost.main()
    assert exited.value.code == 2
    assert "--partitions" in capsys.readouterr().err
