"""The Parquet layout of touchpoint events: one flat, typed column per schema-v1 field.

Written by `peakend generate --to parquet`, read by `peakend backfill`; this module is the only
place that knows it.

| column                   | type                     | schema v1 field            |
|--------------------------|--------------------------|----------------------------|
| event_id                 | string                   | event_id                   |
| schema_version           | int32                    | schema_version             |
| occurred_at              | timestamp[ms, tz=UTC]    | occurred_at                |
| producer, customer_id    | string                   | producer, customer_id      |
| journey_id               | string (null: absent)    | journey_id                 |
| type, touchpoint, channel, stage | string           | same                       |
| valence                  | float64                  | valence                    |
| signals_wait_seconds, signals_handle_seconds | float64 | signals.*               |
| signals_transfers        | int64                    | signals.transfers          |
| signals_resolved, signals_error | bool              | signals.*                  |
| survey_nps, survey_ces, survey_ces_scale, survey_csat | int32 | survey.*         |
| survey_ces_higher_means  | string (optional column) | survey.ces_higher_means    |
| survey_comment           | string                   | survey.comment             |
| outcome                  | string                   | outcome                    |
| attributes               | map<string, string>      | attributes                 |

Null means "field absent". A column in `ADDED_COLUMNS` came after files were first written: a
file without it still reads, as all null (`event_batches`). What the layout cannot say, and how
it is read back:
- `signals` / `survey` are present exactly when one of their columns is non-null (an empty
  `"signals": {}` is written as absent; the generator never writes one).
- `occurred_at` keeps milliseconds in UTC: read back as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the same
  instant (the core computes on epoch ms), without the producer's original offset or sub-ms
  digits. Values of the wrong JSON type cannot be stored; wrong values (nps 11, channel "fax",
  a missing required field, ...) can, and backfill rejects them exactly as the stream would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contract.parser import RepeatedKeys
from pipeline.core.timefmt import format_ms, parse_ms

SIGNAL_COLUMNS = (
    ("signals_wait_seconds", "wait_seconds"), ("signals_handle_seconds", "handle_seconds"),
    ("signals_transfers", "transfers"), ("signals_resolved", "resolved"),
    ("signals_error", "error"),
)
SURVEY_COLUMNS = (
    ("survey_nps", "nps"), ("survey_ces", "ces"), ("survey_ces_scale", "ces_scale"),
    ("survey_ces_higher_means", "ces_higher_means"), ("survey_csat", "csat"),
    ("survey_comment", "comment"),
)
TOP_COLUMNS = ("event_id", "schema_version", "occurred_at", "producer", "customer_id",
               "journey_id", "type", "touchpoint", "channel", "stage", "valence")

SCHEMA = pa.schema([
    pa.field("event_id", pa.string()),
    pa.field("schema_version", pa.int32()),
    pa.field("occurred_at", pa.timestamp("ms", tz="UTC")),
    pa.field("producer", pa.string()),
    pa.field("customer_id", pa.string()),
    pa.field("journey_id", pa.string()),
    pa.field("type", pa.string()),
    pa.field("touchpoint", pa.string()),
    pa.field("channel", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("valence", pa.float64()),
    pa.field("signals_wait_seconds", pa.float64()),
    pa.field("signals_handle_seconds", pa.float64()),
    pa.field("signals_transfers", pa.int64()),
    pa.field("signals_resolved", pa.bool_()),
    pa.field("signals_error", pa.bool_()),
    pa.field("survey_nps", pa.int32()),
    pa.field("survey_ces", pa.int32()),
    pa.field("survey_ces_scale", pa.int32()),
    pa.field("survey_ces_higher_means", pa.string()),
    pa.field("survey_csat", pa.int32()),
    pa.field("survey_comment", pa.string()),
    pa.field("outcome", pa.string()),
    pa.field("attributes", pa.map_(pa.string(), pa.string())),
], metadata={b"peakend.layout": b"touchpoint-event.v1.flat"})

# Columns added to the layout after files were first written in it: a file may lack them.
ADDED_COLUMNS = frozenset({"survey_ces_higher_means"})

# Columns whose string length counts towards a record's size (see backfill's too_large check).
STRING_COLUMNS = ("event_id", "producer", "customer_id", "journey_id", "type", "touchpoint",
                  "channel", "stage", "survey_comment", "outcome")



class _OccurredMs:
    """RFC 3339 text -> epoch ms; the generator's `...:SS.mmmZ` form is parsed from a cache."""

    def __init__(self) -> None:
        self.cache: dict[str, int] = {}

    def __call__(self, text: Any) -> int | None:
        if text is None:
            return None
        if type(text) is not str:
            raise ValueError(f"occurred_at {text!r} is not an RFC 3339 string")
        if len(text) == 24 and text[23] == "Z" and text[19] == ".":
            base = self.cache.get(text[:17])
            if base is None:
                if len(self.cache) > 100_000:
                    self.cache.clear()
                base = self.cache[text[:17]] = parse_ms(text[:17] + "00Z")
            return base + int(text[17:19]) * 1000 + int(text[20:23])
        return parse_ms(text)


