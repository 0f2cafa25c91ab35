"""The hook registry and the built-in hook library, on a real tiny hooked model."""

from __future__ import annotations

import textwrap

import pytest
import torch

from babel_interp.hooks import (
    FunctionHook,
    get_hook,
    list_hooks,
    register_hook,
    run_hooks,
    save_hook_results,
)
from babel_interp.model import ModelConfig, build_model

CFG = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=97)


@pytest.fixture(scope="module")
def model():
    return build_model(CFG)


@pytest.fixture
def tokens():
    return torch.randint(0, CFG.d_vocab, (3, 10), generator=torch.Generator().manual_seed(1))


def test_builtin_hooks_registered():
    names = set(list_hooks())
    assert {
        "residual-recorder",
        "activation-norms",
        "zero-ablation",
        "mean-ablation",
        "activation-patch",
        "steering-vector",
    } <= names


def test_residual_recorder_matches_cache(model, tokens):
    rec = get_hook("residual-recorder", points="blocks.*.hook_resid_post")
    run_hooks(model, tokens, [rec])
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
    stacked = rec.stacked()
    assert set(stacked) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    for name, rows in stacked.items():
        torch.testing.assert_close(rows, cache[name][:, -1])


def test_zero_ablation_changes_output_and_zeroes_neurons(model, tokens):
    ablate = get_hook("zero-ablation", neurons={1: [0, 5, 9]})
    seen = {}

    def after(act, hook):
        seen["post"] = act.clone()

    with torch.no_grad():
        clean = model(tokens)
        fwd = ablate.fwd_hooks(model) + [("blocks.1.mlp.hook_post", after)]
        ablated = model.run_with_hooks(tokens, fwd_hooks=fwd)
    assert torch.all(seen["post"][..., [0, 5, 9]] == 0)
    assert not torch.allclose(clean, ablated)


def test_mean_ablation_uses_means_and_validates_shape(model, tokens):
    means = {0: torch.full((CFG.d_mlp,), 0.25)}
    hook = get_hook("mean-ablation", neurons=[(0, 3)], means=means)
    seen = {}
    fwd = hook.fwd_hooks(model) + [("blocks.0.mlp.hook_post", lambda a, hook: seen.update(a=a))]
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=fwd)
    assert torch.all(seen["a"][..., 3] == 0.25)
    bad = get_hook("mean-ablation", neurons=[(0, 3)], means={0: torch.zeros(5)})
    with pytest.raises(ValueError, match="expected"):
        bad.fwd_hooks(model)
    with pytest.raises(ValueError, match="out of range"):
        get_hook("zero-ablation", neurons={0: [CFG.d_mlp]}).fwd_hooks(model)


def test_activation_patch_reproduces_source_run(model, tokens):
    src_tokens = torch.randint(0, CFG.d_vocab, tokens.shape, generator=torch.Generator())
    name = "blocks.1.hook_resid_pre"
    with torch.no_grad():
        src_logits, cache = model.run_with_cache(src_tokens, names_filter=[name])
        patch = get_hook("activation-patch", source={name: cache[name]})
        patched = run_hooks(model, tokens, [patch])
    # Layer 1 onwards only sees the patched residual, so the output equals the source run's.
    torch.testing.assert_close(patched, src_logits)


def test_steering_vector_shifts_residual(model, tokens):
    v = torch.ones(CFG.d_model)
    steer = get_hook("steering-vector", vector=v, point="blocks.0.hook_resid_post", alpha=2.0)
    seen = {}
    probe = ("blocks.1.hook_resid_pre", lambda a, hook: seen.update(a=a.clone()))
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[probe])
        base = seen["a"]
        model.run_with_hooks(tokens, fwd_hooks=steer.fwd_hooks(model) + [probe])
    torch.testing.assert_close(seen["a"] - base, torch.full_like(base, 2.0))
    with pytest.raises(ValueError, match="d_model"):
        get_hook("steering-vector", vector=torch.ones(3)).fwd_hooks(model)


def test_register_function_hook_and_unknown_points(model, tokens):
    calls = []

    def count_calls(act, hook, name):
        calls.append(name)

    register_hook("test-count-calls", count_calls, points="blocks.*.mlp.hook_post", overwrite=True)
    hook = get_hook("test-count-calls")
    assert isinstance(hook, FunctionHook)
    run_hooks(model, tokens, [hook])
    assert calls == ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"]
    with pytest.raises(ValueError, match="already registered"):
        register_hook("test-count-calls", count_calls, points="hook_embed")
    with pytest.raises(ValueError, match="matches no hook"):
        FunctionHook(count_calls, "blocks.0.hook_resid_typo").fwd_hooks(model)
    with pytest.raises(ValueError, match="unknown hook"):
        get_hook("no-such-hook")


def test_user_hook_from_file_path(model, tokens, tmp_path):
    path = tmp_path / "my_hooks.py"
    path.write_text(
        textwrap.dedent(
            """
            class MaxActivation:
                name = "max-activation"

                def __init__(self, layer=0):
                    self.layer = layer
                    self.max = float("-inf")

                def _hook(self, act, hook):
                    self.max = max(self.max, float(act.max()))

                def fwd_hooks(self, model):
                    return [(f"blocks.{self.layer}.mlp.hook_post", self._hook)]

                def summary(self):
                    return {"max": self.max}
            """
        )
    )
    hook = get_hook(f"{path}:MaxActivation", layer=1)
    run_hooks(model, tokens, [hook])
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.1.mlp.hook_post"])
    assert hook.max == pytest.approx(float(cache["blocks.1.mlp.hook_post"].max()))
    written = save_hook_results([hook], tmp_path / "out")
    assert written[0].read_text().count('"max"') == 1
    with pytest.raises(FileNotFoundError):
        get_hook(f"{tmp_path}/missing.py:X")
