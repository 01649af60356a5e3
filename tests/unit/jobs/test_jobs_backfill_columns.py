"""Backfill's fast path (jobs/columns.py) gives what the slow path gives: same events, same rows."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from backfill_util import CORE, EVENTS, write_both

from jobs.columns import (
    EventBuilder,
    clean_rows,
    journey_row,
    touchpoint_columns,
    touchpoint_row,
)
from jobs.parquet_schema import BatchDicts, events_to_batch
from pipeline.contract import Rejected, event_to_dict, parse_dict
from pipeline.core.engine import ExperienceEngine
from pipeline.privacy import PersonalData
from pipeline.scoring_rules import load_scoring_rules
from pipeline.storage.tables import TABLES

SCORING_RULES = load_scoring_rules()

PERSONAL = [PersonalData(), PersonalData(key=b"k"), PersonalData(keep_comments=True)]


def _check_batch(batch: pa.RecordBatch, personal: PersonalData, max_bytes: int = 65536
                 ) -> int:
    """Every clean row builds the event the slow path builds; returns the clean count."""
    clean = clean_rows(batch, max_bytes)
    builder = EventBuilder(personal)
    build = builder.builder(builder.columns(batch))
    dicts = BatchDicts(batch)
    for i, ok in enumerate(clean):
        if ok:
            assert build(i) == personal.scrub(parse_dict(dicts.row(i))), dicts.row(i)
    return sum(clean)


@pytest.mark.parametrize("personal", PERSONAL)
def test_clean_rows_build_the_events_parse_dict_builds(tmp_path: Path,
                                                       personal: PersonalData) -> None:
    config = replace(EVENTS, events=3000, invalid_fraction=0.2)
    _, parquet, count = write_both(config, tmp_path)
    clean = 0
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=700):
        clean += _check_batch(batch, personal)
    assert 0.7 * count < clean < count  # invalid rows are never clean


BASE: dict[str, Any] = {
    "event_id": "e1", "schema_version": 1, "occurred_at": "2026-11-22T17:10:09.123Z",
    "producer": "p", "customer_id": "c", "type": "interaction", "touchpoint": "t",
    "channel": "web", "stage": "use"}
EDGES: list[dict[str, Any]] = [
    {}, {"valence": math.nan}, {"valence": 1.0}, {"valence": -1.0000001}, {"valence": -0.0},
    {"signals": {"wait_seconds": math.inf}}, {"signals": {"wait_seconds": -0.0}},
    {"signals": {"handle_seconds": -1e-9}}, {"signals": {"transfers": -1}},
    {"signals": {"resolved": False, "transfers": 0}},
    {"type": "survey", "survey": {"nps": 11}}, {"type": "survey", "survey": {"nps": 0}},
    {"type": "survey", "survey": {"ces": 6, "ces_scale": 5}},
    {"type": "survey", "survey": {"ces": 5, "ces_scale": 5}},
    {"type": "survey", "survey": {"ces": 3}}, {"type": "survey", "survey": {"ces_scale": 7}},
    {"type": "survey", "survey": {"ces": 2, "ces_scale": 5, "ces_higher_means": "more_effort"}},
    {"type": "survey", "survey": {"ces": 2, "ces_scale": 7, "ces_higher_means": "less_effort"}},
    {"type": "survey", "survey": {"nps": 3, "ces_higher_means": "more_effort"}},
    {"type": "survey", "survey": {"ces": 2, "ces_scale": 5, "ces_higher_means": "harder"}},
    {"type": "survey", "survey": {"csat": 0}}, {"survey": {"comment": "x" * 2001}},
    {"survey": {"comment": "é" * 2000}}, {"type": "survey", "survey": {"comment": "only"}},
    {"type": "outcome"}, {"type": "outcome", "outcome": "churn"}, {"outcome": "churn"},
    {"type": "outcome", "outcome": "fax"}, {"channel": "fax"}, {"stage": ""},
    {"event_id": ""}, {"event_id": "é" * 200}, {"event_id": "x" * 201}, {"producer": ""},
    {"journey_id": ""}, {"journey_id": "j"}, {"schema_version": 2},
    {"attributes": {}}, {"attributes": {"region": "eu", "tier": "gold"}},
    {"attributes": {"Region": "eu"}}, {"attributes": {"a" * 64: "x"}},
    {"attributes": {"a" * 65: "x"}}, {"attributes": {"r": "x" * 201}},
    {"attributes": {f"k{i}": "v" for i in range(33)}},
    {"occurred_at": "1969-12-31T23:59:59.999Z"}, {"occurred_at": "2199-01-01T00:00:00.001Z"},
    {"customer_id": "x" * 60000},
]


@pytest.mark.parametrize("personal", PERSONAL)
def test_edge_values_are_clean_only_when_valid(personal: PersonalData) -> None:
    rows = [{**BASE, **edge} for edge in EDGES]
    batch = events_to_batch(rows)
    clean = clean_rows(batch, 65536)
    for row, ok in zip(rows, clean, strict=True):
        if ok:
            parse_dict(row)  # never raises for a clean row
    assert _check_batch(batch, personal) >= 12
    # null map values cannot come from dicts; they are never clean either
    attrs = pa.array([[("region", None)]], type=pa.map_(pa.string(), pa.string()))
    one = events_to_batch([BASE])
    with_null = one.set_column(one.schema.get_field_index("attributes"), "attributes", attrs)
    assert clean_rows(with_null, 65536) == [False]
    with pytest.raises(Rejected):
        parse_dict(BatchDicts(with_null).row(0))


def test_rows_equal_the_table_mapping(tmp_path: Path) -> None:
    _, parquet, _ = write_both(replace(EVENTS, events=3000), tmp_path)
    personal = PersonalData(keep_comments=True)
    engine = ExperienceEngine(CORE, SCORING_RULES)
    spec = TABLES["touchpoint_events"]
    journeys = []
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=1000):
        for obj in BatchDicts(batch):
            try:
                event = personal.scrub(parse_dict(obj))
            except Rejected:
                continue
            assert touchpoint_row(event) == spec.row(event_to_dict(event))
            assert touchpoint_row(event) == spec.row(obj)
            journeys.extend(engine.process(event)[0].journeys)
    journeys.extend(engine.finish().journeys)
    assert len(journeys) > 1000
    for record in journeys:
        assert journey_row(record) == TABLES["journeys"].row(record.to_dict())


@pytest.mark.parametrize("personal", PERSONAL)
def test_touchpoint_columns_equal_the_rows_of_the_events(tmp_path: Path,
                                                        personal: PersonalData) -> None:
    _, parquet, _ = write_both(replace(EVENTS, events=2000, invalid_fraction=0.1), tmp_path)
    builder = EventBuilder(personal)
    checked = 0
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=500):
        applied, want = [], []
        for i, obj in enumerate(BatchDicts(batch)):
            try:
                event = personal.scrub(parse_dict(obj))
            except Rejected:
                continue
            if i % 7 != 3:  # leave some valid rows out too
                applied.append(i)
                want.append(touchpoint_row(event))
        columns = touchpoint_columns(batch, applied, builder)
        assert len(columns) == len(TABLES["touchpoint_events"].columns)
        assert list(zip(*columns, strict=True)) == want
        checked += len(want)
    assert checked > 1500


def test_a_file_written_before_ces_higher_means_still_reads(tmp_path: Path) -> None:
    """survey_ces_higher_means came after files were written in the layout: a file without
    the column passes `check_schema` and reads as all null; an unknown column still fails."""
    from jobs.parquet_schema import SCHEMA, check_schema, event_batches, read_event_dicts

    rows = [{**BASE, **edge} for edge in EDGES[10:16]]
    batch = events_to_batch(rows)
    old = batch.drop_columns(["survey_ces_higher_means"])
    path = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_batches([old]), path)
    check_schema(pq.ParquetFile(path).schema_arrow, str(path))
    batches = list(event_batches(pq.ParquetFile(path), 4))
    assert [b.schema for b in batches] == [SCHEMA, SCHEMA]
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches([batch]))
    assert list(read_event_dicts(path)) == list(BatchDicts(batch))
    renamed = batch.rename_columns([*batch.schema.names[:-1], "attrs"])
    with pytest.raises(ValueError, match="missing column attributes; unknown column"):
        check_schema(renamed.schema, "x")


def test_the_declared_ces_direction_survives_parquet_and_reaches_the_table_row() -> None:
    survey = {"ces": 2, "ces_scale": 5, "ces_higher_means": "more_effort"}
    row = {**BASE, "type": "survey", "survey": survey}
    batch = events_to_batch([row])
    assert BatchDicts(batch).row(0)["survey"] == survey
    assert clean_rows(batch, 65536) == [True]
    builder = EventBuilder(PersonalData())
    event = builder.builder(builder.columns(batch))(0)
    assert event.survey is not None and event.survey.ces_higher_means == "more_effort"
    table = TABLES["touchpoint_events"]
    assert touchpoint_row(event)[table.columns.index("ces_higher_means")] == (
        "more_effort")
