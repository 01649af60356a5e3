"""bench/run_all.py: the first day and the steady state of the 1-worker stream, side by side."""

from __future__ import annotations

from bench.bench_pipeline import Throughput
from bench.run_all import FULL, QUICK, run_labels, steady_note, steady_verdict


def run(seconds: float, cpu_seconds: float = 2.0, workers: int = 1) -> Throughput:
    return Throughput(workers=workers, events=20_000, seconds=seconds, produce_seconds=1.0,
                      worker_cpu_seconds=cpu_seconds, load="1.0 1.0 1.0",
                      cpu_seconds_by_role={"worker": cpu_seconds})


def test_the_steady_state_is_the_last_later_day_and_absent_without_one() -> None:
    day2, day3 = run(3.0), run(4.0, cpu_seconds=3.0)
    assert steady_note([], "rate") == ""
    rate = steady_note([day2, day3], "rate")
    assert rate.startswith("; **steady state** (day 3 of event time") and "5,000 events/s" in rate
    assert "150 us (worker 150 us)" in steady_note([day2, day3], "cpu")


def test_the_verdict_names_both_when_the_steady_state_was_measured() -> None:
    assert steady_verdict(True, None) == "**met**"
    assert steady_verdict(False, None) == "**missed**"
    assert steady_verdict(True, False) == "first day **met**; steady state **missed**"


def test_the_runs_are_named_in_the_report_order() -> None:
    first, day2, two = run(2.0), run(3.0), run(1.0, workers=2)
    assert run_labels(first, [day2], two) == [("1 worker, first day", first),
                                              ("1 worker, day 2", day2),
                                              ("2 workers, first day", two)]
    inside1, inside2 = run(2.5), run(3.5)
    assert run_labels(first, [day2], two, [inside1, inside2])[3:] == [
        ("1 worker, stage two inside, first day", inside1),
        ("1 worker, stage two inside, day 2", inside2)]


def test_the_full_run_measures_two_later_days_and_the_quick_one_none() -> None:
    assert FULL.later_days == 2 and QUICK.later_days == 0
