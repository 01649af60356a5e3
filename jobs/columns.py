"""Backfill's fast path: record batches -> `TouchpointEvent`s and table rows without dicts.

`clean_rows` decides, with vectorised pyarrow checks over whole columns, which rows the contract
certainly accepts (every rule `pipeline.contract.parse_dict` applies, plus the size limit and a
range of event times that convert exactly), with the limits the parser reads
(`pipeline.contract.limits`, declared once; tests/unit/contract/test_parquet_limits.py feeds the
values at every limit through both and requires the same verdict). Those rows are built straight
from the column values through `TouchpointEvent`'s constructor, already scrubbed like
`PersonalData.scrub` would (same pseudonym, comment dropped unless kept), so they skip the dict
and the parser. Every other row takes the old path (the row's dict through `parse_dict`), which
gives the contract's exact verdict: being "not clean" never rejects anything by itself.

`touchpoint_row` and `journey_row` give the rows `pipeline.storage.tables.rows` would give for
`event_to_dict(event)` and `record.to_dict()` (tests compare them), without the detour through
RFC 3339 text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.parquet_schema import STRING_COLUMNS
from pipeline.contract.limits import (
    ATTRIBUTE_KEY_PATTERN,
    ATTRIBUTE_VALUE_MAX,
    ATTRIBUTES_MAX,
    CES_MIN,
    CES_SCALES,
    COMMENT_MAX,
    CSAT_MAX,
    CSAT_MIN,
    END_MS,
    EVENT_ID_MAX,
    FIRST_MS,
    JOURNEY_ID_RESERVED,
    NPS_MAX,
    NPS_MIN,
    OUTCOMES,
    SCHEMA_VERSION,
    SECONDS_MAX,
    TEXT_MAX,
    TRANSFERS_MAX,
    VALENCE_MAX,
    VALENCE_MIN,
)
from pipeline.core.event import (
    CES_DIRECTIONS,
    CHANNELS,
    EVENT_TYPES,
    STAGES,
    Signals,
    Survey,
    TouchpointEvent,
    content_digest,
)
from pipeline.core.records import JourneyRecord
from pipeline.privacy import PersonalData
from pipeline.storage.tables import digest_version

# Event times the fast path takes: the contract's (from its first instant) up to 2096, where
# `datetime.fromtimestamp(ms / 1000)` is exact to the microsecond (the float's error stays far
# below half a microsecond). Later times in the contract's years take the slow path.
MIN_FAST_MS = FIRST_MS
MAX_FAST_MS = min(END_MS, 4_000_000_000_000)  # the first ms not taken
# A row whose strings are this far below the size limit cannot exceed it once encoded (JSON
# escapes at most 6 bytes per character, plus the fixed fields, numbers and attribute keys).
FIXED_BYTES = 8192

_TYPES = pa.array(EVENT_TYPES)
_CHANNELS = pa.array(CHANNELS)
_STAGES = pa.array(STAGES)
_OUTCOMES = pa.array(OUTCOMES)
_CES_DIRECTIONS = pa.array(CES_DIRECTIONS)
_CES_SCALES = pa.array(CES_SCALES, pa.int32())
# The parser's pattern (used there with fullmatch), anchored for RE2: its `$` is the end of the
# text only, so a key with a final line feed fails here as it does there.
_KEY_PATTERN = f"^{ATTRIBUTE_KEY_PATTERN}$"


def _col(batch: pa.RecordBatch, name: str) -> Any:
    return batch.column(batch.schema.get_field_index(name))


def _and(*conditions: Any) -> Any:
    """Conjunction with null read as False."""
    out = None
    for condition in conditions:
        condition = pc.fill_null(condition, False)
        out = condition if out is None else pc.and_(out, condition)
    return out


def _text_ok(column: Any, max_length: int = TEXT_MAX) -> Any:
    """A required non-empty string of at most `max_length` characters."""
    return _and(pc.is_valid(column), pc.greater(pc.binary_length(column), 0),
                pc.less_equal(pc.utf8_length(column), max_length))


def _optional(column: Any, condition: Any) -> Any:
    """Null, or the condition holds."""
    return pc.or_(pc.is_null(column), pc.fill_null(condition, False))


def _between(column: Any, low: float, high: float) -> Any:
    return _and(pc.greater_equal(column, low), pc.less_equal(column, high))


def size_suspects(batch: pa.RecordBatch, max_bytes: int) -> Any:
    """Rows that might exceed `max_bytes` as JSON (to be checked exactly); None when no row can."""
    total = None
    for name in (*STRING_COLUMNS, "attributes"):
        column = _col(batch, name)
        if name == "attributes":
            # per row at most entries x (longest key + longest value of the batch)
            if len(column.keys) == 0:
                continue
            longest = ((pc.max(pc.binary_length(column.keys)).as_py() or 0)
                       + (pc.max(pc.binary_length(column.items)).as_py() or 0))
            offsets = column.offsets
            entries = pc.subtract(offsets[1:], offsets[:-1])
            lengths = pc.multiply(entries, longest)
        else:
            lengths = pc.fill_null(pc.binary_length(column), 0)
        total = lengths if total is None else pc.add(total, lengths)
    if total is None:
        return None
    suspects = pc.greater(total, (max_bytes - FIXED_BYTES) // 6)
    return suspects if pc.any(suspects).as_py() else None


def _repeated_key_rows(counts: Any, keys: Any) -> Any:
    """Rows whose map repeats a key (a Parquet map can; a JSON object must not)."""
    rows = np.repeat(np.arange(len(counts)), counts)
    pairs = pa.table({"row": rows, "key": keys})
    grouped = pairs.group_by(["row", "key"]).aggregate([([], "count_all")])
    if grouped.num_rows == pairs.num_rows:
        return None
    repeated = pc.filter(grouped["row"], pc.greater(grouped["count_all"], 1))
    return np.unique(np.asarray(repeated))


def _attributes_ok(column: Any) -> Any:
    """Null, or at most ATTRIBUTES_MAX entries with valid, distinct keys and short non-null
    values."""
    offsets = np.asarray(column.offsets)
    counts = np.diff(offsets)
    ok = counts <= ATTRIBUTES_MAX
    start, end = int(offsets[0]), int(offsets[-1])
    if end > start:
        keys = column.keys.slice(start, end - start)
        items = column.items.slice(start, end - start)
        good = _and(pc.match_substring_regex(keys, _KEY_PATTERN), pc.is_valid(items),
                    pc.less_equal(pc.utf8_length(items), ATTRIBUTE_VALUE_MAX))
        if not pc.all(good).as_py():
            bad = np.flatnonzero(~np.asarray(good, dtype=bool)) + start
            rows = np.searchsorted(offsets, bad, side="right") - 1
            ok = ok.copy()
            ok[rows] = False
        if (counts > 1).any():
            repeated = _repeated_key_rows(counts, keys)
            if repeated is not None:
                ok = ok.copy()
                ok[repeated] = False
    return pc.or_(pc.is_null(column), pa.array(ok))


def clean_rows(batch: pa.RecordBatch, max_bytes: int) -> list[bool]:
    """Per row: does the contract certainly accept it, within the size limit and the fast time
    range? (False: decide the slow, exact way.)"""
    c = {name: _col(batch, name) for name in batch.schema.names}
    kind = c["type"]
    nps, ces, scale, csat = c["survey_nps"], c["survey_ces"], c["survey_ces_scale"], \
        c["survey_csat"]
    direction = c["survey_ces_higher_means"]
    has_score = pc.or_(pc.or_(pc.is_valid(nps), pc.is_valid(ces)), pc.is_valid(csat))
    outcome, journey = c["outcome"], c["journey_id"]
    occurred = c["occurred_at"].cast(pa.int64())
    checks = [
        _text_ok(c["event_id"], EVENT_ID_MAX),
        pc.equal(c["schema_version"], SCHEMA_VERSION),
        _between(occurred, MIN_FAST_MS, MAX_FAST_MS - 1),
        _text_ok(c["producer"]), _text_ok(c["customer_id"]), _text_ok(c["touchpoint"]),
        pc.is_in(kind, value_set=_TYPES), pc.is_in(c["channel"], value_set=_CHANNELS),
        pc.is_in(c["stage"], value_set=_STAGES),
        _optional(journey, _and(_text_ok(journey),
                                pc.invert(pc.match_substring(journey, JOURNEY_ID_RESERVED)))),
        _optional(c["valence"], _between(c["valence"], VALENCE_MIN, VALENCE_MAX)),
        _optional(c["signals_wait_seconds"],
                  _between(c["signals_wait_seconds"], 0, SECONDS_MAX)),
        _optional(c["signals_handle_seconds"],
                  _between(c["signals_handle_seconds"], 0, SECONDS_MAX)),
        _optional(c["signals_transfers"], _between(c["signals_transfers"], 0, TRANSFERS_MAX)),
        _optional(nps, _between(nps, NPS_MIN, NPS_MAX)),
        _optional(scale, pc.is_in(scale, value_set=_CES_SCALES)),
        _optional(ces, _and(pc.greater_equal(ces, CES_MIN), pc.less_equal(ces, scale))),
        _optional(direction, _and(pc.is_in(direction, value_set=_CES_DIRECTIONS),
                                  pc.is_valid(scale))),
        _optional(csat, _between(csat, CSAT_MIN, CSAT_MAX)),
        _optional(c["survey_comment"],
                  pc.less_equal(pc.utf8_length(c["survey_comment"]), COMMENT_MAX)),
        pc.or_(pc.not_equal(kind, "survey"), has_score),
        _optional(outcome, pc.is_in(outcome, value_set=_OUTCOMES)),
        pc.equal(pc.equal(kind, "outcome"), pc.is_valid(outcome)),
        _attributes_ok(c["attributes"]),
    ]
    suspects = size_suspects(batch, max_bytes)
    if suspects is not None:
        checks.append(pc.invert(suspects))
    return _and(*checks).to_pylist()  # type: ignore[no-any-return]


class EventBuilder:
    """Scrubbed `TouchpointEvent`s from the column values of clean rows."""

    def __init__(self, personal: PersonalData) -> None:
        self.personal = personal
        self.pseudonyms: dict[str, str] = {}

    def columns(self, batch: pa.RecordBatch) -> dict[str, list[Any]]:
        data = {name: _col(batch, name).to_pylist() for name in batch.schema.names
                if name != "occurred_at"}
        data["occurred_ms"] = _col(batch, "occurred_at").cast(pa.int64()).to_pylist()
        return data

    def customer(self, customer_id: str) -> str:
        """The customer id as the core sees it (pseudonymised when a key is set)."""
        if not self.personal.key:
            return customer_id
        pseudonyms = self.pseudonyms
        alias = pseudonyms.get(customer_id)
        if alias is None:
            if len(pseudonyms) >= 1_000_000:
                pseudonyms.clear()
            alias = pseudonyms[customer_id] = self.personal.pseudonym(customer_id)
        return alias

    def key(self, data: dict[str, list[Any]]) -> Callable[[int], str]:
        """`key(i)`: the journey key (Kafka key) of clean row i's scrubbed event."""
        journey, customer_ids = data["journey_id"], data["customer_id"]
        customer = self.customer

        def key(i: int) -> str:
            jid = journey[i]
            return customer(customer_ids[i]) if jid is None else jid

        return key

    def builder(self, data: dict[str, list[Any]]) -> Callable[[int], TouchpointEvent]:
        """`build(i)`: the scrubbed event of clean row i."""
        event_id, ms_of, producer = data["event_id"], data["occurred_ms"], data["producer"]
        customer_ids, journey, kind = data["customer_id"], data["journey_id"], data["type"]
        touchpoint, channel, stage = data["touchpoint"], data["channel"], data["stage"]
        valence, outcome, attributes = data["valence"], data["outcome"], data["attributes"]
        wait, handle = data["signals_wait_seconds"], data["signals_handle_seconds"]
        transfers, resolved = data["signals_transfers"], data["signals_resolved"]
        error = data["signals_error"]
        nps, ces, scale = data["survey_nps"], data["survey_ces"], data["survey_ces_scale"]
        direction = data["survey_ces_higher_means"]
        csat, comment = data["survey_csat"], data["survey_comment"]
        comment_of = self.personal.comment
        customer = self.customer if self.personal.key else None
        fromtimestamp = datetime.fromtimestamp
        utc = UTC

        def build(i: int) -> TouchpointEvent:
            ms = ms_of[i]
            cid = customer_ids[i]
            if customer is not None:
                cid = customer(cid)
            w, h, t, r, e = wait[i], handle[i], transfers[i], resolved[i], error[i]
            signals = None if (w is None and h is None and t is None and r is None
                               and e is None) else Signals(w, h, t, r, e)
            n, c, s, sat, text, d = nps[i], ces[i], scale[i], csat[i], comment[i], direction[i]
            if (n is None and c is None and s is None and sat is None and text is None
                    and d is None):
                survey = None
            else:
                survey = Survey(n, c, s, sat, comment_of(text), d)
            attrs = attributes[i]
            return TouchpointEvent(
                event_id[i], fromtimestamp(ms / 1000, utc), producer[i], cid, kind[i],
                touchpoint[i], channel[i], stage[i], journey[i], 1, valence[i], signals,
                survey, outcome[i], {} if attrs is None else dict(attrs), ms)

        return build


