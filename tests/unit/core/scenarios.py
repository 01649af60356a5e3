"""Reusable fixture builders for the core tests: events and the docs/design.md scenarios."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from pipeline.core.config import DropConfig
from pipeline.core.drops import DropDetector
from pipeline.core.event import Signals, Survey, TouchpointEvent
from pipeline.core.followups import CaseRecord, FollowupRules
from pipeline.core.records import AlertRecord, MetricRecord
from pipeline.core.surveys import NpsWindow

T0 = 1_795_000_000_000  # 2026-11-18T11:06:40Z, a fixed epoch-ms origin
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
# Follow-up rules with small windows, so histories of weeks cross many horizons: cooldown 2 d,
# an open case suppresses for 3 d; with journeys of at most a day and inputs at most a day late
# the horizon is 5 d (`followup_rules.horizon_ms`).
SHORT_RULES = FollowupRules.from_dict({
    "version": 1, "cooldown_days": 2, "open_case_suppresses_days": 3,
    "triggers": [
        {"name": "bad-end", "on": "journey", "priority": "high", "sla_hours": 24,
         "field": "end_valence", "at_most": -0.3},
        {"name": "low-peak", "on": "journey", "priority": "low", "sla_hours": 48,
         "when": "any", "field": "peak_valence", "at_most": -0.8},
        {"name": "detractor", "on": "survey", "priority": "medium", "sla_hours": 24,
         "field": "nps", "at_most": 6},
        {"name": "churn", "on": "outcome", "priority": "high", "sla_hours": 4,
         "outcome": "churned"},
    ]})
SHORT_MAX_JOURNEY = DAY
SHORT_LATENESS = DAY
SHORT_HORIZON = 3 * DAY + SHORT_MAX_JOURNEY + SHORT_LATENESS


def keep_latest(latest: dict[str, CaseRecord], cases: Iterable[CaseRecord]) -> None:
    """Keep each case's latest version in `latest`, as the sinks do (upsert by version)."""
    for case in cases:
        old = latest.get(case.case_id)
        if old is None or case.version >= old.version:
            latest[case.case_id] = case


def event(
    eid: str,
    ms: int,
    *,
    customer: str = "c1",
    journey: str | None = None,
    type: str = "interaction",
    touchpoint: str = "web",
    channel: str = "web",
    stage: str = "use",
    valence: float | None = None,
    signals: Signals | None = None,
    survey: Survey | None = None,
    outcome: str | None = None,
    attributes: dict[str, str] | None = None,
) -> TouchpointEvent:
    return TouchpointEvent(
        event_id=eid,
        occurred_at=datetime.fromtimestamp(ms / 1000, UTC),
        producer="test",
        customer_id=customer,
        type=type,  # type: ignore[arg-type]
        touchpoint=touchpoint,
        channel=channel,  # type: ignore[arg-type]
        stage=stage,  # type: ignore[arg-type]
        journey_id=journey,
        valence=valence,
        signals=signals,
        survey=survey,
        outcome=outcome,
        attributes=attributes or {},
        occurred_ms=ms,
    )


def hotel_water_at_checkout(t: int = T0) -> list[TouchpointEvent]:
    """A middling stay with a bad middle, lifted by two bottles of water at checkout."""
    j = "hotel-1"
    return [
        event("h1", t, journey=j, touchpoint="booking", valence=0.2, stage="purchase"),
        event("h2", t + 4 * HOUR, journey=j, touchpoint="check_in", valence=0.1),
        event("h3", t + 10 * HOUR, journey=j, touchpoint="room", valence=-0.5),
        event("h4", t + 20 * HOUR, journey=j, touchpoint="breakfast", valence=0.0),
        event("h5", t + 26 * HOUR, journey=j, touchpoint="checkout", valence=0.8,
              stage="after_sales"),
        event("h6", t + 26 * HOUR + MIN, journey=j, type="journey_end", touchpoint="checkout"),
    ]


def hotline_hell(t: int = T0) -> list[TouchpointEvent]:
    """Investment-firm hotline: 1 h to get through, 4 transfers, still unresolved."""
    j = "invest-1"
    return [
        event("i1", t, journey=j, touchpoint="hotline", channel="phone", stage="after_sales",
              signals=Signals(wait_seconds=3600, transfers=4, resolved=False)),
        event("i2", t + 3 * DAY, journey=j, touchpoint="email", channel="email",
              stage="after_sales", signals=Signals(wait_seconds=0, resolved=False)),
        event("i3", t + 9 * DAY, journey=j, touchpoint="hotline", channel="phone",
              stage="after_sales", signals=Signals(wait_seconds=1500, transfers=2,
                                                   resolved=False)),
    ]


