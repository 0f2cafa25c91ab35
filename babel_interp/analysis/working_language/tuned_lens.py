"""A tuned lens: one affine translator per layer, trained to decode like the final layer.

The logit lens reads an intermediate residual with the output head as if it were the last
layer's; early layers live in a different basis, so their readings are biased toward whatever the
raw residual happens to align with (Belrose et al. 2023, "Eliciting Latent Predictions from
Transformers with the Tuned Lens"). A tuned lens inserts a learned affine map ``A_l h + b_l``
(initialized to the identity, so an untrained lens *is* the logit lens) before the final norm and
unembedding, trained to minimize ``KL(p_final || p_lens)`` on held-out text. The model stays
frozen. Lenses are saved beside the checkpoint they belong to (``tuned_lens.safetensors``).

Training cost is a forward pass per batch plus, per layer, one [batch * pos, vocab] softmax:
sized for the validation windows of a corpus, not for a pretraining run.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from babel_interp.config import ConfigBase, check_int
from babel_interp.corpus.shards import CorpusReader
from babel_interp.devices import model_device
from babel_interp.io import atomic_path
from babel_interp.model import HookedModel, resid_hook_names

TUNED_LENS_FILE = "tuned_lens.safetensors"


@dataclass
class TunedLensConfig(ConfigBase):
    """How a tuned lens is trained.

    ``n_windows`` windows of ``seq_len`` tokens are drawn from the corpus's validation split
    (all languages); ``holdout`` of them are kept aside to report the KL before and after.
    """

    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 8
    seq_len: int = 128
    n_windows: int = 512
    holdout: int = 32
    include_mid: bool = False
    weight_decay: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        """Check every field; errors name ``TunedLensConfig.<field>``."""
        for name in ("steps", "batch_size", "seq_len", "n_windows"):
            check_int("TunedLensConfig", name, getattr(self, name), 1)
        if not isinstance(self.holdout, int) or not 0 <= self.holdout < self.n_windows:
            raise ValueError(
                f"TunedLensConfig.holdout must be an int in [0, n_windows), got {self.holdout!r}"
            )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"TunedLensConfig.lr must be positive, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(
                f"TunedLensConfig.weight_decay must be >= 0, got {self.weight_decay!r}"
            )
        if not isinstance(self.seed, int):
            raise ValueError(f"TunedLensConfig.seed must be an int, got {self.seed!r}")


class TunedLens(nn.Module):
    """Per-layer affine translators over the residual stream, keyed by hook name.

    The last block's ``hook_resid_post`` (the output) is decoded as is: its translator would be
    the identity by definition.
    """

    name = "tuned"

    def __init__(self, hook_names: Sequence[str], d_model: int, final_hook: str) -> None:
        super().__init__()
        names = [n for n in hook_names if n != final_hook]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate hook names in {list(hook_names)}")
        self.hook_names = names
        self.final_hook = final_hook
        self.d_model = int(d_model)
        self._index = {n: i for i, n in enumerate(names)}
        eye = torch.eye(self.d_model).repeat(len(names), 1, 1)
        self.weight = nn.Parameter(eye)  # [layer, d_model, d_model], applied as h @ W
        self.bias = nn.Parameter(torch.zeros(len(names), self.d_model))
        self.meta: dict[str, Any] = {}

    def transform(
        self, h: Float[Tensor, "... d_model"], layer: str
    ) -> Float[Tensor, "... d_model"]:
        """The translated residual of ``layer`` (unchanged at the output hook)."""
        if layer == self.final_hook:
            return h
        try:
            i = self._index[layer]
        except KeyError:
            raise KeyError(
                f"this tuned lens has no translator for {layer!r}; it was trained for "
                f"{self.hook_names} (retrain it with include_mid to cover hook_resid_mid)"
            ) from None
        w = self.weight[i].to(device=h.device, dtype=h.dtype)
        b = self.bias[i].to(device=h.device, dtype=h.dtype)
        return h @ w + b

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights and metadata to a safetensors file, atomically."""
        path = Path(path)
        meta = dict(
            hook_names=json.dumps(self.hook_names),
            final_hook=self.final_hook,
            d_model=str(self.d_model),
            meta=json.dumps(self.meta, default=str),
        )
        tensors = {
            "weight": self.weight.detach().cpu().contiguous(),
            "bias": self.bias.detach().cpu().contiguous(),
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> TunedLens:
        """Read a lens written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tuned lens at {path}")
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in ("hook_names", "final_hook", "d_model"):
                if key not in meta:
                    raise ValueError(f"{path} is not a tuned lens file (metadata lacks {key!r})")
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
        lens = cls(json.loads(meta["hook_names"]), int(meta["d_model"]), meta["final_hook"])
        if weight.shape != lens.weight.shape or bias.shape != lens.bias.shape:
            raise ValueError(f"{path}: tensor shapes do not match its metadata")
        with torch.no_grad():
            lens.weight.copy_(weight)
            lens.bias.copy_(bias)
        lens.meta = json.loads(meta.get("meta", "{}"))
        return lens.to(device) if device is not None else lens


def _capture_all(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], names: Sequence[str]
) -> dict[str, Tensor]:
    store: dict[str, Tensor] = {}

    def capture(act: Tensor, hook: Any, name: str) -> None:
        store[name] = act.detach()

    hooks = [(n, functools.partial(capture, name=n)) for n in names]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        model(tokens, return_type=None)
    return store


def _decode(model: HookedModel, h: Tensor) -> Tensor:
    ln = getattr(model, "ln_final", None)
    normed = h if ln is None else ln(h)
    logits = normed.float() @ model.W_U.float()
    b = getattr(model, "b_U", None)
    return logits if b is None else logits + b.float()


def lens_kl(
    model: HookedModel,
    lens: TunedLens | None,
    tokens: Int[Tensor, "batch pos"],
    hook_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Mean ``KL(p_final || p_layer)`` per hook on ``tokens`` (``lens=None``: the logit lens).

    ``hook_names`` defaults to the lens's layers (every ``hook_resid_pre`` for the logit lens).
    """
    if hook_names is not None:
        names = list(hook_names)
    else:
        names = list(lens.hook_names) if lens is not None else _default_hooks(model, False)
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    store = _capture_all(model, tokens, names + [final])
    with torch.no_grad():
        target = F.log_softmax(_decode(model, store[final]), dim=-1)
        out = {}
        for n in names:
            h = store[n] if lens is None else lens.transform(store[n], n)
            logq = F.log_softmax(_decode(model, h), dim=-1)
            kl = F.kl_div(logq, target, log_target=True, reduction="none").sum(-1)
            out[n] = float(kl.mean())
    return out


def _default_hooks(model: HookedModel, include_mid: bool) -> list[str]:
    n_layers = int(model.cfg.n_layers)
    return resid_hook_names(n_layers, include_mid)[:-1]


def sample_windows(
    corpus_dir: str | os.PathLike, n: int, seq_len: int, seed: int = 0, split: str = "val"
) -> Int[Tensor, "n seq_len"]:
    """``n`` random windows of ``seq_len`` tokens from a corpus split (all languages).

    Not :func:`babel_interp.runs.validation_windows`, which spreads windows of one language
    evenly: a tuned lens is fitted on text of every language, drawn at random.
    """
    shard = CorpusReader(corpus_dir).split(split)
    if shard.n_tokens <= seq_len:
        raise ValueError(
            f"the {split} split of {corpus_dir} has {shard.n_tokens} tokens, too few for windows "
            f"of {seq_len}"
        )
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, shard.n_tokens - seq_len, size=n)
    return torch.from_numpy(np.stack([shard.window(int(s), seq_len)[0] for s in starts]))


