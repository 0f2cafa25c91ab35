"""Activation-contrast scores: exact effect sizes, planted recovery, null calibration."""

from __future__ import annotations

import math

import pytest
import torch
from _neuron_fixtures import planted_neuron_model
from beartype import beartype
from jaxtyping import jaxtyped

from babel_interp.analysis.neurons.contrast import (
    ContrastConfig,
    benjamini_hochberg,
    contrast_all_pairs,
    contrast_pair,
    effect_sizes,
)
from babel_interp.analysis.neurons.neuron_stats import NeuronStatsConfig, collect_neuron_stats
from babel_interp.model import ModelConfig, build_model

CFG = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=120)
PLANTED_CFG = ModelConfig(
    n_layers=2, d_model=64, n_heads=2, d_head=32, d_mlp=256, n_ctx=64, d_vocab=512
)
ALL = NeuronStatsConfig(tokens_per_language=None)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a loaded machine idle OpenMP
    # threads spinning at every barrier make each small op ~100x slower. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(CFG)
    m.eval()
    return m


def _windows(n: int, ranges: dict[str, tuple[int, int]], seed: int, length: int = 32):
    gen = torch.Generator().manual_seed(seed)
    return {
        lang: torch.randint(lo, hi, (n, length), generator=gen) for lang, (lo, hi) in ranges.items()
    }


