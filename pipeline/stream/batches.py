"""Journey batches: the records of the internal topic between the entry stage and stage one.

The entry stage (`pipeline.stream.entry`) reads the touchpoints topic, validates each record once
and writes the valid events, grouped by the partition of their journey key, as *batch records*:
many events per Kafka record. Stage one (a Faust agent) then pays Faust's per-record cost once
per batch instead of once per event, and the ClickHouse sink takes its `touchpoint_events` rows
from the same records without parsing the raw events again.

A batch record is JSON: `{"f": 1, "e": [[source_partition, source_offset, arrival_ms, raw,
event, occurred_ms, content_digest], ...]}` where `raw` is the record exactly as the producer
wrote it (for dead letters, which keep the original) and `event` is the validated, scrubbed
event in `event_to_dict` form.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from pipeline.contract import event_from_dict, event_to_dict
from pipeline.core.event import TouchpointEvent, content_digest, with_digest
from pipeline.storage.tables import DIGEST_KEY

FORMAT = 1
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


def encode_item(source_partition: int, source_offset: int, arrival_ms: int, raw: bytes,
                event: TouchpointEvent) -> bytes:
    """One event's entry of a batch record, as JSON (the batch joins them). orjson: this and
    the decoding below run for every event, and the standard library's json took about as
    long as validating the event (bench/bench_pipeline.py, docs/streaming.md)."""
    return orjson.dumps([source_partition, source_offset, arrival_ms, raw.decode("utf-8"),
                         event_to_dict(event), event.occurred_ms, content_digest(event)])


_HEAD = b'{"f":%d,"e":[' % FORMAT


def join_items(items: list[bytes]) -> bytes:
    """A batch record from entries made by `encode_item`."""
    return _HEAD + b",".join(items) + b"]}"


def _entries(value: bytes) -> list[list[Any]]:
    data = orjson.loads(value)
    if not isinstance(data, dict) or data.get("f") != FORMAT:
        found = data.get("f") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not a journey batch of format {FORMAT} (found {found!r})")
    entries: list[list[Any]] = data["e"]
    return entries


def decode_batch(value: bytes) -> list[RoutedEvent]:
    """The events of a batch record, rebuilt without validating again (the entry stage did),
    each with the content digest the entry stage computed for it (not computed again).

    >>> from datetime import UTC, datetime
    >>> e = TouchpointEvent("e1", datetime(2026, 11, 22, tzinfo=UTC), "p", "c1", "interaction",
    ...                     "web", "web", "use")
    >>> [r.event == e for r in decode_batch(join_items([encode_item(3, 7, 5, b"{}", e)]))]
    [True]
    """
    return [RoutedEvent(sp, offset, arrival, raw.encode("utf-8"),
                        with_digest(event_from_dict(event, ms), digest))
            for sp, offset, arrival, raw, event, ms, digest in _entries(value)]


# Withdrawals from the claims stage (pipeline/stream/claims.py) travel on the same topic, on
# the partition of the journeys they change, so its owner applies them in order with the events.
WITHDRAWALS = "w"
_WITHDRAWALS_HEAD = b'{"f":"w",'


def encode_withdrawals(items: list[list[Any]]) -> bytes:
    """A withdrawal record: [[journey key, event_id, content digest], ...].

    >>> decode_withdrawals(encode_withdrawals([["j-1", "e1", 7]]))
    [['j-1', 'e1', 7]]
    >>> decode_withdrawals(join_items([])) is None
    True
    """
    return orjson.dumps({"f": WITHDRAWALS, "w": items})


def decode_withdrawals(value: bytes) -> list[list[Any]] | None:
    """The withdrawals of a withdrawal record; None for a batch record of events."""
    if not value.startswith(_WITHDRAWALS_HEAD):
        return None
    items: list[list[Any]] = orjson.loads(value)["w"]
    return items


def decode_rows(value: bytes) -> Iterator[tuple[dict[str, Any], int, int, bytes]]:
    """(event dict, source partition, source offset, raw record) of each event of a batch
    record: the sink's `touchpoint_events` rows, without building events (the dict carries
    the event's content digest for the row's version: `tables.DIGEST_KEY`). A withdrawal
    record has no rows."""
    if value.startswith(_WITHDRAWALS_HEAD):
        return
    for sp, offset, _arrival, raw, event, _ms, digest in _entries(value):
        event[DIGEST_KEY] = digest
        yield event, sp, offset, raw.encode("utf-8")
