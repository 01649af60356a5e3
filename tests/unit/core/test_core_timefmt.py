"""Epoch-millisecond text: the cached minute prefix never changes what `format_ms` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.timefmt import format_ms, parse_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = st.integers(min_value=-30_000_000_000_000, max_value=200_000_000_000_000)


@given(st.lists(MS, min_size=1, max_size=50))
def test_format_ms_is_rfc3339_with_milliseconds(values: list[int]) -> None:
    for ms in values:  # several per example: hits and misses of the minute cache
        moment = EPOCH + timedelta(milliseconds=ms)
        assert format_ms(ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert parse_ms(format_ms(ms)) == ms


def test_neighbouring_minutes_do_not_share_a_prefix() -> None:
    edge = 1_795_367_460_000  # 17:11:00.000
    assert format_ms(edge - 1) == "2026-11-22T17:10:59.999Z"
    assert format_ms(edge) == "2026-11-22T17:11:00.000Z"
