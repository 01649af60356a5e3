"""One class per metric kind (pipeline/core/surveys.py, issue 19 item 3): each owns its counts,
merge (`+=`), retraction, vector layout, record columns, interval and two-sample test. River's
model: `update` / `revert` undo each other, and partial accumulators of any split of the answers
merge to the accumulator of all of them (the parallel-merge test)."""

from __future__ import annotations

import math
import statistics
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import vectors
from pipeline.core.buckets import Partial, to_record, window_of
from pipeline.core.config import DropConfig
from pipeline.core.drops import min_effects
from pipeline.core.protocol import Accumulator
from pipeline.core.records import COUNT_COLUMNS
from pipeline.core.surveys import (
    WINDOW_TYPES,
    CesWindow,
    CsatWindow,
    Estimate,
    NegativeEndWindow,
    NpsWindow,
    SurveyWindow,
)

ANSWERS: dict[str, st.SearchStrategy[Any]] = {
    "nps": st.integers(0, 10),
    "ces": st.integers(2, 14).map(lambda x: x / 2),  # the 1-7 scale in halves
    "csat": st.integers(1, 5),
    "negative_end": st.booleans(),
}
# Every kind is an Accumulator of answers to an Estimate: mypy checks each against the protocol.
KINDS: list[Accumulator[Any, Estimate]] = [NpsWindow(), CesWindow(), CsatWindow(),
                                           NegativeEndWindow()]


AccT = TypeVar("AccT", bound=Accumulator[Any, Estimate])


def fold(acc: AccT, answers: list[Any]) -> AccT:
    for answer in answers:
        acc.update(answer)
    return acc


def counts(acc: SurveyWindow) -> list[float]:
    return acc.vector()


def test_the_registry_names_every_kind_by_its_records_metric() -> None:
    assert [type(k) for k in KINDS] == list(WINDOW_TYPES.values())
    assert all(kind.metric == name for name, kind in WINDOW_TYPES.items())
    assert vectors.METRICS == ("nps", "ces", "csat", "negative_end")


def test_the_drop_detector_asks_the_kind() -> None:
    """The detector holds each series' kind, not its name (issue 19 item 3): every kind has its
    minimum effect, and the kind counted when a journey closes is the one evaluated later."""
    assert set(min_effects(DropConfig())) == set(WINDOW_TYPES.values())
    assert [k.metric for k in WINDOW_TYPES.values() if k.counted_at_close] == ["negative_end"]


def test_the_answer_kinds_are_the_kinds_not_counted_at_close() -> None:
    """`ANSWER_WINDOWS` (the kinds a segment updates and reverts answer by answer) are exactly
    the kinds of `WINDOW_TYPES` counted when an answer arrives."""
    from pipeline.core.surveys import ANSWER_WINDOWS
    counted_on_arrival = {name: kind for name, kind in WINDOW_TYPES.items()
                          if not kind.counted_at_close}
    assert counted_on_arrival == ANSWER_WINDOWS


@pytest.mark.parametrize("metric", list(WINDOW_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_partial_accumulators_of_any_split_merge_to_the_whole(metric: str, data: Any) -> None:
    kind = WINDOW_TYPES[metric]
    answers = data.draw(st.lists(ANSWERS[metric], max_size=60))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(answers)), max_size=4)))
    parts = [answers[a:b] for a, b in zip([0, *cuts], [*cuts, len(answers)], strict=True)]
    whole = fold(kind(), answers)
    merged = kind()
    in_place = kind()
    for part in parts:
        acc = fold(kind(), part)
        merged = merged.merge(acc)  # type: ignore[arg-type]
        in_place += acc  # type: ignore[operator]
    assert counts(merged) == counts(in_place) == counts(whole)
    assert merged.result() == whole.result()
    # the order of the merges does not matter either
    reverse = kind()
    for part in reversed(parts):
        reverse = fold(kind(), part).merge(reverse)  # type: ignore[arg-type]
    assert counts(reverse) == counts(whole)


@pytest.mark.parametrize("metric", ["nps", "ces", "csat"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_revert_takes_back_exactly_what_update_added(metric: str, data: Any) -> None:
    kind = WINDOW_TYPES[metric]
    kept = data.draw(st.lists(ANSWERS[metric], max_size=40))
    withdrawn = data.draw(st.lists(ANSWERS[metric], max_size=20))
    acc = fold(kind(), kept + withdrawn)
    for answer in data.draw(st.permutations(withdrawn)):
        acc.revert(answer)  # type: ignore[union-attr]
    assert counts(acc) == counts(fold(kind(), kept))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([1, -1])), max_size=40))
def test_negative_end_deltas_retract_a_counted_journey(deltas: list[tuple[bool, int]]) -> None:
    acc = NegativeEndWindow()
    for negative, sign in deltas:
        acc.apply_delta(negative, sign)
    for negative, sign in deltas:
        acc.apply_delta(negative, -sign)
    assert counts(acc) == [0.0, 0.0]


