"""Stage two of the stream, for one partition of the contributions topic: segment totals and
drop detection.

`SegmentStage` keeps a `SegmentTotals` per segment it owns and one `DropDetector`. Contributions
update the totals (idempotent upserts) and produce merged metric records (cx.metrics); watermark
messages from every stage-one partition give the merged stream time (the slowest input partition
seen so far, as in `ExperienceEngine`), which advances the detector (cx.alerts) and evicts final
buckets. No Faust object: the worker persists `dirty_state()` in a table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.config import CoreConfig
from pipeline.core.drops import DropDetector
from pipeline.core.records import AlertRecord, MetricRecord
from pipeline.core.segment_totals import SegmentTotals
from pipeline.stream import messages

SEGMENT_PREFIX = "segment:"
SERIES_PREFIX = "series:"


@dataclass(slots=True)
class StageTwoOutput:
    metrics: list[MetricRecord] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)


class SegmentStage:
    """Segments of one contributions partition; see the module docstring."""

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.bucket_ms = config.windows.bucket_ms
        self.totals: dict[str, SegmentTotals] = {}
        self.detector = DropDetector(config.drops, self.bucket_ms, config.windows.rolling_ms)
        # Source-partition watermarks are not persisted: they come back with the next watermark
        # messages, and until then the detector simply waits.
        self.watermarks: dict[int, int] = {}
        self.merged = -(1 << 62)
        self._dirty_segments: set[str] = set()

    def load(self, states: Iterable[tuple[str, Any]]) -> None:
        for key, state in states:
            if key.startswith(SEGMENT_PREFIX):
                self.totals[key[len(SEGMENT_PREFIX) :]] = SegmentTotals.from_state(
                    state, self.bucket_ms
                )
            elif key.startswith(SERIES_PREFIX):
                metric, dim, value = key[len(SERIES_PREFIX) :].split("|", 2)
                self.detector.load_series((metric, dim, value), state)

    def process(self, message: dict[str, Any]) -> StageTwoOutput:
        kind = message["t"]
        out = StageTwoOutput()
        if kind == messages.WATERMARK:
            self._advance(int(message["p"]), int(message["w"]), out)
            return out
        seg = messages.segment_key(message["d"], message["s"])
        totals = self.totals.get(seg)
        if totals is None:
            totals = self.totals[seg] = SegmentTotals(message["d"], message["s"], self.bucket_ms)
        if kind == messages.ANSWER:
            changed = totals.add_answer(message["m"], int(message["b"]), message["e"], message["v"])
        elif kind == messages.END:
            c = message["c"]
            changed = totals.set_end(message["j"], None if c is None else (int(c[0]), bool(c[1])))
        else:
            raise ValueError(f"unknown contribution kind {kind!r}")
        if changed:
            out.metrics = totals.flush()
            for record in out.metrics:
                self.detector.apply_partial(record)
            self._dirty_segments.add(seg)
        return out

    def _advance(self, source: int, watermark_ms: int, out: StageTwoOutput) -> None:
        if watermark_ms <= self.watermarks.get(source, -(1 << 62)):
            return
        self.watermarks[source] = watermark_ms
        merged = min(self.watermarks.values())
        if merged <= self.merged:
            return
        self.merged = merged
        out.alerts = self.detector.advance(merged)
        horizon = merged - self.config.windows.allowed_lateness_ms - self.bucket_ms
        for seg, totals in self.totals.items():
            before = (len(totals.ends), sum(len(b) for b in totals.answers.values()))
            totals.evict(horizon)
            if (len(totals.ends), sum(len(b) for b in totals.answers.values())) != before:
                self._dirty_segments.add(seg)

    def dirty_state(self) -> list[tuple[str, Any]]:
        """(table key, state or None) changed since the last call."""
        pairs: list[tuple[str, Any]] = []
        for seg in sorted(self._dirty_segments):
            totals = self.totals[seg]
            if totals.is_empty():
                del self.totals[seg]
                pairs.append((SEGMENT_PREFIX + seg, None))
            else:
                pairs.append((SEGMENT_PREFIX + seg, totals.to_state()))
        self._dirty_segments.clear()
        for key in sorted(self.detector.drain_dirty()):
            pairs.append((SERIES_PREFIX + "|".join(key), self.detector.dump_series(key)))
        return pairs
