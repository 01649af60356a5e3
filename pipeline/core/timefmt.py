"""Event time as integer epoch milliseconds, and its RFC 3339 text form for records.

The core compares and buckets integer milliseconds; text appears only at the record boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# day since the epoch -> 'YYYY-MM-DDT', a memo of a pure function: no result depends on what it
# holds (filled on a miss, emptied when full), so `format_ms` stays pure in behaviour. One entry
# per day, not per minute (as until 2026-12-02): a replay writes its metric records in key order,
# each series sweeping the whole history, and a minute memo of 8,192 entries (5.7 days) missed on
# almost every record of a 90-day history: 4.9-5.1 us a call against 0.44-0.52 over one day
# (issue 13 item 5, docs/core.md "Cost over long histories"). 8,192 days are 22 years.
# Kept as a plain dict rather than `functools.lru_cache` on a prefix function (issue 19
# asked): that costs more per call, measured with the standard library's timeit and valgrind's
# instruction count: interpreted +7% instructions (+10-15% time), compiled +23% (+35-50% time;
# a call of the cache object from compiled code goes through a tuple of arguments and
# `lru_cache` reorders its list on every hit). A dict subclass computing in `__missing__` cost
# +1% / +5%.
_DAYS: Final[dict[int, str]] = {}
_DAYS_MAX: Final = 8192
TWO_DIGITS: Final = tuple(f"{i:02d}" for i in range(60))
THREE_DIGITS: Final = tuple(f"{i:03d}" for i in range(1000))


def format_ms(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds and `Z`.

    >>> format_ms(1795367409123)
    '2026-11-22T17:10:09.123Z'
    >>> format_ms(-1)
    '1969-12-31T23:59:59.999Z'
    >>> format_ms(1795367400000), format_ms(1795367459999)
    ('2026-11-22T17:10:00.000Z', '2026-11-22T17:10:59.999Z')
    """
    day = ms // 86_400_000  # not divmod: compiled, that builds and unpacks a tuple of objects
    rest = ms - day * 86_400_000
    prefix = _DAYS.get(day)
    if prefix is None:
        # strftime is most of the cost and a history has few days: cache it (bounded)
        if len(_DAYS) >= _DAYS_MAX:
            _DAYS.clear()
        prefix = _DAYS[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    hour = rest // 3_600_000
    rest -= hour * 3_600_000
    minute = rest // 60_000
    rest -= minute * 60_000
    seconds = rest // 1000
    # one f-string: compiled, one string built from the parts (`+` made a string per step)
    return (f"{prefix}{TWO_DIGITS[hour]}:{TWO_DIGITS[minute]}:{TWO_DIGITS[seconds]}"
            f".{THREE_DIGITS[rest - seconds * 1000]}Z")


def parse_ms(text: str) -> int:
    """Inverse of `format_ms`; accepts any RFC 3339 offset.

    >>> parse_ms('2026-11-22T17:10:09.123Z')
    1795367409123
    >>> parse_ms('2026-11-22T18:10:09.123+01:00')
    1795367409123
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return (moment - _EPOCH) // _MS


def format_opt(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def parse_opt(text: str | None) -> int | None:
    return None if text is None or text == "" else parse_ms(text)
