"""Record -> row mapping (pipeline/storage/tables.py) and its agreement with the migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.encode import event_to_dict
from pipeline.core.event import Signals, Survey, TouchpointEvent
from pipeline.core.records import AlertRecord, JourneyRecord, MetricRecord
from pipeline.storage import tables
from tests.unit.storage.migrations import final_columns

T = 1_795_367_409_123  # 2026-11-22T17:10:09.123Z


def journey(**over: object) -> JourneyRecord:
    base: dict[str, object] = dict(
        journey_id="j1", customer_id="c1", keyed_by="journey_id", status="closed",
        close_reason="journey_end", started_at=T, ended_at=T + 60_000, duration_seconds=60.0,
        events=3, moments=2, peak_valence=-0.8, peak_touchpoint="hotline", peak_at=T + 1000,
        peak_event_id="e2", best_valence=0.5, best_touchpoint="web", worst_valence=-0.8,
        worst_touchpoint="hotline", end_valence=0.5, end_touchpoint="web", end_channel="web",
        end_stage="use", end_at=T + 60_000, end_event_id="e3", peak_end_score=-0.15,
        mean_valence=-0.15, outcome="", version=4)
    base.update(over)
    return JourneyRecord(**base)  # type: ignore[arg-type]


def test_journey_row_converts_times_and_keeps_nulls() -> None:
    row = dict(zip(tables.TABLES["journeys"].columns,
                   tables.TABLES["journeys"].row(journey().to_dict()), strict=True))
    # DateTime as epoch seconds (test_datetime_zones.py): 2026-11-22 17:10:09 UTC
    assert row["started_at"] == T // 1000
    assert datetime.fromtimestamp(row["started_at"], UTC) == datetime(2026, 11, 22, 17, 10, 9,
                                                                       tzinfo=UTC)
    assert row["started_at_ms"] == T
    assert row["peak_at_ms"] == T + 1000
    assert row["version"] == 4
    markers = journey(peak_valence=None, peak_at=None, end_at=None, end_valence=None)
    row = dict(zip(tables.TABLES["journeys"].columns,
                   tables.TABLES["journeys"].row(markers.to_dict()), strict=True))
    assert row["peak_at"] is None and row["peak_at_ms"] is None and row["end_valence"] is None


def test_every_record_field_has_a_column() -> None:
    samples = {
        "journeys": journey().to_dict(),
        "metric_buckets": MetricRecord("nps", "all", "all", T, T + 60_000, 0, 1, 100.0, 1.0,
                                       2.0, 1, 0, 0, 0.0, 0.0, 0, 0, 0, 1).to_dict(),
        "alerts": AlertRecord("a", "window_drop", "nps", "all", "all", "firing", "critical", T,
                              None, T, T, 1.0, 2.0, 100, 1000, 0.0, 3.0, -1.0, 0.001,
                              1).to_dict(),
        "dead_letters": DeadLetter.make("late", "x", original=b"{}", source_topic="t",
                                        source_partition=1, source_offset=2).to_dict(),
    }
    for table, record in samples.items():
        spec = tables.TABLES[table]
        cols = set(spec.columns)
        for name in record:
            assert name in cols, (table, name)
        assert len(spec.row(record)) == len(spec.columns)


def test_raw_event_row() -> None:
    event = TouchpointEvent(
        event_id="e1", occurred_at=datetime(2026, 11, 22, 18, 10, 9, 500000,
                                             tzinfo=datetime.fromisoformat("2026-01-01T00:00:00+01:00").tzinfo),
        producer="p", customer_id="c", type="survey", touchpoint="hotline", channel="phone",
        stage="after_sales", signals=Signals(wait_seconds=3600, transfers=4, resolved=False),
        survey=Survey(nps=2, comment="slow"), attributes={"tier": "gold", "region": "north"})
    cols, data = tables.rows("touchpoint_events", [event_to_dict(event)])
    row = dict(zip(cols, data[0], strict=True))
    assert row["occurred_at"] == 1_795_367_409  # 2026-11-22 17:10:09 UTC, from +01:00
    assert row["occurred_at_ms"] == 1_795_367_409_500
    assert row["journey_id"] is None and row["valence"] is None
    assert (row["wait_seconds"], row["transfers"], row["resolved"], row["error"]) == (
        3600.0, 4, 0, None)
    assert (row["nps"], row["ces"], row["comment"]) == (2, None, "slow")
    assert row["attribute_keys"] == ["region", "tier"]
    assert row["attribute_values"] == ["north", "gold"]


def test_errors_name_the_table_and_field() -> None:
    with pytest.raises(KeyError, match="journeys: record has no field 'status'"):
        tables.TABLES["journeys"].row({k: v for k, v in journey().to_dict().items()
                                       if k != "status"})
    with pytest.raises(ValueError, match="no UTC offset"):
        tables.TABLES["dead_letters"].row({**DeadLetter.make(
            "late", "x", original=b"", source_topic="t", source_partition=0,
            source_offset=0).to_dict(), "received_at": "2026-11-22T17:10:09"})
    with pytest.raises(KeyError, match="unknown table"):
        tables.rows("nope", [])


def test_ms_of_negative_and_offset_times() -> None:
    assert tables.to_ms("1969-12-31T23:59:59.999Z") == -1
    assert tables.to_ms("2026-11-22T18:10:09.123+01:00") == T
    assert datetime.fromtimestamp(T / 1000, UTC).replace(tzinfo=None, microsecond=0) == (
        tables.to_datetime("2026-11-22T17:10:09.123Z"))


def test_table_columns_match_the_migrations_in_order() -> None:
    final = {table: tuple(c for c, _ in columns) for table, columns in final_columns().items()}
    for name, spec in tables.TABLES.items():
        assert final[name] == spec.columns, name
    assert final["touchpoint_events"][-1] == "version"
