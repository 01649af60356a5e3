"""Records -> ClickHouse rows: one mapping shared by the streaming sink and the batch backfill.

Every table stores exactly the fields of its record (docs/records.md; docs/design.md schema v1
for the raw events), in the record's field order, with these conversions (for the core's
records and the dead letters derived from their field tables, `pipeline.core.records.JOURNEY_FIELDS`
and its peers, `pipeline.contract.dead_letters.DEAD_LETTER_FIELDS`):

- RFC 3339 times become `DateTime` values: `datetime` in UTC without tzinfo, truncated to the
  second (what ClickHouse `DateTime` holds). Each time field also gets an `<field>_ms` `Int64`
  column right after it (epoch milliseconds), so sub-second order is never lost.
- `None` stays `None` for `Nullable(...)` columns; booleans become 0/1 (`UInt8`).
- The raw event's `attributes` map becomes two parallel arrays `attribute_keys` /
  `attribute_values` (18.16 has no `Map`): `attribute_values[indexOf(attribute_keys, 'region')]`.

- The raw event's table gets one column its record has not: `version`, from the event's content
  digest (`digest_version`), so that of two copies of one `event_id` with different content
  ReplacingMergeTree keeps the one the core keeps, whatever the order they arrive in.

The column types live in the migrations (schemas/clickhouse/); tests check that both agree.

>>> cols, data = rows("alerts", [])
>>> (cols[:3], data)
(('alert_id', 'rule', 'metric'), [])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.contract.dead_letters import DEAD_LETTER_FIELDS
from pipeline.contract.parser import parse_dict
from pipeline.contract.rejected import Rejected
from pipeline.core.event import content_digest
from pipeline.core.followups import CASE_FIELDS
from pipeline.core.records import ALERT_FIELDS, JOURNEY_FIELDS, METRIC_FIELDS, RecordField

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

Getter = Callable[[Mapping[str, Any]], Any]


def parse_time(text: str) -> datetime:
    """RFC 3339 text (any offset, `Z`) -> aware UTC datetime.

    >>> parse_time("2026-11-22T18:10:09.123+01:00")
    datetime.datetime(2026, 11, 22, 17, 10, 9, 123000, tzinfo=datetime.timezone.utc)
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 string, got {text!r}")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


def to_datetime(text: str | None) -> datetime | None:
    """RFC 3339 -> naive UTC datetime truncated to the second (a ClickHouse `DateTime`).

    >>> to_datetime("2026-11-22T17:10:09.999Z")
    datetime.datetime(2026, 11, 22, 17, 10, 9)
    >>> to_datetime(None) is None
    True
    """
    if text is None or text == "":
        return None
    return parse_time(text).replace(tzinfo=None, microsecond=0)


def to_ms(text: str | None) -> int | None:
    """RFC 3339 -> epoch milliseconds (floor), the records' own precision.

    >>> to_ms("2026-11-22T17:10:09.123Z")
    1795367409123
    >>> to_ms("1969-12-31T23:59:59.999Z")
    -1
    """
    if text is None or text == "":
        return None
    return (parse_time(text) - _EPOCH) // _MS


def _field(name: str) -> Getter:
    return lambda record: record[name]


def _opt(name: str) -> Getter:
    return lambda record: record.get(name)


def _text(name: str, empty: str = "") -> Getter:
    """Required string, or optional one stored as `empty` when missing, null or '' (journey_id,
    outcome of a raw event...; a dead letter's original_form, `raw`)."""

    def get(record: Mapping[str, Any]) -> Any:
        value = record.get(name)
        return empty if value is None or value == "" else value

    return get


def _bit(name: str) -> Getter:
    """Required boolean as 0/1 (`UInt8`)."""
    return lambda record: int(bool(record[name]))


def _time(name: str) -> Getter:
    return lambda record: to_datetime(record[name])


def _time_ms(name: str) -> Getter:
    return lambda record: to_ms(record[name])


def _opt_time(name: str) -> Getter:
    return lambda record: to_datetime(record.get(name))