def test_effect_sizes_match_a_token_level_computation(model):
    windows = _windows(6, {"python": (0, 60), "php": (60, 120)}, seed=1)
    stats = collect_neuron_stats(model, windows, ALL, progress=False)
    res = contrast_pair(stats, "python", "php", ContrastConfig(n_bootstrap=0, n_permutations=0))
    acts = {}
    for lang, w in windows.items():
        with torch.no_grad():
            _, cache = model.run_with_cache(w, names_filter=lambda n: n.endswith("hook_post"))
        acts[lang] = torch.stack(
            [cache[f"blocks.{i}.mlp.hook_post"].reshape(-1, 64) for i in range(2)], 1
        ).double()  # [token, layer, neuron]
    a, b = acts["python"], acts["php"]
    na, nb = a.shape[0], b.shape[0]
    diff = a.mean(0) - b.mean(0)
    pooled = ((na - 1) * a.var(0) + (nb - 1) * b.var(0)) / (na + nb - 2)
    ca, cb = (a > 0).sum(0).double(), (b > 0).sum(0).double()
    log_odds = torch.log((ca + 0.5) / (na - ca + 0.5)) - torch.log((cb + 0.5) / (nb - cb + 0.5))
    torch.testing.assert_close(res.scores["mean_diff"], diff, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.scores["cohens_d"], diff / pooled.sqrt(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(res.scores["log_odds"], log_odds, atol=1e-6, rtol=1e-6)
    assert res.n_tokens_a == na and res.n_windows_b == 6
    assert res.p_value is None and not res.ci_low


@pytest.fixture(scope="module")
def planted():
    gen = torch.Generator().manual_seed(1)
    sets: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for layer in range(2):
        perm = torch.randperm(256, generator=gen).tolist()
        sets[0] += [(layer, j) for j in perm[:6]]
        sets[1] += [(layer, j) for j in perm[6:12]]
    model = planted_neuron_model(PLANTED_CFG, 2, sets, seed=0)
    windows = _windows(40, {"python": (0, 256), "php": (256, 512)}, seed=2, length=64)
    return collect_neuron_stats(model, windows, ALL, progress=False), sets


def _pairs(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {(i, j) for i, j in mask.nonzero().tolist()}


@pytest.mark.parametrize("method,n_perm", [("pooled", 200), ("bh", 600)])
def test_planted_neurons_are_recovered(planted, method, n_perm):
    stats, sets = planted
    cfg = ContrastConfig(fdr_method=method, n_permutations=n_perm, n_bootstrap=100)
    res = contrast_pair(stats, "python", "php", cfg)
    for k, lang in enumerate(["python", "php"]):
        got, want = _pairs(res.specific(lang)), set(sets[k])
        hit = len(got & want)
        assert hit / max(1, len(got)) >= 0.95 and hit / len(want) >= 0.95, (lang, got, want)
    d_lo, d_hi = res.ci_low["cohens_d"], res.ci_high["cohens_d"]
    for layer, j in sets[0]:
        assert float(d_lo[layer, j]) > 0  # python neurons: interval above zero
    for layer, j in sets[1]:
        assert float(d_hi[layer, j]) < 0
    assert res.expected_false < 0.5
    with pytest.raises(KeyError, match="pair is"):
        res.specific("go")


def test_same_number_per_language(planted):
    stats, _ = planted
    res = contrast_pair(stats, "python", "php", ContrastConfig(k_per_language=4, n_bootstrap=0))
    assert int(res.specific_a.sum()) == int(res.specific_b.sum()) == 4
    # The four kept are the four largest effects on each side.
    d = res.scores["cohens_d"].flatten()
    sig = res.significant.flatten()
    top_a = set(torch.where(sig, d, -math.inf).topk(4).indices.tolist())
    assert set(res.specific_a.flatten().nonzero().flatten().tolist()) == top_a


def test_no_language_difference_gives_no_discoveries(model):
    # Both "languages" draw windows from one token distribution: every discovery is false.
    windows = _windows(40, {"python": (0, 120), "php": (0, 120)}, seed=3)
    stats = collect_neuron_stats(model, windows, ALL, progress=False)
    cfg = ContrastConfig(min_effect=0.0, n_permutations=300, n_bootstrap=0)
    res = contrast_pair(stats, "python", "php", cfg)
    assert int(res.significant.sum()) <= 1
    # Window-level permutation p-values are calibrated: roughly uniform under the null.
    assert 0.35 < float(res.p_value.mean()) < 0.65
    assert float((res.p_value <= 0.05).double().mean()) < 0.12
    # A real difference between the token ranges is found with the same settings.
    real = _windows(40, {"python": (0, 60), "php": (60, 120)}, seed=3)
    stats = collect_neuron_stats(model, real, ALL, progress=False)
    assert int(contrast_pair(stats, "python", "php", cfg).significant.sum()) > 10


def test_bootstrap_intervals_cover_the_estimate_and_shrink(model):
    ranges = {"python": (0, 60), "php": (60, 120)}
    cfg = ContrastConfig(n_permutations=0, n_bootstrap=200)
    widths = []
    for n in (8, 32):
        stats = collect_neuron_stats(model, _windows(n, ranges, seed=4), ALL, progress=False)
        res = contrast_pair(stats, "python", "php", cfg)
        for name in ("mean_diff", "cohens_d", "log_odds"):
            inside = (res.ci_low[name] <= res.scores[name] + 1e-9) & (
                res.scores[name] <= res.ci_high[name] + 1e-9
            )
            assert float(inside.double().mean()) > 0.95, name
        widths.append(float((res.ci_high["cohens_d"] - res.ci_low["cohens_d"]).median()))
    assert widths[1] < 0.75 * widths[0]


def test_benjamini_hochberg_by_hand():
    q = benjamini_hochberg(torch.tensor([0.01, 0.04, 0.03, 0.005], dtype=torch.float64))
    torch.testing.assert_close(q, torch.tensor([0.02, 0.04, 0.04, 0.02], dtype=torch.float64))
    assert float(benjamini_hochberg(torch.tensor([0.9, 0.99])).max()) <= 1.0


def test_tables_and_all_pairs(model):
    windows = _windows(5, {"python": (0, 40), "php": (40, 80), "go": (80, 120)}, seed=5)
    stats = collect_neuron_stats(model, windows, ALL, progress=False)
    cfg = ContrastConfig(n_bootstrap=20, n_permutations=20)
    pairs = contrast_all_pairs(stats, cfg)
    assert list(pairs) == [("python", "php"), ("python", "go"), ("php", "go")]
    df = pairs[("php", "go")].to_dataframe()
    assert len(df) == 2 * 64
    assert {"layer", "neuron", "cohens_d", "cohens_d_lo", "q_value", "fdr", "specific_a"} <= set(
        df.columns
    )
    summary = pairs[("python", "php")].summary_per_layer()
    assert summary["layer"].tolist() == [0, 1] and (summary["n_specific_a"] >= 0).all()


def test_bad_input_is_reported(model):
    windows = _windows(1, {"python": (0, 60), "php": (60, 120)}, seed=6)
    stats = collect_neuron_stats(model, windows, ALL, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        contrast_pair(stats, "python", "php")
    with pytest.raises(ValueError, match="two different languages"):
        contrast_pair(stats, "php", "php")
    with pytest.raises(KeyError, match="no statistics"):
        contrast_pair(stats, "python", "rust")
    bad = {
        "statistic": "t",
        "fdr_method": "bonferroni",
        "n_bootstrap": -1,
        "ci": 1.0,
        "alpha": 0.0,
        "min_effect": -1.0,
        "k_per_language": 0,
        "chunk_size": 0,
        "sd_floor": 0.0,
    }
    for name, value in bad.items():
        with pytest.raises(ValueError, match=f"ContrastConfig.{name}"):
            ContrastConfig(**{name: value})
    cfg = ContrastConfig(statistic="log_odds", k_per_language=3)
    assert ContrastConfig.from_dict(cfg.to_dict()) == cfg


def test_chunking_does_not_change_results(planted):
    stats, _ = planted
    whole = contrast_pair(stats, "python", "php", ContrastConfig(n_bootstrap=30))
    chunked = contrast_pair(stats, "python", "php", ContrastConfig(n_bootstrap=30, chunk_size=100))
    for name in ("cohens_d", "log_odds"):
        torch.testing.assert_close(whole.scores[name], chunked.scores[name])
        torch.testing.assert_close(whole.ci_low[name], chunked.ci_low[name])
    torch.testing.assert_close(whole.p_value, chunked.p_value)
    torch.testing.assert_close(whole.fdr, chunked.fdr)


def test_jaxtyping_shapes_are_checked():
    checked = jaxtyped(typechecker=beartype)(effect_sizes)
    n = torch.tensor([[10.0]])
    x = torch.rand(1, 5)
    out = checked(n, x, x, x + 1, n, x, x, x + 1)
    assert out["cohens_d"].shape == (1, 5)
    with pytest.raises(Exception, match="neuron|shape|dimension"):
        checked(n, x, x, torch.rand(1, 6), n, x, x, x)