# rows for pipeline.storage.tables, built from values instead of record dicts

def seconds_of(ms: int | None) -> int | None:
    """Epoch ms -> the `DateTime` value written: epoch seconds (floor), as `tables.to_seconds`
    gives for the same instant."""
    return None if ms is None else ms // 1000


def _bit(value: bool | None) -> int | None:
    return None if value is None else (1 if value else 0)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def touchpoint_row(event: TouchpointEvent) -> tuple[Any, ...]:
    """`TABLES["touchpoint_events"].row(event_to_dict(event))`."""
    ms = event.occurred_ms
    signals, survey, attrs = event.signals, event.survey, event.attributes
    if signals is None:
        sig: tuple[Any, ...] = (None, None, None, None, None)
    else:
        sig = (_float(signals.wait_seconds), _float(signals.handle_seconds), signals.transfers,
               _bit(signals.resolved), _bit(signals.error))
    if survey is None:
        sur: tuple[Any, ...] = (None, None, None, None, None, None)
    else:
        sur = (survey.nps, survey.ces, survey.ces_scale, survey.ces_higher_means, survey.csat,
               survey.comment)
    if attrs:
        keys = sorted(attrs)
        values = [attrs[k] for k in keys]
    else:
        keys, values = [], []
    return (event.event_id, event.schema_version, ms // 1000, ms, event.producer,
            event.customer_id, event.journey_id, event.type, event.touchpoint, event.channel,
            event.stage, _float(event.valence), *sig, *sur, event.outcome, keys, values,
            digest_version(content_digest(event)))


