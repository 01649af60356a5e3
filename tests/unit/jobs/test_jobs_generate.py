"""The synthetic journey generator: reproducible, schema-valid, the intended shapes."""

from __future__ import annotations

import io
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import pytest

from jobs.generate import (
    GeneratorConfig,
    Shift,
    encode_record,
    generate_events,
    generate_records,
    parse_duration,
    parse_shift,
    write_jsonl,
)
from jobs.journey_builder import DAY, HOUR
from jobs.personas import PERSONAS
from pipeline.cli import main
from pipeline.contract import Rejected, parse_event
from pipeline.core.config import CoreConfig
from pipeline.core.journeys import JourneyTracker
from pipeline.core.records import JourneyRecord
from pipeline.core.timefmt import parse_ms
from pipeline.scoring_rules import load_scoring_rules

SCORING_RULES = load_scoring_rules()

SMALL = GeneratorConfig(events=5000, seed=7)


def jsonl(config: GeneratorConfig) -> bytes:
    out = io.BytesIO()
    write_jsonl(generate_records(config), out)
    return out.getvalue()


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = replace(SMALL, invalid_fraction=0.02,
                     shifts=(Shift("drop", "channel", "phone", SMALL.start_ms + HOUR, 30),))
    first = jsonl(config)
    assert first == jsonl(config)
    assert first != jsonl(replace(config, seed=8))
    assert len(first.splitlines()) > 5000


def test_cli_writes_identical_files(tmp_path: Any) -> None:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        assert main(["generate", "--events", "2000", "--seed", "5", "--output", str(path),
                     "--drop", "segment=channel:phone,at=6h,points=30", "--quiet"]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert len(paths[0].read_bytes().splitlines()) == 2000


def test_every_generated_event_passes_the_contract() -> None:
    events = list(generate_events(replace(SMALL, events=20_000)))
    assert len(events) == 20_000
    parsed = [parse_event(encode_record(e)) for e in events]
    assert len({e.event_id for e in parsed}) == len(parsed)
    types = Counter(e.type for e in parsed)
    assert set(types) == {"interaction", "survey", "journey_end", "outcome"}
    assert types["interaction"] > 0.9 * len(parsed)  # mostly operational signals
    assert 0.002 < types["survey"] / len(parsed) < 0.05  # sparse surveys
    keyed = Counter(e.journey_id is None for e in parsed)
    assert keyed[True] > 0 and keyed[False] > 0  # customer-keyed and journey-keyed


def test_invalid_records_are_rejected_and_leave_valid_events_unchanged() -> None:
    config = replace(SMALL, invalid_fraction=0.1)
    valid: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    for record in generate_records(config):
        try:
            parse_event(encode_record(record))
        except Rejected as rejected:
            assert rejected.error
            reasons[rejected.reason] += 1
        else:
            assert isinstance(record, dict)
            valid.append(record)
    assert len(valid) == SMALL.events
    assert valid == list(generate_events(SMALL))
    assert 350 < sum(reasons.values()) < 650
    assert {"invalid", "not_json", "not_object", "not_utf8"} <= set(reasons)


def test_parquet_safe_invalid_records_are_dicts() -> None:
    config = replace(SMALL, invalid_fraction=0.2)
    records = list(generate_records(config, json_only=False))
    assert all(isinstance(r, dict) for r in records)
    bad = 0
    for record in records:
        assert isinstance(record, dict)
        try:
            parse_event(encode_record(record))
        except Rejected as rejected:
            assert rejected.reason == "invalid"
            assert not str(record.get("occurred_at", "")).startswith("2026-02-30")
            bad += 1
    assert bad > 500


def test_out_of_order_within_max_delay_and_span() -> None:
    config = replace(SMALL, events=20_000, late_fraction=0.02, span_ms=2 * DAY)
    times = [parse_ms(e["occurred_at"]) for e in generate_events(config)]
    high = times[0]
    behind = []
    for ms in times:
        if ms < high:
            behind.append(high - ms)
        high = max(high, ms)
    assert 0.005 < len(behind) / len(times) < 0.06
    assert max(behind) <= config.max_delay_ms
    assert times[0] == config.start_ms
    assert config.start_ms + DAY < max(times) < config.start_ms + 3 * DAY


def _nps(scores: list[int]) -> float:
    return 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)


