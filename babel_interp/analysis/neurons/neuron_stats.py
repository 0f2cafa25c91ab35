"""Streaming per-(layer, neuron, language) activation statistics of MLP neurons.

Activations of ``blocks.{l}.mlp.hook_post`` are reduced inside forward hooks, batch by batch, and
never cached: memory is O(languages x layers x d_mlp) for the totals plus O(windows x layers x
d_mlp) for a bounded number of per-window records, whatever the number of tokens.

For each language ``k`` and neuron ``(l, j)`` we keep the number of tokens seen, the number of
activations above ``threshold`` (LAPE's "activation > 0"), the sum and the sum of squares (float64:
sums of squares over millions of tokens lose digits in float32, and variances come from their
difference). These totals are sufficient for LAPE's activation probability, mean differences,
token-level variances and Cohen's d.

Significance needs more than totals: a permutation null or a bootstrap must resample *exchangeable
units*, and tokens are not exchangeable: neighbouring tokens of one window share context, so their
activations are correlated and a token-level shuffle would make any contrast look significant. A
*window* (a contiguous span of one language fed to the model as one sequence) is the natural unit:
windows are drawn independently from the corpus, and under the null hypothesis "this neuron does
not distinguish the languages" their language labels are exchangeable. So the same four numbers are
also kept per window (per language segment of a window, when a window mixes languages), for up to
``max_windows_per_language`` windows per language; :mod:`babel_interp.analysis.neurons.contrast`
permutes
and resamples those.

Statistics merge by addition (batches, processes, runs): :meth:`NeuronStats.merge`,
:meth:`NeuronStats.all_reduce` under ``torchrun``, and :meth:`NeuronStats.save`/:meth:`load`.
The same accumulator (:class:`NeuronStatsCollector`) backs the label-free ``neuron-stats`` hook
of :mod:`babel_interp.hooks.library`, which counts whatever forward passes it is attached to.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from babel_interp.analysis.layers import mlp_site
from babel_interp.config import ConfigBase
from babel_interp.corpus.shards import CorpusReader, SplitShard
from babel_interp.devices import model_device
from babel_interp.io import atomic_path
from babel_interp.languages import language_index
from babel_interp.model import HookedModel

HOOK_TEMPLATE = "blocks.{layer}.mlp.hook_post"
IGNORE_LABEL = -1
_META_KEY = "babel_interp.neuron_stats"
_FORMAT_VERSION = 1


def mlp_hook_name(layer: int) -> str:
    """``blocks.{layer}.mlp.hook_post``: the MLP post-activation hook (the neurons)."""
    return HOOK_TEMPLATE.format(layer=layer)


@dataclass
class NeuronStatsConfig(ConfigBase):
    """How activation statistics are collected.

    ``tokens_per_language`` caps the tokens counted per language (``None``: no cap); with
    ``balance`` every language gets the same budget, the smallest that all can fill, so activation
    probabilities are estimated with equal precision. ``max_windows_per_language`` bounds the
    per-window records used for permutation nulls and bootstrap intervals (0 keeps none).
    ``layers`` selects layers (``None``: all).
    """

    threshold: float = 0.0
    tokens_per_language: int | None = 65_536
    window_len: int = 128
    batch_size: int = 16
    max_windows_per_language: int = 1024
    balance: bool = True
    layers: list[int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        # Normalized forms: the collection key hashes to_dict(), so 0 and 0.0 must agree.
        self.threshold = float(self.threshold)
        if self.layers is not None:
            self.layers = sorted(self.layers)

    def validate(self) -> None:
        """Check every field (errors name the field)."""
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise ValueError(
                f"NeuronStatsConfig.threshold must be a finite number, got {self.threshold!r}"
            )
        if self.tokens_per_language is not None and (
            not isinstance(self.tokens_per_language, int) or self.tokens_per_language <= 0
        ):
            raise ValueError(
                "NeuronStatsConfig.tokens_per_language must be a positive int or None, "
                f"got {self.tokens_per_language!r}"
            )
        for name in ("window_len", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"NeuronStatsConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.max_windows_per_language, int) or self.max_windows_per_language < 0:
            raise ValueError(
                "NeuronStatsConfig.max_windows_per_language must be an int >= 0, "
                f"got {self.max_windows_per_language!r}"
            )
        if self.layers is not None:
            if (
                not isinstance(self.layers, (list, tuple))
                or not self.layers
                or any(not isinstance(x, int) or x < 0 for x in self.layers)
                or len(set(self.layers)) != len(self.layers)
            ):
                raise ValueError(
                    "NeuronStatsConfig.layers must be None or a non-empty list of distinct "
                    f"layer indices >= 0, got {self.layers!r}"
                )
        if not isinstance(self.seed, int):
            raise ValueError(f"NeuronStatsConfig.seed must be an int, got {self.seed!r}")


@dataclass
class NeuronStats:
    """Activation statistics per (language, layer, neuron), plus per-window records.

    Totals: ``tokens[k]``, ``count[k, l, j]`` (activations > ``threshold``), ``sum`` and
    ``sum_sq`` (float64). Windows: ``window_lang[w]`` (index into ``languages``),
    ``window_tokens[w]`` and float32 ``window_count/sum/sum_sq[w, l, j]``; ``l`` indexes
    ``layers`` (the model's layer numbers).
    """

    languages: list[str]
    layers: list[int]
    d_mlp: int
    threshold: float
    tokens: Int[Tensor, " lang"]
    count: Int[Tensor, "lang layer neuron"]
    sum: Float[Tensor, "lang layer neuron"]
    sum_sq: Float[Tensor, "lang layer neuron"]
    window_lang: Int[Tensor, " window"]
    window_tokens: Int[Tensor, " window"]
    window_count: Float[Tensor, "window layer neuron"]
    window_sum: Float[Tensor, "window layer neuron"]
    window_sum_sq: Float[Tensor, "window layer neuron"]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k, n_layers, d = len(self.languages), len(self.layers), self.d_mlp
        if k == 0:
            raise ValueError("NeuronStats.languages must not be empty")
        if len(set(self.languages)) != k:
            raise ValueError(f"NeuronStats.languages has duplicates: {self.languages}")
        expect = {
            "tokens": (k,),
            "count": (k, n_layers, d),
            "sum": (k, n_layers, d),
            "sum_sq": (k, n_layers, d),
        }
        n_win = self.window_lang.shape[0] if self.window_lang.dim() == 1 else -1
        expect |= {
            "window_lang": (n_win,),
            "window_tokens": (n_win,),
            "window_count": (n_win, n_layers, d),
            "window_sum": (n_win, n_layers, d),
            "window_sum_sq": (n_win, n_layers, d),
        }
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"NeuronStats.{name} has shape {got}, expected {shape}")
        if n_win and (self.window_lang.min() < 0 or self.window_lang.max() >= k):
            raise ValueError("NeuronStats.window_lang holds a label outside the languages")

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def empty(
        cls,
        languages: Sequence[str],
        layers: Sequence[int],
        d_mlp: int,
        threshold: float = 0.0,
        metadata: dict[str, Any] | None = None,
    ) -> NeuronStats:
        """Statistics of zero tokens (the identity of :meth:`merge`)."""
        k, n_layers = len(languages), len(layers)
        return cls(
            languages=list(languages),
            layers=list(layers),
            d_mlp=int(d_mlp),
            threshold=float(threshold),
            tokens=torch.zeros(k, dtype=torch.int64),
            count=torch.zeros(k, n_layers, d_mlp, dtype=torch.int64),
            sum=torch.zeros(k, n_layers, d_mlp, dtype=torch.float64),
            sum_sq=torch.zeros(k, n_layers, d_mlp, dtype=torch.float64),
            window_lang=torch.zeros(0, dtype=torch.int64),
            window_tokens=torch.zeros(0, dtype=torch.int64),
            window_count=torch.zeros(0, n_layers, d_mlp, dtype=torch.float32),
            window_sum=torch.zeros(0, n_layers, d_mlp, dtype=torch.float32),
            window_sum_sq=torch.zeros(0, n_layers, d_mlp, dtype=torch.float32),
            metadata=dict(metadata or {}),
        )

    # -- derived quantities -------------------------------------------------------------------

    @property
    def n_windows(self) -> int:
        """Number of window records."""
        return int(self.window_lang.shape[0])

    def lang_index(self, language: str) -> int:
        """Position of ``language`` in :attr:`languages`."""
        missing = f"language {language!r} has no statistics; languages: {self.languages}"
        return language_index(self.languages, language, missing)

    @property
    def windows_complete(self) -> bool:
        """True when the window records cover every counted token (nulls then match totals)."""
        per_lang = torch.zeros(len(self.languages), dtype=torch.int64)
        per_lang.index_add_(0, self.window_lang, self.window_tokens)
        return bool(torch.equal(per_lang, self.tokens))

    def activation_probability(self) -> Float[Tensor, "layer neuron lang"]:
        """LAPE's p[l, j, k]: the share of language-k tokens on which neuron j of layer l fires.

        Layout ``[layer, neuron, lang]`` as in Tang et al.; a language without tokens is an error.
        """
        self._require_tokens()
        p = self.count.double() / self.tokens.double()[:, None, None]
        return p.permute(1, 2, 0).contiguous()

    def mean(self) -> Float[Tensor, "lang layer neuron"]:
        """Mean activation per language."""
        self._require_tokens()
        return self.sum / self.tokens.double()[:, None, None]

    def variance(self) -> Float[Tensor, "lang layer neuron"]:
        """Unbiased token-level variance per language (0 where fewer than two tokens)."""
        n = self.tokens.double()[:, None, None]
        var = (self.sum_sq - self.sum * self.sum / n.clamp(min=1)) / (n - 1).clamp(min=1)
        return var.clamp(min=0.0)

    def pooled_mean(self) -> Float[Tensor, "layer neuron"]:
        """Mean activation over all tokens of all languages (for mean ablation)."""
        total = int(self.tokens.sum())
        if total == 0:
            raise ValueError("NeuronStats holds no tokens: nothing to average")
        return self.sum.sum(0) / total

    def _require_tokens(self) -> None:
        n_tok = self.tokens.tolist()
        empty = [lang for lang, n in zip(self.languages, n_tok, strict=True) if n == 0]
        if empty:
            raise ValueError(f"NeuronStats has no tokens for language(s) {empty}")

    def select_languages(self, languages: Sequence[str]) -> NeuronStats:
        """The statistics of a subset of languages (windows of other languages dropped)."""
        idx = [self.lang_index(lang) for lang in languages]
        remap = torch.full((len(self.languages),), -1, dtype=torch.int64)
        remap[idx] = torch.arange(len(idx))
        keep = remap[self.window_lang] >= 0
        return NeuronStats(
            languages=list(languages),
            layers=list(self.layers),
            d_mlp=self.d_mlp,
            threshold=self.threshold,
            tokens=self.tokens[idx].clone(),
            count=self.count[idx].clone(),
            sum=self.sum[idx].clone(),
            sum_sq=self.sum_sq[idx].clone(),
            window_lang=remap[self.window_lang[keep]],
            window_tokens=self.window_tokens[keep].clone(),
            window_count=self.window_count[keep].clone(),
            window_sum=self.window_sum[keep].clone(),
            window_sum_sq=self.window_sum_sq[keep].clone(),
            metadata=dict(self.metadata),
        )

    def to_dataframe(self) -> Any:
        """Per (language, layer): tokens, windows, mean firing rate and mean activation."""
        import pandas as pd

        rows = []
        n_win = torch.bincount(self.window_lang, minlength=len(self.languages))
        for k, lang in enumerate(self.languages):
            n = int(self.tokens[k])
            for i, layer in enumerate(self.layers):
                rows.append(
                    {
                        "language": lang,
                        "layer": layer,
                        "layer_name": mlp_site(layer),
                        "tokens": n,
                        "windows": int(n_win[k]),
                        "firing_rate": float(self.count[k, i].sum()) / (n * self.d_mlp)
                        if n
                        else float("nan"),
                        "mean_activation": float(self.sum[k, i].sum()) / (n * self.d_mlp)
                        if n
                        else float("nan"),
                    }
                )
        return pd.DataFrame(rows)

    # -- merging ------------------------------------------------------------------------------

    def _check_compatible(self, other: NeuronStats) -> None:
        for name in ("languages", "layers", "d_mlp", "threshold"):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(
                    f"cannot merge NeuronStats with different {name}: "
                    f"{getattr(self, name)!r} vs {getattr(other, name)!r}"
                )

    def merge(self, other: NeuronStats) -> NeuronStats:
        """The statistics of both token sets: totals add, window records concatenate."""
        self._check_compatible(other)
        return NeuronStats(
            languages=list(self.languages),
            layers=list(self.layers),
            d_mlp=self.d_mlp,
            threshold=self.threshold,
            tokens=self.tokens + other.tokens,
            count=self.count + other.count,
            sum=self.sum + other.sum,
            sum_sq=self.sum_sq + other.sum_sq,
            window_lang=torch.cat([self.window_lang, other.window_lang]),
            window_tokens=torch.cat([self.window_tokens, other.window_tokens]),
            window_count=torch.cat([self.window_count, other.window_count]),
            window_sum=torch.cat([self.window_sum, other.window_sum]),
            window_sum_sq=torch.cat([self.window_sum_sq, other.window_sum_sq]),
            metadata=dict(self.metadata),
        )

    def all_reduce(self, group: Any = None) -> NeuronStats:
        """Sum totals and gather window records across ``torch.distributed`` ranks, in place.

        A no-op when ``torch.distributed`` is not initialized (a single process).
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        backend = dist.get_backend(group)
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if backend == "nccl"
            else torch.device("cpu")
        )
        for name in ("tokens", "count", "sum", "sum_sq"):
            t = getattr(self, name).to(device)
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
            setattr(self, name, t.cpu())
        world = dist.get_world_size(group)
        n_local = torch.tensor([self.n_windows], dtype=torch.int64, device=device)
        sizes = [torch.zeros_like(n_local) for _ in range(world)]
        dist.all_gather(sizes, n_local, group=group)
        counts = [int(s.item()) for s in sizes]
        n_max = max(counts)
        for name in ("window_lang", "window_tokens", "window_count", "window_sum", "window_sum_sq"):
            local = getattr(self, name)
            # all_gather needs equal shapes: pad to the largest rank, then trim each part.
            padded = torch.zeros((n_max, *local.shape[1:]), dtype=local.dtype, device=device)
            padded[: local.shape[0]] = local.to(device)
            parts = [torch.zeros_like(padded) for _ in range(world)]
            dist.all_gather(parts, padded, group=group)
            kept = [p[:c].cpu() for p, c in zip(parts, counts, strict=True)]
            setattr(self, name, torch.cat(kept))
        return self

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write one safetensors file (tensors + JSON metadata), atomically."""
        path = Path(path)
        tensors = {
            name: getattr(self, name).detach().cpu().contiguous()
            for name in (
                "tokens",
                "count",
                "sum",
                "sum_sq",
                "window_lang",
                "window_tokens",
                "window_count",
                "window_sum",
                "window_sum_sq",
            )
        }
        meta = {
            "format_version": _FORMAT_VERSION,
            "languages": self.languages,
            "layers": self.layers,
            "d_mlp": self.d_mlp,
            "threshold": self.threshold,
            "hook": HOOK_TEMPLATE,
            "metadata": self.metadata,
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeuronStats:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no neuron statistics file")
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
            if raw is None:
                raise ValueError(f"{path} is not a neuron statistics file (no {_META_KEY} header)")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(raw)
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{path}: neuron statistics format {meta.get('format_version')!r} is not "
                f"supported (expected {_FORMAT_VERSION})"
            )
        return cls(
            languages=list(meta["languages"]),
            layers=[int(x) for x in meta["layers"]],
            d_mlp=int(meta["d_mlp"]),
            threshold=float(meta["threshold"]),
            metadata=dict(meta.get("metadata", {})),
            **tensors,
        )


def map_lang_ids(
    lang_ids: Int[Tensor, "batch pos"] | np.ndarray,
    source_languages: Sequence[str],
    languages: Sequence[str],
) -> Int[Tensor, "batch pos"]:
    """Relabel corpus language ids (indices into ``source_languages``) to ``languages``.

    Tokens of a language not in ``languages`` get :data:`IGNORE_LABEL`, so they pass through the
    model (as context) without being counted.
    """
    ids = torch.as_tensor(np.asarray(lang_ids), dtype=torch.int64)
    table = torch.full((len(source_languages),), IGNORE_LABEL, dtype=torch.int64)
    for i, lang in enumerate(source_languages):
        if lang in languages:
            table[i] = list(languages).index(lang)
    if ids.numel() and (ids.min() < 0 or ids.max() >= len(source_languages)):
        raise ValueError(
            f"language ids must lie in [0, {len(source_languages)}), "
            f"got range [{int(ids.min())}, {int(ids.max())}]"
        )
    return table[ids]


class NeuronStatsCollector:
    """Accumulates :class:`NeuronStats` from forward passes, through hooks only.

    Each :meth:`update` runs the model once on a batch of token windows with per-token language
    labels (indices into ``languages``; :data:`IGNORE_LABEL` tokens are context only). Tokens of a
    language past its budget are not counted, so a language stops exactly at its cap.
    """

    def __init__(
        self,
        model: HookedModel,
        languages: Sequence[str],
        cfg: NeuronStatsConfig | None = None,
        budget: int | Mapping[str, int] | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg or NeuronStatsConfig()
        self.languages = list(languages)
        if not self.languages or len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages must be non-empty and distinct, got {self.languages}")
        n_layers = int(model.cfg.n_layers)
        self.layers = (
            list(self.cfg.layers) if self.cfg.layers is not None else list(range(n_layers))
        )
        bad = [x for x in self.layers if x >= n_layers]
        if bad:
            raise ValueError(
                f"NeuronStatsConfig.layers {bad} do not exist: the model has {n_layers}"
            )
        self.d_mlp = int(model.cfg.d_mlp)
        if budget is None:
            budget = self.cfg.tokens_per_language
        if budget is None or isinstance(budget, int):
            self.budget = {lang: budget for lang in self.languages}
        else:
            missing = [lang for lang in self.languages if lang not in budget]
            if missing:
                raise ValueError(f"budget has no entry for language(s) {missing}")
            self.budget = {lang: budget[lang] for lang in self.languages}
        self.seen = {lang: 0 for lang in self.languages}
        self._stats = NeuronStats.empty(
            self.languages,
            self.layers,
            self.d_mlp,
            self.cfg.threshold,
            metadata={
                "hook": HOOK_TEMPLATE,
                "n_layers": n_layers,
                "d_model": int(model.cfg.d_model),
                "config": self.cfg.to_dict(),
            },
        )
        self._acc: dict[str, Tensor] | None = None  # totals, on the activations' device
        self._windows: dict[str, list[Tensor]] = {
            k: []
            for k in ("window_lang", "window_tokens", "window_count", "window_sum", "window_sum_sq")
        }
        self._n_windows = [0] * len(self.languages)
        self._batch: list[tuple[Tensor, Tensor, Tensor] | None] = [None] * len(self.layers)
        self._gid: Tensor | None = None
        self._buf: Tensor | None = None
        self._n_groups = 0
        self._pure = False

    @property
    def done(self) -> bool:
        """True when every language has reached its budget."""
        return all(b is not None and self.seen[k] >= b for k, b in self.budget.items())

    def remaining(self, language: str) -> int | None:
        """Tokens ``language`` may still count (``None``: no cap)."""
        b = self.budget[language]
        return None if b is None else max(0, b - self.seen[language])

    def hooks(self) -> list[tuple[str, Any]]:
        """``(hook name, function)`` pairs; results are keyed by the registered name's layer."""
        return [
            (mlp_hook_name(layer), functools.partial(self._hook, slot=i))
            for i, layer in enumerate(self.layers)
        ]

    def _scratch(self, x: Tensor) -> Tensor:
        # One float32 buffer reused by every layer and batch: the indicator and the squares are
        # written into it (``out=``) instead of allocating two activation-sized tensors per layer,
        # and a float indicator sums ~3x faster than a bool one on CPU.
        buf = self._buf
        if buf is None or buf.shape != x.shape or buf.device != x.device:
            buf = self._buf = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        return buf

    def observer_hooks(self, language: str) -> list[tuple[str, Any]]:
        """Hooks that count every token of each forward pass run by someone else as
        ``language``, each row of the batch one window of it.

        For collecting beside other hooks (``run_with_hooks`` with several hook sets): the
        statistics are accumulated once every layer's hook has fired. No budget applies.
        """
        if language not in self.languages:
            raise KeyError(f"language {language!r} is not collected; languages: {self.languages}")
        k = self.languages.index(language)
        return [
            (mlp_hook_name(layer), functools.partial(self._observe, slot=i, lang=k))
            for i, layer in enumerate(self.layers)
        ]

    def _reduce_rows(self, x: Float[Tensor, "batch pos neuron"]) -> tuple[Tensor, Tensor, Tensor]:
        # Every row is one language and fully counted: a row is a window, reduce over pos.
        buf = self._scratch(x)
        thr = self.cfg.threshold
        cnt = torch.gt(x, thr, out=buf).sum(1)
        s = x.sum(1)
        ss = torch.mul(x, x, out=buf).sum(1)
        return cnt, s, ss

    def _observe(
        self, act: Float[Tensor, "batch pos neuron"], hook: Any, slot: int, lang: int
    ) -> None:
        x = act.detach().float()
        self._batch[slot] = self._reduce_rows(x)
        if any(p is None for p in self._batch):
            return  # the deeper layers' hooks have not fired yet in this forward pass
        cnt, s, ss = self._take_batch()
        batch, pos = x.shape[:2]
        group_lang = torch.full((batch,), lang, dtype=torch.int64)
        self._accumulate(group_lang, torch.full((batch,), pos, dtype=torch.int64), cnt, s, ss)
        self.seen[self.languages[lang]] += batch * pos

    def _take_batch(self) -> tuple[Tensor, Tensor, Tensor]:
        # The per-layer reductions of one forward pass as [group, layer, neuron] tensors.
        parts = self._batch
        self._batch = [None] * len(self.layers)
        if any(p is None for p in parts):
            raise RuntimeError(
                "an MLP hook did not fire: does the model have blocks.{l}.mlp.hook_post?"
            )
        cnt = torch.stack([p[0] for p in parts], 1)  # type: ignore[index]
        s = torch.stack([p[1] for p in parts], 1)  # type: ignore[index]
        ss = torch.stack([p[2] for p in parts], 1)  # type: ignore[index]
        return cnt, s, ss

    def _hook(self, act: Float[Tensor, "batch pos neuron"], hook: Any, slot: int) -> None:
        # ``slot`` is bound at registration because TL 4 passes the canonical hook name, not ours.
        x = act.detach().float()
        if self._pure:
            cnt, s, ss = self._reduce_rows(x)
        else:
            buf = self._scratch(x)
            thr = self.cfg.threshold
            flat, fbuf = x.reshape(-1, x.shape[-1]), buf.view(-1, x.shape[-1])
            gid = self._gid
            assert gid is not None
            shape = (self._n_groups, flat.shape[1])
            cnt = flat.new_zeros(shape).index_add_(0, gid, torch.gt(flat, thr, out=fbuf))
            s = flat.new_zeros(shape).index_add_(0, gid, flat)
            ss = flat.new_zeros(shape).index_add_(0, gid, torch.mul(flat, flat, out=fbuf))
        self._batch[slot] = (cnt, s, ss)

    def update(self, tokens: Int[Tensor, "batch pos"], lang_ids: Int[Tensor, "batch pos"]) -> int:
        """Run one forward pass on ``tokens`` and count every labelled token within budget.

        Returns the number of tokens counted (0 when all their languages are full; the model is
        then not run).
        """
        tokens = torch.as_tensor(tokens)
        lang = torch.as_tensor(lang_ids).to(device="cpu", dtype=torch.int64)
        if tokens.dim() != 2 or tuple(lang.shape) != tuple(tokens.shape):
            raise ValueError(
                f"tokens must be [batch, pos] and lang_ids the same shape, got "
                f"{tuple(tokens.shape)} and {tuple(lang.shape)}"
            )
        k = len(self.languages)
        if lang.numel() and (lang.min() < IGNORE_LABEL or lang.max() >= k):
            raise ValueError(
                f"lang_ids must lie in [0, {k}) or be {IGNORE_LABEL} (ignored), got range "
                f"[{int(lang.min())}, {int(lang.max())}]"
            )
        n_ctx = int(self.model.cfg.n_ctx)
        if tokens.shape[1] > n_ctx:
            raise ValueError(
                f"windows of {tokens.shape[1]} tokens exceed the model's n_ctx {n_ctx}"
            )
        batch, pos = tokens.shape
        flat = lang.reshape(-1)
        keep = flat >= 0
        for i, name in enumerate(self.languages):
            rem = self.remaining(name)
            if rem is None:
                continue
            mine = flat == i
            # Count a language's tokens in reading order until its budget is spent.
            keep &= ~mine | (torch.cumsum(mine, 0) <= rem)
        n_kept = int(keep.sum())
        if n_kept == 0:
            return 0
        self._pure = bool(keep.all()) and bool((lang == lang[:, :1]).all())
        if self._pure:
            self._n_groups = batch
            group_lang = lang[:, 0]
        else:
            # Group = (row, language); one extra group collects the tokens not counted.
            self._n_groups = batch * k + 1
            row = torch.arange(batch).repeat_interleave(pos)
            gid = torch.where(keep, row * k + flat.clamp(min=0), self._n_groups - 1)
            group_lang = torch.arange(self._n_groups - 1) % k
        device = model_device(self.model)
        if not self._pure:
            self._gid = gid.to(device)
        with torch.no_grad():
            self.model.run_with_hooks(tokens.to(device), fwd_hooks=self.hooks(), return_type=None)
        cnt, s, ss = self._take_batch()
        if not self._pure:
            n_tok = torch.bincount(gid, minlength=self._n_groups)[:-1]
            cnt, s, ss = cnt[:-1], s[:-1], ss[:-1]
        else:
            n_tok = torch.full((batch,), pos, dtype=torch.int64)
        present = n_tok > 0
        self._accumulate(group_lang[present], n_tok[present], cnt[present], s[present], ss[present])
        for i, name in enumerate(self.languages):
            self.seen[name] += int((flat[keep] == i).sum())
        return n_kept

    def _accumulate(
        self,
        group_lang: Int[Tensor, " group"],
        n_tok: Int[Tensor, " group"],
        cnt: Float[Tensor, "group layer neuron"],
        s: Float[Tensor, "group layer neuron"],
        ss: Float[Tensor, "group layer neuron"],
    ) -> None:
        device = cnt.device
        if self._acc is None:
            # float64 is unsupported on some accelerators (MPS): keep totals on the CPU there.
            acc_device = device if device.type in ("cpu", "cuda") else torch.device("cpu")
            shape = (len(self.languages), len(self.layers), self.d_mlp)
            self._acc = {
                "count": torch.zeros(shape, dtype=torch.float64, device=acc_device),
                "sum": torch.zeros(shape, dtype=torch.float64, device=acc_device),
                "sum_sq": torch.zeros(shape, dtype=torch.float64, device=acc_device),
            }
        acc = self._acc
        idx = group_lang.to(acc["count"].device)
        acc["count"].index_add_(0, idx, cnt.to(acc["count"].device, torch.float64))
        acc["sum"].index_add_(0, idx, s.to(acc["sum"].device, torch.float64))
        acc["sum_sq"].index_add_(0, idx, ss.to(acc["sum_sq"].device, torch.float64))
        self._stats.tokens.index_add_(0, group_lang, n_tok)
        cap = self.cfg.max_windows_per_language
        take = []
        for g, k in enumerate(group_lang.tolist()):
            if self._n_windows[k] < cap:
                self._n_windows[k] += 1
                take.append(g)
        if take:
            sel = torch.tensor(take, dtype=torch.int64)
            dsel = sel.to(device)
            self._windows["window_lang"].append(group_lang[sel])
            self._windows["window_tokens"].append(n_tok[sel])
            self._windows["window_count"].append(cnt[dsel].cpu())
            self._windows["window_sum"].append(s[dsel].cpu())
            self._windows["window_sum_sq"].append(ss[dsel].cpu())

    def result(self) -> NeuronStats:
        """The statistics accumulated so far (a snapshot; collection may continue)."""
        st = self._stats
        out = NeuronStats.empty(st.languages, st.layers, st.d_mlp, st.threshold, st.metadata)
        out.tokens = st.tokens.clone()
        if self._acc is not None:
            # Counts were summed as float64: exact for integers below 2**53.
            out.count = self._acc["count"].cpu().round().to(torch.int64)
            out.sum = self._acc["sum"].cpu().clone()
            out.sum_sq = self._acc["sum_sq"].cpu().clone()
        if self._windows["window_lang"]:
            for name, parts in self._windows.items():
                setattr(out, name, torch.cat(parts))
        return out


