"""JourneyMoments as an accumulator: order independence, merges, and its kept numbers.

Small domains for times, ids and valences make ties common, which is where the tie-breaks
(negative peak wins, then earliest; latest end) and the kept copies of the entries' times and
valences could go wrong.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import moments
from pipeline.core.moments import Entry, JourneyMoments, new_entry, to_fixed

KINDS = ("interaction", "interaction", "interaction", "survey", "journey_end", "outcome")


@st.composite
def entries(draw: st.DrawFn, max_size: int = 12) -> list[Entry]:
    ids = draw(st.lists(st.integers(0, 40), unique=True, max_size=max_size))
    out = []
    for i in ids:
        kind = draw(st.sampled_from(KINDS))
        valence = None if kind in ("journey_end", "outcome") else draw(
            st.sampled_from((-1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0)))
        outcome = draw(st.sampled_from(("", "churn", "repurchase"))) if kind == "outcome" else ""
        out.append(new_entry((draw(st.integers(0, 4)) * 1000, f"e{i:02d}", kind, valence,
                              f"tp{i % 3}", "web", "use", outcome, "c1", ())))
    return out


def filled(items: list[Entry], window: int) -> JourneyMoments:
    m = JourneyMoments(window)
    for entry in items:
        m.update(entry)
    return m


def state(m: JourneyMoments) -> tuple[Any, ...]:
    """Everything a journey record or a later update reads."""
    kept = (m.first_ms, m.last_ms, m.end_ms, m.peak_v, m.best_v, m.worst_v) if m.events else ()
    return (m.result(), m.first, m.last, m.peak, m.best, m.worst, m.end, m.outcome,
            m.has_end_marker, sorted(m.tail or []), kept)


@settings(max_examples=300, deadline=None)
@given(entries(), st.randoms(use_true_random=False), st.sampled_from((0, 1500)))
def test_arrival_order_does_not_matter(items: list[Entry], rnd: Any, window: int) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert state(filled(shuffled, window)) == state(filled(items, window))


@settings(max_examples=300, deadline=None)
@given(entries(), entries(), entries(), st.sampled_from((0, 1500)))
def test_merge_is_associative_and_equals_the_union(a: list[Entry], b: list[Entry],
                                                   c: list[Entry], window: int) -> None:
    a_ids = {e[1] for e in a}
    b = [e for e in b if e[1] not in a_ids]
    c = [e for e in c if e[1] not in a_ids | {e[1] for e in b}]
    left = filled(a, window).merge(filled(b, window)).merge(filled(c, window))
    right = filled(a, window).merge(filled(b, window).merge(filled(c, window)))
    union = filled(a + b + c, window)
    assert state(left) == state(right) == state(union)


@settings(max_examples=300, deadline=None)
@given(entries(), entries(max_size=4), st.sampled_from((0, 1500)))
def test_updates_after_a_merge_see_the_merged_moments(a: list[Entry], later: list[Entry],
                                                      window: int) -> None:
    """The kept times and valences come from the merged entries, not from either side."""
    a_ids = {e[1] for e in a}
    later = [e for e in later if e[1] not in a_ids]
    half = len(a) // 2
    merged = filled(a[:half], window).merge(filled(a[half:], window))
    for entry in later:
        merged.update(entry)
    assert state(merged) == state(filled(a + later, window))


@given(st.floats(-1.0, 1.0, allow_nan=False))
def test_to_fixed_rounds_half_away_from_zero_symmetrically(valence: float) -> None:
    fixed = to_fixed(valence)
    assert to_fixed(-valence) == -fixed
    assert abs(fixed - valence * 10**12) <= 0.5 + 1e-3


def test_each_named_position_is_its_fields_place_in_an_entry() -> None:
    """Code reads an entry as `entry[VALENCE]` (a plain tuple at run time): each position's
    name is the upper-case name of the `Entry` field at that place, and every field has one."""
    positions = {name.lower(): getattr(moments, name) for name in
                 ("MS", "EVENT_ID", "TYPE", "VALENCE", "TOUCHPOINT", "CHANNEL", "STAGE",
                  "OUTCOME", "CUSTOMER_ID", "SEGMENTS")}
    assert positions == {name: i for i, name in enumerate(Entry._fields)}


def test_shared_strings_stay_bounded_whatever_a_producer_sends() -> None:
    """A field with more distinct values than the cache holds (a producer that puts a URL in
    `touchpoint`) only empties the cache now and then: never more than SHARED_MAX held, every
    value given back equal, and a value seen again since the last emptying is the held
    object."""
    from pipeline.core.moments import SHARED_MAX, SharedStrings

    shared = SharedStrings()
    for i in range(3 * SHARED_MAX + 7):
        value = f"https://example.com/page/{i}"
        assert shared.word(value) == value
        assert len(shared._words) <= SHARED_MAX
        again = "".join(list(value))  # equal, another object
        assert shared.word(again) is not again
    for i in range(3 * SHARED_MAX + 7):
        segments = ((f"region{i}", "eu"),)
        assert shared.segments(segments) == segments
        assert len(shared._segments) <= SHARED_MAX
