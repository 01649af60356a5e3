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


# Student t quantiles for 95% two-sided intervals (issue 16: the CES mean interval at small n;
# the normal one covered 0.68-0.88 at n = 2-5, and one-minute buckets mostly hold that few).
# Degrees of freedom 1-30 from the table (scipy.stats.t.ppf(0.975, df), full precision); above
# 30, the Cornish-Fisher expansion in 1/df around the normal quantile (Abramowitz & Stegun
# 26.7.5, four terms: under 3e-8 from the exact quantile from df 30 on, 7e-11 at 100). The
# ClickHouse views (schemas/clickhouse/010_ces_t_interval.sql) compute the same numbers from the
# same constants (tests/unit/storage/test_windows_offline.py checks they are these).
# Plain globals, not Final: compiled by mypyc, the Final tuple was not set when `t95` first read
# it ("value for final name was not set"); `t95` runs once per CES estimate, not per event.
T95_TABLE: tuple[float, ...] = (
    12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934,
    2.5705818356363146, 2.4469118511449786, 2.364624251592784, 2.306004135204166,
    2.262157162798205, 2.228138851986274, 2.200985160091639, 2.1788128296672284,
    2.1603686564627913, 2.144786687917804, 2.131449545559776, 2.1199052992212546,
    2.1098155778333156, 2.1009220402410382, 2.0930240544083087, 2.085963447265864,
    2.0796138447276795, 2.0738730679040254, 2.0686576104190486, 2.0638985616280245,
    2.0595385527532972, 2.0555294386428735, 2.0518305164802846, 2.0484071417952454,
    2.045229642132703, 2.0422724563012378,
)
Z975: float = 1.959963984540054  # the exact normal quantile the expansion starts from
T95_EXPANSION: tuple[float, float, float, float] = (
    (Z975 ** 3 + Z975) / 4,
    (5 * Z975 ** 5 + 16 * Z975 ** 3 + 3 * Z975) / 96,
    (3 * Z975 ** 7 + 19 * Z975 ** 5 + 17 * Z975 ** 3 - 15 * Z975) / 384,
    (79 * Z975 ** 9 + 776 * Z975 ** 7 + 1482 * Z975 ** 5 - 1920 * Z975 ** 3 - 945 * Z975)
    / 92160,
)


def t95(df: int) -> float:
    """Two-sided 95% Student t quantile with `df` degrees of freedom (df >= 1).

    >>> t95(1), t95(4), round(t95(31), 6), round(t95(1000), 6)
    (12.706204736174694, 2.7764451051977934, 2.039513, 1.962339)
    """
    if df <= len(T95_TABLE):
        return T95_TABLE[max(df, 1) - 1]
    g1, g2, g3, g4 = T95_EXPANSION
    v = float(df)
    return Z975 + g1 / v + g2 / (v * v) + g3 / (v * v * v) + g4 / (v * v * v * v)
