"""`peakend replay` end to end on a small JSONL file: valid, invalid, duplicate and late lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scenarios import DAY, HOUR, T0, complaint_resolved_well, event, hotel_water_at_checkout

from pipeline.cli import main
from pipeline.contract import event_to_json
from pipeline.core.event import Survey
from pipeline.core.records import JourneyRecord, MetricRecord

# the fixtures are dated around T0 + 31 days (December 2026): they reached us after that
NOW = ["--now", "2027-06-01T00:00:00Z"]


def read(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    lines = [event_to_json(e) for e in hotel_water_at_checkout()]
    lines.insert(2, b"{not json")
    lines.insert(3, b'{"event_id": "bad", "schema_version": 1}')
    lines.append(lines[-1])  # a redelivered duplicate
    lines += [event_to_json(e) for e in complaint_resolved_well(T0 + 26 * HOUR)]
    lines.append(event_to_json(event("late-1", T0, customer="c7", type="survey",
                                     survey=Survey(nps=3))))  # 30 days behind by now
    lines.append(event_to_json(event("s-1", T0 + 31 * DAY, customer="c8", type="survey",
                                     touchpoint="chat", survey=Survey(nps=10, csat=4))))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    return path


def test_replay_writes_the_four_files(events_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["replay", str(events_file), "--output", str(out), *NOW]) == 0
    printed = capsys.readouterr().out
    assert "dead letters: 3 (invalid 1, late 1, not_json 1)" in printed
    assert "1 duplicates dropped" in printed

    journeys = {j["journey_id"]: j for j in read(out / "journeys.jsonl")}
    assert set(journeys) == {"hotel-1", "recovery-1", "c8@2026-12-19T11:06:40.000Z"}
    hotel = JourneyRecord.from_dict(journeys["hotel-1"])
    assert hotel.status == "closed" and hotel.close_reason == "journey_end"
    assert hotel.end_valence == 0.8 and hotel.events == 6
    assert journeys["hotel-1"]["started_at"] == "2026-11-18T11:06:40.000Z"
    assert journeys["recovery-1"]["outcome"] == "repurchase"

    metrics = [MetricRecord.from_dict(m) for m in read(out / "metrics.jsonl")]
    nps_all = [m for m in metrics if m.metric == "nps" and m.segment_dim == "all"]
    assert sum(m.n for m in nps_all) == 2  # recovery survey + s-1; the late answer is out
    chat = [m for m in metrics if m.metric == "csat" and m.segment_value == "chat"]
    assert [(m.n, m.positives) for m in chat] == [(1, 1)] * 3  # touchpoint + channel, chat
    negative_end = [m for m in metrics if m.metric == "negative_end" and m.segment_dim == "all"]
    assert sum(m.n for m in negative_end) == 2 and sum(m.positives for m in negative_end) == 0
    assert all(m.source_partition == 0 and m.version >= 1 for m in metrics)

    assert read(out / "alerts.jsonl") == []
    letters = read(out / "dead_letters.jsonl")
    assert [(d["reason"], d["source_offset"], d["source_topic"]) for d in letters] == [
        ("not_json", 3, "events.jsonl"), ("invalid", 4, "events.jsonl"),
        ("late", 14, "events.jsonl")]
    assert letters[2]["event_id"] == "late-1" and "allowed lateness" in letters[2]["error"]


def test_replay_over_partitions_gives_the_same_journeys(events_file: Path,
                                                        tmp_path: Path) -> None:
    one, four = tmp_path / "one", tmp_path / "four"
    assert main(["replay", str(events_file), "--output", str(one), *NOW]) == 0
    assert main(["replay", str(events_file), "--output", str(four), "--partitions", "4", *NOW]) == 0
    assert read(one / "journeys.jsonl") == read(four / "journeys.jsonl")
    partitions = {m["source_partition"] for m in read(four / "metrics.jsonl")}
    assert partitions <= {0, 1, 2, 3}


def test_replay_fires_on_a_sudden_drop(tmp_path: Path) -> None:
    import random

    from scenarios import nps_stream

    rng = random.Random(4)
    start = T0 - T0 % HOUR
    events = nps_stream(rng, start, 30, 400, 0.5, 0.15)
    events += nps_stream(rng, start + 30 * HOUR, 2, 400, 0.2, 0.45, prefix="d")
    path = tmp_path / "drop.jsonl"
    path.write_bytes(b"\n".join(event_to_json(e) for e in events))
    assert main(["replay", str(path), "--output", str(tmp_path / "o"), *NOW]) == 0
    alerts = read(tmp_path / "o" / "alerts.jsonl")
    fired = {(a["metric"], a["segment_dim"]) for a in alerts if a["state"] == "firing"}
    assert ("nps", "all") in fired and ("nps", "touchpoint") in fired


def test_replay_writes_followup_cases_the_same_over_partitions(tmp_path: Path) -> None:
    from scenarios import MIN, bank_first_ring, hotline_hell

    from pipeline.core.followups import CaseRecord, case_id_of

    events = [*hotline_hell(), *bank_first_ring(T0 + MIN),
              event("d-1", T0 + 2 * MIN, customer="c9", type="survey", touchpoint="chat",
                    survey=Survey(nps=2))]
    events.sort(key=lambda e: e.occurred_ms)  # in time order: none is late
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(event_to_json(e) for e in events) + b"\n")
    one, four = tmp_path / "one", tmp_path / "four"
    assert main(["replay", str(path), "--output", str(one), *NOW]) == 0
    assert main(["replay", str(path), "--output", str(four), "--partitions", "4", *NOW]) == 0
    cases = [CaseRecord.from_dict(c) for c in read(one / "followups.jsonl")]
    assert {(c.journey_id.split("@")[0], c.customer_id, c.trigger, c.silent) for c in cases} == {
        ("invest-1", "c1", "deep_negative_peak", True), ("c9", "c9", "detractor", False)}
    assert case_id_of("c1", "journey:invest-1") in {c.case_id for c in cases}
    # the evidence of a journey still open on its partition comes when it closes; which cases
    # open and when does not depend on the partitions
    def opened(path: Path) -> set[tuple[str, str, str, str]]:
        return {(c["case_id"], c["trigger"], c["opened_at"], c["due_at"]) for c in read(path)}
    assert opened(four / "followups.jsonl") == opened(one / "followups.jsonl")
    assert [CaseRecord.from_dict(c.to_dict()) for c in cases] == cases
