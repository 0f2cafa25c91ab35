"""The window relabelings of the neuron-count nulls (strata of matched firing level, the plain
label shuffle)."""

from __future__ import annotations

import pandas as pd
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


def _write_counts(run, rows):
    d = run / "analysis" / "neurons"
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "counts_total.csv", index=False)


def test_report_names_the_null_and_reads_tables_without_null_kind(tmp_path):
    from babel_interp.report.report import neuron_sentence, neuron_summary

    base = {"null_lo": 18.0, "null_hi": 25.0, "null_frac_ge": 1.0, "random_init_count": 3}
    old = [
        {"step": s, "definition": d, "count": 0, "null_mean": 22.0, **base}
        for s in (0, 10)
        for d in ("lape_shared", "primary_active")
    ]
    _write_counts(tmp_path / "old", old)
    summary = neuron_summary(tmp_path / "old")
    assert len(summary) == 2 and set(summary["null_kind"]) == {"label_shuffle"}
    text = neuron_sentence(summary)
    assert "0 vs a label-shuffled null of 22.0 [18, 25]" in text
    assert "not that neurons are shared less than chance" in text

    new = [
        {**row, "null_kind": "firing_matched", "null_mean": 1.5, "null_frac_le": 0.4} for row in old
    ]
    _write_counts(tmp_path / "new", new)
    text = neuron_sentence(neuron_summary(tmp_path / "new"))
    assert "0 vs a firing-rate-matched null of 1.5 [18, 25]; 40% of its draws" in text
    assert "less than chance" not in text
