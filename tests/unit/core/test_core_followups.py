"""Follow-up cases (pipeline/core/followups.py): rules, cooldown, suppression, closing,
determinism under shuffled input, state round trips."""

from __future__ import annotations

import json
import random
from itertools import pairwise
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import DAY, HOUR, MIN, T0, bank_first_ring, event, hotline_hell, keep_latest

from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Signals, Survey, TouchpointEvent
from pipeline.core.followups import (
    CLOSED,
    OPEN,
    WITHDRAWN,
    CaseRecord,
    FollowupEvent,
    FollowupJourney,
    FollowupRules,
    FollowupTracker,
    case_id_of,
)
from pipeline.followup_rules import (
    DEFAULT_RULES_PATH,
    FollowupRulesError,
    horizon_ms,
    load_rules,
)
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

RULES = load_rules()
HORIZON = horizon_ms(RULES, 30 * DAY, DAY)


def run_core(events: list[TouchpointEvent], tracker: FollowupTracker | None = None
             ) -> dict[str, CaseRecord]:
    """Events through the journey engine, then journey records and events through the tracker,
    as replay does; the latest version of each case."""
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    tracker = tracker or FollowupTracker(RULES, HORIZON)
    latest: dict[str, CaseRecord] = {}
    for e in events:
        emitted, _ = engine.process(e, 0, arrived_ms=e.occurred_ms)
        signal = FollowupEvent.from_event(e)
        keep_latest(latest, tracker.apply(
            [FollowupJourney.from_record(r) for r in emitted.journeys],
            [] if signal is None else [signal]))
    keep_latest(latest, tracker.apply(
        [FollowupJourney.from_record(r) for r in engine.finish().journeys]))
    return latest


def open_cases(cases: dict[str, CaseRecord]) -> list[CaseRecord]:
    return sorted((c for c in cases.values() if c.status != WITHDRAWN),
                  key=lambda c: c.opened_at)


def bad_call(eid: str, ms: int, customer: str = "c1", journey: str | None = None
             ) -> TouchpointEvent:
    # `scenarios` comes from this directory (on sys.path under pytest): Any to mypy
    return cast(TouchpointEvent, event(eid, ms, customer=customer, journey=journey,
                                       touchpoint="hotline", channel="phone",
                                       stage="after_sales",
                                       signals=Signals(wait_seconds=3600, transfers=4,
                                                       resolved=False)))


def test_the_default_rules_load_and_every_trigger_has_an_sla() -> None:
    rules = load_rules(DEFAULT_RULES_PATH)
    assert rules.cooldown_ms == 7 * DAY
    assert {t.name for t in rules.triggers} >= {
        "negative_end", "bad_memory", "deep_negative_peak", "detractor", "hard_effort",
        "complaint"}
    assert all(t.sla_ms > 0 for t in rules.triggers)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.pop("cooldown_days"), "'cooldown_days' is a required property"),
    (lambda d: d["triggers"][0].update(priority="urgent"), "triggers/0/priority"),
    (lambda d: d["triggers"][3].update(field="duration"), "triggers/3"),
    (lambda d: d["triggers"][4].update(when="any"), "when=any needs field peak_valence"),
    (lambda d: d["triggers"].append(dict(d["triggers"][0])), "trigger name 'complaint' twice"),
])
def test_a_bad_rules_file_is_one_line_naming_the_file_and_the_place(
        tmp_path: Path, change: object, expected: str) -> None:
    data = json.loads(DEFAULT_RULES_PATH.read_text())
    change(data)  # type: ignore[operator]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FollowupRulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and expected in message


def test_a_rules_file_that_is_not_json_or_missing_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "rules.json"
    bad.write_text("{not json")
    with pytest.raises(FollowupRulesError, match="not JSON"):
        load_rules(bad)
    with pytest.raises(FollowupRulesError, match="cannot read"):
        load_rules(tmp_path / "missing.json")


