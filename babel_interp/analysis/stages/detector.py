"""Stage detection: find Translation, Transition and Stabilization in per-checkpoint series.

The Babel Tower hypothesis (PAPER.md) says a new language's performance first rises fast
(Translation, running on the primary language's system), then dips while its own system forms
(Transition) and then levels off (Stabilization). :func:`detect_stages` decides from measurements,
per language and per run, whether a series shows that shape, and where the stages are:

1. **Competence gate.** Checkpoints whose competence (e.g. top-1 accuracy on the target
   built-ins) is below a stated threshold are labelled ``"uninformative"`` and take no part in
   the analysis: a probe says nothing until the model can predict the built-ins.
2. **Noise.** The noise level of the performance series is estimated robustly from the median
   absolute deviation of its second differences, which a smooth trend barely moves.
3. **Dip test.** The statistic is the largest drawdown (a fall after a running maximum) of the
   smoothed series. Its null distribution is simulated from the closest *monotone* curve (the
   isotonic regression of the data) plus noise at the estimated level, smoothed the same way, so
   a monotone series with noise gives a large p-value whatever its shape. A dip also has to be at
   least ``min_dip_sigma`` noise standard deviations deep, so a dip smaller than the noise level
   is never a transition, however many checkpoints there are.
4. **Boundaries.** A continuous piecewise-linear model with two knots (rise, fall, then a free
   third segment; the rise may be curved) is fitted by least squares over every admissible knot
   pair, in checkpoint-index space because trainers checkpoint log-spaced. The peak of the fit ends
   Translation; the second knot, where the fall stops, ends Transition. The rise and the levelling
   are tested as linear contrasts; a residual bootstrap gives each boundary an interval and a
   stability (the share of refits within ``boundary_tolerance`` checkpoints).
5. **Corroboration.** Internal series (working-language share, transferring-neuron count,
   transfer ratio) are expected to move in a stated direction during Transition; each is tested
   for a shift between the Translation and post-Transition checkpoints and reported as agreeing,
   disagreeing or inconclusive. They never move the boundaries.

When the data do not show three stages the verdict says which part is missing (``"no transition:
monotone improvement"``, ``"no stages: flat"``, a two-stage verdict, ...) and the checkpoints are
labelled ``"undetermined"`` rather than forced into stages.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from einops import einsum
from jaxtyping import Float
from tqdm.auto import tqdm

from babel_interp.analysis.layers import mlp_span, residual_span
from babel_interp.analysis.performance import (
    performance_series,
    replace_rows_csv,
    single_target_language,
)
from babel_interp.config import ConfigBase, check_choice
from babel_interp.io import write_json_atomic
from babel_interp.runs import Run

__all__ = [
    "ANALYZER",
    "DEFAULT_CORROBORATING",
    "PERFORMANCE_SOURCES",
    "RunSeries",
    "STAGES",
    "STAGES_CSV",
    "STAGES_JSON",
    "UNDETERMINED",
    "UNINFORMATIVE",
    "VERDICTS",
    "StageAnalysis",
    "StageConfig",
    "StageResult",
    "align_series",
    "analyze_run",
    "detect_stages",
    "estimate_noise",
    "mann_kendall",
    "max_drawdown",
    "min_informative_checkpoints",
    "smooth",
    "stage_series_from_run",
]

STAGES: tuple[str, ...] = ("translation", "transition", "stabilization")
UNINFORMATIVE = "uninformative"
UNDETERMINED = "undetermined"

VERDICT_THREE = "three stages"
VERDICT_NO_STABILIZATION = "two stages: translation and transition (no stabilization yet)"
VERDICT_NO_TRANSLATION = "two stages: transition and stabilization (no translation rise observed)"
VERDICT_DECLINE = "no stages: monotone decline"
VERDICT_MONOTONE = "no transition: monotone improvement"
VERDICT_FLAT = "no stages: flat"
VERDICT_INSUFFICIENT = "insufficient data"
VERDICTS: tuple[str, ...] = (
    VERDICT_THREE,
    VERDICT_NO_STABILIZATION,
    VERDICT_NO_TRANSLATION,
    VERDICT_DECLINE,
    VERDICT_MONOTONE,
    VERDICT_FLAT,
    VERDICT_INSUFFICIENT,
)

# Expected direction of each internal series during Transition (-1: falls). The working-language
# share is the share of probes whose intermediate layers favour the *primary* language, the
# excess its log-ratio lean beyond matched controls.
DEFAULT_CORROBORATING: dict[str, int] = {
    "working_language_share": -1,
    "working_language_excess": -1,
    "transferring_neurons": -1,
    "transfer_ratio": -1,
}

SMOOTHING = ("median", "mean", "none")
NOISE_METHODS = ("mad_diff2", "mad_diff", "residual")
RISE_SHAPES = ("auto", "linear", "quadratic")

_MAD_TO_SD = 1.482602218505602  # 1 / Phi^-1(3/4): MAD of a normal sample -> its sd
_NORMAL = NormalDist()


@dataclass
class StageConfig(ConfigBase):
    """How :func:`detect_stages` reads and segments the series.

    Attributes:
        performance: key of the performance series in the ``series`` mapping.
        performance_direction: ``+1`` when higher is better (accuracy), ``-1`` when lower is
            better (loss, bits per byte).
        corroborating: internal series to test, each with the direction it is expected to move
            during Transition (``-1`` falls, ``+1`` rises). Missing ones are reported, not fatal.
        smoothing: ``"median"`` (robust to a single bad evaluation), ``"mean"`` or ``"none"``;
            used by the dip statistic and the corroborating change location.
        smoothing_window: odd window length in checkpoints.
        min_segment: fewest checkpoint intervals in each of the three fitted segments.
        rise_shape: shape of the Translation segment of the fit: ``"linear"``, ``"quadratic"``
            (a curved rise) or ``"auto"`` (chosen by BIC).
        noise_method: ``"mad_diff2"`` (MAD of second differences), ``"mad_diff"`` (of first
            differences) or ``"residual"`` (residual sd of the fitted segmented model).
        noise_sigma: a known noise sd (e.g. from evaluation bootstrap CIs); overrides the estimate.
        alpha: significance level of every test.
        min_dip_sigma: smallest dip depth, in noise sds, that can count as a Transition.
        n_null: simulated monotone series for the dip test's p-value.
        n_boot: residual-bootstrap refits for the boundary intervals and stability.
        boundary_tolerance: checkpoints a bootstrap boundary may differ by and still agree.
        competence_series: key of the competence series in ``series`` (absent: no gate).
        competence_threshold: checkpoints whose competence is below it are uninformative.
        seed: seed of the simulations; results are deterministic given it.
    """

    performance: str = "performance"
    performance_direction: int = 1
    corroborating: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CORROBORATING))
    smoothing: str = "median"
    smoothing_window: int = 3
    min_segment: int = 2
    rise_shape: str = "auto"
    noise_method: str = "mad_diff2"
    noise_sigma: float | None = None
    alpha: float = 0.05
    min_dip_sigma: float = 1.0
    n_null: int = 1000
    n_boot: int = 200
    boundary_tolerance: int = 1
    competence_series: str = "competence"
    competence_threshold: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.corroborating, Mapping):
            # A private copy: the caller's mapping (or the shared default) is never mutated.
            self.corroborating = dict(self.corroborating)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.performance, str) or not self.performance:
            raise ValueError(
                f"StageConfig.performance must be a non-empty str, got {self.performance!r}"
            )
        if self.performance_direction not in (1, -1):
            raise ValueError(
                "StageConfig.performance_direction must be +1 (higher is better) or -1, "
                f"got {self.performance_direction!r}"
            )
        if not isinstance(self.corroborating, Mapping):
            raise ValueError(
                f"StageConfig.corroborating must map series names to +1/-1, "
                f"got {self.corroborating!r}"
            )
        for name, d in self.corroborating.items():
            if d not in (1, -1):
                raise ValueError(f"StageConfig.corroborating[{name!r}] must be +1 or -1, got {d!r}")
        check_choice("StageConfig", "smoothing", self.smoothing, SMOOTHING)
        w = self.smoothing_window
        if not isinstance(w, int) or w < 1 or w % 2 == 0:
            raise ValueError(f"StageConfig.smoothing_window must be an odd int >= 1, got {w!r}")
        if not isinstance(self.min_segment, int) or self.min_segment < 1:
            raise ValueError(
                f"StageConfig.min_segment must be an int >= 1, got {self.min_segment!r}"
            )
        check_choice("StageConfig", "rise_shape", self.rise_shape, RISE_SHAPES)
        check_choice("StageConfig", "noise_method", self.noise_method, NOISE_METHODS)
        if self.noise_sigma is not None and not (
            isinstance(self.noise_sigma, (int, float)) and self.noise_sigma >= 0
        ):
            raise ValueError(
                f"StageConfig.noise_sigma must be None or >= 0, got {self.noise_sigma!r}"
            )
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 0.5):
            raise ValueError(f"StageConfig.alpha must lie in (0, 0.5), got {self.alpha!r}")
        if not (isinstance(self.min_dip_sigma, (int, float)) and self.min_dip_sigma >= 0):
            raise ValueError(f"StageConfig.min_dip_sigma must be >= 0, got {self.min_dip_sigma!r}")
        for name in ("n_null", "n_boot"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 20:
                raise ValueError(f"StageConfig.{name} must be an int >= 20, got {v!r}")
        if not isinstance(self.boundary_tolerance, int) or self.boundary_tolerance < 0:
            raise ValueError(
                f"StageConfig.boundary_tolerance must be an int >= 0, "
                f"got {self.boundary_tolerance!r}"
            )
        if not isinstance(self.competence_series, str):
            raise ValueError(
                f"StageConfig.competence_series must be a str, got {self.competence_series!r}"
            )
        if not isinstance(self.competence_threshold, (int, float)) or math.isnan(
            self.competence_threshold
        ):
            raise ValueError(
                f"StageConfig.competence_threshold must be a number, "
                f"got {self.competence_threshold!r}"
            )
        if not isinstance(self.seed, int):
            raise ValueError(f"StageConfig.seed must be an int, got {self.seed!r}")


# ---------------------------------------------------------------------------------------------
# Series helpers


SeriesLike = Any  # pd.Series indexed by step, {step: value}, (steps, values), or a 1-D array


def _as_series(name: str, value: SeriesLike) -> pd.Series:
    """One input series as a float Series indexed by int step, sorted, steps unique."""
    if isinstance(value, pd.Series):
        s = value.copy()
    elif isinstance(value, Mapping):
        s = pd.Series(dict(value))
    elif isinstance(value, tuple) and len(value) == 2:
        steps, values = value
        if len(steps) != len(values):
            raise ValueError(f"series {name!r}: {len(steps)} steps but {len(values)} values")
        s = pd.Series(list(values), index=list(steps))
    else:
        arr = np.asarray(value)
        if arr.ndim != 1:
            raise ValueError(f"series {name!r} must be one-dimensional, got shape {arr.shape}")
        # A bare array is indexed by checkpoint position.
        s = pd.Series(arr)
    try:
        s = s.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"series {name!r} has non-numeric values: {exc}") from None
    idx = np.asarray(s.index)
    if len(idx) and not np.issubdtype(idx.dtype, np.number):
        raise ValueError(f"series {name!r} must be indexed by training step, got {idx[:3]!r}")
    if len(idx) and not np.all(np.isfinite(idx.astype(float))):
        raise ValueError(f"series {name!r} has non-finite steps")
    if len(idx) and np.any(idx.astype(float) != np.round(idx.astype(float))):
        raise ValueError(f"series {name!r} has non-integer steps")
    s.index = idx.astype(np.int64)
    if s.index.has_duplicates:
        dup = sorted(set(s.index[s.index.duplicated()].tolist()))
        raise ValueError(f"series {name!r} has duplicate steps {dup[:5]}")
    return s.sort_index()


def align_series(
    series: Mapping[str, SeriesLike], on: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Put every series on the checkpoint axis of ``series[on]``.

    The axis is the steps at which ``series[on]`` has a finite value. Other series are matched by
    exact step (analyzers evaluate the same checkpoints); a step they lack becomes NaN, and steps
    they have beyond the axis are ignored. Returns ``(steps, {name: values})``.
    """
    if on not in series:
        raise KeyError(
            f"the series mapping has no {on!r} series (the performance series); "
            f"it has {sorted(series)}"
        )
    base = _as_series(on, series[on])
    base = base[np.isfinite(base.to_numpy())]
    steps = base.index.to_numpy()
    out = {on: base.to_numpy(dtype=float)}
    for name, value in series.items():
        if name == on:
            continue
        s = _as_series(name, value)
        out[name] = s.reindex(steps).to_numpy(dtype=float)
    return steps, out


