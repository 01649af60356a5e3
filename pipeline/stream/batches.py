"""Journey batches: the records of the internal topic between the entry stage and stage one.

The entry stage (`pipeline.stream.entry`) reads the touchpoints topic, validates each record once
and writes the valid events, grouped by the partition of their journey key, as *batch records*:
many events per Kafka record. Stage one (a Faust agent) then pays Faust's per-record cost once
per batch instead of once per event, and the ClickHouse sink takes its `touchpoint_events` rows
from the same records without parsing the raw events again.

A batch record (format 3) is JSON followed by the raw records and the length of those:
`{"f": 3, "h": handoff key (optional, see `Handoff`), "e": [[source_partition, source_offset,
arrival_ms, raw_bytes, occurred_ms, content_digest, *event], ...]}` + raw + raw + ... + the
raws' total length in 8 hex digits. `raw` is the record exactly as the producer wrote it (for
dead letters, which keep the original), `raw_bytes` its length (the raws follow the JSON in the
order of the entries), and `event` is the validated, scrubbed event as the flat row of
`pipeline.core.eventdict.ROW_FIELDS`: the sink takes its touchpoint_events columns by
transposing a batch's entries (docs/streaming.md, fourteenth round).

Formats 1 and 2 (written before git 9c22d01 and before git f55e3a3; still read: a topic may hold
them after an upgrade) carried the event as its `event_to_dict` map, in entries of `[source
partition, source offset, arrival_ms, raw, event, occurred_ms, content_digest]`; format 1 with
each raw record inside the JSON as a string, whose escaping and unescaping cost about a tenth of
the entry's batch encoding and 0.2 us per event in each reader (docs/streaming.md, thirteenth
round). Readers turn their entries into format 3's.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from pipeline.contract import event_from_dict, event_to_dict
from pipeline.core.event import TouchpointEvent, content_digest, with_digest
from pipeline.core.eventdict import ROW_FIELDS, event_from_row, event_row
from pipeline.storage.tables import DIGEST_KEY, OCCURRED_MS_KEY
from pipeline.stream.layout import INT, STR, check_row, describe_instants, is_instant

FORMAT = 3
# Where an entry's parts sit (format 3): the raw record (its length on the wire, its bytes once
# read), the event's occurred time in epoch ms as the parser computed it, its content digest,
# and the first of the event's `ROW_FIELDS`.
RAW_AT = 3
OCCURRED_MS_AT = 4
DIGEST_AT = 5
EVENT_AT = 6
# A batch record stays well under the broker's default message.max.bytes (1 MiB) even when one
# more event of the largest accepted size is added to it.
MAX_BATCH_BYTES = 512 * 1024


class RoutedEvent(NamedTuple):
    """One valid event on its way to stage one, with where it came from."""

    source_partition: int
    source_offset: int
    arrival_ms: int  # when it reached us (the `future` verdict)
    raw: bytes
    event: TouchpointEvent


def entry_row(source_partition: int, source_offset: int, arrival_ms: int, raw: bytes,
              event: TouchpointEvent) -> list[Any]:
    """One event's entry of a batch record, without its raw record (which `join_rows` appends
    after the JSON: give it the raws in the order of the entries)."""
    return event_row(event, [source_partition, source_offset, arrival_ms, len(raw),
                             event.occurred_ms, content_digest(event)])


def encode_item(source_partition: int, source_offset: int, arrival_ms: int, raw: bytes,
                event: TouchpointEvent) -> bytes:
    """`entry_row` as JSON, for `join_items`."""
    return orjson.dumps(entry_row(source_partition, source_offset, arrival_ms, raw, event))


_HEAD = b'{"f":%d,"e":[' % FORMAT
_TAIL_DIGITS = 8  # the raws' total length, hex: a batch stays far below 16**8 bytes


def join_items(items: list[bytes], raws: list[bytes], handoff: bytes | None = None) -> bytes:
    """A batch record from entries made by `encode_item` and their raw records, in the same
    order; `handoff`: its `Handoff` key, in the record's head (readers that do not know it
    ignore it)."""
    if len(items) != len(raws):
        raise ValueError(f"{len(items)} entries but {len(raws)} raw records")
    head = _HEAD if handoff is None else _HANDOFF_HEAD + handoff + b'","e":['
    return with_raws(head + b",".join(items) + b"]}", raws)


def encode_rows(rows: list[list[Any]]) -> bytes:
    """The JSON of a batch record's entries (`entry_row`), for `join_rows`: one call for the
    whole list. orjson: this and the decoding below run for every event, and the standard
    library's json took about as long as validating the event (bench/bench_pipeline.py,
    docs/streaming.md). One call, not one per entry: every entry encoded alone is a bytes
    object of its own, held until the join (`python -m bench.bench_entry_codec`: batch records
    of 800 entries; docs/streaming.md, twenty-third round)."""
    return orjson.dumps(rows)


def record_bytes(body: bytes, raws_bytes: int, handoff: bool) -> int:
    """The length of the batch record `join_rows` makes of `body` (`encode_rows`) and raws of
    `raws_bytes` bytes in all, without making it."""
    head = len(_HANDOFF_HEAD) + _KEY_BYTES + len(b'","e":') if handoff else len(_HEAD) - 1
    return head + len(body) + 1 + raws_bytes + _TAIL_DIGITS


def join_rows(body: bytes, raws: list[bytes], handoff: bytes | None = None) -> bytes:
    """A batch record from `encode_rows(rows)` and the rows' raw records, in the same order
    (byte for byte what `join_items` makes of the rows encoded one by one); `handoff` as in
    `join_items`."""
    head = _HEAD[:-1] if handoff is None else _HANDOFF_HEAD + handoff + b'","e":'
    return with_raws(head + body + b"}", raws)


# -- raw records after the JSON ---------------------------------------------------------------
#
# A record that carries producers' raw records (for dead letters, which keep the original)
# holds them after its JSON, not inside it as JSON strings, whose escaping and unescaping cost
# about a tenth of the entry's batch encoding and 0.2 us per event in each reader
# (docs/streaming.md, thirteenth round): JSON whose items give each raw record's length at an
# index of their own, then the raws in the items' order, then their total length in 8 hex
# digits. Batch records (format 2 and 3) and claims records (pipeline/stream/claims.py) use it.


def with_raws(body: bytes, raws: list[bytes]) -> bytes:
    """JSON `body` followed by `raws` and their total length.

    >>> with_raws(b'{"e":[[2],[1]]}', [b"ab", b"c"])
    b'{"e":[[2],[1]]}abc00000003'
    """
    tail = b"".join(raws)
    return body + tail + b"%08x" % len(tail)


def raws_at(value: bytes, what: str, head: int) -> tuple[int, int]:
    """Where the raws of a record made by `with_raws` start and end (the JSON, at least `head`
    bytes, is before the start); `what` names the record in the error of one without a valid
    tail."""
    end = len(value) - _TAIL_DIGITS
    try:
        raws = int(value[end:], 16)
    except ValueError:
        raws = -1
    at = end - raws
    if raws < 0 or at < head:
        raise ValueError(f"{what} without a valid tail ({value[-_TAIL_DIGITS:]!r})")
    return at, end


def take_raws(value: bytes, items: list[list[Any]], index: int, at: int, end: int,
              what: str) -> None:
    """Put in each item, at `index`, its raw record (read from `value`, whose raws are at
    `at`..`end`) in place of its length."""
    start = at
    for item in items:
        size = item[index]
        if type(size) is not int or size < 0:
            raise ValueError(f"{what} whose item claims a raw record of {size!r} bytes")
        item[index] = value[at:at + size]
        at += size
    if at != end:
        raise ValueError(f"{what} whose items claim {at - start} bytes of raw records, "
                         f"not {end - start}")


# -- the handoff within one process -----------------------------------------------------------
#
# A worker's entry stage writes batch records that, with one worker (or for the partitions it
# owns of both topics), its own stage one reads back a moment later: decoding them again
# (`decode_batch`: JSON, then an event from each dict) was 8% of the worker's samples under
# py-spy. The entry stage keeps the events it encoded, by a key written in the record's head,
# and stage one takes them back instead of decoding. The record on Kafka is the same whether
# or not anyone takes its events: every other reader (another worker after a rebalance, a
# restart, the sink) decodes it, and the events are equal either way (tests/unit/stream/
# test_handoff.py). The key is random per process (128 bits) and counts up, so no other
# process's record can match an entry.

_HANDOFF_HEAD = b'{"f":%d,"h":"' % FORMAT
_KEY_BYTES = 40  # 32 hex digits of the process's token, 8 of the count


class Handoff:
    """Events of this process's batch records until its stage one takes them; bounded (the
    oldest go first), so a stage one that lags or never comes costs a decode, not memory."""

    def __init__(self, max_events: int = 20_000) -> None:
        self.max_events = max_events
        self._token = secrets.token_hex(16).encode()
        self._count = 0
        self._held: dict[bytes, list[RoutedEvent]] = {}
        self._events = 0

    def __len__(self) -> int:
        return self._events

    def put(self, events: list[RoutedEvent]) -> bytes:
        """Hold `events` (the content of one batch record); returns the key for its head."""
        self._count = (self._count + 1) & 0xFFFFFFFF
        key = self._token + b"%08x" % self._count
        self._held[key] = events
        self._events += len(events)
        while self._events > self.max_events:
            self._events -= len(self._held.pop(next(iter(self._held))))
        return key

    def take(self, value: bytes) -> list[RoutedEvent] | None:
        """The events of batch record `value` if this process wrote it and still holds them
        (each only once); None: decode it."""
        if not value.startswith(_HANDOFF_HEAD):
            return None
        start = len(_HANDOFF_HEAD)
        events = self._held.pop(value[start:start + _KEY_BYTES], None)
        if events is not None:
            self._events -= len(events)
        return events


_FORMAT_3 = b'{"f":3,'
_FORMAT_2 = b'{"f":2,'


def _entries(value: bytes) -> list[list[Any]]:
    """The entries of a batch record of any format, as format 3's (see the module docstring),
    each raw record as bytes; ValueError for a record that is not one."""
    try:
        return _entries_of(value)
    except (TypeError, KeyError, AttributeError, IndexError) as exc:
        raise ValueError(f"not a journey batch record of a format this version reads: "
                         f"{type(exc).__name__}: {exc}") from None


def _entries_of(value: bytes) -> list[list[Any]]:
    if value.startswith(_FORMAT_3):
        return _entries_tailed(value, 3)
    if value.startswith(_FORMAT_2):
        return [_from_dict_entry(entry) for entry in _entries_tailed(value, 2)]
    data = orjson.loads(value)
    if not isinstance(data, dict) or data.get("f") != 1:
        found = data.get("f") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not a journey batch of format 1, 2 or {FORMAT} (found {found!r})")
    old: list[list[Any]] = data["e"]
    for entry in old:
        entry[3] = entry[3].encode("utf-8")
    return [_from_dict_entry(entry) for entry in old]


def _from_dict_entry(entry: list[Any]) -> list[Any]:
    """An entry of format 1 or 2 (the raw record already bytes) as format 3's."""
    sp, offset, arrival, raw, event, ms, digest = entry
    return event_row(event_from_dict(event, ms), [sp, offset, arrival, raw, ms, digest])


