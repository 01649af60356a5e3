"""Each core record's field table (`pipeline.core.records.JOURNEY_FIELDS`, `METRIC_FIELDS`,
`ALERT_FIELDS`) and the dead letters' (`pipeline.contract.dead_letters.DEAD_LETTER_FIELDS`) is the
one declaration of its fields; what cannot be derived from it is held to it here: the columns and
types the migrations create (schemas/clickhouse/), the field tables of docs/records.md, the
`DeadLetter` dataclass, and backfill's hand-made journey rows (`jobs.columns.journey_row`, a fast
twin of the table mapping). A field added, renamed, retyped or moved in one place only fails one of
these. The core's record classes themselves: tests/unit/core/test_core_record_fields.py."""

from __future__ import annotations

import dataclasses
import re
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from jobs.columns import journey_row
from pipeline.contract.dead_letters import DEAD_LETTER_FIELDS, PROTECTION_FIELDS, DeadLetter
from pipeline.core.records import JOURNEY_FIELDS, JourneyRecord, RecordField, names_of
from pipeline.core.windows import WINDOW_FIELDS
from pipeline.storage.tables import TABLES
from tests.unit.core.record_values import RECORDS, distinct_values, records
from tests.unit.storage.migrations import final_columns

ROOT = Path(__file__).resolve().parents[3]
# Where each record is stored and documented: its table, its section of docs/records.md (cases
# are documented in docs/followups.md, without types: tests/unit/core/test_core_followups.py)
STORED = {"JourneyRecord": ("journeys", "journeys"),
          "MetricRecord": ("metric_buckets", "metrics"),
          "AlertRecord": ("alerts", "alerts"),
          "CaseRecord": ("followups", ""),
          "DeadLetter": ("dead_letters", "dead letters")}
# The core's records and the dead letters (pipeline.contract), each with its field table
STORED_RECORDS: list[tuple[type[Any], tuple[RecordField, ...]]] = [
    *RECORDS, (DeadLetter, DEAD_LETTER_FIELDS)]
RECORD_TABLES = [(*STORED[cls.__name__], fields) for cls, fields in STORED_RECORDS]
IDS = [table for table, _, _ in RECORD_TABLES]
DOCUMENTED = [(table, section, fields) for table, section, fields in RECORD_TABLES if section]
RECORD_CLASSES: dict[str, type[Any]] = {STORED[cls.__name__][0]: cls for cls, _ in STORED_RECORDS}
# A dead letter holds its time as a datetime (a core record's are epoch ms)
LETTER_TYPES: dict[str, Any] = {"str": str, "int": int, "time": datetime}


def record_of(cls: type[Any], fields: tuple[RecordField, ...]) -> Any:
    """A record of `cls` with a distinct value of the declared type in every field."""
    values = distinct_values(fields)
    if cls is DeadLetter:
        values.update({f.name: datetime.fromtimestamp(values[f.name] / 1000, UTC)
                       for f in fields if f.type == "time"})
    return cls(**values)

# The column type (a regular expression) each declared type takes in ClickHouse; a time field
# is two columns, DateTime and epoch milliseconds.
COLUMN_TYPES = {"str": r"String", "int": r"U?Int(8|16|32|64)", "float": r"Float64",
                "bool": r"UInt8", "float?": r"Nullable\(Float64\)",
                "int?": r"Nullable\(U?Int(8|16|32|64)\)"}
TIME_COLUMNS = {"time": (r"DateTime", r"Int64"),
                "time?": (r"Nullable\(DateTime\)", r"Nullable\(Int64\)")}


def expected_columns(fields: tuple[RecordField, ...]) -> list[tuple[str, str]]:
    columns: list[tuple[str, str]] = []
    for field in fields:
        if field.type in TIME_COLUMNS:
            moment, ms = TIME_COLUMNS[field.type]
            columns += [(field.name, moment), (f"{field.name}_ms", ms)]
        else:
            columns.append((field.name, COLUMN_TYPES[field.type]))
    return columns


@pytest.mark.parametrize("table,section,fields", RECORD_TABLES, ids=IDS)
def test_the_migrations_create_the_declared_columns_and_types(
        table: str, section: str, fields: tuple[RecordField, ...]) -> None:
    created = final_columns()[table]
    declared = dict(expected_columns(fields))
    # the order: the table mapping's, the field table's but for columns a migration appended
    assert [name for name, _ in created] == list(TABLES[table].columns)
    assert sorted(name for name, _ in created) == sorted(declared)
    for name, kind in created:
        assert re.fullmatch(declared[name], kind), f"{table}.{name} is {kind}, declared " \
            f"{declared[name]}"


