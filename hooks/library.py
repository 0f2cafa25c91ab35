"""Reusable TransformerLens hooks, registered by name.

Every class here follows :class:`babel_interp.hooks.registry.BabelHook`: ``fwd_hooks(model)``
returns the
``(hook_name, fn)`` pairs for ``run_with_hooks`` / ``model.hooks(...)``. Hooks that record keep
only bounded state (running sums or one row per sequence), never a full activation cache.
Importing this module registers its hooks; the ``babel_interp.hooks`` package does so on import.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from babel_interp.analysis.neurons.neuron_stats import (
    NeuronStats,
    NeuronStatsCollector,
    NeuronStatsConfig,
)
from babel_interp.hooks.registry import FwdHooks, register_hook, resolve_hook_points
from babel_interp.io import atomic_path, write_json_atomic


def _layers(model: Any, layers: list[int] | None) -> list[int]:
    n = model.cfg.n_layers
    chosen = list(range(n)) if layers is None else list(layers)
    bad = [layer for layer in chosen if not 0 <= layer < n]
    if bad:
        raise ValueError(f"layers {bad} out of range for a {n}-layer model")
    return chosen


@register_hook("residual-recorder")
class ResidualRecorder:
    """Records the residual stream at the last position (or the mean over positions).

    ``records[name]`` is a list of ``[batch, d_model]`` CPU tensors, one per forward pass; it
    grows with the number of sequences, not with their length.
    """

    def __init__(
        self,
        points: str | list[str] = "blocks.*.hook_resid_post",
        reduce: str = "last",
        name: str = "residual-recorder",
    ) -> None:
        if reduce not in ("last", "mean"):
            raise ValueError(f"reduce must be 'last' or 'mean', got {reduce!r}")
        self.points = [points] if isinstance(points, str) else list(points)
        self.reduce = reduce
        self.name = name
        self.records: dict[str, list[Tensor]] = {}

    def _record(self, act: Float[Tensor, "batch pos d_model"], hook: Any, *, key: str) -> None:
        row = act[:, -1] if self.reduce == "last" else act.mean(dim=1)
        self.records.setdefault(key, []).append(row.detach().float().cpu())

    def fwd_hooks(self, model: Any) -> FwdHooks:
        names = resolve_hook_points(model, self.points)
        # Bind the registered name: on TL 4.x hook.name is the canonical, not the alias.
        return [(n, partial(self._record, key=n)) for n in names]

    def stacked(self) -> dict[str, Tensor]:
        """``{hook name: [sequences, d_model]}``."""
        return {k: torch.cat(v) for k, v in self.records.items()}

    def reset(self) -> None:
        self.records.clear()

    def summary(self) -> dict:
        stacked = self.stacked()
        return {
            "name": self.name,
            "sequences": {k: int(v.shape[0]) for k, v in stacked.items()},
            "mean_norm": {k: float(v.norm(dim=-1).mean()) for k, v in stacked.items()},
        }

    def save(self, path: str | Path) -> Path:
        path = _with_suffix(path, ".safetensors")
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.stacked().items()}, str(tmp))
        return path


def _with_suffix(path: str | Path, suffix: str) -> Path:
    # A bare name (``out/<hook>``) gets the hook's file type; an explicit suffix is kept.
    return Path(str(path) + suffix) if Path(path).suffix == "" else Path(path)


def _neuron_mask(
    model: Any, neurons: dict[int, list[int]] | list[tuple[int, int]]
) -> dict[int, Tensor]:
    pairs = (neurons if isinstance(neurons, dict) else _group_pairs(neurons)).items()
    d_mlp = model.cfg.d_mlp
    out: dict[int, Tensor] = {}
    for layer, idx in pairs:
        _layers(model, [int(layer)])
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        if idx_t.numel() and (idx_t.min() < 0 or idx_t.max() >= d_mlp):
            raise ValueError(f"neuron index out of range [0, {d_mlp}) in layer {layer}")
        out[int(layer)] = idx_t
    return out


def _group_pairs(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for layer, j in pairs:
        grouped.setdefault(int(layer), []).append(int(j))
    return grouped


@register_hook("zero-ablation")
class ZeroAblation:
    """Sets chosen MLP neurons (``blocks.{l}.mlp.hook_post``) to zero."""

    def __init__(self, neurons: dict[int, list[int]] | list[tuple[int, int]]) -> None:
        self.neurons = neurons
        self.name = "zero-ablation"

    def _ablate(self, act: Float[Tensor, "batch pos d_mlp"], hook: Any, *, idx: Tensor) -> Tensor:
        act = act.clone()
        act[..., idx.to(act.device)] = 0.0
        return act

    def fwd_hooks(self, model: Any) -> FwdHooks:
        masks = _neuron_mask(model, self.neurons)
        return [
            (f"blocks.{layer}.mlp.hook_post", partial(self._ablate, idx=idx))
            for layer, idx in masks.items()
            if idx.numel()
        ]


@register_hook("mean-ablation")
class MeanAblation:
    """Replaces chosen MLP neurons by their mean activation (``means[layer]``: ``[d_mlp]``)."""

    def __init__(
        self,
        neurons: dict[int, list[int]] | list[tuple[int, int]],
        means: dict[int, Tensor] | Tensor,
    ) -> None:
        self.neurons = neurons
        self.means = means
        self.name = "mean-ablation"

    def _ablate(
        self, act: Float[Tensor, "batch pos d_mlp"], hook: Any, *, idx: Tensor, mean: Tensor
    ) -> Tensor:
        act = act.clone()
        act[..., idx.to(act.device)] = mean.to(act.device, act.dtype)[idx.to(act.device)]
        return act

    def fwd_hooks(self, model: Any) -> FwdHooks:
        masks = _neuron_mask(model, self.neurons)
        out = []
        for layer, idx in masks.items():
            mean = torch.as_tensor(self.means[layer])
            if mean.shape != (model.cfg.d_mlp,):
                raise ValueError(
                    f"means[{layer}] has shape {tuple(mean.shape)}, expected ({model.cfg.d_mlp},)"
                )
            if idx.numel():
                out.append(
                    (f"blocks.{layer}.mlp.hook_post", partial(self._ablate, idx=idx, mean=mean))
                )
        return out


@register_hook("activation-patch")
class ActivationPatch:
    """Overwrites an activation with one recorded from another (source) run.

    ``source[name]`` is a ``[batch, pos, ...]`` tensor (e.g. from ``run_with_cache`` on the
    source prompt, with ``names_filter``); ``positions`` limits the patch to some positions.
    """

    def __init__(self, source: dict[str, Tensor], positions: list[int] | None = None) -> None:
        if not source:
            raise ValueError("activation-patch needs at least one source activation")
        self.source = source
        self.positions = positions
        self.name = "activation-patch"

    def _patch(self, act: Tensor, hook: Any, *, key: str) -> Tensor:
        src = self.source[key].to(act.device, act.dtype)
        if src.shape[0] != act.shape[0] and src.shape[0] != 1:
            raise ValueError(f"{key}: source batch {src.shape[0]} != target batch {act.shape[0]}")
        act = act.clone()
        pos = slice(None) if self.positions is None else torch.as_tensor(self.positions)
        n = min(src.shape[1], act.shape[1])
        if self.positions is None:
            act[:, :n] = src[:, :n].expand(act.shape[0], -1, *src.shape[2:])
        else:
            act[:, pos] = src[:, pos].expand(act.shape[0], -1, *src.shape[2:])
        return act

    def fwd_hooks(self, model: Any) -> FwdHooks:
        names = resolve_hook_points(model, list(self.source))
        return [(n, partial(self._patch, key=n)) for n in names]


@register_hook("steering-vector")
class SteeringVector:
    """Adds ``alpha * vector`` to the residual stream at one hook point (all positions)."""

    def __init__(
        self,
        vector: Tensor | list[float],
        point: str = "blocks.0.hook_resid_post",
        alpha: float = 1.0,
    ) -> None:
        self.vector = torch.as_tensor(vector, dtype=torch.float32)
        if self.vector.ndim != 1:
            raise ValueError(f"steering vector must be 1-D, got shape {tuple(self.vector.shape)}")
        self.point = point
        self.alpha = float(alpha)
        self.name = "steering-vector"

    def _steer(self, act: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:
        return act + self.alpha * self.vector.to(act.device, act.dtype)

    def fwd_hooks(self, model: Any) -> FwdHooks:
        if self.vector.shape[0] != model.cfg.d_model:
            raise ValueError(
                f"steering vector has {self.vector.shape[0]} dims, model d_model is "
                f"{model.cfg.d_model}"
            )
        return [(n, self._steer) for n in resolve_hook_points(model, [self.point])]


@register_hook("activation-norms")
class ActivationNorms:
    """Running mean L2 norm of activations at hook points (default: every residual stream).

    A small, cheap diagnostic that is safe to run at every checkpoint of a training run.
    """

    def __init__(self, points: str | list[str] = "blocks.*.hook_resid_post") -> None:
        self.points = [points] if isinstance(points, str) else list(points)
        self.name = "activation-norms"
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def _acc(self, act: Tensor, hook: Any, *, key: str) -> None:
        norms = act.detach().float().norm(dim=-1)
        self.sums[key] = self.sums.get(key, 0.0) + float(norms.sum())
        self.counts[key] = self.counts.get(key, 0) + int(norms.numel())

    def fwd_hooks(self, model: Any) -> FwdHooks:
        return [(n, partial(self._acc, key=n)) for n in resolve_hook_points(model, self.points)]

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def summary(self) -> dict:
        return {
            "name": self.name,
            "mean_norm": {k: self.sums[k] / self.counts[k] for k in self.sums},
            "positions": dict(self.counts),
        }

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(_with_suffix(path, ".json"), self.summary())


@register_hook("neuron-stats")
class NeuronStatsHook:
    """Streaming per-neuron statistics of ``blocks.{l}.mlp.hook_post``: tokens seen, count of
    activations above ``threshold``, sum and sum of squares (float64 totals), with memory
    independent of the number of tokens.

    The accumulator is the neuron analyzer's
    (:class:`~babel_interp.analysis.neurons.neuron_stats.NeuronStatsCollector`), here label-free:
    every token of every forward pass counts. Run it once per language (as the training callback
    and ``babel-interp analyze hooks`` do) to get per-language firing rates; the neuron analyzer
    does the labelled, windowed version for LAPE.
    """

    LANGUAGE = "all"  # the one label every token is counted under

    def __init__(self, threshold: float = 0.0, layers: list[int] | None = None) -> None:
        self.threshold = float(threshold)
        self.layers = layers
        self.name = "neuron-stats"
        self._collector: NeuronStatsCollector | None = None

    def fwd_hooks(self, model: Any) -> FwdHooks:
        if self._collector is None:
            cfg = NeuronStatsConfig(
                threshold=self.threshold,
                tokens_per_language=None,
                max_windows_per_language=0,
                layers=_layers(model, self.layers),
            )
            self._collector = NeuronStatsCollector(model, [self.LANGUAGE], cfg)
        return self._collector.observer_hooks(self.LANGUAGE)

    def reset(self) -> None:
        self._collector = None

    def stats(self) -> NeuronStats | None:
        """The statistics so far (one language, ``"all"``); None before the first forward pass."""
        return None if self._collector is None else self._collector.result()

    @property
    def tokens(self) -> int:
        """Tokens counted so far."""
        return 0 if self._collector is None else self._collector.seen[self.LANGUAGE]

    def _per_layer(self, name: str, stats: NeuronStats | None = None) -> dict[int, Tensor]:
        # ``{layer: [d_mlp] float64}`` of one total; empty before any token was counted.
        stats = stats if stats is not None else self.stats()
        if stats is None or not self.tokens:
            return {}
        table = getattr(stats, name)[0].double()
        return {layer: table[i] for i, layer in enumerate(stats.layers)}

    @property
    def count(self) -> dict[int, Tensor]:
        """Per layer: activations above the threshold, per neuron (float64)."""
        return self._per_layer("count")

    @property
    def sum(self) -> dict[int, Tensor]:
        """Per layer: the sum of activations, per neuron."""
        return self._per_layer("sum")

    @property
    def sum_sq(self) -> dict[int, Tensor]:
        """Per layer: the sum of squared activations, per neuron."""
        return self._per_layer("sum_sq")

    def firing_rate(self) -> dict[int, Tensor]:
        """Share of tokens on which each neuron's activation exceeds the threshold."""
        return {k: (v / max(self.tokens, 1)).float() for k, v in self.count.items()}

    def summary(self) -> dict:
        rates = self.firing_rate()
        return {
            "name": self.name,
            "tokens": self.tokens,
            "threshold": self.threshold,
            "mean_firing_rate": {k: float(v.mean()) for k, v in rates.items()},
            "neurons_firing_on_most_tokens": {k: int((v > 0.5).sum()) for k, v in rates.items()},
        }

    def save(self, path: str | Path) -> Path:
        path = _with_suffix(path, ".safetensors")
        stats = self.stats()
        tensors = {  # one tensor per layer, owning its memory (safetensors refuses shared ones)
            f"{name}.{layer}": value.clone()
            for name in ("count", "sum", "sum_sq")
            for layer, value in self._per_layer(name, stats).items()
        }
        meta = {"tokens": str(self.tokens), "threshold": str(self.threshold)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        write_json_atomic(path.with_suffix(".json"), self.summary())
        return path
