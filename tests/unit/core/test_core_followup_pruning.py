"""A loyal customer's follow-up state stays bounded, and pruning changes no case.

A customer's inputs are forgotten once stream time passes its *last* input by the horizon; a
customer who keeps coming back used to keep every journey and event it ever had (its state
written whole at every update, every case it ever had worked out and sent again).
`FollowupTracker._prune` forgets what stream time has left two horizons behind while the
customer stays active. Proved here against trackers that never prune, over generated
histories much longer than the horizon (journeys whose records change, answers, outcome events
closing earlier cases, inputs a little late, inputs sent again, a restore in between): the
latest content of every case (its version aside, which only grows) is the same, whenever
`advance` runs."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import (
    DAY,
    HOUR,
    SHORT_HORIZON,
    SHORT_LATENESS,
    SHORT_MAX_JOURNEY,
    SHORT_RULES,
    keep_latest,
)

from pipeline.core.followups import (
    CaseRecord,
    FollowupEvent,
    FollowupJourney,
    FollowupTracker,
    case_id_of,
)

RULES = SHORT_RULES
MAX_JOURNEY = SHORT_MAX_JOURNEY
LATENESS = SHORT_LATENESS
HORIZON = SHORT_HORIZON


def history(rnd: random.Random, days: int) -> list[tuple[int, FollowupJourney | FollowupEvent]]:
    """(arrival time, input) of a few customers, one loyal (a visit nearly every day), in
    arrival order: each journey's records as it grows and closes, answers, outcomes, and
    outcome events that close a case opened earlier (by the case id a source gives)."""
    out: list[tuple[int, FollowupJourney | FollowupEvent]] = []
    sources: list[tuple[str, str, int]] = []  # (customer, source id, time) of candidates
    for customer, every in (("loyal", 1), ("weekly", 7), ("rare", 23)):
        skipped = False
        for day in range(0, days, every):
            # the loyal customer never skips two days running: a gap of a horizon would have
            # it forgotten whole and start afresh (Hypothesis found one: six days skipped)
            if rnd.random() < 0.15 and not (customer == "loyal" and skipped):
                skipped = True
                continue
            skipped = False
            start = day * DAY + rnd.randrange(0, 20) * HOUR
            journey_id = f"{customer}@{day}"
            length = rnd.randrange(1, MAX_JOURNEY // HOUR) * HOUR
            end = start + length
            peak = rnd.choice([-0.9, -0.5, 0.2, 0.8])
            end_valence = rnd.choice([-0.6, -0.1, 0.5])
            for version, (status, until) in enumerate(
                    (("open", start + length // 2), ("closed", end)), start=1):
                record = FollowupJourney(
                    journey_id, customer, "customer_gap", status, version, start, until, peak,
                    "web", start + length // 4, min(peak, end_valence), end_valence, "web",
                    until, (peak + end_valence) / 2, 0.0)
                out.append((until + rnd.randrange(0, LATENESS), record))
            sources.append((customer, "journey:" + journey_id, end))
            if rnd.random() < 0.5:
                at = start + length // 3
                event_id = f"{customer}-{day}-a"
                out.append((at + rnd.randrange(0, LATENESS), FollowupEvent(
                    event_id, customer, None, at, "web", rnd.choice([1, 5, 9, 10]), None, None,
                    None, None, "")))
                sources.append((customer, "event:" + event_id, at))
            if rnd.random() < 0.08:
                at = end - HOUR
                event_id = f"{customer}-{day}-o"
                out.append((at + rnd.randrange(0, LATENESS), FollowupEvent(
                    event_id, customer, None, at, "hotline", None, None, None, "churned", None,
                    "")))
            if rnd.random() < 0.3:
                # a CX agent closes a case of this customer opened in the last days (or
                # earlier than the case's window allows, or one that never opened)
                earlier = [(s, t) for c, s, t in sources if c == customer and t < start]
                if earlier:
                    source, _ = rnd.choice(earlier[-6:])
                    at = start + HOUR
                    out.append((at + rnd.randrange(0, LATENESS), FollowupEvent(
                        f"{customer}-{day}-c", customer, None, at, "hotline", None, None, None,
                        "resolved", case_id_of(customer, source), "called back")))
    out.sort(key=lambda pair: pair[0])
    return out


def feed(inputs: list[tuple[int, Any]], tracker: FollowupTracker, rnd: random.Random,
         every_ms: int, restore_at: float | None = None
         ) -> tuple[dict[str, tuple[Any, ...]], FollowupTracker]:
    """The inputs one at a time (some sent twice, as a restart sends them), `advance` whenever
    stream time (the latest arrival) moved `every_ms` on; the latest content of each case, and
    the tracker at the end."""
    latest: dict[str, CaseRecord] = {}
    advanced = -(1 << 60)
    sent: list[tuple[int, Any]] = []
    for index, (arrival, item) in enumerate(inputs):
        batch = [item]
        if sent and rnd.random() < 0.05:
            # an input sent again: a recent one (a restart sends what stage one still holds)
            # or the loyal customer's from long ago (pruned: passed over). Not an old input of
            # a customer forgotten whole: that would be a new customer, pruning or not.
            again_at, again = rnd.choice(sent[-300:])
            if arrival - again_at <= MAX_JOURNEY + LATENESS or again.customer_id == "loyal":
                batch.append(again)
        sent.append((arrival, item))
        for one in batch:
            if isinstance(one, FollowupJourney):
                keep_latest(latest, tracker.apply(journeys=[one]))
            else:
                keep_latest(latest, tracker.apply(events=[one]))
        if arrival - advanced >= every_ms:
            tracker.advance(arrival)
            advanced = arrival
        if restore_at is not None and index == int(restore_at * len(inputs)):
            tracker = FollowupTracker(tracker.rules, tracker.horizon_ms, prune=tracker.prune,
                                      resume=json.loads(json.dumps(tracker.snapshot())))
    return ({case_id: tuple(case._replace(version=0)) for case_id, case in latest.items()},
            tracker)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(40, 120))
def test_pruning_changes_no_case_whenever_it_runs(seed: int, days: int) -> None:
    inputs = history(random.Random(seed), days)
    reference, _ = feed(inputs, FollowupTracker(RULES, HORIZON, prune=False),
                        random.Random(seed), every_ms=HOUR)
    assert reference, "the history opens cases"
    for every_ms, restore_at in ((HOUR, None), (5 * DAY, None), (HOUR // 6, 0.6)):
        pruned, tracker = feed(inputs, FollowupTracker(RULES, HORIZON), random.Random(seed),
                               every_ms=every_ms, restore_at=restore_at)
        assert pruned == reference
        loyal = tracker.customers["loyal"]
        assert loyal.pruned_version > 0 and loyal.prior is not None  # it did prune


def test_a_loyal_customers_state_stays_bounded() -> None:
    rnd = random.Random(7)
    inputs = [(arrival, item) for arrival, item in history(rnd, 400)
              if item.customer_id == "loyal"]
    tracker = FollowupTracker(RULES, HORIZON)
    unpruned = FollowupTracker(RULES, HORIZON, prune=False)
    held: list[int] = []
    for arrival, item in inputs:
        for t in (tracker, unpruned):
            if isinstance(item, FollowupJourney):
                t.apply(journeys=[item])
            else:
                t.apply(events=[item])
            t.advance(arrival)
        customer = tracker.customers["loyal"]
        held.append(len(customer.journeys) + len(customer.events))
    everything = unpruned.customers["loyal"]
    # without pruning: every input of 400 days; with it: about two horizons (14 days) of them
    assert len(everything.journeys) > 300
    assert max(held[len(held) // 2:]) < 2 * max(held[: len(held) // 4])
    assert max(held) < 60
    customer = tracker.customers["loyal"]
    assert customer.version() == everything.version()  # versions go on growing as before
    assert len(customer.emitted) < len(everything.emitted) / 5