def test_sudden_drop_moves_nps_by_the_given_points_in_its_segment_only() -> None:
    at = SMALL.start_ms + DAY
    config = GeneratorConfig(events=150_000, seed=3, span_ms=2 * DAY,
                             mix=(("bank", 0.5), ("invest", 0.1), ("telecom", 0.4)),
                             shifts=(Shift("drop", "channel", "phone", at, 30),))
    scores: dict[tuple[bool, bool], list[int]] = defaultdict(list)
    for e in generate_events(config):
        nps = e.get("survey", {}).get("nps")
        if nps is not None and e["touchpoint"] == "hotline":
            scores[(e["channel"] == "phone", parse_ms(e["occurred_at"]) >= at)].append(nps)
    before, after = _nps(scores[(True, False)]), _nps(scores[(True, True)])
    assert min(len(v) for k, v in scores.items() if k[0]) > 800
    assert 20 < before - after < 40


def test_slow_decline_grows_week_by_week() -> None:
    start = SMALL.start_ms
    config = GeneratorConfig(events=150_000, seed=4, span_ms=21 * DAY,
                             mix=(("bank", 0.7), ("recovery", 0.3)),
                             shifts=(Shift("decline", "all", "all", start, 15),))
    weeks: dict[int, list[int]] = defaultdict(list)
    for e in generate_events(config):
        nps = e.get("survey", {}).get("nps")
        if nps is not None:
            weeks[(parse_ms(e["occurred_at"]) - start) // (7 * DAY)].append(nps)
    first, second, third = (_nps(weeks[w]) for w in range(3))
    assert first > second > third
    assert 20 < first - third < 40  # two weeks at 15 points a week


def _journeys(persona: str, events: int = 3000) -> list[JourneyRecord]:
    config = GeneratorConfig(events=events, seed=11, span_ms=30 * DAY, mix=((persona, 1.0),),
                             late_fraction=0.0)
    # The journey stage of the core alone: drop detection over a 30-day span is not the point.
    tracker = JourneyTracker(CoreConfig().journeys, SCORING_RULES)
    latest: dict[str, JourneyRecord] = {}
    watermark = 0
    for record in generate_events(config):
        event = parse_event(encode_record(record))
        watermark = max(watermark, event.occurred_ms)
        journeys, reason = tracker.apply(event, watermark)
        assert reason is None
        for journey in journeys:
            latest[journey.journey_id] = journey
    for journey in tracker.advance(watermark + DAY):
        latest[journey.journey_id] = journey
    done = [j for j in latest.values() if j.status != "superseded" and j.moments >= 2]
    assert len(done) >= 30, persona
    return done


def _median(values: list[float | None]) -> float:
    return statistics.median(v for v in values if v is not None)


def test_personas_give_their_peak_end_shapes_through_the_core() -> None:
    hotel = _journeys("hotel")
    assert _median([j.end_valence for j in hotel]) >= 0.6  # water at checkout
    assert sum((j.end_valence or 0) > 0 for j in hotel) / len(hotel) > 0.85
    assert _median([j.worst_valence for j in hotel]) < 0  # a middling stay under it

    invest = _journeys("invest")
    assert _median([j.peak_valence for j in invest]) <= -0.9  # deep negative peak
    assert sum((j.end_valence or 0) < 0 for j in invest) / len(invest) > 0.9  # negative end

    bank = _journeys("bank")
    assert _median([j.peak_valence for j in bank]) >= 0.5
    assert _median([j.end_valence for j in bank]) >= 0.5

    telecom = _journeys("telecom")
    assert _median([abs(j.peak_valence or 0) for j in telecom]) <= 0.1  # flat, no peak
    assert _median([abs(j.mean_valence or 0) for j in telecom]) <= 0.1

    recovery = _journeys("recovery")
    assert _median([j.worst_valence for j in recovery]) <= -0.7  # the failure...
    assert _median([j.end_valence for j in recovery]) >= 0.8  # ...resolved well

    shop = _journeys("ecommerce", 6000)
    assert {j.keyed_by for j in shop} == {"customer_gap"}
    assert sum(j.peak_valence is not None and j.peak_valence < -0.5 for j in shop) / len(shop) \
        < 0.4


def test_parse_helpers() -> None:
    assert parse_duration("2w") == 14 * DAY
    assert parse_shift("decline", "segment=tier:gold,from=1d,points_per_week=12", 0) == Shift(
        "decline", "tier", "gold", DAY, 12.0)
    with pytest.raises(ValueError, match="segment dimension"):
        parse_shift("drop", "segment=colour:red", 0)
    with pytest.raises(ValueError, match="unknown persona"):
        list(generate_events(replace(SMALL, mix=(("pirates", 1.0),))))
    assert set(PERSONAS) == {"ecommerce", "hotel", "invest", "bank", "telecom", "recovery"}