def test_only_the_followups_table_stores_fields_out_of_record_order() -> None:
    for table, _, fields in RECORD_TABLES:
        in_record_order = tuple(name for name, _ in expected_columns(fields))
        if table == "followups":  # recovery_nps, appended by migration 011
            assert TABLES[table].columns == (
                *[c for c in in_record_order if c != "recovery_nps"], "recovery_nps")
        else:
            assert TABLES[table].columns == in_record_order, table


def documented_rows(section: str) -> list[tuple[list[str], list[str]]]:
    """The rows of a record's table in docs/records.md as (fields, types): a row may name
    several fields (`started_at / ended_at`, `peak_valence, peak_touchpoint`) with one type for
    all or one each."""
    text = (ROOT / "docs" / "records.md").read_text()
    body = text.split(f"\n## {section} (", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| ")][1:]  # no header
    out: list[tuple[list[str], list[str]]] = []
    for row in rows:
        names_cell, types_cell, _ = row.strip().strip("|").split("|", 2)
        out.append((re.split(r"\s*[,/]\s*", names_cell.strip()),
                    re.split(r"\s*[,/]\s*", types_cell.strip())))
    return out


def documented(section: str) -> list[tuple[str, str]]:
    """(field, type) of each field documented in a section."""
    out: list[tuple[str, str]] = []
    for names, types in documented_rows(section):
        if len(types) == 1:
            types *= len(names)
        assert len(types) == len(names), (names, types)
        out += zip(names, types, strict=True)
    return out


@pytest.mark.parametrize("table,section,fields", DOCUMENTED,
                         ids=[table for table, _, _ in DOCUMENTED])
def test_docs_records_md_lists_the_declared_fields_and_types(
        table: str, section: str, fields: tuple[RecordField, ...]) -> None:
    assert documented(section) == [(f.name, f.type) for f in fields]


@settings(max_examples=200)
@given(record=records(JourneyRecord, JOURNEY_FIELDS))
def test_backfills_journey_row_is_the_table_mapping_of_any_record(record: JourneyRecord
                                                                   ) -> None:
    assert journey_row(record) == TABLES["journeys"].row(record.to_dict())


@pytest.mark.parametrize("table,section,fields", RECORD_TABLES, ids=IDS)
def test_a_field_missing_from_a_record_dict_is_stored_as_its_declaration_says(
        table: str, section: str, fields: tuple[RecordField, ...]) -> None:
    """A record dict may lack a nullable field (null) or an `or_empty` text (its `empty`, ''
    unless declared: an alert written before migration 004 has no message, a dead letter
    written before migration 007 no original_form, `raw`); any other field missing is an
    error."""
    spec = TABLES[table]
    full = record_of(RECORD_CLASSES[table], fields).to_dict()
    for field in fields:
        partial = {name: value for name, value in full.items() if name != field.name}
        if field.or_empty or field.type.endswith("?"):
            row = dict(zip(spec.columns, spec.row(partial), strict=True))
            assert row[field.name] == (field.empty if field.or_empty else None), field.name
        else:
            with pytest.raises(KeyError, match=field.name):
                spec.row(partial)


def test_every_declared_type_has_a_column_type() -> None:
    declared = {f.type for _, _, fields in RECORD_TABLES for f in fields}
    assert declared <= set(COLUMN_TYPES) | set(TIME_COLUMNS)


def test_docs_records_md_lists_the_window_rows_fields_and_types() -> None:
    """Replay's windows (`pipeline.core.windows.WINDOW_FIELDS`, not stored)."""
    assert documented("windows") == [(f.name, f.type) for f in WINDOW_FIELDS]


def test_the_dead_letter_holds_the_fields_of_its_table_in_order() -> None:
    """`DeadLetter` is a dataclass written out by hand: its fields, their order and types, the
    defaults of the fields letters written before migration 007 lack, and its dict."""
    declared = names_of(DEAD_LETTER_FIELDS)
    fields = dataclasses.fields(DeadLetter)
    assert tuple(f.name for f in fields) == declared
    assert typing.get_type_hints(DeadLetter) == {
        f.name: LETTER_TYPES[f.type] for f in DEAD_LETTER_FIELDS}
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    assert defaults == {f.name: f.empty for f in DEAD_LETTER_FIELDS if f.name in PROTECTION_FIELDS}
    # distinct values, but for the two that from_dict checks further
    letter = dataclasses.replace(record_of(DeadLetter, DEAD_LETTER_FIELDS), original_b64="AAAA",
                                 original_form="encrypted")
    data = letter.to_dict()
    assert tuple(data) == declared
    text = {name for name, value in data.items() if isinstance(value, str) and value.endswith("Z")}
    assert text == {f.name for f in DEAD_LETTER_FIELDS if f.type == "time"}
    assert DeadLetter.from_dict(data) == letter
