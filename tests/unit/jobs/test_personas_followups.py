"""The generator's personas open follow-up cases where a CX lead expects them (docs/design.md 1,
docs/followups.md): every investment-firm hotline customer gets a case, most of them silent
(no survey answer); the bank that answers at the first ring gets none from its journeys, only
from the rare customer who answers as a detractor or with high effort."""

from __future__ import annotations

import json
from collections import Counter

from jobs.generate import GeneratorConfig, generate_events
from jobs.journey_builder import HOUR
from pipeline.core.config import CoreConfig
from pipeline.core.followups import CaseRecord
from pipeline.replay import Replay, with_now

NOW_MS = 1_830_000_000_000  # 2027-12-28: every generated event reached us before this


def cases_for(persona: str, events: int = 300) -> tuple[list[CaseRecord], set[str]]:
    config = GeneratorConfig(events=events, seed=5, span_ms=6 * HOUR, mix=((persona, 1.0),),
                             late_fraction=0.0)
    replay = Replay(with_now(CoreConfig(), NOW_MS), 1, "generated", 65536)
    for number, event in enumerate(generate_events(config), start=1):
        replay.line(number, json.dumps(event).encode())
    replay.keep(replay.engine.finish())
    customers = {j.customer_id for j in replay.journeys.values()}
    return [c for c in replay.cases.values() if c.status != "withdrawn"], customers


def test_every_investment_hotline_customer_gets_a_case_at_once() -> None:
    cases, customers = cases_for("invest")
    assert {c.customer_id for c in cases} == customers
    from_journeys = [c for c in cases if c.source_id.startswith("journey:")]
    assert Counter(c.trigger for c in from_journeys) == {"deep_negative_peak": len(from_journeys)}
    assert all(c.peak_touchpoint == "hotline" and c.priority == "high" for c in from_journeys)
    silent = sum(c.silent for c in cases)
    assert silent >= 0.5 * len(cases)  # most unhappy customers never answer a survey


def test_the_bank_that_answers_at_the_first_ring_gets_no_case_from_its_journeys() -> None:
    cases, customers = cases_for("bank")
    assert len(customers) > 100
    assert [c for c in cases if c.source_id.startswith("journey:")] == []
    assert all(c.trigger in {"detractor", "hard_effort"} and not c.silent for c in cases)
    assert len(cases) <= 0.1 * len(customers)
