"""The sink's column path (`tables.columnar`, `sink.loads`) against the row path it replaced.

`tables.rows` (one `TableSpec.row` per record, per-field getters) stays the readable reference:
for every table, on records the worker's stages make from generated events and on edge cases,
`columnar` must give exactly its values transposed (compared by `repr`, so 1, 1.0 and True
differ, and NaN equals NaN), and for a record it cannot convert the same error, which is what a
dead letter of the sink says.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from bench.bench_sink import BATCH_TABLE, make_flushes
from pipeline.contract.dead_letters import DeadLetter
from pipeline.core.records import RecordField
from pipeline.settings import Settings
from pipeline.storage import sink, tables
from pipeline.storage.tables import TABLES, columnar, rows, touchpoint_columns
from pipeline.stream.batches import DIGEST_AT, EVENT_AT, OCCURRED_MS_AT, decode_entries, decode_rows
from tests.unit.core.record_values import records as record_strategy
from tests.unit.storage.test_record_fields import IDS, RECORD_CLASSES, RECORD_TABLES, record_of

T = "2026-11-22T17:10:09.123Z"


def transposed(table: str, records: Sequence[Mapping[str, Any]]) -> str:
    columns, data = rows(table, records)
    return repr((columns, [list(c) for c in zip(*data, strict=True)] if data
                 else [[] for _ in columns]))


def by_columns(table: str, records: Sequence[Mapping[str, Any]]) -> str:
    return repr(columnar(table, records))


def outcome(build: Any, table: str, records: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """('ok', the values) or (exception type, message)."""
    try:
        return "ok", build(table, records)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.fixture(scope="module")
def generated() -> dict[str, list[dict[str, Any]]]:
    """Each table's records from 3,000 generated events (the default mix) through the worker's
    stages, decoded as the sink decodes them."""
    records: dict[str, list[dict[str, Any]]] = {}
    for flush in make_flushes(3_000, 500, Settings.from_env({})):
        for table, values in flush.messages.items():
            if table == BATCH_TABLE:
                got = [e for v in values for e, _sp, _off, _raw in decode_rows(v)]
            else:
                got = [json.loads(v) for v in values]
            records.setdefault(table, []).extend(got)
    return records


def test_generated_records_give_the_same_values_in_every_table(
        generated: dict[str, list[dict[str, Any]]]) -> None:
    assert {"touchpoint_events", "journeys", "metric_buckets"} <= {
        t for t, r in generated.items() if r}
    for table, records in generated.items():
        tables._TIMES.clear()
        assert by_columns(table, records) == transposed(table, records), table
        # again with every time in the memo
        assert by_columns(table, records) == transposed(table, records), table


def test_touchpoint_rows_of_batch_records_give_the_same_columns_as_their_dicts() -> None:
    """The sink's path for touchpoint_events (the batch records' flat rows, transposed) gives
    the values, types included (`repr`), of the dict path (`columnar`, `rows`)."""
    values = [v for flush in make_flushes(3_000, 500, Settings.from_env({}))
              for v in flush.messages.get(BATCH_TABLE, [])]
    assert values
    for value in values:
        entries = decode_entries(value)
        dicts = [e for e, _sp, _off, _raw in decode_rows(value)]
        assert entries and len(entries) == len(dicts)
        assert repr(touchpoint_columns(entries, EVENT_AT, OCCURRED_MS_AT, DIGEST_AT)) == \
            by_columns("touchpoint_events", dicts) == transposed("touchpoint_events", dicts)
    assert repr(touchpoint_columns([], EVENT_AT, OCCURRED_MS_AT, DIGEST_AT)) == \
        by_columns("touchpoint_events", [])


def test_every_table_has_its_columns_in_the_row_order() -> None:
    for table, spec in TABLES.items():
        columns, data = columnar(table, [])
        assert columns == spec.columns and len(data) == len(columns), table
        assert len(spec.builders) <= len(spec.columns)


def edge_events(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Raw events (event_to_dict form) with nulls, missing maps, odd maps and odd times."""
    cases: list[dict[str, Any]] = []

    def case(**over: Any) -> None:
        event = copy.deepcopy(base)
        for key, value in over.items():
            if value is _DROP:
                event.pop(key, None)
            else:
                event[key] = value
        cases.append(event)

    case()
    case(signals=_DROP, survey=_DROP, attributes=_DROP, journey_id=_DROP, outcome=_DROP)
    case(signals=None, survey=None, attributes=None, valence=None)
    case(signals={}, survey={}, attributes={})
    case(signals={"wait_seconds": 3, "handle_seconds": 0.0, "transfers": 0, "resolved": False,
                  "error": True})
    case(survey={"nps": 0, "ces": 7, "ces_scale": 7, "ces_higher_means": "easier", "csat": 5,
                 "comment": "Ünïcødé ✓ 日本語 \x00"})
    case(attributes={"zeta": "1", "Alpha": "2", "ä": "ü", "a": "", "日": "本"})
    case(valence=-1, journey_id="", outcome="resolved")
    case(_content_digest=0)
    case(_content_digest=tables.DIGESTS - 1)
    for moment in ("1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z",
                   "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
                   "2026-11-22T18:10:09.123+01:00", "2026-11-22T17:10:09.123+00:00",
                   "2026-11-22T17:10:09.123456Z", "2026-11-22T17:10:09Z",
                   "2026-11-22 17:10:09.123Z", "2026-11-22T17:10:09.999999-00:30"):
        case(occurred_at=moment, **{tables.OCCURRED_MS_KEY: _DROP})  # the text read
    return cases


