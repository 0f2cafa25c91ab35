"""Correlations and paired differences with intervals, as the optimizer reports them.

Means with intervals come from :func:`babel_interp.analysis.stats.t_interval`; the Student-t
distribution from the same module (scipy is not a dependency of the project).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from babel_interp.analysis.stats import t_cdf, t_interval


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


def paired_difference(differences: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean of per-seed differences (this minus that, paired by seed) with a Student-t 95%
    interval, and how many finite pairs it rests on. One pair gives the value without bounds
    (NaN), none gives NaN."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return math.nan, math.nan, math.nan, 0
    if d.size == 1:
        return float(d[0]), math.nan, math.nan, 1
    ci = t_interval(d)
    return ci.estimate, ci.low, ci.high, int(d.size)
