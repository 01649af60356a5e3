"""bench/bench_partitioner.py: one line, from keys really placed."""

from __future__ import annotations

import re
import sys

import pytest

from bench import bench_partitioner


def test_one_line_with_the_cost_per_key(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_partitioner", "--events", "300", "--rounds", "2"])
    assert bench_partitioner.main() == 0
    found = re.search(r"core (compiled|interpreted), .*; ([\d,]+) journey keys \(mean (\d+) "
                      r"characters\), 12 partitions: ([\d.]+) us per key, best of 2$",
                      capsys.readouterr().out.strip())
    assert found is not None
    assert int(found[2].replace(",", "")) > 0 and int(found[3]) > 0 and float(found[4]) > 0


def test_bad_arguments_get_one_line(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_partitioner", "--partitions", "0"])
    with pytest.raises(SystemExit) as exited:
        bench_partitioner.main()
    assert exited.value.code == 2
    assert "--partitions" in capsys.readouterr().err
