"""Stage detector: the vectorized segmented fit against a per-pair least-squares reference.

The boundary bootstrap refits the two-knot model to every bootstrap series over every admissible
knot pair. Both methods choose, for each series, the least-squares pair among those whose fitted
middle segment falls:

* reference: ``numpy.linalg.lstsq`` for each (series, pair), one at a time;
* project: :func:`babel_interp.analysis.stages.detector._best_dip_pairs` (one batched QR per
  block of pairs, every series projected at once).

Printed: seconds per method, the speed-up, and whether both chose the same pair for every series
(the correctness check); then the time of a whole :func:`detect_stages` call. Usage::

    python benchmarks/stage_detector.py                 # 40 checkpoints, 200 bootstrap series
    python benchmarks/stage_detector.py --n 80 --reps 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from babel_interp.analysis.stages.detector import (
    StageConfig,
    _best_dip_pairs,
    _candidate_pairs,
    _design,
    detect_stages,
)


def reference_best_pairs(Y: np.ndarray, pairs: np.ndarray, quadratic: bool) -> np.ndarray:
    """One least-squares fit per (series, pair)."""
    n = Y.shape[1]
    X_all = _design(n, pairs, quadratic)
    best = np.full(len(Y), -1)
    for r, y in enumerate(Y):
        best_rss = np.inf
        for j, (p, b) in enumerate(pairs):
            X = X_all[j]
            beta, *_ = np.linalg.lstsq(X, y, rcond=None)
            fitted = X @ beta
            if not fitted[p] > fitted[b]:
                continue
            rss = float(np.sum((y - fitted) ** 2))
            if rss < best_rss:
                best_rss, best[r] = rss, j
    return best


def series(n: int, reps: int, seed: int) -> np.ndarray:
    """Rise until 30% of the checkpoints, fall until 55%, then level; Gaussian noise."""
    i = np.arange(n)
    p, b = int(0.3 * n), int(0.55 * n)
    y = np.where(i <= p, i / p, np.where(i <= b, 1 - 0.4 * (i - p) / (b - p), 0.6))
    return y + 0.05 * np.random.default_rng(seed).standard_normal((reps, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="checkpoints per series")
    ap.add_argument("--reps", type=int, default=200, help="bootstrap series")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    Y = series(args.n, args.reps, args.seed)
    for quadratic in (False, True):
        pairs = _candidate_pairs(args.n, 2, quadratic)
        t0 = time.perf_counter()
        ours, _ = _best_dip_pairs(Y, pairs, quadratic)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = reference_best_pairs(Y, pairs, quadratic)
        t_ref = time.perf_counter() - t0
        same = float(np.mean(ours == ref))
        shape = "quadratic rise" if quadratic else "linear rise"
        print(
            f"{shape}: {args.reps} series x {len(pairs)} knot pairs, n={args.n}: "
            f"reference {t_ref:.2f} s, project {t_ours:.3f} s, speed-up {t_ref / t_ours:.1f}x, "
            f"same pair chosen for {same:.1%} of series"
        )
    y = Y[0]
    steps = np.unique(np.geomspace(10, 20_000, args.n).astype(int))
    if len(steps) == args.n:
        t0 = time.perf_counter()
        res = detect_stages({"performance": (steps, y)}, StageConfig(n_boot=args.reps))
        print(
            f"detect_stages (n_null=1000, n_boot={args.reps}): "
            f"{time.perf_counter() - t0:.2f} s -> {res.verdict}"
        )


if __name__ == "__main__":
    main()