@pytest.mark.parametrize("metric", list(WINDOW_TYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_vector_and_the_record_columns_round_trip(metric: str, data: Any) -> None:
    kind = WINDOW_TYPES[metric]
    acc = fold(kind(), data.draw(st.lists(ANSWERS[metric], max_size=40)))
    vector = acc.vector()
    assert len(vector) == len(kind.columns) == vectors.SIZE[metric]
    assert counts(kind.from_vector(vector)) == vector
    assert kind.count_of(vector) == acc.result().n == vectors.count(metric, vector)
    record = to_record(Partial(acc, (metric, "all", "all", 0), 3), 60_000, 2)
    assert record.metric == metric and record.version == 3 and record.n == acc.result().n
    assert vectors.vector_of(record) == vector
    assert counts(window_of(record)) == vector
    # `columns` is the layout: position i of the vector is the window's and the record's column
    # columns[i] (by name), and the kind writes no other count column of the record
    assert [float(getattr(acc, column)) for column in kind.columns] == vector
    assert [float(getattr(record, column)) for column in kind.columns] == vector
    assert set(kind.columns) <= {"n", *COUNT_COLUMNS}
    assert list(acc.record_counts()) == [
        getattr(acc, column) if column in kind.columns else 0 for column in COUNT_COLUMNS]
    for column in COUNT_COLUMNS:
        if column not in kind.columns:
            assert getattr(record, column) == 0, column


@pytest.mark.parametrize("metric", list(WINDOW_TYPES))
def test_each_position_of_the_layout_is_its_named_column(metric: str) -> None:
    """A vector with a distinct number at each position: every layout method of the kind puts
    each number under the column `columns` names for that position (two columns swapped in one
    method only show here, where a vector of equal counts would hide it)."""
    kind = WINDOW_TYPES[metric]
    # descending, so the counts stay a possible sample (positives <= n, easy + hard <= n)
    vector = [float(4 * (len(kind.columns) - i)) for i in range(len(kind.columns))]
    window = kind.from_vector(vector)
    assert {c: float(getattr(window, c)) for c in kind.columns} == dict(
        zip(kind.columns, vector, strict=True))
    assert window.vector() == vector
    record = to_record(Partial(window, (metric, "all", "all", 0), 1), 60_000, 0)
    assert kind.vector_of(record) == vector
    assert kind.from_record(record).vector() == vector
    assert kind.count_of(vector) == window.n


def _p(effect: float, variance: float) -> float:
    """Two-sided normal p; without spread, certain (0) unless there is no effect (1)."""
    if variance <= 0:
        return 1.0 if effect == 0 else 0.0
    return math.erfc(abs(effect) / math.sqrt(variance) / math.sqrt(2))


def reference_test(metric: str, current: list[Any], baseline: list[Any]) -> tuple[float, float]:
    """The two-sample tests written out from the raw answers (docs/alerts.md): NPS and CES
    unpooled on per-answer variances, shares pooled."""
    if metric == "nps":
        def points(xs: list[int]) -> list[float]:
            return [100.0 if x >= 9 else -100.0 if x <= 6 else 0.0 for x in xs]
        a, b = points(current), points(baseline)
        effect = statistics.fmean(a) - statistics.fmean(b)
        return effect, _p(effect, statistics.pvariance(a) / len(a) + statistics.pvariance(b)
                          / len(b))
    if metric == "ces":
        def var(xs: list[float]) -> float:
            return statistics.variance(xs) if len(xs) > 1 else 0.0
        effect = statistics.fmean(current) - statistics.fmean(baseline)
        return effect, _p(effect, var(current) / len(current) + var(baseline) / len(baseline))
    def yes(xs: list[Any]) -> int:
        return sum(1 for x in xs if (x >= 4 if metric == "csat" else x))
    n1, n2 = len(current), len(baseline)
    effect = yes(current) / n1 - yes(baseline) / n2
    pooled = (yes(current) + yes(baseline)) / (n1 + n2)
    return effect, _p(effect, pooled * (1 - pooled) * (1 / n1 + 1 / n2))


@pytest.mark.parametrize("metric", list(WINDOW_TYPES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_each_kinds_two_sample_test_is_the_documented_one(metric: str, data: Any) -> None:
    kind = WINDOW_TYPES[metric]
    current = data.draw(st.lists(ANSWERS[metric], min_size=1, max_size=50))
    baseline = data.draw(st.lists(ANSWERS[metric], min_size=1, max_size=50))
    cur, base = fold(kind(), current), fold(kind(), baseline)
    effect, p = cur.compare(base)  # type: ignore[arg-type]  # one kind, seen as the union
    want_effect, want_p = reference_test(metric, current, baseline)
    assert effect == pytest.approx(want_effect, abs=1e-9)
    assert p == pytest.approx(want_p, abs=1e-9)
    assert vectors.two_sample(metric, cur.vector(), base.vector()) == (effect, p)
    assert vectors.compare(kind, cur.vector(), base.vector()) == (effect, p)


def test_an_empty_sample_tests_to_no_effect() -> None:
    for kind in WINDOW_TYPES.values():
        assert kind().compare(fold(kind(), [])) == (0.0, 1.0)  # type: ignore[arg-type]
