"""Journey-id markers: kept apart from the live keys, same records as when they were keys.

Once a producer journey id's journey is evicted, a marker (the pieces evicted, and until when
they are remembered) stays for a maximum journey length after its last event, so that a later
event of the id starts a distinct journey `<id>@<its first event time>` and never a second
journey under the same id whose versions would tie with the first's. The marker used to be a
`KeyState` among the live keys with a deadline in their heap; it is now a pair in
`JourneyTracker._markers`, so `_keys` and `_deadlines` hold only live journeys
(docs/core.md, "Cost over long histories").
"""

from __future__ import annotations

import json
import random

from scenarios import DAY, HOUR, MIN, T0, event

from pipeline.core.config import JourneyConfig
from pipeline.core.journeys import JourneyTracker
from pipeline.core.records import JourneyRecord
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

CONFIG = JourneyConfig(journey_idle_ms=2 * DAY, max_length_ms=10 * DAY,
                       allowed_lateness_ms=6 * HOUR, idle_gap_ms=30 * MIN)


def _stream(seed: int) -> list[tuple[str, int, str | None, str]]:
    """(event_id, ms, journey_id, customer_id): journey ids used again after their journey was
    evicted (within and after the marker's month), customer keys beside them, a few late."""
    rng = random.Random(seed)
    out = []
    t = T0
    for i in range(3000):
        t += rng.randrange(1, 40) * MIN
        ms = t - (rng.randrange(5 * HOUR) if rng.random() < 0.05 else 0)
        jid = f"case-{rng.randrange(40)}" if rng.random() < 0.6 else None
        out.append((f"e{i}", ms, jid, f"c{rng.randrange(300)}"))
    return out


def _run(tracker: JourneyTracker, stream: list[tuple[str, int, str | None, str]],
         restart_every: int = 0) -> tuple[list[JourneyRecord], list[list[str | None]]]:
    records: list[JourneyRecord] = []
    reasons: list[list[str | None]] = []
    watermark = T0
    for i, (eid, ms, jid, customer) in enumerate(stream):
        watermark = max(watermark, ms)
        got, reason = tracker.apply(event(eid, ms, journey=jid, customer=customer,
                                          valence=0.1 * (i % 7) - 0.3), watermark)
        records += got
        reasons.append([reason])
        records += tracker.advance(watermark)
        if restart_every and i % restart_every == restart_every - 1:
            restored = JourneyTracker(CONFIG, SCORING_RULES, keep_dirty_keys=True)
            held = tracker.keys()
            for key in held:
                restored.restore_key(key, json.loads(json.dumps(tracker.snapshot_key(key))))
            assert sorted(restored.keys()) == sorted(held)
            assert all(restored.snapshot_key(k) == tracker.snapshot_key(k) for k in held)
            tracker = restored
    return records, reasons


def test_a_later_piece_of_a_journey_id_never_ties_with_an_earlier_one() -> None:
    tracker = JourneyTracker(CONFIG, SCORING_RULES, keep_dirty_keys=True)
    records, _ = _run(tracker, _stream(1))
    by_id: dict[str, list[JourneyRecord]] = {}
    for r in records:
        by_id.setdefault(r.journey_id, []).append(r)
    pieces = {jid for jid in by_id if "@" in jid and jid.startswith("case-")}
    assert len(pieces) > 20  # ids came back while their marker was held
    for jid, rows in by_id.items():
        # one piece per id: the same start, and versions strictly growing
        assert len({r.started_at for r in rows}) == 1 or not jid.startswith("case-"), jid
        versions = [r.version for r in rows]
        assert versions == sorted(set(versions)), jid
    # markers are held apart: the live keys hold journeys only
    assert tracker._markers
    assert all(s.journey is not None or s.sessions for s in tracker._keys.values())


def test_markers_apart_give_the_same_records_through_restarts() -> None:
    stream = _stream(2)
    plain = _run(JourneyTracker(CONFIG, SCORING_RULES, keep_dirty_keys=True), stream)
    restarted = _run(JourneyTracker(CONFIG, SCORING_RULES, keep_dirty_keys=True), stream,
                     restart_every=97)
    assert plain == restarted


def test_a_marker_is_forgotten_a_maximum_length_after_the_last_event() -> None:
    tracker = JourneyTracker(CONFIG, SCORING_RULES, keep_dirty_keys=True)
    tracker.apply(event("a", T0, journey="case-1", valence=0.5), T0)
    evicted = T0 + CONFIG.journey_idle_ms + CONFIG.allowed_lateness_ms + 1
    tracker.advance(evicted)
    tracker.drain_dirty_keys()
    assert tracker.keys() == ["case-1"] and len(tracker) == 1
    assert "case-1" not in tracker._keys and not tracker._deadlines
    state = tracker.snapshot_key("case-1")
    assert state is not None and state["pieces"] == [1, T0 + CONFIG.max_length_ms]
    tracker.advance(T0 + CONFIG.max_length_ms)  # still held at ended_until ...
    assert len(tracker) == 1
    tracker.advance(T0 + CONFIG.max_length_ms + 1)  # ... and forgotten after it
    assert len(tracker) == 0 and tracker.drain_dirty_keys() == {"case-1"}
    [again], _ = tracker.apply(event("b", T0 + CONFIG.max_length_ms + 2, journey="case-1"),
                               T0 + CONFIG.max_length_ms + 2)
    assert again.journey_id == "case-1"  # the id starts over under its own name
