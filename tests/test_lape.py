"""LAPE against a direct, readable recomputation; planted-neuron recovery; transferring sets."""

from __future__ import annotations

import math

import pytest
import torch
from _neuron_fixtures import planted_neuron_model
from beartype import beartype
from jaxtyping import jaxtyped

from babel_interp.analysis.neurons.lape import LapeConfig, lape, lape_entropy, lape_from_probs
from babel_interp.analysis.neurons.neuron_stats import (
    NeuronStats,
    NeuronStatsConfig,
    collect_neuron_stats,
)
from babel_interp.analysis.neurons.transferring import (
    TransferConfig,
    counts_per_layer,
    jaccard,
    permutation_null_counts,
    transferring_sets,
)
from babel_interp.model import ModelConfig

# -- a direct recomputation, written for reading, not speed -------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a loaded machine idle OpenMP
    # threads spinning at every barrier make each small op ~100x slower. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_lape(probs: list, filter_rate: float, top_rate: float, bar_ratio: float):
    """Tang et al.'s identify.py step by step on nested lists ``probs[layer][neuron][lang]``."""
    values = sorted(p for layer in probs for neuron in layer for p in neuron)

    def kth_smallest(rate: float) -> float:
        k = max(1, round(len(values) * rate))
        return values[k - 1]

    filter_value = kth_smallest(filter_rate)
    scored = []
    for layer, neurons in enumerate(probs):
        for neuron, p in enumerate(neurons):
            total = sum(p)
            q = [x / total for x in p] if total > 0 else [0.0 for _ in p]
            entropy = -sum(x * math.log(x) for x in q if x > 0)
            if not any(x > filter_value for x in p):
                entropy = math.inf  # dropped by the filter
            scored.append((entropy, layer, neuron))
    n_select = round(len(scored) * top_rate)
    selected = sorted(scored)[:n_select]  # ties: (layer, neuron) order
    bar = kth_smallest(bar_ratio)
    n_lang = len(probs[0][0])
    assigned = {
        k: {(layer, neuron) for _, layer, neuron in selected if probs[layer][neuron][k] > bar}
        for k in range(n_lang)
    }
    return {
        "filter_value": filter_value,
        "bar_value": bar,
        "selected": {(layer, neuron) for _, layer, neuron in selected},
        "assigned": assigned,
    }


def _check_against_reference(probs: torch.Tensor, cfg: LapeConfig) -> None:
    langs = [f"l{k}" for k in range(probs.shape[-1])]
    got = lape_from_probs(probs, langs, cfg)
    want = reference_lape(probs.tolist(), cfg.filter_rate, cfg.top_rate, cfg.activation_bar_ratio)
    assert got.filter_value == want["filter_value"]
    assert got.bar_value == want["bar_value"]
    assert {tuple(x) for x in got.selected.nonzero().tolist()} == want["selected"]
    for k, lang in enumerate(langs):
        assert set(got.neurons(lang)) == want["assigned"][k], lang


@pytest.mark.parametrize(
    "cfg",
    [
        LapeConfig(),
        LapeConfig(top_rate=0.05),
        LapeConfig(filter_rate=0.8, top_rate=0.1, activation_bar_ratio=0.9),
        LapeConfig(filter_rate=0.99, top_rate=0.2, activation_bar_ratio=0.5),
    ],
)
def test_lape_matches_the_readable_recomputation(cfg):
    gen = torch.Generator().manual_seed(0)
    # Three languages, continuous probabilities, some silent neurons and some exact zeros.
    probs = torch.rand(3, 200, 3, generator=gen, dtype=torch.float64) ** 3
    probs[0, :10] = 0.0
    probs[1, 5:40, 1] = 0.0
    _check_against_reference(probs, cfg)
    # Two languages with probabilities from counts, so entropies tie exactly.
    counts = torch.randint(0, 9, (4, 150, 2), generator=gen).double()
    _check_against_reference(counts / 8.0, cfg)


