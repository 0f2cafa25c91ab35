"""Causal check: ablating planted neurons hurts their language, random matched sets do not."""

from __future__ import annotations

import math

import pytest
import torch
from _neuron_fixtures import planted_neuron_model

from babel_interp.analysis.neurons.ablation import (
    AblationConfig,
    AblationResult,
    ablation_hooks,
    causal_check,
    language_losses,
    random_matched_sets,
)
from babel_interp.analysis.neurons.neuron_stats import NeuronStatsConfig, collect_neuron_stats
from babel_interp.model import ModelConfig

CFG = ModelConfig(n_layers=2, d_model=64, n_heads=2, d_head=32, d_mlp=128, n_ctx=32, d_vocab=256)
PLANTED = {0: [(0, 3), (0, 40), (1, 7), (1, 100)], 1: [(0, 5), (1, 9), (1, 60)]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a loaded machine idle OpenMP
    # threads spinning at every barrier make each small op ~100x slower. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup():
    model = planted_neuron_model(CFG, 2, PLANTED, seed=0)
    gen = torch.Generator().manual_seed(0)
    windows = {
        "python": torch.randint(0, 128, (8, 32), generator=gen),
        "php": torch.randint(128, 256, (8, 32), generator=gen),
    }
    stats = collect_neuron_stats(
        model, windows, NeuronStatsConfig(tokens_per_language=None), progress=False
    )
    return model, windows, stats


def _mask(pairs) -> torch.Tensor:
    m = torch.zeros(2, 128, dtype=torch.bool)
    for layer, j in pairs:
        m[layer, j] = True
    return m


def test_zero_ablation_of_planted_neurons_is_causal_and_specific(setup):
    model, windows, _ = setup
    cfg = AblationConfig(mode="zero", n_random=8)
    res = causal_check(model, _mask(PLANTED[0]), [0, 1], windows, cfg, progress=False)
    df = res.to_dataframe().set_index("language")
    # The planted python neurons carry "the next token is python": without them the model
    # spreads its guess over both halves of the vocabulary, about log 2 nats worse.
    assert df.loc["python", "delta"] > 0.5
    assert abs(df.loc["php", "delta"]) < 0.01
    assert df.loc["python", "percentile"] == 1.0 and df.loc["python", "z"] > 10
    assert df.loc["python", "random_hi"] < 0.05
    assert res.set_size == 4 and res.size_per_layer == {0: 2, 1: 2}
    assert res.random_deltas.shape == (8, 2)


def test_mean_ablation_writes_the_pooled_mean(setup):
    model, windows, stats = setup
    means = stats.pooled_mean()
    mask = _mask(PLANTED[1])
    seen = {}

    def capture(act, hook, key):
        seen[key] = act.detach().clone()

    hooks = ablation_hooks(model, mask, [0, 1], "mean", means)
    hooks += [
        (f"blocks.{i}.mlp.hook_post", lambda a, hook, i=i: capture(a, hook, i)) for i in range(2)
    ]
    with torch.no_grad():
        model.run_with_hooks(windows["php"][:2], fwd_hooks=hooks, return_type=None)
    for layer, j in PLANTED[1]:
        assert torch.allclose(seen[layer][..., j], means[layer, j].float().expand(2, 32))
    # Untouched neurons keep their activation.
    assert not torch.allclose(seen[0][..., 0], seen[0][0, 0, 0].expand(2, 32))
    res = causal_check(
        model, mask, [0, 1], windows, AblationConfig(mode="mean", n_random=3), means, False
    )
    # Half the language signal survives a pooled mean, so the loss rises less than under zero
    # ablation, but still more than under any random same-size set.
    row = res.to_dataframe().set_index("language").loc["php"]
    assert res.mode == "mean" and row["delta"] > 0.005 and row["percentile"] == 1.0


def test_zero_hooks_zero_exactly_the_set(setup):
    model, windows, _ = setup
    seen = {}
    hooks = ablation_hooks(model, _mask([(1, 7), (1, 9)]), [0, 1], "zero")
    assert [name for name, _ in hooks] == ["blocks.1.mlp.hook_post"]  # no neuron in layer 0

    def capture(act, hook):
        seen["act"] = act.detach().clone()

    with torch.no_grad():
        model.run_with_hooks(
            windows["python"][:1],
            fwd_hooks=[*hooks, ("blocks.1.mlp.hook_post", capture)],
            return_type=None,
        )
    act = seen["act"]
    assert torch.all(act[..., [7, 9]] == 0) and act[..., 8].abs().sum() > 0


def test_random_sets_match_the_size_per_layer_and_avoid_the_set():
    mask = _mask([(0, 1), (0, 2), (1, 3)])
    sets = random_matched_sets(mask, 50, torch.Generator().manual_seed(0))
    assert sets.shape == (50, 2, 128)
    assert sets[:, 0].sum(-1).tolist() == [2] * 50 and sets[:, 1].sum(-1).tolist() == [1] * 50
    assert not (sets & mask).any()
    again = random_matched_sets(mask, 50, torch.Generator().manual_seed(0))
    assert torch.equal(sets, again)
    # Different sets are drawn: the control is not one fixed set.
    assert len({tuple(s.flatten().nonzero().flatten().tolist()) for s in sets}) > 40
    full = torch.ones(1, 4, dtype=torch.bool)
    full[0, 3] = False
    drawn = random_matched_sets(full, 2, torch.Generator().manual_seed(0))
    assert drawn.sum(-1).tolist() == [[3], [3]]  # too few outside: drawn from all neurons


def test_empty_set_and_baseline_losses(setup):
    model, windows, _ = setup
    empty = torch.zeros(2, 128, dtype=torch.bool)
    cfg = AblationConfig(mode="zero", n_random=5)
    res = causal_check(model, empty, [0, 1], windows, cfg, progress=False)
    df = res.to_dataframe()
    assert (df["delta"] == 0).all() and (df["n_random"] == 0).all()
    assert df["z"].isna().all()
    base = language_losses(model, windows, batch_size=3)
    assert set(base) == {"python", "php"} and all(math.isfinite(v) for v in base.values())
    # The planted model knows the language of the next token: about log(128) nats, not log(256).
    assert abs(base["python"] - math.log(128)) < 0.2


def test_bad_input_is_reported(setup):
    model, _, stats = setup
    mask = _mask(PLANTED[0])
    with pytest.raises(ValueError, match="mode must be one of"):
        ablation_hooks(model, mask, [0, 1], "resample")
    with pytest.raises(ValueError, match="needs the neurons' means"):
        ablation_hooks(model, mask, [0, 1], "mean")
    with pytest.raises(ValueError, match="means has shape"):
        ablation_hooks(model, mask, [0, 1], "mean", torch.zeros(2, 5))
    with pytest.raises(ValueError, match="one row per layer"):
        ablation_hooks(model, mask, [0], "zero")
    bad = {"mode": "noise", "n_random": -1, "ci": 1.5, "tokens_per_language": 0, "seed": "x"}
    for name, value in bad.items():
        with pytest.raises(ValueError, match=f"AblationConfig.{name}"):
            AblationConfig(**{name: value})
    cfg = AblationConfig(mode="zero", n_random=3)
    assert AblationConfig.from_dict(cfg.to_dict()) == cfg


def test_result_table_columns():
    res = AblationResult(
        languages=["a"],
        mode="zero",
        set_size=2,
        size_per_layer={0: 2},
        base_loss={"a": 1.0},
        ablated_loss={"a": 1.5},
        random_deltas=torch.tensor([[0.0], [0.1], [0.2]], dtype=torch.float64),
    )
    row = res.to_dataframe().iloc[0]
    assert row["delta"] == 0.5 and row["percentile"] == 1.0
    assert math.isclose(row["random_mean"], 0.1) and math.isclose(row["z"], (0.5 - 0.1) / 0.1)
