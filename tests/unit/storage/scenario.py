"""Scenario data for the analyst guide and the dashboards: two weeks of journeys run through the
real contract parser and ExperienceEngine, stored through `tables.rows` + `Warehouse.insert`.

Deterministic (seeded). Shapes from docs/design.md: smooth purchases, the investment-firm hotline
(long wait, 4 transfers, unresolved), a journey that peaks well in the store and ends with a
failed delivery, service recovery on the hotline, the flat telecom journey; on the last day a
one-hour burst of hotline failures that makes the core fire (and later resolve) an NPS alert.
Every version of every record is inserted, and a slice twice, as an at-least-once sink would.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pipeline.contract import Rejected, parse_event
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.encode import event_to_dict
from pipeline.core.engine import Emitted, ExperienceEngine
from pipeline.core.partitioner import partition_for
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.scoring_rules import load_scoring_rules
from pipeline.settings import Settings
from pipeline.storage import tables
from pipeline.storage.warehouse import Warehouse

SCORING_RULES = load_scoring_rules()

START = datetime(2026, 11, 9, 0, 0, tzinfo=UTC)  # a Monday; data runs 14 days
DAYS = 14
PARTITIONS = 3
BURST_HOUR = START + timedelta(days=DAYS - 1, hours=14)  # 2026-11-22 14:00 UTC
SETTINGS = {
    "PEAKEND_ALERT_MIN_N": "30",
    "PEAKEND_BUCKET_SECONDS": "300",
}
INVALID_LINES = [
    b"not json at all",
    b'{"event_id": "bad-1", "schema_version": 1}',
    b"\xff\xfe",
]


@dataclass
class Scenario:
    events: list[dict[str, Any]] = field(default_factory=list)  # validated, event_to_dict form
    journeys: list[JourneyRecord] = field(default_factory=list)  # every version
    metrics: list[MetricRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def latest_journeys(self) -> dict[str, JourneyRecord]:
        out: dict[str, JourneyRecord] = {}
        for j in self.journeys:
            if j.journey_id not in out or j.version > out[j.journey_id].version:
                out[j.journey_id] = j
        return {k: v for k, v in out.items() if v.status != "superseded"}

    def latest_metrics(self) -> dict[tuple[str, str, str, int, int], MetricRecord]:
        out: dict[tuple[str, str, str, int, int], MetricRecord] = {}
        for m in self.metrics:
            key = (m.metric, m.segment_dim, m.segment_value, m.window_start, m.source_partition)
            if key not in out or m.version > out[key].version:
                out[key] = m
        return out

    def latest_alerts(self) -> dict[str, AlertRecord]:
        out: dict[str, AlertRecord] = {}
        for a in self.alerts:
            if a.alert_id not in out or a.version > out[a.alert_id].version:
                out[a.alert_id] = a
        return out


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lines: list[tuple[datetime, bytes]] = []
        self.count = 0

    def add(self, at: datetime, journey: str, customer: str, touchpoint: str, channel: str,
            stage: str, *, type: str = "interaction", attrs: dict[str, str],
            **extra: Any) -> None:
        self.count += 1
        obj: dict[str, Any] = {
            "event_id": f"e{self.count:06d}", "schema_version": 1, "occurred_at": _iso(at),
            "producer": "scenario", "customer_id": customer, "journey_id": journey,
            "type": type, "touchpoint": touchpoint, "channel": channel, "stage": stage,
            "attributes": attrs,
        }
        obj.update(extra)
        self.lines.append((at, json.dumps(obj).encode()))

    def journey(self, kind: str, jid: str, start: datetime) -> None:
        rng = self.rng
        customer = f"c{rng.randrange(400):04d}"
        attrs = {"region": rng.choice(["north", "south"]),
                 "tier": rng.choice(["gold", "standard", "standard"])}
        t = start
        step = timedelta(minutes=rng.randint(2, 6))

        def add(*args: Any, **kw: Any) -> None:
            nonlocal t
            self.add(t, jid, customer, *args, attrs=attrs, **kw)
            t += step

        if kind == "smooth":
            add("web", "web", "pre_purchase", valence=0.3)
            add("checkout", "web", "purchase", signals={"resolved": True})
            add("delivery", "app", "use", valence=0.6)
            add("delivery", "app", "use", type="survey",
                survey={"nps": rng.choice([8, 9, 10, 10]), "csat": rng.choice([4, 5]),
                        "ces": rng.choice([6, 7]), "ces_scale": 7})
        elif kind == "hotline_bad":
            add("web", "web", "pre_purchase", valence=0.1)
            add("checkout", "web", "purchase", signals={"error": True})
            add("hotline", "phone", "after_sales",
                signals={"wait_seconds": 3600, "transfers": 4, "resolved": False})
            add("hotline", "phone", "after_sales", type="survey",
                survey={"nps": rng.choice([0, 2, 3, 5]), "ces": rng.choice([1, 2]),
                        "ces_scale": 7, "csat": rng.choice([1, 2])})
        elif kind == "good_then_bad":
            add("store", "store", "purchase", valence=0.9)
            add("delivery", "app", "use", signals={"error": True})
            add("delivery", "app", "use", type="survey",
                survey={"nps": rng.choice([5, 6, 7]), "csat": rng.choice([2, 3])})
        elif kind == "recovery":
            add("delivery", "app", "use", signals={"error": True})
            add("hotline", "phone", "after_sales",
                signals={"wait_seconds": 30, "transfers": 1, "resolved": True})
            add("hotline", "phone", "after_sales", type="survey",
                survey={"nps": rng.choice([9, 10]), "ces": 4, "ces_scale": 5})
        elif kind == "flat":
            add("hotline", "phone", "use", valence=0.0)
            add("account_manager", "email", "use", valence=0.1)
            add("store", "store", "use", valence=0.0)
            add("store", "store", "use", type="survey", survey={"nps": 6, "csat": 3})
        else:
            raise ValueError(kind)
        add("web", "web", "use", type="journey_end")

    def build(self) -> list[tuple[datetime, bytes]]:
        kinds = ["smooth"] * 10 + ["hotline_bad"] * 2 + ["good_then_bad"] * 2 + [
            "recovery"] * 2 + ["flat"] * 2
        n = 0
        for day in range(DAYS):
            for i in range(40):
                start = START + timedelta(days=day, minutes=i * 30 + self.rng.randint(0, 20))
                n += 1
                self.journey(self.rng.choice(kinds), f"j{n:05d}", start)
        for i in range(45):  # the burst: hotline failures within one hour on the last day
            n += 1
            self.journey("hotline_bad", f"j{n:05d}", BURST_HOUR + timedelta(seconds=i * 40))
        return sorted(self.lines, key=lambda pair: pair[0])


@lru_cache(maxsize=1)
def build() -> Scenario:
    rng = random.Random(20261122)
    lines = _Builder(rng).build()
    config = Settings.from_env(SETTINGS).core_config()
    engine = ExperienceEngine(config, SCORING_RULES)
    out = Scenario()
    emitted = Emitted()
    for _, raw in lines:
        event = parse_event(raw)
        out.events.append(event_to_dict(event))
        got, reason = engine.process(event, partition_for(event.journey_key, PARTITIONS))
        assert reason is None, reason
        emitted.extend(got)
    emitted.extend(engine.finish())
    for i, raw in enumerate(INVALID_LINES):
        try:
            parse_event(raw)
        except Rejected as rejected:
            out.dead_letters.append(DeadLetter.from_rejection(
                rejected, original=raw, source_topic="cx.touchpoints", source_partition=i,
                source_offset=100 + i, received_at=BURST_HOUR))
    out.journeys, out.metrics, out.alerts = emitted.journeys, emitted.metrics, emitted.alerts
    return out


def _chunks(items: list[Any], size: int = 20000) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def load(warehouse: Warehouse, scenario: Scenario | None = None) -> Scenario:
    """Insert the scenario through the real record -> row path (every version, some twice)."""
    sc = scenario or build()
    batches: dict[str, list[dict[str, Any]]] = {
        "journeys": [r.to_dict() for r in sc.journeys],
        "metric_buckets": [r.to_dict() for r in sc.metrics],
        "alerts": [r.to_dict() for r in sc.alerts],
        "dead_letters": [d.to_dict() for d in sc.dead_letters],
        "touchpoint_events": list(sc.events),
    }
    for table, records in batches.items():
        redelivered = records[: max(1, len(records) // 10)] if records else []
        for chunk in _chunks(records + redelivered):
            columns, data = tables.rows(table, chunk)
            warehouse.insert(table, columns, data)
    return sc