def _language_seed(seed: int, language: str) -> list[int]:
    # One stream per language: adding a language leaves the other languages' windows unchanged.
    return [seed, zlib.crc32(language.encode("utf-8"))]


def sample_language_windows(
    split: SplitShard,
    language: str,
    n_tokens: int | None,
    window_len: int,
    seed: int = 0,
) -> Int[Tensor, "window pos"]:
    """Non-overlapping language-pure windows of ``language``, drawn at random, deterministic.

    The language's token range is cut into ``window_len`` tiles; ``ceil(n_tokens / window_len)``
    tiles are drawn without replacement (all of them, in random order, when ``n_tokens`` is None or
    exceeds what the language has).
    """
    if window_len <= 0:
        raise ValueError(f"window_len must be positive, got {window_len}")
    start, end = split.language_range(language)
    n_tiles = (end - start) // window_len
    if n_tiles == 0:
        raise ValueError(
            f"language {language!r} has {end - start} tokens in split {split.name!r}, fewer than "
            f"one window of {window_len}: lower window_len"
        )
    want = n_tiles if n_tokens is None else min(n_tiles, math.ceil(n_tokens / window_len))
    rng = np.random.default_rng(_language_seed(seed, language))
    tiles = rng.choice(n_tiles, size=want, replace=False)
    rows = [
        np.asarray(split.tokens[start + t * window_len : start + (t + 1) * window_len])
        for t in tiles
    ]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def _batches(windows: Tensor, batch_size: int) -> Iterator[Tensor]:
    for i in range(0, windows.shape[0], batch_size):
        yield windows[i : i + batch_size]


