"""A journey's `ids` (event id -> content digest) hold its entries' event ids in the entries'
order, through every way entries come and go: in order, out of order (fast inserts and
regrouping), a copy replacing another, a withdrawal, a restore. `Journey.snapshot` writes
`list(ids.values())` as the entries' digests on that ground (no lookup per entry); a digest
written beside the wrong entry would turn a later copy's verdict (duplicate, conflict or
replacement) after a restart."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from scenarios import T0, event

from pipeline.core.config import JourneyConfig
from pipeline.core.event import content_digest
from pipeline.core.journeys import JourneyTracker
from pipeline.core.moments import EVENT_ID
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()
MIN = 60_000
CONFIG = JourneyConfig(idle_gap_ms=10 * MIN, max_length_ms=45 * MIN, allowed_lateness_ms=10**9)

# (event id index, minute, valence: copies of one id with another valence are other content,
# journey_end, journey id or None, withdraw instead of apply)
_steps = st.lists(st.tuples(st.integers(0, 7), st.sampled_from([0, 3, 9, 12, 20, 33, 47, 60]),
                            st.sampled_from([0.5, -0.5, 0.1]), st.booleans(),
                            st.sampled_from([None, None, "j-1"]), st.integers(0, 9)),
                  min_size=1, max_size=25)


def _check(tracker: JourneyTracker) -> None:
    for journey in tracker.journeys():
        assert list(journey.ids) == [entry[EVENT_ID] for entry in journey.entries]
    for key in sorted(tracker.keys()):
        state = tracker.snapshot_key(key)
        assert state is not None
        for journey, data in zip(tracker.journeys_of(key),
                                 ([state["journey"]] if state["journey"] else [])
                                 + state["sessions"], strict=True):
            assert data["digests"] == [journey.ids[e[EVENT_ID]] for e in journey.entries]


@settings(max_examples=300, deadline=None)
@given(_steps, st.booleans())
def test_ids_follow_the_entries_order_and_snapshots_pair_each_entry_with_its_digest(
        steps: list[tuple[int, int, float, bool, str | None, int]], fast: bool) -> None:
    tracker = JourneyTracker(CONFIG, SCORING_RULES, fast_inserts=fast)
    watermark = T0
    for index, minute, valence, end, journey_id, action in steps:
        e = event(f"e{index}", T0 + minute * MIN, customer="c", journey=journey_id,
                  type="journey_end" if end and index % 3 == 0 else "interaction",
                  valence=valence)
        watermark = max(watermark, e.occurred_ms)
        if action == 0:  # a copy under another journey key won: this one is withdrawn
            tracker.withdraw(e.journey_key, e.event_id, content_digest(e), watermark)
        else:
            tracker.apply(e, watermark)
        _check(tracker)
    restored = JourneyTracker(CONFIG, SCORING_RULES, fast_inserts=fast)
    for key in sorted(tracker.keys()):
        restored.restore_key(key, json.loads(json.dumps(tracker.snapshot_key(key))))
    _check(restored)
    for key in sorted(tracker.keys()):
        assert restored.snapshot_key(key) == tracker.snapshot_key(key)
