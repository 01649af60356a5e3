"""The offset gate: agents receive each partition's records in offset order, without holes or
repeats, whatever order, repeats and holes the fetches bring (issue 20)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stream.offset_gate import OffsetGate, Verdict


def test_a_partition_never_committed_starts_at_its_first_offset() -> None:
    # The cluster run's loss: no committed offset, the position after the rebalance already at 3.
    gate = OffsetGate()
    gate.reset("p7", committed=None)
    assert gate.commit_floor("p7") is None  # unknown: nothing may be committed yet
    gate.start_at("p7", 0)
    assert gate.admit("p7", 3, now=0.0) is Verdict.SEEK
    assert gate.expected("p7") == 0 and gate.commit_floor("p7") == 0


def test_a_committed_offset_below_the_log_start_moves_up_to_it() -> None:
    gate = OffsetGate()
    gate.reset("p", committed=5)
    gate.start_at("p", 9)  # retention deleted 5-8
    assert gate.expected("p") == 9 and gate.commit_floor("p") == 9
    gate.reset("p", committed=12)
    assert gate.start_at("p", 9) == 0 and gate.expected("p") == 12
    assert gate.admit("p", 20, now=0.0) is Verdict.SEEK
    assert gate.start_at("p", 20) == 8  # retention deleted 12-19 before they were read
    assert gate.admit("p", 20, now=0.0) is Verdict.DELIVER


def test_a_seek_back_is_repeated_only_after_its_refetch_is_overdue() -> None:
    gate = OffsetGate(reseek_seconds=5.0)
    gate.reset("p", committed=10)
    assert gate.admit("p", 14, now=100.0) is Verdict.SEEK
    assert gate.admit("p", 15, now=104.0) is Verdict.WAIT
    assert gate.admit("p", 16, now=105.5) is Verdict.SEEK
    assert gate.admit("p", 10, now=106.0) is Verdict.DELIVER
    assert gate.admit("p", 12, now=106.0) is Verdict.SEEK  # a new hole seeks at once


def test_ungated_and_forgotten_partitions() -> None:
    gate = OffsetGate()
    gate.reset("p", committed=3)
    assert gate.gates("p") and not gate.gates("q")
    gate.forget("p")
    assert not gate.gates("p") and gate.commit_floor("p") is None


@settings(max_examples=300, deadline=None)
@given(committed=st.integers(0, 50), log_start=st.integers(0, 60),
       fetches=st.lists(st.tuples(st.integers(-5, 30), st.integers(1, 8)), max_size=25))
def test_whatever_the_fetches_bring_the_agents_see_a_contiguous_run(
        committed: int, log_start: int, fetches: list[tuple[int, int]]) -> None:
    """A fetch reads `length` records from a position: the broker's log is contiguous from
    `log_start`. Fetches start anywhere (stale positions, repeats, holes); after a SEEK the next
    fetch starts at the gate's expected offset, as the consumer's does."""
    gate = OffsetGate(reseek_seconds=0.0)
    gate.reset("p", committed=committed or None)
    gate.start_at("p", log_start)
    first = max(committed, log_start)
    delivered: list[int] = []
    sought: int | None = None
    for shift, length in fetches:
        start = sought if sought is not None else max(log_start, first + shift)
        sought = None
        for offset in range(start, start + length):
            verdict = gate.admit("p", offset, now=0.0)
            if verdict is Verdict.DELIVER:
                delivered.append(offset)
            elif verdict is Verdict.SEEK:
                sought = gate.expected("p")
                break
    assert delivered == list(range(first, first + len(delivered)))
    assert gate.expected("p") == first + len(delivered)
