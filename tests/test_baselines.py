"""Baseline mixtures (proportional, uniform, temperature, UniMax) and the statistics helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from babel_interp.analysis.stats import t_interval, t_quantile
from babel_interp.corpus.shards import ShardWriter, write_manifest
from babel_interp.optimizer.baselines import (
    Allocation,
    BaselineConfig,
    baseline_allocation,
    corpus_language_sizes,
    integer_budgets,
    proportional_weights,
    temperature_weights,
    uniform_weights,
    unimax_budgets,
)
from babel_interp.optimizer.stats import pearson, rankdata, spearman

SIZES = {"python": 11_000, "php": 23_000, "csharp": 16_000, "go": 11_000, "cpp": 28_000}


def test_proportional_and_uniform():
    w = proportional_weights(SIZES)
    assert math.isclose(sum(w.values()), 1.0)
    assert math.isclose(w["php"], 23 / 89)
    u = uniform_weights({"a": 5, "b": 0, "c": 7})
    assert u == {"a": 0.5, "b": 0.0, "c": 0.5}


def test_temperature_interpolates_between_proportional_and_uniform():
    assert temperature_weights(SIZES, 1.0) == pytest.approx(proportional_weights(SIZES))
    w2 = temperature_weights({"a": 100, "b": 400}, 2.0)
    assert w2 == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    flat = temperature_weights(SIZES, 1e6)
    assert max(flat.values()) - min(flat.values()) < 1e-5
    # Raising tau moves weight from the largest language to the smallest, monotonically.
    taus = [1.0, 2.0, 5.0, 20.0]
    small = [temperature_weights(SIZES, t)["python"] for t in taus]
    big = [temperature_weights(SIZES, t)["cpp"] for t in taus]
    assert small == sorted(small) and big == sorted(big, reverse=True)
    # A tiny tau must not overflow: all weight goes to the largest language.
    assert temperature_weights(SIZES, 1e-3)["cpp"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="tau"):
        temperature_weights(SIZES, 0.0)


def test_unimax_caps_small_languages_and_redistributes():
    b = unimax_budgets({"a": 10, "b": 100, "c": 1000}, total_tokens=600, max_epochs=2)
    # a: min(600/3, 2*10) = 20; b: min(580/2, 2*100) = 200; c: min(380, 2000) = 380.
    assert b == pytest.approx({"a": 20, "b": 200, "c": 380})
    even = unimax_budgets({"a": 1000, "b": 1000}, total_tokens=600, max_epochs=1)
    assert even == pytest.approx({"a": 300, "b": 300})
    assert unimax_budgets({"a": 0, "b": 50}, 30, 1)["a"] == 0.0


def test_unimax_allocation_reduces_an_unfillable_budget():
    alloc = baseline_allocation(
        BaselineConfig(method="unimax", total_tokens=1000, max_epochs=2), {"a": 10, "b": 100}
    )
    assert alloc.total_tokens == 220
    assert alloc.budgets == {"a": 20, "b": 200}
    assert any("cap" in note for note in alloc.notes)


def test_integer_budgets_sum_exactly_and_deterministically():
    w = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    out = integer_budgets(w, 100)
    assert sum(out.values()) == 100
    assert out == integer_budgets(w, 100)
    assert sorted(out.values()) == [33, 33, 34]


@pytest.mark.parametrize("method", ["proportional", "uniform", "temperature", "unimax"])
def test_allocation_round_trip_and_epochs(method):
    cfg = BaselineConfig(method=method, total_tokens=50_000, temperature=2.0, max_epochs=1.0)
    alloc = baseline_allocation(cfg, SIZES)
    assert sum(alloc.budgets.values()) == alloc.total_tokens
    assert math.isclose(sum(alloc.weights.values()), 1.0)
    again = Allocation.from_dict(alloc.to_dict())
    assert again == alloc
    for lang, e in alloc.epochs.items():
        assert e == pytest.approx(alloc.budgets[lang] / SIZES[lang])
    if method == "unimax":
        assert max(alloc.epochs.values()) <= 1.0 + 1e-9
    assert BaselineConfig.from_dict(cfg.to_dict()) == cfg


def test_uniform_at_natural_total_marks_repetition():
    alloc = baseline_allocation(BaselineConfig(method="uniform"), SIZES)
    assert alloc.total_tokens == sum(SIZES.values())
    assert any("epochs > 1" in n for n in alloc.notes)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="BaselineConfig.method"):
        BaselineConfig(method="doremi")
    with pytest.raises(ValueError, match="BaselineConfig.temperature"):
        BaselineConfig(method="temperature", temperature=-1)
    with pytest.raises(ValueError, match="BaselineConfig.max_epochs"):
        BaselineConfig(max_epochs=0)
    with pytest.raises(ValueError, match="BaselineConfig.total_tokens"):
        BaselineConfig(total_tokens=0)
    with pytest.raises(ValueError, match="unknown field"):
        BaselineConfig.from_dict({"method": "uniform", "tau": 3})
    with pytest.raises(ValueError, match="not in the corpus"):
        baseline_allocation(BaselineConfig(languages=["rust"]), SIZES)
    with pytest.raises(ValueError, match="0 tokens"):
        proportional_weights({"a": 0})


def test_corpus_language_sizes_reads_the_manifest(tmp_path):
    langs = ["python", "php", "go"]
    splits = {}
    rng = np.random.default_rng(0)
    for split, docs in (("train", {"python": 3, "php": 5}), ("val", {"python": 1, "php": 1})):
        w = ShardWriter(tmp_path, split, langs, vocab_size=100, eos_id=0)
        for lang, k in docs.items():
            for _ in range(k):
                w.add(lang, rng.integers(1, 100, size=9), n_bytes=30)
        splits[split] = w.close()
    write_manifest(tmp_path, langs, splits, {"vocab_size": 100, "eos_id": 0, "hash": "x"})
    assert corpus_language_sizes(tmp_path) == {"python": 30, "php": 50, "go": 0}
    alloc = baseline_allocation(
        BaselineConfig(method="uniform", total_tokens=100), {**corpus_language_sizes(tmp_path)}
    )
    assert alloc.weights["go"] == 0.0 and any("no train tokens" in n for n in alloc.notes)


def test_student_t_quantiles_match_tables():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062047, rel=1e-7)
    assert t_quantile(0.975, 2) == pytest.approx(4.30265273, rel=1e-7)
    assert t_quantile(0.975, 10) == pytest.approx(2.22813885, rel=1e-7)
    assert t_quantile(0.025, 30) == pytest.approx(-2.04227246, rel=1e-7)


def test_mean_ci_and_correlations():
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.estimate == 2.0
    assert ci.high - ci.estimate == pytest.approx(4.30265273 * 1.0 / math.sqrt(3))
    assert math.isnan(t_interval([5.0]).low)
    x = np.arange(10.0)
    assert pearson(x, 2 * x + 1).r == pytest.approx(1.0)
    r = pearson(x, x**3)
    assert 0 < r.low < r.r < r.high <= 1 and r.p_value < 0.001
    assert spearman(x, x**3).r == pytest.approx(1.0)
    assert list(rankdata([3, 1, 3, 2])) == [3.5, 1.0, 3.5, 2.0]
    # Against numpy's own Pearson on a noisy sample, and an independent Spearman computation.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert pearson(a, b).r == pytest.approx(float(np.corrcoef(a, b)[0, 1]))
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    assert spearman(a, b).r == pytest.approx(float(np.corrcoef(ra, rb)[0, 1]))


def test_method_specs_parse():
    from babel_interp.optimizer.methods import MethodSpec

    s = MethodSpec.parse("temperature:temperature=3,languages=python;php")
    assert s.method == "temperature"
    assert s.params == {"temperature": 3, "languages": ["python", "php"]}
    assert MethodSpec.parse({"method": "unimax", "max_epochs": 2}).params == {"max_epochs": 2}
    assert str(MethodSpec.parse("uniform")) == "uniform"
    with pytest.raises(ValueError, match="MethodSpec.method"):
        MethodSpec.parse("doremi")
    with pytest.raises(ValueError, match="key=value"):
        MethodSpec.parse("unimax:2")


def test_optimize_cli_writes_a_mixture_the_trainer_reads(tmp_path):
    from babel_interp.cli import main
    from babel_interp.mixture import load_mixture
    from babel_interp.optimizer.methods import read_mixture_file

    corpus = tmp_path / "corpus"
    langs = ["python", "php", "go"]
    splits = {}
    rng = np.random.default_rng(0)
    for split, docs in (("train", {"python": 40, "php": 10, "go": 2}), ("val", {"python": 2})):
        w = ShardWriter(corpus, split, langs, vocab_size=100, eos_id=0)
        for lang, k in docs.items():
            for _ in range(k):
                w.add(lang, rng.integers(1, 100, size=9), n_bytes=30)
        splits[split] = w.close()
    write_manifest(corpus, langs, splits, {"vocab_size": 100, "eos_id": 0, "hash": "x"})
    out = tmp_path / "mix" / "unimax.json"
    rc = main(
        [
            "optimize",
            "--method",
            "unimax",
            "--corpus",
            str(corpus),
            "--total-tokens",
            "300",
            "--max-epochs",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    mixture = load_mixture(out)  # exactly the trainer's Mixture format
    # go has 20 tokens: capped at 2 epochs = 40; php 100 tokens gets (300 - 40) / 2 = 130.
    assert mixture.weights == pytest.approx({"python": 130 / 300, "php": 130 / 300, "go": 40 / 300})
    assert mixture.epoch_caps == {"python": 2.0, "php": 2.0, "go": 2.0}
    again, meta = read_mixture_file(out)
    assert again == mixture
    assert meta["provenance"]["method"] == "unimax"
    assert meta["provenance"]["corpus"]["train_tokens"] == {"python": 400, "php": 100, "go": 20}
    assert meta["provenance"]["corpus"]["manifest_digest"].startswith("sha256:")
    assert meta["allocation"]["budgets"] == {"python": 130, "php": 130, "go": 40}
    rc = main(["optimize", "--method", "babel-tower", "--corpus", str(corpus), "--out", str(out)])
    assert rc == 1  # no evidence: a clear error, not a traceback
