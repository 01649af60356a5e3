"""The follow-up tracker's indexes find what a scan of every input held finds.

A customer's update looked up each answer's journey, each journey's answer and each case's
recovery journey and later answer by scanning every input the customer held: a customer id
that visits 40 times a day (a bot, a shared id) cost 0.2 s of CPU per input after 20 days,
growing with the square of its inputs (`python -m bench.bench_followup_history
--visits-per-day 40`). `CustomerState` now keeps its journeys by start, its events by time, by
the journey id they name and by the case they close, and its candidates in order. Proved here
against the scans the tracker made before (git 13073be), and the cases' chain against a walk
of every candidate (it now jumps over those a case holds back), over generated inputs of the
shapes that make lookups hard: producer journey ids with `@` and their later pieces
`<id>@<time>`, events naming a journey, a piece's base id, an unknown id or none, journeys
that overlap, move their start earlier, are superseded or have no moments, and long journeys
among short ones; with restores and pruning (which rebuild the indexes) in between.
"""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import DAY, HOUR, SHORT_HORIZON, SHORT_RULES

from pipeline.core.followups import (
    CustomerState,
    FollowupEvent,
    FollowupJourney,
    FollowupTracker,
    _holds,
    case_id_of,
)

RULES = SHORT_RULES
HORIZON = SHORT_HORIZON
# journey ids: producer ids (some with "@"), their pieces, and customer-keyed sessions
BASES = ("p", "p@x", "q@a@b", "r")
EVENT_JOURNEY_IDS = (None, None, "p", "p@x", "q@a", "q@a@b", "r", "nobody", "p@x@9")


# -- the lookups as the tracker made them before its indexes: scans of every input held ----------
def scan_journey_of(customer: CustomerState, event: FollowupEvent) -> FollowupJourney | None:
    found = [j for j in customer.journeys.values()
             if j.status != "superseded" and _holds(j, event)]
    return min(found, key=lambda j: j.journey_id, default=None)


def scan_answer_in(customer: CustomerState, journey: FollowupJourney) -> FollowupEvent | None:
    answers = [e for e in customer.events.values()
               if e.outcome is None and e.closes_case is None and _holds(journey, e)]
    return min(answers, key=lambda e: (e.at_ms, e.event_id), default=None)


def scan_recovery(customer: CustomerState, since: int, until: int, source: str
                  ) -> FollowupJourney | None:
    later = [j for j in customer.journeys.values()
             if j.status != "superseded" and since < j.started_at <= until
             and j.journey_id != source and j.peak_end_score is not None]
    return min(later, key=lambda j: (j.started_at, j.journey_id), default=None)


def scan_answer_after(customer: CustomerState, since: int, until: int) -> FollowupEvent | None:
    answers = [e for e in customer.events.values()
               if e.nps is not None and e.closes_case is None and since < e.at_ms <= until]
    return min(answers, key=lambda e: (e.at_ms, e.event_id), default=None)


def scan_candidates(customer: CustomerState) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = [
        (c.at_ms, c.source_id, c.trigger.name, c.matched, c.journey, c.event)
        for c in customer.journey_hits.values()]
    for event_id, (best, names) in customer.event_hits.items():
        event = customer.events[event_id]
        out.append((event.at_ms, "event:" + event_id, best.name, names,
                    scan_journey_of(customer, event), event))
    return sorted(out, key=lambda c: (c[0], c[1]))


def scan_chain(tracker: FollowupTracker, customer_id: str, customer: CustomerState
               ) -> tuple[list[list[object]], tuple[int, int | None] | None]:
    """The cases the candidates open, each candidate walked in turn."""
    closes: dict[str, list[FollowupEvent]] = {}
    for event in customer.events.values():
        if event.closes_case is not None:
            closes.setdefault(event.closes_case, []).append(event)
    opened: list[list[object]] = []
    last = customer.prior
    for at, source_id, *_ in scan_candidates(customer):
        assert isinstance(at, int) and isinstance(source_id, str)
        if last is not None:
            since = at - last[0]
            still_open = last[1] is None or last[1] > at
            if since < tracker.rules.cooldown_ms or (
                    still_open and since < tracker.rules.open_suppress_ms):
                if opened:
                    count = opened[-1][3]
                    assert isinstance(count, int)
                    opened[-1][3] = count + 1
                continue
        case_id = case_id_of(customer_id, source_id)
        inside = [e for e in closes.get(case_id, []) if at <= e.at_ms <= at + tracker.horizon_ms]
        close = min(inside, key=lambda e: (e.at_ms, e.event_id), default=None)
        opened.append([source_id, case_id, close, 0])
        last = (at, None if close is None else close.at_ms)
    return opened, last


def scan_closing(customer: CustomerState) -> dict[str, list[str]]:
    closes: dict[str, list[str]] = {}
    for event in customer.events.values():
        if event.closes_case is not None:
            closes.setdefault(event.closes_case, []).append(event.event_id)
    return {case_id: sorted(ids) for case_id, ids in closes.items()}