def test_the_investment_hotline_opens_a_silent_case_at_once_and_the_bank_none() -> None:
    cases = open_cases(run_core(hotline_hell() + bank_first_ring(T0 + HOUR)))
    assert len(cases) == 1
    case = cases[0]
    assert case.journey_id == "invest-1" and case.trigger == "deep_negative_peak"
    assert case.silent and case.status == OPEN and case.priority == "high"
    assert case.opened_at == T0 and case.due_at == T0 + 48 * HOUR
    assert case.peak_touchpoint == "hotline" and case.peak_valence is not None
    assert case.peak_valence <= -0.9
    assert case.case_id == case_id_of("c1", "journey:invest-1")


def test_a_detractor_answer_opens_a_case_with_the_answer_as_evidence() -> None:
    answer = event("s1", T0, type="survey", touchpoint="checkout",
                   survey=Survey(nps=3, comment="never again"))
    case, = open_cases(run_core([answer]))
    assert case.trigger == "detractor" and not case.silent
    assert case.survey_nps == 3 and case.survey_event_id == "s1"
    assert case.source_id == "event:s1"


def test_a_passive_answer_and_an_ok_journey_open_nothing() -> None:
    events = [event("s1", T0, type="survey", survey=Survey(nps=7, ces=5)),
              event("x1", T0 + MIN, valence=-0.3),
              event("x2", T0 + 2 * MIN, valence=0.4)]
    assert open_cases(run_core(events)) == []


def test_cooldown_holds_back_a_second_case_within_seven_days() -> None:
    events = [bad_call("a", T0, journey="j1"), bad_call("b", T0 + 3 * DAY, journey="j2")]
    case, = open_cases(run_core(events))
    assert case.journey_id == "j1" and case.suppressed == 1


def close(eid: str, ms: int, case_id: str, result: str = "called back") -> TouchpointEvent:
    return cast(TouchpointEvent, event(eid, ms, type="outcome", touchpoint="cx_team",
                                       outcome="other", attributes={"followup_case_id": case_id,
                                                                    "followup_result": result}))


def test_an_open_case_suppresses_after_the_cooldown_a_closed_one_does_not() -> None:
    first = case_id_of("c1", "journey:j1")
    later = [bad_call("a", T0, journey="j1"), bad_call("b", T0 + 10 * DAY, journey="j2")]
    case, = open_cases(run_core(later))  # still open after 10 days: one case
    assert case.case_id == first and case.suppressed == 1
    closed = open_cases(run_core([*later, close("z", T0 + 2 * DAY, first)]))
    assert [c.journey_id for c in closed] == ["j1", "j2"]
    assert closed[0].status == CLOSED and closed[0].closed_at == T0 + 2 * DAY
    assert closed[0].result == "called back" and closed[1].status == OPEN
    # an unclosed case stops holding back after open_case_suppresses_days
    far = [bad_call("a", T0, journey="j1"), bad_call("b", T0 + 31 * DAY, journey="j2")]
    assert len(open_cases(run_core(far))) == 2


def test_a_closed_case_links_the_next_journey_for_recovery() -> None:
    case_id = case_id_of("c1", "journey:j1")
    events = [bad_call("a", T0, journey="j1"), close("z", T0 + DAY, case_id),
              event("n1", T0 + 2 * DAY, journey="j3", valence=0.8),
              event("n2", T0 + 2 * DAY + MIN, journey="j3", type="journey_end")]
    case, = open_cases(run_core(events))
    assert case.status == CLOSED and case.recovery_journey_id == "j3"
    assert case.recovery_peak_end_score == pytest.approx(0.8)


def test_recovery_nps_is_the_first_answer_after_contact_else_after_opening() -> None:
    case_id = case_id_of("c1", "journey:j1")
    before_contact = event("s1", T0 + 12 * HOUR, type="survey", survey=Survey(nps=4))
    after_contact = event("s2", T0 + 3 * DAY, type="survey", survey=Survey(nps=9))
    later = event("s3", T0 + 4 * DAY, type="survey", survey=Survey(nps=2))
    answers = [bad_call("a", T0, journey="j1"), before_contact, after_contact, later]
    not_contacted, = open_cases(run_core(answers))
    assert not_contacted.status == OPEN and not_contacted.recovery_nps == 4
    contacted, = open_cases(run_core([*answers, close("z", T0 + DAY, case_id)]))
    assert contacted.status == CLOSED and contacted.recovery_nps == 9
    # the answer that opened a case is not its recovery answer
    only, = open_cases(run_core([event("d", T0, type="survey", survey=Survey(nps=1))]))
    assert only.trigger == "detractor" and only.recovery_nps is None


