"""Batch records of the journey-events topic (pipeline/stream/batches.py): format 3 carries
each event as a flat row and each raw record's bytes after the JSON; records of format 1 (raw
records inside the JSON, as written before 2026-12-03) and of format 2 (events as dicts, before
git f55e3a3) are still read, to the same events and raw records."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.generate import GeneratorConfig, encode_record, generate_records
from pipeline.contract import Rejected, event_to_dict, parse_event
from pipeline.core.event import TouchpointEvent, content_digest
from pipeline.stream.batches import (
    Handoff,
    decode_batch,
    decode_entries,
    decode_rows,
    encode_item,
    encode_rows,
    entry_row,
    join_items,
    join_rows,
    record_bytes,
)


def _events() -> list[tuple[bytes, TouchpointEvent]]:
    out = []
    for record in generate_records(GeneratorConfig(events=60, seed=5)):
        raw = encode_record(record)
        try:
            out.append((raw, parse_event(raw)))
        except Rejected:
            continue
    return out


EVENTS = _events()


def exact(event: TouchpointEvent) -> tuple[object, ...]:
    """What must survive the round trip: the event's contract form, its time, its digest."""
    return (event_to_dict(event), event.occurred_ms, content_digest(event))


def format_1(entries: list[tuple[int, int, int, bytes, TouchpointEvent]]) -> bytes:
    """A batch record as the entry stage wrote it before format 2."""
    items = [orjson.dumps([sp, offset, arrival, raw.decode("utf-8"), event_to_dict(event),
                           event.occurred_ms, content_digest(event)])
             for sp, offset, arrival, raw, event in entries]
    return b'{"f":1,"e":[' + b",".join(items) + b"]}"


def format_2(entries: list[tuple[int, int, int, bytes, TouchpointEvent]]) -> bytes:
    """A batch record as the entry stage wrote it before format 3: each event as its dict."""
    items = [orjson.dumps([sp, offset, arrival, len(raw), event_to_dict(event),
                           event.occurred_ms, content_digest(event)])
             for sp, offset, arrival, raw, event in entries]
    tail = b"".join(raw for _, _, _, raw, _ in entries)
    return b'{"f":2,"e":[' + b",".join(items) + b"]}" + tail + b"%08x" % len(tail)


# Raw records as the entry stage may carry them: the producer's bytes (any JSON text, quotes,
# backslashes, newlines, non-ASCII) or a sealed form; tails that look like hex digits too.
RAWS = st.one_of(st.binary(max_size=300),
                 st.text(max_size=100).map(lambda t: t.encode("utf-8")),
                 st.sampled_from([b"", b"0", b"00000010", b"ffffffff", b'"}]', b"\\"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 2**40), st.integers(0, 2**45),
                          RAWS, st.sampled_from(range(len(EVENTS)))), max_size=12),
       st.booleans())
def test_format_3_gives_back_every_entry_and_raw_record(
        entries: list[tuple[int, int, int, bytes, int]], handed_off: bool) -> None:
    rows = [(sp, offset, arrival, raw, EVENTS[i][1]) for sp, offset, arrival, raw, i in entries]
    key = Handoff().put([]) if handed_off else None
    value = join_items([encode_item(*row) for row in rows], [row[3] for row in rows], key)
    assert value.startswith(b'{"f":3,')
    # the entry stage's way, the rows encoded in one call: the same bytes, its length known
    # before it is joined
    body = encode_rows([entry_row(*row) for row in rows])
    assert join_rows(body, [row[3] for row in rows], key) == value
    assert record_bytes(body, sum(len(row[3]) for row in rows), key is not None) == len(value)
    decoded = decode_batch(value)
    assert [(r.source_partition, r.source_offset, r.arrival_ms, r.raw, exact(r.event))
            for r in decoded] == [(*row[:4], exact(row[4])) for row in rows]
    assert [(sp, offset, raw) for _, sp, offset, raw in decode_rows(value)] == \
        [(row[0], row[1], row[3]) for row in rows]


def test_formats_1_and_2_are_still_read_the_same() -> None:
    rows = [(i % 4, i, 1795367409123 + i, raw, event) for i, (raw, event) in enumerate(EVENTS)]
    new = join_items([encode_item(*row) for row in rows], [row[3] for row in rows])
    oldest, old = format_1(rows), format_2(rows)
    assert len(new) < len(old) < len(oldest)  # no keys; no escaped copy of each raw record
    for value in (oldest, old, new):
        assert [(r.source_partition, r.source_offset, r.arrival_ms, r.raw, exact(r.event))
                for r in decode_batch(value)] == [(*row[:4], exact(row[4])) for row in rows]
        assert repr(decode_entries(value)) == repr(decode_entries(new))
        assert repr(list(decode_rows(value))) == repr(list(decode_rows(new)))


def damaged() -> dict[str, bytes]:
    raw, event = EVENTS[0]
    value = join_items([encode_item(0, 1, 2, raw, event)], [raw])
    return {
        "tail not hex": value[:-8] + b"zzzzzzzz",
        "tail longer than the record": value[:-8] + b"%08x" % (len(value) * 2),
        "a raw byte missing": value[:-8 - len(raw)] + raw[1:] + b"%08x" % (len(raw) - 1),
        "a raw byte too many": value[:-8] + b"x" + b"%08x" % (len(raw) + 1),
        "a JSON byte missing": value[:-9 - len(raw)] + raw + b"%08x" % len(raw),
        "unknown format": b'{"f":9,"e":[]}',
        "format 2 without its tail": format_2([(0, 1, 2, raw, event)])[:-8],
        # another producer's records on the topic, with our heads: a clear error, never a
        # TypeError or IndexError from the decoding (stage one and the sink dead-letter them)
        "entries that are not lists": b'{"f":3,"e":[1]}' + b"%08x" % 0,
        "an entry too short": b'{"f":3,"e":[[0,1,2,0]]}' + b"%08x" % 0,
        "a raw size that is not a number": value.replace(b"[0,1,2,%d," % len(raw),
                                                         b'[0,1,2,"x",', 1),
        "format 1 without entries": b'{"f":1}',
        "format 2 with an event that is not an object": (
            b'{"f":2,"e":[[0,1,2,0,"x",5,6]]}' + b"%08x" % 0),
    }


@pytest.mark.parametrize("what", list(damaged()))
def test_a_damaged_record_is_an_error_naming_its_format(what: str) -> None:
    with pytest.raises(ValueError, match="format"):
        decode_batch(damaged()[what])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b'{"f":3,"e":', b'{"f":2,"e":', b'{"f":1,"e":', b'{"f":"w",']),
       st.one_of(st.binary(max_size=80), st.recursive(
           st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=5),
           lambda inner: st.lists(inner, max_size=8), max_leaves=30).map(orjson.dumps)),
       st.binary(max_size=12))
def test_any_record_with_our_heads_decodes_or_is_a_value_error(
        head: bytes, body: bytes, tail: bytes) -> None:
    """Whatever follows a batch or withdrawal head, the decoders give entries or a ValueError
    (which stage one and the sink turn into an `unreadable` dead letter), nothing else."""
    from pipeline.stream.batches import decode_withdrawals

    for value in (head + body + b"}" + tail, head + body + b"}" + b"%08x" % len(tail)):
        for decode in (decode_batch, decode_entries, decode_withdrawals):
            with contextlib.suppress(ValueError):
                decode(value)


def test_entries_and_raw_records_must_pair() -> None:
    raw, event = EVENTS[0]
    with pytest.raises(ValueError, match="1 entries but 0 raw records"):
        join_items([encode_item(0, 1, 2, raw, event)], [])
