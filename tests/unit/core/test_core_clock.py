"""The `future` verdict: one producer clock running ahead never makes later events `late`.

Stream time is the largest event time seen on a partition; an event dated further ahead than the
allowed skew of the time it reached us is a dead letter `future` and touches no state
(docs/design.md 1, "Journey moments"; pipeline/core/clock.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from scenarios import DAY, MIN, T0, event

from pipeline.cli import main
from pipeline.contract import event_to_json
from pipeline.core.clock import FUTURE
from pipeline.core.config import ClockConfig, CoreConfig
from pipeline.core.engine import ExperienceEngine
from pipeline.core.event import Survey
from pipeline.core.timefmt import format_ms
from pipeline.scoring_rules import load_scoring_rules
from pipeline.stream.partition import PartitionProcessor

SCORING_RULES = load_scoring_rules()

SKEW = ClockConfig().max_skew_ms


def stream(n: int = 26) -> list:  # type: ignore[type-arg]
    """n on-time survey answers a minute apart, with one event dated 2 days ahead as the third."""
    events = [event(f"e{i}", T0 + i * MIN, customer=f"c{i % 5}", type="survey",
                    survey=Survey(nps=i % 11)) for i in range(n)]
    events.insert(2, event("ahead", T0 + 2 * MIN + 2 * DAY, customer="c9", valence=-1.0))
    return events


def test_engine_rejects_the_future_event_and_keeps_every_later_one() -> None:
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    reasons = []
    for e in stream():
        # each event reaches us one second after it happened, the bad clock's too
        arrived = e.occurred_ms + 1000 if e.event_id != "ahead" else T0 + 2 * MIN + 1000
        reasons.append(engine.process(e, 0, arrived)[1])
    assert reasons.count(FUTURE) == 1 and reasons[2] == FUTURE
    assert [r for r in reasons if r is not None] == [FUTURE]  # nothing late
    assert engine.watermarks[0] == T0 + 25 * MIN  # stream time never jumped
    assert "c9" not in {j.customer_id for j in engine.trackers[0].journeys()}


def test_skew_boundary_is_inclusive() -> None:
    engine = ExperienceEngine(CoreConfig(), SCORING_RULES)
    at = T0 + SKEW
    assert engine.process(event("ok", at), 0, T0)[1] is None
    assert engine.process(event("no", at + 1), 0, T0)[1] == FUTURE


def test_batch_path_gives_the_same_verdicts() -> None:
    config = CoreConfig(clock=ClockConfig(now_ms=T0 + 30 * MIN))
    one, many = ExperienceEngine(config, SCORING_RULES), ExperienceEngine(config, SCORING_RULES)
    events = stream()
    singles = [one.process(e, 0)[1] for e in events]
    _, batched = many.process_many(events, 0)
    assert singles == batched and batched.count(FUTURE) == 1
    assert one.watermarks == many.watermarks


def test_stream_processor_rejects_future_without_moving_stream_time() -> None:
    proc = PartitionProcessor(0, CoreConfig(), SCORING_RULES)
    for e in stream():
        arrived = T0 + 2 * MIN + 1000 if e.event_id == "ahead" else e.occurred_ms + 1000
        out = proc.process(e, arrived)
        if e.event_id == "ahead":
            assert out.reject == FUTURE and not out.journeys and not out.contributions
        else:
            assert out.reject is None
    assert proc.watermark == T0 + 25 * MIN


def test_replay_file_with_a_bad_clock(tmp_path: Path) -> None:
    events = stream()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(event_to_json(e) for e in events) + b"\n")
    out = tmp_path / "out"
    now = format_ms(T0 + 26 * MIN)
    assert main(["replay", str(path), "--output", str(out), "--now", now]) == 0
    letters = [json.loads(x) for x in (out / "dead_letters.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["event_id"]) for d in letters] == [("future", "ahead")]
    assert "ahead of" in letters[0]["error"] and "clock skew" in letters[0]["error"]
    # judged as if the file reached us 3 days later, the bad clock passes as on time and
    # every event behind it is `late` (2 days behind, lateness 1 day): what the rule prevents
    later = format_ms(T0 + 3 * DAY)
    assert main(["replay", str(path), "--output", str(tmp_path / "o2"), "--now", later]) == 0
    reasons = [json.loads(x)["reason"]
               for x in (tmp_path / "o2" / "dead_letters.jsonl").read_text().splitlines()]
    assert len(reasons) == 24 and set(reasons) == {"late"}


def test_replay_now_is_checked(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "e.jsonl"
    path.write_bytes(event_to_json(event("x", T0)) + b"\n")
    try:
        main(["replay", str(path), "--output", str(tmp_path / "o"), "--now", "yesterday"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--now" in capsys.readouterr().err


def test_config_now_is_the_default_arrival() -> None:
    config = replace(CoreConfig(), clock=ClockConfig(now_ms=T0))
    engine = ExperienceEngine(config, SCORING_RULES)
    assert engine.process(event("a", T0 + SKEW + 1), 0)[1] == FUTURE
    assert engine.process(event("b", T0 + SKEW + 1), 0, T0 + SKEW)[1] is None  # explicit wins
