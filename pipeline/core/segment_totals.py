"""Exact bucket totals of one segment from idempotent contributions (the stream's stage two).

In the stream, stage one (per input partition) turns each accepted event into *contributions*
and sends them, keyed by segment, to stage two, which owns whole segments:

- a survey answer: (metric, bucket, event_id) -> answer; set semantics, so an answer sent twice
  (redelivery after a crash) counts once;
- a journey's negative-end contribution: journey_id -> (bucket, negative) or None; a later state
  replaces the earlier one, so re-sending the current state is harmless.

Because every contribution is an idempotent upsert, stage two's totals are exact under
at-least-once delivery, and a bucket's totals equal the sum of `SurveyBuckets` partials over all
source partitions (what `ExperienceEngine` and `peakend replay` compute).

>>> totals = SegmentTotals("channel", "phone", bucket_ms=60_000)
>>> totals.add_answer("nps", 0, "e1", 10)
True
>>> totals.add_answer("nps", 0, "e1", 10)  # the same answer again: no change
False
>>> totals.set_end("j1", (0, True))
True
>>> [(r.metric, r.n, r.version) for r in totals.flush()]
[('negative_end', 1, 1), ('nps', 1, 1)]
"""

from __future__ import annotations

from typing import Any

from pipeline.core.buckets import Partial, SurveyWindow, to_record
from pipeline.core.records import MetricRecord
from pipeline.core.surveys import CesWindow, CsatWindow, NegativeEndWindow, NpsWindow

Answer = int | float
EndContribution = tuple[int, bool]  # bucket_start, end valence < 0

_WINDOWS: dict[str, type[NpsWindow | CesWindow | CsatWindow]] = {
    "nps": NpsWindow,
    "ces": CesWindow,
    "csat": CsatWindow,
}


class SegmentTotals:
    """All buckets of one segment (segment_dim = segment_value), built from contributions."""

    __slots__ = ("_dirty", "answers", "bucket_ms", "dim", "ends", "value", "versions")

    def __init__(self, dim: str, value: str, bucket_ms: int) -> None:
        self.dim = dim
        self.value = value
        self.bucket_ms = bucket_ms
        # metric -> bucket_start -> event_id -> answer (CES already on the 1-7 scale)
        self.answers: dict[str, dict[int, dict[str, Answer]]] = {}
        self.ends: dict[str, EndContribution] = {}
        # "metric@bucket_start" -> updates applied; grows only, so sinks can upsert on it
        self.versions: dict[str, int] = {}
        self._dirty: set[tuple[str, int]] = set()

    def add_answer(self, metric: str, bucket_start: int, event_id: str, answer: Answer) -> bool:
        """Count one survey answer; False when this event's answer is already counted."""
        bucket = self.answers.setdefault(metric, {}).setdefault(bucket_start, {})
        if event_id in bucket:
            return False
        bucket[event_id] = answer
        self._touch(metric, bucket_start)
        return True

    def set_end(self, journey_id: str, contribution: EndContribution | None) -> bool:
        """Set a journey's negative-end contribution (None: it counts nowhere, e.g. reopened)."""
        old = self.ends.get(journey_id)
        if old == contribution:
            return False
        if old is not None:
            self._touch("negative_end", old[0])
        if contribution is None:
            del self.ends[journey_id]
        else:
            self.ends[journey_id] = (int(contribution[0]), bool(contribution[1]))
            self._touch("negative_end", int(contribution[0]))
        return True

    def _touch(self, metric: str, bucket_start: int) -> None:
        slot = f"{metric}@{bucket_start}"
        self.versions[slot] = self.versions.get(slot, 0) + 1
        self._dirty.add((metric, bucket_start))

    def window(self, metric: str, bucket_start: int) -> SurveyWindow:
        """The accumulator of one bucket, folded from its contributions in a fixed order."""
        if metric == "negative_end":
            acc = NegativeEndWindow()
            for contribution in self.ends.values():
                if contribution[0] == bucket_start:
                    acc.update(contribution[1])
            return acc
        window = _WINDOWS[metric]()
        for _, answer in sorted(self.answers.get(metric, {}).get(bucket_start, {}).items()):
            window.update(answer)  # type: ignore[arg-type]
        return window

    def flush(self) -> list[MetricRecord]:
        """Records of the buckets changed since the last flush (source_partition 0: this stage
        owns the whole segment), in a deterministic order."""
        out = []
        for metric, start in sorted(self._dirty):
            partial = Partial(self.window(metric, start), self.versions[f"{metric}@{start}"])
            out.append(to_record((metric, self.dim, self.value, start), partial,
                                 self.bucket_ms, 0))
        self._dirty.clear()
        return out

    def evict(self, before_ms: int) -> None:
        """Forget flushed buckets that end at or before `before_ms` (final: no acceptable event
        can reach them). Their versions go too; the records already emitted stay authoritative."""
        width = self.bucket_ms
        for metric, buckets in self.answers.items():
            for start in [s for s in buckets if s + width <= before_ms]:
                if (metric, start) not in self._dirty:
                    del buckets[start]
                    self.versions.pop(f"{metric}@{start}", None)
        for journey_id in [j for j, c in self.ends.items() if c[0] + width <= before_ms]:
            if ("negative_end", self.ends[journey_id][0]) not in self._dirty:
                self.versions.pop(f"negative_end@{self.ends[journey_id][0]}", None)
                del self.ends[journey_id]

    def is_empty(self) -> bool:
        return not self.ends and not any(self.answers.values())

    def to_state(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "value": self.value,
            "answers": {m: {str(s): a for s, a in b.items()} for m, b in self.answers.items()},
            "ends": {j: [c[0], c[1]] for j, c in self.ends.items()},
            "versions": dict(self.versions),
            # changed since the last flush: a snapshot taken before the flush must still emit
            # them after a restore (redelivered contributions are no-ops and would not re-mark)
            "dirty": [[m, s] for m, s in sorted(self._dirty)],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], bucket_ms: int) -> SegmentTotals:
        totals = cls(state["dim"], state["value"], bucket_ms)
        totals.answers = {
            m: {int(s): dict(a) for s, a in b.items()} for m, b in state["answers"].items()
        }
        totals.ends = {j: (int(c[0]), bool(c[1])) for j, c in state["ends"].items()}
        totals.versions = {k: int(v) for k, v in state["versions"].items()}
        totals._dirty = {(str(m), int(s)) for m, s in state.get("dirty", [])}
        return totals