def _opt_time_ms(name: str) -> Getter:
    return lambda record: to_ms(record.get(name))


def _float(name: str) -> Getter:
    return lambda record: float(record[name])


def _opt_float(name: str) -> Getter:
    def get(record: Mapping[str, Any]) -> Any:
        value = record.get(name)
        return None if value is None else float(value)

    return get


def _nested(outer: str, name: str, kind: str = "") -> Getter:
    def get(record: Mapping[str, Any]) -> Any:
        inner = record.get(outer) or {}
        value = inner.get(name)
        if value is None:
            return None
        if kind == "bool":
            return 1 if value else 0
        if kind == "float":
            return float(value)
        return value

    return get


DIGESTS = 1 << 32  # content_digest is a crc32


def digest_version(digest: int) -> int:
    """touchpoint_events.version of an event with this content digest: ReplacingMergeTree keeps
    the highest version, the core keeps the copy with the smallest digest (docs/contract.md,
    `conflict`). From 1 (digest 2^32 - 1) to 2^32 (digest 0); 0 is left for rows stored before
    the table had versions (migration 003), which any later copy replaces.

    >>> digest_version(0), digest_version(DIGESTS - 1)
    (4294967296, 1)
    """
    if not 0 <= digest < DIGESTS:
        raise ValueError(f"{digest} is not a content digest (crc32)")
    return DIGESTS - digest


# Set by whoever already holds the event's digest (the entry stage's batch records): the row
# then takes it as is instead of rebuilding the event to digest it again.
DIGEST_KEY = "_content_digest"


def _event_version(record: Mapping[str, Any]) -> int:
    """The version of a raw event in its `event_to_dict` form: its `DIGEST_KEY` when set, else
    the digest of the event `parse_dict` gives back, which equals the event the core digested
    (encode.event_to_dict)."""
    known = record.get(DIGEST_KEY)
    if known is not None:
        return digest_version(int(known))
    record = {k: v for k, v in record.items() if k != DIGEST_KEY}
    try:
        event = parse_dict(dict(record))
    except Rejected as exc:
        raise ValueError(f"not a valid event: {exc}") from None
    return digest_version(content_digest(event))


def _attr_keys(record: Mapping[str, Any]) -> list[str]:
    return sorted((record.get("attributes") or {}).keys())


def _attr_values(record: Mapping[str, Any]) -> list[str]:
    attrs = record.get("attributes") or {}
    return [attrs[k] for k in sorted(attrs)]


@dataclass(frozen=True)
class TableSpec:
    """One table: its insert column order and how each column is read from a record dict."""

    name: str
    columns: tuple[str, ...]
    getters: tuple[Getter, ...] = ()
    key: tuple[str, ...] = ()  # the upsert key (ORDER BY of the ReplacingMergeTree)

    def row(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row for one record in its `to_dict()` form; KeyError names a missing field."""
        try:
            return tuple(get(record) for get in self.getters)
        except KeyError as exc:
            raise KeyError(f"{self.name}: record has no field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None


def _spec(name: str, key: tuple[str, ...], pairs: list[tuple[str, Getter]]) -> TableSpec:
    return TableSpec(
        name=name,
        columns=tuple(c for c, _ in pairs),
        getters=tuple(g for _, g in pairs),
        key=key,
    )


def _times(name: str, optional: bool = False) -> list[tuple[str, Getter]]:
    if optional:
        return [(name, _opt_time(name)), (f"{name}_ms", _opt_time_ms(name))]
    return [(name, _time(name)), (f"{name}_ms", _time_ms(name))]


def _record_columns(fields: tuple[RecordField, ...]) -> list[tuple[str, Getter]]:
    """A core record's columns, in its field order, each read as its declared type says (the
    conversions of the module docstring): the record's field table is the one declaration."""
    pairs: list[tuple[str, Getter]] = []
    for field in fields:
        name = field.name
        if field.type in ("time", "time?"):
            pairs += _times(name, optional=field.type == "time?")
        elif field.type == "float":
            pairs.append((name, _float(name)))
        elif field.type == "float?":
            pairs.append((name, _opt_float(name)))
        elif field.type == "int?":
            pairs.append((name, _opt(name)))
        elif field.type == "bool":
            pairs.append((name, _bit(name)))
        elif field.or_empty:
            pairs.append((name, _text(name, field.empty)))
        elif field.type in ("str", "int"):
            pairs.append((name, _field(name)))
        else:
            raise ValueError(f"{name}: no column for a field of type {field.type!r}")
    return pairs