def collect_neuron_stats(
    model: HookedModel,
    windows: Mapping[str, Int[Tensor, "window pos"]],
    cfg: NeuronStatsConfig | None = None,
    progress: bool = True,
    desc: str = "neuron stats",
) -> NeuronStats:
    """Statistics of ``model`` on language-pure windows (one ``[n, pos]`` tensor per language).

    With ``cfg.balance`` every language is capped at the same token count: the smallest of
    ``cfg.tokens_per_language`` and what each language's windows hold. Under ``torchrun`` each rank
    takes every ``world_size``-th window and the result is all-reduced, so every rank returns the
    statistics of all windows.
    """
    import torch.distributed as dist

    cfg = cfg or NeuronStatsConfig()
    languages = list(windows)
    if not languages:
        raise ValueError("windows must hold at least one language")
    for lang, w in windows.items():
        if w.dim() != 2 or w.shape[0] == 0:
            raise ValueError(
                f"windows[{lang!r}] must be a non-empty [n, pos] tensor, got {w.shape}"
            )
    available = {lang: int(w.numel()) for lang, w in windows.items()}
    cap = cfg.tokens_per_language
    if cfg.balance:
        common = min(available.values())
        cap = common if cap is None else min(cap, common)
    rank, world = 0, 1
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    budget: dict[str, int] | None = None
    if cap is not None:
        budget = {}
        for lang, w in windows.items():
            # Split each language's budget over ranks in window order, so ranks never overlap.
            local = _rank_budget(cap, int(w.shape[1]), int(w.shape[0]), rank, world)
            budget[lang] = local
    collector = NeuronStatsCollector(model, languages, cfg, budget=budget)
    total = sum(min(available[lang], cap) if cap else available[lang] for lang in languages)
    bar = tqdm(total=total, desc=desc, unit="tok", leave=False, disable=not progress or rank != 0)
    for k, lang in enumerate(languages):
        local = windows[lang][rank::world]
        for batch in _batches(local, cfg.batch_size):
            if collector.remaining(lang) == 0:
                break
            counted = collector.update(batch, torch.full_like(batch, k))
            bar.update(counted * world)
    bar.close()
    stats = collector.result()
    stats.metadata["window_len"] = int(next(iter(windows.values())).shape[1])
    return stats.all_reduce()


