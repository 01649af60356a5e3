"""Records -> ClickHouse rows: one mapping shared by the streaming sink and the batch backfill.

Every table stores exactly the fields of its record (docs/records.md; docs/design.md schema v1
for the raw events), in the record's field order, with these conversions (for the core's
records and the dead letters derived from their field tables, `pipeline.core.records.JOURNEY_FIELDS`
and its peers, `pipeline.contract.dead_letters.DEAD_LETTER_FIELDS`):

- RFC 3339 times become `DateTime` values as epoch seconds (floor: what ClickHouse `DateTime`
  holds), not `datetime` objects: clickhouse-driver sends an int as it is, while it reads a
  naive `datetime` in the client's local zone whenever the server's zone is the same one (a
  sink and a server both in Europe/Berlin stored every time an hour off), and converting one
  cost 0.25-1.3 us a value. Each time field also gets an `<field>_ms` `Int64` column right
  after it (epoch milliseconds), so sub-second order is never lost. Read back, a `DateTime`
  is a naive UTC `datetime` (`to_datetime` gives that form, for comparisons).
- `None` stays `None` for `Nullable(...)` columns; booleans become 0/1 (`UInt8`).
- The raw event's `attributes` map becomes two parallel arrays `attribute_keys` /
  `attribute_values` (18.16 has no `Map`): `attribute_values[indexOf(attribute_keys, 'region')]`.

- The raw event's table gets one column its record has not: `version`, from the event's content
  digest (`digest_version`), so that of two copies of one `event_id` with different content
  ReplacingMergeTree keeps the one the core keeps, whatever the order they arrive in.

The column types live in the migrations (schemas/clickhouse/); tests check that both agree.

Two ways to the same values: `rows` (one `TableSpec.row` per record, the readable reference,
used by the backfill and the tests) and `columnar` (whole columns per batch, the sink's path:
docs/streaming.md, "the ClickHouse sink's CPU"); tests/unit/storage/test_columnar.py holds them
equal.

>>> cols, data = rows("alerts", [])
>>> (cols[:3], data)
(('alert_id', 'rule', 'metric'), [])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.contract.dead_letters import DEAD_LETTER_FIELDS
from pipeline.contract.parser import parse_dict
from pipeline.contract.rejected import Rejected
from pipeline.core.event import DIGEST_2_OFFSET, content_digest, digest_definition
from pipeline.core.eventdict import ROW_FIELDS
from pipeline.core.followups import CASE_FIELDS
from pipeline.core.records import ALERT_FIELDS, JOURNEY_FIELDS, METRIC_FIELDS, RecordField

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

Getter = Callable[[Mapping[str, Any]], Any]
Records = Sequence[Mapping[str, Any]]
# records -> one or more whole columns (a time field gives its DateTime and its _ms column)
Builder = Callable[[Records], tuple[list[Any], ...]]


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
    """RFC 3339 -> naive UTC datetime truncated to the second: a ClickHouse `DateTime` as the
    driver reads it back (what is written is `to_seconds`).

    >>> to_datetime("2026-11-22T17:10:09.999Z")
    datetime.datetime(2026, 11, 22, 17, 10, 9)
    >>> to_datetime(None) is None
    True
    """
    if text is None or text == "":
        return None
    return parse_time(text).replace(tzinfo=None, microsecond=0)


def to_seconds(text: str | None) -> int | None:
    """RFC 3339 -> the `DateTime` value written: epoch seconds (floor), whatever the offset.

    >>> to_seconds("2026-11-22T18:10:09.999+01:00"), to_seconds(None)
    (1795367409, None)
    """
    ms = to_ms(text)
    return None if ms is None else ms // 1000


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


# -- the sink's column path -------------------------------------------------------------------
#
# The sink builds each batch as whole columns (`columnar`): one list comprehension per column
# over the batch's records instead of one call of a per-field closure per value (`TableSpec.row`,
# kept as the readable reference: tests require both to give the same values, and the backfill
# and the tests use it). A py-spy profile of the sink had the generic per-row path at 27% of
# its CPU. The two paths read each record with the same expressions, so they raise the same
# errors for a bad record (the sink dead-letters a record whose row it cannot build).

# text -> (DateTime value, epoch ms): a memo of a pure function (filled on a miss, emptied when
# full), so what it holds never changes a result. Records repeat times a lot (a journey's
# started_at in each of its updates, a metric window's bounds in every segment's record).
# 8,192 entries are about 2 MB (65,536 were 15 MB with their texts, for the sink's ~100 MB).
_TIMES: dict[str, tuple[int | None, int | None]] = {}
_TIMES_MAX = 1 << 13


def _parse_pair(text: Any) -> tuple[int | None, int | None]:
    """(`to_seconds(text)`, `to_ms(text)`), parsing once; raises exactly what `to_ms` raises."""
    if text is None or text == "":
        return None, None
    # The same values as `to_seconds` and `to_ms`, without a timedelta division.
    span = parse_time(text) - _EPOCH  # normalised: 0 <= seconds < 86,400, 0 <= us < 10^6
    seconds = span.days * 86_400 + span.seconds
    return seconds, seconds * 1000 + span.microseconds // 1000


def _time_pair(text: Any) -> tuple[int | None, int | None]:
    """`_parse_pair`, remembered."""
    pair = _parse_pair(text)
    if pair[0] is None:
        return pair
    if len(_TIMES) >= _TIMES_MAX:
        _TIMES.clear()
    _TIMES[text] = pair  # parse_time accepted it: a str
    return pair


def time_columns(texts: list[Any], memo: bool = True
                 ) -> tuple[list[int | None], list[int | None]]:
    """The DateTime and epoch-ms columns of these RFC 3339 texts (None or '' gives None);
    `memo=False` for times that rarely repeat (they would only push out the ones that do).

    >>> time_columns(["2026-11-22T17:10:09.123Z", None])
    ([1795367409, None], [1795367409123, None])
    """
    if not memo:
        pairs = [_parse_pair(t) for t in texts]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    known = _TIMES
    # `type(t) is str` first: a list or dict in a bad record is not hashable, and must reach
    # parse_time's own error as in the row path.
    pairs = [(known.get(t) if type(t) is str else None) or _time_pair(t) for t in texts]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _build_field(name: str) -> Builder:
    return lambda records: ([r[name] for r in records],)


def _build_opt(name: str) -> Builder:
    return lambda records: ([r.get(name) for r in records],)


def _build_text(name: str, empty: str = "") -> Builder:
    def build(records: Records) -> tuple[list[Any], ...]:
        values = [r.get(name) for r in records]
        return ([empty if v is None or v == "" else v for v in values],)

    return build


def _build_bit(name: str) -> Builder:
    return lambda records: ([int(bool(r[name])) for r in records],)


def _build_float(name: str) -> Builder:
    return lambda records: ([float(r[name]) for r in records],)


def _build_opt_float(name: str) -> Builder:
    def build(records: Records) -> tuple[list[Any], ...]:
        values = [r.get(name) for r in records]
        return ([None if v is None else float(v) for v in values],)

    return build


def _build_times(name: str, optional: bool, memo: bool) -> Builder:
    def build(records: Records) -> tuple[list[Any], ...]:
        texts = [r.get(name) for r in records] if optional else [r[name] for r in records]
        return time_columns(texts, memo)

    return build


_NO_MAP: dict[str, Any] = {}  # read only: what a missing nested map reads as


def _build_nested(outer: str, fields: tuple[tuple[str, str], ...]) -> Builder:
    """The columns of the `(name, kind)` fields of the nested map `outer`, which each record's
    map is looked up once for (the row path looks it up once per field)."""

    def build(records: Records) -> tuple[list[Any], ...]:
        inners = [r.get(outer) or _NO_MAP for r in records]
        columns: list[list[Any]] = []
        for name, kind in fields:
            values = [inner.get(name) for inner in inners]
            if kind == "bool":
                values = [None if v is None else 1 if v else 0 for v in values]
            elif kind == "float":
                values = [None if v is None else float(v) for v in values]
            columns.append(values)
        return tuple(columns)

    return build


def _build_attributes(records: Records) -> tuple[list[Any], ...]:
    """attribute_keys and attribute_values, sorting each map once (the row path sorts twice)."""
    keys_column: list[list[str]] = []
    values_column: list[list[Any]] = []
    for record in records:
        attrs = record.get("attributes") or {}
        keys = sorted(attrs.keys())
        keys_column.append(keys)
        values_column.append([attrs[k] for k in keys])
    return keys_column, values_column


def _build_version(records: Records) -> tuple[list[Any], ...]:
    return ([_event_version(r) for r in records],)


# -- the row path (per record) ----------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """The column(s) of one record field: how one record gives their values (`getters`, the row
    path) and how a list of records gives them whole (`build`, the column path)."""

    columns: tuple[str, ...]
    getters: tuple[Getter, ...]
    build: Builder


def _field(name: str) -> Part:
    return Part((name,), (lambda record: record[name],), _build_field(name))


def _opt(name: str) -> Part:
    return Part((name,), (lambda record: record.get(name),), _build_opt(name))


def _text(name: str, empty: str = "") -> Part:
    """Required string, or optional one stored as `empty` when missing, null or '' (journey_id,
    outcome of a raw event...; a dead letter's original_form, `raw`)."""

    def get(record: Mapping[str, Any]) -> Any:
        value = record.get(name)
        return empty if value is None or value == "" else value

    return Part((name,), (get,), _build_text(name, empty))


def _bit(name: str) -> Part:
    """Required boolean as 0/1 (`UInt8`)."""
    return Part((name,), (lambda record: int(bool(record[name])),), _build_bit(name))


def _times(name: str, optional: bool = False, memo: bool = True) -> Part:
    """A time field's DateTime column and its `<name>_ms` column (`memo`: see time_columns)."""
    if optional:
        getters: tuple[Getter, ...] = (lambda record: to_seconds(record.get(name)),
                                       lambda record: to_ms(record.get(name)))
    else:
        getters = (lambda record: to_seconds(record[name]), lambda record: to_ms(record[name]))
    return Part((name, f"{name}_ms"), getters, _build_times(name, optional, memo))


def _float(name: str) -> Part:
    return Part((name,), (lambda record: float(record[name]),), _build_float(name))


def _opt_float(name: str) -> Part:
    def get(record: Mapping[str, Any]) -> Any:
        value = record.get(name)
        return None if value is None else float(value)

    return Part((name,), (get,), _build_opt_float(name))


def _nested_getter(outer: str, name: str, kind: str = "") -> Getter:
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


def _nested(outer: str, *fields: tuple[str, str]) -> Part:
    """Columns from the nested map `outer` (signals, survey): `(name, kind)`, kind "" keeps the
    value, "bool" gives 0/1, "float" a float; a missing map or value gives None."""
    return Part(tuple(name for name, _ in fields),
                tuple(_nested_getter(outer, name, kind) for name, kind in fields),
                _build_nested(outer, fields))


DIGESTS = 1 << 32  # each definition of content_digest is a crc32, placed in its own range


def digest_version(digest: int) -> int:
    """touchpoint_events.version of an event with this content digest: ReplacingMergeTree keeps
    the highest version, the core keeps the copy with the smallest digest (docs/contract.md,
    `conflict`). Version 1 digests (0 .. 2^32 - 1) give 2^32 .. 1, version 2 digests (-2 ..
    -2^32 - 1) give 2^32 + 2 .. 2^33 + 1: above every row stored under version 1, as their
    digests are below (`pipeline.core.event.CONTENT_DIGEST_VERSION`). 0 is left for rows stored
    before the table had versions (migration 003), which any later copy replaces.

    >>> digest_version(0), digest_version(DIGESTS - 1), digest_version(-2)
    (4294967296, 1, 4294967298)
    """
    if digest_definition(digest) == 0 or not -DIGEST_2_OFFSET <= digest < DIGESTS:
        raise ValueError(f"{digest} is not a content digest")
    return DIGESTS - digest


# Set by whoever already holds the event's digest (the entry stage's batch records): the row
# then takes it as is instead of rebuilding the event to digest it again.
DIGEST_KEY = "_content_digest"
# The event's occurred_at in epoch ms as the parser computed it (batch records carry it beside
# the event's dict: pipeline/stream/batches.py), so the sink need not parse the text again
# (0.35 us a row: `bench/bench_entry_codec.py`, docs/streaming.md "twelfth round"); the same
# value as `to_ms(occurred_at)`: the text is the parser's datetime written by `isoformat`.
OCCURRED_MS_KEY = "_occurred_ms"


def _occurred_pair(record: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(seconds, ms) of a touchpoint row's occurred_at: from OCCURRED_MS_KEY when set."""
    ms = record.get(OCCURRED_MS_KEY)
    if ms is None:
        return _parse_pair(record["occurred_at"])
    ms = int(ms)
    return ms // 1000, ms


def _occurred() -> Part:
    """touchpoint_events' occurred_at and occurred_at_ms columns (see OCCURRED_MS_KEY)."""
    def build(records: Records) -> tuple[list[Any], ...]:
        pairs = [_occurred_pair(r) for r in records]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    return Part(("occurred_at", "occurred_at_ms"),
                (lambda record: _occurred_pair(record)[0],
                 lambda record: _occurred_pair(record)[1]), build)


def _event_version(record: Mapping[str, Any]) -> int:
    """The version of a raw event in its `event_to_dict` form: its `DIGEST_KEY` when set, else
    the digest of the event `parse_dict` gives back, which equals the event the core digested
    (encode.event_to_dict)."""
    known = record.get(DIGEST_KEY)
    if known is not None:
        return digest_version(int(known))
    record = {k: v for k, v in record.items() if k != DIGEST_KEY and k != OCCURRED_MS_KEY}
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
    builders: tuple[Builder, ...] = field(default=(), compare=False)

    def row(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row for one record in its `to_dict()` form; KeyError names a missing field."""
        try:
            return tuple(get(record) for get in self.getters)
        except KeyError as exc:
            raise KeyError(f"{self.name}: record has no field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def column_values(self, records: Records) -> list[list[Any]]:
        """The columns (one list per column, in `columns` order) of these records: the values
        `row` gives, transposed, and for a single record the same error (a record's columns are
        read in the same order)."""
        try:
            return [column for build in self.builders for column in build(records)]
        except KeyError as exc:
            raise KeyError(f"{self.name}: record has no field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None


def _spec(name: str, key: tuple[str, ...], parts: list[Part]) -> TableSpec:
    return TableSpec(
        name=name,
        columns=tuple(c for part in parts for c in part.columns),
        getters=tuple(g for part in parts for g in part.getters),
        key=key,
        builders=tuple(part.build for part in parts),
    )


def _record_columns(fields: tuple[RecordField, ...]) -> list[Part]:
    """A core record's columns, in its field order, each read as its declared type says (the
    conversions of the module docstring): the record's field table is the one declaration."""
    parts: list[Part] = []
    for f in fields:
        name = f.name
        if f.type in ("time", "time?"):
            parts.append(_times(name, optional=f.type == "time?"))
        elif f.type == "float":
            parts.append(_float(name))
        elif f.type == "float?":
            parts.append(_opt_float(name))
        elif f.type == "int?":
            parts.append(_opt(name))
        elif f.type == "bool":
            parts.append(_bit(name))
        elif f.or_empty:
            parts.append(_text(name, f.empty))
        elif f.type in ("str", "int"):
            parts.append(_field(name))
        else:
            raise ValueError(f"{name}: no column for a field of type {f.type!r}")
    return parts


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
    _field("event_id"),
    _field("schema_version"),
    _occurred(),  # an event's own time: hardly ever repeated; the parser's ms when carried
    _field("producer"),
    _field("customer_id"),
    _opt("journey_id"),
    _field("type"),
    _field("touchpoint"),
    _field("channel"),
    _field("stage"),
    _opt_float("valence"),
    _nested("signals", ("wait_seconds", "float"), ("handle_seconds", "float"),
            ("transfers", ""), ("resolved", "bool"), ("error", "bool")),
    _nested("survey", ("nps", ""), ("ces", ""), ("ces_scale", ""), ("ces_higher_means", ""),
            ("csat", ""), ("comment", "")),
    _opt("outcome"),
    Part(("attribute_keys", "attribute_values"), (_attr_keys, _attr_values), _build_attributes),
    Part(("version",), (_event_version,), _build_version),
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


# touchpoint_events columns taken whole from the event's flat row (`ROW_FIELDS`) as they are;
# the others are converted below. Built once from the two declarations.
_ROW_AT = {name: i for i, name in enumerate(ROW_FIELDS)}
_FLOATS = ("valence", "wait_seconds", "handle_seconds")
_BITS = ("resolved", "error")


def touchpoint_columns(entries: Sequence[Sequence[Any]], event_at: int, occurred_ms_at: int,
                       digest_at: int) -> tuple[tuple[str, ...], list[list[Any]]]:
    """`columnar("touchpoint_events", ...)` for events as flat rows: each entry holds the
    event's `ROW_FIELDS` from `event_at` on, its epoch ms at `occurred_ms_at` and its content
    digest at `digest_at` (the batch records' entries, pipeline/stream/batches.py). The entries
    are transposed once (`zip`, in C) and most columns are taken as they are; the values equal
    `columnar`'s for the same events (tests/unit/storage/test_columnar.py)."""
    columns = TOUCHPOINT_EVENTS.columns
    if not entries:
        return columns, [[] for _ in columns]
    whole = list(zip(*entries, strict=True))
    ms = whole[occurred_ms_at]
    data: list[list[Any]] = []
    for name in columns:
        if name == "occurred_at":
            data.append([m // 1000 for m in ms])
        elif name == "occurred_at_ms":
            data.append(list(ms))
        elif name == "version":
            data.append([digest_version(d) for d in whole[digest_at]])
        elif name == "attribute_keys":
            maps = whole[event_at + _ROW_AT["attributes"]]
            keys = [sorted(m) if m else [] for m in maps]
            data.append(keys)
            data.append([[m[k] for k in ks] for m, ks in zip(maps, keys, strict=True)])
        elif name == "attribute_values":
            continue  # with the keys
        elif name in _FLOATS:
            data.append([None if v is None else float(v)
                         for v in whole[event_at + _ROW_AT[name]]])
        elif name in _BITS:
            data.append([None if v is None else 1 if v else 0
                         for v in whole[event_at + _ROW_AT[name]]])
        else:
            data.append(list(whole[event_at + _ROW_AT[name]]))
    return columns, data


def _spec_of(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}") from None


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
    spec = _spec_of(table)
    return spec.columns, [spec.row(r) for r in records]


def columnar(
    table: str, records: Records
) -> tuple[tuple[str, ...], list[list[Any]]]:
    """Columns and their values for `Warehouse.insert_columns(table, columns, data)`: the
    transpose of `rows(table, records)`.

    >>> cols, data = columnar("alerts", [])
    >>> (len(cols) == len(data), data[0])
    (True, [])
    """
    spec = _spec_of(table)
    return spec.columns, spec.column_values(records)
