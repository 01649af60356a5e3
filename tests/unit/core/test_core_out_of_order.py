"""Out-of-order events of one customer: the sessions are the pure gap clustering of the event
set, whatever the order, and cost O(log n) per event in the common cases (docs/core.md)."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import T0, event

from pipeline.core.config import JourneyConfig
from pipeline.core.event import content_digest
from pipeline.core.journeys import JourneyTracker
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

GAP, MAX_LEN = 10_000, 45_000
CONFIG = JourneyConfig(idle_gap_ms=GAP, max_length_ms=MAX_LEN, allowed_lateness_ms=10**9)


def clustering(events: list[tuple[int, str, bool]]) -> list[list[str]]:
    """The reference: sort by (ms, id), start a group after a gap, a journey_end or the cap."""
    groups: list[list[tuple[int, str, bool]]] = []
    for e in sorted(events):
        if groups:
            prev, start = groups[-1][-1], groups[-1][0][0]
            if e[0] - prev[0] <= GAP and not prev[2] and e[0] - start < MAX_LEN:
                groups[-1].append(e)
                continue
        groups.append([e])
    return [[eid for _, eid, _ in g] for g in groups]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120_000), st.booleans()), min_size=1, max_size=40),
       st.randoms(use_true_random=False))
def test_any_order_gives_the_gap_clustering(raw, rnd) -> None:  # type: ignore[no-untyped-def]
    events = [(ms, f"e{i:03d}", end and i % 4 == 0) for i, (ms, end) in enumerate(raw)]
    order = list(events)
    rnd.shuffle(order)
    tracker = JourneyTracker(CONFIG, SCORING_RULES)
    watermark = max(ms for ms, _, _ in events)
    for ms, eid, end in order:
        e = event(eid, T0 + ms, customer="c", type="journey_end" if end else "interaction",
                  valence=0.1)
        assert tracker.apply(e, T0 + watermark)[1] is None
    got = sorted(sorted(j.ids) for j in tracker.journeys())
    assert got == sorted(sorted(g) for g in clustering(events))
    # ids are the customer and the first event time (the same-millisecond suffix aside)
    for journey in tracker.journeys():
        assert journey.id.split("#")[0].endswith(f"@{journey.id.split('@')[1].split('#')[0]}")
        assert journey.moments.events == len(journey.ids)


def test_twenty_thousand_reversed_events_of_one_customer_in_under_five_seconds() -> None:
    events = [event(f"e{i:06d}", T0 + i * 1000, customer="c1", valence=0.1)
              for i in range(20_000)]
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    started = time.process_time()
    watermark = events[-1].occurred_ms
    for e in reversed(events):
        assert tracker.apply(e, watermark)[1] is None
    assert time.process_time() - started < 5.0
    [journey] = tracker.journeys()
    assert journey.moments.events == 20_000 and journey.id == "c1@2026-11-18T11:06:40.000Z"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 0, 5, 12, 20, 33, 40, 47, 60, 90]),
                          st.sampled_from([0, 0, 1000]), st.booleans(),
                          st.sampled_from([None, 0.5, -0.5])), min_size=1, max_size=14),
       st.randoms(use_true_random=False))
def test_fast_inserts_emit_exactly_what_regrouping_emits(raw, rnd) -> None:  # type: ignore[no-untyped-def]
    """Every record (id, version, status, content) and the final state equal the reference
    path that regroups all of the customer's sessions for each out-of-order event."""
    config = JourneyConfig(idle_gap_ms=10 * 60_000, max_length_ms=45 * 60_000,
                           allowed_lateness_ms=10**9)
    events = [event(f"e{i:02d}", T0 + minute * 60_000 + extra, customer="c",
                    type="journey_end" if end and i % 3 == 0 else "interaction", valence=v)
              for i, (minute, extra, end, v) in enumerate(raw)]
    rnd.shuffle(events)

    def emitted(tracker: JourneyTracker) -> list[list[dict]]:  # type: ignore[type-arg]
        out, watermark = [], -(1 << 60)
        for e in events:
            watermark = max(watermark, e.occurred_ms)
            records, reason = tracker.apply(e, watermark)
            assert reason is None
            out.append([r.to_dict() for r in records + tracker.advance(watermark)])
        return out

    def state(tracker: JourneyTracker) -> dict:  # type: ignore[type-arg]
        """The dumped state, each journey's entries in time order (the fast path appends)."""
        data = tracker.snapshot_key("c")
        assert data is not None
        for journey in data["sessions"]:
            pairs = sorted(zip(journey["entries"], journey["digests"], strict=True),
                           key=lambda p: (p[0][0], p[0][1]))
            journey["entries"] = [p[0] for p in pairs]
            journey["digests"] = [p[1] for p in pairs]
        return data

    fast = JourneyTracker(config, SCORING_RULES)
    reference = JourneyTracker(config, SCORING_RULES, fast_inserts=False)
    assert emitted(fast) == emitted(reference)
    assert state(fast) == state(reference)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from([0, 5, 12, 20, 33, 47, 60, 90]),
                          st.sampled_from([0.5, -0.5, 0.1])), min_size=1, max_size=16),
       st.randoms(use_true_random=False))
def test_every_change_of_a_session_is_emitted_copies_included(raw, rnd) -> None:  # type: ignore[no-untyped-def]
    """Copies of an event id with other content (any order, other sessions included): after
    each event, the last record emitted for every journey held is its record now, and the
    sessions are the gap clustering of the copies kept (the smaller digest of each id). A
    replacing copy that went to another session left the replaced copy's session regrouped as
    it was and never emitted again (found by `bench.conflict_parity`, 2026-12-07)."""
    config = JourneyConfig(idle_gap_ms=10 * 60_000, max_length_ms=45 * 60_000,
                           allowed_lateness_ms=10**9)
    events = [event(f"e{i}", T0 + minute * 60_000, customer="c", valence=v)
              for i, minute, v in raw]
    rnd.shuffle(events)
    tracker = JourneyTracker(config, SCORING_RULES)
    watermark = T0 + 90 * 60_000
    last: dict[str, object] = {}
    for e in events:
        records, _ = tracker.apply(e, watermark)
        last.update((r.journey_id, r) for r in records)
        for journey in tracker.journeys():
            assert last[journey.id] == tracker.record(journey), (e.event_id, journey.id)
    kept: dict[str, tuple[int, int]] = {}  # id -> (digest, ms) of the copy kept
    for e in events:
        digest = content_digest(e)
        if e.event_id not in kept or digest < kept[e.event_id][0]:
            kept[e.event_id] = (digest, e.occurred_ms)
    groups: list[list[tuple[int, str]]] = []
    for ms, eid in sorted((ms, eid) for eid, (_, ms) in kept.items()):
        if groups and ms - groups[-1][-1][0] <= config.idle_gap_ms and (
                ms - groups[-1][0][0] < config.max_length_ms):
            groups[-1].append((ms, eid))
        else:
            groups.append([(ms, eid)])
    assert sorted(sorted(j.ids) for j in tracker.journeys() if j.ids) == sorted(
        sorted(eid for _, eid in g) for g in groups)
