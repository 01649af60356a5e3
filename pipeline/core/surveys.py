"""The metric kinds: NPS, CES, CSAT, negative-end share (docs/design.md 1, "Survey metrics").

One class per kind owns everything about it: its sufficient statistics (counts and sums, exact
in floating point because CES answers on the 1-7 scale are multiples of 0.5, so buckets merge
into any window exactly, in any order), `update` / `revert` / `merge` (`+=`, river's model), its
layout (`columns`: which columns of a `MetricRecord` hold its numbers, in the order of its number
vector, what the drop detector adds and subtracts; `vector`, `from_vector`, `vector_of`,
`record_counts`, `from_record` follow it), its interval (`result`) and its
two-sample test (`compare`), and how it reads in an alert (`direction`, `title`, `digits`).
`WINDOW_TYPES` maps a record's `metric` name to its class: the one place a name picks a kind
(the drop detector looks it up once per series and holds the class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Self

from pipeline.core.records import MetricRecord
from pipeline.core.stats import adjusted_wald_nps, t95, wilson, z_test

# The values of a MetricRecord's `COUNT_COLUMNS` (pipeline.core.records), in their order: each
# kind fills its own `columns`, zeros elsewhere.
RecordCounts = tuple[int, int, int, float, float, int, int, int]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A metric's value over some answers, with its 95% interval (None without answers)."""

    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


def _unpooled_test(current: NpsWindow | CesWindow, baseline: NpsWindow | CesWindow
                   ) -> tuple[float, float]:
    """(effect, two-sided p) of a z test on the per-answer variances of two samples (NPS's
    trinomial variance, CES's sample variance: Welch's unpooled test)."""
    v1, v2 = current.score(), baseline.score()
    if v1 is None or v2 is None:
        return 0.0, 1.0
    effect = v1 - v2
    return effect, z_test(effect, current.variance() / current.n
                          + baseline.variance() / baseline.n)


class NpsWindow:
    """Net Promoter Score: promoters 9-10, passives 7-8, detractors 0-6.

    >>> w = NpsWindow(promoters=60, passives=25, detractors=15)
    >>> r = w.result()
    >>> r.n, r.value, round(r.ci_low, 1), round(r.ci_high, 1)
    (100, 45.0, 29.3, 58.0)
    >>> w.update(10); w.update(3); w.promoters, w.detractors
    (61, 16)
    """

    __slots__ = ("detractors", "passives", "promoters")
    metric: ClassVar[str] = "nps"
    # The layout, declared once: the record columns the kind's numbers go to, in the order of its
    # vector and of its constructor's arguments (the methods below are written out for speed;
    # tests/unit/core/test_core_metric_kinds.py holds each of them to this).
    columns: ClassVar[tuple[str, ...]] = ("promoters", "passives", "detractors")
    direction: ClassVar[int] = 1  # +1: higher is better (a drop is bad)
    title: ClassVar[str] = "NPS"  # how an alert names it
    digits: ClassVar[int] = 1  # decimals an alert shows
    # Counted when its journey closes (an idle gap after the last event), not when an answer
    # arrives: the drop detector evaluates it `DropConfig.negative_end_delay_ms` later.
    counted_at_close: ClassVar[bool] = False

    def __init__(self, promoters: int = 0, passives: int = 0, detractors: int = 0) -> None:
        self.promoters = promoters
        self.passives = passives
        self.detractors = detractors

    @property
    def n(self) -> int:
        return self.promoters + self.passives + self.detractors

    def update(self, item: int) -> None:
        if item >= 9:
            self.promoters += 1
        elif item >= 7:
            self.passives += 1
        else:
            self.detractors += 1

    def revert(self, item: int) -> None:
        """Undo `update(item)` (a replaced answer; river's update/revert)."""
        if item >= 9:
            self.promoters -= 1
        elif item >= 7:
            self.passives -= 1
        else:
            self.detractors -= 1

    def merge(self, other: Self) -> Self:
        return type(self)(self.promoters + other.promoters, self.passives + other.passives,
                          self.detractors + other.detractors)

    def __iadd__(self, other: Self) -> Self:
        self.promoters += other.promoters
        self.passives += other.passives
        self.detractors += other.detractors
        return self

    def vector(self) -> list[float]:
        return [float(self.promoters), float(self.passives), float(self.detractors)]

    @classmethod
    def from_vector(cls, v: list[float]) -> Self:
        return cls(int(v[0]), int(v[1]), int(v[2]))

    @staticmethod
    def count_of(v: list[float]) -> int:
        """`from_vector(v).n` without building the window."""
        return int(v[0] + v[1] + v[2])

    @staticmethod
    def vector_of(record: MetricRecord) -> list[float]:
        """`from_record(record).vector()` without building the window."""
        return [float(record.promoters), float(record.passives), float(record.detractors)]

    @classmethod
    def from_record(cls, record: MetricRecord) -> Self:
        return cls(record.promoters, record.passives, record.detractors)

    def record_counts(self) -> RecordCounts:
        return (self.promoters, self.passives, self.detractors, 0.0, 0.0, 0, 0, 0)

    def compare(self, baseline: NpsWindow) -> tuple[float, float]:
        """(effect = this - baseline in points, two-sided p), on the trinomial variances."""
        return _unpooled_test(self, baseline)

    def score(self) -> float | None:
        """NPS in points, 100 x (P - D) / n."""
        n = self.n
        return 100.0 * (self.promoters - self.detractors) / n if n else None

    def variance(self) -> float:
        """Per-answer trinomial variance of the promoter-minus-detractor score (in points^2)."""
        n = self.n
        if not n:
            return 0.0
        p = self.promoters / n
        d = self.detractors / n
        return 10000.0 * (p + d - (p - d) ** 2)

    def result(self) -> Estimate:
        n = self.n
        if not n:
            return Estimate(0, None, None, None)
        low, high = adjusted_wald_nps(self.promoters, self.detractors, n)
        return Estimate(n, self.score(), low, high)