def train_tuned_lens(
    model: HookedModel,
    tokens: Int[Tensor, "n pos"],
    cfg: TunedLensConfig | None = None,
    progress: bool = True,
) -> TunedLens:
    """Train a tuned lens for ``model`` on the windows ``tokens`` (the model stays frozen).

    The last ``cfg.holdout`` windows are held out; the lens's ``meta`` records the mean KL to the
    output on them for the logit lens and for the trained lens, per layer.
    """
    cfg = cfg or TunedLensConfig()
    if tokens.ndim != 2 or tokens.shape[0] <= cfg.holdout:
        raise ValueError(
            f"tokens must be [n, pos] with more than holdout={cfg.holdout} rows, got "
            f"{tuple(tokens.shape)}"
        )
    n_ctx = int(model.cfg.n_ctx)
    tokens = tokens[:, :n_ctx]
    n_layers = int(model.cfg.n_layers)
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    names = _default_hooks(model, cfg.include_mid)
    device = model_device(model)
    lens = TunedLens(names, int(model.cfg.d_model), final).to(device)
    train = tokens[: tokens.shape[0] - cfg.holdout] if cfg.holdout else tokens
    held = tokens[tokens.shape[0] - cfg.holdout :].to(device) if cfg.holdout else None
    before = lens_kl(model, None, held, names) if held is not None else {}
    opt = torch.optim.AdamW(lens.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        bar = tqdm(range(cfg.steps), desc="tuned lens", unit="step", disable=not progress)
        for _ in bar:
            idx = torch.randint(0, train.shape[0], (cfg.batch_size,), generator=gen)
            batch = train[idx].to(device)
            store = _capture_all(model, batch, names + [final])
            with torch.no_grad():
                target = F.log_softmax(_decode(model, store[final]), dim=-1)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for n in names:
                # One layer's graph at a time: only one [batch, pos, vocab] softmax is alive.
                logq = F.log_softmax(_decode(model, lens.transform(store[n], n)), dim=-1)
                kl = F.kl_div(logq, target, log_target=True, reduction="none").sum(-1).mean()
                (kl / len(names)).backward()
                total += float(kl.detach())
            opt.step()
            losses.append(total / len(names))
            bar.set_postfix(kl=f"{losses[-1]:.3f}")
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    after = lens_kl(model, lens, held) if held is not None else {}
    lens.meta = dict(
        config=cfg.to_dict(),
        train_kl_first=losses[0] if losses else None,
        train_kl_last=losses[-1] if losses else None,
        holdout_kl_logit=before,
        holdout_kl_tuned=after,
    )
    return lens


def load_or_train_tuned_lens(
    model: HookedModel,
    checkpoint_dir: str | os.PathLike,
    corpus_dir: str | os.PathLike,
    cfg: Any = None,
    progress: bool = True,
) -> TunedLens:
    """The checkpoint's tuned lens: loaded from ``<ckpt>/tuned_lens.safetensors`` when it exists
    and covers the layers asked for, else trained on the corpus's validation windows and saved.

    ``cfg`` is a :class:`TunedLensConfig`, its dict, or a working-language config (whose
    ``tuned`` dict and ``include_mid`` are used).
    """
    tl_cfg, include_mid = _tuned_config(cfg)
    path = Path(checkpoint_dir) / TUNED_LENS_FILE
    device = model_device(model)
    wanted = set(_default_hooks(model, include_mid))
    if path.is_file():
        lens = TunedLens.load(path, device=device)
        if wanted <= set(lens.hook_names) and lens.d_model == int(model.cfg.d_model):
            return lens
    seq_len = min(tl_cfg.seq_len, int(model.cfg.n_ctx))
    tokens = sample_windows(corpus_dir, tl_cfg.n_windows, seq_len, seed=tl_cfg.seed)
    lens = train_tuned_lens(model, tokens, tl_cfg, progress=progress)
    lens.save(path)
    return lens


def _tuned_config(cfg: Any) -> tuple[TunedLensConfig, bool]:
    if cfg is None:
        return TunedLensConfig(), False
    if isinstance(cfg, TunedLensConfig):
        return cfg, cfg.include_mid
    if isinstance(cfg, Mapping):
        c = TunedLensConfig.from_dict(dict(cfg))
        return c, c.include_mid
    tuned = dict(getattr(cfg, "tuned", {}) or {})
    include_mid = bool(getattr(cfg, "include_mid", False))
    tuned["include_mid"] = include_mid or bool(tuned.get("include_mid", False))
    c = TunedLensConfig.from_dict(tuned)
    return c, c.include_mid
