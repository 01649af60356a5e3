"""Small statistics with the standard library only (no scipy): normal CDF, intervals, z tests."""

from __future__ import annotations

import math

Z95 = 1.96  # docs/design.md fixes 1.96 for the NPS interval; the other intervals use it too
_SQRT2 = math.sqrt(2.0)


def normal_cdf(z: float) -> float:
    """Standard normal CDF through erfc (accurate in the tails, where 1 - erf is not).

    >>> round(normal_cdf(0.0), 6), round(normal_cdf(1.96), 4), round(normal_cdf(-2.326), 4)
    (0.5, 0.975, 0.01)
    """
    return 0.5 * math.erfc(-z / _SQRT2)


def two_sided_p(z: float) -> float:
    """P(|Z| >= |z|).

    >>> round(two_sided_p(2.576), 4)
    0.01
    """
    return math.erfc(abs(z) / _SQRT2)


def z_test(diff: float, variance: float) -> float:
    """Two-sided p of a difference with the given variance (1.0 when the variance is 0 and the
    difference too; 0.0 when only the variance is 0)."""
    if variance <= 0.0:
        return 1.0 if diff == 0.0 else 0.0
    return two_sided_p(diff / math.sqrt(variance))


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n.

    >>> tuple(round(x, 4) for x in wilson(8, 10))
    (0.4902, 0.9433)
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def adjusted_wald_nps(promoters: int, detractors: int, n: int, z: float = Z95
                      ) -> tuple[float, float]:
    """Adjusted-Wald interval of NPS in points (Rocks 2016), clamped to [-100, 100].

    >>> tuple(round(x, 1) for x in adjusted_wald_nps(60, 15, 100))
    (29.3, 58.0)
    """
    p = (promoters + 0.75) / (n + 3)
    d = (detractors + 0.75) / (n + 3)
    var = (p + d - (p - d) ** 2) / (n + 3)
    half = z * math.sqrt(max(var, 0.0))
    return max(-100.0, 100 * (p - d - half)), min(100.0, 100 * (p - d + half))
