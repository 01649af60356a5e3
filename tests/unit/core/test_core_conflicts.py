"""Redelivery with changed content: one rule in the tracker, the stream stage and replay.

A repeated event_id with the same content is a duplicate (dropped, counted); with different
content it is a `conflict`: the copy applied first stays, the other is a dead letter and
contributes nothing anywhere (issue: a changed redelivery was counted again)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from scenarios import MIN, T0, event

from pipeline.cli import main
from pipeline.contract import event_to_json
from pipeline.core.config import CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Survey, content_digest
from pipeline.core.journeys import CONFLICT, DUPLICATE, JourneyTracker
from pipeline.stream.partition import PartitionProcessor


def answer(eid: str, nps: int, ms: int = T0, journey: str | None = None):  # type: ignore[no-untyped-def]
    return event(eid, ms, journey=journey, type="survey", survey=Survey(nps=nps))


def test_digest_sees_every_field_and_not_the_offset() -> None:
    e = answer("a", 9)
    assert content_digest(e) == content_digest(replace(e))
    for changed in (replace(e, producer="other"), replace(e, touchpoint="chat"),
                    replace(e, attributes={"region": "eu"}), replace(e, valence=0.5),
                    replace(e, occurred_ms=T0 + 1), answer("a", 10)):
        assert content_digest(changed) != content_digest(e)


def test_same_id_other_content_is_a_conflict_in_journeys_and_sessions() -> None:
    for journey in ("j-1", None):
        tracker = JourneyTracker()
        assert tracker.apply(answer("a", 10, journey=journey), T0)[1] is None
        assert tracker.apply(answer("a", 10, journey=journey), T0) == ([], DUPLICATE)
        assert tracker.apply(answer("a", 0, journey=journey), T0) == ([], CONFLICT)
        [j] = tracker.journeys()
        assert j.moments.events == 1 and j.moments.end_valence() == 1.0  # the first copy


def test_conflict_survives_a_restart_and_a_repartition() -> None:
    tracker = JourneyTracker()
    for e in (answer("a", 10), answer("b", 9, T0 + 50 * MIN)):
        tracker.apply(e, e.occurred_ms)
    # a late event bridging both sessions re-partitions them: digests travel along
    tracker.apply(answer("x", 5, T0 + 25 * MIN), T0 + 50 * MIN)
    restored = JourneyTracker()
    restored.load_key("c1", json.loads(json.dumps(tracker.dump_key("c1"))))
    for t in (tracker, restored):
        assert t.apply(answer("b", 9, T0 + 50 * MIN), T0 + 50 * MIN)[1] == DUPLICATE
        assert t.apply(answer("b", 2, T0 + 50 * MIN), T0 + 50 * MIN)[1] == CONFLICT


def test_state_without_digests_treats_every_copy_as_a_duplicate() -> None:
    tracker = JourneyTracker()
    tracker.apply(answer("a", 10, journey="j"), T0)
    state = json.loads(json.dumps(tracker.dump_key("j")))
    del state["journey"]["digests"]  # written by an earlier version
    old = JourneyTracker()
    old.load_key("j", state)
    assert old.apply(answer("a", 0, journey="j"), T0)[1] == DUPLICATE


def test_stream_stage_sends_no_contribution_for_a_conflicting_copy() -> None:
    proc = PartitionProcessor(0, CoreConfig())
    first = proc.process(answer("a", 10))
    assert first.contributions
    again = proc.process(answer("a", 10))
    assert again.duplicate and again.reject is None
    changed = proc.process(answer("a", 0, T0 + 5 * MIN))
    assert changed.reject == CONFLICT and not changed.contributions and not changed.journeys
    letter = proc.reject_letter(CONFLICT, answer("a", 0), b"{}", "cx.touchpoints", 7)
    assert letter.reason == "conflict" and "different content" in letter.error


def test_engine_counts_the_first_copy_only() -> None:
    engine = ExperienceEngine()
    first, reason = engine.process(answer("a", 10), 0)
    assert reason is None
    second, reason = engine.process(answer("a", 0, T0 + 2 * MIN), 0)  # crosses a bucket
    assert reason == CONFLICT and not second.metrics
    records = first.metrics + engine.finish().metrics
    nps_all = [r for r in records if r.metric == "nps" and r.segment_dim == "all"]
    assert [r.n for r in nps_all] == [1] and nps_all[0].value == 100


def test_replay_dead_letters_the_conflict(tmp_path: Path) -> None:
    lines = [event_to_json(e) for e in (answer("a", 10), answer("a", 10), answer("a", 0))]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    assert main(["replay", str(path), "--output", str(out), "--now",
                 "2027-01-01T00:00:00Z"]) == 0
    letters = [json.loads(x) for x in (out / "dead_letters.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["event_id"]) for d in letters] == [("conflict", "a")]