def _rank_budget(cap: int, window_len: int, n_windows: int, rank: int, world: int) -> int:
    # The first ceil(cap / window_len) windows are the ones a single process would count; rank r
    # owns windows r, r + world, ...; the last needed window may count only part of its tokens.
    full, rest = divmod(cap, window_len)
    mine = range(rank, n_windows, world)
    tokens = 0
    for w in mine:
        if w < full:
            tokens += window_len
        elif w == full:
            tokens += rest
    return tokens


def corpus_windows(
    corpus: str | os.PathLike | CorpusReader,
    languages: Sequence[str],
    cfg: NeuronStatsConfig,
    split: str = "val",
    window_len: int | None = None,
) -> dict[str, Int[Tensor, "window pos"]]:
    """Language-pure windows of each language from a corpus split, enough for the budget."""
    reader = corpus if isinstance(corpus, CorpusReader) else CorpusReader(corpus)
    shard = reader.split(split)
    wl = window_len or cfg.window_len
    for lang in languages:
        reader.lang_id(lang)  # a clear error for a language the corpus lacks
    return {
        lang: sample_language_windows(shard, lang, cfg.tokens_per_language, wl, cfg.seed)
        for lang in languages
    }


def collect_from_corpus(
    model: HookedModel,
    corpus: str | os.PathLike | CorpusReader,
    languages: Sequence[str],
    cfg: NeuronStatsConfig | None = None,
    split: str = "val",
    progress: bool = True,
) -> NeuronStats:
    """Statistics of ``model`` on ``languages`` of a corpus split (language-pure windows)."""
    cfg = cfg or NeuronStatsConfig()
    window_len = min(cfg.window_len, int(model.cfg.n_ctx))
    windows = corpus_windows(corpus, languages, cfg, split=split, window_len=window_len)
    return collect_neuron_stats(model, windows, cfg, progress=progress)
