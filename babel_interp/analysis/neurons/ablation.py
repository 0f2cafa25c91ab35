"""Causal check of a neuron set: ablate it through hooks and measure per-language loss change.

The set's neurons are replaced in ``blocks.{l}.mlp.hook_post`` by zero or by their mean activation
(pooled over all languages of the statistics, so mean ablation removes a neuron's variation without
injecting any language's typical value). The change in mean validation loss per language is
compared with the change from ``n_random`` random sets of the *same size in every layer*: a
neuron set matters only if removing it hurts more than removing as many arbitrary neurons where it
lives. All sets are evaluated on the same windows, so the comparison is paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from babel_interp.config import ConfigBase
from babel_interp.devices import model_device
from babel_interp.hooks.library import MeanAblation, ZeroAblation
from babel_interp.model import HookedModel

MODES = ("zero", "mean")


@dataclass
class AblationConfig(ConfigBase):
    """What to ablate with and how many random control sets to draw.

    ``exclude_set_from_random`` draws the random control sets from the neurons outside the set.
    """

    mode: str = "mean"
    n_random: int = 20
    ci: float = 0.95
    tokens_per_language: int = 16_384
    window_len: int = 128
    batch_size: int = 16
    exclude_set_from_random: bool = True
    seed: int = 1

    def validate(self) -> None:
        """Check every field (errors name the field)."""
        if self.mode not in MODES:
            raise ValueError(f"AblationConfig.mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.n_random, int) or self.n_random < 0:
            raise ValueError(f"AblationConfig.n_random must be an int >= 0, got {self.n_random!r}")
        if not isinstance(self.ci, (int, float)) or not 0.0 < self.ci < 1.0:
            raise ValueError(f"AblationConfig.ci must lie in (0, 1), got {self.ci!r}")
        for name in ("tokens_per_language", "window_len", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"AblationConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"AblationConfig.seed must be an int, got {self.seed!r}")


def ablation_hooks(
    model: HookedModel,
    mask: Bool[Tensor, "layer neuron"],
    layers: Sequence[int],
    mode: str = "zero",
    means: Float[Tensor, "layer neuron"] | None = None,
) -> list[tuple[str, Any]]:
    """Forward hooks that replace the neurons of ``mask`` by 0 or by ``means``.

    ``mask[i]`` (and ``means[i]``) is model layer ``layers[i]``; layers with no neuron get no
    hook. The hooks are the project's :class:`babel_interp.hooks.library.ZeroAblation` and
    :class:`babel_interp.hooks.library.MeanAblation`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mask.dim() != 2 or mask.shape[0] != len(layers):
        raise ValueError(
            f"mask must be [layer, neuron] with one row per layer of {list(layers)}, "
            f"got shape {tuple(mask.shape)}"
        )
    neurons = {layer: mask[i].nonzero().flatten().tolist() for i, layer in enumerate(layers)}
    if mode == "zero":
        return ZeroAblation(neurons).fwd_hooks(model)
    if means is None:
        raise ValueError("mean ablation needs the neurons' means (NeuronStats.pooled_mean())")
    if tuple(means.shape) != tuple(mask.shape):
        raise ValueError(f"means has shape {tuple(means.shape)}, mask {tuple(mask.shape)}")
    per_layer = {layer: means[i].float() for i, layer in enumerate(layers)}
    return MeanAblation(neurons, per_layer).fwd_hooks(model)


def language_losses(
    model: HookedModel,
    windows: Mapping[str, Int[Tensor, "window pos"]],
    fwd_hooks: Sequence[tuple[str, Any]] = (),
    batch_size: int = 16,
) -> dict[str, float]:
    """Mean next-token loss per language on language-pure windows, with ``fwd_hooks`` active."""
    device = model_device(model)
    out = {}
    with torch.no_grad():
        for lang, w in windows.items():
            total, n = 0.0, 0
            for i in range(0, w.shape[0], batch_size):
                batch = w[i : i + batch_size].to(device)
                loss = model.run_with_hooks(
                    batch, fwd_hooks=list(fwd_hooks), return_type="loss", loss_per_token=True
                )
                total += float(loss.double().sum())
                n += loss.numel()
            out[lang] = total / n
    return out


