"""pass@k: the unbiased estimator of Chen et al. (2021), with an interval over problems.

For one problem with ``n`` samples of which ``c`` pass, pass@k = 1 - C(n-c, k) / C(n, k): the
chance that at least one of k samples drawn without replacement passes. The suite's pass@k is
the mean over problems. Problems are the unit of resampling (samples of one problem are not
independent draws of the suite), so the interval is a percentile bootstrap over problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from babel_interp.analysis.stats import bootstrap_ci

__all__ = ["PassAtK", "pass_at_k", "pass_at_k_per_problem", "pass_at_k_summary"]


def pass_at_k_per_problem(n: Sequence[int], c: Sequence[int], k: int) -> np.ndarray:
    """Per-problem unbiased pass@k (numerically stable product form).

    Raises ``ValueError`` when a problem has fewer than ``k`` samples or ``c > n``.
    """
    n_arr = np.asarray(n, dtype=np.int64)
    c_arr = np.asarray(c, dtype=np.int64)
    if n_arr.shape != c_arr.shape:
        raise ValueError(
            f"n and c must have one entry per problem ({n_arr.shape} vs {c_arr.shape})"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (c_arr < 0).any() or (c_arr > n_arr).any():
        raise ValueError("every problem needs 0 <= c <= n")
    if (n_arr < k).any():
        raise ValueError(
            f"pass@{k} needs at least {k} samples per problem; the fewest is {int(n_arr.min())}"
        )
    out = np.empty(len(n_arr), dtype=np.float64)
    for i, (ni, ci) in enumerate(zip(n_arr, c_arr, strict=True)):
        if ni - ci < k:
            out[i] = 1.0
        else:
            # 1 - prod_{j=n-c+1}^{n} (1 - k/j)
            out[i] = 1.0 - float(np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1)))
    return out


def pass_at_k(n: Sequence[int], c: Sequence[int], k: int) -> float:
    """The suite's pass@k: the mean of the per-problem estimates."""
    per = pass_at_k_per_problem(n, c, k)
    return float(per.mean()) if len(per) else float("nan")


@dataclass(frozen=True)
class PassAtK:
    """pass@k of a set of problems with a bootstrap interval over problems."""

    k: int
    value: float
    ci_low: float
    ci_high: float
    n_problems: int
    n_samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def pass_at_k_summary(
    n: Sequence[int],
    c: Sequence[int],
    k: int,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> PassAtK:
    """pass@k with a percentile bootstrap interval, resampling problems."""
    per = pass_at_k_per_problem(n, c, k)
    m = len(per)
    if m == 0:
        return PassAtK(k, float("nan"), float("nan"), float("nan"), 0, 0)
    ci = bootstrap_ci(per, n_boot=n_boot, ci=confidence, seed=seed)
    return PassAtK(k, ci.estimate, ci.low, ci.high, m, int(np.min(n)))