def bad_events(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Raw events the mapping cannot convert: each must fail as the row path fails. (Without
    the occurred ms a batch record carries: with it, the text is not read.)"""
    base = {k: v for k, v in base.items() if k != tables.OCCURRED_MS_KEY}
    out = []
    for over in ({"occurred_at": "2026-11-22T17:10:09.123"},  # no offset
                 {"occurred_at": "yesterday"}, {"occurred_at": 1795367409123},
                 {"occurred_at": ["2026"]}, {"occurred_at": {"t": 1}},
                 {"occurred_at": "2026-13-22T17:10:09.123Z"},
                 {"occurred_at": "0001-01-01T00:00:00.000+01:00"},  # before year 1 in UTC
                 {"valence": "x"}, {"signals": {"wait_seconds": "soon"}},
                 {"signals": ["wait_seconds"]}, {"survey": "nps"},
                 {"attributes": ["region"]}, {"attributes": "region"},
                 {"_content_digest": -1}, {"_content_digest": "x"}):
        event = copy.deepcopy(base)
        event.update(over)
        out.append(event)
    for name in ("event_id", "occurred_at", "type", "channel"):
        event = copy.deepcopy(base)
        del event[name]
        out.append(event)
    return out


_DROP = object()


def test_edge_case_events_give_the_same_values(
        generated: dict[str, list[dict[str, Any]]]) -> None:
    base = generated["touchpoint_events"][0]
    cases = edge_events(base)
    table = "touchpoint_events"
    assert by_columns(table, cases) == transposed(table, cases)
    for event in cases:  # and alone, where the memo is filled by others first
        assert by_columns(table, [event]) == transposed(table, [event])
    # the digest (and the occurred ms) are read from the record when present, else computed
    # from the event
    plain = {k: v for k, v in base.items() if k not in (tables.DIGEST_KEY,
                                                          tables.OCCURRED_MS_KEY)}
    assert by_columns(table, [plain]) == transposed(table, [plain]) == by_columns(table, [base])


def test_a_bad_record_fails_alone_with_the_row_paths_error(
        generated: dict[str, list[dict[str, Any]]]) -> None:
    base = generated["touchpoint_events"][0]
    for event in bad_events(base):
        tables._TIMES.clear()
        want = outcome(transposed, "touchpoint_events", [event])
        assert want[0] != "ok", event
        assert outcome(by_columns, "touchpoint_events", [event]) == want, event
    journey = generated["journeys"][0]
    for over in ({"started_at": "not a time"}, {"events": None}, {"peak_valence": "x"},
                 {"duration_seconds": None}):
        record = {**journey, **over}
        want = outcome(transposed, "journeys", [record])
        assert outcome(by_columns, "journeys", [record]) == want, over
    for name in ("journey_id", "started_at", "version"):
        record = {k: v for k, v in journey.items() if k != name}
        want = outcome(transposed, "journeys", [record])
        assert want[0] == "KeyError"
        assert outcome(by_columns, "journeys", [record]) == want
    # a required time given as null is stored as null by both (ClickHouse then refuses it)
    record = {**journey, "started_at": None}
    assert by_columns("journeys", [record]) == transposed("journeys", [record])


def test_extreme_times_convert_as_to_seconds_and_to_ms() -> None:
    texts: list[Any] = [None, "", T, T, "1969-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z",
                        "9999-12-31T23:59:59.999999Z", "2026-03-29T02:30:00.5+02:00"]
    seconds, millis = tables.time_columns(texts)
    assert seconds == [tables.to_seconds(t) for t in texts]
    assert millis == [tables.to_ms(t) for t in texts]
    assert millis[4] == -1 and seconds[4] == -1  # floor, as the DateTime read back
    # the second written is the DateTime the driver reads back (`to_datetime`)
    for text, second in zip(texts, seconds, strict=True):
        if second is not None:
            assert datetime(1970, 1, 1) + timedelta(seconds=second) == tables.to_datetime(text)


@settings(max_examples=400, deadline=None)
@given(st.datetimes(timezones=st.timezones()), st.sampled_from(["isoformat", "ms", "Z"]))
def test_any_rfc3339_time_converts_as_to_seconds_and_to_ms(moment: Any, form: str) -> None:
    """The sink's pair of columns (`_parse_pair`, built without a timedelta division) equals
    the row path's `to_seconds` and `to_ms` for any instant and offset, before 1970 and with
    sub-millisecond digits included; the second is the one `to_datetime` reads back."""
    if form == "isoformat":
        text = moment.isoformat()
    elif form == "ms":
        text = moment.isoformat(timespec="milliseconds")
    else:
        try:
            text = moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
        except OverflowError:  # no such instant in UTC (year 1 at +14:00)
            reject()
    try:
        want = (tables.to_seconds(text), tables.to_ms(text))
        read_back = tables.to_datetime(text)
    except (ValueError, OverflowError) as exc:  # out of range once in UTC: both refuse it
        with pytest.raises(type(exc)):
            tables.time_columns([text], memo=False)
        return
    seconds, millis = tables.time_columns([text], memo=False)
    assert (seconds[0], millis[0]) == want
    assert seconds[0] is not None
    assert datetime(1970, 1, 1) + timedelta(seconds=seconds[0]) == read_back


def test_the_time_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "_TIMES_MAX", 4)
    tables._TIMES.clear()
    texts = [f"2026-11-22T17:10:{s:02d}.000Z" for s in range(10)]
    moments, millis = tables.time_columns(texts * 2)
    assert len(tables._TIMES) <= 4
    assert millis == [tables.to_ms(t) for t in texts * 2]
    assert moments == [tables.to_seconds(t) for t in texts * 2]


@pytest.mark.parametrize("value", [
    b'{"a":1,"b":[0.5,"x",null,true],"c":{"d":-0.0}}',
    b'{"a":1,"a":2}',
    b'{"a":1e400}', b'{"a":-1e400}', b'[NaN]', b'[Infinity]',
    b'{"a":"\\ud800"}', b'{"a":"\\ud83d\\ude00"}',
    b'{"a":12345678901234567890123}', b'{"a":-9223372036854775809}',
    b'{"a":18446744073709551615}', b'{"a":18446744073709551616}',
    b'{"a":9223372036854775807,"b":-9223372036854775808}',
    b'{"a":123456789012345678}', b'{"a":0.12345678901234567890123}',
    b'{"s":"1234567890123456789012"}',
    '{"a":"\u00e9\u65e5"}'.encode(), '{"a":"x"}'.encode("utf-16"),
    b'{"a":"\xff"}', b'  {"a":1}\n', b'{"a":1} x', b'', b'nul', b'"text"', b'[1,]',
    b'{"t":"2026-11-22T17:10:09.123Z","v":0.7934567085261071,"n":1795367409123}',
])
def test_loads_gives_what_json_loads_gives(value: bytes) -> None:
    assert _outcome(sink.loads, value) == _outcome(json.loads, value)


def _outcome(how: Any, data: bytes) -> tuple[str, str]:
    """What decoding `data` with `how` gives: the value, or the error's type and message."""
    try:
        return "ok", repr(how(data))
    except Exception as exc:
        return type(exc).__name__, str(exc)


NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,3})?",
                       fullmatch=True)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**90), 2**90) | st.floats() | st.text(max_size=8)
    | NUMBER.map(lambda text: _Literal(text)),
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(st.tuples(st.sampled_from(["a", "b", "t", "é"]), inner), max_size=4),
    max_leaves=10)


