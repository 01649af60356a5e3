"""bench/spy_diff.py: two py-spy profiles in CPU microseconds per input event."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.spy_diff import profile_arg, rows

STACK = ("run (pipeline/worker_cli.py:57);SegmentsAgent.process (pipeline/stream/agents.py:200);"
         "SegmentStage._advance (pipeline/stream/segments.py:286)")


def test_samples_become_microseconds_per_event_and_growth_comes_first(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(f"{STACK} 7\n")
    # a second profile sampled half as often over twice the events: each sample weighs 4x
    second.write_text(f"{STACK} 65\nrun (pipeline/worker_cli.py:57) 5\n")
    a = profile_arg(f"{first}:100000:100")
    b = profile_arg(f"{second}:200000:50")
    assert a.us_per_sample == pytest.approx(0.1) and b.us_per_sample == pytest.approx(0.1)
    lines = rows(a, b, "inclusive", top=3)
    # every peakend frame counted once per sample, inclusive; the largest growth first
    assert [line.split() for line in lines] == [
        ["0.7", "7.0", "+6.3", "pipeline.worker_cli.run"],
        ["0.7", "6.5", "+5.8", "pipeline.stream.agents.SegmentsAgent.process"],
        ["0.7", "6.5", "+5.8", "pipeline.stream.segments.SegmentStage._advance"]]
    assert rows(a, b, "stages", top=1)[0].split()[:3] == ["0.7", "6.5", "+5.8"]


@pytest.mark.parametrize("text", ["x.txt", "x.txt:10", "x.txt:ten:50", "x.txt:0:50",
                                  "x.txt:10:-1", "x.txt:10:nan", "x.txt:10:inf",
                                  "missing.txt:10:50"])
def test_a_bad_profile_argument_is_a_one_line_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "x.txt").write_text(f"{STACK} 1\n")
    with pytest.raises(argparse.ArgumentTypeError):
        profile_arg(str(tmp_path / text))
