"""bench/run_all.py: the 1-worker throughput figure of record is the median of its runs."""

from __future__ import annotations

from bench.bench_pipeline import Throughput
from bench.run_all import FULL, QUICK, median_run, runs_note


def run(seconds: float, cpu_seconds: float = 2.0) -> Throughput:
    return Throughput(workers=1, events=20_000, seconds=seconds, produce_seconds=1.0,
                      worker_cpu_seconds=cpu_seconds, load="1.0 1.0 1.0")


def test_the_median_run_is_one_of_the_runs_with_the_middle_rate() -> None:
    slow, middle, fast = run(4.0), run(2.0, cpu_seconds=3.0), run(1.0)
    assert median_run([fast, slow, middle]) is middle
    assert median_run([slow]) is slow
    # an even count: the lower of the two middle rates, never a mean no run had
    assert median_run([run(1.0), run(2.0), run(3.0), run(4.0)]).seconds == 3.0


def test_the_note_lists_every_run_and_says_nothing_for_one() -> None:
    assert runs_note([run(2.0)]) == ""
    note = runs_note([run(2.0), run(1.0, cpu_seconds=1.0), run(4.0)])
    assert note == ("; the median of 3 runs back to back on one worker: 10,000 (100 us), "
                    "20,000 (50 us), 5,000 (100 us)")


def test_the_full_run_repeats_the_throughput_phase_and_the_quick_one_does_not() -> None:
    assert FULL.e2e_runs == 3 and QUICK.e2e_runs == 1
