"""bench/bench_stage_one_days.py: one line per day, from a stage one that really held state."""

from __future__ import annotations

import re
import sys

import pytest

from bench import bench_stage_one_days


def test_each_day_gets_its_line_from_state_really_held(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_stage_one_days", "--events", "400", "--days", "2",
                                      "--batch", "50", "--partitions", "2", "--sizes",
                                      "--profile", "3"])
    assert bench_stage_one_days.main() == 0
    out = capsys.readouterr().out
    days = re.findall(r"^day (\d): ([\d.]+) us per event \(collector ([\d.]+)\); resident "
                      r"([\d,]+) MiB; journey keys held ([\d,]+); journey records ([\d.]+), state "
                      r"pairs ([\d.]+) and bytes ([\d,]+) per event \(closed sessions (\d+)%\)$",
                      out, re.MULTILINE)
    assert [d[0] for d in days] == ["1", "2"]
    for _, per_event, collected, resident, keys, records, pairs, size, closed in days:
        assert float(per_event) > 0 and float(collected) <= float(per_event)
        assert int(resident.replace(",", "")) > 0 and int(keys.replace(",", "")) > 0
        assert float(records) > 0 and float(pairs) > 0
        assert int(size.replace(",", "")) > 0 and 0 <= int(closed) <= 100
    # --profile 3: three functions under each day, each with its time and calls per event
    assert len(re.findall(r"^ +[\d.]+ us +[\d.]+ calls  \S+", out, re.MULTILINE)) == 2 * 3


@pytest.mark.parametrize("argument", [["--days", "0"], ["--events", "x"], ["--batch", "-1"]])
def test_bad_arguments_get_one_line(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], argument: list[str]
                                    ) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_stage_one_days", *argument])
    with pytest.raises(SystemExit) as exited:
        bench_stage_one_days.main()
    assert exited.value.code == 2
    assert argument[0] in capsys.readouterr().err