def test_state_stored_before_recovery_nps_still_loads() -> None:
    tracker = FollowupTracker(RULES, HORIZON)
    tracker.apply(events=[FollowupEvent("s1", "c1", None, T0, "web", 1, None, None, None, None,
                                        "")])
    state = json.loads(json.dumps(tracker.snapshot_key("c1")))
    [case] = state["emitted"]
    del case[CaseRecord._fields.index("recovery_nps")]  # as an older worker wrote it
    copy = FollowupTracker(RULES, HORIZON)
    copy.restore_key("c1", state)
    [loaded] = copy.customers["c1"].emitted.values()
    assert loaded == tracker.customers["c1"].emitted[loaded.case_id]
    assert loaded.recovery_nps is None and loaded.rules_version == RULES.version


def test_a_late_earlier_candidate_withdraws_the_case_it_replaces() -> None:
    tracker = FollowupTracker(RULES, HORIZON)
    later = FollowupEvent("s2", "c1", None, T0 + DAY, "web", 2, None, None, None, None, "")
    first, = tracker.apply(events=[later])
    earlier = later._replace(event_id="s1", at_ms=T0)
    cases = {c.case_id: c for c in tracker.apply(events=[earlier])}
    assert cases[first.case_id].status == WITHDRAWN
    assert cases[case_id_of("c1", "event:s1")].suppressed == 1
    assert cases[first.case_id].version == cases[case_id_of("c1", "event:s1")].version


def test_forgotten_only_after_the_horizon_and_state_round_trips() -> None:
    tracker = FollowupTracker(RULES, HORIZON)
    answer = FollowupEvent("s1", "c1", None, T0, "web", 1, None, None, None, None, "")
    tracker.apply(events=[answer])
    assert tracker.drain_dirty_keys() == ["c1"]
    state = tracker.snapshot_key("c1")
    assert state is not None
    copy = FollowupTracker(RULES, HORIZON)
    copy.restore_key("c1", json.loads(json.dumps(state)))
    assert copy.snapshot() == tracker.snapshot()
    assert tracker.advance(T0 + HORIZON) == []
    assert tracker.advance(T0 + HORIZON + 1) == ["c1"]
    assert tracker.snapshot_key("c1") is None and tracker.drain_dirty_keys() == ["c1"]


def journey_of(journey_id: str, version: int, ended_at: int) -> FollowupJourney:
    return FollowupJourney(journey_id, "c1", "journey_id", "open", version, T0, ended_at, None,
                           "hotline", None, None, None, "end", T0 + HOUR, None, None)


def test_a_restored_customer_is_forgotten_when_the_running_one_is() -> None:
    """The CI rehearsal of 2026-12-05 (git 4e83775) found it: the customer's next look-up
    deadline was derived again at restore (last input + horizon), so once a journey's later
    record moved its end earlier, the running tracker forgot the customer at a stream time
    where the restored one kept it, and the customer's next cases came with other versions.
    The deadline is part of the state now."""
    running = FollowupTracker(RULES, HORIZON)
    running.apply(journeys=[journey_of("j0", 1, T0)])  # looked at again at T0 + horizon
    running.apply(journeys=[journey_of("j1", 1, T0 + DAY)])
    restored = FollowupTracker(RULES, HORIZON, resume=json.loads(json.dumps(running.snapshot())))
    for tracker in (running, restored):
        tracker.apply(journeys=[journey_of("j1", 2, T0)])  # its end earlier: the last input T0
    later = T0 + HORIZON + HOUR
    assert running.advance(later) == restored.advance(later) == ["c1"]
    answer = FollowupEvent("s1", "c1", None, later, "web", 1, None, None, None, None, "")
    assert running.apply(events=[answer]) == restored.apply(events=[answer])
    assert running.snapshot() == restored.snapshot()