# -- inputs -----------------------------------------------------------------------------------
def inputs(rnd: random.Random, count: int, days: int
           ) -> list[FollowupJourney | FollowupEvent]:
    """Inputs of two customers in roughly increasing time, some late."""
    out: list[FollowupJourney | FollowupEvent] = []
    versions: dict[tuple[str, str], int] = {}
    sources: list[tuple[str, str]] = []
    for index in range(count):
        customer = rnd.choice(("c1", "c2"))
        now = index * days * DAY // count
        at = max(0, now - rnd.randrange(0, 2 * DAY) // HOUR * HOUR)
        if rnd.random() < 0.45:
            kind = rnd.random()
            if kind < 0.35:  # a producer journey, or a later piece of one
                base = rnd.choice(BASES)
                journey_id = base if rnd.random() < 0.5 else f"{base}@{at // DAY}"
                keyed_by = "journey_id"
            else:  # a customer-keyed session
                journey_id = f"{customer}@{at // (6 * HOUR)}"
                keyed_by = "customer_gap"
            version = versions[customer, journey_id] = versions.get((customer, journey_id),
                                                                    0) + 1
            start = at - rnd.choice((0, 0, HOUR, 5 * HOUR))  # a later record may start earlier
            length = rnd.choice((0, HOUR, 3 * HOUR, 20 * HOUR, 3 * DAY))  # long ones too
            status = rnd.choice(("open", "closed", "closed", "superseded"))
            peak = rnd.choice((-0.95, -0.5, 0.3))
            end_valence = rnd.choice((-0.6, 0.1))
            score = None if rnd.random() < 0.25 else (peak + end_valence) / 2
            out.append(FollowupJourney(
                journey_id, customer, keyed_by, status, version, start, start + length, peak,
                "web", start + length // 2, peak, end_valence, "web", start + length, score,
                0.0))
            sources.append((customer, "journey:" + journey_id))
        else:
            event_id = f"{customer}-e{index}"
            named = rnd.choice(EVENT_JOURNEY_IDS)
            kind = rnd.random()
            outcome: str | None = None
            closes: str | None = None
            nps: int | None = None
            result = ""
            if kind < 0.5:
                nps = rnd.choice((0, 5, 8, 10))
            elif kind < 0.7:
                outcome = rnd.choice(("churned", "resolved"))
            elif sources:
                owner, source = rnd.choice(sources[-20:])
                outcome, closes, result = "resolved", case_id_of(owner, source), "called"
            out.append(FollowupEvent(event_id, customer, named, at, "web", nps, None, None,
                                     outcome, closes, result))
            sources.append((customer, "event:" + event_id))
    return out


def check(tracker: FollowupTracker, rnd: random.Random) -> None:
    for customer_id, customer in tracker.customers.items():
        # the indexes hold exactly the inputs and candidates
        assert customer.starts == sorted((j.started_at, j.journey_id)
                                         for j in customer.journeys.values())
        assert customer.times == sorted((e.at_ms, e.event_id) for e in customer.events.values())
        assert all(j.ended_at - j.started_at <= customer.span
                   for j in customer.journeys.values())
        assert customer.version() == (customer.pruned_version + 4 * len(customer.events)
                                      + sum(j.version for j in customer.journeys.values()))
        assert {k: sorted(e.event_id for e in v) for k, v in customer.closing.items()} \
            == scan_closing(customer)
        assert [(c.at_ms, c.source_id, c.trigger.name, c.matched, c.journey, c.event)
                for c in tracker.candidates(customer)] == scan_candidates(customer)
        assert tracker._chain(customer_id, customer, customer.order) \
            == scan_chain(tracker, customer_id, customer)
        for event in customer.events.values():
            assert tracker._journey_of(customer, event) == scan_journey_of(customer, event)
        for journey in customer.journeys.values():
            assert tracker._answer_in(customer, journey) == scan_answer_in(customer, journey)
        for _ in range(5):
            since = rnd.randrange(-DAY, 40 * DAY) // HOUR * HOUR
            until = since + rnd.choice((0, HOUR, DAY, HORIZON))
            source = rnd.choice(["", *list(customer.journeys)[:5]])
            assert tracker._recovery(customer, since, until, source) \
                == scan_recovery(customer, since, until, source)
            assert tracker._answer_after(customer, since, until) \
                == scan_answer_after(customer, since, until)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(20, 160), st.integers(2, 30))
def test_indexed_lookups_equal_scans_of_every_input(seed: int, count: int, days: int) -> None:
    rnd = random.Random(seed)
    tracker = FollowupTracker(RULES, HORIZON)
    for index, item in enumerate(inputs(rnd, count, days)):
        if isinstance(item, FollowupJourney):
            tracker.apply(journeys=[item])
        else:
            tracker.apply(events=[item])
        if index % 7 == 6:
            check(tracker, rnd)
        if index % 11 == 10:  # pruning rebuilds the indexes
            tracker.advance(max(0, index * days * DAY // count - DAY))
        if index % 37 == 36:  # so does a restore
            tracker = FollowupTracker(RULES, HORIZON,
                                      resume=json.loads(json.dumps(tracker.snapshot())))
    check(tracker, rnd)
