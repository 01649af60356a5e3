"""The journey tracker scores each moment with an inlined copy of `valence.moment_valence` (one
call fewer per event on the hot path, docs/core.md Performance). The readable function is the
reference: for any event, the tracker's moment must carry exactly its valence (a marker none)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import T0, event

from pipeline.core.config import CoreConfig
from pipeline.core.event import EVENT_TYPES, Signals, Survey, TouchpointEvent
from pipeline.core.journeys import JourneyTracker
from pipeline.core.valence import moment_valence
from pipeline.scoring_rules import load_scoring_rules

RULES = load_scoring_rules()
maybe = st.none() | st.booleans()
signals = st.none() | st.builds(
    Signals,
    wait_seconds=st.none() | st.floats(0, 10_000, allow_nan=False),
    handle_seconds=st.none() | st.floats(0, 10_000, allow_nan=False),
    transfers=st.none() | st.integers(0, 20), resolved=maybe, error=maybe)
surveys = st.none() | st.builds(
    Survey, nps=st.none() | st.integers(0, 10), ces=st.none() | st.integers(1, 5),
    ces_scale=st.none() | st.sampled_from([5]), csat=st.none() | st.integers(1, 5),
    ces_higher_means=st.none() | st.sampled_from(["less_effort", "more_effort"]))
events = st.builds(
    lambda kind, valence, sig, survey: event(
        "e1", T0, journey="j1", type=kind, valence=valence, signals=sig, survey=survey,
        outcome="purchase" if kind == "outcome" else None),
    st.sampled_from(EVENT_TYPES), st.none() | st.floats(-1, 1, allow_nan=False), signals,
    surveys)


@settings(max_examples=200, deadline=None)
@given(events, st.booleans())
def test_the_trackers_moment_valence_is_moment_valence(ev: TouchpointEvent,
                                                        ces_5_more_effort: bool) -> None:
    config = CoreConfig().journeys
    tracker = JourneyTracker(replace(config, ces_5_more_effort=ces_5_more_effort), RULES)
    records, reason = tracker.apply(ev, T0)
    assert reason is None
    want = moment_valence(ev, RULES, ces_5_more_effort)
    (record,) = records
    assert record.moments == (0 if want is None else 1)
    assert record.end_valence == want
    assert record.peak_valence == want