class CesWindow:
    """Customer Effort Score on 1-7 (higher = easier): mean with a Student t interval, share
    easy (>= 5), hard (<= 3).

    Items are answers already on the 1-7 scale (`valence.ces_on_7` maps 1-5 answers).

    >>> w = CesWindow()
    >>> for x in (7.0, 5.5, 4.0, 2.5, 1.0): w.update(x)
    >>> r = w.result()
    >>> r.n, r.value, round(r.ci_low, 3), round(r.ci_high, 3), w.easy, w.hard
    (5, 4.0, 1.055, 6.945, 2, 2)
    """

    __slots__ = ("easy", "hard", "n", "total", "total_sq")
    metric: ClassVar[str] = "ces"
    columns: ClassVar[tuple[str, ...]] = ("n", "total", "total_sq", "easy", "hard")
    direction: ClassVar[int] = 1
    title: ClassVar[str] = "CES"
    digits: ClassVar[int] = 2
    counted_at_close: ClassVar[bool] = False

    def __init__(self, n: int = 0, total: float = 0.0, total_sq: float = 0.0, easy: int = 0,
                 hard: int = 0) -> None:
        self.n = n
        self.total = total
        self.total_sq = total_sq
        self.easy = easy
        self.hard = hard

    def update(self, item: float) -> None:
        self.n += 1
        self.total += item
        self.total_sq += item * item
        if item >= 5.0:
            self.easy += 1
        elif item <= 3.0:
            self.hard += 1

    def revert(self, item: float) -> None:
        """Undo `update(item)`. Exact: answers on the 1-7 scale are multiples of 0.5, and so
        are their sums; their squares multiples of 0.25."""
        self.n -= 1
        self.total -= item
        self.total_sq -= item * item
        if item >= 5.0:
            self.easy -= 1
        elif item <= 3.0:
            self.hard -= 1

    def merge(self, other: Self) -> Self:
        return type(self)(self.n + other.n, self.total + other.total,
                          self.total_sq + other.total_sq, self.easy + other.easy,
                          self.hard + other.hard)

    def __iadd__(self, other: Self) -> Self:
        self.n += other.n
        self.total += other.total
        self.total_sq += other.total_sq
        self.easy += other.easy
        self.hard += other.hard
        return self

    def vector(self) -> list[float]:
        return [float(self.n), self.total, self.total_sq, float(self.easy), float(self.hard)]

    @classmethod
    def from_vector(cls, v: list[float]) -> Self:
        return cls(int(v[0]), v[1], v[2], int(v[3]), int(v[4]))

    @staticmethod
    def count_of(v: list[float]) -> int:
        return int(v[0])

    @staticmethod
    def vector_of(record: MetricRecord) -> list[float]:
        return [float(record.n), record.total, record.total_sq, float(record.easy),
                float(record.hard)]

    @classmethod
    def from_record(cls, record: MetricRecord) -> Self:
        return cls(record.n, record.total, record.total_sq, record.easy, record.hard)

    def record_counts(self) -> RecordCounts:
        return (0, 0, 0, self.total, self.total_sq, self.easy, self.hard, 0)

    def compare(self, baseline: CesWindow) -> tuple[float, float]:
        """(effect = this - baseline on the 1-7 scale, two-sided p): Welch's unpooled test."""
        return _unpooled_test(self, baseline)

    def score(self) -> float | None:
        return self.total / self.n if self.n else None

    def variance(self) -> float:
        """Sample variance of the answers (n - 1 denominator; 0 below two answers)."""
        n = self.n
        if n < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total * self.total / n) / (n - 1))

    def share_easy(self) -> float | None:
        return self.easy / self.n if self.n else None

    def share_hard(self) -> float | None:
        return self.hard / self.n if self.n else None

    def result(self) -> Estimate:
        n = self.n
        if not n:
            return Estimate(0, None, None, None)
        mean = self.total / n
        # Student t with n - 1 degrees of freedom (`stats.t95`): the normal 1.96 covered
        # 0.68-0.88 at n = 2-5 (issue 16). One answer: no spread to go on, the mean alone.
        half = t95(n - 1) * math.sqrt(self.variance() / n) if n >= 2 else 0.0
        return Estimate(n, mean, max(1.0, mean - half), min(7.0, mean + half))


