"""The output records against their field tables (`pipeline.core.records.JOURNEY_FIELDS`,
`METRIC_FIELDS`, `ALERT_FIELDS`), the one declaration of each record's fields: the record classes
must hold exactly those names, in that order, of those types. `JourneyRecord` writes its names
out four times (slots, constructor, attributes, `astuple`: mypyc needs them written); a name
missing, misspelt or out of order in any of them fails here, as does a type the table does not
declare. The storage side (rows, DDL, docs/records.md) is checked in
tests/unit/storage/test_record_fields.py."""

from __future__ import annotations

import pickle
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from record_values import RECORDS, distinct_values, records

from pipeline.core import records as records_module
from pipeline.core.records import (
    JOURNEY_FIELDS,
    METRIC_FIELDS,
    JourneyRecord,
    MetricRecord,
    RecordField,
    names_of,
    times_of,
)
from pipeline.core.windows import WINDOW_FIELDS, WindowRecord

COMPILED = not records_module.__file__.endswith(".py")
IDS = [cls.__name__ for cls, _ in RECORDS]

# What a field's declared type is in Python (times are epoch milliseconds)
PYTHON_TYPES: dict[str, Any] = {
    "str": str, "int": int, "float": float, "bool": bool, "time": int,
    "float?": float | None, "int?": int | None, "time?": int | None}
@pytest.mark.parametrize("cls,fields", RECORDS, ids=IDS)
def test_each_record_holds_the_fields_of_its_table_in_order(
        cls: type[Any], fields: tuple[RecordField, ...]) -> None:
    assert cls._fields == names_of(fields)
    values = distinct_values(fields)
    record = cls(**values)  # the constructor takes exactly these names
    assert [getattr(record, name) for name in values] == list(values.values())
    as_tuple = record.astuple() if cls is JourneyRecord else tuple(record)
    assert as_tuple == tuple(values.values())
    assert list(record.to_dict()) == list(values)
    assert pickle.loads(pickle.dumps(record)) == record
    if cls is JourneyRecord and not COMPILED:  # compiled, the attributes are the slots
        assert set(JourneyRecord.__slots__) == set(values)


@pytest.mark.parametrize("cls,fields", RECORDS, ids=IDS)
def test_the_time_fields_of_the_table_are_the_ones_given_as_text(
        cls: type[Any], fields: tuple[RecordField, ...]) -> None:
    data = cls(**distinct_values(fields)).to_dict()
    text = {name for name, value in data.items() if isinstance(value, str) and value.endswith("Z")}
    assert text == {f.name for f in fields if f.type.startswith("time")}


@pytest.mark.parametrize("cls,fields", RECORDS, ids=IDS)
def test_the_annotations_are_the_declared_types(
        cls: type[Any], fields: tuple[RecordField, ...]) -> None:
    """On the interpreted sources (compiled, the annotations are not kept as written; the compiled
    constructor checks each value's type itself, which the round trip below exercises)."""
    if COMPILED:
        pytest.skip("the compiled build keeps no annotations as written")
    hints = typing.get_type_hints(cls.__init__ if cls is JourneyRecord else cls)
    hints.pop("return", None)
    assert hints == {f.name: PYTHON_TYPES[f.type] for f in fields}


@pytest.mark.parametrize("cls,fields", RECORDS, ids=IDS)
@given(data=st.data())
def test_any_record_of_the_declared_types_round_trips_through_its_dict(
        cls: type[Any], fields: tuple[RecordField, ...], data: st.DataObject) -> None:
    record = data.draw(records(cls, fields))
    assert cls.from_dict(record.to_dict()) == record


def test_a_window_row_holds_the_fields_of_its_table_in_order() -> None:
    """`WindowRecord` (replay's windows, not stored) declares only the fields of its own and
    holds a `MetricRecord` for those it shares with one (`WINDOW_FIELDS` is put together from
    the same parts as `METRIC_FIELDS`): its row gives each field of the table, in order, from
    the right one of the two, times as text."""
    sums = MetricRecord(**distinct_values(METRIC_FIELDS))
    own: dict[str, Any] = {"window": "1h", "share_easy": 0.25, "share_hard": 0.75, "partials": 7}
    row = WindowRecord(sums=sums, **own).to_dict()
    assert list(row) == list(names_of(WINDOW_FIELDS))
    shared = sums.to_dict()
    assert set(row) == set(own) | set(shared) - {"source_partition", "version"}
    for name, value in row.items():
        assert value == (own[name] if name in own else shared[name]), name
    text = {name for name, value in row.items() if isinstance(value, str) and value.endswith("Z")}
    assert text == times_of(WINDOW_FIELDS)
    hints = typing.get_type_hints(WindowRecord)  # windows.py is never compiled
    assert hints.pop("sums") is MetricRecord
    assert hints == {f.name: PYTHON_TYPES[f.type] for f in WINDOW_FIELDS if f.name in own}


@pytest.mark.parametrize("cls,fields", [(JourneyRecord, JOURNEY_FIELDS),
                                        (MetricRecord, METRIC_FIELDS)], ids=["journey", "metric"])
@given(data=st.data())
def test_a_dict_written_out_is_the_generic_one(cls: type[Any], fields: tuple[RecordField, ...],
                                               data: st.DataObject) -> None:
    """JourneyRecord and MetricRecord list their fields by hand in `to_dict` (for speed): the
    same items, in the same order, as the dict every record builds from its declaration."""
    record = data.draw(records(cls, fields))
    values = record.astuple() if cls is JourneyRecord else tuple(record)
    generic = records_module._to_dict(cls._fields, values, times_of(fields))
    assert list(record.to_dict().items()) == list(generic.items())
