"""Messages from stage one to the segment stage (internal topic `<app_id>-contributions`).

Compact JSON, on the partition Kafka's partitioner gives the segment (`dim=value`), so one
worker owns each segment (batches carry no key; records keyed by the segment, written before,
went there too).

>>> answer("channel", "phone", "nps", 60000, "e1", 9)
('channel=phone', {'t': 'a', 'd': 'channel', 's': 'phone', 'm': 'nps', 'b': 60000, 'e': 'e1', 'v': 9})
>>> end("all", "all", "j1", None)
('all=all', {'t': 'e', 'd': 'all', 's': 'all', 'j': 'j1', 'c': None})
"""  # noqa: E501

from __future__ import annotations

from typing import Any

import orjson

from pipeline.core.surveys import ANSWER_WINDOWS
from pipeline.stream.layout import (
    INT,
    LIST,
    NUMBER,
    STR,
    TIME,
    Kinds,
    check_fields,
    describe_instants,
    is_instant,
    kind_names,
    optional,
)

ANSWER = "a"
RETRACT = "r"
END = "e"
WATERMARK = "w"
BATCH = "b"

# Each message's members and their kinds, as the functions below write them (`read` checks a
# record against them before the segment stage applies any of it).
_SEGMENT: dict[str, Kinds] = {"t": STR, "d": STR, "s": STR}
LAYOUTS: dict[str, dict[str, Kinds]] = {
    ANSWER: {**_SEGMENT, "m": STR, "b": TIME, "e": STR, "v": NUMBER},
    RETRACT: {**_SEGMENT, "m": STR, "b": TIME, "e": STR},
    END: {**_SEGMENT, "j": STR, "c": optional(LIST)},
    WATERMARK: {"t": STR, "p": INT, "w": TIME},
    BATCH: {"t": STR, "items": LIST},
}
# A batch may end with a watermark of its source partition ("p", "w": both or neither), applied
# after its items, as a watermark record sent after the batch was (`batch`).
_OPTIONAL: dict[str, dict[str, Kinds]] = {END: {"k": INT}, BATCH: {"p": INT, "w": TIME}}
# An answer's value by metric, as the windows take it (`surveys.*Window.update`): whole scores
# for NPS and CSAT, CES on the 1-7 scale in halves. A float NPS score made the compiled window
# fail on it (TypeError) at every restart of the stage.
ANSWER_VALUE_KINDS: dict[str, Kinds] = {
    metric: NUMBER if metric == "ces" else INT for metric in ANSWER_WINDOWS}


def segment_key(dim: str, value: str) -> str:
    return f"{dim}={value}"


def answer(
    dim: str, value: str, metric: str, bucket: int, event_id: str, score: float | int
) -> tuple[str, dict[str, Any]]:
    return segment_key(dim, value), {
        "t": ANSWER, "d": dim, "s": value, "m": metric, "b": bucket, "e": event_id, "v": score,
    }


def retract(dim: str, value: str, metric: str, bucket: int, event_id: str
            ) -> tuple[str, dict[str, Any]]:
    """Take an event's answer back out of a bucket (a copy with other content replaced it)."""
    return segment_key(dim, value), {
        "t": RETRACT, "d": dim, "s": value, "m": metric, "b": bucket, "e": event_id,
    }


def end(
    dim: str, value: str, journey_id: str, contribution: tuple[int, bool] | None,
    keep_previous: bool = False,
) -> tuple[str, dict[str, Any]]:
    """A journey's negative-end contribution; `keep_previous`: its previous bucket was final
    when it moved and keeps counting it (`SegmentTotals.set_end`)."""
    c = None if contribution is None else [contribution[0], contribution[1]]
    message: dict[str, Any] = {"t": END, "d": dim, "s": value, "j": journey_id, "c": c}
    if keep_previous:
        message["k"] = 1
    return segment_key(dim, value), message


def watermark(source_partition: int, watermark_ms: int) -> dict[str, Any]:
    """Sent to every partition of the contributions topic (no key)."""
    return {"t": WATERMARK, "p": source_partition, "w": watermark_ms}


def batch(items: list[dict[str, Any]], source_partition: int | None = None,
          watermark_ms: int | None = None) -> dict[str, Any]:
    """Contributions from one batch of input events: since the thirty-fifth round of
    docs/streaming.md those of every segment on one contributions partition (the outbox's
    `_contribution_batches`), each segment's together and in order; before, one segment's
    (still read: the segment stage applies items in order, whatever their segments). With a
    `watermark_ms`, the source partition's watermark after the items: what a `watermark`
    record sent after this batch says, in the same record.

    >>> batch([], 2, 60000)
    {'t': 'b', 'items': [], 'p': 2, 'w': 60000}
    """
    message: dict[str, Any] = {"t": BATCH, "items": items}
    if watermark_ms is not None:
        assert source_partition is not None
        message.update(batch_watermark(source_partition, watermark_ms))
    return message


