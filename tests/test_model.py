"""The hooked-model factory on whichever TransformerLens line is installed (3.9 or 4.x)."""

from __future__ import annotations

import json

import pytest
import torch

from babel_interp.model import (
    PRESETS,
    HookedModel,
    ModelConfig,
    build_model,
    count_parameters,
    get_preset,
    load_model,
    model_config_of,
    resid_hook_names,
    save_model,
    tl_major_version,
    unembed_resid,
)

TINY = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=97)


def test_config_round_trip_and_validation():
    cfg = get_preset("small").with_vocab(8192)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="d_model"):
        ModelConfig(d_model=0)
    with pytest.raises(ValueError, match="act_fn"):
        ModelConfig(act_fn="tanh")
    with pytest.raises(ValueError, match="normalization"):
        ModelConfig(normalization="BN")
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({"n_layer": 2})
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        get_preset("huge")


def test_presets_sizes():
    assert {"tiny", "small", "gpt2-small", "1.3b"} <= set(PRESETS)
    small = get_preset("small").with_vocab(8192).n_params()
    assert 10e6 <= small <= 30e6
    big = get_preset("1.3b").with_vocab(50257).n_params()
    assert 1.2e9 <= big <= 1.5e9
    gpt2 = get_preset("gpt2-small").with_vocab(50257).n_params()
    # GPT-2 small is 124M with tied embeddings; TransformerLens keeps W_U separate (+38.6M).
    assert 160e6 <= gpt2 <= 166e6


def test_build_exposes_analyzer_hooks():
    model = build_model(TINY)
    assert isinstance(model, HookedModel)
    expected = ["hook_embed", "ln_final.hook_normalized"]
    for layer in range(TINY.n_layers):
        expected += [
            f"blocks.{layer}.hook_resid_pre",
            f"blocks.{layer}.hook_resid_mid",
            f"blocks.{layer}.hook_resid_post",
            f"blocks.{layer}.mlp.hook_pre",
            f"blocks.{layer}.mlp.hook_post",
        ]
    tokens = torch.randint(0, TINY.d_vocab, (2, 8))
    seen: dict[str, tuple] = {}

    def record(act, hook, name):
        seen[name] = tuple(act.shape)

    from functools import partial

    model.run_with_hooks(tokens, fwd_hooks=[(n, partial(record, name=n)) for n in expected])
    assert set(seen) == set(expected)
    assert seen["blocks.1.mlp.hook_post"] == (2, 8, TINY.d_mlp)
    assert seen["blocks.0.hook_resid_pre"] == (2, 8, TINY.d_model)


def test_logit_lens_at_last_layer_equals_logits():
    model = build_model(TINY)
    tokens = torch.randint(0, TINY.d_vocab, (2, 8))
    names = resid_hook_names(TINY.n_layers)
    assert names[-1] == f"blocks.{TINY.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        lens = unembed_resid(model, cache[names[-1]])
    assert set(cache.keys()) == set(names)
    torch.testing.assert_close(lens, logits, rtol=1e-5, atol=1e-5)


def test_seed_determines_init():
    a, b = build_model(TINY), build_model(TINY)
    c = build_model(ModelConfig(**{**TINY.to_dict(), "seed": 1}))
    tokens = torch.randint(0, TINY.d_vocab, (1, 8))
    with torch.no_grad():
        assert torch.equal(a(tokens), b(tokens))
        assert not torch.equal(a(tokens), c(tokens))


def test_save_load_round_trip_is_exact(tmp_path, small_tokenizer):
    # The in-memory tokenizer would raise KeyError('name_or_path') inside TL without handling.
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32)
    model = build_model(cfg, tokenizer=small_tokenizer)
    assert model.cfg.d_vocab == len(small_tokenizer)
    # Train one step so the weights differ from any fresh init.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 16))
    model(tokens, return_type="loss").backward()
    opt.step()
    with torch.no_grad():
        before = model(tokens)
    save_model(model, tmp_path / "m", tokenizer=small_tokenizer)
    meta = json.loads((tmp_path / "m" / "model_config.json").read_text())
    assert meta["tl_major"] == tl_major_version()
    loaded, loaded_cfg = load_model(tmp_path / "m")
    assert loaded_cfg.d_vocab == len(small_tokenizer)
    with torch.no_grad():
        after = loaded(tokens)
    assert torch.equal(before, after)
    assert loaded.tokenizer is not None
    assert loaded.tokenizer.encode("return len") == small_tokenizer.encode("return len")
    assert model_config_of(loaded) == loaded_cfg
    assert count_parameters(loaded) == count_parameters(model)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no saved model"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="no tokenizer"):
        build_model(ModelConfig(d_vocab=-1))