def test_a_rescheduled_customer_is_dirty_and_its_state_carries_the_deadline() -> None:
    tracker = FollowupTracker(RULES, HORIZON)
    tracker.apply(journeys=[journey_of("j0", 1, T0)])
    tracker.apply(journeys=[journey_of("j0", 2, T0 + DAY)])  # due again a day later
    tracker.drain_dirty_keys()
    assert tracker.advance(T0 + HORIZON + 1) == []  # looked at, kept, looked at again later
    assert tracker.drain_dirty_keys() == ["c1"]
    state = tracker.snapshot_key("c1")
    assert state is not None and state["due"] == T0 + DAY + HORIZON
    copy = FollowupTracker(RULES, HORIZON)
    copy.restore_key("c1", json.loads(json.dumps(state)))
    assert copy.customers["c1"].scheduled == tracker.customers["c1"].scheduled


# -- properties --------------------------------------------------------------------------------

@st.composite
def inputs(draw: st.DrawFn) -> list[FollowupJourney | FollowupEvent]:
    """Several versions of a few journeys and some answers/closes for two customers."""
    out: list[FollowupJourney | FollowupEvent] = []
    valence = st.one_of(st.none(), st.floats(-1, 1, allow_nan=False))
    for n in range(draw(st.integers(0, 6))):
        customer = draw(st.sampled_from(["c1", "c2"]))
        start = T0 + draw(st.integers(0, 40)) * DAY
        for version in draw(st.sets(st.integers(1, 9), min_size=1, max_size=3)):
            status = draw(st.sampled_from(["open", "closed", "closed", "superseded"]))
            peak = draw(valence)
            out.append(FollowupJourney(
                f"j{n}", customer, "journey_id", status, version, start,
                start + draw(st.integers(0, 3)) * DAY, peak, "hotline",
                None if peak is None else start, peak, draw(valence), "end",
                start + HOUR, draw(valence), draw(valence)))
    for n in range(draw(st.integers(0, 6))):
        customer = draw(st.sampled_from(["c1", "c2"]))
        at = T0 + draw(st.integers(0, 40)) * DAY + draw(st.integers(0, 3)) * HOUR
        kind = draw(st.sampled_from(["nps", "ces", "complaint", "close"]))
        closes = None
        if kind == "close":
            closes = case_id_of(customer, draw(st.sampled_from(
                [f"journey:j{i}" for i in range(3)] + [f"event:e{i}" for i in range(3)])))
        out.append(FollowupEvent(
            f"e{n}", customer, draw(st.sampled_from([None, "j0", "j1"])), at, "web",
            draw(st.integers(0, 10)) if kind == "nps" else None,
            float(draw(st.integers(1, 7))) if kind == "ces" else None, None,
            "complaint" if kind == "complaint" else ("other" if closes else None), closes,
            "done" if closes else ""))
    return out


def feed(tracker: FollowupTracker, items: list[FollowupJourney | FollowupEvent], chunk: int
         ) -> dict[str, CaseRecord]:
    latest: dict[str, CaseRecord] = {}
    for i in range(0, len(items), chunk):
        part = items[i:i + chunk]
        cases = tracker.apply([x for x in part if isinstance(x, FollowupJourney)],
                              [x for x in part if isinstance(x, FollowupEvent)])
        for case in cases:
            old = latest.get(case.case_id)
            assert old is None or case.version >= old.version  # versions never go back
            latest[case.case_id] = case
    return latest


def final(cases: dict[str, CaseRecord]) -> dict[str, CaseRecord]:
    return {k: c for k, c in cases.items() if c.status != WITHDRAWN}


@settings(max_examples=150, deadline=None)
@given(items=inputs(), seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 5))
def test_shuffled_input_gives_identical_cases(items: list[FollowupJourney | FollowupEvent],
                                              seed: int, chunk: int) -> None:
    expected = final(feed(FollowupTracker(RULES, HORIZON), items, len(items) or 1))
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    tracker = FollowupTracker(RULES, HORIZON)
    half = len(shuffled) // 2
    got = feed(tracker, shuffled[:half], chunk)
    # a restart in the middle changes nothing
    restored = FollowupTracker(RULES, HORIZON, resume=json.loads(json.dumps(tracker.snapshot())))
    got.update(feed(restored, shuffled[half:], chunk))
    assert final(got) == expected


