"""Fixed metric buckets per segment: the partial states one input partition contributes.

`SurveyBuckets` is stage one of the two-stage aggregation (docs/design.md 2): it counts the survey
answers and negative-end deltas of one source partition into buckets keyed by
(metric, segment_dim, segment_value, bucket_start); `flush()` returns a `MetricRecord` for every
partial that changed since the last flush. A `MetricRecord` holds the partial's sufficient
statistics and version, so it doubles as its state: `snapshot_key` stores a partial as its
record (and whether it awaits a flush), `restore_key` rebuilds it; `snapshot()` / `resume=` do all
of them (the state contract, `pipeline.core.protocol`).
"""

from __future__ import annotations

from collections.abc import Iterable
from heapq import heappop, heappush
from typing import Any, Final

from pipeline.core.clock import NEVER_MS
from pipeline.core.config import WindowConfig
from pipeline.core.event import TouchpointEvent
from pipeline.core.journeys import EndDelta, Retraction
from pipeline.core.records import MetricRecord
from pipeline.core.surveys import (
    WINDOW_TYPES,
    CesWindow,
    CsatWindow,
    NegativeEndWindow,
    NpsWindow,
    SurveyWindow,
)
from pipeline.core.valence import survey_ces_on_7

BucketKey = tuple[str, str, str, int]  # metric, segment_dim, segment_value, bucket_start
_EVICT_EVERY_BUCKETS: Final = 15


class Partial:
    """One bucket's accumulator, its key and version (the number of updates applied to it), and
    whether it changed since the last flush (a flag, not a set of keys: no key hashing per
    update)."""

    __slots__ = ("acc", "dirty", "key", "version")

    def __init__(self, acc: SurveyWindow, key: BucketKey, version: int = 0) -> None:
        self.acc = acc
        self.key = key
        self.version = version
        self.dirty = False


def segments_of(event: TouchpointEvent, attribute_keys: Iterable[str]) -> list[tuple[str, str]]:
    """The segments an event counts in: all, touchpoint, channel, stage, configured attributes."""
    out = [("all", "all"), ("touchpoint", event.touchpoint), ("channel", event.channel),
           ("stage", event.stage)]
    attrs = event.attributes
    if attrs:
        for k in attribute_keys:  # a loop, not a generator: compiled, no generator object
            value = attrs.get(k)
            if value is not None:
                out.append((k, value))
    return out


def to_record(partial: Partial, bucket_ms: int, partition: int) -> MetricRecord:
    metric, dim, value, start = partial.key
    acc = partial.acc
    est = acc.result()
    promoters, passives, detractors, total, total_sq, easy, hard, positives = acc.record_counts()
    return MetricRecord(
        metric=metric, segment_dim=dim, segment_value=value, window_start=start,
        window_end=start + bucket_ms, source_partition=partition, n=est.n, value=est.value,
        ci_low=est.ci_low, ci_high=est.ci_high, promoters=promoters, passives=passives,
        detractors=detractors, total=total, total_sq=total_sq, easy=easy, hard=hard,
        positives=positives, version=partial.version,
    )


def window_of(record: MetricRecord) -> SurveyWindow:
    """The accumulator a metric record describes (its sufficient statistics)."""
    kind = WINDOW_TYPES.get(record.metric)
    if kind is None:
        raise ValueError(f"unknown metric {record.metric!r}")
    return kind.from_record(record)


