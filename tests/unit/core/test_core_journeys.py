"""JourneyTracker and JourneyMoments: scenarios, life cycle, state, order independence."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import (
    DAY,
    HOUR,
    MIN,
    T0,
    bank_first_ring,
    complaint_resolved_well,
    event,
    hotel_water_at_checkout,
    hotline_hell,
    telecom_so_so,
)

from pipeline.core.config import JourneyConfig
from pipeline.core.event import Signals, TouchpointEvent
from pipeline.core.journeys import JourneyTracker
from pipeline.core.records import JourneyRecord
from pipeline.core.timefmt import format_ms
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()


def run(events: list[TouchpointEvent], config: JourneyConfig | None = None,
        final_ms: int | None = None) -> tuple[JourneyTracker, dict[str, JourneyRecord]]:
    """Apply in the given order with stream time = max event time seen; latest record per id."""
    tracker = JourneyTracker(config or JourneyConfig(), SCORING_RULES)
    latest: dict[str, JourneyRecord] = {}
    wm = -(1 << 60)
    for e in events:
        wm = max(wm, e.occurred_ms)
        records, reason = tracker.apply(e, wm)
        assert reason is None
        records += tracker.advance(wm)
        for r in records:
            assert r.version > latest[r.journey_id].version if r.journey_id in latest else True
            latest[r.journey_id] = r
    if final_ms is not None:
        for r in tracker.advance(final_ms):
            assert r.version > latest[r.journey_id].version
            latest[r.journey_id] = r
    return tracker, latest


def test_hotel_positive_end_lifts_a_bad_middle() -> None:
    _, out = run(hotel_water_at_checkout())
    r = out["hotel-1"]
    assert r.status == "closed" and r.close_reason == "journey_end"
    assert (r.events, r.moments) == (6, 5)
    assert r.worst_valence == -0.5 and r.worst_touchpoint == "room"
    assert r.end_valence == 0.8 and r.end_touchpoint == "checkout"
    assert r.peak_valence == 0.8 and r.peak_end_score == pytest.approx(0.8)
    assert r.mean_valence == pytest.approx(0.12)
    assert r.peak_end_score is not None and r.mean_valence is not None
    assert r.peak_end_score > r.mean_valence  # remembered better than the average


def test_hotline_negative_peak_and_end_against_a_first_ring_bank() -> None:
    _, out = run(hotline_hell(), final_ms=T0 + 12 * DAY)
    # a case with a producer journey id spans days: 3 and 6 days between its touchpoints, and
    # still one journey, open until a week passes without a touchpoint
    assert out["invest-1"].status == "open" and out["invest-1"].events == 3
    _, out = run(hotline_hell(), final_ms=T0 + 16 * DAY + 1)
    r = out["invest-1"]
    assert r.peak_valence is not None and r.peak_valence < -0.95
    assert r.peak_touchpoint == "hotline" and r.peak_event_id == "i1"
    assert r.end_valence is not None and r.end_valence < -0.5
    assert r.peak_end_score is not None and r.peak_end_score < -0.7
    assert r.status == "closed" and r.close_reason == "idle_gap"
    _, bank = run(bank_first_ring())
    assert bank["bank-1"].peak_valence == 0.5 and bank["bank-1"].end_valence == 0.5


def test_flat_journey_has_no_standout_peak() -> None:
    _, out = run(telecom_so_so())
    r = out["telco-1"]
    assert r.moments == 4
    assert r.peak_valence is not None and r.end_valence is not None
    assert r.mean_valence is not None
    assert abs(r.peak_valence - r.mean_valence) <= 0.2
    assert abs(r.end_valence - r.mean_valence) <= 0.2
    assert abs(r.peak_valence) <= 0.2


def test_complaint_resolved_well_ends_high_with_the_outcome() -> None:
    _, out = run(complaint_resolved_well())
    r = out["recovery-1"]
    assert r.worst_valence == -0.8
    assert r.end_valence == 1.0 and r.peak_valence == 1.0  # the outcome marker is not a moment
    assert r.outcome == "repurchase" and r.events == 4 and r.moments == 3
    assert r.end_event_id == "r3"


def test_peak_tie_goes_to_the_negative_then_the_earliest() -> None:
    _, out = run([event("a", T0, journey="j", valence=0.6),
                  event("b", T0 + MIN, journey="j", valence=-0.6),
                  event("c", T0 + 2 * MIN, journey="j", valence=-0.6)])
    assert out["j"].peak_event_id == "b"


def test_markers_only_journey_has_null_moments() -> None:
    _, out = run([event("a", T0, journey="j", type="outcome", outcome="churn"),
                  event("b", T0 + MIN, journey="j", type="journey_end")])
    r = out["j"]
    assert r.moments == 0 and r.peak_valence is None and r.end_valence is None
    assert r.peak_end_score is None and r.mean_valence is None and r.outcome == "churn"
    assert r.to_dict()["peak_at"] is None


def test_end_window_averages_the_last_moments() -> None:
    config = JourneyConfig(end_window_ms=5 * MIN)
    _, out = run([event("a", T0, journey="j", valence=-1.0),
                  event("b", T0 + 10 * MIN, journey="j", valence=0.2),
                  event("c", T0 + 14 * MIN, journey="j", valence=0.6)], config)
    assert out["j"].end_valence == pytest.approx(0.4)
    assert out["j"].end_event_id == "c"


def test_customer_journeys_split_by_idle_gap_and_close_on_stream_time() -> None:
    events = [event("a", T0), event("b", T0 + 10 * MIN), event("c", T0 + 50 * MIN)]
    tracker, out = run(events)
    first, second = sorted(out.values(), key=lambda r: r.started_at)
    assert first.journey_id == "c1@2026-11-18T11:06:40.000Z"
    assert first.keyed_by == "customer_gap" and first.events == 2
    assert first.status == "closed" and first.close_reason == "idle_gap"
    assert second.status == "open" and second.events == 1
    closed = tracker.advance(T0 + 50 * MIN + 30 * MIN + 1)
    assert [(r.journey_id, r.status) for r in closed] == [(second.journey_id, "closed")]


def test_max_length_closes_and_splits() -> None:
    config = JourneyConfig(max_length_ms=HOUR)
    events = [event(f"e{i}", T0 + i * 20 * MIN) for i in range(5)]  # never idle for 30 min
    _, out = run(events, config)
    starts = sorted((r.started_at, r.events, r.status, r.close_reason) for r in out.values())
    assert starts == [(T0, 3, "closed", "max_length"), (T0 + HOUR, 2, "open", "")]


def test_late_and_duplicate_events_are_rejected() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    assert tracker.apply(event("a", T0), T0)[1] is None
    assert tracker.apply(event("a", T0), T0) == ([], "duplicate")
    assert tracker.apply(event("z", T0 - DAY - 1), T0) == ([], "late")
    records, reason = tracker.apply(event("y", T0 - DAY), T0)  # exactly at the allowed lateness
    assert reason is None and records


def test_a_late_copy_of_an_event_its_journey_holds_is_a_duplicate_not_a_letter() -> None:
    """Once stream time is past the lateness, a copy already applied (the entry stage's re-send
    after a crash, a producer's retry) is a duplicate while its journey is held: never both
    applied and a dead letter. A late copy with other content, or of an event whose journey
    was evicted, stays late."""
    for journey in ("j1", None):  # a producer journey id, a customer's sessions
        tracker = JourneyTracker(JourneyConfig(journey_idle_ms=3 * DAY), SCORING_RULES)
        first = event("a", T0, journey=journey, valence=0.5)
        assert tracker.apply(first, T0)[1] is None
        assert tracker.apply(event("b", T0 + 10 * MIN, journey=journey), T0 + 10 * MIN)[1] is None
        tracker.last_digest = 0
        later = T0 + DAY + 20 * MIN  # past the lateness, before the session could be evicted
        assert tracker.apply(first, later) == ([], "duplicate")
        assert tracker.last_digest != 0  # the digest the journey holds (its claim)
        assert tracker.apply(event("a", T0, journey=journey, valence=-0.5), later) == \
            ([], "late")
        assert tracker.apply(event("n", T0, journey=journey), later) == ([], "late")
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    first = event("a", T0)
    tracker.apply(first, T0)
    tracker.advance(T0 + 3 * DAY)  # the customer's session evicted
    assert tracker.apply(first, T0 + 3 * DAY) == ([], "late")


# the life cycle of a journey-id journey, with a journey idle timeout as short as the gap
SHORT_IDLE = JourneyConfig(journey_idle_ms=30 * MIN)


def test_late_event_reopens_a_closed_journey_and_versions_grow() -> None:
    tracker = JourneyTracker(SHORT_IDLE, SCORING_RULES)
    r1 = tracker.apply(event("a", T0, journey="j", valence=0.5), T0)[0][0]
    closed = tracker.advance(T0 + 2 * HOUR)
    assert closed[0].status == "closed" and closed[0].version > r1.version
    late = tracker.apply(event("b", T0 + MIN, journey="j", valence=-0.9), T0 + 2 * HOUR)[0][0]
    assert late.status == "closed" and late.events == 2 and late.peak_valence == -0.9
    assert late.version > closed[0].version
    assert late.version == 4 * 2 + 1


def test_late_event_bridging_two_customer_journeys_supersedes_one() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    wm = T0 + 70 * MIN
    for e in [event("a", T0, valence=0.1), event("b", T0 + 10 * MIN, valence=0.2),
              event("c", T0 + 50 * MIN, valence=-0.3), event("d", wm, valence=0.4)]:
        tracker.apply(e, e.occurred_ms)
    records, reason = tracker.apply(event("x", T0 + 30 * MIN, valence=-0.9), wm)
    assert reason is None
    by_status = {r.status: r for r in records}
    assert by_status["superseded"].journey_id == "c1@2026-11-18T11:56:40.000Z"
    merged = by_status["open"]
    assert merged.journey_id == "c1@2026-11-18T11:06:40.000Z"
    assert merged.events == 5 and merged.peak_valence == -0.9 and merged.end_valence == 0.4
    assert len(tracker.journeys()) == 1


def test_negative_end_counts_at_close_and_is_retracted_on_change() -> None:
    tracker = JourneyTracker(SHORT_IDLE, SCORING_RULES)
    tracker.apply(event("a", T0, journey="j", valence=-0.5, touchpoint="hotline"), T0)
    assert tracker.drain_end_deltas() == []
    tracker.advance(T0 + HOUR)
    [added] = tracker.drain_end_deltas()
    assert (added.at_ms, added.negative, added.sign) == (T0, True, 1)
    assert ("touchpoint", "hotline") in added.segments
    tracker.apply(event("b", T0 + MIN, journey="j", valence=0.5), T0 + HOUR)
    retracted, readded = tracker.drain_end_deltas()
    assert (retracted.negative, retracted.sign) == (True, -1)
    assert (readded.at_ms, readded.negative, readded.sign) == (T0 + MIN, False, 1)


def test_state_round_trips_through_json_and_eviction_bounds_memory() -> None:
    tracker = JourneyTracker(SHORT_IDLE, SCORING_RULES, keep_dirty_keys=True)
    extra = event("x1", T0 + 27 * HOUR, customer="c9", attributes={"region": "eu"},
                  signals=Signals(error=True))
    for e in [*hotel_water_at_checkout(), extra]:
        tracker.apply(e, e.occurred_ms)
    keys = tracker.drain_dirty_keys()
    assert keys == {"hotel-1", "c9"}
    restored = JourneyTracker(SHORT_IDLE, SCORING_RULES)
    for key in keys:
        restored.restore_key(key, json.loads(json.dumps(tracker.snapshot_key(key))))
        assert restored.snapshot_key(key) == tracker.snapshot_key(key)
    late = event("h7", T0 + 5 * HOUR, journey="hotel-1", valence=-1.0)
    assert restored.apply(late, T0 + 27 * HOUR) == tracker.apply(late, T0 + 27 * HOUR)
    later = T0 + 27 * HOUR + 30 * MIN + DAY + 2
    assert restored.advance(later) == tracker.advance(later)
    assert tracker.snapshot_key("c9") is None
    assert tracker.drain_dirty_keys() >= {"hotel-1", "c9"}
    # of the journey id only a marker is left (ids of later journeys never tie with it) ...
    kept = tracker.snapshot_key("hotel-1")
    assert kept is not None and kept["journey"] is None and kept["pieces"][0] == 1
    assert len(json.dumps(kept)) < 200
    # ... and forgotten a maximum journey length after its last event
    tracker.advance(kept["pieces"][1] + 1)
    assert len(tracker) == 0 and tracker.drain_dirty_keys() == {"hotel-1"}


def test_dirty_keys_are_kept_only_when_asked() -> None:
    # replay and backfill: nothing to drain, nothing kept
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    for e in hotel_water_at_checkout():
        tracker.apply(e, e.occurred_ms)
    with pytest.raises(RuntimeError, match="keep_dirty_keys"):
        tracker.drain_dirty_keys()


# -- order independence ------------------------------------------------------------------------

_WIDE = JourneyConfig(allowed_lateness_ms=30 * DAY)


@st.composite
def journey_events(draw: st.DrawFn, with_end_markers: bool) -> list[TouchpointEvent]:
    n = draw(st.integers(1, 25))
    types = ["interaction", "survey", "outcome"] + (["journey_end"] if with_end_markers else [])
    out = []
    for i in range(n):
        customer = draw(st.sampled_from(["c1", "c2"]))
        journey = draw(st.sampled_from([None, None, "j1", "j2"]))
        ms = T0 + draw(st.integers(0, 12)) * 10 * MIN  # coarse: many equal timestamps
        valence = draw(st.one_of(st.none(), st.sampled_from([-1.0, -0.5, 0.0, 0.3, 0.5, 1.0])))
        out.append(event(f"e{i:02d}", ms, customer=customer, journey=journey,
                         type=draw(st.sampled_from(types)), valence=valence,
                         touchpoint=draw(st.sampled_from(["a", "b"])),
                         outcome="churn" if draw(st.booleans()) else None))
    return out


def final_state(events: list[TouchpointEvent]) -> list[JourneyRecord]:
    final = max(e.occurred_ms for e in events)
    tracker, _ = run(events, _WIDE, final_ms=final)
    return sorted((tracker.record(j) for j in tracker.journeys()), key=lambda r: r.journey_id)


@settings(max_examples=150, deadline=None)
@given(journey_events(with_end_markers=False), st.randoms(use_true_random=False))
def test_shuffled_input_gives_identical_journeys(events: list[TouchpointEvent],
                                                 rnd: random.Random) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert final_state(shuffled) == final_state(events)


@settings(max_examples=150, deadline=None)
@given(journey_events(with_end_markers=True), st.randoms(use_true_random=False))
def test_shuffled_input_with_journey_ends_gives_identical_moments(
        events: list[TouchpointEvent], rnd: random.Random) -> None:
    # A late journey_end can split a customer journey, which bumps versions (docs/core.md), so
    # compare everything but the version here.
    shuffled = list(events)
    rnd.shuffle(shuffled)
    strip = [{**r.to_dict(), "version": 0} for r in final_state(events)]
    assert [{**r.to_dict(), "version": 0} for r in final_state(shuffled)] == strip


def test_a_journey_id_spanning_days_stays_one_journey() -> None:
    """A hotel stay from booking to checkout: touchpoints days apart, one journey."""
    days = [0, 2, 5, 6]
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    records = []
    for i, d in enumerate(days):
        e = event(f"s{i}", T0 + d * DAY, journey="stay-9", valence=0.1 * i)
        records += tracker.apply(e, e.occurred_ms)[0]
        records += tracker.advance(e.occurred_ms)
    assert {r.journey_id for r in records} == {"stay-9"}
    assert records[-1].events == 4 and records[-1].status == "open"
    closed = tracker.advance(T0 + 13 * DAY + 1)
    assert [(r.journey_id, r.status, r.close_reason) for r in closed] == [
        ("stay-9", "closed", "idle_gap")]


def test_a_journey_id_after_its_journey_was_evicted_starts_a_distinct_journey() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES, keep_dirty_keys=True)
    first = tracker.apply(event("a", T0, journey="case-1", type="journey_end", valence=-0.5), T0)
    assert first[0][0].status == "closed"
    evicted_at = T0 + 7 * DAY + DAY + 1  # journey idle + lateness past the last event
    tracker.advance(evicted_at)
    assert tracker.journeys() == []
    records, reason = tracker.apply(event("b", evicted_at, journey="case-1", valence=0.9),
                                    evicted_at)
    assert reason is None
    [again] = records
    assert again.journey_id == "case-1@" + format_ms(evicted_at) and again.events == 1
    assert again.journey_id != first[0][0].journey_id
    # the marker survives a restart: a restored tracker names the next journey the same way
    state = tracker.snapshot_key("case-1")
    restored = JourneyTracker(JourneyConfig(), SCORING_RULES)
    restored.restore_key("case-1", json.loads(json.dumps(state)))
    assert restored.snapshot_key("case-1") == state


def test_attributes_in_any_mapping_give_the_segments_a_dict_gives() -> None:
    """The tracker reads an event's attributes as a dict (the fast lookup compiled); attributes
    held in another Mapping must give the same segments, journeys and state."""
    config = JourneyConfig(segment_attributes=("region", "tier"))
    attrs = {"region": "north", "tier": "gold", "other": "x"}
    plain = [event("e1", T0, valence=-0.5, attributes=attrs),
             event("e2", T0 + MIN, valence=0.5, attributes={"tier": "basic"})]
    proxied = [replace(e, attributes=MappingProxyType(dict(e.attributes))) for e in plain]
    trackers = []
    for events in (plain, proxied):
        tracker = JourneyTracker(config, SCORING_RULES)
        records = [tracker.apply(e, e.occurred_ms)[0] for e in events]
        trackers.append((records, tracker.snapshot()))
    assert trackers[0] == trackers[1]
    segments = trackers[0][1]["keys"]["c1"]["sessions"][0]["entries"][0][9]
    assert json.loads(json.dumps(segments)) == [["region", "north"], ["tier", "gold"]]


@pytest.mark.parametrize("journey", [None, "j1"])
def test_a_closed_journey_is_evicted_exactly_when_no_acceptable_event_can_reach_it(
        journey: str | None) -> None:
    """Held while stream time is before last event + idle + lateness + 1 (an event within the
    lateness could still join it), gone at that instant: the deadline the tracker schedules and
    the test it evicts by agree to the millisecond."""
    config = JourneyConfig()
    idle = config.idle_gap_ms if journey is None else config.journey_idle_ms
    tracker = JourneyTracker(config, SCORING_RULES)
    tracker.apply(event("e1", T0, valence=0.5, journey=journey), T0)
    evicted_at = T0 + idle + config.allowed_lateness_ms + 1
    tracker.advance(evicted_at - 1)
    assert [j.status for j in tracker.journeys()] == ["closed"]
    tracker.advance(evicted_at)
    assert tracker.journeys() == []


def test_entries_share_one_string_per_distinct_value_applied_or_restored() -> None:
    """An entry is held for days: its few-valued fields (type, touchpoint, channel, stage,
    outcome), its customer id and segments are one object per distinct value, not one per
    parsed event or restored entry (memory, and what the collector walks)."""
    config = JourneyConfig(segment_attributes=("region",))

    def fresh(text: str) -> str:  # an equal string that is another object, as a parse makes
        return "".join(list(text))

    events = [event(f"e{i}", T0 + i * MIN, customer=fresh("c1"), touchpoint=fresh("hotline"),
                    channel=fresh("phone"), stage=fresh("after_sales"),
                    outcome=fresh("resolved"), valence=0.1,
                    attributes={fresh("region"): fresh("eu")})
              for i in range(3)]
    assert events[0].touchpoint is not events[1].touchpoint
    tracker = JourneyTracker(config, SCORING_RULES)
    for e in events:
        tracker.apply(e, e.occurred_ms)
    restored = JourneyTracker(config, SCORING_RULES)
    restored.restore_key("c1", json.loads(json.dumps(tracker.snapshot_key("c1"))))
    assert restored.snapshot_key("c1") == tracker.snapshot_key("c1")
    for held in (tracker, restored):
        (journey,) = held.journeys_of("c1")
        assert len(journey.entries) == 3
        first, *others = journey.entries
        for entry in others:
            for field in range(2, len(entry)):  # every field but the time and the event_id
                if isinstance(entry[field], (str, tuple)):
                    assert entry[field] is first[field], field