class ShareWindow:
    """A share of yes answers with a Wilson interval; counts may take deltas (+1 / -1)."""

    __slots__ = ("n", "positives")
    metric: ClassVar[str] = "share"
    columns: ClassVar[tuple[str, ...]] = ("n", "positives")
    direction: ClassVar[int] = 1
    title: ClassVar[str] = "share"
    digits: ClassVar[int] = 2
    counted_at_close: ClassVar[bool] = False

    def __init__(self, n: int = 0, positives: int = 0) -> None:
        self.n = n
        self.positives = positives

    def update(self, item: bool) -> None:
        self.n += 1
        if item:
            self.positives += 1

    def apply_delta(self, item: bool, sign: int) -> None:
        self.n += sign
        if item:
            self.positives += sign

    def merge(self, other: Self) -> Self:
        return type(self)(self.n + other.n, self.positives + other.positives)

    def __iadd__(self, other: Self) -> Self:
        self.n += other.n
        self.positives += other.positives
        return self

    def vector(self) -> list[float]:
        return [float(self.n), float(self.positives)]

    @classmethod
    def from_vector(cls, v: list[float]) -> Self:
        return cls(int(v[0]), int(v[1]))

    @staticmethod
    def count_of(v: list[float]) -> int:
        return int(v[0])

    @staticmethod
    def vector_of(record: MetricRecord) -> list[float]:
        return [float(record.n), float(record.positives)]

    @classmethod
    def from_record(cls, record: MetricRecord) -> Self:
        return cls(record.n, record.positives)

    def record_counts(self) -> RecordCounts:
        return (0, 0, 0, 0.0, 0.0, 0, 0, self.positives)

    def compare(self, baseline: ShareWindow) -> tuple[float, float]:
        """(effect = this - baseline share, two-sided p): pooled two-proportion z test."""
        v1, v2 = self.score(), baseline.score()
        if v1 is None or v2 is None:
            return 0.0, 1.0
        n1, n2 = self.n, baseline.n
        pooled = (self.positives + baseline.positives) / (n1 + n2)
        return v1 - v2, z_test(v1 - v2, pooled * (1 - pooled) * (1 / n1 + 1 / n2))

    def score(self) -> float | None:
        return self.positives / self.n if self.n > 0 else None

    def variance(self) -> float:
        p = self.score()
        return 0.0 if p is None else p * (1 - p)

    def result(self) -> Estimate:
        if self.n <= 0:
            return Estimate(0, None, None, None)
        low, high = wilson(self.positives, self.n)
        return Estimate(self.n, self.positives / self.n, low, high)


class CsatWindow(ShareWindow):
    """CSAT on 1-5: share satisfied (4-5), Wilson interval.

    >>> w = CsatWindow()
    >>> for x in (5, 4, 4, 3, 1): w.update(x)
    >>> r = w.result()
    >>> r.value, round(r.ci_low, 3), round(r.ci_high, 3)
    (0.6, 0.231, 0.882)
    """

    __slots__ = ()
    metric: ClassVar[str] = "csat"
    title: ClassVar[str] = "CSAT satisfied share"

    def update(self, item: int | bool) -> None:
        self.n += 1
        if item >= 4:
            self.positives += 1

    def revert(self, item: int) -> None:
        """Undo `update(item)`."""
        self.n -= 1
        if item >= 4:
            self.positives -= 1


class NegativeEndWindow(ShareWindow):
    """Share of closed journeys whose end valence is below 0; retractable by deltas.

    >>> w = NegativeEndWindow()
    >>> w.apply_delta(True, 1); w.apply_delta(False, 1); w.apply_delta(True, -1)
    >>> w.n, w.positives, w.result().value
    (1, 0, 0.0)
    """

    __slots__ = ()
    metric: ClassVar[str] = "negative_end"
    direction: ClassVar[int] = -1
    title: ClassVar[str] = "negative-end share"
    counted_at_close: ClassVar[bool] = True


SurveyWindow = NpsWindow | CesWindow | CsatWindow | NegativeEndWindow
WINDOW_TYPES: dict[str, type[SurveyWindow]] = {
    kind.metric: kind for kind in (NpsWindow, CesWindow, CsatWindow, NegativeEndWindow)}
# The kinds counted from survey answers (update / revert by answer), not at a journey's close.
AnswerWindow = NpsWindow | CesWindow | CsatWindow
ANSWER_WINDOWS: dict[str, type[AnswerWindow]] = {
    kind.metric: kind for kind in (NpsWindow, CesWindow, CsatWindow)}
