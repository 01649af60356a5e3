"""Peak-end moments of one journey: an order-independent accumulator.

Every choice is a maximum under a total order (peak, best, worst, end, first, last, outcome) and
the valence sum is kept in integer fixed point, so any arrival order of the same events, and any
merge tree, gives identical results, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple, cast


class Entry(NamedTuple):
    """One applied event, compact and JSON-able: the field names for the type checker and the
    reader. At run time an entry is a plain tuple built by `new_entry`, and code indexes it
    by the positions below (`entry[MS]`), never reads a field by name.

    Why a plain tuple: the collector untracks exact tuples of atoms after their first young
    collection, never a tuple subclass, and a journey state is mostly entries (400,000 of the
    1.5 million tracked objects at the end of the core benchmark). The NamedTuple type still
    matters to mypyc: a fixed-length `tuple[...]` type would be unboxed into a C struct and
    boxed into a new tuple at every store into a list."""

    ms: int
    event_id: str
    type: str
    valence: float | None  # None for markers
    touchpoint: str
    channel: str
    stage: str
    outcome: str
    customer_id: str
    segments: tuple[tuple[str, str], ...]  # configured attributes as ((key, value), ...)


# The position of each field in an entry (`Entry`'s order), for `entry[VALENCE]` where the
# entry is a plain tuple; compiled, each is the literal index itself.
MS: Final = 0
EVENT_ID: Final = 1
TYPE: Final = 2
VALENCE: Final = 3
TOUCHPOINT: Final = 4
CHANNEL: Final = 5
STAGE: Final = 6
OUTCOME: Final = 7
CUSTOMER_ID: Final = 8
SEGMENTS: Final = 9


def new_entry(values: tuple[int, str, str, float | None, str, str, str, str, str,
                            tuple[tuple[str, str], ...]]) -> Entry:
    """The entry holding `values` (all fields, in order): that very tuple.

    >>> entry = new_entry((5, "e1", "interaction", -0.5, "hotline", "phone", "use", "", "c1", ()))
    >>> entry[0], type(entry) is tuple
    (5, True)
    """
    return cast(Entry, values)


# A field with more distinct values than this only empties its cache now and then.
SHARED_MAX: Final = 4096


class SharedStrings:
    """One object per distinct value of an entry's few-valued fields (type, touchpoint,
    channel, stage, outcome) and segments, where each parsed event or restored snapshot made
    its own: an entry is kept for days, and held six strings each equal to thousands of others
    (stage one's resident memory at day 3 fell by 14% with them shared: docs/streaming.md,
    twenty-first round). Bounded: each cache is emptied when full."""

    def __init__(self) -> None:
        self._words: dict[str, str] = {}
        self._segments: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}

    def word(self, value: str) -> str:
        """`value`, or the equal string held already.

        >>> shared = SharedStrings()
        >>> a = shared.word("".join(["ho", "tline"]))
        >>> shared.word("".join(["hot", "line"])) is a
        True
        """
        words = self._words
        held = words.get(value)
        if held is not None:
            return held
        if len(words) >= SHARED_MAX:
            words.clear()
        words[value] = value
        return value

    def segments(self, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """`value`, or the equal segments held already."""
        held = self._segments.get(value)
        if held is not None:
            return held
        if len(self._segments) >= SHARED_MAX:
            self._segments.clear()
        self._segments[value] = value
        return value


# Valences are summed as integers in units of 1e-12: exact, so the mean ignores arrival order.
FIXED: Final = 10**12


def to_fixed(valence: float) -> int:
    """`valence` in integer units of 1/FIXED, rounded half away from zero (the builtin `round`
    costs a bound-method call per value, even compiled).

    >>> to_fixed(-0.9), to_fixed(0.25), to_fixed(0.0)
    (-900000000000, 250000000000, 0)
    """
    x = valence * FIXED
    return int(x + 0.5) if x >= 0.0 else -int(0.5 - x)


def peak_beats(a: Entry, b: Entry) -> bool:
    """Does moment `a` beat `b` as the peak? Largest |valence|, then negative, then earliest."""
    av = a[VALENCE]
    bv = b[VALENCE]
    assert av is not None and bv is not None
    aa = abs(av)
    ba = abs(bv)
    if aa != ba:
        return aa > ba
    if av != bv:
        return av < bv
    return (a[MS], a[EVENT_ID]) < (b[MS], b[EVENT_ID])


@dataclass(frozen=True, slots=True)
class PeakEnd:
    """The summary of a journey's moments (`JourneyMoments.result()`)."""

    peak: float | None
    end: float | None
    peak_end_score: float | None
    mean: float | None
    best: float | None
    worst: float | None
    moments: int
    events: int
    duration_ms: int


