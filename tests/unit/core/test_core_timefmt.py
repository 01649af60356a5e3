"""Epoch-millisecond text: the cached day prefix never changes what `format_ms` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.timefmt import format_ms, parse_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = st.integers(min_value=-30_000_000_000_000, max_value=200_000_000_000_000)


@given(st.lists(MS, min_size=1, max_size=50))
def test_format_ms_is_rfc3339_with_milliseconds(values: list[int]) -> None:
    for ms in values:  # several per example: hits and misses of the day cache
        moment = EPOCH + timedelta(milliseconds=ms)
        assert format_ms(ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert parse_ms(format_ms(ms)) == ms


def test_neighbouring_minutes_do_not_share_a_prefix() -> None:
    edge = 1_795_367_460_000  # 17:11:00.000
    assert format_ms(edge - 1) == "2026-11-22T17:10:59.999Z"
    assert format_ms(edge) == "2026-11-22T17:11:00.000Z"


def test_event_time_is_floored_to_the_millisecond_not_rounded() -> None:
    # issue 16: an answer at 10:59:59.9996 must land in the 10:59 bucket, not 11:00
    from datetime import UTC, datetime

    from pipeline.core.event import Survey, TouchpointEvent

    at = datetime(2026, 11, 22, 10, 59, 59, 999_600, tzinfo=UTC)
    event = TouchpointEvent("e1", at, "p", "c1", "survey", "web", "web", "use",
                            survey=Survey(nps=9))
    assert event.occurred_ms == parse_ms("2026-11-22T10:59:59.999Z")
    assert event.occurred_ms // 60_000 == parse_ms("2026-11-22T10:59:00.000Z") // 60_000
    before_epoch = datetime(1969, 12, 31, 23, 59, 59, 999_600, tzinfo=UTC)
    assert TouchpointEvent("e2", before_epoch, "p", "c1", "survey", "web", "web", "use",
                           survey=Survey(nps=9)).occurred_ms == -1


def test_a_long_history_in_key_order_fits_the_memo() -> None:
    # A replay writes each series' records across its whole history (issue 13 item 5): the memo
    # must hold such a sweep, or nearly every call pays for strftime again.
    from pipeline.core import timefmt

    start = 1_795_367_400_000
    for minute in range(0, 90 * 1440, 7):
        timefmt.format_ms(start + minute * 60_000)
    held = dict(timefmt._DAYS)
    for minute in range(0, 90 * 1440, 7):
        timefmt.format_ms(start + minute * 60_000)
    assert len(timefmt._DAYS) <= timefmt._DAYS_MAX
    assert all(timefmt._DAYS.get(day) == prefix for day, prefix in held.items())
    assert len(held) >= 90
