"""SegmentStage life cycle between flushes: the worker writes state after every message and
flushes outputs later, so state writes must never lose a bucket waiting to be flushed."""

from __future__ import annotations

from pipeline.core.config import CoreConfig
from pipeline.stream import messages
from pipeline.stream.segments import SegmentStage


def _end(journey: str, contribution: tuple[int, bool] | None) -> dict[str, object]:
    return messages.end("channel", "phone", journey, contribution)[1]


def test_emptied_bucket_is_flushed_after_a_state_write_and_versions_keep_growing() -> None:
    stage = SegmentStage(CoreConfig())
    stage.apply(_end("j1", (0, True)))
    stage.dirty_state()
    first = stage.flush().metrics
    stage.apply(_end("j1", None))  # the journey reopened: it counts nowhere now
    stage.dirty_state()  # the worker writes state before the outbox flush
    emptied = stage.flush().metrics
    assert [(r.n, r.version) for r in emptied] == [(0, 2)]
    stage.dirty_state()
    stage.apply(_end("j1", (0, False)))  # closed again, same bucket
    stage.dirty_state()
    again = stage.flush().metrics
    assert [(r.n, r.positives) for r in first] == [(1, 1)]
    assert [(r.n, r.positives, r.version) for r in again] == [(1, 0, 3)]


def test_state_written_between_apply_and_flush_restores_the_pending_flush() -> None:
    stage = SegmentStage(CoreConfig())
    stage.apply(messages.answer("all", "all", "nps", 0, "e1", 10)[1])
    state = dict(stage.dirty_state())
    restored = SegmentStage(CoreConfig())
    restored.restore_keys(state.items())
    records = restored.flush().metrics
    assert [(r.metric, r.n, r.promoters) for r in records] == [("nps", 1, 1)]
