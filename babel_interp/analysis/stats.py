"""The project's confidence intervals: one :class:`CI` type, two ways to get one.

* **Percentile bootstrap** (:func:`bootstrap_ci`, :func:`paired_bootstrap_ci`,
  :func:`ratio_bootstrap_ci`) over many independent observations (probes, items, problems): it
  needs no distributional assumption, and the quantities here (shares, mean log-ratios, mean
  differences) are bounded or close to symmetric, where it behaves well. NaN entries (a probe
  without a matched control, a layer an analyzer skipped) are ignored.
* **Cluster bootstrap** when observations come in correlated groups (the prompts of one built-in
  pair share its token sets): :func:`two_stage_bootstrap_ci` and
  :func:`paired_two_stage_bootstrap_ci` resample groups, then observations within each drawn
  group; :func:`grouped_bootstrap_ci` resamples whole groups only. Resampling observations as if
  they were independent understates the uncertainty of such data.
* **Student t** (:func:`t_interval`, :func:`t_prediction_interval`) over a few independent
  replicates (model seeds), where the bootstrap has too few units to resample. Non-finite
  entries are ignored.

Every mean with an interval in the project (analyzers, reports, the optimizer's tables) comes
from here. Resampling is vectorized for statistics that accept ``axis=`` (``np.mean``,
``np.median``, ...); any other callable is applied one resample at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Stat = Callable[..., Any]


@dataclass(frozen=True)
class CI:
    """A point estimate with a two-sided bootstrap interval over ``n`` observations."""

    estimate: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN when it has no bounds)."""
        return (self.high - self.low) / 2.0

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies strictly on one side of zero."""
        return bool(self.low > 0 or self.high < 0)


_NAN_CI = CI(math.nan, math.nan, math.nan, 0)


def _check(n_boot: int, ci: float) -> None:
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _apply(stat: Stat, samples: np.ndarray) -> np.ndarray:
    """``stat`` over the last axis of ``samples`` ([n_boot, n]); vectorized when possible."""
    try:
        out = np.asarray(stat(samples, axis=1), dtype=np.float64)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(stat(row)) for row in samples], dtype=np.float64)


def _interval(
    estimate: float, boots: np.ndarray, ci: float, n: int, alpha: float | None = None
) -> CI:
    """The percentile interval of ``boots`` at levels ``alpha`` and ``1 - alpha`` (default:
    ``(1 - ci) / 2``)."""
    alpha = (1.0 - ci) / 2.0 if alpha is None else alpha
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return CI(float(estimate), math.nan, math.nan, n)
    low, high = np.quantile(boots, [alpha, 1.0 - alpha])
    return CI(float(estimate), float(low), float(high), n)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> CI:
    """Percentile bootstrap interval of ``stat(values)``, resampling observations.

    NaN entries are dropped first; with no observations left the result is all-NaN with ``n=0``.
    """
    _check(n_boot, ci)
    arr = _as_1d(values, "values")
    arr = arr[~np.isnan(arr)]
    n = arr.size
    if n == 0:
        return _NAN_CI
    estimate = float(stat(arr))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    return _interval(estimate, _apply(stat, arr[idx]), ci, n)


def paired_bootstrap_ci(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> CI:
    """Interval of ``stat(x) - stat(y)`` where ``x[i]`` and ``y[i]`` are resampled together.

    Use it for a probe and its matched control: pairing removes the between-probe variance that
    both share. Pairs where either side is NaN are dropped.
    """
    _check(n_boot, ci)
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = a.size
    if n == 0:
        return _NAN_CI
    estimate = float(stat(a)) - float(stat(b))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = _apply(stat, a[idx]) - _apply(stat, b[idx])
    return _interval(estimate, boots, ci, n)


def grouped_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> CI:
    """Cluster bootstrap: resample whole groups (e.g. built-in pairs, documents) with replacement.

    Observations inside a group are correlated (ten prompts for one built-in share its token
    set), so resampling observations alone understates the uncertainty; this resamples groups and
    applies ``stat`` to the pooled values of the drawn groups, keeping each group's observations
    as they are (:func:`two_stage_bootstrap_ci` also resamples inside the groups). ``n`` in the
    result counts observations; the interval is only as good as the number of groups allows.
    """
    _check(n_boot, ci)
    arr = _as_1d(values, "values")
    grp = _check_groups(groups, arr.shape)
    keep = ~np.isnan(arr)
    arr, grp = arr[keep], grp[keep]
    n = arr.size
    if n == 0:
        return _NAN_CI
    estimate = float(stat(arr))
    labels, inverse = np.unique(grp, return_inverse=True)
    n_groups = labels.size
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    if stat is np.mean or stat is np.nanmean:
        # The mean of pooled groups is sum-weighted: no need to materialize each resample.
        sums = np.bincount(inverse, weights=arr, minlength=n_groups)
        counts = np.bincount(inverse, minlength=n_groups).astype(np.float64)
        boots = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    else:
        members = [arr[inverse == g] for g in range(n_groups)]
        boots = np.array(
            [float(stat(np.concatenate([members[g] for g in row]))) for row in draws],
            dtype=np.float64,
        )
    return _interval(estimate, boots, ci, n)


def ratio_bootstrap_ci(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> CI:
    """Percentile bootstrap of ``sum(numerator) / sum(denominator)``, resampling units.

    Each unit (an observation, or with ``groups`` a whole group) carries its numerator and its
    denominator, and both sums are recomputed in every draw, so the interval reflects how the
    denominator varies as well as the numerator given it. For a share of a subset (numerator: in
    the subset and counted; denominator: in the subset) this resamples which units fall in the
    subset. Draws whose denominator is 0 have no ratio and are left out (the interval is
    conditional on a non-empty denominator). ``n`` counts units with a non-zero denominator; the
    estimate is NaN when there are none.
    """
    _check(n_boot, ci)
    num, den = _as_1d(numerator, "numerator"), _as_1d(denominator, "denominator")
    if num.shape != den.shape:
        raise ValueError(
            f"numerator and denominator must have the same length, got {num.size} and {den.size}"
        )
    if not (np.isfinite(num).all() and np.isfinite(den).all()):
        raise ValueError("numerator and denominator must be finite")
    n = int(np.count_nonzero(den))
    if num.size == 0 or den.sum() == 0:
        return CI(math.nan, math.nan, math.nan, n)
    estimate = float(num.sum() / den.sum())
    if groups is not None:
        grp = np.asarray(groups)
        if grp.shape != num.shape:
            raise ValueError(
                f"groups must be parallel to the values: got {grp.shape} groups for "
                f"{num.shape} values"
            )
        _, inverse = np.unique(grp, return_inverse=True)
        num = np.bincount(inverse, weights=num)
        den = np.bincount(inverse, weights=den)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num.size, size=(n_boot, num.size))
    top, bottom = num[draws].sum(axis=1), den[draws].sum(axis=1)
    boots = np.divide(top, bottom, out=np.full(n_boot, np.nan), where=bottom != 0)
    return _interval(estimate, boots, ci, n)


def expanded_alpha(ci: float, n_units: int) -> float:
    """The tail level of Hesterberg's *expanded percentile* interval over ``n_units`` resampled
    units: ``Phi(-sqrt(n / (n - 1)) * t_{(1 + ci) / 2, n - 1})`` instead of ``(1 - ci) / 2``.

    A percentile bootstrap over ``n`` units is too narrow for small ``n``: it estimates the
    variance with divisor ``n`` rather than ``n - 1`` and uses normal rather than t quantiles
    (over 12 units a nominal 95% interval covers about 90%). Reading the bootstrap distribution
    further out corrects both (Hesterberg 2015, "What teachers should know about the bootstrap",
    The American Statistician 69(4)). With fewer than two units the plain level is returned.
    """
    _check(1, ci)
    if n_units < 2:
        return (1.0 - ci) / 2.0
    z = math.sqrt(n_units / (n_units - 1.0)) * t_quantile(0.5 + ci / 2.0, n_units - 1)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, starts, counts)``: ``order`` lists the observations group by group, group ``g``
    occupying ``order[starts[g]:starts[g] + counts[g]]``."""
    _, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return order, starts, counts


