"""bench/bench_long_journey.py: its one journey holds every event, and its writes grow with it."""

from __future__ import annotations

import sys

import pytest

from bench import bench_long_journey


def test_the_journey_holds_every_event_and_its_write_grows(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_long_journey", "--days", "2",
                                      "--every-seconds", "600", "--rows", "2"])
    assert bench_long_journey.main() == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [cells[0].strip() for cells in rows] == ["1.0", "2.0"]
    entries = [int(cells[1].replace(",", "")) for cells in rows]
    assert entries == [144, 288]  # an event every 10 minutes, all in the one journey
    sizes = [int(cells[2].replace(",", "")) for cells in rows]
    assert sizes[1] > 1.8 * sizes[0]  # the key is written whole: its bytes follow its entries