def touchpoint_columns(batch: pa.RecordBatch, applied: Sequence[int], builder: EventBuilder,
                       digests: Mapping[int, int] | None = None
                       ) -> list[list[Any]]:
    """The touchpoint_events columns (`TABLES["touchpoint_events"].columns`) of the rows
    `applied` of a batch, straight from the Arrow columns: for each row the values of
    `touchpoint_row(event)` of the row's scrubbed event. The version column needs the event
    itself (its content digest, as the core computed it): the rows' events are built again with
    `builder`, as the fast path built them for the core (a row that took the slow path, through
    `parse_dict` and `PersonalData.scrub`, gives an equal event: tests compare them)."""
    mask = np.zeros(batch.num_rows, dtype=bool)
    mask[np.asarray(applied, dtype=np.int64)] = True
    sub = batch.filter(pa.array(mask))
    size = sub.num_rows

    def values(name: str) -> list[Any]:
        return _col(sub, name).to_pylist()  # type: ignore[no-any-return]

    def bits(name: str) -> list[Any]:
        return _col(sub, name).cast(pa.uint8()).to_pylist()  # type: ignore[no-any-return]

    occurred = _col(sub, "occurred_at").cast(pa.int64()).to_pylist()
    customers = values("customer_id")
    if builder.personal.key:
        customer = builder.customer
        customers = [customer(c) for c in customers]
    keys: list[list[str]] = []
    items: list[list[str]] = []
    for attrs in values("attributes"):
        if attrs:
            mapping = dict(attrs)
            names = sorted(mapping)
            keys.append(names)
            items.append([mapping[k] for k in names])
        else:
            keys.append([])
            items.append([])
    comments = [builder.personal.comment(text) for text in values("survey_comment")]
    if digests is not None:  # the core's own digests of the applied rows, in row order
        versions = [digest_version(digests[row]) for row in sorted(set(applied))]
    else:
        build = builder.builder(builder.columns(sub))
        versions = [digest_version(content_digest(build(j))) for j in range(size)]
    return [
        values("event_id"), values("schema_version"), [ms // 1000 for ms in occurred],
        occurred, values("producer"), customers, values("journey_id"), values("type"),
        values("touchpoint"), values("channel"), values("stage"), values("valence"),
        values("signals_wait_seconds"), values("signals_handle_seconds"),
        values("signals_transfers"), bits("signals_resolved"), bits("signals_error"),
        values("survey_nps"), values("survey_ces"), values("survey_ces_scale"),
        values("survey_ces_higher_means"), values("survey_csat"), comments, values("outcome"),
        keys, items, versions,
    ]


def journey_row(r: JourneyRecord) -> tuple[Any, ...]:
    """`TABLES["journeys"].row(record.to_dict())`."""
    return (
        r.journey_id, r.customer_id, r.keyed_by, r.status, r.close_reason or "",
        r.started_at // 1000, r.started_at, r.ended_at // 1000, r.ended_at,
        float(r.duration_seconds), r.events, r.moments, _float(r.peak_valence),
        r.peak_touchpoint or "", seconds_of(r.peak_at), r.peak_at, r.peak_event_id or "",
        _float(r.best_valence), r.best_touchpoint or "", _float(r.worst_valence),
        r.worst_touchpoint or "", _float(r.end_valence), r.end_touchpoint or "",
        r.end_channel or "", r.end_stage or "", seconds_of(r.end_at), r.end_at,
        r.end_event_id or "", _float(r.peak_end_score), _float(r.mean_valence),
        r.outcome or "", r.version)


__all__ = ["EventBuilder", "clean_rows", "journey_row", "seconds_of", "size_suspects",
           "touchpoint_columns", "touchpoint_row"]
