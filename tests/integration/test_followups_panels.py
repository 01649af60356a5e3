"""The follow-up dashboard's panel queries, its SLA-breach alert query (dashboards/
panels_followups.py) and the analyst guide's follow-up examples run on the real ClickHouse server
(18.16) as the read-only user, over cases made by the core, and give the numbers a Python
computation from the same cases gives."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboards.panels_followups import PANELS, SLA_BREACH_ALERT
from pipeline.core.followups import CaseRecord, FollowupEvent, FollowupJourney, FollowupTracker
from pipeline.core.stats import adjusted_wald_nps
from pipeline.followup_rules import horizon_ms, load_rules
from pipeline.storage.tables import rows
from tests.unit.dashboards.grafana_macros import expand
from tests.unit.storage.ch_helpers import Databases, engine_databases

pytestmark = pytest.mark.integration

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "analyst-guide.md"
_EXAMPLE = re.compile(r"<!-- followup-example: (\w+) -->\s*```sql\n(.*?)```", re.DOTALL)
HOUR = 3_600_000
DAY = 24 * HOUR
NOW = int(time.time() * 1000)


def answer(eid: str, customer: str, at: int, nps: int | None = None, ces: float | None = None,
           outcome: str | None = None, closes: str | None = None) -> FollowupEvent:
    return FollowupEvent(eid, customer, None, at, "hotline", nps, ces, None, outcome, closes,
                         "called back" if closes else "")


def journey(jid: str, customer: str, start: int, peak: float, status: str = "closed"
            ) -> FollowupJourney:
    return FollowupJourney(jid, customer, "journey_id", status, 5, start, start + HOUR, peak,
                           "hotline", start, peak, peak, "hotline", start + HOUR, peak, peak)


def make_cases() -> list[CaseRecord]:
    rules = load_rules()
    tracker = FollowupTracker(rules, horizon_ms(rules, 30 * DAY, DAY))
    from pipeline.core.followups import case_id_of
    events = [
        answer("s1", "c1", NOW - 3 * DAY, nps=2),  # high, due 48 h later: past due, open
        answer("s2", "c2", NOW - HOUR, nps=5),  # high, not due yet
        answer("s3", "c3", NOW - 5 * DAY, ces=2.0),  # medium, closed within its 72 h
        answer("x3", "c3", NOW - 4 * DAY, outcome="other",
               closes=case_id_of("c3", "event:s3")),
        answer("s4", "c4", NOW - 10 * DAY, outcome="complaint"),  # high, closed 2 days late
        answer("x4", "c4", NOW - 7 * DAY, outcome="other", closes=case_id_of("c4", "event:s4")),
        # NPS after contact (c3, c4) and after opening (c1, not contacted): recovery_nps
        answer("n1", "c1", NOW - DAY, nps=8),
        answer("n3", "c3", NOW - 2 * DAY, nps=10),
        answer("n4", "c4", NOW - 6 * DAY - HOUR, nps=3),
    ]
    journeys = [
        journey("j3", "c3", NOW - 3 * DAY, 0.6),  # c3's next journey after contact: recovered
        journey("j4", "c4", NOW - 6 * DAY, -0.3),  # c4's: not recovered
        journey("j5", "c5", NOW - 2 * HOUR, -0.95, status="open"),  # silent deep negative peak
        journey("j6", "c6", NOW - 2 * DAY, 0.8),  # no case
    ]
    latest: dict[str, CaseRecord] = {}
    for case in tracker.apply(journeys, events):
        latest[case.case_id] = case
    return list(latest.values())


@pytest.fixture(scope="module")
def loaded(clickhouse_urls: object) -> Iterator[tuple[Databases, list[CaseRecord]]]:
    cases = make_cases()
    with engine_databases("server", "pe_followups", clickhouse_urls) as dbs:
        columns, data = rows("followups", [c.to_dict() for c in cases])
        dbs.writer.insert("followups", columns, data)
        dbs.writer.insert("followups", columns, data)  # delivered twice: still one case each
        yield dbs, cases


def query(dbs: Databases, sql: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    now = datetime.utcnow()
    text = expand(sql, now - timedelta(days=30), now + timedelta(hours=1), 3600, {})
    data, cols = dbs.reader.query_with_columns(text)
    return [tuple(r) for r in data], [c for c, _ in cols]


def breached(cases: list[CaseRecord]) -> set[str]:
    return {c.case_id for c in cases
            if (c.status == "open" and c.due_at < NOW)
            or (c.status == "closed" and c.closed_at is not None and c.closed_at > c.due_at)}


def test_the_cases_are_the_ones_expected() -> None:
    cases = {c.customer_id: c for c in make_cases()}
    assert set(cases) == {"c1", "c2", "c3", "c4", "c5"}
    assert cases["c5"].silent and cases["c5"].trigger == "deep_negative_peak"
    assert cases["c3"].recovery_journey_id == "j3" and cases["c4"].recovery_journey_id == "j4"
    assert [cases[c].recovery_nps for c in ("c1", "c2", "c3", "c4")] == [8, None, 10, 3]


@pytest.mark.parametrize("panel", PANELS, ids=[p.title for p in PANELS])
def test_panel_query_runs_with_its_columns(loaded: tuple[Databases, list[CaseRecord]],
                                           panel: object) -> None:
    dbs, _ = loaded
    data, cols = query(dbs, panel.sql)  # type: ignore[attr-defined]
    assert tuple(cols) == panel.columns  # type: ignore[attr-defined]
    assert data, panel


def test_panel_numbers(loaded: tuple[Databases, list[CaseRecord]]) -> None:
    dbs, cases = loaded
    by_title = {p.title: p for p in PANELS}
    [(open_breached,)] = query(dbs, by_title["Open cases past due (SLA breached)"].sql)[0]
    assert open_breached == len({c.case_id for c in cases if c.status == "open"}
                                & breached(cases)) == 1
    late = query(dbs, by_title["SLA breaches"].sql)[0]
    assert {r[0] for r in late} == breached(cases)
    top = query(dbs, by_title["Top open cases (call these first)"].sql)[0]
    assert [r[3] for r in top] == sorted((r[3] for r in top),
                                         key=("high", "medium", "low").index)
    assert {r[0] for r in top} == {c.case_id for c in cases if c.status == "open"}
    recovery_sql = by_title["Recovery: next journey after contact vs not contacted"].sql
    recovery = {(r[0], r[1]): r for r in query(dbs, recovery_sql)[0]}
    assert recovery[("hard_effort", 1)][5] == 1.0  # c3 recovered after contact
    assert recovery[("complaint", 1)][5] == 0.0  # c4 did not


def test_sla_alert_query(loaded: tuple[Databases, list[CaseRecord]]) -> None:
    dbs, cases = loaded
    data, cols = query(dbs, SLA_BREACH_ALERT.sql)
    assert tuple(cols) == SLA_BREACH_ALERT.columns
    want = sum(1 for c in cases if c.case_id in breached(cases)
               and c.status == "open" and c.priority == "high")
    assert data == [(want,)] and want > SLA_BREACH_ALERT.threshold  # it fires on this data


def guide_examples() -> dict[str, str]:
    return dict(_EXAMPLE.findall(GUIDE.read_text(encoding="utf-8")))


def test_guide_has_followup_examples() -> None:
    assert len(guide_examples()) >= 3


@pytest.mark.parametrize("name", sorted(guide_examples()))
def test_guide_followup_example_runs(loaded: tuple[Databases, list[CaseRecord]],
                                     name: str) -> None:
    dbs, _ = loaded
    data, _ = query(dbs, guide_examples()[name])
    assert data, name


def test_demo_report_prints_the_top_open_cases(
        loaded: tuple[Databases, list[CaseRecord]], clickhouse_urls: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.demo import _report
    from tests.unit.storage.ch_helpers import with_database

    dbs, cases = loaded
    database = dbs.writer.database
    _report(with_database(clickhouse_urls.reader, database), database)  # type: ignore[attr-defined]
    printed = capsys.readouterr().out
    assert "Top open follow-up cases" in printed
    top = sorted((c for c in cases if c.status == "open"),
                 key=lambda c: (("high", "medium", "low").index(c.priority), c.due_at))
    assert top[0].case_id in printed


@pytest.fixture(scope="module", params=["server", "chdb"])
def on_both_engines(request: pytest.FixtureRequest) -> Iterator[Databases]:
    urls = request.getfixturevalue("clickhouse_urls") if request.param == "server" else None
    with engine_databases(request.param, "pe_followups", urls) as dbs:
        columns, data = rows("followups", [c.to_dict() for c in make_cases()])
        dbs.writer.insert("followups", columns, data)
        yield dbs


def test_recovery_view_gives_the_nps_after_contact_with_its_interval(
        on_both_engines: Databases) -> None:
    """followups_recovery (migration 011): per trigger and contacted, the NPS of the customers'
    next answers with the core's adjusted-Wald interval, from the cases themselves."""
    cases = make_cases()
    data, _ = query(on_both_engines, "SELECT trigger, contacted, with_next_nps, next_nps, "
                    "next_nps_ci_low, next_nps_ci_high FROM followups_recovery")
    got = {(r[0], int(r[1])): r[2:] for r in data}
    groups = {(c.trigger, int(c.status == "closed")) for c in cases if c.status != "withdrawn"}
    assert set(got) == groups
    for trigger, contacted in groups:
        answers = [c.recovery_nps for c in cases if c.trigger == trigger
                   and int(c.status == "closed") == contacted and c.recovery_nps is not None]
        n, value, low, high = got[(trigger, contacted)]
        assert n == len(answers)
        if not answers:
            assert (value, low, high) == (None, None, None)
            continue
        promoters = sum(a >= 9 for a in answers)
        detractors = sum(a <= 6 for a in answers)
        assert value == pytest.approx(100 * (promoters - detractors) / n)
        assert (low, high) == pytest.approx(adjusted_wald_nps(promoters, detractors, n))
    assert got[("hard_effort", 1)][:2] == (1, 100.0) and got[("complaint", 1)][:2] == (1, -100.0)