class JourneyMoments:
    """Accumulates the moments of one journey (the `Accumulator` protocol).

    >>> m = JourneyMoments()
    >>> for ms, eid, v in [(0, "a", 0.1), (1000, "b", -0.9), (2000, "c", 0.6)]:
    ...     m.update(new_entry((ms, eid, "interaction", v, "tp", "web", "use", "", "cust", ())))
    >>> r = m.result()
    >>> (r.peak, r.end, round(r.peak_end_score, 12), r.best, r.worst)
    (-0.9, 0.6, -0.15, 0.6, -0.9)
    >>> round(r.mean, 12), r.duration_ms
    (-0.066666666667, 2000)
    """

    __slots__ = (
        "best",
        "best_v",
        "end",
        "end_ms",
        "end_window_ms",
        "events",
        "first",
        "first_ms",
        "has_end_marker",
        "last",
        "last_ms",
        "moments",
        "outcome",
        "peak",
        "peak_v",
        "sum_fixed",
        "tail",
        "worst",
        "worst_v",
    )

    def __init__(self, end_window_ms: int = 0) -> None:
        self.end_window_ms = end_window_ms
        self.events = 0
        self.moments = 0
        self.sum_fixed = 0
        self.first: Entry | None = None  # earliest event, markers included
        self.last: Entry | None = None  # latest event, markers included
        self.peak: Entry | None = None
        self.best: Entry | None = None
        self.worst: Entry | None = None
        self.end: Entry | None = None  # last moment
        self.outcome: Entry | None = None  # last outcome event naming an outcome
        self.has_end_marker = False
        # moments inside the end window; None while there is none (always without a window: one
        # container fewer per journey for the collector to walk)
        self.tail: list[Entry] | None = None
        # The time or valence of first, last, end, peak, best and worst, kept beside them: every
        # update compares against all six, and compiled, these are plain machine numbers in
        # this object where the entries' are boxed objects behind two more pointers (cache
        # misses: the journey state is far larger than the cache). Meaningless while the entry
        # beside it is None.
        self.first_ms = 0
        self.last_ms = 0
        self.end_ms = 0
        self.peak_v = 0.0
        self.best_v = 0.0
        self.worst_v = 0.0

    def update(self, entry: Entry) -> None:
        ms = entry[MS]
        eid = entry[EVENT_ID]
        self.events += 1
        first = self.first
        if first is None or ms < self.first_ms or (ms == self.first_ms and eid < first[EVENT_ID]):
            self.first = entry
            self.first_ms = ms
        last = self.last
        if last is None or ms > self.last_ms or (ms == self.last_ms and eid > last[EVENT_ID]):
            self.last = entry
            self.last_ms = ms
        kind = entry[TYPE]
        if kind == "journey_end":
            self.has_end_marker = True
        elif kind == "outcome" and entry[OUTCOME]:
            out = self.outcome
            if out is None or ms > out[MS] or (ms == out[MS] and eid > out[EVENT_ID]):
                self.outcome = entry
        v = entry[VALENCE]
        if v is None:
            return
        self.moments += 1
        self.sum_fixed += to_fixed(v)
        peak = self.peak
        if peak is None:
            self.peak = entry
            self.peak_v = v
        else:
            pv = self.peak_v
            a, b = abs(v), abs(pv)
            # peak_beats, on the kept valence: the entry is read only on a tie
            if a > b or (a == b and (v < pv or (v == pv and _earlier(entry, peak)))):
                self.peak = entry
                self.peak_v = v
        best = self.best
        if best is None or v > self.best_v or (v == self.best_v and _earlier(entry, best)):
            self.best = entry
            self.best_v = v
        worst = self.worst
        if worst is None or v < self.worst_v or (v == self.worst_v and _earlier(entry, worst)):
            self.worst = entry
            self.worst_v = v
        end = self.end
        if end is None or ms > self.end_ms or (ms == self.end_ms and eid > end[EVENT_ID]):
            self.end = entry
            self.end_ms = ms
        if self.end_window_ms > 0:
            self._add_tail(entry)

    def _add_tail(self, entry: Entry) -> None:
        end = self.end
        assert end is not None
        cutoff = end[MS] - self.end_window_ms
        # the end moved later: drop what fell out of the window (compare by (ms, event id), not
        # identity: compiled code may box the same entry into a new tuple)
        tail = self.tail
        if tail is None:
            tail = self.tail = []
        elif end[MS] == entry[MS] and end[EVENT_ID] == entry[EVENT_ID]:
            tail = self.tail = [e for e in tail if e[MS] >= cutoff]
        if entry[MS] >= cutoff:
            tail.append(entry)

    def merge(self, other: JourneyMoments) -> JourneyMoments:
        """A new accumulator holding both (their events must be disjoint)."""
        out = JourneyMoments(self.end_window_ms)
        out.events = self.events + other.events
        out.moments = self.moments + other.moments
        out.sum_fixed = self.sum_fixed + other.sum_fixed
        out.has_end_marker = self.has_end_marker or other.has_end_marker
        out.first = _pick(self.first, other.first, _earlier)
        out.last = _pick(self.last, other.last, _later)
        out.outcome = _pick(self.outcome, other.outcome, _later)
        out.peak = _pick(self.peak, other.peak, peak_beats)
        out.best = _pick(self.best, other.best, _higher)
        out.worst = _pick(self.worst, other.worst, _lower)
        out.end = _pick(self.end, other.end, _later)
        out._keep_numbers()
        if out.end is not None and self.end_window_ms > 0:
            cutoff = out.end[MS] - self.end_window_ms
            out.tail = [e for e in (self.tail or []) + (other.tail or []) if e[MS] >= cutoff]
        return out

    def _keep_numbers(self) -> None:
        """Set the kept times and valences from the entries (after a merge)."""
        first, last, end = self.first, self.last, self.end
        self.first_ms = 0 if first is None else first[MS]
        self.last_ms = 0 if last is None else last[MS]
        self.end_ms = 0 if end is None else end[MS]
        self.peak_v = _valence_or_zero(self.peak)
        self.best_v = _valence_or_zero(self.best)
        self.worst_v = _valence_or_zero(self.worst)

    def end_valence(self) -> float | None:
        end = self.end
        if end is None:
            return None
        tail = self.tail
        if tail is None or len(tail) <= 1:
            return end[VALENCE]
        total = sum(to_fixed(e[VALENCE] or 0.0) for e in tail)
        return total / len(tail) / FIXED

    def mean_valence(self) -> float | None:
        return self.sum_fixed / self.moments / FIXED if self.moments else None

    def result(self) -> PeakEnd:
        peak = None if self.peak is None else self.peak[VALENCE]
        end = self.end_valence()
        first, last = self.first, self.last
        return PeakEnd(
            peak=peak,
            end=end,
            peak_end_score=None if peak is None or end is None else (peak + end) / 2,
            mean=self.mean_valence(),
            best=None if self.best is None else self.best[VALENCE],
            worst=None if self.worst is None else self.worst[VALENCE],
            moments=self.moments,
            events=self.events,
            duration_ms=0 if first is None or last is None else last[MS] - first[MS],
        )


def _valence_or_zero(entry: Entry | None) -> float:
    v = None if entry is None else entry[VALENCE]
    return 0.0 if v is None else v


def _earlier(a: Entry, b: Entry) -> bool:
    return (a[MS], a[EVENT_ID]) < (b[MS], b[EVENT_ID])


def _later(a: Entry, b: Entry) -> bool:
    return (a[MS], a[EVENT_ID]) > (b[MS], b[EVENT_ID])


def _higher(a: Entry, b: Entry) -> bool:
    av, bv = a[VALENCE], b[VALENCE]
    assert av is not None and bv is not None
    return av > bv or (av == bv and _earlier(a, b))


def _lower(a: Entry, b: Entry) -> bool:
    av, bv = a[VALENCE], b[VALENCE]
    assert av is not None and bv is not None
    return av < bv or (av == bv and _earlier(a, b))


def _pick(a: Entry | None, b: Entry | None, beats: Callable[[Entry, Entry], bool]) -> Entry | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if beats(b, a) else a