def test_entropy_and_quota_filled_from_filtered_neurons():
    p = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.0, 0.0], [0.2, 0.6]]], dtype=torch.float64)
    h = lape_entropy(p)[0]
    assert math.isclose(float(h[0]), math.log(2)) and float(h[1]) == 0.0 and float(h[2]) == 0.0
    q = torch.tensor([0.25, 0.75], dtype=torch.float64)
    assert math.isclose(float(h[3]), float(-(q * q.log()).sum()))
    # Only one p exceeds the filter: the quota of 3 is filled with filtered neurons, as in the
    # published code, which are never assigned since no p of theirs exceeds the bar.
    cfg = LapeConfig(filter_rate=0.875, top_rate=0.75, activation_bar_ratio=0.875)
    res = lape_from_probs(p, ["a", "b"], cfg)
    assert int(res.selected.sum()) == 3 and res.n_selected_filtered == 2
    assert res.neurons("a") == [(0, 1)] and res.neurons("b") == []


def test_lape_rejects_bad_input():
    with pytest.raises(ValueError, match="3 languages"):
        lape_from_probs(torch.rand(2, 4, 2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="probabilities"):
        lape_from_probs(torch.full((1, 4, 2), 1.5), ["a", "b"])
    with pytest.raises(ValueError, match="layers has"):
        lape_from_probs(torch.rand(2, 4, 2), ["a", "b"], layers=[0])
    for name in ("filter_rate", "top_rate", "activation_bar_ratio"):
        with pytest.raises(ValueError, match=f"LapeConfig.{name}"):
            LapeConfig(**{name: 0.0})
    assert LapeConfig.from_dict(LapeConfig(top_rate=0.05).to_dict()).top_rate == 0.05
    res = lape_from_probs(torch.rand(1, 4, 2), ["a", "b"])
    with pytest.raises(KeyError, match="not in LAPE result"):
        res.mask("go")


def test_jaxtyping_shapes_are_checked():
    checked = jaxtyped(typechecker=beartype)(lape_entropy)
    assert checked(torch.rand(2, 3, 4)).shape == (2, 3)
    with pytest.raises(Exception, match="layer neuron lang|shape|dimension"):
        checked(torch.rand(3, 4))


# -- planted neurons --------------------------------------------------------------------------

PLANTED_CFG = ModelConfig(
    n_layers=2, d_model=64, n_heads=2, d_head=32, d_mlp=256, n_ctx=64, d_vocab=512
)


def _planted_sets(seed: int = 1, per_layer: int = 6) -> dict[int, list[tuple[int, int]]]:
    gen = torch.Generator().manual_seed(seed)
    planted: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for layer in range(2):
        perm = torch.randperm(256, generator=gen).tolist()
        planted[0] += [(layer, j) for j in perm[:per_layer]]
        planted[1] += [(layer, j) for j in perm[per_layer : 2 * per_layer]]
    return planted


@pytest.fixture(scope="module")
def planted_stats() -> tuple[NeuronStats, dict[int, list[tuple[int, int]]]]:
    planted = _planted_sets()
    model = planted_neuron_model(PLANTED_CFG, 2, planted, seed=0)
    gen = torch.Generator().manual_seed(2)
    windows = {
        "python": torch.randint(0, 256, (48, 64), generator=gen),
        "php": torch.randint(256, 512, (48, 64), generator=gen),
    }
    cfg = NeuronStatsConfig(tokens_per_language=None)
    return collect_neuron_stats(model, windows, cfg, progress=False), planted


def _precision_recall(got: set, want: set) -> tuple[float, float]:
    hit = len(got & want)
    return (hit / len(got) if got else 0.0), hit / len(want)


def test_planted_neurons_are_recovered_by_lape(planted_stats):
    stats, planted = planted_stats
    n_planted = sum(len(v) for v in planted.values())
    res = lape(stats, LapeConfig(top_rate=n_planted / (2 * 256)))
    for k, lang in enumerate(["python", "php"]):
        got = set(mask_pairs(res.only_mask(lang)))
        precision, recall = _precision_recall(got, set(planted[k]))
        assert precision >= 0.95 and recall >= 0.95, (lang, precision, recall)
    # A larger quota takes in more neurons, but the language-only sets keep every planted one.
    wide = lape(stats, LapeConfig(top_rate=2 * n_planted / (2 * 256)))
    for k, lang in enumerate(["python", "php"]):
        assert set(planted[k]) <= set(mask_pairs(wide.only_mask(lang)))
    df = res.to_dataframe()
    assert set(df.columns) >= {"layer", "neuron", "entropy", "p_python", "p_php", "languages"}
    assert len(df) == n_planted


def mask_pairs(mask: torch.Tensor) -> list[tuple[int, int]]:
    return [(i, j) for i, j in mask.nonzero().tolist()]


def test_permutation_null_removes_the_planted_signal(planted_stats):
    stats, planted = planted_stats
    cfg = LapeConfig(top_rate=24 / 512)
    observed = transferring_sets(lape(stats, cfg), "python", "php")
    null = permutation_null_counts(stats, "python", "php", cfg, n_permutations=8, seed=0)
    assert null["primary_specific"].shape == (8, 2)
    assert int(counts_per_layer(observed["primary_specific"]).sum()) == 12
    # With labels shuffled no neuron tells the languages apart: language-only counts collapse.
    assert float(null["primary_specific"].sum(1).double().mean()) < 4
    again = permutation_null_counts(stats, "python", "php", cfg, n_permutations=8, seed=0)
    assert all(torch.equal(null[k], again[k]) for k in null)
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_null_counts(stats, "python", "php", cfg, n_permutations=0)


# -- transferring sets on hand-made probabilities ---------------------------------------------


def test_transferring_sets_on_a_hand_made_example():
    p = torch.full((2, 10, 2), 0.1, dtype=torch.float64)
    p[0, 0] = torch.tensor([0.9, 0.9], dtype=torch.float64)  # fires on both: shared
    p[0, 1] = torch.tensor([0.9, 0.0], dtype=torch.float64)  # primary only
    p[1, 2] = torch.tensor([0.0, 0.9], dtype=torch.float64)  # target only
    p[1, 3] = torch.tensor([0.9, 0.4], dtype=torch.float64)  # primary, active on the target
    # 40 values sorted: 0.0 x2, 0.1 x32, 0.4, 0.9 x5: the 35th smallest (rate 0.875) is 0.4.
    cfg = LapeConfig(filter_rate=0.875, top_rate=0.2, activation_bar_ratio=0.875)
    res = lape_from_probs(p, ["python", "php"], cfg)
    assert res.filter_value == 0.4 and res.bar_value == 0.4
    sets = transferring_sets(res, "python", "php", TransferConfig(active_quantile=0.5))
    as_pairs = {name: set(mask_pairs(mask)) for name, mask in sets.items()}
    assert as_pairs == {
        "lape_shared": {(0, 0)},
        "primary_active": {(0, 0), (1, 3)},
        "primary_specific": {(0, 1), (1, 3)},
        "target_specific": {(1, 2)},
    }
    assert counts_per_layer(sets["primary_active"]).tolist() == [1, 1]
    with pytest.raises(ValueError, match="must differ"):
        transferring_sets(res, "php", "php")
    with pytest.raises(ValueError, match="TransferConfig.active_quantile"):
        TransferConfig(active_quantile=0.0)


def test_jaccard():
    a = torch.zeros(2, 4, dtype=torch.bool)
    b = a.clone()
    assert math.isnan(jaccard(a, b))
    a[0, 0] = a[1, 1] = True
    b[0, 0] = b[1, 2] = True
    assert jaccard(a, b) == 1 / 3 and jaccard(a, a) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        jaccard(a, torch.zeros(2, 5, dtype=torch.bool))
