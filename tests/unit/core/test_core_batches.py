"""Batch paths (`apply_many`, `process_many`) and the compiled scoring rules give exactly what the
per-event calls give."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_core import generate
from pipeline.core.clock import NEVER_MS
from pipeline.core.config import CoreConfig, JourneyConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Signals, TouchpointEvent
from pipeline.core.gcpolicy import tuned_gc
from pipeline.core.journeys import JourneyTracker
from pipeline.core.records import JourneyRecord
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()


def latest(records: list[JourneyRecord]) -> dict[str, JourneyRecord]:
    out: dict[str, JourneyRecord] = {}
    for r in records:
        out[r.journey_id] = r
    return out


def test_apply_many_equals_the_latest_records_of_apply() -> None:
    events = generate(6000, seed=7)
    config = JourneyConfig(allowed_lateness_ms=20_000)  # some events come late
    one = JourneyTracker(config, SCORING_RULES, keep_dirty_keys=True)
    many = JourneyTracker(config, SCORING_RULES, keep_dirty_keys=True)
    wm = NEVER_MS
    all_reasons: list[str | None] = []
    for start in range(0, len(events), 250):
        chunk = events[start:start + 250]
        before = wm
        expected: list[JourneyRecord] = []
        reasons = []
        for e in chunk:
            wm = max(wm, e.occurred_ms)
            records, reason = one.apply(e, wm)
            expected += records
            reasons.append(reason)
        got, got_reasons, got_wm = many.apply_many(chunk, before)
        assert got_reasons == reasons and got_wm == wm
        assert len({r.journey_id for r in got}) == len(got)
        assert latest(got) == latest(expected)
        assert one.drain_end_deltas() == many.drain_end_deltas()
        assert latest(one.advance(wm)) == latest(many.advance(wm))
        all_reasons += reasons
    assert "late" in all_reasons
    assert one.drain_dirty_keys() == many.drain_dirty_keys()
    for key in sorted(one.keys()):
        assert one.snapshot_key(key) == many.snapshot_key(key)


def test_process_many_equals_process() -> None:
    events = generate(8000, seed=3)
    one = ExperienceEngine(CoreConfig(), SCORING_RULES)
    many = ExperienceEngine(CoreConfig(), SCORING_RULES)
    journeys: dict[str, JourneyRecord] = {}
    metrics, alerts, reasons = [], [], []
    for e in events:
        out, reason = one.process(e, e.occurred_ms % 2)
        reasons.append(reason)
        journeys.update(latest(out.journeys))
        metrics += out.metrics
        alerts += out.alerts
    got_journeys: dict[str, JourneyRecord] = {}
    got_metrics, got_alerts, got_reasons = [], [], []
    rnd = random.Random(1)
    i = 0
    while i < len(events):
        n = rnd.randint(1, 400)
        chunk = events[i:i + n]
        i += n
        # process_many takes one partition: split the chunk into runs of equal partition
        run: list[TouchpointEvent] = []
        for item in [*chunk, None]:
            if run and (item is None or item.occurred_ms % 2 != run[0].occurred_ms % 2):
                out, rs = many.process_many(run, run[0].occurred_ms % 2)
                got_reasons += rs
                got_journeys.update(latest(out.journeys))
                got_metrics += out.metrics
                got_alerts += out.alerts
                run = []
            if item is not None:
                run.append(item)
    assert got_reasons == reasons
    assert got_journeys == journeys
    assert got_metrics == metrics and got_alerts == alerts
    end_one, end_many = one.finish(), many.finish()
    assert end_one == end_many


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.floats(0, 5000), st.integers(0, 5000)),
       st.one_of(st.none(), st.floats(0, 8000), st.integers(0, 8000)),
       st.one_of(st.none(), st.integers(0, 6)), st.one_of(st.none(), st.booleans()),
       st.one_of(st.none(), st.booleans()))
def test_rules_score_as_their_contributions_combine(
        wait: float | None, handle: float | None, transfers: int | None,
        resolved: bool | None, error: bool | None) -> None:
    """The hot-path scorer against the definition in the rules file: each matching rule's
    `contribution`, negatives combined as 1 - prod(1 - |c|), positives the same, in file order."""
    rules = load_scoring_rules()
    signals = Signals(wait, handle, transfers, resolved, error)
    keep_neg = keep_pos = 1.0
    for rule in rules.rules:
        value = getattr(signals, rule.signal)
        if value is None:
            continue
        c = rule.contribution(value)
        if c < 0.0:
            keep_neg *= 1.0 + c
        elif c > 0.0:
            keep_pos *= 1.0 - c
    expected = None if signals.is_empty() else keep_neg - keep_pos
    assert rules.score_or_none(signals) == expected
    assert rules.score(signals) == (0.0 if expected is None else expected)


def test_tuned_gc_restores_the_thresholds() -> None:
    import gc

    outside = gc.get_threshold()
    # from Python's defaults: an in-process `peakend replay` earlier in the session (tune_gc,
    # for the rest of a command's process) may have left the tuned thresholds in place
    gc.set_threshold(700, 10, 10)
    try:
        before = gc.get_threshold()
        with tuned_gc():
            assert gc.get_threshold() != before
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*outside)
