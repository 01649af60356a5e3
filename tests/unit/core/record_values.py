"""Values of output records as their field tables declare them (`pipeline.core.records`):
any record of the declared types (Hypothesis), and one with a distinct value in every field."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pipeline.core.followups import CASE_FIELDS, CaseRecord
from pipeline.core.records import (
    ALERT_FIELDS,
    JOURNEY_FIELDS,
    METRIC_FIELDS,
    AlertRecord,
    JourneyRecord,
    MetricRecord,
    RecordField,
)

# Each output record class of the core with its field table.
RECORDS: list[tuple[type[Any], tuple[RecordField, ...]]] = [
    (JourneyRecord, JOURNEY_FIELDS), (MetricRecord, METRIC_FIELDS), (AlertRecord, ALERT_FIELDS),
    (CaseRecord, CASE_FIELDS)]

MS = st.integers(-10**12, 4_102_444_800_000 - 1)  # as far as RFC 3339 text in years 1938-2099
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(max_size=8), "int": st.integers(0, 2**40),
    "float": st.floats(-1e6, 1e6, allow_nan=False), "time": MS, "bool": st.booleans()}


def value_of(field: RecordField) -> st.SearchStrategy[Any]:
    base = VALUES[field.type.rstrip("?")]
    return st.none() | base if field.type.endswith("?") else base


def records(cls: type[Any], fields: tuple[RecordField, ...]) -> st.SearchStrategy[Any]:
    """Records of `cls` with any values of the types the table declares."""
    return st.builds(cls, **{f.name: value_of(f) for f in fields})


def distinct_values(fields: tuple[RecordField, ...]) -> dict[str, Any]:
    """A value of the declared type per field, no two equal: a field read from another's place
    shows."""
    values: dict[str, Any] = {}
    for i, field in enumerate(fields):
        kind = field.type.rstrip("?")
        values[field.name] = (f"v{i}" if kind == "str" else float(i) + 0.5
                              if kind == "float" else True if kind == "bool" else 1_000 * i)
    return values
