"""Messages from stage one to the segment stage (internal topic `<app_id>-contributions`).

Compact JSON; the Kafka key is the segment (`dim=value`) so one worker owns each segment.

>>> answer("channel", "phone", "nps", 60000, "e1", 9)
('channel=phone', {'t': 'a', 'd': 'channel', 's': 'phone', 'm': 'nps', 'b': 60000, 'e': 'e1', 'v': 9})
>>> end("all", "all", "j1", None)
('all=all', {'t': 'e', 'd': 'all', 's': 'all', 'j': 'j1', 'c': None})
"""  # noqa: E501

from __future__ import annotations

from typing import Any

ANSWER = "a"
RETRACT = "r"
END = "e"
WATERMARK = "w"
BATCH = "b"


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


def batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Contributions of one segment from one batch of input events, in order."""
    return {"t": BATCH, "items": items}