def random_matched_sets(
    mask: Bool[Tensor, "layer neuron"],
    n_sets: int,
    generator: torch.Generator,
    exclude: bool = True,
) -> Bool[Tensor, "set layer neuron"]:
    """``n_sets`` random sets with as many neurons as ``mask`` in every layer.

    With ``exclude`` they are drawn outside ``mask`` (from all neurons where a layer has too few
    left).
    """
    n_layers, n_neurons = mask.shape
    out = torch.zeros(n_sets, n_layers, n_neurons, dtype=torch.bool)
    for i in range(n_layers):
        k = int(mask[i].sum())
        if k == 0:
            continue
        pool = (~mask[i]).nonzero().flatten() if exclude else torch.arange(n_neurons)
        if pool.numel() < k:
            pool = torch.arange(n_neurons)
        for s in range(n_sets):
            out[s, i, pool[torch.randperm(pool.numel(), generator=generator)[:k]]] = True
    return out


@dataclass
class AblationResult:
    """Loss change per language from ablating a set, against same-size random sets."""

    languages: list[str]
    mode: str
    set_size: int
    size_per_layer: dict[int, int]
    base_loss: dict[str, float]
    ablated_loss: dict[str, float]
    random_deltas: Float[Tensor, "set lang"]
    ci: float = 0.95

    def delta(self, language: str) -> float:
        """Loss increase from ablating the set."""
        return self.ablated_loss[language] - self.base_loss[language]

    def to_dataframe(self) -> Any:
        """One row per language: loss change, the random control's mean and interval, the
        set's z-score and percentile among random sets."""
        import pandas as pd

        rows = []
        tail = (1.0 - self.ci) / 2.0
        for k, lang in enumerate(self.languages):
            rand = self.random_deltas[:, k].double()
            d = self.delta(lang)
            row: dict[str, Any] = {
                "language": lang,
                "mode": self.mode,
                "set_size": self.set_size,
                "base_loss": self.base_loss[lang],
                "ablated_loss": self.ablated_loss[lang],
                "delta": d,
                "n_random": int(rand.numel()),
            }
            if rand.numel():
                sd = float(rand.std()) if rand.numel() > 1 else float("nan")
                row |= {
                    "random_mean": float(rand.mean()),
                    "random_lo": float(torch.quantile(rand, tail)),
                    "random_hi": float(torch.quantile(rand, 1.0 - tail)),
                    "z": (d - float(rand.mean())) / sd if sd and sd > 0 else float("nan"),
                    # Share of random sets that hurt less: 1.0 means worse than every control.
                    "percentile": float((rand < d).double().mean()),
                }
            else:
                row |= {
                    k2: float("nan")
                    for k2 in ("random_mean", "random_lo", "random_hi", "z", "percentile")
                }
            rows.append(row)
        return pd.DataFrame(rows)


def causal_check(
    model: HookedModel,
    mask: Bool[Tensor, "layer neuron"],
    layers: Sequence[int],
    windows: Mapping[str, Int[Tensor, "window pos"]],
    cfg: AblationConfig | None = None,
    means: Float[Tensor, "layer neuron"] | None = None,
    progress: bool = True,
) -> AblationResult:
    """Ablate ``mask`` and ``cfg.n_random`` matched random sets; loss change per language."""
    cfg = cfg or AblationConfig()
    languages = list(windows)
    base = language_losses(model, windows, batch_size=cfg.batch_size)
    hooks = ablation_hooks(model, mask, layers, cfg.mode, means)
    ablated = language_losses(model, windows, hooks, cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_random = cfg.n_random if bool(mask.any()) else 0
    sets = random_matched_sets(mask, n_random, gen, cfg.exclude_set_from_random)
    deltas = torch.zeros(n_random, len(languages), dtype=torch.float64)
    for s in tqdm(range(n_random), desc="random sets", disable=not progress, leave=False):
        losses = language_losses(
            model, windows, ablation_hooks(model, sets[s], layers, cfg.mode, means), cfg.batch_size
        )
        for k, lang in enumerate(languages):
            deltas[s, k] = losses[lang] - base[lang]
    return AblationResult(
        languages=languages,
        mode=cfg.mode,
        set_size=int(mask.sum()),
        size_per_layer={layer: int(mask[i].sum()) for i, layer in enumerate(layers)},
        base_loss=base,
        ablated_loss=ablated,
        random_deltas=deltas,
        ci=cfg.ci,
    )