def smooth(
    y: Float[np.ndarray, "*batch n"], method: str = "median", window: int = 3
) -> Float[np.ndarray, "*batch n"]:
    """Centered moving median or mean along the last axis; the ends are padded with edge values
    so the output has the input's length (a window-3 median keeps both endpoints)."""
    if method not in SMOOTHING:
        raise ValueError(f"smoothing method must be one of {SMOOTHING}, got {method!r}")
    y = np.asarray(y, dtype=float)
    if method == "none" or window <= 1 or y.shape[-1] < 3:
        return y.copy()
    window = min(window, y.shape[-1] - (1 - y.shape[-1] % 2))  # odd, at most n
    half = window // 2
    pad = [(0, 0)] * (y.ndim - 1) + [(half, half)]
    padded = np.pad(y, pad, mode="edge")
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=-1)
    return np.median(views, axis=-1) if method == "median" else views.mean(axis=-1)


def estimate_noise(
    y: Float[np.ndarray, "*batch n"], method: str = "mad_diff2"
) -> float | np.ndarray:
    """Robust sd of the noise around a smooth trend (along the last axis; a float for 1-D input).

    ``mad_diff2``: the differences ``y[i+1] - 2 y[i] + y[i-1]`` cancel any locally linear trend
    and have sd ``sqrt(6) sigma`` under i.i.d. noise; their MAD (centred on their median, which
    absorbs a constant curvature) is insensitive to the few kinks of a stage boundary.
    ``mad_diff``: the same on first differences (sd ``sqrt(2) sigma``), for short series.
    """
    if method not in ("mad_diff2", "mad_diff"):
        raise ValueError(f"noise method must be 'mad_diff2' or 'mad_diff', got {method!r}")
    y = np.asarray(y, dtype=float)
    n = y.shape[-1]
    if method == "mad_diff2" and n >= 5:
        d, scale = np.diff(y, n=2, axis=-1), math.sqrt(6.0)
    elif n >= 3:
        d, scale = np.diff(y, axis=-1), math.sqrt(2.0)
    else:
        out = np.zeros(y.shape[:-1])
        return float(out) if y.ndim == 1 else out
    centre = np.median(d, axis=-1, keepdims=True)
    sd = _MAD_TO_SD * np.median(np.abs(d - centre), axis=-1) / scale
    return float(sd) if y.ndim == 1 else sd


