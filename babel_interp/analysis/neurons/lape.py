"""Language Activation Probability Entropy (LAPE; Tang et al. 2024), as published.

Tang et al.'s ``identify.py`` on the activation probabilities p[l, j, k] (share of language-k
tokens on which neuron j of layer l has activation > 0):

1. q[l, j, k] = p / sum_k p (0 where a neuron never fires), LAPE[l, j] = -sum_k q log q.
2. ``filter_value`` = the ``round(N * filter_rate)``-th smallest of all N values of p
   (``kthvalue``); a neuron whose p exceeds it for no language is dropped (entropy set to +inf).
3. The ``round(n_neurons * top_rate)`` neurons of lowest entropy are selected (``topk`` over all
   layers together). When fewer neurons survive the filter than the quota, the published code
   fills the quota with filtered neurons; we reproduce that and report how many
   (:attr:`LapeResult.n_selected_filtered`).
4. ``bar_value`` = the ``round(N * activation_bar_ratio)``-th smallest p; a selected neuron is
   assigned to every language whose p exceeds it (strictly), so it may belong to several.

The published defaults are ``filter_rate = activation_bar_ratio = 0.95`` and ``top_rate = 0.01``
(the paper; its released code used 0.05). Ties in entropy are broken by (layer, neuron) order,
where the published ``topk`` left them unspecified.

With two languages the method is semi-degenerate: the quota is always filled, so a count of
selected neurons says little by itself; compare it to a permutation null and a random-init model
(:mod:`babel_interp.analysis.neurons.transferring`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from babel_interp.analysis.layers import mlp_site
from babel_interp.analysis.neurons.neuron_stats import NeuronStats
from babel_interp.config import ConfigBase
from babel_interp.languages import language_index

_RATES = ("filter_rate", "top_rate", "activation_bar_ratio")


@dataclass
class LapeConfig(ConfigBase):
    """The three thresholds of LAPE, all as fractions in (0, 1]."""

    filter_rate: float = 0.95
    top_rate: float = 0.01
    activation_bar_ratio: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in _RATES:
            setattr(self, name, float(getattr(self, name)))

    def validate(self) -> None:
        """Each rate lies in (0, 1]."""
        for name in _RATES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
                raise ValueError(f"LapeConfig.{name} must lie in (0, 1], got {value!r}")


def _kth_smallest(values: Tensor, rate: float) -> float:
    # torch.kthvalue is 1-indexed; round() is Python's, as in the published code.
    k = min(max(1, round(values.numel() * rate)), values.numel())
    return float(values.flatten().kthvalue(k).values)


def lape_entropy(
    probs: Float[Tensor, "layer neuron lang"],
) -> Float[Tensor, "layer neuron"]:
    """LAPE before filtering: entropy of the activation probabilities normalized over languages.

    A neuron that never fires has q = 0 everywhere and entropy 0, as in the published code.
    """
    total = probs.sum(-1, keepdim=True)
    q = torch.where(total > 0, probs / total.clamp(min=torch.finfo(probs.dtype).tiny), 0.0)
    log_q = torch.where(q > 0, q.clamp(min=torch.finfo(probs.dtype).tiny).log(), 0.0)
    return -(q * log_q).sum(-1)


@dataclass
class LapeResult:
    """Which neurons LAPE selects and to which languages it assigns them.

    Tensors are indexed ``[l, j]`` with ``l`` a position in :attr:`layers` (model layer numbers).
    """

    languages: list[str]
    layers: list[int]
    config: LapeConfig
    probs: Float[Tensor, "layer neuron lang"]
    entropy: Float[Tensor, "layer neuron"]
    filter_value: float
    bar_value: float
    selected: Bool[Tensor, "layer neuron"]
    assigned: Bool[Tensor, "layer neuron lang"]
    n_selected_filtered: int

    def lang_index(self, language: str) -> int:
        """Position of ``language`` in :attr:`languages`."""
        missing = f"language {language!r} is not in LAPE result {self.languages}"
        return language_index(self.languages, language, missing)

    def mask(self, language: str) -> Bool[Tensor, "layer neuron"]:
        """Neurons assigned to ``language`` (possibly also to others)."""
        return self.assigned[..., self.lang_index(language)]

    def only_mask(self, language: str) -> Bool[Tensor, "layer neuron"]:
        """Neurons assigned to ``language`` and to no other language."""
        return self.mask(language) & (self.assigned.sum(-1) == 1)

    def shared_mask(self, *languages: str) -> Bool[Tensor, "layer neuron"]:
        """Neurons assigned to every one of ``languages``."""
        out = torch.ones_like(self.selected)
        for lang in languages:
            out &= self.mask(lang)
        return out

    def neurons(self, language: str) -> list[tuple[int, int]]:
        """``(model layer, neuron)`` of every neuron assigned to ``language``."""
        return mask_to_neurons(self.mask(language), self.layers)

    def counts_per_layer(self, mask: Bool[Tensor, "layer neuron"]) -> dict[int, int]:
        """Neurons of ``mask`` per model layer."""
        return {layer: int(mask[i].sum()) for i, layer in enumerate(self.layers)}

    def to_dataframe(self) -> Any:
        """One row per selected neuron: layer, neuron, entropy, p per language, assignment."""
        import pandas as pd

        rows = []
        for i, j in self.selected.nonzero().tolist():
            row: dict[str, Any] = {
                "layer": self.layers[i],
                "layer_name": mlp_site(self.layers[i]),
                "neuron": j,
                "entropy": float(self.entropy[i, j]),
            }
            for k, lang in enumerate(self.languages):
                row[f"p_{lang}"] = float(self.probs[i, j, k])
            for k, lang in enumerate(self.languages):
                row[f"assigned_{lang}"] = bool(self.assigned[i, j, k])
            row["languages"] = "+".join(
                lang for k, lang in enumerate(self.languages) if self.assigned[i, j, k]
            )
            rows.append(row)
        return pd.DataFrame(rows)


def mask_to_neurons(
    mask: Bool[Tensor, "layer neuron"], layers: Sequence[int]
) -> list[tuple[int, int]]:
    """``(model layer, neuron)`` pairs of a ``[layer, neuron]`` mask."""
    return [(layers[i], j) for i, j in mask.nonzero().tolist()]


def lape_from_probs(
    probs: Float[Tensor, "layer neuron lang"],
    languages: Sequence[str],
    cfg: LapeConfig | None = None,
    layers: Sequence[int] | None = None,
) -> LapeResult:
    """LAPE on activation probabilities ``probs[l, j, k]`` (see the module docstring)."""
    cfg = cfg or LapeConfig()
    if probs.dim() != 3 or probs.shape[-1] != len(languages):
        raise ValueError(
            f"probs must be [layer, neuron, lang] with {len(languages)} languages, "
            f"got shape {tuple(probs.shape)}"
        )
    if probs.numel() == 0:
        raise ValueError("probs is empty")
    if torch.isnan(probs).any() or probs.min() < 0 or probs.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1] without NaN")
    n_layers, n_neurons, _ = probs.shape
    layer_ids = list(layers) if layers is not None else list(range(n_layers))
    if len(layer_ids) != n_layers:
        raise ValueError(f"layers has {len(layer_ids)} entries, probs has {n_layers} layers")
    probs = probs.double()
    entropy = lape_entropy(probs)
    filter_value = _kth_smallest(probs, cfg.filter_rate)
    passes = (probs > filter_value).any(-1)
    entropy = torch.where(passes, entropy, math.inf)
    n_select = round(entropy.numel() * cfg.top_rate)
    # Stable sort: equal entropies are taken in (layer, neuron) order, so the result is
    # deterministic where the published topk left ties unspecified.
    order = torch.sort(entropy.flatten(), stable=True).indices[:n_select]
    selected = torch.zeros(entropy.numel(), dtype=torch.bool)
    selected[order] = True
    selected = selected.view(n_layers, n_neurons)
    bar_value = _kth_smallest(probs, cfg.activation_bar_ratio)
    assigned = selected[..., None] & (probs > bar_value)
    return LapeResult(
        languages=list(languages),
        layers=layer_ids,
        config=cfg,
        probs=probs,
        entropy=entropy,
        filter_value=filter_value,
        bar_value=bar_value,
        selected=selected,
        assigned=assigned,
        n_selected_filtered=int((selected & ~passes).sum()),
    )


def lape(stats: NeuronStats, cfg: LapeConfig | None = None) -> LapeResult:
    """LAPE language-specific neurons from streaming statistics."""
    return lape_from_probs(stats.activation_probability(), stats.languages, cfg, stats.layers)
