"""Closing a follow-up case with PEAKEND_PSEUDONYMISE_KEY set (docs/followups.md, "Closing the
loop"): the ticketing system knows the customer by the pseudonym the case carries, or by the real
id; either closes the case. Nothing else keeps a pseudonym-shaped id unhashed."""

from __future__ import annotations

from pipeline.contract import event_to_json
from pipeline.core.config import CoreConfig
from pipeline.core.event import TouchpointEvent
from pipeline.core.followups import CLOSED, OPEN, CaseRecord
from pipeline.privacy import PSEUDONYM, PersonalData
from pipeline.replay import Replay, with_now
from tests.unit.core.scenarios import DAY, T0, event, hotline_hell

NOW_MS = T0 + 90 * DAY
PRIVACY = PersonalData(key=b"a key the operators keep")


def replay(events: list[TouchpointEvent]) -> Replay:
    run = Replay(with_now(CoreConfig(), NOW_MS), 1, "t", 65536, PRIVACY)
    in_time = sorted(events, key=lambda e: e.occurred_ms)  # none late
    for number, e in enumerate(in_time, start=1):
        run.line(number, event_to_json(e))
    run.keep(run.engine.finish())
    return run


def the_case(run: Replay) -> CaseRecord:
    [case] = [c for c in run.cases.values() if c.status != "withdrawn"]
    return case


def closing(customer_id: str, case_id: str) -> TouchpointEvent:
    return event("done-1", T0 + DAY, customer=customer_id, type="outcome", outcome="other",
                 touchpoint="cx_callback", channel="phone", stage="after_sales",
                 attributes={"followup_case_id": case_id, "followup_result": "refunded"})


def test_the_pseudonym_from_the_case_or_the_real_id_closes_it() -> None:
    opened = the_case(replay(hotline_hell()))
    assert opened.status == OPEN and opened.customer_id == PRIVACY.pseudonym("c1")
    assert PSEUDONYM.fullmatch(opened.customer_id)
    for named_by in (opened.customer_id, "c1"):  # as the webhook showed it; the real id
        case = the_case(replay([*hotline_hell(), closing(named_by, opened.case_id)]))
        assert (case.case_id, case.status, case.result) == (opened.case_id, CLOSED, "refunded")
        assert case.closed_at == T0 + DAY


def test_only_a_closing_event_keeps_a_pseudonym_shaped_id() -> None:
    shaped = "c_" + "0f" * 32
    run = replay([event("x1", T0, customer=shaped, valence=0.5),
                  event("x2", T0, customer="c2", type="outcome", outcome="other",
                        attributes={"followup_case_id": "fu-00000000000000000000"})])
    customers = {j.customer_id for j in run.journeys.values()}
    assert customers == {PRIVACY.pseudonym(shaped), PRIVACY.pseudonym("c2")}