def max_drawdown(
    s: Float[np.ndarray, "*batch n"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest fall after a running maximum along the last axis.

    Returns ``(depth, start, end)``: the drawdown depth and the indices of the maximum that
    precedes it and of the lowest point after it.
    """
    s = np.asarray(s, dtype=float)
    run_max = np.maximum.accumulate(s, axis=-1)
    fall = run_max - s
    end = np.argmax(fall, axis=-1)
    depth = np.take_along_axis(fall, end[..., None], axis=-1)[..., 0]
    # The running maximum at `end` was set at the first index where s reached it.
    peak_val = np.take_along_axis(run_max, end[..., None], axis=-1)
    start = np.argmax(s >= peak_val, axis=-1)
    return depth, start, end


def mann_kendall(y: Float[np.ndarray, " n"]) -> tuple[float, float]:
    """Mann-Kendall trend test: ``(z, two-sided p)``; positive z is an upward trend.

    The variance carries the tie correction; the continuity correction makes ``z = 0`` for a
    series without a trend direction (a constant gives ``(0.0, 1.0)``).
    """
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    n = y.size
    if n < 3:
        return 0.0, 1.0
    diff = y[None, :] - y[:, None]
    s = float(np.sign(diff[np.triu_indices(n, k=1)]).sum())
    _, counts = np.unique(y, return_counts=True)
    var = n * (n - 1) * (2 * n + 5) - float(np.sum(counts * (counts - 1) * (2 * counts + 5)))
    var /= 18.0
    if var <= 0 or s == 0:
        return 0.0, 1.0
    z = (s - math.copysign(1.0, s)) / math.sqrt(var)
    return z, 2.0 * (1.0 - _NORMAL.cdf(abs(z)))


# ---------------------------------------------------------------------------------------------
# Segmented least squares


def _design(n: int, pairs: np.ndarray, quadratic: bool) -> Float[np.ndarray, "pairs n k"]:
    """Design matrices of the continuous two-knot model for knot pairs ``(p, b)``.

    Columns ``1, x, [x^2 - (x-p)_+^2], (x-p)_+, (x-b)_+`` on ``x`` scaled to [0, 1] (for
    conditioning): linear pieces joined at p and b; the optional square term curves the rise
    only, since it continues as a straight line after p.
    """
    x = np.arange(n, dtype=float) / (n - 1)
    pk = pairs[:, 0:1].astype(float) / (n - 1)
    bk = pairs[:, 1:2].astype(float) / (n - 1)
    xp = np.clip(x[None, :] - pk, 0.0, None)
    xb = np.clip(x[None, :] - bk, 0.0, None)
    ones = np.ones_like(xp)
    xs = np.broadcast_to(x, xp.shape)
    cols = [ones, xs]
    if quadratic:
        cols.append(xs**2 - xp**2)
    cols += [xp, xb]
    return np.stack(cols, axis=-1)


def _candidate_pairs(n: int, min_segment: int, quadratic: bool) -> np.ndarray:
    """Admissible knot pairs: every segment spans at least ``min_segment`` intervals (a curved
    rise needs three points, so at least two intervals)."""
    m = min_segment
    first = max(m, 2) if quadratic else m
    pairs = [(p, b) for p in range(first, n) for b in range(p + m, n - m)]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _best_dip_pairs(
    Y: Float[np.ndarray, "reps n"],
    pairs: np.ndarray,
    quadratic: bool,
    chunk: int = 1024,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``Y``, the least-squares knot pair among those whose fitted middle
    segment falls (the dip shape). Returns ``(pair index or -1, rss)``."""
    reps, n = Y.shape
    best_rss = np.full(reps, np.inf)
    best_idx = np.full(reps, -1, dtype=np.int64)
    sq = einsum(Y, Y, "reps n, reps n -> reps")
    starts = range(0, len(pairs), chunk)
    for start in tqdm(starts, desc="segmented fits", leave=False, disable=not progress):
        pc = pairs[start : start + chunk]
        q, _ = np.linalg.qr(_design(n, pc, quadratic))  # orthonormal bases: (pairs, n, k)
        # Each series' coordinates in each pair's column space.
        proj = einsum(q, Y, "pairs n k, reps n -> reps pairs k")
        rss = sq[:, None] - einsum(proj, proj, "reps pairs k, reps pairs k -> reps pairs")
        ar = np.arange(len(pc))
        # The fitted values at the two knots.
        at_p = einsum(q[ar, pc[:, 0]], proj, "pairs k, reps pairs k -> reps pairs")
        at_b = einsum(q[ar, pc[:, 1]], proj, "pairs k, reps pairs k -> reps pairs")
        rss = np.where(at_p > at_b, rss, np.inf)
        j = np.argmin(rss, axis=1)
        r = rss[np.arange(reps), j]
        better = r < best_rss
        best_rss[better] = r[better]
        best_idx[better] = start + j[better]
    return best_idx, best_rss


@dataclass
class _Fit:
    p: int
    b: int
    quadratic: bool
    X: np.ndarray
    beta: np.ndarray
    xtx_inv: np.ndarray
    fitted: np.ndarray
    rss: float

    @property
    def n_params(self) -> int:
        return self.X.shape[1] + 2  # the two knots are estimated too

    @property
    def peak(self) -> int:
        return int(np.argmax(self.fitted[: self.b + 1]))


def _fit_pair(y: np.ndarray, p: int, b: int, quadratic: bool) -> _Fit:
    X = _design(y.size, np.array([[p, b]]), quadratic)[0]
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    fitted = X @ beta
    return _Fit(
        p=p,
        b=b,
        quadratic=quadratic,
        X=X,
        beta=beta,
        xtx_inv=np.linalg.pinv(X.T @ X),
        fitted=fitted,
        rss=float(np.sum((y - fitted) ** 2)),
    )


def _best_fit(y: np.ndarray, cfg: StageConfig) -> _Fit | None:
    """The dip-shaped segmented fit of ``y``; with ``rise_shape="auto"`` the lower BIC wins."""
    shapes = {"linear": [False], "quadratic": [True], "auto": [False, True]}[cfg.rise_shape]
    n = y.size
    floor = 1e-12 * n * max(float(np.var(y)), 1e-300)  # exact fits: let the penalty decide
    best: tuple[float, _Fit] | None = None
    for quadratic in shapes:
        pairs = _candidate_pairs(n, cfg.min_segment, quadratic)
        if len(pairs) == 0:
            continue
        idx, _ = _best_dip_pairs(y[None, :], pairs, quadratic)
        if idx[0] < 0:
            continue
        p, b = (int(v) for v in pairs[idx[0]])
        fit = _fit_pair(y, p, b, quadratic)
        bic = n * math.log(max(fit.rss, floor) / n) + fit.n_params * math.log(n)
        if best is None or bic < best[0] - 1e-9:
            best = (bic, fit)
    return None if best is None else best[1]


def _contrast_z(fit: _Fit, c: np.ndarray, sigma: float) -> tuple[float, float]:
    """Estimate and z of the linear contrast ``c . beta`` at noise sd ``sigma``."""
    est = float(c @ fit.beta)
    se = sigma * math.sqrt(max(float(c @ fit.xtx_inv @ c), 0.0))
    if se <= 0:
        return est, math.copysign(math.inf, est) if est != 0 else 0.0
    return est, est / se


# ---------------------------------------------------------------------------------------------
# Result


@dataclass
class StageResult:
    """What :func:`detect_stages` found.

    ``labels`` has one entry per checkpoint of ``steps``; boundaries are steps (the last
    checkpoint of Translation, the last of Transition) with percentile-bootstrap intervals in
    steps. ``confidence`` is the share of bootstrap refits whose boundaries all lie within
    ``boundary_tolerance`` checkpoints of the reported ones; it is None when there are no
    boundaries, where ``dip_p_value`` and ``min_detectable_dip`` (the drawdown the test would
    have flagged) say how strongly the data exclude a dip.
    """

    steps: np.ndarray
    labels: list[str]
    verdict: str
    reason: str
    translation_end: int | None
    transition_end: int | None
    translation_end_interval: tuple[int, int] | None
    transition_end_interval: tuple[int, int] | None
    confidence: float | None
    noise_sigma: float
    dip_depth: float
    dip_p_value: float
    min_detectable_dip: float
    rise_z: float | None
    level_z: float | None
    trend_z: float
    trend_p: float
    series: dict[str, np.ndarray]
    smoothed: np.ndarray
    fitted: np.ndarray
    informative: np.ndarray
    corroboration: list[dict[str, Any]]
    missing_series: list[str]
    notes: list[str]
    config: StageConfig

    @property
    def boundaries(self) -> dict[str, int]:
        """The boundary steps that exist: ``translation_end`` and/or ``transition_end``."""
        out = {}
        if self.translation_end is not None:
            out["translation_end"] = self.translation_end
        if self.transition_end is not None:
            out["transition_end"] = self.transition_end
        return out

    @property
    def stages_found(self) -> list[str]:
        """The stages present in ``labels``, in order."""
        return [s for s in STAGES if s in self.labels]

    @property
    def agreement(self) -> float | None:
        """Share of the tested corroborating series that agree (None when none was tested)."""
        tested = [
            c for c in self.corroboration if c["verdict"] in ("agrees", "disagrees", "inconclusive")
        ]
        if not tested:
            return None
        return sum(c["verdict"] == "agrees" for c in tested) / len(tested)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per checkpoint: step, stage, informative, every series, smoothed and fitted
        performance (NaN on uninformative checkpoints)."""
        df = pd.DataFrame(
            {
                "checkpoint": np.arange(len(self.steps)),
                "step": self.steps,
                "stage": self.labels,
                "informative": self.informative,
            }
        )
        for name, values in self.series.items():
            df[name] = values
        df["performance_smoothed"] = self.smoothed
        df["performance_fitted"] = self.fitted
        return df

    def to_dict(self) -> dict[str, Any]:
        """The verdict, boundaries, statistics and corroboration, JSON-ready."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "stages_found": self.stages_found,
            "boundaries": {
                "translation_end": self.translation_end,
                "transition_end": self.transition_end,
                "translation_end_interval": _pair(self.translation_end_interval),
                "transition_end_interval": _pair(self.transition_end_interval),
            },
            "confidence": num(self.confidence),
            "statistics": {
                "noise_sigma": num(self.noise_sigma),
                "dip_depth": num(self.dip_depth),
                "dip_p_value": num(self.dip_p_value),
                "min_detectable_dip": num(self.min_detectable_dip),
                "rise_z": num(self.rise_z),
                "level_z": num(self.level_z),
                "trend_z": num(self.trend_z),
                "trend_p": num(self.trend_p),
            },
            "n_checkpoints": int(len(self.steps)),
            "n_informative": int(np.sum(self.informative)),
            "uninformative_steps": [
                int(s) for s, ok in zip(self.steps, self.informative, strict=True) if not ok
            ],
            "corroboration": self.corroboration,
            "agreement": self.agreement,
            "missing_series": list(self.missing_series),
            "notes": list(self.notes),
            "config": self.config.to_dict(),
        }


def _pair(v: tuple[int, int] | None) -> list[int] | None:
    return None if v is None else [int(v[0]), int(v[1])]


# ---------------------------------------------------------------------------------------------
# The detector


def min_informative_checkpoints(cfg: StageConfig) -> int:
    """Fewest informative checkpoints :func:`detect_stages` needs to estimate anything: enough
    for three segments of ``cfg.min_segment`` intervals, and never fewer than 5. With fewer, the
    verdict is ``"insufficient data"`` and the noise sd, the drawdown and its p-value are not
    computed (they stay NaN); the figure and the reason say so from this one number."""
    return max(3 * cfg.min_segment + 1, 5)


def detect_stages(
    series: Mapping[str, SeriesLike],
    cfg: StageConfig | None = None,
    progress: bool = False,
) -> StageResult:
    """Segment a run's per-checkpoint series into the Babel Tower stages, or say they are absent.

    Args:
        series: named series indexed by training step (``pd.Series``, ``{step: value}``,
            ``(steps, values)``; a bare array is indexed by checkpoint position). Must hold
            ``cfg.performance``; may hold ``cfg.competence_series`` and the corroborating series.
            The checkpoint axis is the performance series' finite steps.
        cfg: detector settings (defaults: higher performance is better, median-3 smoothing).
        progress: show a progress bar over the bootstrap refits.

    Returns:
        A :class:`StageResult` with one label per checkpoint (``"translation"``,
        ``"transition"``, ``"stabilization"``, ``"uninformative"`` or ``"undetermined"``), the
        boundaries in steps with bootstrap intervals, the verdict and the evidence.
    """
    cfg = cfg or StageConfig()
    steps, values = align_series(series, cfg.performance)
    n_all = len(steps)
    if n_all == 0:
        raise ValueError(f"series {cfg.performance!r} has no finite values")
    notes: list[str] = []
    rng = np.random.default_rng(cfg.seed)

    informative = np.ones(n_all, dtype=bool)
    if cfg.competence_series in values:
        comp = values[cfg.competence_series]
        informative = np.isfinite(comp) & (comp >= cfg.competence_threshold)
        n_gated = int((~informative).sum())
        if n_gated:
            notes.append(
                f"{n_gated} checkpoint(s) below competence {cfg.competence_threshold:g} "
                f"({cfg.competence_series}) are uninformative and excluded"
            )
            first_ok = int(np.argmax(informative)) if informative.any() else n_all
            late = int((~informative[first_ok:]).sum())
            if late:
                notes.append(
                    f"competence fell below the threshold again at {late} checkpoint(s) after "
                    f"step {int(steps[first_ok])}: they are excluded from the interpretation"
                )
    info_pos = np.flatnonzero(informative)
    y = cfg.performance_direction * values[cfg.performance][info_pos]
    n = y.size

    labels = np.where(informative, UNDETERMINED, UNINFORMATIVE).astype(object)
    smoothed_all = np.full(n_all, np.nan)
    fitted_all = np.full(n_all, np.nan)
    aux_names = [k for k in cfg.corroborating if k in values]
    missing = [k for k in cfg.corroborating if k not in values]

    def result(**kw: Any) -> StageResult:
        base: dict[str, Any] = dict(
            steps=steps,
            labels=[str(v) for v in labels],
            translation_end=None,
            transition_end=None,
            translation_end_interval=None,
            transition_end_interval=None,
            confidence=None,
            noise_sigma=float("nan"),
            dip_depth=float("nan"),
            dip_p_value=float("nan"),
            min_detectable_dip=float("nan"),
            rise_z=None,
            level_z=None,
            trend_z=0.0,
            trend_p=1.0,
            series=values,
            smoothed=smoothed_all,
            fitted=fitted_all,
            informative=informative,
            corroboration=[],
            missing_series=missing,
            notes=notes,
            config=cfg,
        )
        base.update(kw)
        return StageResult(**base)

    min_n = min_informative_checkpoints(cfg)
    if n < min_n:
        return result(
            verdict=VERDICT_INSUFFICIENT,
            reason=(
                f"{n} informative checkpoint(s); at least {min_n} are needed for three "
                f"segments of {cfg.min_segment} interval(s)"
            ),
            corroboration=_corroborate(values, aux_names, steps, info_pos, None, None, cfg),
        )

    s = smooth(y, cfg.smoothing, cfg.smoothing_window)
    smoothed_all[info_pos] = cfg.performance_direction * s
    fit = _best_fit(y, cfg)
    sigma_hat = estimate_noise(
        y, "mad_diff2" if cfg.noise_method == "residual" else cfg.noise_method
    )
    if cfg.noise_method == "residual" and fit is not None:
        sigma_hat = math.sqrt(fit.rss / max(n - fit.n_params, 1))
    if cfg.noise_sigma is not None:
        sigma_hat = float(cfg.noise_sigma)
    scale = max(float(np.ptp(y)), float(np.max(np.abs(y))), 1.0)
    sigma_floor = 1e-12 * scale  # noise-free input: tests become exact comparisons

    # Dip test. A rising mean only offsets falls (for i < j, m_i - m_j <= 0), so among monotone
    # curves a constant gives the largest drawdowns: noise alone is the least favourable null.
    # With an estimated noise level the statistic is studentized (drawdown / estimated sd, the
    # sd re-estimated on every simulated series), which makes the test exact for Gaussian noise
    # around a constant whatever the true sd; a plug-in sd would double the false alarms at 40
    # checkpoints, the MAD being a noisy estimate.
    depth = float(max_drawdown(s)[0])
    rise = float(max_drawdown(-s)[0])  # the largest rise after a running minimum
    null = rng.standard_normal((cfg.n_null, n))
    null_depth = max_drawdown(smooth(null, cfg.smoothing, cfg.smoothing_window))[0]
    if cfg.noise_sigma is None and cfg.noise_method != "residual":
        null_stat = null_depth / np.maximum(estimate_noise(null, cfg.noise_method), 1e-300)
        unit = sigma_hat
    else:
        null_stat = null_depth
        unit = max(sigma_hat, sigma_floor)

    def p_value(observed: float) -> float:
        stat = observed / unit if unit > sigma_floor else (np.inf if observed > 0 else 0.0)
        return float((1 + np.sum(null_stat >= stat * (1 - 1e-9))) / (1 + cfg.n_null))

    p_dip = p_value(depth)
    # Gaussian noise is symmetric, so a rise after a running minimum has the same null law.
    p_rise = p_value(rise)
    crit = float(np.quantile(null_stat, 1 - cfg.alpha)) * sigma_hat
    trend_z, trend_p = mann_kendall(y)
    common = dict(
        noise_sigma=sigma_hat,
        dip_depth=depth,
        dip_p_value=p_dip,
        min_detectable_dip=max(crit, cfg.min_dip_sigma * sigma_hat),
        trend_z=trend_z,
        trend_p=trend_p,
    )

    fit_dip = None if fit is None else float(fit.fitted[fit.peak] - fit.fitted[fit.b])
    dip_ok = (
        fit is not None
        and p_dip < cfg.alpha
        and fit_dip is not None
        and fit_dip >= max(cfg.min_dip_sigma * sigma_hat, sigma_floor)
    )
    if not dip_ok:
        reason = (
            f"largest drawdown {depth:.4g} (noise sd {sigma_hat:.4g}, p = {p_dip:.3g} against "
            f"a monotone curve; a drawdown above {common['min_detectable_dip']:.4g} would count)"
        )
        if fit_dip is not None and p_dip < cfg.alpha:
            reason += f"; the fitted dip {fit_dip:.4g} is below {cfg.min_dip_sigma:g} noise sd"
        if p_rise < cfg.alpha:
            verdict = VERDICT_MONOTONE
            reason += f"; the series rises by {rise:.4g} (p = {p_rise:.3g})"
        else:
            verdict = VERDICT_FLAT
            reason += f"; its largest rise {rise:.4g} is not significant either (p = {p_rise:.3g})"
        reason = f"{verdict}: {reason}; Mann-Kendall trend z = {trend_z:.2f} (p = {trend_p:.3g})"
        return result(
            verdict=verdict,
            reason=reason,
            corroboration=_corroborate(values, aux_names, steps, info_pos, None, None, cfg),
            **common,
        )

    assert fit is not None
    fitted_all[info_pos] = cfg.performance_direction * fit.fitted
    sigma_z = max(sigma_hat, math.sqrt(fit.rss / max(n - fit.n_params, 1)), sigma_floor)
    # The larger of the noise estimate and the residual sd: a misfitting model must not make
    # its own contrasts look significant.
    peak, b = fit.peak, fit.b
    z_crit = _NORMAL.inv_cdf(1 - cfg.alpha)
    _, rise_z = _contrast_z(fit, fit.X[peak] - fit.X[0], sigma_z) if peak > 0 else (0.0, 0.0)
    e_last = np.zeros(fit.X.shape[1])
    e_last[-1] = 1.0
    _, level_z = _contrast_z(fit, e_last, sigma_z)
    has_rise = peak > 0 and rise_z > z_crit
    has_level = level_z > z_crit

    trans_lo, trans_hi = peak, b  # Transition: (peak, b]
    if has_rise and has_level:
        verdict = VERDICT_THREE
        seg = np.where(np.arange(n) <= peak, 0, np.where(np.arange(n) <= b, 1, 2))
    elif has_rise:
        verdict = VERDICT_NO_STABILIZATION
        seg = np.where(np.arange(n) <= peak, 0, 1)
        # Still falling at the end: compare Translation with the second half of the fall.
        trans_hi = peak + (n - peak) // 2
    elif has_level:
        verdict = VERDICT_NO_TRANSLATION
        seg = np.where(np.arange(n) <= b, 1, 2)
    else:
        verdict = VERDICT_DECLINE
        seg = None
    if seg is not None:
        labels[info_pos] = np.asarray(STAGES, dtype=object)[seg]

    boot = _boundary_bootstrap(y, fit, cfg, rng, progress)
    conf = None
    t_end = tr_end = None
    t_int = tr_int = None
    tol = cfg.boundary_tolerance
    agree = np.ones(cfg.n_boot, dtype=bool)
    if has_rise and seg is not None:
        t_end = int(steps[info_pos[peak]])
        t_int = _interval(boot[:, 0], steps[info_pos], cfg.alpha)
        agree &= np.abs(boot[:, 0] - peak) <= tol
    if has_level and seg is not None:
        tr_end = int(steps[info_pos[b]])
        tr_int = _interval(boot[:, 1], steps[info_pos], cfg.alpha)
        agree &= np.abs(boot[:, 1] - b) <= tol
    if seg is not None:
        conf = float(agree.mean())

    reason = (
        f"dip of {fit_dip:.4g} ({fit_dip / max(sigma_hat, sigma_floor):.1f} noise sd, drawdown "
        f"p = {p_dip:.3g}); rise z = {rise_z:.2f}, levelling z = {level_z:.2f} "
        f"(critical {z_crit:.2f})"
    )
    if verdict == VERDICT_DECLINE:
        reason += "; neither a rise before the fall nor a levelling after it is significant"
    corr = _corroborate(values, aux_names, steps, info_pos, trans_lo, trans_hi, cfg)
    return result(
        verdict=verdict,
        reason=f"{verdict}: {reason}",
        translation_end=t_end,
        transition_end=tr_end,
        translation_end_interval=t_int,
        transition_end_interval=tr_int,
        confidence=conf,
        rise_z=float(rise_z),
        level_z=float(level_z),
        corroboration=corr,
        **common,
    )


def _boundary_bootstrap(
    y: np.ndarray, fit: _Fit, cfg: StageConfig, rng: np.random.Generator, progress: bool
) -> np.ndarray:
    """Residual bootstrap of the segmented fit: ``(n_boot, 2)`` peak and knot indices."""
    n = y.size
    resid = y - fit.fitted
    # Centred and inflated for the fitted parameters, so refits see noise of the right size.
    resid = (resid - resid.mean()) * math.sqrt(n / max(n - fit.n_params, 1))
    draws = rng.integers(0, n, size=(cfg.n_boot, n))
    Y = fit.fitted[None, :] + resid[draws]
    pairs = _candidate_pairs(n, cfg.min_segment, fit.quadratic)
    idx, _ = _best_dip_pairs(Y, pairs, fit.quadratic, progress=progress)
    out = np.empty((cfg.n_boot, 2), dtype=np.int64)
    for r in range(cfg.n_boot):
        if idx[r] < 0:  # no dip shape in this replicate: it disagrees with any boundary
            out[r] = (-n, -n)
            continue
        p, b = (int(v) for v in pairs[idx[r]])
        f = _fit_pair(Y[r], p, b, fit.quadratic)
        out[r] = (f.peak, b)
    return out


def _interval(idx: np.ndarray, steps: np.ndarray, alpha: float) -> tuple[int, int]:
    """Percentile interval of bootstrap boundary indices, as steps."""
    idx = idx[idx >= 0]
    if idx.size == 0:
        return int(steps[0]), int(steps[-1])
    lo = int(np.quantile(idx, alpha / 2, method="lower"))
    hi = int(np.quantile(idx, 1 - alpha / 2, method="higher"))
    return int(steps[lo]), int(steps[hi])


def _corroborate(
    values: Mapping[str, np.ndarray],
    names: Sequence[str],
    steps: np.ndarray,
    info_pos: np.ndarray,
    trans_lo: int | None,
    trans_hi: int | None,
    cfg: StageConfig,
) -> list[dict[str, Any]]:
    """Test each internal series for the move it should make during Transition.

    With a Transition window ``(trans_lo, trans_hi]`` (informative indices), the shift is the mean
    after the window's start past its end (``>= trans_hi``) minus the mean up to its start
    (``<= trans_lo``), signed by the expected direction, in units of its standard error at the
    series' own robust noise level. Without a window only the overall trend is reported.
    """
    z_crit = _NORMAL.inv_cdf(1 - cfg.alpha)
    out = []
    for name in names:
        d = cfg.corroborating[name]
        v = values[name][info_pos]
        ok = np.isfinite(v)
        entry: dict[str, Any] = {
            "series": name,
            "expected": "falls" if d < 0 else "rises",
            "n": int(ok.sum()),
        }
        if ok.sum() < 3:
            entry.update(verdict="insufficient data")
            out.append(entry)
            continue
        tz, tp = mann_kendall(v[ok])
        entry.update(trend_z=float(tz), trend_p=float(tp))
        if trans_lo is None or trans_hi is None:
            entry.update(verdict="no transition to test")
            out.append(entry)
            continue
        pos = np.arange(v.size)
        before = v[(pos <= trans_lo) & ok]
        after = v[(pos >= trans_hi) & ok]
        if before.size == 0 or after.size == 0:
            entry.update(verdict="insufficient data")
            out.append(entry)
            continue
        sigma = estimate_noise(v[ok], "mad_diff2")
        shift = d * float(after.mean() - before.mean())
        se = sigma * math.sqrt(1 / before.size + 1 / after.size)
        if se > 0:
            z = shift / se
        else:
            z = math.copysign(math.inf, shift) if shift != 0 else 0.0
        # Where the series moves fastest in the expected direction (smoothed), as a step index.
        sv = smooth(v[ok], cfg.smoothing, cfg.smoothing_window)
        k = int(np.argmax(d * np.diff(sv))) + 1 if sv.size > 1 else 0
        change_at = int(pos[ok][k])
        tol = cfg.boundary_tolerance
        entry.update(
            shift=shift,
            shift_z=float(z) if math.isfinite(z) else (1e9 if z > 0 else -1e9),
            change_step=int(steps[info_pos[change_at]]),
            change_in_transition=bool(trans_lo - tol <= change_at <= trans_hi + tol),
            verdict="agrees" if z > z_crit else "disagrees" if z < -z_crit else "inconclusive",
        )
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# Run-level analysis (what ``babel-interp analyze stages`` runs)

ANALYZER = "stages"
PERFORMANCE_SOURCES = ("auto", "pass_at_1", "accuracy", "line_accuracy", "loss", "bpb")


@dataclass
class RunSeries:
    """The per-checkpoint series of one run and language, read from what the analyzers wrote.

    ``sources`` says where each series came from; ``missing`` lists the series that could not be
    read and why. ``competence_threshold`` is the working-language analyzer's own gate, if any.
    ``sites`` names the layers a series summarizes (``resid_pre 1-3``, ``mlp 0-3``; see
    :mod:`babel_interp.analysis.layers`): the two analyzers number layers differently.
    """

    language: str
    series: dict[str, pd.Series]
    performance: str
    performance_direction: int
    competence_threshold: float | None
    sources: dict[str, str]
    missing: dict[str, str]
    sites: dict[str, str] = field(default_factory=dict)


def _numeric_steps(df: pd.DataFrame) -> pd.DataFrame:
    # Analyzers may add rows that are not checkpoints (a random-init model, a bare model).
    steps = pd.to_numeric(df["step"], errors="coerce")
    return df.assign(step=steps)[steps.notna()].astype({"step": "int64"})


def _analysis_target(path: Path, key: str = "target") -> str | None:
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    meta = meta.get("config", meta)
    return meta.get(key) if isinstance(meta, dict) else None


def stage_series_from_run(
    run: Run | str | os.PathLike,
    language: str,
    performance: str = "auto",
    neuron_definition: str = "lape_shared",
    lens: str = "logit",
) -> RunSeries:
    """Collect the series the stage detector uses from a run's analysis tables.

    * performance: ``analysis/execution/pass_at_k.csv`` (``pass_at_1``: functional correctness
      of sampled programs, the paper's definition of performance),
      ``analysis/performance/completion.csv`` (``accuracy``: next-identifier exact match;
      ``line_accuracy``) or the trainer's eval records (``loss``, ``bpb``; lower is better).
      ``auto`` takes pass@1 when it was measured for ``language``, else accuracy, else loss.
    * ``working_language_share`` / ``working_language_excess``: from
      ``analysis/working_language/aggregate.csv``, the share of probes leaning to the primary
      language and the log-ratio excess over matched controls, averaged over the intermediate
      layers (the embedding and output layers are left out: the hypothesis is about the middle);
      ``competence`` from its ``competence.csv`` (the gate's own metric and threshold).
    * ``transferring_neurons``: ``analysis/neurons/counts_total.csv``, the ``neuron_definition``
      set's size.
    * ``transfer_ratio``: ``analysis/transfer/transfer.csv``.

    Tables written for another target language are skipped and reported in ``missing``.
    """
    if performance not in PERFORMANCE_SOURCES:
        raise ValueError(f"performance must be one of {PERFORMANCE_SOURCES}, got {performance!r}")
    run = Run.of(run).path
    root = run / "analysis"
    series: dict[str, pd.Series] = {}
    sources: dict[str, str] = {}
    missing: dict[str, str] = {}
    sites: dict[str, str] = {}

    exe_path = root / "execution" / "pass_at_k.csv"
    exe = pd.DataFrame()
    if exe_path.is_file():
        exe = pd.read_csv(exe_path)
        exe = _numeric_steps(exe[(exe["language"] == language) & (exe["k"] == 1)])
    comp_path = root / "performance" / "completion.csv"
    acc = pd.DataFrame()
    if comp_path.is_file():
        acc = pd.read_csv(comp_path)
        acc = _numeric_steps(acc[acc["language"] == language])
    if performance == "auto":
        performance = "pass_at_1" if len(exe) else "accuracy" if len(acc) else "loss"
    if performance == "pass_at_1":
        if not len(exe):
            raise FileNotFoundError(
                f"no pass@1 for {language!r} in {exe_path}: run "
                f"`babel-interp evaluate --run {run}` first"
            )
        perf_name, direction = "pass_at_1", 1
        series[perf_name] = exe.set_index("step")["pass_at_k"]
        sources[perf_name] = str(exe_path)
    elif performance in ("accuracy", "line_accuracy"):
        col = "identifier_accuracy" if performance == "accuracy" else "line_accuracy"
        if not len(acc):
            raise FileNotFoundError(
                f"no completion accuracy for {language!r} in {comp_path}: run "
                f"`babel-interp analyze performance --run {run}` first"
            )
        perf_name, direction = col, 1
        series[perf_name] = acc.set_index("step")[col]
        sources[perf_name] = str(comp_path)
    else:
        col = "val_loss" if performance == "loss" else "val_bpb"
        val = performance_series(run, languages=[language])
        val = val[val[col].notna()]
        if not len(val):
            raise FileNotFoundError(
                f"{run / 'metrics.jsonl'} has no {col} for {language!r} (eval records with "
                f"per-language {col})"
            )
        perf_name, direction = col, -1
        series[perf_name] = val.drop_duplicates("step", keep="last").set_index("step")[col]
        sources[perf_name] = str(run / "metrics.jsonl")

    threshold = None
    wl = root / "working_language"
    target = _analysis_target(wl / "summary.json")
    if target is not None and target != language:
        for name in ("working_language_share", "working_language_excess", "competence"):
            missing[name] = f"{wl} holds the analysis of {target!r}, not {language!r}"
    else:
        agg_path = wl / "aggregate.csv"
        if agg_path.is_file():
            agg = _numeric_steps(pd.read_csv(agg_path))
            if "lens" in agg.columns and len(agg):
                agg = agg[
                    agg["lens"] == (lens if lens in set(agg["lens"]) else agg["lens"].iloc[0])
                ]
            pos = agg["layer_pos"] if "layer_pos" in agg.columns else None
            if pos is not None and pos.nunique() > 2:
                agg = agg[(pos > pos.min()) & (pos < pos.max())]
            for name, col in (
                ("working_language_share", "share_primary"),
                ("working_language_excess", "excess_matched"),
            ):
                if col in agg.columns and agg[col].notna().any():
                    span = residual_span(sorted(set(agg["layer"]), key=_block_order))
                    series[name] = agg.groupby("step")[col].mean()
                    sources[name] = f"{agg_path} ({col}, mean over {span})"
                    sites[name] = f"mean over {span}"
                else:
                    missing[name] = f"{agg_path} has no {col} values"
        else:
            for name in ("working_language_share", "working_language_excess"):
                missing[name] = f"{agg_path} does not exist (run `analyze working-language`)"
        comp = wl / "competence.csv"
        if comp.is_file():
            c = _numeric_steps(pd.read_csv(comp))
            metric = str(c["metric"].iloc[0]) if "metric" in c.columns and len(c) else "top1"
            col = "top5_acc" if metric == "top5" else "top1_acc"
            if col in c.columns and len(c):
                series["competence"] = c.set_index("step")[col]
                sources["competence"] = f"{comp} ({col})"
                if "threshold" in c.columns:
                    threshold = float(c["threshold"].iloc[0])
        else:
            missing["competence"] = f"{comp} does not exist: no competence gate"

    nd = root / "neurons"
    target = _analysis_target(nd / "config.json")
    counts = nd / "counts_total.csv"
    if target is not None and target != language:
        missing["transferring_neurons"] = f"{nd} holds the analysis of {target!r}"
    elif counts.is_file():
        n = _numeric_steps(pd.read_csv(counts))
        n = n[n["definition"] == neuron_definition] if "definition" in n.columns else n.iloc[:0]
        if len(n):
            series["transferring_neurons"] = n.groupby("step")["count"].sum()
            sources["transferring_neurons"] = f"{counts} ({neuron_definition})"
            per_layer = nd / "counts.csv"
            if per_layer.is_file():
                layers = sorted(set(pd.read_csv(per_layer, usecols=["layer"])["layer"]))
                sites["transferring_neurons"] = f"sum over {mlp_span(layers)}"
        else:
            missing["transferring_neurons"] = f"{counts} has no {neuron_definition!r} rows"
    else:
        missing["transferring_neurons"] = f"{counts} does not exist (run `analyze neurons`)"

    tr = root / "transfer" / "transfer.csv"
    if tr.is_file():
        t = pd.read_csv(tr)
        t = _numeric_steps(t[t["language"] == language]) if "language" in t.columns else t.iloc[:0]
        if len(t) and t["ratio"].notna().any():
            series["transfer_ratio"] = t.set_index("step")["ratio"]
            sources["transfer_ratio"] = str(tr)
        else:
            missing["transfer_ratio"] = f"{tr} has no ratio for {language!r}"
    else:
        missing["transfer_ratio"] = f"{tr} does not exist (run `analyze transfer`)"
    return RunSeries(language, series, perf_name, direction, threshold, sources, missing, sites)


def _block_order(hook_name: str) -> tuple[int, str]:
    parts = hook_name.split(".")
    return (
        (int(parts[1]), hook_name)
        if len(parts) > 1 and parts[1].isdigit()
        else (1 << 30, hook_name)
    )


STAGES_CSV = "stages.csv"
STAGES_JSON = "stages.json"


@dataclass
class StageAnalysis:
    """The stages of one target language of a run: the detector's result and where its series
    came from.

    ``sources`` maps each series the detector read to its table (and column); ``missing`` names
    the series that could not be read, and why. A run directory's ``stages.csv`` and
    ``stages.json`` hold one analysis per language; :meth:`save` replaces this language's part
    and keeps the others, :meth:`load` reads one back.
    """

    language: str
    detection: StageResult
    sources: dict[str, str]
    missing: dict[str, str]
    sites: dict[str, str] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per checkpoint (see :meth:`StageResult.to_dataframe`), after a ``language``
        column: this language's rows of ``stages.csv``."""
        df = self.detection.to_dataframe()
        df.insert(0, "language", self.language)
        return df

    def to_dict(self) -> dict[str, Any]:
        """The verdict and its evidence (:meth:`StageResult.to_dict`) with the series' sources
        and missing inputs: this language's entry of ``stages.json``."""
        entry = self.detection.to_dict()
        entry["sources"] = dict(self.sources)
        entry["missing_inputs"] = dict(self.missing)
        entry["sites"] = dict(self.sites)
        return entry

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write this language's rows of ``stages.csv`` and its entry of ``stages.json`` under
        ``directory``; other languages' rows and entries are kept."""
        out = Path(directory)
        csv_path = replace_rows_csv(
            self.to_dataframe(), out / STAGES_CSV, "language", [self.language]
        )
        json_path = out / STAGES_JSON
        verdicts: dict[str, Any] = {}
        if json_path.is_file():
            try:
                verdicts = json.loads(json_path.read_text(encoding="utf-8"))
            except ValueError:
                verdicts = {}  # a damaged file from elsewhere is replaced, not merged
        verdicts[self.language] = self.to_dict()
        return [csv_path, write_json_atomic(json_path, verdicts)]

    @classmethod
    def load(cls, directory: str | os.PathLike, language: str | None = None) -> StageAnalysis:
        """The analysis of ``language`` (default: the only one) that :meth:`save` wrote under
        ``directory``; its tables and JSON entry equal the saved ones."""
        d = Path(directory)
        csv_path, json_path = d / STAGES_CSV, d / STAGES_JSON
        for path in (csv_path, json_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: run `analyze stages`")
        verdicts = json.loads(json_path.read_text(encoding="utf-8"))
        if language is None:
            if len(verdicts) != 1:
                raise ValueError(
                    f"{json_path} holds the stages of {sorted(verdicts)}: name a language"
                )
            language = next(iter(verdicts))
        if language not in verdicts:
            raise ValueError(
                f"{json_path} holds no stages of {language!r}; it has {sorted(verdicts)}"
            )
        entry = verdicts[language]
        df = pd.read_csv(csv_path)
        df = df[df["language"] == language].reset_index(drop=True)
        return cls(
            language=language,
            detection=_result_from_saved(df, entry),
            sources=dict(entry.get("sources", {})),
            missing=dict(entry.get("missing_inputs", {})),
            sites=dict(entry.get("sites", {})),
        )


def _nan_if_none(v: Any) -> float:
    return math.nan if v is None else float(v)


def _interval_of(v: Sequence[int] | None) -> tuple[int, int] | None:
    return None if v is None else (int(v[0]), int(v[1]))


def _result_from_saved(df: pd.DataFrame, entry: Mapping[str, Any]) -> StageResult:
    """A :class:`StageResult` rebuilt from one language's rows of ``stages.csv`` and its entry of
    ``stages.json`` (statistics saved as null, being non-finite, come back as NaN)."""
    cfg = StageConfig.from_dict(entry["config"])
    # The series are the ones the detector read (its sources), in the order it read them; a
    # table holding several languages has every language's series columns.
    if "sources" in entry:
        names = [n for n in entry["sources"] if n in df.columns]
    else:
        cols = list(df.columns)
        names = cols[cols.index("informative") + 1 : cols.index("performance_smoothed")]
    bounds = entry["boundaries"]
    stats = entry["statistics"]

    def optional(key: str) -> float | None:
        return None if stats.get(key) is None else float(stats[key])

    return StageResult(
        steps=df["step"].to_numpy(dtype=np.int64),
        labels=[str(v) for v in df["stage"]],
        verdict=entry["verdict"],
        reason=entry["reason"],
        translation_end=bounds["translation_end"],
        transition_end=bounds["transition_end"],
        translation_end_interval=_interval_of(bounds["translation_end_interval"]),
        transition_end_interval=_interval_of(bounds["transition_end_interval"]),
        confidence=entry["confidence"],
        noise_sigma=_nan_if_none(stats["noise_sigma"]),
        dip_depth=_nan_if_none(stats["dip_depth"]),
        dip_p_value=_nan_if_none(stats["dip_p_value"]),
        min_detectable_dip=_nan_if_none(stats["min_detectable_dip"]),
        rise_z=optional("rise_z"),
        level_z=optional("level_z"),
        trend_z=_nan_if_none(stats["trend_z"]),
        trend_p=_nan_if_none(stats["trend_p"]),
        series={n: df[n].to_numpy(dtype=float) for n in names},
        smoothed=df["performance_smoothed"].to_numpy(dtype=float),
        fitted=df["performance_fitted"].to_numpy(dtype=float),
        informative=df["informative"].to_numpy(dtype=bool),
        corroboration=list(entry["corroboration"]),
        missing_series=list(entry["missing_series"]),
        notes=list(entry["notes"]),
        config=cfg,
    )


def analyze_run(
    run: Run | str | os.PathLike,
    language: str | None = None,
    primary: str = "python",
    cfg: StageConfig | None = None,
    performance: str = "auto",
    competence_threshold: float | None = None,
    neuron_definition: str = "lape_shared",
    progress: bool = False,
) -> StageAnalysis:
    """Detect the stages of one target language of a run and save them.

    Saves ``RUN/analysis/stages/stages.csv`` (one row per checkpoint and language; rows of
    other languages are kept) and ``stages.json`` (the verdict, boundaries, evidence and the
    series' sources per language). The figure is drawn from the result by
    :func:`babel_interp.report.stage_plots.plot_stage_analysis`.
    ``cfg`` supplies the detector settings; its performance name and direction are taken from
    the series read, and the competence threshold is ``competence_threshold``, else the
    working-language analyzer's.
    """
    run = Run.of(run)
    language = single_target_language(run, language, primary)
    rs = stage_series_from_run(run, language, performance, neuron_definition)
    cfg = cfg or StageConfig()
    threshold = competence_threshold
    if threshold is None:
        threshold = rs.competence_threshold
    changes: dict[str, Any] = dict(
        performance=rs.performance, performance_direction=rs.performance_direction
    )
    if threshold is not None:
        changes["competence_threshold"] = float(threshold)
    cfg = cfg.replace(**changes)
    result = StageAnalysis(
        language=language,
        detection=detect_stages(rs.series, cfg, progress=progress),
        sources=rs.sources,
        missing=rs.missing,
        sites=rs.sites,
    )
    result.save(run.analysis_dir(ANALYZER))
    return result
