"""Small statistics the optimizer reports: Student-t intervals and correlations with intervals.

scipy is not a dependency of the project, so the Student-t quantile is computed here from the
regularized incomplete beta function (a continued fraction, Numerical Recipes 6.4) and inverted
by bisection. Exact to ~1e-10, which is far below any interval's sampling error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np


def _betacf(a: float, b: float, x: float, max_iter: int = 300, eps: float = 1e-14) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast only on one side of the mean; use symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution function of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (e.g. ``t_quantile(0.975, 2) == 4.3027``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class MeanCI:
    """A sample mean with its two-sided Student-t confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def mean_ci(values: Sequence[float], level: float = 0.95) -> MeanCI:
    """Mean and Student-t interval of ``values``; one value gives an interval of NaN."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one finite value")
    m = float(x.mean())
    if x.size == 1:
        return MeanCI(m, math.nan, math.nan, 1, math.nan)
    sd = float(x.std(ddof=1))
    half = t_quantile(0.5 + level / 2.0, x.size - 1) * sd / math.sqrt(x.size)
    return MeanCI(m, m - half, m + half, int(x.size), sd)


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks from 1 with ties given their average rank (as Spearman's rho needs)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    sorted_a = a[order]
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its Fisher-z interval and two-sided p-value."""

    r: float
    low: float
    high: float
    p_value: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((xc * xc).sum() * (yc * yc).sum()))
    if denom == 0.0:
        return math.nan
    return float((xc * yc).sum() / denom)


def _correlation(r: float, n: int, level: float, se_scale: float) -> Correlation:
    if not np.isfinite(r):
        return Correlation(math.nan, math.nan, math.nan, math.nan, n)
    if n > 2 and abs(r) < 1.0:
        t = r * math.sqrt((n - 2) / (1.0 - r * r))
        p = 2.0 * (1.0 - t_cdf(abs(t), n - 2))
    else:
        p = 0.0 if abs(r) >= 1.0 else math.nan
    if n <= 3:
        return Correlation(r, math.nan, math.nan, p, n)
    # Fisher's z is undefined at |r| = 1; pull r in by a hair so the interval is a point.
    z = math.atanh(max(-1.0 + 1e-12, min(1.0 - 1e-12, r)))
    zc = NormalDist().inv_cdf(0.5 + level / 2.0)
    half = zc * se_scale / math.sqrt(n - 3)
    return Correlation(r, math.tanh(z - half), math.tanh(z + half), p, n)


def pearson(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> Correlation:
    """Pearson's r with a Fisher-z confidence interval (needs n >= 4 for the interval)."""
    a, b = _paired(x, y)
    return _correlation(_pearson_r(a, b), a.size, level, 1.0)


def spearman(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> Correlation:
    """Spearman's rho; the interval uses the Bonett-Wright standard error sqrt(1 + rho^2 / 2)."""
    a, b = _paired(x, y)
    rho = _pearson_r(rankdata(a), rankdata(b))
    scale = math.sqrt(1.0 + rho * rho / 2.0) if np.isfinite(rho) else 1.0
    return _correlation(rho, a.size, level, scale)


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired series must be 1-D of equal length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    if int(keep.sum()) < 2:
        raise ValueError("a correlation needs at least 2 finite pairs")
    return a[keep], b[keep]
