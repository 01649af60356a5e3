"""The state contract (`pipeline.core.protocol.Snapshotting`, docs/core.md "State contract"):
every stateful core class, fed a random input, snapshotted at a random cut and rebuilt from
that snapshot, gives the same outputs as the original for the rest of the input and ends in the
same snapshot; the snapshot is plain JSON (equal after `json.dumps` / `json.loads` once its
tuples are read as lists: no objects, no sets) and does not change when the object goes on (it
aliases no live state).

The classes with per-key state are also checked through `snapshot_key` / `restore_key`, the
path the stream's tables take: every key restored into a fresh object behaves as the original.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any, Protocol

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import DAY, HOUR, MIN, T0, event, nps_bucket_records
from test_core_followups import HORIZON, RULES, inputs

from pipeline.core.buckets import SurveyBuckets
from pipeline.core.claims import EventClaims
from pipeline.core.config import CoreConfig, DropConfig, JourneyConfig, WindowConfig
from pipeline.core.drops import DropDetector
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Signals, Survey, TouchpointEvent
from pipeline.core.followups import FollowupEvent, FollowupJourney, FollowupTracker
from pipeline.core.journeys import JourneyTracker
from pipeline.core.protocol import KeySnapshotting, Snapshotting
from pipeline.core.records import JourneyRecord, MetricRecord
from pipeline.core.segment_totals import SegmentTotals
from pipeline.scoring_rules import load_scoring_rules

RULES_V1 = load_scoring_rules()
EXAMPLES = settings(max_examples=25, deadline=None)  # the file: about a minute on a loaded machine


class Op(Protocol):
    """One step on the object under test. A protocol, not Callable[[Any], object]: the steps are
    lambdas binding their arguments as defaults, which mypy cannot infer against a Callable of
    one parameter."""

    def __call__(self, target: Any, /) -> object: ...


def as_lists(value: Any) -> Any:
    """`value` with every tuple as a list (what JSON reads back), and nothing else changed: a
    set, an object or a non-str key stays as it is, so it cannot equal what JSON reads."""
    if isinstance(value, tuple | list):
        return [as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: as_lists(v) for k, v in value.items()}
    return value


def check_resume(make: Callable[[Any], Snapshotting[Any]], ops: list[Op], cut: int) -> None:
    """`make(None)`: a fresh object, `make(snapshot)`: one resumed from `snapshot`. Run
    `ops[:cut]` on a fresh object, snapshot it, resume a second object from the snapshot (as
    JSON), then run `ops[cut:]` on both: identical outputs and final snapshots."""
    original = make(None)
    for op in ops[:cut]:
        op(original)
    snapshot = original.snapshot()
    kept = copy.deepcopy(snapshot)
    wire = json.loads(json.dumps(snapshot))
    assert wire == as_lists(snapshot)  # plain JSON: an object or a set would not compare equal
    resumed = make(wire)
    for i, op in enumerate(ops[cut:]):
        assert op(resumed) == op(original), f"op {cut + i} after the cut differs"
    assert resumed.snapshot() == original.snapshot()
    assert snapshot == kept  # the object went on; its earlier snapshot did not move


def check_keys(original: KeySnapshotting[Any, Any], fresh: KeySnapshotting[Any, Any],
               keys: list[Any]) -> None:
    """Every key restored into `fresh` from `original` reads back the same."""
    for key in keys:
        fresh.restore_key(key, json.loads(json.dumps(original.snapshot_key(key))))
    for key in keys:
        assert fresh.snapshot_key(key) == original.snapshot_key(key)


# -- inputs ---------------------------------------------------------------------------------

STEPS = [0, 1_000, MIN // 2, 5 * MIN, 20 * MIN, 45 * MIN, 2 * HOUR, -3 * MIN, -30 * MIN,
         -5 * HOUR]


@st.composite
def touchpoint_events(draw: st.DrawFn, max_size: int = 30) -> list[TouchpointEvent]:
    """Events of a few customers and journey ids over hours, some out of order or late, some
    sent again (the same copy: a duplicate; another copy: a conflict)."""
    out: list[TouchpointEvent] = []
    at = T0
    for i in range(draw(st.integers(1, max_size))):
        at += draw(st.sampled_from(STEPS))
        if out and draw(st.integers(0, 7)) == 0:  # an event_id again
            again = draw(st.sampled_from(out))
            if draw(st.booleans()):
                out.append(again)
                continue
            eid = again.event_id
        else:
            eid = f"e{i}"
        kind = draw(st.sampled_from(["interaction", "interaction", "survey", "survey",
                                     "journey_end", "outcome"]))
        channel = draw(st.sampled_from(["web", "phone", "store"]))
        out.append(event(
            eid, at, customer=draw(st.sampled_from(["c1", "c2", "c3"])),
            journey=draw(st.sampled_from([None, None, "j1", "j2"])), type=kind,
            touchpoint=f"{channel}-desk", channel=channel,
            valence=draw(st.sampled_from([None, -0.9, -0.3, 0.0, 0.4, 1.0])),
            signals=(Signals(wait_seconds=draw(st.sampled_from([30, 900, 3600])),
                             resolved=draw(st.booleans()))
                     if kind == "interaction" and draw(st.booleans()) else None),
            survey=(Survey(nps=draw(st.integers(0, 10)), ces=draw(st.integers(1, 7)),
                           csat=draw(st.integers(1, 5))) if kind == "survey" else None),
            outcome="churned" if kind == "outcome" else None,
            attributes={"region": draw(st.sampled_from(["north", "south"]))}))
    return out


def small_config() -> CoreConfig:
    """Short gaps and lateness, so a few hours of events close, evict and forget things."""
    base = CoreConfig()
    return CoreConfig(
        journeys=JourneyConfig(idle_gap_ms=30 * MIN, journey_idle_ms=3 * HOUR,
                               max_length_ms=6 * HOUR, allowed_lateness_ms=2 * HOUR,
                               segment_attributes=("region",)),
        windows=WindowConfig(bucket_ms=MIN, allowed_lateness_ms=2 * HOUR,
                             segment_attributes=("region",)),
        drops=base.drops, clock=base.clock)


# -- the classes --------------------------------------------------------------------------------


@EXAMPLES
@given(events=touchpoint_events(), data=st.data())
def test_engine_resumes_whole_from_its_snapshot(events: list[TouchpointEvent],
                                                data: st.DataObject) -> None:
    config = small_config()
    ops: list[Op] = []
    i = 0
    while i < len(events):  # single events and batches, on three partitions
        size = data.draw(st.integers(1, 4))
        batch, partition = events[i:i + size], data.draw(st.integers(0, 2))
        i += size
        if size == 1:
            ops.append(lambda e, ev=batch[0], p=partition: e.process(ev, p))
        else:
            ops.append(lambda e, evs=batch, p=partition: e.process_many(evs, p))
    ops.append(lambda e: e.finish())
    cut = data.draw(st.integers(0, len(ops)))
    parts = data.draw(st.sampled_from([1, 3]))  # the claims in one part, or by claims partition

    def make(snapshot: Any) -> ExperienceEngine:
        if snapshot is None:
            return ExperienceEngine(config, RULES_V1, claims_partitions=parts)
        return ExperienceEngine(config, RULES_V1, resume=snapshot)  # its claims' parts with it

    check_resume(make, ops, cut)


class DrivenTracker:
    """A tracker with the stream time its caller keeps (the largest event time so far, as the
    engine and the stream keep it beside the tracker)."""

    def __init__(self, snapshot: dict[str, Any] | None) -> None:
        self.tracker = JourneyTracker(small_config().journeys, RULES_V1, keep_dirty_keys=True,
                                      resume=None if snapshot is None else snapshot["tracker"])
        self.watermark = T0 - DAY if snapshot is None else int(snapshot["watermark"])

    def snapshot(self) -> dict[str, Any]:
        return {"tracker": self.tracker.snapshot(), "watermark": self.watermark}

    def apply(self, ev: TouchpointEvent, drain: bool) -> list[object]:
        self.watermark = max(self.watermark, ev.occurred_ms)
        out: list[object] = [self.tracker.apply(ev, self.watermark)]
        if drain:  # left pending at other ops: the snapshot carries them
            out += self.drain()
        return out

    def drain(self) -> list[object]:
        return [self.tracker.drain_end_deltas(), self.tracker.drain_retractions(),
                self.tracker.drain_dirty_keys()]


@EXAMPLES
@given(events=touchpoint_events(), data=st.data())
def test_journey_tracker_resumes_from_its_snapshot_and_its_keys(
        events: list[TouchpointEvent], data: st.DataObject) -> None:
    drains = [data.draw(st.booleans()) for _ in events]
    ops: list[Op] = [lambda t, ev=ev, d=d: t.apply(ev, d) for ev, d in zip(events, drains,
                                                                           strict=True)]
    ops.append(lambda t: [t.tracker.advance(t.watermark + 4 * HOUR), *t.drain()])
    check_resume(DrivenTracker, ops, data.draw(st.integers(0, len(ops))))

    # the stream's path: each key through snapshot_key / restore_key
    driven = DrivenTracker(None)
    for ev in events:
        driven.apply(ev, True)
    fresh = JourneyTracker(small_config().journeys, RULES_V1)
    check_keys(driven.tracker, fresh, driven.tracker.keys())
    later = max(driven.watermark, T0) + 4 * HOUR
    # the same records; a key restored alone is woken at its own deadline, so one `advance`
    # may emit them in another order than the original (whose heap kept stale entries)
    assert by_id(fresh.advance(later)) == by_id(driven.tracker.advance(later))


def by_id(records: list[JourneyRecord]) -> dict[str, JourneyRecord]:
    out = {r.journey_id: r for r in records}
    assert len(out) == len(records)  # one record per journey and advance
    return out


def partial_stream(events: list[TouchpointEvent], partition: int, config: WindowConfig
                   ) -> list[MetricRecord]:
    """The partials stage one flushes for `events` (one flush per event)."""
    buckets = SurveyBuckets(config, partition)
    out: list[MetricRecord] = []
    for ev in events:
        buckets.add_event(ev)
        out += buckets.flush()
    return out


@EXAMPLES
@given(events=touchpoint_events(), data=st.data())
def test_survey_buckets_resume_from_their_snapshot(events: list[TouchpointEvent],
                                                   data: st.DataObject) -> None:
    config = small_config().windows
    ops: list[Op] = []
    horizon = T0 - DAY
    for ev in events:
        ops.append(lambda b, ev=ev: b.add_event(ev))
        choice = data.draw(st.integers(0, 3))
        if choice == 0:
            ops.append(lambda b: b.flush())
        elif choice == 1:
            horizon = max(horizon, ev.occurred_ms - HOUR)
            ops.append(lambda b, h=horizon: b.evict(h))
    ops.append(lambda b: b.flush())
    ops.append(lambda b, h=horizon + DAY: [b.evict(h), b.records()])

    def make(snapshot: Any) -> SurveyBuckets:
        return SurveyBuckets(config, 2, resume=snapshot)

    check_resume(make, ops, data.draw(st.integers(0, len(ops))))


DROPS = DropConfig(window_ms=10 * MIN, baseline_ms=60 * MIN, min_n=20, min_baseline_n=20,
                   evaluate_every_ms=10 * MIN, hold_ms=10 * MIN, negative_end_delay_ms=10 * MIN,
                   cusum_min_hour_n=10)


@EXAMPLES
@given(seed=st.integers(0, 2**32 - 1), buckets=st.integers(5, 150),
       drift=st.sampled_from([0.0, 0.004, 0.01]), events=touchpoint_events(max_size=15),
       data=st.data())
def test_drop_detector_resumes_from_its_snapshot_and_its_series(
        seed: int, buckets: int, drift: float, events: list[TouchpointEvent],
        data: st.DataObject) -> None:
    rng = random.Random(seed)
    records = [*nps_bucket_records(rng, T0, buckets, 5.0, 0.5, 0.2, drift_per_bucket=drift),
               *nps_bucket_records(rng, T0, buckets // 2, 3.0, 0.4, 0.3, partition=1,
                                   drift_per_bucket=drift)]
    records += partial_stream(events, 0, small_config().windows)
    records.sort(key=lambda r: (r.window_end, r.source_partition))
    ops: list[Op] = []
    for i, record in enumerate(records):
        ops.append(lambda d, r=record: d.apply_partial(r))
        if i + 1 == len(records) or records[i + 1].window_end != record.window_end:
            ops.append(lambda d, w=record.window_end: [d.advance(w), d.firing()])
        if rng.random() < 0.1:
            ops.append(lambda d: sorted(d.drain_dirty()))
    ops.append(lambda d, w=records[-1].window_end + DAY: [d.advance(w), d.firing()])

    def make(snapshot: Any) -> DropDetector:
        return DropDetector(DROPS, MIN, resume=snapshot)

    check_resume(make, ops, data.draw(st.integers(0, len(ops))))

    detector = make(None)
    for op in ops[:-1]:
        op(detector)
    check_keys(detector, make(None), detector.series_keys())


@EXAMPLES
@given(events=touchpoint_events(), data=st.data())
def test_segment_totals_resume_from_their_snapshot_and_their_buckets(
        events: list[TouchpointEvent], data: st.DataObject) -> None:
    ops: list[Op] = []
    for ev in events:
        bucket = ev.occurred_ms - ev.occurred_ms % MIN
        if ev.survey is not None and ev.survey.nps is not None:
            ops.append(lambda t, b=bucket, e=ev.event_id, n=ev.survey.nps:
                       t.add_answer("nps", b, e, n))
        if data.draw(st.integers(0, 3)) == 0:
            ops.append(lambda t, b=bucket, e=ev.event_id: t.remove_answer("nps", b, e))
        ops.append(lambda t, j=ev.journey_key, b=bucket, n=(ev.valence or 0.0) < 0:
                   t.set_end(j, (b, n)))
        choice = data.draw(st.integers(0, 4))
        if choice == 0:
            ops.append(lambda t: t.flush())
        elif choice == 1:
            ops.append(lambda t: t.drain_changed())
        elif choice == 2:
            ops.append(lambda t, h=ev.occurred_ms - HOUR: [t.evict(h), t.is_empty()])
    ops.append(lambda t: [t.flush(), t.drain_changed(), t.records()])

    def make(snapshot: Any) -> SegmentTotals:
        return SegmentTotals("channel", "phone", MIN, resume=snapshot)

    check_resume(make, ops, data.draw(st.integers(0, len(ops))))


@EXAMPLES
@given(claims=st.lists(st.tuples(st.sampled_from(["e1", "e2", "e3", "e4"]),
                                 st.integers(0, 5), st.sampled_from(["j-a", "j-b", "c1"]),
                                 st.integers(0, 3), st.integers(0, 20)), max_size=30),
       data=st.data())
def test_event_claims_resume_from_their_snapshot_and_their_keys(
        claims: list[tuple[str, int, str, int, int]], data: st.DataObject) -> None:
    ops: list[Op] = []
    for event_id, digest, key, partition, minute in claims:
        ops.append(lambda c, a=(event_id, digest, key, partition, T0 + minute * MIN):
                   [c.claim(*a), c.changed, len(c)])
        if data.draw(st.integers(0, 4)) == 0:
            horizon = T0 + data.draw(st.integers(0, 20)) * MIN
            ops.append(lambda c, h=horizon: c.forget_before(h))
        if data.draw(st.integers(0, 2)) == 0:  # the stream times the claims heard
            at = T0 + data.draw(st.integers(0, 30)) * MIN
            ops.append(lambda c, p=partition, w=at: [c.advance(p, w), c.forgotten_before])
    ops.append(lambda c: c.forget_before(T0 + DAY))

    def make(snapshot: Any) -> EventClaims:
        return EventClaims(resume=snapshot, reach_ms=5 * MIN)

    check_resume(make, ops, data.draw(st.integers(0, len(ops))))
    held = make(None)
    for op in ops[:-1]:
        op(held)
    check_keys(held, make(None), ["e1", "e2", "e3", "e4"])


@EXAMPLES
@given(items=inputs(), data=st.data())
def test_followup_tracker_resumes_from_its_snapshot_and_its_customers(
        items: list[FollowupJourney | FollowupEvent], data: st.DataObject) -> None:
    ops: list[Op] = []
    for item in items:
        if isinstance(item, FollowupJourney):
            ops.append(lambda t, j=item: t.apply(journeys=[j]))
        else:
            ops.append(lambda t, e=item: t.apply(events=[e]))
        if data.draw(st.integers(0, 3)) == 0:
            watermark = T0 + data.draw(st.integers(0, 80)) * DAY
            ops.append(lambda t, w=watermark: t.advance(w))
        if data.draw(st.integers(0, 3)) == 0:
            ops.append(lambda t: t.drain_dirty_keys())
    ops.append(lambda t: [t.advance(T0 + 200 * DAY), t.drain_dirty_keys()])

    def make(snapshot: Any) -> FollowupTracker:
        return FollowupTracker(RULES, HORIZON, resume=snapshot)

    check_resume(make, ops, data.draw(st.integers(0, len(ops))))
    tracker = make(None)
    for op in ops[:-1]:
        op(tracker)
    check_keys(tracker, make(None), ["c1", "c2"])