JOURNEYS = _spec("journeys", ("journey_id",), _record_columns(JOURNEY_FIELDS))
METRIC_BUCKETS = _spec(
    "metric_buckets",
    ("metric", "segment_dim", "segment_value", "window_start", "source_partition"),
    _record_columns(METRIC_FIELDS),
)
# Migration 004 (issue 16) appended threshold and message; records written before it have
# neither: NULL and ''.
ALERTS = _spec("alerts", ("alert_id",), _record_columns(ALERT_FIELDS))

DEAD_LETTERS = _spec("dead_letters", ("source_topic", "source_partition", "source_offset"),
                     _record_columns(DEAD_LETTER_FIELDS))

# Raw validated events in their schema-v1 dict form (pipeline.contract.encode.event_to_dict).
TOUCHPOINT_EVENTS = _spec("touchpoint_events", ("event_id",), [
    ("event_id", _field("event_id")),
    ("schema_version", _field("schema_version")),
    *_times("occurred_at"),
    ("producer", _field("producer")),
    ("customer_id", _field("customer_id")),
    ("journey_id", _opt("journey_id")),
    ("type", _field("type")),
    ("touchpoint", _field("touchpoint")),
    ("channel", _field("channel")),
    ("stage", _field("stage")),
    ("valence", _opt_float("valence")),
    ("wait_seconds", _nested("signals", "wait_seconds", "float")),
    ("handle_seconds", _nested("signals", "handle_seconds", "float")),
    ("transfers", _nested("signals", "transfers")),
    ("resolved", _nested("signals", "resolved", "bool")),
    ("error", _nested("signals", "error", "bool")),
    ("nps", _nested("survey", "nps")),
    ("ces", _nested("survey", "ces")),
    ("ces_scale", _nested("survey", "ces_scale")),
    ("ces_higher_means", _nested("survey", "ces_higher_means")),
    ("csat", _nested("survey", "csat")),
    ("comment", _nested("survey", "comment")),
    ("outcome", _opt("outcome")),
    ("attribute_keys", _attr_keys),
    ("attribute_values", _attr_values),
    ("version", _event_version),
])

# Follow-up cases (pipeline.core.followups.CaseRecord, migrations 005 and 011). Migration 011
# appended recovery_nps to the table (ALTER TABLE ADD COLUMN puts it last); the record keeps it
# beside the other recovery fields.
FOLLOWUPS = _spec("followups", ("case_id",), _record_columns((
    *[f for f in CASE_FIELDS if f.name != "recovery_nps"],
    *[f for f in CASE_FIELDS if f.name == "recovery_nps"])))

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (JOURNEYS, METRIC_BUCKETS, ALERTS, DEAD_LETTERS, TOUCHPOINT_EVENTS)
}
TABLES[FOLLOWUPS.name] = FOLLOWUPS


def rows(
    table: str, records: Iterable[Mapping[str, Any]]
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Columns and rows for `Warehouse.insert(table, columns, rows)`.

    >>> cols, data = rows("dead_letters", [{
    ...     "reason": "not_json", "error": "bad", "source_topic": "cx.touchpoints",
    ...     "source_partition": 3, "source_offset": 17, "received_at": "2026-11-22T17:10:09.123Z",
    ...     "event_id": "", "original_b64": "e30="}])
    >>> dict(zip(cols, data[0]))["received_at_ms"]
    1795367409123
    """
    try:
        spec = TABLES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}") from None
    return spec.columns, [spec.row(r) for r in records]
