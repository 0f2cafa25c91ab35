"""A hooked model with planted language-specific neurons: the positive control of the neuron
analyzers (statistics, LAPE, contrast, ablation), which must find exactly these neurons."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from safetensors.torch import save_file
from torch import Tensor

from babel_interp.analysis.neurons.neuron_stats import NeuronStats
from babel_interp.model import MODEL_CONFIG, MODEL_WEIGHTS, HookedModel, load_model


def token_languages(d_vocab: int, n_languages: int) -> Int[Tensor, " vocab"]:
    """The language of each token in :func:`planted_neuron_model`'s vocabulary split."""
    return torch.arange(d_vocab) * n_languages // d_vocab


def planted_neuron_model(
    cfg: Any,
    n_languages: int,
    planted: Mapping[int, Sequence[tuple[int, int]]],
    scale: float = 2.0,
    out_scale: float = 0.2,
    unembed_scale: float = 2.0,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> HookedModel:
    """A hooked model whose ``planted[k]`` neurons ``(layer, neuron)`` fire only on language k.

    The vocabulary is split into ``n_languages`` equal, contiguous token ranges
    (:func:`token_languages`). Token embeddings are ``c * u_k`` (a direction per language) plus a
    noise vector shared by the i-th token of every language, so every other neuron, which reads
    only the noise subspace, sees the same activation distribution on every language. Planted
    neurons read ``u_k - mean of the other u`` (strongly positive on language k, strongly negative
    elsewhere) and write a language direction ``v_k`` that the unembedding turns into "the next
    token is in language k": zero-ablating them costs about ``log(n_languages)`` nats on their
    language. Attention writes nothing, so the model is a per-token function.

    ``cfg`` is a :class:`babel_interp.model.ModelConfig` with LayerNorm, standard positions, a
    ``gelu``/``relu`` activation, a concrete ``d_vocab`` divisible by ``n_languages`` and
    ``d_model >= 2 * n_languages + 8``.
    """
    k_lang, d, v = n_languages, cfg.d_model, cfg.d_vocab
    if cfg.normalization != "LN" or cfg.positional_embedding != "standard":
        raise ValueError("planted_neuron_model needs normalization='LN', standard positions")
    if cfg.act_fn not in ("gelu", "relu"):
        raise ValueError(f"planted_neuron_model needs a gelu or relu activation, got {cfg.act_fn}")
    if v <= 0 or v % k_lang:
        raise ValueError(f"d_vocab ({v}) must be positive and divisible by n_languages ({k_lang})")
    if d < 2 * k_lang + 8:
        raise ValueError(f"d_model ({d}) must be at least 2 * n_languages + 8")
    for k, neurons in planted.items():
        if not 0 <= k < k_lang:
            raise ValueError(f"planted language {k} outside [0, {k_lang})")
        for layer, j in neurons:
            if not (0 <= layer < cfg.n_layers and 0 <= j < cfg.d_mlp):
                raise ValueError(f"planted neuron ({layer}, {j}) does not exist")
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen)

    # An orthonormal basis whose first vector is the all-ones direction LayerNorm removes.
    basis, _ = torch.linalg.qr(torch.cat([torch.ones(d, 1), randn(d, d - 1)], 1))
    u = basis[:, 1 : 1 + k_lang].T  # [lang, d]: what planted neurons read
    w_dir = basis[:, 1 + k_lang : 1 + 2 * k_lang].T  # [lang, d]: what they write
    noise_basis = basis[:, 1 + 2 * k_lang :]  # [d, rest]
    per_lang = v // k_lang
    noise = randn(per_lang, noise_basis.shape[1]) @ noise_basis.T
    lang_of = token_languages(v, k_lang)
    w_e = 4.0 * u[lang_of] + noise[torch.arange(v) % per_lang]

    def noise_dirs(n: int) -> Tensor:
        x = randn(n, noise_basis.shape[1]) @ noise_basis.T
        return x / x.norm(dim=1, keepdim=True)

    h, dh, m, n_layers = cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.n_layers
    state: dict[str, Tensor] = {
        "embed.W_E": w_e,
        "pos_embed.W_pos": torch.zeros(cfg.n_ctx, d),
        "ln_final.w": torch.ones(d),
        "ln_final.b": torch.zeros(d),
        "unembed.W_U": unembed_scale * w_dir[lang_of].T + 0.01 * randn(d, v),
        "unembed.b_U": torch.zeros(v),
    }
    for layer in range(n_layers):
        w_in = noise_dirs(m).T.clone()  # [d, m]
        b_in = 0.5 * randn(m)
        w_out = 0.05 * noise_dirs(m)  # [m, d]
        for k, neurons in planted.items():
            others = [i for i in range(k_lang) if i != k]
            read = u[k] - u[others].mean(0)
            for lay, j in neurons:
                if lay == layer:
                    w_in[:, j] = scale * read
                    b_in[j] = 0.0
                    w_out[j] = out_scale * w_dir[k]
        p = f"blocks.{layer}."
        state |= {
            p + "ln1.w": torch.ones(d),
            p + "ln1.b": torch.zeros(d),
            p + "ln2.w": torch.ones(d),
            p + "ln2.b": torch.zeros(d),
            p + "attn.W_Q": 0.1 * randn(h, d, dh),
            p + "attn.W_K": 0.1 * randn(h, d, dh),
            p + "attn.W_V": 0.1 * randn(h, d, dh),
            p + "attn.W_O": torch.zeros(h, dh, d),
            p + "attn.b_Q": torch.zeros(h, dh),
            p + "attn.b_K": torch.zeros(h, dh),
            p + "attn.b_V": torch.zeros(h, dh),
            p + "attn.b_O": torch.zeros(d),
            p + "mlp.W_in": w_in,
            p + "mlp.b_in": b_in,
            p + "mlp.W_out": w_out,
            p + "mlp.b_out": torch.zeros(d),
        }
    # Written in the TransformerLens 3 layout and read back through load_model, which converts
    # it for TransformerBridge on TransformerLens 4.
    with tempfile.TemporaryDirectory(prefix="babel-planted-") as tmp:
        save_file({k: t.contiguous() for k, t in state.items()}, str(Path(tmp) / MODEL_WEIGHTS))
        meta = {"model": cfg.to_dict(), "tl_major": 3}
        (Path(tmp) / MODEL_CONFIG).write_text(json.dumps(meta), encoding="utf-8")
        model, _ = load_model(tmp, device=device, with_tokenizer=False)
    return model