class SurveyBuckets:
    """Partial metric buckets of one source partition (stage one of the aggregation)."""

    def __init__(self, config: WindowConfig | None = None, partition: int = 0, *,
                 resume: dict[str, Any] | None = None) -> None:
        """`resume`: a `snapshot()` to continue from (the partition is configuration: pass
        the same one)."""
        self.config = config or WindowConfig()
        self.partition = partition
        self._width = self.config.bucket_ms
        self._attr_keys = self.config.segment_attributes
        self._partials: dict[BucketKey, Partial] = {}
        # The partials held, by bucket start, and those starts in a heap: eviction pops the
        # final starts instead of scanning every partial held (a day of buckets per segment at
        # the default lateness), so each partial costs O(log n) to forget. The partials
        # themselves, not their keys: eviction reads each one's flag without a lookup by its
        # four-part key.
        self._by_start: dict[int, list[Partial]] = {}
        self._starts: list[int] = []
        # Negative_end partials evicted at final, held `end_hold_ms` longer as plain numbers:
        # bucket start -> "dim\x1fvalue" -> version, n and positives (the negative ends) in
        # one int (`_pack`): the dict of a start holds a str and an int per bucket, nothing the
        # collector tracks, so it is not tracked itself. A journey with a producer id closes
        # into the bucket of its last event up to a journey idle time (7 days) later, and
        # must add to it at a higher version, as the stream's segment stage does, not make it
        # anew at version 1 (which ClickHouse drops for the earlier row). As plain numbers,
        # not partials: a week of them held as `Partial`s roughly tripled the objects the
        # collector tracks in a 90-day replay, and tuples by (dim, value) or a dict per start
        # and dim still added some (docs/core.md; `python -m bench.bench_held_objects`). In
        # order of eviction, which is by start but for a partial evicted at a later scan:
        # forgotten from the front, so that one may be held a little longer, which changes
        # nothing (no close comes later than the hold).
        self._end_hold = self.config.end_hold_ms
        self._final_ends: dict[int, dict[str, int]] = {}
        self.final_before_ms = NEVER_MS
        self._scanned_before_ms = NEVER_MS
        self._dirty: list[Partial] = []  # changed since the last flush, each once
        if resume is not None:
            for raw in resume["partials"]:
                record = MetricRecord.from_dict(raw["record"])
                self.restore_key(record_key(record), raw)
            for start, dim, value, version, n, positives in resume.get("final_ends", ()):
                self._final_ends.setdefault(int(start), {})[_segment_key(str(dim), str(value))] = (
                    _pack(int(version), int(n), int(positives)))
            self.final_before_ms = int(resume["final_before_ms"])
            self._scanned_before_ms = int(resume["scanned_before_ms"])

    def _partial(self, key: BucketKey, window: type[SurveyWindow]) -> Partial:
        """The partial of `key` (made empty if new), counted as changed."""
        p = self._partials.get(key)
        if p is None:
            p = self._partials[key] = Partial(window(), key)
            self._index(p)
        p.version += 1
        if not p.dirty:
            p.dirty = True
            self._dirty.append(p)
        return p

    def add_event(self, event: TouchpointEvent) -> None:
        """Count the survey answers of an accepted, non-duplicate event (others are ignored)."""
        survey = event.survey
        if survey is None:
            return
        nps, ces, csat = survey.nps, survey.ces, survey.csat
        if nps is None and ces is None and csat is None:
            return
        ms = event.occurred_ms
        start = ms - ms % self._width
        ces7 = survey_ces_on_7(survey, self.config.ces_5_more_effort)
        self._count(segments_of(event, self._attr_keys), start, nps, ces7, csat, True)

    def retract(self, answers: Retraction) -> None:
        """Take back the answers of an event copy another copy replaced (its conflict lost,
        pipeline.core.journeys). A final bucket keeps them, as `apply_end` keeps a journey."""
        start = answers.at_ms - answers.at_ms % self._width
        if start + self._width <= self.final_before_ms:
            return
        self._count(answers.segments, start, answers.nps, answers.ces, answers.csat, False)

    def _count(self, segments: Iterable[tuple[str, str]], start: int, nps: int | None,
               ces7: float | None, csat: int | None, add: bool) -> None:
        """Add (or, `add` false, take back) one event's answers in the bucket at `start` of
        each segment."""
        for dim, value in segments:
            if nps is not None:
                acc = self._partial(("nps", dim, value, start), NpsWindow).acc
                assert isinstance(acc, NpsWindow)
                if add:
                    acc.update(nps)
                else:
                    acc.revert(nps)
            if ces7 is not None:
                ces_acc = self._partial(("ces", dim, value, start), CesWindow).acc
                assert isinstance(ces_acc, CesWindow)
                if add:
                    ces_acc.update(ces7)
                else:
                    ces_acc.revert(ces7)
            if csat is not None:
                csat_acc = self._partial(("csat", dim, value, start), CsatWindow).acc
                assert isinstance(csat_acc, CsatWindow)
                if add:
                    csat_acc.update(csat)
                else:
                    csat_acc.revert(csat)

    def apply_end(self, delta: EndDelta) -> None:
        """Count (+1) or retract (-1) one closed journey in the negative_end buckets.

        A retraction from a bucket already past the lateness horizon is dropped: that bucket is
        final (and may be evicted), so the journey stays counted there; retracting would leave
        negative counts in a fresh partial. The stream applies the same rule
        (`final_before_ms`)."""
        start = delta.at_ms - delta.at_ms % self._width
        if start + self._width <= self.final_before_ms:
            if delta.sign < 0:
                return
            held = self._final_ends.get(start)
            if held is not None:
                self._take_back(start, held, delta.segments)
        for dim, value in delta.segments:
            acc = self._partial(("negative_end", dim, value, start), NegativeEndWindow).acc
            assert isinstance(acc, NegativeEndWindow)
            acc.apply_delta(delta.negative, delta.sign)

    def _take_back(self, start: int, held: dict[str, int],
                   segments: Iterable[tuple[str, str]]) -> None:
        """Make the held final negative_end buckets of `segments` partials again (a journey
        closes into them), with their counts and versions."""
        for dim, value in segments:
            packed = held.pop(_segment_key(dim, value), None)
            if packed is None:
                continue
            version, n, positives = _unpack(packed)
            key = ("negative_end", dim, value, start)
            partial = self._partials[key] = Partial(NegativeEndWindow(n, positives), key,
                                                    version)
            self._index(partial)
        if not held:
            del self._final_ends[start]

    def flush(self) -> list[MetricRecord]:
        """Records of the partials changed since the last flush, in a deterministic order."""
        changed = sorted(self._dirty, key=_key_of)
        self._dirty = []
        for p in changed:
            p.dirty = False
        return [to_record(p, self._width, self.partition) for p in changed]

    def evict(self, before_ms: int) -> int:
        """Buckets that end at or before `before_ms` are final (stream time is a lateness past
        them): forget their flushed partials (negative_end ones are held `end_hold_ms` longer
        as numbers: `_final_ends`). Returns how many partials went.

        The horizon moves at once; the final partials are forgotten only every
        `_EVICT_EVERY_BUCKETS` buckets of progress, oldest start first (a heap of starts), so
        the cost does not grow with the partials held. A partial not flushed yet stays until
        a later call finds it flushed."""
        self.final_before_ms = max(self.final_before_ms, before_ms)
        if before_ms - self._scanned_before_ms < _EVICT_EVERY_BUCKETS * self._width:
            return 0
        self._scanned_before_ms = before_ms
        gone = 0
        kept: list[Partial] = []  # not flushed yet: retried at the next scan
        starts = self._starts
        partials = self._partials
        final_ends = self._final_ends
        while starts and starts[0] + self._width <= before_ms:
            for partial in self._by_start.pop(heappop(starts)):
                if partial.dirty:
                    kept.append(partial)
                    continue
                key = partial.key
                del partials[key]
                gone += 1
                if key[0] == "negative_end":
                    acc = partial.acc
                    assert isinstance(acc, NegativeEndWindow)
                    held = final_ends.get(key[3])
                    if held is None:
                        held = final_ends[key[3]] = {}
                    held[_segment_key(key[1], key[2])] = _pack(partial.version, acc.n,
                                                               acc.positives)
        for partial in kept:
            self._index(partial)
        due = before_ms - self._end_hold - self._width  # held final ends up to this start go
        while final_ends:
            start = next(iter(final_ends))
            if start > due:
                break
            del final_ends[start]
        return gone

    def _index(self, partial: Partial) -> None:
        start = partial.key[3]
        held = self._by_start.get(start)
        if held is None:
            self._by_start[start] = [partial]
            heappush(self._starts, start)
        else:
            held.append(partial)

    def snapshot_key(self, key: BucketKey) -> dict[str, Any] | None:
        """One partial as JSON-able data: its record (`MetricRecord.to_dict`) and whether it
        awaits a flush; None when not held."""
        partial = self._partials.get(key)
        if partial is None:
            return None
        return {"record": to_record(partial, self._width, self.partition).to_dict(),
                "dirty": partial.dirty}

    def restore_key(self, key: BucketKey, state: dict[str, Any] | None) -> None:
        """Replace one partial by `state` (from `snapshot_key`; None removes it). A state
        without "dirty" is a record as emitted: already flushed."""
        held = self._partials.pop(key, None)
        if held is not None:
            self._by_start[key[3]].remove(held)
            if held.dirty:
                self._dirty.remove(held)
        if state is None:
            return
        record = MetricRecord.from_dict(state["record"])
        if record_key(record) != key:
            raise ValueError(f"partial state of {record_key(record)} restored under {key}")
        partial = self._partials[key] = Partial(window_of(record), key, record.version)
        self._index(partial)
        if state.get("dirty"):
            partial.dirty = True
            self._dirty.append(partial)

    def snapshot(self) -> dict[str, Any]:
        """Every partial held (`snapshot_key`) and the eviction horizon."""
        return {"partials": [self.snapshot_key(k) for k in sorted(self._partials)],
                "final_ends": sorted([start, *segment.split(_SEPARATOR, 1), *_unpack(packed)]
                                     for start, held in self._final_ends.items()
                                     for segment, packed in held.items()),
                "final_before_ms": self.final_before_ms,
                "scanned_before_ms": self._scanned_before_ms}

    def records(self) -> list[MetricRecord]:
        """Records of every partial held (for a full dump)."""
        return [to_record(self._partials[k], self._width, self.partition)
                for k in sorted(self._partials)]

    def __len__(self) -> int:
        return len(self._partials)


