"""Redelivery with changed content: one rule in the tracker, the stream stage and replay.

A repeated event_id with the same content is a duplicate (dropped, counted); with different
content it is a `conflict`: of the copies the one with the smaller content digest is kept,
whatever the order, and the copy that arrived second is a dead letter `conflict` (saying whether
it was kept). The loser contributes nothing anywhere (issue: a changed redelivery was counted
again)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from scenarios import MIN, T0, event

from pipeline.cli import main
from pipeline.contract import event_to_json
from pipeline.core.config import CoreConfig, JourneyConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Survey, content_digest
from pipeline.core.journeys import CONFLICT, DUPLICATE, REPLACED, JourneyTracker
from pipeline.core.segment_totals import answer_key
from pipeline.core.timefmt import format_ms
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream.partition import PartitionProcessor

SCORING_RULES = load_scoring_rules()


def answer(eid: str, nps: int, ms: int = T0, journey: str | None = None):  # type: ignore[no-untyped-def]
    return event(eid, ms, journey=journey, type="survey", survey=Survey(nps=nps))


def test_digest_sees_every_field_and_not_the_offset() -> None:
    e = answer("a", 9)
    assert content_digest(e) == content_digest(replace(e))
    for changed in (replace(e, producer="other"), replace(e, touchpoint="chat"),
                    replace(e, attributes={"region": "eu"}), replace(e, valence=0.5),
                    replace(e, occurred_ms=T0 + 1), answer("a", 10)):
        assert content_digest(changed) != content_digest(e)


def winner_and_loser(journey: str | None = None):  # type: ignore[no-untyped-def]
    """Two copies of event `a` with other content: (the kept one, the other)."""
    one, two = answer("a", 10, journey=journey), answer("a", 0, journey=journey)
    return (one, two) if content_digest(one) < content_digest(two) else (two, one)


def test_same_id_other_content_is_a_conflict_in_journeys_and_sessions() -> None:
    for journey in ("j-1", None):
        win, lose = winner_and_loser(journey)
        for first, second, verdict in ((win, lose, CONFLICT), (lose, win, REPLACED)):
            tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
            assert tracker.apply(first, T0)[1] is None
            assert tracker.apply(first, T0) == ([], DUPLICATE)
            assert tracker.apply(second, T0)[1] == verdict
            [j] = tracker.journeys()
            assert j.moments.events == 1
            assert j.moments.end_valence() == (1.0 if win.survey.nps == 10 else -1.0)
            assert tracker.apply(win, T0)[1] == DUPLICATE
            assert tracker.apply(lose, T0)[1] == CONFLICT


def test_conflict_survives_a_restart_and_a_repartition() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    for e in (answer("a", 10), answer("b", 9, T0 + 50 * MIN)):
        tracker.apply(e, e.occurred_ms)
    # a late event bridging both sessions re-partitions them: digests travel along
    tracker.apply(answer("x", 5, T0 + 25 * MIN), T0 + 50 * MIN)
    restored = JourneyTracker(JourneyConfig(), SCORING_RULES)
    restored.restore_key("c1", json.loads(json.dumps(tracker.snapshot_key("c1"))))
    other = answer("b", 2, T0 + 50 * MIN)
    bigger = content_digest(other) > content_digest(answer("b", 9, T0 + 50 * MIN))
    for t in (tracker, restored):
        assert t.apply(answer("b", 9, T0 + 50 * MIN), T0 + 50 * MIN)[1] == DUPLICATE
        assert t.apply(other, T0 + 50 * MIN)[1] == (CONFLICT if bigger else REPLACED)
    assert tracker.snapshot_key("c1") == restored.snapshot_key("c1")


def test_state_without_digests_treats_every_copy_as_a_duplicate() -> None:
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    tracker.apply(answer("a", 10, journey="j"), T0)
    state = json.loads(json.dumps(tracker.snapshot_key("j")))
    del state["journey"]["digests"]  # written by an earlier version
    old = JourneyTracker(JourneyConfig(), SCORING_RULES)
    old.restore_key("j", state)
    assert old.apply(answer("a", 0, journey="j"), T0)[1] == DUPLICATE


def test_stream_stage_sends_no_contribution_for_a_losing_copy() -> None:
    win, lose = winner_and_loser()
    proc = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    first = proc.process(win)
    assert first.contributions
    again = proc.process(win)
    assert again.duplicate and again.reject is None
    changed = proc.process(lose)
    assert changed.reject == CONFLICT and not changed.contributions and not changed.journeys
    letter = proc.reject_letter(CONFLICT, lose, b"{}", "cx.touchpoints", 7)
    assert letter.reason == "conflict" and "this one is not applied" in letter.error


def test_stream_stage_retracts_the_answers_a_winning_copy_replaces() -> None:
    win, lose = winner_and_loser()
    proc = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    proc.process(lose)
    out = proc.process(win)
    assert out.reject == REPLACED and out.journeys
    kinds = [(c[1]["t"], c[1].get("e")) for c in out.contributions if c[1].get("m") == "nps"]
    copy = answer_key("a", win.journey_key)  # the answer of this copy of event a
    assert kinds[:4] == [("r", copy)] * 4 and ("a", copy) in kinds  # 4 segments back, then in
    letter = proc.reject_letter(REPLACED, win, b"{}", "cx.touchpoints", 7)
    assert letter.reason == "conflict" and "this copy is kept" in letter.error


def test_engine_counts_the_winning_copy_only_whatever_the_order() -> None:
    win, lose = winner_and_loser()
    lose_later = replace(lose, occurred_ms=T0 + 2 * MIN)  # a copy in another bucket
    if content_digest(lose_later) < content_digest(win):
        win, lose_later = lose_later, win
    results = []
    for order in ((win, lose_later), (lose_later, win)):
        engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
        records = []
        for e in order:
            emitted, _ = engine.process(e, 0)
            records += emitted.metrics
        records += engine.finish().metrics
        latest = {}
        for r in records:
            if r.metric == "nps" and r.segment_dim == "all":
                latest[r.window_start] = (r.n, r.value)
        results.append({k: v for k, v in latest.items() if v[0] > 0})
        [j] = engine.trackers[0].journeys()
        assert j.moments.first_ms == win.occurred_ms
    assert results[0] == results[1] == {
        win.occurred_ms - win.occurred_ms % MIN: (1, 100.0 if win.survey.nps == 10 else -100.0)}


def test_replay_dead_letters_the_conflict(tmp_path: Path) -> None:
    lines = [event_to_json(e) for e in (answer("a", 10), answer("a", 10), answer("a", 0))]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    assert main(["replay", str(path), "--output", str(out), "--now",
                 "2027-01-01T00:00:00Z"]) == 0
    letters = [json.loads(x) for x in (out / "dead_letters.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["event_id"]) for d in letters] == [("conflict", "a")]
    journeys = [json.loads(x) for x in (out / "journeys.jsonl").read_text().splitlines()]
    win, _ = winner_and_loser()
    assert journeys[0]["end_valence"] == (1.0 if win.survey.nps == 10 else -1.0)


def test_a_copy_not_applied_that_moves_stream_time_ticks_as_the_stream_does() -> None:
    """A conflicting copy with a later time moves stream time past a journey's idle gap. The
    stream's stage one advances the tracker at every event, so the journey closes there; the
    engine skipped the bucket boundaries such a copy crossed (it returned before its tick, and
    the next event found them crossed already), so replay closed the journey later and its
    versions came out one lower than the stream's when a later copy reopened it (found by
    tests/unit/stream/test_stages_schema_streams.py)."""
    from pipeline.core.config import CoreConfig
    from pipeline.core.engine import ExperienceEngine
    from pipeline.stream.partition import PartitionProcessor

    gap = JourneyConfig().idle_gap_ms
    first, second = answer("a", 9), answer("b", 9)
    # `b` again with other content, past the idle gap, losing to the copy held
    later = next(e for e in (answer("b", nps, T0 + gap + 1) for nps in range(11))
                 if content_digest(e) > content_digest(second))
    stream_order = [first, second, later]
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    stage_one = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    for e in stream_order:
        emitted, reason = engine.process(e, 0)
        out = stage_one.process(e)
        assert reason == out.reject
        assert [(j.journey_id, j.version, j.status) for j in emitted.journeys] == [
            (j.journey_id, j.version, j.status) for j in out.journeys], e.event_id
    # each way of running the engine: the conflicting copy closed the journey
    many, reasons = ExperienceEngine(CoreConfig(), SCORING_RULES).process_many(stream_order)
    assert reasons[-1] == CONFLICT
    assert [j.status for j in many.journeys] == ["closed"]


def test_a_copy_that_replaces_one_in_another_session_takes_it_out_of_that_session() -> None:
    """The kept copy of `x` comes hours before the copy first applied, so it lands in another
    session of the customer. The session that held the replaced copy regroups as it was (the
    same id) with one event fewer: it must be emitted again, without the copy, and its
    negative end must leave the bucket of the copy's time (found by `bench.conflict_parity`:
    the stream and replay both kept the stale session; the claims stage withdrew the copy in
    replay and not in the stream)."""
    gap = JourneyConfig().idle_gap_ms
    held_at, kept_at = T0 + 3 * gap, T0  # `x` first in the second session, then hours before
    held = max((event("x", held_at, valence=v / 10 - 1) for v in range(10)),
               key=content_digest)
    kept = next(e for e in (event("x", kept_at, valence=v / 10 - 1) for v in range(10))
                if content_digest(e) < content_digest(held))
    second = event("b", held_at - 10 * MIN, valence=-0.5)  # the second session's first event
    config = CoreConfig()
    stage_one = PartitionProcessor(0, config, SCORING_RULES)
    engine = ExperienceEngine(config, SCORING_RULES)
    now = held_at + 2 * gap  # both sessions closed by the time the kept copy comes
    later = event("later", now)
    for e in (second, held, later, kept):
        out = stage_one.process(e)
        emitted, reason = engine.process(e, 0)
        assert reason == out.reject
    assert reason == REPLACED
    by_id = {j.journey_id: j for j in out.journeys}
    session = by_id[f"c1@{format_ms(second.occurred_ms)}"]  # emitted again
    assert (session.ended_at, session.status) == (second.occurred_ms, "closed")
    assert session.version > 4 * 2 + 1  # past the version that held the copy
    assert [(j.journey_id, j.version, j.ended_at) for j in emitted.journeys] == [
        (j.journey_id, j.version, j.ended_at) for j in out.journeys]
    tracker = engine.trackers[0]
    holding = [j.id for j in tracker.journeys() if "x" in j.ids]
    assert holding == [f"c1@{format_ms(kept_at)}"]
    # the session's negative end moved from the copy's bucket to its own last event's
    bucket = config.windows.bucket_ms
    ends = {c[1]["s"]: c[1]["c"] for c in out.contributions
            if c[1]["t"] == "e" and c[1]["j"] == session.journey_id}
    assert ends["all"] == [second.occurred_ms - second.occurred_ms % bucket, True]


def test_a_session_emptied_by_a_replacing_copy_is_superseded_at_the_version_of_a_withdrawal(
) -> None:
    """A copy with a smaller digest, in another session of the customer than the copy it
    replaces, empties that copy's session: superseded at the version of no events (with the
    copy counted as removed), the version a withdrawal of the copy gives it, so a stream that
    replaced the copy before a withdrawal came ends where replay, which withdrew first, ends."""
    hours = 60 * MIN
    replacing = min((event("x", T0 + 3 * hours, valence=v / 10) for v in range(10)),
                    key=content_digest)
    held = next(c for c in (event("x", T0, valence=v / 10) for v in range(10))
                if content_digest(c) > content_digest(replacing))  # three hours before
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    tracker.apply(held, T0)
    records, verdict = tracker.apply(replacing, T0 + 3 * hours)
    assert verdict == REPLACED
    [emptied] = [r for r in records if r.status == "superseded"]
    withdrawn = JourneyTracker(JourneyConfig(), SCORING_RULES)
    withdrawn.apply(held, T0)
    [superseded], _ = withdrawn.withdraw(held.journey_key, "x", content_digest(held), T0)
    assert emptied.journey_id == superseded.journey_id
    assert emptied.version == superseded.version == 4 * (0 + 2 * 1) + 2