def bank_first_ring(t: int = T0) -> list[TouchpointEvent]:
    """A bank answering at the first ring and resolving within 2 minutes."""
    return [event("b1", t, journey="bank-1", touchpoint="hotline", channel="phone",
                  signals=Signals(wait_seconds=5, handle_seconds=110, resolved=True))]


def telecom_so_so(t: int = T0) -> list[TouchpointEvent]:
    """Hotline, account manager and store all rated 'okay / so-so': a flat journey."""
    j = "telco-1"
    return [
        event("t1", t, journey=j, touchpoint="hotline", channel="phone", survey=Survey(csat=3)),
        # "okay" on NPS is a passive's 7: a 6 is a detractor, a negative moment (issue 16)
        event("t2", t + DAY, journey=j, touchpoint="account_manager", channel="phone",
              survey=Survey(nps=7)),
        event("t3", t + 2 * DAY, journey=j, touchpoint="store", channel="store",
              survey=Survey(ces=4, ces_scale=7)),
        event("t4", t + 3 * DAY, journey=j, touchpoint="hotline", channel="phone",
              valence=0.0),
    ]


def complaint_resolved_well(t: int = T0) -> list[TouchpointEvent]:
    """Service recovery: a complaint handled so well the customer ends up a promoter."""
    j = "recovery-1"
    return [
        event("r1", t, journey=j, touchpoint="delivery", signals=Signals(error=True)),
        event("r2", t + HOUR, journey=j, touchpoint="chat", channel="chat",
              signals=Signals(wait_seconds=20, resolved=True)),
        event("r3", t + 2 * HOUR, journey=j, type="survey", touchpoint="chat", channel="chat",
              survey=Survey(nps=10, csat=5)),
        event("r4", t + 30 * DAY - HOUR, journey=j, type="outcome", touchpoint="shop",
              outcome="repurchase"),
    ]


def nps_answers(rng: random.Random, n: int, promoters: float, detractors: float
                ) -> Iterator[int]:
    """n NPS answers with the given promoter and detractor shares."""
    for _ in range(n):
        u = rng.random()
        if u < promoters:
            yield rng.choice((9, 10))
        elif u < promoters + detractors:
            yield rng.randint(0, 6)
        else:
            yield rng.choice((7, 8))


def nps_stream(rng: random.Random, start: int, hours: int, per_hour: int, promoters: float,
               detractors: float, *, prefix: str = "s", touchpoint: str = "checkout"
               ) -> list[TouchpointEvent]:
    """Survey events spread evenly over `hours` hours, `per_hour` each hour."""
    out = []
    step = HOUR // per_hour
    for h in range(hours):
        answers = nps_answers(rng, per_hour, promoters, detractors)
        for i, score in enumerate(answers):
            ms = start + h * HOUR + i * step
            out.append(event(f"{prefix}{h}-{i}", ms, customer=f"{prefix}c{h}-{i}",
                             type="survey", touchpoint=touchpoint, survey=Survey(nps=score)))
    return out


def nps_bucket_records(rng: random.Random, start: int, buckets: int, per_bucket: float,
                       promoters: float, detractors: float, *, partition: int = 0,
                       drift_per_bucket: float = 0.0, bucket_ms: int = MIN
                       ) -> list[MetricRecord]:
    """One NPS partial record per bucket (segment all): a fast feed for drop detection.
    Answers per bucket alternate floor/ceil of `per_bucket`; `drift_per_bucket` moves share
    from promoters to detractors (half each) every bucket, for slow declines."""
    out = []
    owed = 0.0
    for i in range(buckets):
        owed += per_bucket
        n = int(owed)
        owed -= n
        p = max(0.0, promoters - drift_per_bucket * i / 2)
        d = min(1.0, detractors + drift_per_bucket * i / 2)
        acc = NpsWindow()
        for score in nps_answers(rng, n, p, d):
            acc.update(score)
        bucket = start + i * bucket_ms
        est = acc.result()
        out.append(MetricRecord(
            metric="nps", segment_dim="all", segment_value="all", window_start=bucket,
            window_end=bucket + bucket_ms, source_partition=partition, n=est.n, value=est.value,
            ci_low=est.ci_low, ci_high=est.ci_high, promoters=acc.promoters,
            passives=acc.passives, detractors=acc.detractors, total=0.0, total_sq=0.0, easy=0,
            hard=0, positives=0, version=1))
    return out


def detect(records: list[MetricRecord], config: DropConfig | None = None,
           bucket_ms: int = MIN) -> list[AlertRecord]:
    """Feed bucket records in time order, advancing stream time to each bucket's end."""
    detector = DropDetector(config, bucket_ms)
    alerts: list[AlertRecord] = []
    for i, record in enumerate(records):
        detector.apply_partial(record)
        if i + 1 == len(records) or records[i + 1].window_end != record.window_end:
            alerts.extend(detector.advance(record.window_end))  # every partition is in
    return alerts
