"""The window relabelings of the neuron-count nulls (strata of matched firing level, the plain
label shuffle)."""

from __future__ import annotations

import torch
from _neuron_fixtures import level_shift_stats

from babel_interp.analysis.neurons.nulls import (
    LabelNull,
    firing_strata,
    null_label,
    permute_within,
    window_firing_levels,
)


def test_firing_matched_relabeling_keeps_language_counts_per_stratum():
    stats = level_shift_stats(torch.Generator().manual_seed(0), shift=2.0)
    levels = window_firing_levels(stats)
    strata = firing_strata(levels, 4, torch.Generator().manual_seed(1))
    assert torch.bincount(strata).tolist() == [4] * 20
    # Strata are runs of the ranking by level.
    order = torch.argsort(levels)
    assert bool((strata[order].diff() >= 0).all())
    labels = permute_within(stats.window_lang, strata, torch.Generator().manual_seed(2))
    for s in range(20):
        sel = strata == s
        assert labels[sel].sort().values.tolist() == stats.window_lang[sel].sort().values.tolist()
    # A large level shift leaves the languages in separate strata: the null keeps the labels.
    null = LabelNull(stats, "firing_matched", 4, seed=3)
    assert float((null.draw() != stats.window_lang).double().mean()) < 0.1
    shuffle = LabelNull(stats, "label_shuffle", seed=3)
    assert float((shuffle.draw() != stats.window_lang).double().mean()) > 0.3


def test_label_shuffle_reproduces_the_plain_permutation():
    stats = level_shift_stats(torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(5)
    expect = stats.window_lang[torch.randperm(stats.n_windows, generator=gen)]
    assert torch.equal(LabelNull(stats, "label_shuffle", seed=5).draw(), expect)


def test_null_label_names_tables_from_before_the_null_kind_column_as_label_shuffled():
    assert null_label(None) == "label-shuffled null"
    assert null_label(float("nan")) == "label-shuffled null"
    assert null_label("firing_matched") == "firing-rate-matched null"
