"""Digest version 2 meets state written under version 1 (issue 19): nothing stored is rewritten.

Journey and claim snapshots, batch and claim records and touchpoint_events rows written before
version 2 hold version 1 digests (0 .. 2^32 - 1); version 2 digests are negative, below every
one of them. So across the upgrade the copy digested by version 2 wins wherever copies of an
event_id differ, in the core as in ClickHouse, and a redelivery of the held content stays a
duplicate: the tracker asks `content_digest_v1` of a copy that meets a version 1 digest."""

from __future__ import annotations

from typing import Any, cast

from scenarios import T0, event

from pipeline.core.config import CoreConfig, JourneyConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Survey, TouchpointEvent, content_digest, content_digest_v1
from pipeline.core.journeys import CONFLICT, DUPLICATE, REPLACED, JourneyTracker
from pipeline.scoring_rules import load_scoring_rules
from pipeline.storage.tables import digest_version
from pipeline.stream.partition import PartitionProcessor

SCORING_RULES = load_scoring_rules()


def answer(nps: int, journey: str = "j-a") -> TouchpointEvent:
    # `scenarios` comes from this directory (on sys.path under pytest): Any to mypy
    return cast(TouchpointEvent, event("a", T0, journey=journey, type="survey",
                                       survey=Survey(nps=nps)))


def as_version_1(state: Any, held: TouchpointEvent) -> Any:
    """`state` as an earlier peakend wrote it: `held`'s digest in version 1."""
    old, new = content_digest_v1(held), content_digest(held)
    assert old >= 0 > new
    if isinstance(state, dict):
        return {k: as_version_1(v, held) for k, v in state.items()}
    if isinstance(state, list):
        return [as_version_1(v, held) for v in state]
    return old if state == new and not isinstance(state, bool) else state


def tracker_holding_version_1(held: TouchpointEvent) -> JourneyTracker:
    writer = JourneyTracker(JourneyConfig(), SCORING_RULES)
    assert writer.apply(held, T0)[1] is None
    tracker = JourneyTracker(JourneyConfig(), SCORING_RULES)
    tracker.restore_key("j-a", as_version_1(writer.snapshot_key("j-a"), held))
    return tracker


def test_the_held_content_again_is_a_duplicate_under_its_version_1_digest() -> None:
    held = answer(10)
    tracker = tracker_holding_version_1(held)
    assert tracker.apply(answer(10), T0) == ([], DUPLICATE)
    assert tracker.last_digest == content_digest_v1(held)  # the claim names what is held
    [journey] = tracker.journeys()
    assert journey.moments.events == 1


def test_other_content_replaces_a_copy_held_under_version_1() -> None:
    tracker = tracker_holding_version_1(answer(10))
    # a copy that version 1 would have judged the loser
    changed = next(answer(n) for n in range(10)
                   if content_digest_v1(answer(n)) > content_digest_v1(answer(10)))
    assert tracker.apply(changed, T0)[1] == REPLACED
    [journey] = tracker.journeys()
    assert journey.moments.events == 1
    assert journey.moments.end_valence() == tracker_holding_version_1(changed).journeys()[
        0].moments.end_valence()
    # from now on both copies are judged under version 2 in either order
    expected = CONFLICT if content_digest(answer(10)) > content_digest(changed) else REPLACED
    assert tracker.apply(answer(10), T0)[1] == expected


def test_the_stream_stage_claims_the_digest_its_journey_holds() -> None:
    held = answer(10)
    writer = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    writer.process(held)
    proc = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    proc.tracker.restore_key("j-a", as_version_1(writer.tracker.snapshot_key("j-a"), held))
    out = proc.process(answer(10))
    assert out.duplicate and out.reject is None
    assert out.claim == content_digest_v1(held)


def test_a_copy_under_another_journey_key_withdraws_the_one_held_under_version_1() -> None:
    """The claim and the journey both hold version 1's digest: the withdrawal finds the copy."""
    held = answer(10, "j-a")
    writer = ExperienceEngine(CoreConfig(), SCORING_RULES)
    writer.process(held, 0)
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES,
                              resume=as_version_1(writer.snapshot(), held))
    assert engine.process(answer(10, "j-a"), 0)[1] == DUPLICATE
    emitted, reason = engine.process(answer(10, "j-b"), 0)
    assert reason == REPLACED  # the version 2 copy wins
    status = {r.journey_id: (r.status, r.events) for r in emitted.journeys}
    assert status == {"j-a": ("superseded", 1), "j-b": ("open", 1)}  # j-a had no other event


def test_clickhouse_keeps_the_copy_the_core_keeps_across_the_upgrade() -> None:
    """touchpoint_events.version = 2^32 - digest: every version 2 row above every version 1
    row, as every version 2 digest is below."""
    held, changed = answer(10), answer(0)
    assert digest_version(content_digest(changed)) > digest_version(content_digest_v1(held))
    assert digest_version(content_digest(changed)) > digest_version(0) == 1 << 32