# Resampled index arrays ([chunk, groups, largest group]) are built at most this large at once.
_MAX_CELLS = 1 << 22


def _two_stage_draws(
    groups: np.ndarray, n_boot: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(idx, valid)`` chunks of two-stage resamples: ``idx`` [chunk, n_groups * m] indexes
    the observations (``m`` the largest group's size), ``valid`` masks the padding. Each resample
    draws ``n_groups`` groups with replacement, then, within each drawn group of size ``c``,
    ``c`` of its observations with replacement."""
    order, starts, counts = _group_index(groups)
    n_groups, m = counts.size, int(counts.max())
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // (n_groups * m))
    for first in range(0, n_boot, chunk):
        b = min(chunk, n_boot - first)
        drawn = rng.integers(0, n_groups, size=(b, n_groups))
        size = counts[drawn][..., None]  # [b, n_groups, 1]
        pos = rng.integers(0, size, size=(b, n_groups, m))
        idx = order[starts[drawn][..., None] + pos]
        valid = np.broadcast_to(np.arange(m) < size, idx.shape)
        yield idx.reshape(b, -1), valid.reshape(b, -1)


def _pooled(stat: Stat, arr: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``stat`` of each resample (row of ``idx``, padding masked by ``valid``)."""
    if stat is np.mean or stat is np.nanmean:
        return np.where(valid, arr[idx], 0.0).sum(axis=1) / valid.sum(axis=1)
    if valid.all():
        return _apply(stat, arr[idx])
    return np.array([float(stat(arr[i[v]])) for i, v in zip(idx, valid, strict=True)])


def _check_groups(groups: Sequence[Any] | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    grp = np.asarray(groups)
    if grp.shape != shape:
        raise ValueError(
            f"groups must be parallel to values: got {grp.shape} groups for {shape} values"
        )
    return grp


def two_stage_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    expand: bool = True,
) -> CI:
    """Two-stage cluster bootstrap: resample groups with replacement, then resample observations
    with replacement within each drawn group, and apply ``stat`` to the pooled resample.

    The interval for the mean of clustered data (probes of one built-in pair share its token
    sets; the pair's own lean is shared by all of them): the first stage carries the variation
    between groups, the second the variation inside them. With ``expand`` (default) the
    percentile levels are those of the expanded percentile interval over the number of groups
    (:func:`expanded_alpha`): a plain percentile interval over the 12-17 built-in pairs of a
    probe set covers only about 90% where it claims 95%. With one group it reduces to
    :func:`bootstrap_ci` inside that group. NaN entries are dropped first; ``n`` in the result
    counts observations.
    """
    _check(n_boot, ci)
    arr = _as_1d(values, "values")
    grp = _check_groups(groups, arr.shape)
    keep = ~np.isnan(arr)
    arr, grp = arr[keep], grp[keep]
    if arr.size == 0:
        return _NAN_CI
    boots = np.concatenate(
        [_pooled(stat, arr, idx, valid) for idx, valid in _two_stage_draws(grp, n_boot, seed)]
    )
    alpha = expanded_alpha(ci, np.unique(grp).size) if expand else None
    return _interval(float(stat(arr)), boots, ci, arr.size, alpha)


def paired_two_stage_bootstrap_ci(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    expand: bool = True,
) -> CI:
    """Interval of ``stat(x) - stat(y)`` by :func:`two_stage_bootstrap_ci`, where ``x[i]`` and
    ``y[i]`` (a probe and its matched control) are resampled together and ``groups[i]`` is their
    cluster. Pairs where either side is NaN are dropped."""
    _check(n_boot, ci)
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.size} and {b.size}")
    grp = _check_groups(groups, a.shape)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b, grp = a[keep], b[keep], grp[keep]
    if a.size == 0:
        return _NAN_CI
    boots = np.concatenate(
        [
            _pooled(stat, a, idx, valid) - _pooled(stat, b, idx, valid)
            for idx, valid in _two_stage_draws(grp, n_boot, seed)
        ]
    )
    alpha = expanded_alpha(ci, np.unique(grp).size) if expand else None
    return _interval(float(stat(a)) - float(stat(b)), boots, ci, a.size, alpha)


# ------------------------------------------------------------------------------------------------
# Student-t intervals over a few independent replicates (model seeds)
# ------------------------------------------------------------------------------------------------


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
        raise ValueError(f"df must be positive, got {df!r}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on
    :func:`t_cdf`; no SciPy needed)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p!r}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df!r}")
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
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _student_t(values: Sequence[float] | np.ndarray, ci: float, prediction: bool) -> CI:
    """The mean of ``values`` (non-finite values dropped) with a Student-t interval: for the mean
    (standard error ``sd / sqrt(n)``) or, with ``prediction``, for one more draw
    (``sd * sqrt(1 + 1/n)``)."""
    _check(1, ci)
    arr = _as_1d(values, "values")
    arr = arr[np.isfinite(arr)]
    n = arr.size
    if n == 0:
        return _NAN_CI
    mean = float(arr.mean())
    if n < 2:
        return CI(mean, math.nan, math.nan, n)
    scale = math.sqrt(1.0 + 1.0 / n) if prediction else 1.0 / math.sqrt(n)
    half = t_quantile(0.5 + ci / 2.0, n - 1) * float(arr.std(ddof=1)) * scale
    return CI(mean, mean - half, mean + half, n)


def t_interval(values: Sequence[float] | np.ndarray, ci: float = 0.95) -> CI:
    """Student-t interval of the mean of a few independent replicates (NaN and infinities
    dropped).

    For quantities measured once per independently seeded model, where the bootstrap has too few
    units to resample; it assumes the replicates are roughly normal. With fewer than two values
    the bounds are NaN; with none the estimate is NaN too and ``n`` is 0.
    """
    return _student_t(values, ci, prediction=False)


def t_prediction_interval(values: Sequence[float] | np.ndarray, ci: float = 0.95) -> CI:
    """Student-t interval for one more replicate drawn like ``values`` (NaN and infinities
    dropped).

    Wider than :func:`t_interval` by ``sqrt(1 + n)``: it bounds where a single new replicate (one
    more random-init model, say) should fall, not where the mean lies.
    """
    return _student_t(values, ci, prediction=True)
