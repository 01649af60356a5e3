"""An event's dict and flat-row forms (`pipeline.core.eventdict`, the batch records' payload)
give the same event back, values and types, and `format_occurred_at` writes what
`isoformat` writes (with `Z` for UTC), for any time and offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.event import CHANNELS, EVENT_TYPES, STAGES, Signals, Survey, TouchpointEvent
from pipeline.core.eventdict import (
    ROW_FIELDS,
    event_from_dict,
    event_from_row,
    event_row,
    event_to_dict,
    format_occurred_at,
)

OFFSETS = st.one_of(
    st.just(UTC),
    st.builds(timezone, st.integers(-1439, 1439).map(lambda m: timedelta(minutes=m))),
    st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=59),
                                      max_value=timedelta(hours=23, minutes=59))),
)
MOMENTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=OFFSETS)
# An event's time as the parser makes it: an RFC 3339 offset is whole minutes. Whole seconds
# are taken too, and round-trip; an offset with microseconds does not (CPython 3.11's
# `datetime.fromisoformat` drops them: '+00:00:00.000001' reads as UTC), and no event can
# carry one.
EVENT_MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.one_of(st.just(UTC), st.builds(timezone, st.integers(-86_399, 86_399).map(
        lambda seconds: timedelta(seconds=seconds)))))


def reference(moment: datetime) -> str:
    """What format_occurred_at wrote before git f55e3a3."""
    text = moment.isoformat()
    if moment.utcoffset() == timedelta(0) and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


@settings(max_examples=2000, deadline=None)
@given(MOMENTS)
def test_format_occurred_at_writes_what_isoformat_writes(moment: datetime) -> None:
    assert format_occurred_at(moment) == reference(moment)
    assert format_occurred_at(moment) == reference(moment)  # again, from the memo of dates


def test_the_memo_of_dates_is_bounded_and_stays_exact() -> None:
    start = datetime(2000, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
    moments = [start + timedelta(days=d, microseconds=d) for d in range(0, 20_000, 3)]
    assert [format_occurred_at(m) for m in moments] == [reference(m) for m in moments]


NUMBERS = st.one_of(st.none(), st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False))
OPTIONAL_TEXT = st.one_of(st.none(), st.text(max_size=20))


@st.composite
def events(draw: st.DrawFn) -> TouchpointEvent:
    moment = draw(EVENT_MOMENTS)
    signals = draw(st.one_of(st.none(), st.builds(
        Signals, NUMBERS, NUMBERS, st.one_of(st.none(), st.integers(0, 2**31 - 1)),
        st.one_of(st.none(), st.booleans()), st.one_of(st.none(), st.booleans()))))
    survey = draw(st.one_of(st.none(), st.builds(
        Survey, st.one_of(st.none(), st.integers(0, 10)), st.one_of(st.none(), st.integers(1, 7)),
        st.sampled_from([None, 5, 7]), st.one_of(st.none(), st.integers(1, 5)), OPTIONAL_TEXT,
        st.sampled_from([None, "less_effort", "more_effort"]))))
    return TouchpointEvent(
        draw(st.text(min_size=1, max_size=20)), moment, draw(st.text(min_size=1, max_size=10)),
        draw(st.text(min_size=1, max_size=10)), draw(st.sampled_from(EVENT_TYPES)),
        draw(st.text(min_size=1, max_size=10)), draw(st.sampled_from(CHANNELS)),
        draw(st.sampled_from(STAGES)), draw(OPTIONAL_TEXT), 1,
        draw(st.one_of(st.none(), st.floats(-1, 1, allow_nan=False))), signals, survey,
        draw(OPTIONAL_TEXT),
        draw(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4)),
        draw(st.sampled_from([-1, 1795367409123])))


def exact(value: Any) -> Any:
    """`value` with types and offsets made visible (`==` calls 1 and 1.0 and True equal, and
    two datetimes at one instant in two offsets)."""
    if isinstance(value, datetime):
        return ("time", value.isoformat())
    if isinstance(value, dict):
        return ("dict", *[(k, exact(v)) for k, v in value.items()])
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, *[exact(getattr(value, f))
                                        for f in value.__dataclass_fields__])
    return (type(value).__name__, value)


@settings(max_examples=500, deadline=None)
@given(events(), st.lists(st.integers(), max_size=6))
def test_both_forms_give_the_event_back(event: TouchpointEvent, head: list[int]) -> None:
    row = event_row(event, head)
    assert row[:len(head)] == head and len(row) == len(head) + len(ROW_FIELDS)
    assert exact(event_from_row(row, len(head), event.occurred_ms)) == exact(event)
    assert exact(event_from_dict(event_to_dict(event), event.occurred_ms)) == exact(event)
    # the row holds the dict's values, field by field
    as_dict = event_to_dict(event)
    values = dict(zip(ROW_FIELDS, row[len(head):], strict=True))
    for name in ("event_id", "schema_version", "occurred_at", "producer", "customer_id",
                 "journey_id", "type", "touchpoint", "channel", "stage", "valence", "outcome"):
        assert exact(values[name]) == exact(as_dict.get(name)), name
    for part in ("signals", "survey"):
        assert values[part] == (part in as_dict)
        for name, value in as_dict.get(part, {}).items():
            assert exact(values[name]) == exact(value), name
    assert (values["attributes"] or {}) == as_dict.get("attributes", {})