def _entries_tailed(value: bytes, form: int) -> list[list[Any]]:
    """The entries of a record of format 2 or 3 (raws after the JSON), raw records as bytes."""
    what = f"a journey batch of format {form}"
    at, end = raws_at(value, what, len(_FORMAT_3))
    try:
        found: list[list[Any]] = orjson.loads(memoryview(value)[:at])["e"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{what} whose JSON part does not read: {exc}") from None
    # Each entry as this format lays it out (a record another producer wrote must not reach
    # the column building or the event rebuilding, which trust the layout).
    width = _ENTRY_WIDTH if form == 3 else 7
    if type(found) is not list or any(type(e) is not list or len(e) != width for e in found):
        raise ValueError(f"{what} whose entries are not lists of {width} items")
    # the times the core computes with: a float, or an event time it cannot write as text,
    # made it fail at every restart (`python -m bench.fuzz_internal`); the event's other fields
    # are checked as the event is built (`decode_batch`)
    if form == 3 and any(type(e[2]) is not int or not is_instant(e[OCCURRED_MS_AT])
                         for e in found):
        raise ValueError(f"{what} whose entries' arrival times are not ints or whose event "
                         f"times are not {describe_instants()}")
    take_raws(value, found, RAW_AT, at, end, what)
    return found


_ENTRY_WIDTH = EVENT_AT + len(ROW_FIELDS)  # format 3: where from, when, digest, the event's row


def decode_batch(value: bytes) -> list[RoutedEvent]:
    """The events of a batch record, rebuilt without validating again (the entry stage did),
    each with the content digest the entry stage computed for it (not computed again).

    >>> from datetime import UTC, datetime
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "interaction",
    ...                     "web", "web", "use")
    >>> [(r.event == e, r.raw) for r in decode_batch(join_items([encode_item(3, 7, 5, b"{}", e)],
    ...                                                           [b"{}"]))]
    [(True, b'{}')]
    """
    entries = _entries(value)
    try:
        return [RoutedEvent(entry[0], entry[1], entry[2], entry[RAW_AT],
                            with_digest(event_from_row(entry, EVENT_AT, entry[OCCURRED_MS_AT]),
                                        entry[DIGEST_AT]))
                for entry in entries]
    except (TypeError, IndexError, KeyError, AttributeError) as exc:
        # values of the wrong kind in an entry of the right layout: not a record we wrote
        raise ValueError(f"a journey batch whose entries do not rebuild events: "
                         f"{type(exc).__name__}: {exc}") from None


# Withdrawals from the claims stage (pipeline/stream/claims.py) travel on the same topic, on
# the partition of the journeys they change, so its owner applies them in order with the events.
WITHDRAWALS = "w"
_WITHDRAWAL_KINDS = (STR, STR, INT)  # journey key, event_id, content digest
_WITHDRAWALS_HEAD = b'{"f":"w",'


def encode_withdrawals(items: list[list[Any]]) -> bytes:
    """A withdrawal record: [[journey key, event_id, content digest], ...].

    >>> decode_withdrawals(encode_withdrawals([["j-1", "e1", 7]]))
    [['j-1', 'e1', 7]]
    >>> decode_withdrawals(join_items([], [])) is None
    True
    """
    return orjson.dumps({"f": WITHDRAWALS, "w": items})


def decode_withdrawals(value: bytes) -> list[list[Any]] | None:
    """The withdrawals of a withdrawal record; None for a batch record of events."""
    if not value.startswith(_WITHDRAWALS_HEAD):
        return None
    try:
        items: list[list[Any]] = orjson.loads(value)["w"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"a withdrawal record that does not read: {exc}") from None
    if type(items) is not list:
        raise ValueError("a withdrawal record whose items are not a list")
    for i, item in enumerate(items):
        check_row(item, _WITHDRAWAL_KINDS,
                  f"a withdrawal record (item {i}: [journey key, event_id, content digest])")
    return items


def decode_entries(value: bytes) -> list[list[Any]]:
    """The entries of a batch record (format 3's layout, whatever its format): the sink's
    `touchpoint_events` rows (`tables.touchpoint_columns`), without building events. A
    withdrawal record has none."""
    if value.startswith(_WITHDRAWALS_HEAD):
        return []
    return _entries(value)


def decode_rows(value: bytes) -> Iterator[tuple[dict[str, Any], int, int, bytes]]:
    """(event dict, source partition, source offset, raw record) of each event of a batch
    record: `touchpoint_events` records for `tables.rows` and `tables.columnar` (the dict
    carries the event's content digest for the row's version, `tables.DIGEST_KEY`, and its
    occurred time in epoch ms, `tables.OCCURRED_MS_KEY`). The sink takes `decode_entries`
    instead; this builds each event's dict (the backfill's and the tests' form)."""
    for entry in decode_entries(value):
        event = event_to_dict(event_from_row(entry, EVENT_AT, entry[OCCURRED_MS_AT]))
        event[DIGEST_KEY] = entry[DIGEST_AT]
        event[OCCURRED_MS_KEY] = entry[OCCURRED_MS_AT]
        yield event, entry[0], entry[1], entry[RAW_AT]
