"""Calibration of the neuron-count nulls on synthetic window records without a neuron-specific
language effect.

Data: two languages, 2 layers x 100 neurons, 40 windows of 32 tokens per language. Neuron j fires
on a token of window w with probability sigmoid(a_j + u_w): base logits a_j ~ N(-1, 1.5) give
heterogeneous firing rates (about 2% to 90%), and the window's overall level u_w ~ N(0, 0.5) is
shifted by +0.5 on "php" windows. The language moves the whole network's firing level and nothing
else: given u_w, which neurons fire does not depend on the language.

False-positive rate at level alpha: over M independent data sets, the share whose randomized
one-sided permutation p-value of the observed LAPE-shared count against B null draws is <= alpha,
with p_lo = (#{null < obs} + U (#{null == obs} + 1)) / (B + 1), U ~ Uniform(0, 1) (counts are small
integers, so ties are split at random; under an exact null P(p <= alpha) = alpha for any B), and
p_hi alike with ">". The lower tail is the claim "fewer shared neurons than chance".
"""

from __future__ import annotations

import pytest
import torch
from _neuron_fixtures import level_shift_stats

from babel_interp.analysis.neurons.lape import LapeConfig, lape
from babel_interp.analysis.neurons.transferring import (
    NeuronAnalysisConfig,
    permutation_null_counts,
    transferring_sets,
)

ALPHA = 0.05
N_DRAWS = 19  # B: null draws per data set
N_SETS = 1000  # M: data sets for the firing-rate-matched null
N_SETS_SHUFFLE = 200  # the label shuffle is far off; fewer data sets show it
LAPE_CFG = LapeConfig(top_rate=0.05)  # a quota of 10 of 200 neurons


def _p_values(null: torch.Tensor, observed: int, u: float) -> tuple[float, float]:
    ties = float((null == observed).sum()) + 1.0
    b = null.numel() + 1
    return (
        (float((null < observed).sum()) + u * ties) / b,
        (float((null > observed).sum()) + u * ties) / b,
    )


def _fpr(n_sets: int, **null_kwargs: object) -> dict[str, float]:
    """FPR per tail of one null over data sets 0..n_sets-1 (the same data for every null), and
    the mean observed and null shared counts."""
    p, obs_sum, null_sum = [], 0.0, 0.0
    for m in range(n_sets):
        stats = level_shift_stats(torch.Generator().manual_seed(1000 + m))
        sets = transferring_sets(lape(stats, LAPE_CFG), "python", "php")
        observed = int(sets["lape_shared"].sum())
        null = permutation_null_counts(
            stats, "python", "php", LAPE_CFG, n_permutations=N_DRAWS, seed=m, **null_kwargs
        )["lape_shared"].sum(1)
        u = float(torch.rand(1, generator=torch.Generator().manual_seed(m)))
        p.append(_p_values(null, observed, u))
        obs_sum += observed
        null_sum += float(null.double().mean())
    t = torch.tensor(p)
    return {
        "fpr_lo": float((t[:, 0] <= ALPHA).double().mean()),
        "fpr_hi": float((t[:, 1] <= ALPHA).double().mean()),
        "observed_mean": obs_sum / n_sets,
        "null_mean": null_sum / n_sets,
    }


def test_default_null_is_calibrated_without_a_neuron_specific_language_effect():
    # The analysis' default null, called as the analysis calls it (no kind named).
    fpr = _fpr(N_SETS)
    assert abs(fpr["fpr_lo"] - ALPHA) <= 0.02, fpr
    assert abs(fpr["fpr_hi"] - ALPHA) <= 0.02, fpr


def test_label_shuffle_is_not_calibrated_on_the_same_data():
    # The languages made indistinguishable: LAPE's quota fills with high-firing neurons assigned
    # to both languages, far above the shared count of data that differ only in firing level.
    fpr = _fpr(N_SETS_SHUFFLE, kind="label_shuffle")
    assert fpr["fpr_lo"] > ALPHA + 0.5, fpr
    assert fpr["null_mean"] > fpr["observed_mean"] + 2, fpr


def test_analysis_defaults_to_the_firing_matched_null():
    cfg = NeuronAnalysisConfig()
    assert cfg.null_kind == "firing_matched"
    with pytest.raises(ValueError, match="null_kind"):
        NeuronAnalysisConfig(null_kind="shuffled")
    with pytest.raises(ValueError, match="stratum_windows"):
        NeuronAnalysisConfig(null_stratum_windows=1)
