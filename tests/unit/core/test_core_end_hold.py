"""Negative_end buckets are held `WindowConfig.end_hold_ms` past final (docs/streaming.md,
"Exact results with at-least-once delivery", point 5).

A journey with a producer id closes after 7 idle days into the bucket of its last event, final
for 6 days by then. Replay's partials (`SurveyBuckets`) and the stream's segment stage
(`SegmentTotals`) both keep such a bucket's count (and its version) for the hold, so the late
close adds to it at a higher version; made anew at version 1, its record lost to the earlier one
in ClickHouse (ReplacingMergeTree(version)), and the stream and replay differed.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.buckets import SurveyBuckets
from pipeline.core.config import WindowConfig
from pipeline.core.journeys import EndDelta
from pipeline.core.records import MetricRecord
from pipeline.core.segment_totals import SegmentTotals

MIN = 60_000
HOUR = 60 * MIN
LATENESS = 2 * HOUR
HOLD = 10 * HOUR
SEGMENTS = (("all", "all"), ("channel", "web"))


def _buckets(hold: int, resume: dict[str, object] | None = None) -> SurveyBuckets:
    config = WindowConfig(bucket_ms=MIN, allowed_lateness_ms=LATENESS, end_hold_ms=hold)
    return SurveyBuckets(config, partition=0, resume=resume)


def _evict(buckets: SurveyBuckets, watermark: int) -> None:
    buckets.evict(watermark - LATENESS - MIN)  # as ExperienceEngine calls it


def _numbers(records: list[MetricRecord]) -> list[tuple[object, ...]]:
    return [(r.segment_dim, r.window_start, r.n, r.positives, r.version) for r in records]


def test_a_journey_closing_into_a_final_bucket_within_the_hold_adds_to_it() -> None:
    buckets = _buckets(HOLD)
    buckets.apply_end(EndDelta(5 * MIN, True, 1, SEGMENTS[:1]))
    assert _numbers(buckets.flush()) == [("all", 5 * MIN, 1, 1, 1)]
    _evict(buckets, 5 * HOUR)  # final and scanned: the partial is gone, its numbers held
    assert len(buckets) == 0
    buckets.apply_end(EndDelta(5 * MIN + 1, False, 1, SEGMENTS[:1]))
    assert _numbers(buckets.flush()) == [("all", 5 * MIN, 2, 1, 2)]


def test_past_the_hold_a_bucket_is_made_anew() -> None:
    buckets = _buckets(HOLD)
    buckets.apply_end(EndDelta(5 * MIN, True, 1, SEGMENTS[:1]))
    buckets.flush()
    _evict(buckets, 5 * MIN + LATENESS + HOLD + 3 * MIN)
    buckets.apply_end(EndDelta(5 * MIN, False, 1, SEGMENTS[:1]))
    assert _numbers(buckets.flush()) == [("all", 5 * MIN, 1, 0, 1)]


def test_the_held_numbers_survive_a_snapshot() -> None:
    buckets = _buckets(HOLD)
    buckets.apply_end(EndDelta(5 * MIN, True, 1, SEGMENTS))
    buckets.flush()
    _evict(buckets, 5 * HOUR)
    snapshot = json.loads(json.dumps(buckets.snapshot()))
    assert snapshot["partials"] == [] and len(snapshot["final_ends"]) == 2
    again = _buckets(HOLD, resume=snapshot)
    again.apply_end(EndDelta(5 * MIN, True, 1, SEGMENTS))
    assert _numbers(again.flush()) == [("all", 5 * MIN, 2, 2, 2), ("channel", 5 * MIN, 2, 2, 2)]


_MOVES = st.lists(
    st.tuples(st.integers(0, 3 * HOUR),  # how far the watermark moves first
              st.integers(0, 5),  # which journey: closes if not counted, else reopens
              st.integers(0, HOLD - 1),  # a close: how long before the watermark it ended
              st.booleans(),  # negative
              st.sampled_from((SEGMENTS, SEGMENTS[:1])),
              st.booleans(),  # flush after it
              st.booleans()),  # snapshot and resume after it
    max_size=60)


@settings(max_examples=300, deadline=None)
@given(_MOVES)
def test_held_buckets_give_the_records_of_buckets_never_evicted(
        moves: list[tuple[int, int, int, bool, tuple[tuple[str, str], ...], bool, bool]]
) -> None:
    """Journeys that close within the hold of their bucket's end and reopen (a retraction,
    dropped once the bucket is final): the records equal those of partials that are never
    forgotten (the hold as long as the whole run), through evictions and restores."""
    held = _buckets(HOLD)
    forever = _buckets(100 * HOLD)
    watermark = 10 * HOUR
    counted: dict[int, EndDelta] = {}
    for step, journey, ago, negative, segments, flush, restore in moves:
        watermark += step
        close = counted.pop(journey, None)
        if close is None:
            delta = counted[journey] = EndDelta(watermark - ago, negative, 1, segments)
        else:
            delta = close._replace(sign=-1)
        for buckets in (held, forever):
            buckets.apply_end(delta)
            _evict(buckets, watermark)
        if flush:
            assert _numbers(held.flush()) == _numbers(forever.flush())
        if restore:
            held = _buckets(HOLD, resume=json.loads(json.dumps(held.snapshot())))
    assert _numbers(held.flush()) == _numbers(forever.flush())


def test_the_segment_stage_seals_a_final_negative_end_bucket_for_the_hold() -> None:
    """Past final a bucket keeps its counts and the journeys it counts (sealed), so a late
    journey adds to it once, and a journey sent again (a restarted stage one) does not."""
    totals = SegmentTotals("all", "all", MIN, end_hold_ms=HOLD)
    totals.set_end("j1", (5 * MIN, True))
    totals.set_end("j2", (5 * MIN, False))
    totals.flush()
    assert totals.evict(5 * MIN + MIN + LATENESS)  # final: sealed, not evicted
    assert totals.is_sealed(5 * MIN) and totals.drain_sealed() == [5 * MIN]
    assert totals.end_buckets == {} and totals.ends == {}
    assert not totals.set_end("j1", (5 * MIN, True))  # sent again: counted already
    assert totals.set_end("j3", (5 * MIN, True))  # closes late
    assert not totals.set_end("j3", (5 * MIN, True))
    assert [(r.n, r.positives, r.version) for r in totals.flush()] == [(3, 2, 3)]
    assert totals.drain_sealed() == [5 * MIN]
    assert totals.snapshot_key(("negative_end", 5 * MIN))["s"] == {  # type: ignore[index]
        "n": 3, "x": 2, "ids": ["j1", "j2"], "late": {"j3": True}}
    again = SegmentTotals("all", "all", MIN, end_hold_ms=HOLD,
                          resume=json.loads(json.dumps(totals.snapshot())))
    assert not again.set_end("j2", (5 * MIN, False)) and not again.set_end("j3", (5 * MIN, True))
    assert again.set_end("j4", (5 * MIN, False))
    assert [(r.n, r.positives, r.version) for r in again.flush()] == [(4, 2, 4)]
    assert totals.evict(5 * MIN + MIN + HOLD)  # the hold ends
    assert totals.records() == [] and not totals.is_sealed(5 * MIN)