class _Literal(str):
    """A number written as it is."""


def _written(value: Any, ascii_only: bool) -> str:
    if isinstance(value, _Literal):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=ascii_only)}: "
                               f"{_written(v, ascii_only)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_written(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUE, st.booleans())
def test_loads_gives_what_json_loads_gives_on_any_json(value: Any, ascii_only: bool) -> None:
    """Numbers written any way (long digit runs, exponents, NaN and infinities from Python's
    floats), repeated keys, escapes and non-ASCII text: the same value or the same error."""
    data = _written(value, ascii_only).encode()
    assert _outcome(sink.loads, data) == _outcome(json.loads, data)


# -- every stored record, with hypothesis's values (tests/unit/core/record_values.py) ---------

@pytest.mark.parametrize("table,section,fields", RECORD_TABLES, ids=IDS)
def test_every_record_table_gives_the_same_values(table: str, section: str,
                                                  fields: tuple[RecordField, ...]) -> None:
    cls = RECORD_CLASSES[table]

    @settings(max_examples=60, deadline=None)
    @given(batch=st.lists(record_strategy(cls, fields) if cls is not DeadLetter
                          else st.just(record_of(cls, fields)), min_size=1, max_size=5))
    def check(batch: list[Any]) -> None:
        dicts = [json.loads(json.dumps(r.to_dict(), default=str)) for r in batch]
        assert by_columns(table, dicts) == transposed(table, dicts)

    check()