def batch_watermark(source_partition: int, watermark_ms: int) -> dict[str, int]:
    """The members a batch carries its source partition's watermark in (`batch`).

    >>> batch_watermark(2, 60000)
    {'p': 2, 'w': 60000}
    """
    return {"p": source_partition, "w": watermark_ms}


def read(value: bytes) -> dict[str, Any]:
    """A contributions record, checked whole (pipeline/stream/layout.py: why); a ValueError
    names what does not read.

    >>> read(b'{"t":"w","p":0,"w":5}')
    {'t': 'w', 'p': 0, 'w': 5}
    >>> read(b'{"t":"b","items":[{"t":"a","d":"all","s":"all","m":"nps","b":0,"e":"e1"}]}')
    Traceback (most recent call last):
    ValueError: a contribution (item 0 of a batch) without "v"
    """
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"a contributions record that is not JSON: {exc}") from None
    if type(message) is dict and len(message) == 2 and message.get("t") == BATCH \
            and type(message.get("items")) is list:  # (nearly every record: no call)
        items = message["items"]
    else:
        kind = _kind_of(message, "a contributions record")
        _check(message, kind, "a contributions record")
        items = message["items"] if kind == BATCH else []
    for i, item in enumerate(items):
        if not _reads(item):  # (most items: a few lookups, no message built)
            what = f"a contribution (item {i} of a batch)"
            item_kind = _kind_of(item, what)
            if item_kind in (BATCH, WATERMARK):
                raise ValueError(f"{what} of kind {item_kind!r}, which a batch does not hold")
            _check(item, item_kind, what)  # raises, unless an item `_reads` passes over
    return message  # type: ignore[no-any-return]


_ITEM_LAYOUTS = {kind: tuple(LAYOUTS[kind].items()) for kind in (ANSWER, RETRACT, END)}
_ABSENT = object()


def _reads(item: Any) -> bool:
    """True for a batch item `_check` would pass, checked at the least cost (a contributions
    record holds a few per event): False for an item it may refuse, or that holds an optional
    member."""
    if type(item) is not dict:
        return False
    kind = item.get("t")
    if type(kind) is not str:
        return False
    layout = _ITEM_LAYOUTS.get(kind)
    if layout is None or len(item) != len(layout):
        return False
    for name, kinds in layout:
        if type(item.get(name, _ABSENT)) not in kinds:
            return False
    if kind == END:
        return _is_contribution(item["c"])
    metric = item["m"]
    return (metric in ANSWER_WINDOWS and is_instant(item["b"])
            and (kind == RETRACT or type(item["v"]) in ANSWER_VALUE_KINDS[metric]))


def _kind_of(message: Any, what: str) -> str:
    kind = message.get("t") if type(message) is dict else None
    if type(kind) is not str or kind not in LAYOUTS:
        raise ValueError(f"{what} of no kind this version reads (t = {kind!r})"
                         if type(message) is dict else f"{what} that is not an object")
    return kind


def _check(message: dict[str, Any], kind: str, what: str) -> None:
    check_fields(message, LAYOUTS[kind], _OPTIONAL.get(kind, {}), what)
    if kind in (ANSWER, RETRACT) and message["m"] not in ANSWER_WINDOWS:
        raise ValueError(f"{what} for a metric this version does not count ({message['m']!r})")
    if kind == ANSWER and type(message["v"]) not in ANSWER_VALUE_KINDS[message["m"]]:
        raise ValueError(f'{what} whose "v" is a {type(message["v"]).__name__}, not a '
                         f"{message['m']} answer ({kind_names(ANSWER_VALUE_KINDS[message['m']])})")
    if kind == END and not _is_contribution(message["c"]):
        raise ValueError(f'{what} whose "c" is not null or [bucket start, negative] (the start '
                         f"{describe_instants()})")
    if kind == BATCH and ("p" in message) != ("w" in message):
        raise ValueError(f'{what} with "{"p" if "p" in message else "w"}" but not '
                         f'"{"w" if "p" in message else "p"}" (a watermark needs both)')


def _is_contribution(c: list[Any] | None) -> bool:
    """An end's `c` as `end` writes it: null, or [bucket start, negative]."""
    return c is None or (len(c) == 2 and is_instant(c[0]) and type(c[1]) is bool)
