"""Metric kinds as plain number vectors, so merged windows can add and subtract exactly.

Each kind's layout is its class's `columns` (`surveys.py`): the record columns its vector holds,
in order. All entries are integers or multiples of 0.25, so sums and differences are exact in
floating point and merged windows do not depend on update order. The functions here take the
metric's name (as a record holds it) and hand over to its class; `compare` takes the class.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.records import MetricRecord
from pipeline.core.surveys import WINDOW_TYPES, Estimate, SurveyWindow

Vector = list[float]
# A vector held as it is (a bucket's partial, its merged vector in the drop detector): a tuple,
# never changed in place. The functions below that only read a vector take either.
Frozen = tuple[float, ...]
Kind = type[SurveyWindow]  # a metric kind: its class (`WINDOW_TYPES` gives it from its name)
METRICS = tuple(WINDOW_TYPES)
# Derived from the kinds (surveys.py), read by the detector per series.
SIZE = {name: len(kind.columns) for name, kind in WINDOW_TYPES.items()}
DIRECTION = {name: kind.direction for name, kind in WINDOW_TYPES.items()}


def vector_of(record: MetricRecord) -> Vector:
    return WINDOW_TYPES[record.metric].vector_of(record)


def window(metric: str, v: Vector) -> SurveyWindow:
    return WINDOW_TYPES[metric].from_vector(v)


def count(metric: str, v: Vector) -> int:
    return WINDOW_TYPES[metric].count_of(v)


def estimate(metric: str, v: Vector) -> Estimate:
    return window(metric, v).result()


def two_sample(metric: str, current: Vector, baseline: Vector) -> tuple[float, float]:
    """(effect = current - baseline in the metric's unit, two-sided p): the kind's `compare`.

    NPS uses the trinomial variance of each sample, CES Welch's unpooled variance, the shares a
    pooled two-proportion test.

    >>> effect, p = two_sample("nps", [35, 30, 35], [45, 35, 20])
    >>> effect, round(p, 4)
    (-25.0, 0.0276)
    """
    return compare(WINDOW_TYPES[metric], current, baseline)


def compare(kind: Kind, current: Vector, baseline: Vector) -> tuple[float, float]:
    """`two_sample` for a caller that holds the kind (the drop detector, per series)."""
    return kind.from_vector(current).compare(kind.from_vector(baseline))  # type: ignore[arg-type]


def add(into: Vector, v: Sequence[float], sign: float = 1.0) -> None:
    # Hot (several calls per event): a counter, not enumerate, and no multiplication by a
    # sign of 1 (x * 1.0 == x and a + -x == a - x exactly, so results are the same).
    i = 0
    if sign == 1.0:
        for x in v:
            into[i] += x
            i += 1
    else:
        for x in v:
            into[i] += sign * x
            i += 1


def sub(into: Vector, v: Sequence[float]) -> None:
    """`add(into, v, -1.0)`."""
    i = 0
    for x in v:
        into[i] -= x
        i += 1  # noqa: SIM113  (a counter: faster than enumerate here, measured)


def move(source: Vector, target: Vector, v: Sequence[float]) -> None:
    """`sub(source, v)` and `add(target, v)` in one pass (a bucket moving between windows)."""
    i = 0
    for x in v:
        source[i] -= x
        target[i] += x
        i += 1  # noqa: SIM113  (as in `sub`)


def plus(v: Frozen, delta: Vector) -> Frozen:
    """`v + delta`, element by element, as a new tuple (`v` is left as it is).

    >>> plus((1.0, 2.0), [0.5, -2.0])
    (1.5, 0.0)
    """
    out = list(v)
    add(out, delta)
    return tuple(out)
