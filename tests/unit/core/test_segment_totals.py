"""`SegmentTotals` (the stream's stage two): exact totals from idempotent contributions.

(a) contributions derived from an event set give, per (metric, segment, bucket), the same counts,
    sufficient statistics, value and interval as summing the `SurveyBuckets` partials of every
    source partition (`ExperienceEngine`, events spread over partitions by key);
(b) re-sending contributions changes nothing; (c) the state round-trips through JSON;
(d) the version of a bucket never decreases from one flush to the next.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import MIN, T0, event

from pipeline.core.buckets import segments_of, window_of
from pipeline.core.config import CoreConfig, JourneyConfig, WindowConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Survey, TouchpointEvent
from pipeline.core.journeys import EndDelta
from pipeline.core.partitioner import partition_for
from pipeline.core.records import MetricRecord
from pipeline.core.segment_totals import SealedEnds, SegmentTotals
from pipeline.core.valence import ces_on_7
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

BUCKET: int = 10 * MIN
ATTRS = ("region",)
CONFIG = CoreConfig(journeys=JourneyConfig(segment_attributes=ATTRS),
                    windows=WindowConfig(bucket_ms=BUCKET, segment_attributes=ATTRS))
STATS = ("n", "promoters", "passives", "detractors", "total", "total_sq", "easy", "hard",
         "positives")
Segment = tuple[str, str]
BucketId = tuple[str, str, str, int]  # metric, dim, value, bucket_start


def bucket_start(ms: int) -> int:
    return ms - ms % BUCKET


# -- contributions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    segment: Segment
    metric: str
    start: int
    event_id: str
    answer: int | float

    def send(self, totals: SegmentTotals) -> bool:
        return totals.add_answer(self.metric, self.start, self.event_id, self.answer)


@dataclass(frozen=True)
class End:
    segment: Segment
    journey_id: str
    contribution: tuple[int, bool] | None

    def send(self, totals: SegmentTotals) -> bool:
        return totals.set_end(self.journey_id, self.contribution)


Contribution = Answer | End


def answers_of(e: TouchpointEvent) -> list[Contribution]:
    survey = e.survey
    if survey is None:
        return []
    start = bucket_start(e.occurred_ms)
    out: list[Contribution] = []
    for segment in segments_of(e, ATTRS):
        if survey.nps is not None:
            out.append(Answer(segment, "nps", start, e.event_id, survey.nps))
        if survey.ces is not None:
            out.append(Answer(segment, "ces", start, e.event_id,
                              ces_on_7(survey.ces, survey.ces_scale)))
        if survey.csat is not None:
            out.append(Answer(segment, "csat", start, e.event_id, survey.csat))
    return out


def ends_of(delta: EndDelta) -> list[Contribution]:
    contribution = (bucket_start(delta.at_ms), delta.negative) if delta.sign > 0 else None
    return [End(segment, delta.journey_id, contribution) for segment in delta.segments]


def feed(contributions: list[Contribution], totals: dict[Segment, SegmentTotals]) -> None:
    for c in contributions:
        seg = totals.get(c.segment)
        if seg is None:
            seg = totals[c.segment] = SegmentTotals(c.segment[0], c.segment[1], BUCKET)
        c.send(seg)


# -- the reference: SurveyBuckets partials summed over source partitions ------------------------


def run_engine(events: list[TouchpointEvent], partitions: int
               ) -> tuple[dict[tuple[BucketId, int], MetricRecord], list[Contribution]]:
    """Latest partial per (bucket, source partition), and the contributions stage one would send
    (answers of accepted events, negative-end deltas as the trackers emit them)."""
    engine = ExperienceEngine(CONFIG, SCORING_RULES)
    contributions: list[Contribution] = []
    partials: dict[tuple[BucketId, int], MetricRecord] = {}

    def keep(records: list[MetricRecord]) -> None:
        for r in records:
            partials[((r.metric, r.segment_dim, r.segment_value, r.window_start),
                      r.source_partition)] = r

    log: list[tuple[int, EndDelta]] = []
    engine.end_delta_log = log

    def drain_ends() -> None:
        for _, delta in log:
            contributions.extend(ends_of(delta))
        log.clear()

    for e in events:
        out, reason = engine.process(e, partition_for(e.journey_key, partitions))
        drain_ends()
        if reason is None:
            contributions.extend(answers_of(e))
        keep(out.metrics)
    keep(engine.finish().metrics)
    drain_ends()
    return partials, contributions


def summed(partials: dict[tuple[BucketId, int], MetricRecord]) -> dict[BucketId, dict[str, Any]]:
    merged: dict[BucketId, Any] = {}
    for (bucket, _), record in sorted(partials.items()):
        window = window_of(record)
        merged[bucket] = window if bucket not in merged else merged[bucket].merge(window)
    return {b: described(w) for b, w in merged.items() if w.n}


def described(window: Any) -> dict[str, Any]:
    est = window.result()
    out = {"n": est.n, "value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high}
    for name in STATS[1:]:
        out[name] = getattr(window, name, 0 if name != "total" and name != "total_sq" else 0.0)
    return out


def from_records(records: list[MetricRecord]) -> dict[BucketId, dict[str, Any]]:
    out = {}
    for r in records:
        row = {name: getattr(r, name) for name in (*STATS, "value", "ci_low", "ci_high")}
        out[(r.metric, r.segment_dim, r.segment_value, r.window_start)] = row
    return {b: row for b, row in out.items() if row["n"]}


def current(totals: dict[Segment, SegmentTotals]) -> dict[BucketId, dict[str, Any]]:
    out = {}
    for seg in totals.values():
        metrics = [("negative_end", s) for s in {c[0] for c in seg.ends.values()}]
        metrics += [(m, s) for m, buckets in seg.answers.items() for s in buckets]
        for metric, start in metrics:
            window = seg.window(metric, start)
            if window.n:
                out[(metric, seg.dim, seg.value, start)] = described(window)
    return out


# -- random event sets ---------------------------------------------------------------------------


@st.composite
def event_sets(draw: st.DrawFn) -> list[TouchpointEvent]:
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["interaction", "survey", "survey", "journey_end"]))
        survey = None
        if kind == "survey":
            scale = draw(st.sampled_from([5, 7]))
            survey = Survey(nps=draw(st.one_of(st.none(), st.integers(0, 10))),
                            ces=draw(st.one_of(st.none(), st.integers(1, scale))),
                            ces_scale=scale,  # type: ignore[arg-type]
                            csat=draw(st.one_of(st.none(), st.integers(1, 5))))
        out.append(event(
            f"e{i:02d}", T0 + draw(st.integers(0, 24)) * 5 * MIN,
            customer=draw(st.sampled_from(["c1", "c2", "c3"])),
            journey=draw(st.sampled_from([None, None, "j1", "j2"])), type=kind,
            valence=draw(st.one_of(st.none(), st.sampled_from([-0.9, -0.2, 0.0, 0.4, 1.0]))),
            touchpoint=draw(st.sampled_from(["checkout", "hotline"])),
            channel=draw(st.sampled_from(["web", "phone"])), survey=survey,
            attributes=draw(st.sampled_from([{}, {"region": "eu"}, {"region": "us"}]))))
    return out


# -- (a) stage two equals the sum of stage one ---------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(event_sets(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_totals_equal_the_partials_summed_over_partitions(
        events: list[TouchpointEvent], partitions: int, rnd: random.Random) -> None:
    arrival = list(events)
    rnd.shuffle(arrival)
    partials, contributions = run_engine(arrival, partitions)
    expected = summed(partials)
    totals: dict[Segment, SegmentTotals] = {}
    feed(contributions, totals)
    assert current(totals) == expected
    flushed: list[MetricRecord] = [r for seg in totals.values() for r in seg.flush()]
    assert from_records(flushed) == expected
    # and the totals hold exactly the accepted answers: one per (event, metric, segment)
    assert sum(v["n"] for b, v in expected.items() if b[0] != "negative_end") == sum(
        1 for c in contributions if isinstance(c, Answer))


# -- (b) idempotent under redelivery -------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(event_sets(), st.integers(1, 3), st.randoms(use_true_random=False))
def test_resending_contributions_changes_nothing(
        events: list[TouchpointEvent], partitions: int, rnd: random.Random) -> None:
    _, contributions = run_engine(events, partitions)
    once: dict[Segment, SegmentTotals] = {}
    feed(contributions, once)
    again: dict[Segment, SegmentTotals] = {}
    resent: list[Contribution] = []
    for c in contributions:  # each contribution redelivered up to 3 times in a row
        resent += [c] * rnd.randint(1, 4)
    feed(resent, again)
    # answers stay valid forever: redeliver a random sample of them later, in any order
    answers = [c for c in contributions if isinstance(c, Answer)]
    late = [rnd.choice(answers) for _ in range(len(answers))] if answers else []
    changed = []
    for c in late:
        changed.append(c.send(again[c.segment]))
    assert not any(changed)
    # a journey's current contribution re-sent at the end changes nothing either
    current_ends = {(c.segment, c.journey_id): c for c in contributions if isinstance(c, End)}
    assert not any(c.send(again[c.segment]) for c in current_ends.values())
    assert {k: v.snapshot() for k, v in again.items()} == {
        k: v.snapshot() for k, v in once.items()}
    assert {k: v.flush() for k, v in again.items()} == {k: v.flush() for k, v in once.items()}


# -- (c) state round trip ------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(event_sets(), st.integers(0, 40), st.integers(1, 3), st.booleans())
def test_state_round_trips_through_json(events: list[TouchpointEvent], cut: int,
                                        partitions: int, flushed: bool) -> None:
    _, contributions = run_engine(events, partitions)
    head, tail = contributions[:cut], contributions[cut:]
    live: dict[Segment, SegmentTotals] = {}
    feed(head, live)
    if flushed:
        for seg in live.values():
            seg.flush()
    restored = {k: SegmentTotals(k[0], k[1], BUCKET, resume=json.loads(json.dumps(v.snapshot())))
                for k, v in live.items()}
    assert {k: v.snapshot() for k, v in restored.items()} == {
        k: v.snapshot() for k, v in live.items()}
    assert current(restored) == current(live)
    # a snapshot taken before a flush still emits what was pending (a restart must not lose
    # updates: the redelivered contributions are no-ops and would not mark them again)
    assert {k: v.flush() for k, v in restored.items()} == {k: v.flush() for k, v in live.items()}
    # and both continue identically
    feed(tail, live)
    feed(tail, restored)
    assert {k: v.snapshot() for k, v in restored.items()} == {
        k: v.snapshot() for k, v in live.items()}
    assert {k: v.flush() for k, v in restored.items()} == {k: v.flush() for k, v in live.items()}


# -- (d) versions never decrease ----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(event_sets(), st.integers(1, 3), st.lists(st.integers(0, 60), max_size=6),
       st.randoms(use_true_random=False))
def test_versions_never_decrease_across_flushes(
        events: list[TouchpointEvent], partitions: int, cuts: list[int],
        rnd: random.Random) -> None:
    _, contributions = run_engine(events, partitions)
    totals: dict[Segment, SegmentTotals] = {}
    seen: dict[BucketId, int] = {}
    bounds = sorted({0, len(contributions), *[min(c, len(contributions)) for c in cuts]})
    for lo, hi in itertools.pairwise(bounds):
        batch = contributions[lo:hi]
        # redeliveries (and stale journey states arriving late) mixed in
        batch += [rnd.choice(batch) for _ in range(len(batch) // 2)] if batch else []
        feed(batch, totals)
        for seg in totals.values():
            for r in seg.flush():
                bucket = (r.metric, r.segment_dim, r.segment_value, r.window_start)
                assert r.version > seen.get(bucket, 0)
                seen[bucket] = r.version


def test_a_journey_moved_out_of_a_final_bucket_stays_counted_there() -> None:
    """`keep_previous`: stage one found the old bucket final by its partition's stream time, so
    the journey counts in both buckets (as `SurveyBuckets.apply_end` counts it), whether or
    not this stage still holds the old bucket; evicting the old bucket later does not forget
    where the journey is now."""
    totals = SegmentTotals("all", "all", 60_000)
    totals.set_end("j1", (0, True))
    totals.set_end("j2", (0, True))
    assert totals.set_end("j1", (120_000, True), keep_previous=True)
    assert totals.record("negative_end", 0).n == 2  # j1 still counted in the final bucket
    assert totals.record("negative_end", 120_000).n == 1
    totals.flush()
    totals.evict(60_000)  # the old bucket goes
    assert totals.set_end("j1", (180_000, False))  # a normal move: out of 120_000
    assert totals.record("negative_end", 180_000).n == 1
    assert totals.record("negative_end", 120_000).n == 0
    # without keep_previous the move takes the journey out of the old bucket
    plain = SegmentTotals("all", "all", 60_000)
    plain.set_end("j1", (0, True))
    plain.set_end("j1", (120_000, True))
    assert plain.record("negative_end", 0).n == 0


# -- (e) eviction keeps exactly the buckets that may still change --------------------------------

_OPS = st.one_of(
    st.tuples(st.just("answer"), st.sampled_from(("nps", "csat")), st.integers(0, 9),
              st.integers(0, 5)),
    st.tuples(st.just("end"), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 9))),
    st.tuples(st.just("flush")),
    st.tuples(st.just("evict"), st.integers(-1, 11)),
    st.tuples(st.just("restore")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_OPS, max_size=40))
def test_evict_forgets_exactly_the_flushed_buckets_that_ended(ops: list[tuple[Any, ...]]) -> None:
    """After `evict(h)` a bucket is held iff it was held and either ends after h or changed
    since the last flush, whatever came before: answers, journey ends moving, flushes, restores
    from a snapshot and earlier evictions at any horizon. (`evict` pops the buckets that ended
    from a heap that may hold buckets gone since and keeps the unflushed ones for a later call:
    this pins down both.) It says whether a bucket went."""
    width = 60_000
    totals = SegmentTotals("all", "all", width)
    touched: set[tuple[str, int]] = set()
    for op in ops:
        if op[0] == "answer":
            _, metric, slot, n = op
            totals.add_answer(metric, slot * width, f"e{n}", 9 if metric == "nps" else 4)
            touched.add((metric, slot * width))
        elif op[0] == "end":
            _, n, slot = op
            totals.set_end(f"j{n}", None if slot is None else (slot * width, n % 2 == 0))
            if slot is not None:
                touched.add(("negative_end", slot * width))
        elif op[0] == "flush":
            totals.flush()
        elif op[0] == "restore":
            totals = SegmentTotals("all", "all", width,
                                   resume=json.loads(json.dumps(totals.snapshot())))
        else:
            horizon = op[1] * width
            held = {b: totals.bucket_meta(b) for b in touched}
            expected = {b for b, meta in held.items()
                        if meta is not None and (b[1] + width > horizon or meta[1])}
            went = totals.evict(horizon)
            assert {b for b in touched if totals.bucket_meta(b) is not None} == expected
            # True exactly when a bucket went (the stream visits only such segments)
            assert went == any(meta is not None and b not in expected
                               for b, meta in held.items())


def evict_by_scan(totals: SegmentTotals, before_ms: int) -> None:
    """`SegmentTotals.evict` as it was until 2026-12-04: a scan of every bucket held (the
    reference the heap of due buckets must equal), negative_end buckets held `end_hold_ms`
    longer."""
    width = totals.bucket_ms
    # final negative_end buckets, once flushed, are sealed: their counts and journey ids
    for start in sorted(totals.end_buckets):
        if start + width > before_ms or ("negative_end", start) in totals._dirty:
            continue
        members = totals.end_buckets.pop(start)
        for journey_id in members:
            held = totals.ends.get(journey_id)
            if held is not None and held[0] == start:
                del totals.ends[journey_id]
        totals._sealed[start] = SealedEnds(members, len(members),
                                           totals._negatives.pop(start))
        totals._sealed_changed.add(start)
    for slot in list(totals.versions):
        start = int(slot.partition("@")[2])
        metric = slot.partition("@")[0]
        hold = totals.end_hold_ms if metric == "negative_end" else 0
        if start + hold + width > before_ms or (metric, start) in totals._dirty:
            continue
        del totals.versions[slot]
        totals._changed.add((metric, start))
        if metric == "negative_end":
            totals._sealed.pop(start, None)
            totals._sealed_changed.discard(start)
            totals._negatives.pop(start, None)
            for journey_id in totals.end_buckets.pop(start, {}):
                held = totals.ends.get(journey_id)
                if held is not None and held[0] == start:
                    del totals.ends[journey_id]
        else:
            totals.answers.get(metric, {}).pop(start, None)
            totals._windows.pop((metric, start), None)


_LOCKSTEP_OPS = st.one_of(
    st.tuples(st.just("answer"), st.sampled_from(("nps", "csat")), st.integers(0, 9),
              st.integers(0, 5)),
    st.tuples(st.just("remove"), st.sampled_from(("nps", "csat")), st.integers(0, 9),
              st.integers(0, 5)),
    st.tuples(st.just("end"), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 9)),
              st.booleans()),
    st.tuples(st.just("flush")),
    st.tuples(st.just("evict"), st.integers(-1, 14)),
    st.tuples(st.just("restore")),
    st.tuples(st.just("restore_key"), st.sampled_from(("nps", "negative_end")),
              st.integers(0, 9), st.booleans()),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LOCKSTEP_OPS, max_size=60))
def test_evict_equals_a_scan_of_every_bucket_held(ops: list[tuple[Any, ...]]) -> None:
    """The same operations on two segments, one evicting from its heap of due buckets and the
    other by the scan it replaced: the same state, the same changed buckets and the same
    journeys counted, after every step (restores from a snapshot and of single buckets, which
    leave entries of buckets gone since in the heap, included). Negative_end buckets are held
    3 buckets past final (`end_hold_ms`)."""
    width = 60_000
    hold = 3 * width
    by_heap = SegmentTotals("all", "all", width, end_hold_ms=hold)
    by_scan = SegmentTotals("all", "all", width, end_hold_ms=hold)
    for op in ops:
        for totals in (by_heap, by_scan):
            if op[0] == "answer":
                _, metric, slot, n = op
                totals.add_answer(metric, slot * width, f"e{n}", 9 if metric == "nps" else 4)
            elif op[0] == "remove":
                _, metric, slot, n = op
                totals.remove_answer(metric, slot * width, f"e{n}")
            elif op[0] == "end":
                _, n, slot, keep = op
                totals.set_end(f"j{n}", None if slot is None else (slot * width, n % 2 == 0),
                               keep_previous=keep)
            elif op[0] == "flush":
                totals.flush()
            elif op[0] == "restore_key":
                _, metric, slot, keep = op
                key = (metric, slot * width)
                state = totals.snapshot_key(key) if keep else None
                totals.restore_key(key, json.loads(json.dumps(state)))
        if op[0] == "restore":
            by_heap, by_scan = (
                SegmentTotals("all", "all", width, end_hold_ms=hold,
                              resume=json.loads(json.dumps(t.snapshot())))
                for t in (by_heap, by_scan))
        elif op[0] == "evict":
            by_heap.evict(op[1] * width)
            evict_by_scan(by_scan, op[1] * width)
        assert by_heap.snapshot() == by_scan.snapshot()
        assert by_heap.ends == by_scan.ends
        assert by_heap.drain_changed() == by_scan.drain_changed()
        assert by_heap.drain_sealed() == by_scan.drain_sealed()


# -- (f) the windows kept up to date equal a fold of the bucket from scratch ----------------------

_WINDOW_OPS = st.one_of(
    st.tuples(st.just("answer"), st.sampled_from(("nps", "ces", "csat")), st.integers(0, 3),
              st.integers(0, 7), st.integers(0, 10), st.sampled_from((5, 7))),
    st.tuples(st.just("remove"), st.sampled_from(("nps", "ces", "csat")), st.integers(0, 3),
              st.integers(0, 7)),
    st.tuples(st.just("end"), st.integers(0, 7), st.one_of(st.none(), st.integers(0, 3)),
              st.booleans(), st.booleans()),
    st.tuples(st.just("flush")),
    st.tuples(st.just("evict"), st.integers(-1, 5)),
    st.tuples(st.just("restore")),
)


def apply_window_op(totals: SegmentTotals, op: tuple[Any, ...], width: int) -> bool:
    """Apply one of `_WINDOW_OPS` to `totals`; False for "restore" (the caller's to do)."""
    if op[0] == "answer":
        _, metric, slot, n, score, scale = op
        answer = (ces_on_7(1 + score % scale, scale) if metric == "ces"
                  else score if metric == "nps" else 1 + score % 5)
        totals.add_answer(metric, slot * width, f"e{n}", answer)
    elif op[0] == "remove":
        _, metric, slot, n = op
        totals.remove_answer(metric, slot * width, f"e{n}")
    elif op[0] == "end":
        _, n, slot, negative, keep = op
        totals.set_end(f"j{n}", None if slot is None else (slot * width, negative),
                       keep_previous=keep)
    elif op[0] == "flush":
        totals.flush()
    elif op[0] == "evict":
        totals.evict(op[1] * width)
    else:
        return False
    return True


def folded(totals: SegmentTotals, metric: str, start: int) -> dict[str, Any]:
    """The bucket's window folded from its members, sorted (what `window` computed before it
    kept windows up to date)."""
    from pipeline.core.surveys import WINDOW_TYPES, NegativeEndWindow
    if metric == "negative_end":
        members = totals.end_buckets.get(start, {})
        return described(NegativeEndWindow(len(members), sum(members.values())))
    window = WINDOW_TYPES[metric]()
    for _, answer in sorted(totals.answers.get(metric, {}).get(start, {}).items()):
        window.update(answer)  # type: ignore[arg-type]
    return described(window)


@settings(max_examples=400, deadline=None)
@given(st.lists(_WINDOW_OPS, max_size=60))
def test_kept_windows_equal_a_fold_from_scratch(ops: list[tuple[Any, ...]]) -> None:
    """Answers added and removed (CES on 1-5 and 1-7 scales: halves on the 1-7 scale), journey
    ends moved (kept in a final bucket or not), flushes, evictions and restores from a JSON
    snapshot, in any order: after each, every bucket's window and record equal the sorted fold
    of its members, to the last bit (fails when an update is not reverted, or a restore or an
    eviction leaves a stale window)."""
    width = 60_000
    totals = SegmentTotals("all", "all", width)
    for op in ops:
        if not apply_window_op(totals, op, width):  # "restore"
            totals = SegmentTotals("all", "all", width,
                                   resume=json.loads(json.dumps(totals.snapshot())))
        for metric in ("nps", "ces", "csat", "negative_end"):
            for slot in range(4):
                start = slot * width
                expected = folded(totals, metric, start)
                assert described(totals.window(metric, start)) == expected, (metric, slot)
                if totals.bucket_meta((metric, start)) is not None:
                    record = totals.record(metric, start)
                    assert {"n": record.n, "value": record.value, "ci_low": record.ci_low,
                            "ci_high": record.ci_high} == {k: expected[k] for k in
                                                           ("n", "value", "ci_low", "ci_high")}


@settings(max_examples=300, deadline=None)
@given(st.lists(_WINDOW_OPS, max_size=60))
def test_a_restore_gives_back_each_journeys_contribution(ops: list[tuple[Any, ...]]) -> None:
    """After any operations, a segment restored from its JSON snapshot holds the same journeys'
    contributions (`ends`) as the live one, so the next moves change the same buckets. A
    member a journey left in a final bucket (`keep_previous`) is not its contribution: restored
    as one, the journey's next move took it out of that bucket (negative_end n 1 where the
    engine counted 2, after worker kills)."""
    width = 60_000
    live = SegmentTotals("all", "all", width)
    for op in ops:
        apply_window_op(live, op, width)  # a "restore" is below, after every op
        restored = SegmentTotals("all", "all", width,
                                 resume=json.loads(json.dumps(live.snapshot())))
        assert restored.ends == live.ends
        assert restored.snapshot() == live.snapshot()
        # and the same next move changes the same buckets the same way
        for totals in (live, restored):
            totals.set_end("j0", (3 * width, True))
        assert restored.snapshot()["buckets"] == live.snapshot()["buckets"]
        live = restored


def test_a_kept_member_stays_in_its_final_bucket_after_a_restore() -> None:
    """The case the property above found, spelled out: j1 moved out of final bucket 0 (kept
    there), the segment restored, then j1 moves again: bucket 0 still counts it."""
    totals = SegmentTotals("all", "all", 60_000)
    totals.set_end("j1", (0, True))
    totals.set_end("j2", (0, True))
    totals.set_end("j1", (120_000, True), keep_previous=True)
    assert totals.is_kept(0, "j1") and not totals.is_kept(120_000, "j1")
    assert totals.snapshot_key(("negative_end", 0))["k"] == ["j1"]  # type: ignore[index]
    restored = SegmentTotals("all", "all", 60_000,
                             resume=json.loads(json.dumps(totals.snapshot())))
    restored.set_end("j1", (180_000, False))
    assert restored.record("negative_end", 0).n == 2
    assert restored.record("negative_end", 120_000).n == 0


def member_snapshots_one_by_one(totals: SegmentTotals, horizon_ms: int
                                ) -> list[tuple[str, int, str, dict[str, Any]]]:
    """What `drain_member_snapshots` gives, asked member by member through the public calls
    (the segment stage's loop before it moved into the core)."""
    out = []
    for metric, start, member in totals.drain_changed_members():
        meta = totals.bucket_meta((metric, start))
        if meta is None or (metric == "negative_end" and totals.is_sealed(start)):
            continue
        state: dict[str, Any] = {"v": meta[0], "d": meta[1]}
        value = totals.member((metric, start), member)
        if value is not None:
            state["a"] = value
            if metric == "negative_end" and totals.is_kept(start, member):
                state["k"] = 1
        if totals.forget_start(metric, start) + totals.bucket_ms <= horizon_ms:
            state["h"] = horizon_ms
        out.append((metric, start, member, state))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_WINDOW_OPS, st.integers(-1, 8)), max_size=60))
def test_member_snapshots_equal_the_members_asked_one_by_one(
        ops: list[tuple[tuple[Any, ...], int]]) -> None:
    """Two segments given the same operations (negative_end held two buckets longer, so
    horizons fall between a bucket's final and its eviction): after each, the changed
    members' snapshots drained at once equal those asked member by member (fails when a
    sealed or evicted bucket's member, a kept flag or the horizon mark differs)."""
    width = 60_000
    both = [SegmentTotals("all", "all", width, end_hold_ms=2 * width) for _ in range(2)]
    for op, horizon_slot in ops:
        for i, totals in enumerate(both):
            if not apply_window_op(totals, op, width):
                both[i] = SegmentTotals("all", "all", width, end_hold_ms=2 * width,
                                        resume=json.loads(json.dumps(totals.snapshot())))
        horizon = horizon_slot * width
        assert both[0].drain_member_snapshots(horizon) == \
            member_snapshots_one_by_one(both[1], horizon)
