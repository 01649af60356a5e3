"""bench/bench_segment_members.py measures what it says (docs/streaming.md, Known limits)."""

from __future__ import annotations

import pytest

from bench import bench_segment_members


def test_it_counts_every_member_and_a_plausible_size(capsys: pytest.CaptureFixture[str]) -> None:
    per_member = bench_segment_members.bytes_per_member(300)
    # a dict entry, an index entry and a state key each at the least; far less than a KiB
    assert 100 < per_member < 1000, per_member
    bench_segment_members.main(["--journeys", "300"])
    out = capsys.readouterr().out
    assert "300 journeys x 6 segments" in out and "1 per bucket" in out


def test_the_journey_count_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        bench_segment_members.main(["--journeys", "0"])
