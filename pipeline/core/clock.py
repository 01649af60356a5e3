"""How far event time is trusted: the `future` verdict (docs/design.md 1, "Journey moments").

Stream time is the largest event time seen on a partition, so one event from a producer whose
clock runs ahead would move it forward for good and turn every later on-time event into a `late`
dead letter. An event is therefore judged against the time it reached us (the broker's append
time or the worker's clock in the stream; `--now` in replay and backfill), never against its own
producer's clock: further ahead than the allowed skew, it is a dead letter `future` and never
touches stream time or any state.
"""

from __future__ import annotations

from typing import Final

from pipeline.core.timefmt import format_ms

FUTURE: Final = "future"

# Instants before and after every event time a valid event can carry (year 1 to 9999 is about
# +-2.5e14 ms; these are +-4.6e18): "never seen yet" for watermarks and deadlines, "no limit" for
# horizons. Plain ints, so state that holds them stays JSON and compares without None checks.
NEVER_MS: Final = -(1 << 62)
FAR_MS: Final = 1 << 62


def is_future(event_ms: int, arrived_ms: int, max_skew_ms: int) -> bool:
    """True when the event is dated further ahead than `max_skew_ms` of its arrival.

    >>> is_future(1_000 + 300_000, 1_000, 300_000), is_future(1_001 + 300_000, 1_000, 300_000)
    (False, True)
    """
    return event_ms > arrived_ms + max_skew_ms


def future_error(event_ms: int, arrived_ms: int, max_skew_ms: int) -> str:
    """The dead-letter message of a `future` event.

    >>> future_error(172_800_000, 0, 300_000)
    'occurred_at: 172800 s ahead of 1970-01-01T00:00:00.000Z, the time the event reached us, more than the allowed clock skew of 300 s (PEAKEND_MAX_CLOCK_SKEW_SECONDS): the producer clock runs ahead'
    """  # noqa: E501
    ahead_s = (event_ms - arrived_ms) / 1000
    return (
        f"occurred_at: {ahead_s:.0f} s ahead of {format_ms(arrived_ms)}, the time the event "
        f"reached us, more than the allowed clock skew of {max_skew_ms // 1000} s "
        f"(PEAKEND_MAX_CLOCK_SKEW_SECONDS): the producer clock runs ahead"
    )


def conflict_error(event_id: str, kept: bool) -> str:
    """The dead-letter message of a `conflict`: this copy of an event_id met another with other
    content; of the two the copy with the smaller content digest is kept, whatever the order
    (pipeline.core.journeys, pipeline.core.claims), or under one journey key further apart in
    event time than the allowed lateness the older one (under two keys such copies are two
    events, with no letter). `kept`: this copy won and replaced the earlier one.

    >>> conflict_error("e1", True)[:62]
    "event_id: 'e1' arrived again with different content; this copy"
    """
    verdict = ("this copy is kept: it replaced the copy applied earlier, whose results were "
               "retracted" if kept else "the copy applied earlier is kept and this one is not "
               "applied")
    return (
        f"event_id: {event_id!r} arrived again with different content; {verdict} (of two "
        "copies the one with the smaller content digest wins, whatever the order, or the "
        "older one when they are further apart than the allowed lateness; send a changed "
        "event with a new event_id)"
    )


def late_error(event_ms: int, watermark_ms: int, lateness_ms: int, partition: int) -> str:
    """The dead-letter message of an event older than the allowed lateness.

    >>> late_error(0, 90_000_000, 86_400_000, 3)
    'occurred_at: 90000 s behind stream time 1970-01-02T01:00:00.000Z of partition 3, more than the allowed lateness of 86400 s'
    """  # noqa: E501
    behind_s = (watermark_ms - event_ms) / 1000
    return (
        f"occurred_at: {behind_s:.0f} s behind stream time {format_ms(watermark_ms)} of "
        f"partition {partition}, more than the allowed lateness of {lateness_ms // 1000} s"
    )