@pytest.mark.parametrize("table,section,fields", RECORD_TABLES, ids=IDS)
def test_a_missing_field_gives_the_row_paths_value_or_error(
        table: str, section: str, fields: tuple[RecordField, ...]) -> None:
    full = record_of(RECORD_CLASSES[table], fields).to_dict()
    for field in fields:
        partial = [{name: value for name, value in full.items() if name != field.name}]
        assert outcome(by_columns, table, partial) == outcome(transposed, table, partial)


def test_both_paths_store_the_same_table_contents_on_chdb(
        generated: dict[str, list[dict[str, Any]]]) -> None:
    """The sink's columnar insert and the old row insert into the embedded engine: every
    table's stored rows equal (the real server: bench/bench_sink.py checks the same)."""
    from tests.unit.storage.ch_helpers import chdb_database

    stored: list[dict[str, list[tuple[Any, ...]]]] = []
    for path in ("rows", "columns"):
        with chdb_database(prefix=f"pe_col_{path}") as dbs:
            for table, records in generated.items():
                if not records:
                    continue
                if path == "rows":
                    columns, data = rows(table, records)
                    dbs.writer.insert(table, columns, data)
                else:
                    columns, values = columnar(table, records)
                    dbs.writer.insert_columns(table, columns, values)
            # FINAL: background merges of the ReplacingMergeTree come when they come
            stored.append({
                table: dbs.reader.query(
                    f"SELECT {', '.join(TABLES[table].columns)} FROM {table} FINAL ORDER BY "
                    f"{', '.join(TABLES[table].columns)}")
                for table, records in generated.items() if records})
    assert stored[0] == stored[1]
    assert len(stored[0]["touchpoint_events"]) == len(generated["touchpoint_events"])
    assert len(stored[0]["journeys"]) == len({r["journey_id"] for r in generated["journeys"]})