@settings(max_examples=150, deadline=None)
@given(items=inputs())
def test_cooldown_and_suppression_hold_for_every_customer(
        items: list[FollowupJourney | FollowupEvent]) -> None:
    rules: FollowupRules = RULES
    cases = final(feed(FollowupTracker(rules, HORIZON), items, 3))
    tracker = FollowupTracker(rules, HORIZON)
    tracker.apply([x for x in items if isinstance(x, FollowupJourney)],
                  [x for x in items if isinstance(x, FollowupEvent)])
    for customer_id, customer in tracker.customers.items():
        mine = sorted((c for c in cases.values() if c.customer_id == customer_id),
                      key=lambda c: (c.opened_at, c.source_id))
        # every candidate is a case or counted as held back by one
        assert len(mine) + sum(c.suppressed for c in mine) == len(tracker.candidates(customer))
        for earlier, later in pairwise(mine):
            gap = later.opened_at - earlier.opened_at
            assert gap >= rules.cooldown_ms
            if earlier.closed_at is None or earlier.closed_at > later.opened_at:
                assert gap >= rules.open_suppress_ms
        assert len({c.case_id for c in mine}) == len(mine)


def test_the_case_record_table_of_docs_followups_md_names_every_field() -> None:
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "followups.md").read_text()
    table = doc.split("## Case record", 1)[1].split("\n\n", 2)[1]
    named = {name for line in table.splitlines() if line.startswith("| `")
             for name in re.findall(r"`([a-z_*]+)`", line.split("|")[1])}
    fields = set(CaseRecord._fields)
    expanded = {f for f in fields for n in named if n.endswith("*") and f.startswith(n[:-1])}
    assert (named - {n for n in named if n.endswith("*")}) | expanded == fields


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("input"), st.integers(0, 5), st.integers(0, 120)),
    st.tuples(st.just("advance"), st.integers(0, 40), st.just(0)),
    st.tuples(st.just("restore"), st.integers(0, 5), st.just(0))), max_size=60))
def test_customers_are_forgotten_exactly_when_their_last_input_leaves_the_horizon(
        steps: list[tuple[str, int, int]]) -> None:
    # A reference model: a customer is held until an `advance` past its latest input (since it
    # was last forgotten) + the horizon. The tracker's heap holds one entry per customer (issue 13
    # item 5: an entry per input grew with the history), re-pushed when due and moved on.
    horizon = 10 * HOUR
    tracker = FollowupTracker(RULES, horizon)
    last: dict[str, int] = {}
    watermark = T0
    number = 0
    for kind, who, at in steps:
        customer = f"c{who}"
        if kind == "input":
            number += 1
            ms = watermark + at * 10 * MIN  # never older than the stream time
            tracker.apply(events=[FollowupEvent(f"e{number}", customer, None, ms, "app", 9,
                                                None, None, None, None, "")])
            last[customer] = max(last.get(customer, ms), ms)
        elif kind == "advance":
            watermark += who * HOUR
            gone = tracker.advance(watermark)
            expected = sorted(c for c, ms in last.items() if ms + horizon < watermark)
            assert gone == expected
            for c in gone:
                del last[c]
        elif customer in tracker.customers:  # a restore from the customer's own snapshot
            tracker.restore_key(customer, tracker.snapshot_key(customer))
        assert set(tracker.customers) == set(last)
        # one live entry per customer (a restore may leave a stale one behind, never a twin)
        live = [(d, c) for d, c in tracker._deadlines
                if c in tracker.customers and tracker.customers[c].scheduled == d]
        assert sorted(c for _, c in live) == sorted(tracker.customers)
        if not any(kind == "restore" for kind, _, _ in steps):
            assert len(tracker._deadlines) == len(tracker.customers)