_COUNT_BITS: Final = 32
_SEPARATOR: Final = "\x1f"  # never in a dimension name (settings: ATTRIBUTE_KEY)


def _segment_key(dim: str, value: str) -> str:
    return f"{dim}{_SEPARATOR}{value}"


def _pack(version: int, n: int, positives: int) -> int:
    """A held negative_end bucket's numbers as one int (no object for the collector).

    >>> _unpack(_pack(7, 3, 2))
    (7, 3, 2)
    """
    if not (0 <= positives <= n < 1 << _COUNT_BITS and version >= 0):
        raise ValueError(f"negative_end bucket counts out of range: n {n}, "
                         f"negatives {positives}, version {version}")
    return (version << 2 * _COUNT_BITS) | (n << _COUNT_BITS) | positives


def _unpack(packed: int) -> tuple[int, int, int]:
    """(version, n, positives) of `_pack`."""
    mask = (1 << _COUNT_BITS) - 1
    return packed >> 2 * _COUNT_BITS, (packed >> _COUNT_BITS) & mask, packed & mask


def record_key(record: MetricRecord) -> BucketKey:
    """The partial a metric record describes."""
    return (record.metric, record.segment_dim, record.segment_value, record.window_start)


def _key_of(partial: Partial) -> BucketKey:
    return partial.key