def level_shift_stats(gen: torch.Generator, shift: float = 0.5) -> NeuronStats:
    """Window records of two languages ("python", "php") without a neuron-specific language effect.

    2 layers x 100 neurons, 40 windows of 32 tokens per language; neuron j fires on a token of
    window w with probability sigmoid(a_j + u_w), base logits a_j ~ N(-1, 1.5) (heterogeneous
    firing rates), window level u_w ~ N(0, 0.5) plus ``shift`` on "php" windows: the language
    moves the whole network's firing level and nothing else.
    """
    n_win, n_layers, d, n_tok = 40, 2, 100, 32
    a = torch.randn(n_layers, d, generator=gen, dtype=torch.float64) * 1.5 - 1.0
    lang = torch.arange(2).repeat_interleave(n_win)
    u = torch.randn(2 * n_win, generator=gen, dtype=torch.float64) * 0.5 + shift * lang
    p = torch.sigmoid(a[None] + u[:, None, None])
    cnt = torch.binomial(torch.full_like(p, n_tok), p, generator=gen).float()
    count = torch.zeros(2, n_layers, d, dtype=torch.int64)
    count.index_add_(0, lang, cnt.long())
    zeros = torch.zeros(2, n_layers, d, dtype=torch.float64)
    return NeuronStats(
        languages=["python", "php"],
        layers=list(range(n_layers)),
        d_mlp=d,
        threshold=0.0,
        tokens=torch.full((2,), n_win * n_tok, dtype=torch.int64),
        count=count,
        sum=zeros,
        sum_sq=zeros.clone(),
        window_lang=lang,
        window_tokens=torch.full((2 * n_win,), n_tok, dtype=torch.int64),
        window_count=cnt,
        window_sum=cnt.clone(),
        window_sum_sq=cnt.clone(),
    )
