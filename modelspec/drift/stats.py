"""The statistics of drift, computed from profiles (101 quantiles, category counts) in pure
Python: the two-sample Kolmogorov-Smirnov test, Pearson's chi-squared test, the Wasserstein
distance and the Jensen-Shannon distance, with the distributions their p-values need."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def cdf(quantiles: Sequence[float], x: float) -> float:
    """The distribution function a profile's evenly spaced quantiles describe, at `x`
    (linear between quantiles; a repeated quantile is a jump, as in discrete data)."""
    last = len(quantiles) - 1
    i = bisect.bisect_right(quantiles, x) - 1
    if i < 0:
        return 0.0
    if i >= last:
        return 1.0
    low, high = quantiles[i], quantiles[i + 1]
    return (i + ((x - low) / (high - low) if high > low else 0.0)) / last


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """sup |F_a - F_b|, over every quantile of either profile (where the maximum lies)."""
    return max((abs(cdf(a, x) - cdf(b, x)) for x in sorted({*a, *b})), default=0.0)


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """The asymptotic two-sided p-value of the two-sample KS statistic (Kolmogorov's
    distribution at sqrt(nm/(n+m))·D, as scipy's `ks_2samp(method="asymp")`)."""
    if n <= 0 or m <= 0:
        return 1.0
    return kolmogorov_sf(math.sqrt(n * m / (n + m)) * statistic)


def kolmogorov_sf(z: float) -> float:
    """P(K > z) for Kolmogorov's distribution: 2 Σ (-1)^(k-1) exp(-2k²z²), or below z = 1,
    where that series converges slowly, 1 - √(2π)/z Σ exp(-(2k-1)²π²/(8z²))."""
    if z < 0.05:
        return 1.0  # to within 1e-300
    if z < 1:
        terms = (math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * z * z)) for k in range(1, 6))
        return max(0.0, min(1.0, 1 - math.sqrt(2 * math.pi) / z * sum(terms)))
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2 * k * k * z * z)
        total += term if k % 2 else -term
        if term < 1e-16:
            break
    return max(0.0, min(1.0, 2 * total))


def wasserstein(a: Sequence[float], b: Sequence[float]) -> float:
    """∫₀¹ |Q_a(u) - Q_b(u)| du between two quantile functions given at the same evenly
    spaced levels (the trapezoid rule, exact where the two do not cross within a step)."""
    steps = len(a) - 1
    total = 0.0
    for i in range(steps):
        d0, d1 = a[i] - b[i], a[i + 1] - b[i + 1]
        if d0 * d1 >= 0:
            total += (abs(d0) + abs(d1)) / 2
        else:  # they cross: two triangles
            total += (d0 * d0 + d1 * d1) / (2 * (abs(d0) + abs(d1)))
    return total / steps


def chi_square(observed: Sequence[float], expected: Sequence[float]) -> tuple[float, float]:
    """Pearson's statistic and p-value (k-1 degrees of freedom), as scipy's `chisquare`. An
    observed count where nothing was expected makes the statistic infinite (p = 0)."""
    statistic = 0.0
    for o, e in zip(observed, expected, strict=True):
        if e > 0:
            statistic += (o - e) ** 2 / e
        elif o > 0:
            return math.inf, 0.0
    freedom = len(observed) - 1
    return statistic, (chi2_sf(statistic, freedom) if freedom > 0 else 1.0)


def chi2_sf(x: float, freedom: int) -> float:
    return gamma_q(freedom / 2, x / 2)


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x): a series below a+1, a
    continued fraction (Lentz) above."""
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """The Jensen-Shannon distance (natural logarithm) between two distributions given as
    counts or shares over the same categories, as scipy's `jensenshannon`."""
    sp, sq = sum(p), sum(q)
    if sp <= 0 or sq <= 0:
        return 0.0
    divergence = 0.0
    for x, y in zip(p, q, strict=True):
        x, y = x / sp, y / sq
        m = (x + y) / 2
        if x > 0:
            divergence += x * math.log(x / m)
        if y > 0:
            divergence += y * math.log(y / m)
    return math.sqrt(max(divergence / 2, 0.0))
