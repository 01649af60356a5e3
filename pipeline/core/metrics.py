"""Metric kinds as plain number vectors, so merged windows can add and subtract exactly.

Layouts: nps [promoters, passives, detractors]; ces [n, total, total_sq, easy, hard];
csat and negative_end [n, positives]. All entries are integers or multiples of 0.25, so sums and
differences are exact in floating point and merged windows do not depend on update order.
"""

from __future__ import annotations

from pipeline.core.records import MetricRecord
from pipeline.core.stats import z_test
from pipeline.core.surveys import CesWindow, CsatWindow, Estimate, NegativeEndWindow, NpsWindow

Vector = list[float]
METRICS = ("nps", "ces", "csat", "negative_end")
SIZE = {"nps": 3, "ces": 5, "csat": 2, "negative_end": 2}
# +1: higher is better (a drop is bad); -1: higher is worse (negative_end: a rise is bad)
DIRECTION = {"nps": 1, "ces": 1, "csat": 1, "negative_end": -1}


def vector_of(record: MetricRecord) -> Vector:
    m = record.metric
    if m == "nps":
        return [float(record.promoters), float(record.passives), float(record.detractors)]
    if m == "ces":
        return [float(record.n), record.total, record.total_sq, float(record.easy),
                float(record.hard)]
    return [float(record.n), float(record.positives)]


def window(metric: str, v: Vector) -> NpsWindow | CesWindow | CsatWindow | NegativeEndWindow:
    if metric == "nps":
        return NpsWindow(int(v[0]), int(v[1]), int(v[2]))
    if metric == "ces":
        return CesWindow(int(v[0]), v[1], v[2], int(v[3]), int(v[4]))
    if metric == "csat":
        return CsatWindow(int(v[0]), int(v[1]))
    return NegativeEndWindow(int(v[0]), int(v[1]))


def count(metric: str, v: Vector) -> int:
    return int(v[0] + v[1] + v[2]) if metric == "nps" else int(v[0])


def estimate(metric: str, v: Vector) -> Estimate:
    return window(metric, v).result()


def two_sample(metric: str, current: Vector, baseline: Vector) -> tuple[float, float]:
    """(effect = current - baseline in the metric's unit, two-sided p).

    NPS uses the trinomial variance of each sample, CES Welch's unpooled variance, the shares a
    pooled two-proportion test.

    >>> effect, p = two_sample("nps", [35, 30, 35], [45, 35, 20])
    >>> effect, round(p, 4)
    (-25.0, 0.0276)
    """
    cur = window(metric, current)
    base = window(metric, baseline)
    n1, n2 = cur.n, base.n
    v1, v2 = cur.score(), base.score()
    if v1 is None or v2 is None:
        return 0.0, 1.0
    effect = v1 - v2
    if isinstance(cur, NpsWindow | CesWindow):
        return effect, z_test(effect, cur.variance() / n1 + base.variance() / n2)
    pooled = (current[1] + baseline[1]) / (n1 + n2)
    return effect, z_test(effect, pooled * (1 - pooled) * (1 / n1 + 1 / n2))


def add(into: Vector, v: Vector, sign: float = 1.0) -> None:
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


def sub(into: Vector, v: Vector) -> None:
    """`add(into, v, -1.0)`."""
    i = 0
    for x in v:
        into[i] -= x
        i += 1  # noqa: SIM113  (a counter: faster than enumerate here, measured)


def move(source: Vector, target: Vector, v: Vector) -> None:
    """`sub(source, v)` and `add(target, v)` in one pass (a bucket moving between windows)."""
    i = 0
    for x in v:
        source[i] -= x
        target[i] += x
        i += 1  # noqa: SIM113  (as in `sub`)