def events_to_batch(events: Sequence[Mapping[str, Any]],
                    occurred_ms: _OccurredMs | None = None) -> pa.RecordBatch:
    """Event dicts (schema-v1 form, possibly invalid in value but not in JSON type) -> one
    record batch in `SCHEMA`."""
    to_ms = occurred_ms or _OccurredMs()
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    top = [(name, columns[name]) for name in TOP_COLUMNS if name != "occurred_at"]
    occurred = columns["occurred_at"]
    signals = [(columns[c], k) for c, k in SIGNAL_COLUMNS]
    survey = [(columns[c], k) for c, k in SURVEY_COLUMNS]
    outcome = columns["outcome"]
    attributes = columns["attributes"]
    for event in events:
        get = event.get
        for name, column in top:
            column.append(get(name))
        occurred.append(to_ms(get("occurred_at")))
        inner = get("signals")
        if inner:
            for column, key in signals:
                column.append(inner.get(key))
        else:
            for column, _ in signals:
                column.append(None)
        inner = get("survey")
        if inner:
            for column, key in survey:
                column.append(inner.get(key))
        else:
            for column, _ in survey:
                column.append(None)
        outcome.append(get("outcome"))
        attrs = get("attributes")
        attributes.append(None if attrs is None else list(attrs.items()))
    arrays = [pa.array(columns[f.name], type=f.type) for f in SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


class ParquetEventWriter:
    """Streams batches of event dicts into one Parquet file (zstd, 128k-row groups)."""

    def __init__(self, path: str | Path, row_group_rows: int = 131_072) -> None:
        self._writer = pq.ParquetWriter(str(path), SCHEMA, compression="zstd")
        self._to_ms = _OccurredMs()
        self.row_group_rows = row_group_rows

    def write(self, events: Sequence[Mapping[str, Any]]) -> None:
        batch = events_to_batch(events, self._to_ms)
        self._writer.write_batch(batch, row_group_size=self.row_group_rows)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> ParquetEventWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def check_schema(schema: pa.Schema, path: str = "") -> None:
    """ValueError when a file's schema is not `SCHEMA` (column names and types)."""
    theirs = {f.name: f.type for f in schema}
    problems = []
    for f in SCHEMA:
        if f.name not in theirs:
            if f.name not in ADDED_COLUMNS:
                problems.append(f"missing column {f.name}")
        elif not theirs[f.name].equals(f.type):
            problems.append(f"column {f.name} is {theirs[f.name]}, expected {f.type}")
    extra = sorted(set(theirs) - set(SCHEMA.names))
    if extra:
        problems.append(f"unknown column(s) {', '.join(extra)}")
    if problems:
        where = f"{path}: " if path else ""
        raise ValueError(f"{where}not the peakend event layout (jobs/parquet_schema.py): "
                         + "; ".join(problems))


def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch of a file that passed `check_schema`, in `SCHEMA`: the `ADDED_COLUMNS` it lacks
    added as all null, the columns in `SCHEMA`'s order."""
    if batch.schema.names == SCHEMA.names:
        return batch
    size = batch.num_rows
    arrays = [batch.column(batch.schema.get_field_index(f.name)) if f.name in batch.schema.names
              else pa.nulls(size, type=f.type) for f in SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def event_batches(parquet: pq.ParquetFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The record batches of an event file (checked with `check_schema`), each in `SCHEMA`."""
    for batch in parquet.iter_batches(batch_size=batch_rows):
        yield conform(batch)


class BatchDicts:
    """Rows of a batch in `SCHEMA` -> event dicts in schema-v1 form (absent fields omitted),
    ready for `pipeline.contract.parse_dict`. Iterating converts whole columns; `row(i)` alone
    converts only that row (backfill needs the dicts of a few rejected rows)."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self._columns: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        batch = self.batch
        data = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        columns = {
            "occurred": data["occurred_at"].cast(pa.int64()).to_pylist(),
            "top": [(name, data[name].to_pylist()) for name in TOP_COLUMNS
                    if name != "occurred_at"],
            "signals": [(key, data[c].to_pylist()) for c, key in SIGNAL_COLUMNS],
            "survey": [(key, data[c].to_pylist()) for c, key in SURVEY_COLUMNS],
            "has_signals": _any_valid(batch, [c for c, _ in SIGNAL_COLUMNS]),
            "has_survey": _any_valid(batch, [c for c, _ in SURVEY_COLUMNS]),
            "outcome": data["outcome"].to_pylist(),
            "attributes": data["attributes"].to_pylist(),
        }
        self._columns = columns
        return columns

    def row(self, i: int) -> dict[str, Any]:
        """Row i (converting only that row unless the whole batch was converted)."""
        if self._columns is None:
            return self._row_from_scalars(i)
        return self._row(self._columns, i)

    def _row_from_scalars(self, i: int) -> dict[str, Any]:
        one = self.batch.slice(i, 1)
        return self._row(BatchDicts(one)._load(), 0)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        columns = self._columns or self._load()
        return (self._row(columns, i) for i in range(self.batch.num_rows))

    def _row(self, columns: dict[str, Any], i: int) -> dict[str, Any]:
        occurred = columns["occurred"]
        event: dict[str, Any] = {}
        for name, values in columns["top"]:
            value = values[i]
            if value is not None:
                event[name] = value
            if name == "schema_version" and occurred[i] is not None:
                event["occurred_at"] = _occurred_text(occurred[i])
        if columns["has_signals"][i]:
            event["signals"] = {k: v[i] for k, v in columns["signals"] if v[i] is not None}
        if columns["has_survey"][i]:
            event["survey"] = {k: v[i] for k, v in columns["survey"] if v[i] is not None}
        outcome = columns["outcome"][i]
        if outcome is not None:
            event["outcome"] = outcome
        attrs = columns["attributes"][i]
        if attrs is not None:
            attributes = dict(attrs)
            if len(attributes) != len(attrs):
                # dict() would silently keep the last value: let the parser reject the row
                attributes = RepeatedKeys(attrs, _first_repeated(attrs))
            event["attributes"] = attributes
        return event


def _occurred_text(ms: int) -> str:
    """The stored instant as RFC 3339; one outside what datetime holds (a Parquet timestamp
    can be year 30000) becomes a text the parser rejects by name instead of a crash here."""
    try:
        return format_ms(ms)
    except (OverflowError, ValueError):
        return f"{ms} ms since 1970-01-01T00:00:00Z"


def _first_repeated(pairs: list[tuple[str, str]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return ""


def batch_to_dicts(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    """Rows of a batch in `SCHEMA` -> event dicts in schema-v1 form (absent fields omitted),
    ready for `pipeline.contract.parse_dict`."""
    return iter(BatchDicts(batch))


def _any_valid(batch: pa.RecordBatch, names: list[str]) -> list[bool]:
    import pyarrow.compute as pc

    mask = None
    for name in names:
        valid = pc.is_valid(batch.column(batch.schema.get_field_index(name)))
        mask = valid if mask is None else pc.or_(mask, valid)
    assert mask is not None
    return mask.to_pylist()  # type: ignore[no-any-return]


def read_event_dicts(path: str | Path, batch_rows: int = 65_536) -> Iterator[dict[str, Any]]:
    """Every row of a Parquet event file as an event dict."""
    parquet = pq.ParquetFile(str(path))
    check_schema(parquet.schema_arrow, str(path))
    for batch in event_batches(parquet, batch_rows):
        yield from batch_to_dicts(batch)
