"""Hooked-model factory: the one module that touches TransformerLens model classes.

TransformerLens 3.9 builds a ``HookedTransformer`` from a ``HookedTransformerConfig``; 4.x removed
both and builds the same architecture with ``TransformerBridge.boot_native``. Both expose the hook
names the analyzers use (``hook_embed``, ``blocks.{l}.hook_resid_pre/mid/post``,
``blocks.{l}.mlp.hook_pre/hook_post``, ``ln_final.hook_normalized``), so everything outside this
module depends only on that shared surface (:class:`HookedModel`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from babel_interp.config import ConfigBase, check_choice, check_int
from babel_interp.dcp_files import MODEL_DCP
from babel_interp.devices import model_device
from babel_interp.integrity import CHECKPOINT_MANIFEST, verify_manifest
from babel_interp.io import read_json

MODEL_WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model_config.json"
TOKENIZER_SUBDIR = "tokenizer"
# The safetensors header entry of a single-file model (babel-interp export): model_config.json.
EXPORT_META_KEY = "babel_interp.model_config"

Activation = Literal["gelu", "gelu_new", "relu", "silu", "solu_ln"]
Normalization = Literal["LN", "RMS"]
Positional = Literal["standard", "rotary"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
POSITIONAL: tuple[str, ...] = get_args(Positional)


def tl_major_version() -> int:
    """Major version of the installed transformer-lens (3 or 4)."""
    return int(importlib.metadata.version("transformer-lens").split(".")[0])


@runtime_checkable
class HookedModel(Protocol):
    """The surface of a TransformerLens hooked model that analyzers may rely on.

    ``HookedTransformer`` (TL 3.x), ``TransformerBridge`` (TL 4.x) and a user's own pretrained
    ``HookedTransformer`` all satisfy it.
    """

    cfg: Any
    ln_final: Any

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any: ...

    def run_with_cache(self, *args: Any, **kwargs: Any) -> Any: ...

    def hooks(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class ModelConfig(ConfigBase):
    """Shape and initialization of a GPT-2-style decoder. ``d_vocab=-1`` takes the tokenizer's."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 128
    d_vocab: int = -1
    act_fn: Activation = "gelu"
    normalization: Normalization = "LN"
    positional_embedding: Positional = "standard"
    seed: int = 0

    def validate(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx"):
            check_int("ModelConfig", name, getattr(self, name), 1)
        if not isinstance(self.d_vocab, int) or (self.d_vocab <= 0 and self.d_vocab != -1):
            raise ValueError(
                f"ModelConfig.d_vocab must be a positive int or -1 (from tokenizer), "
                f"got {self.d_vocab!r}"
            )
        check_choice("ModelConfig", "act_fn", self.act_fn, ACTIVATIONS)
        check_choice("ModelConfig", "normalization", self.normalization, NORMALIZATIONS)
        check_choice("ModelConfig", "positional_embedding", self.positional_embedding, POSITIONAL)
        check_int("ModelConfig", "seed", self.seed)

    def with_vocab(self, d_vocab: int) -> ModelConfig:
        """A copy with vocabulary size ``d_vocab``."""
        return self.replace(d_vocab=d_vocab)

    def n_params(self) -> int:
        """Parameter count (weights and biases, embeddings and unembedding included)."""
        if self.d_vocab <= 0:
            raise ValueError("ModelConfig.d_vocab is unset (-1): set it or pass a tokenizer")
        attn = 4 * self.d_model * self.n_heads * self.d_head + 3 * self.n_heads * self.d_head
        attn += self.d_model
        mlp = 2 * self.d_model * self.d_mlp + self.d_mlp + self.d_model
        norms = 4 * self.d_model
        block = attn + mlp + norms
        emb = self.d_vocab * self.d_model * 2 + self.d_vocab + 2 * self.d_model
        if self.positional_embedding == "standard":
            emb += self.n_ctx * self.d_model
        return self.n_layers * block + emb


PRESETS: dict[str, ModelConfig] = {
    # Trains at thousands of tokens/s on 2 CPU cores: the default for tests and the demo.
    "tiny": ModelConfig(n_layers=2, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=128),
    # ~7M with an 8k vocabulary: the CPU pilot's scale.
    "pilot": ModelConfig(n_layers=4, d_model=256, n_heads=4, d_head=64, d_mlp=1024, n_ctx=256),
    # 10-30M parameters depending on the vocabulary (~17M at 8k).
    "small": ModelConfig(n_layers=6, d_model=384, n_heads=6, d_head=64, d_mlp=1536, n_ctx=256),
    # The GPU pilot's 34M shape (with an 8k vocabulary).
    "medium": ModelConfig(n_layers=8, d_model=512, n_heads=8, d_head=64, d_mlp=2048, n_ctx=256),
    "gpt2-small": ModelConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024
    ),
    # The paper's analysis size (GPT-2 style, 1.3B with a 50k vocabulary).
    "1.3b": ModelConfig(n_layers=24, d_model=2048, n_heads=16, d_head=128, d_mlp=8192, n_ctx=2048),
    # The paper's larger size, GPT-3 6.7B's shape (6.9B parameters with a 50k vocabulary: the
    # unembedding is not tied to the embedding).
    "6.7b": ModelConfig(n_layers=32, d_model=4096, n_heads=32, d_head=128, d_mlp=16384, n_ctx=2048),
}


def get_preset(name: str) -> ModelConfig:
    """A copy of the named preset (``tiny``, ``pilot``, ``small``, ``medium``, ``gpt2-small``,
    ``1.3b``, ``6.7b``)."""
    try:
        return PRESETS[name].replace()
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}") from None


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Return a tokenizer TransformerLens accepts.

    Both TL lines read ``tokenizer.init_kwargs['name_or_path']`` and raise ``KeyError`` for a
    ``PreTrainedTokenizerFast`` built in memory; a round trip through a directory gives it one.
    A path is loaded with ``AutoTokenizer``.
    """
    from transformers import AutoTokenizer

    if tokenizer is None:
        return None
    if isinstance(tokenizer, (str, os.PathLike)):
        return AutoTokenizer.from_pretrained(str(tokenizer))
    if "name_or_path" in getattr(tokenizer, "init_kwargs", {}):
        return tokenizer
    # TransformerLens may reload the tokenizer from its path later (e.g. when it has a BOS
    # token), so the directory must outlive this call: it is removed at interpreter exit.
    tmp = tempfile.TemporaryDirectory(prefix="babel-tok-")
    _KEEP_ALIVE.append(tmp)
    tokenizer.save_pretrained(tmp.name)
    return AutoTokenizer.from_pretrained(tmp.name)


_KEEP_ALIVE: list[tempfile.TemporaryDirectory] = []


def load_pretrained(
    name: str, tokenizer: Any = None, device: str | torch.device | None = None
) -> HookedModel:
    """A pretrained model by name, where a model hub is reachable (``from_pretrained`` on TL 3.x,
    ``TransformerBridge.boot_transformers`` with compatibility mode on 4.x)."""
    tok = prepare_tokenizer(tokenizer)
    try:
        if tl_major_version() >= 4:
            from transformer_lens.model_bridge import TransformerBridge

            model = TransformerBridge.boot_transformers(name, device=device, tokenizer=tok)
            model.enable_compatibility_mode()
            return model
        import warnings

        from transformer_lens import HookedTransformer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return HookedTransformer.from_pretrained(name, device=device, tokenizer=tok)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load pretrained model {name!r}: {exc}. Without a reachable model hub, save "
            "the model with babel_interp.model.save_model and pass its directory."
        ) from exc


# ModelConfig fields whose TransformerLens config attribute has another name.
_TL_NAMES = {
    "normalization": "normalization_type",
    "positional_embedding": "positional_embedding_type",
}


def tl_config_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """The TransformerLens config fields (``HookedTransformerConfig(**kwargs)``) of ``cfg``."""
    return {_TL_NAMES.get(f.name, f.name): getattr(cfg, f.name) for f in fields(cfg)}


def build_model(
    cfg: ModelConfig,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    fast_path: bool = True,
) -> HookedModel:
    """A freshly initialized hooked model of shape ``cfg`` on the installed TL line.

    ``HookedTransformer`` on TransformerLens 3.x, ``TransformerBridge.boot_native`` on 4.x.
    With ``cfg.d_vocab == -1`` the vocabulary size comes from ``tokenizer``. ``fast_path``
    enables :func:`enable_fast_path` (same results and hooks; faster when nothing is hooked).
    """
    tok = prepare_tokenizer(tokenizer)
    if cfg.d_vocab == -1:
        if tok is None:
            raise ValueError("ModelConfig.d_vocab is -1 (from tokenizer) but no tokenizer given")
        cfg = cfg.with_vocab(len(tok))
    kwargs = tl_config_kwargs(cfg)
    if tl_major_version() >= 4:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        tl_cfg = TransformerBridgeConfig(**kwargs, tokenizer_prepends_bos=False)
        model = TransformerBridge.boot_native(tl_cfg, tokenizer=tok, device=device)
    else:
        import warnings

        from transformer_lens import HookedTransformer, HookedTransformerConfig

        tl_cfg = HookedTransformerConfig(**kwargs, default_prepend_bos=False, device=device)
        with warnings.catch_warnings():
            # 3.9 warns that HookedTransformer goes away in 4.0; this module handles both lines.
            warnings.simplefilter("ignore", DeprecationWarning)
            model = HookedTransformer(tl_cfg, tokenizer=tok)
    if fast_path:
        enable_fast_path(model)
    return model


def model_config_of(model: HookedModel) -> ModelConfig:
    """Recover a :class:`ModelConfig` from any hooked model's ``cfg``."""
    values = {
        f.name: getattr(model.cfg, _TL_NAMES.get(f.name, f.name)) for f in fields(ModelConfig)
    }
    if not isinstance(values["seed"], int):
        values["seed"] = 0  # TL allows an unseeded model
    return ModelConfig(**values)


def save_model(
    model: HookedModel,
    directory: str | os.PathLike,
    cfg: ModelConfig | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write ``model.safetensors`` and ``model_config.json`` (and ``tokenizer/``) to a directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg = cfg or model_config_of(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(_dedupe_shared(state), d / MODEL_WEIGHTS)
    save_model_config(d, cfg)
    if tokenizer is not None:
        prepare_tokenizer(tokenizer).save_pretrained(d / TOKENIZER_SUBDIR)
    return d


def save_model_config(directory: str | os.PathLike, cfg: ModelConfig) -> Path:
    """Write ``model_config.json`` (the shape and the TransformerLens line) to a directory:
    beside weights written elsewhere (an FSDP checkpoint's ``model.dcp/``)."""
    path = Path(directory) / MODEL_CONFIG
    path.write_text(json.dumps(model_config_meta(cfg), indent=2), encoding="utf-8")
    return path


def model_config_meta(cfg: ModelConfig) -> dict[str, Any]:
    """The content of ``model_config.json`` for a model of shape ``cfg``."""
    return {"model": cfg.to_dict(), "tl_major": tl_major_version()}


def _dedupe_shared(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses tensors that share storage; clone the later aliases.
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen and v.numel() > 0 else v
        seen.add(ptr)
    return out


def _model_file(rel: str) -> bool:
    return (
        rel in (MODEL_CONFIG, MODEL_WEIGHTS)
        or rel.startswith(f"{TOKENIZER_SUBDIR}/")
        or rel.startswith(f"{MODEL_DCP}/")
    )


def weights_file(directory: str | os.PathLike) -> Path:
    """The file whose size and modification time identify a saved model's weights:
    ``model.safetensors``, or an FSDP checkpoint's ``model.dcp/.metadata`` (rewritten with
    every save)."""
    from babel_interp.dcp_files import DCP_METADATA

    d = Path(directory)
    return d / MODEL_WEIGHTS if (d / MODEL_WEIGHTS).is_file() else d / MODEL_DCP / DCP_METADATA


def exported_tokenizer_dir(path: str | os.PathLike) -> Path:
    """Where the tokenizer of a single-file model ``NAME.safetensors`` lies: ``NAME.tokenizer/``."""
    return Path(path).with_suffix(".tokenizer")


def read_saved_model(
    path: str | os.PathLike,
) -> tuple[dict[str, Tensor], dict[str, Any], Path | None]:
    """The weights, the ``model_config.json`` content and the tokenizer directory of a saved
    model, without building it.

    ``path`` is a directory written by :func:`save_model`, a checkpoint of an FSDP run (its
    weights in ``model.dcp/``, a ``torch.distributed.checkpoint`` directory read here in one
    process) or a single file written by ``babel-interp export`` (the configuration in its
    safetensors header). In a checkpoint directory, the files read are first checked against
    its manifest (:mod:`babel_interp.integrity`): a truncated or altered file is an error
    naming it.
    """
    from babel_interp.dcp_files import read_dcp_state_dict

    p = Path(path)
    if p.is_file():
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
        if EXPORT_META_KEY not in header:
            raise ValueError(
                f"{p} is a safetensors file without a {EXPORT_META_KEY!r} header entry; "
                "write single-file models with `babel-interp export`"
            )
        meta = json.loads(header[EXPORT_META_KEY])
        tok = exported_tokenizer_dir(p)
        return load_file(p, device="cpu"), meta, tok if tok.is_dir() else None
    dcp_dir = p / MODEL_DCP
    if not (p / MODEL_CONFIG).is_file() or not ((p / MODEL_WEIGHTS).is_file() or dcp_dir.is_dir()):
        raise FileNotFoundError(
            f"{p} holds no saved model ({MODEL_CONFIG} + {MODEL_WEIGHTS} or {MODEL_DCP}/)"
        )
    if (p / CHECKPOINT_MANIFEST).exists():
        # A checkpoint: the files this loader reads must match their manifest.
        verify_manifest(p, CHECKPOINT_MANIFEST, only=_model_file).raise_if_bad("checkpoint")
    meta = read_json(p / MODEL_CONFIG, "model configuration")
    if (p / MODEL_WEIGHTS).is_file():
        state = load_file(p / MODEL_WEIGHTS, device="cpu")
    else:
        state = read_dcp_state_dict(dcp_dir)
    tok = p / TOKENIZER_SUBDIR
    return state, meta, tok if tok.is_dir() else None


def load_model(
    directory: str | os.PathLike,
    device: str | torch.device | None = None,
    with_tokenizer: bool = True,
    fast_path: bool = True,
) -> tuple[HookedModel, ModelConfig]:
    """Load a model written by :func:`save_model`; the logits match the saved model's exactly.

    Also loads an FSDP run's checkpoints and single files from ``babel-interp export`` (see
    :func:`read_saved_model`, which also checks a checkpoint's files against its manifest).
    Weights saved on TL 3.x load on TL 4.x (converted with TL's own checkpoint converter).
    """
    d = Path(directory)
    state, meta, tok_dir = read_saved_model(d)
    cfg = ModelConfig.from_dict(meta["model"])
    tok = None
    if with_tokenizer and tok_dir is not None:
        tok = prepare_tokenizer(tok_dir)
    model = build_model(cfg, tokenizer=tok, device=device, fast_path=fast_path)
    saved_major, here = int(meta.get("tl_major", 3)), tl_major_version()
    if saved_major < 4 <= here:
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        state = convert_tl_checkpoint(state, model.cfg)
    elif saved_major >= 4 > here:
        raise ValueError(
            f"{d} was saved with TransformerLens {saved_major}.x; loading it on 3.x is not "
            "supported (install transformer-lens>=4 or re-save from 3.x)"
        )
    load_into(model, state)
    return model, cfg


def load_into(model: HookedModel, state: dict[str, Tensor]) -> None:
    """Load a state dict strictly, ignoring only non-parameter buffers TL recomputes."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = {n for n, _ in model.named_parameters()}
    missing = [k for k in missing if k in params]
    if missing or unexpected:
        raise ValueError(
            f"state dict does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def unembed_resid(
    model: HookedModel, resid: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logit lens: the final LayerNorm recomputed on ``resid``, then the unembedding."""
    normed = model.ln_final(resid)
    return normed @ model.W_U + model.b_U


def resid_hook_names(n_layers: int, include_mid: bool = False) -> list[str]:
    """``blocks.{l}.hook_resid_pre`` for each layer (plus ``_mid``) and the last ``_post``."""
    names: list[str] = []
    for layer in range(n_layers):
        names.append(f"blocks.{layer}.hook_resid_pre")
        if include_mid:
            names.append(f"blocks.{layer}.hook_resid_mid")
    names.append(f"blocks.{n_layers - 1}.hook_resid_post")
    return names


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameter count of a built model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def new_kv_cache(model: HookedModel, batch_size: int) -> Any | None:
    """An empty key-value cache for incremental decoding, or None where the line has none.

    TL 3.x ``HookedTransformer``: a ``TransformerLensKeyValueCache``; pass it as
    ``past_kv_cache=`` to the model's forward with an ``attention_mask`` covering the new tokens
    (the cache appends it, so left padding stays masked and positions count real tokens only).
    TL 4.x: None, since ``TransformerBridge.boot_native``'s model returns no cache
    (``return_type="logits_and_cache"`` gives ``None`` for it): decoders recompute instead.
    """
    if tl_major_version() >= 4:
        return None
    from transformer_lens import HookedTransformer, TransformerLensKeyValueCache

    if not isinstance(model, HookedTransformer):
        return None  # e.g. a TransformerBridge on 3.x: its forward takes no past_kv_cache
    return TransformerLensKeyValueCache.init_cache(model.cfg, model_device(model), batch_size)


def select_kv_cache_rows(cache: Any, index: Int[Tensor, " rows"]) -> Any:
    """Keep (or repeat) the rows ``index`` of a :func:`new_kv_cache` cache, in that order."""
    for entry in cache.entries:
        entry.past_keys = entry.past_keys[index.to(entry.past_keys.device)]
        entry.past_values = entry.past_values[index.to(entry.past_values.device)]
    mask = cache.previous_attention_mask
    cache.previous_attention_mask = mask[index.to(mask.device)]
    return cache


# --------------------------------------------------------------------------- fast path
#
# HookedTransformer (TL 3.x) materializes the attention pattern (scores, mask, softmax, NaN
# scrub) and normalizes with elementwise ops so that hook_attn_scores / hook_pattern and
# hook_scale / hook_normalized can see their tensors. Measured on 2 CPU cores, that costs
# ~30% of a training step of the `tiny` preset against a plain GPT using
# scaled_dot_product_attention and F.layer_norm. The fast path computes the same function with
# the fused kernels, and only while none of those hook points has a hook attached (and no
# global module hook exists), checked on every call: run_with_hooks / run_with_cache on them
# take TransformerLens's own code path, so hook semantics are exactly TL's.


def _has_hooks(module: torch.nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or getattr(module, "_backward_pre_hooks", None)
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as _m

    return bool(
        _m._global_forward_hooks
        or _m._global_forward_pre_hooks
        or _m._global_backward_hooks
        or getattr(_m, "_global_backward_pre_hooks", None)
    )


def _attention_fast_ok(attn: Any, extra_inputs: tuple) -> bool:
    """Whether TL's attention equals causal SDPA here and nobody watches scores or pattern."""
    cfg = attn.cfg
    if any(x is not None for x in extra_inputs):
        return False  # kv cache, padding or additive masks, position bias: TL's path
    if _has_hooks(attn.hook_attn_scores) or _has_hooks(attn.hook_pattern) or _global_hooks():
        return False
    softcap = getattr(cfg, "attn_scores_soft_cap", -1.0)
    return (
        cfg.positional_embedding_type in ("standard", "rotary")
        and getattr(attn, "attn_type", "global") == "global"
        and (getattr(attn, "_attention_dir_override", None) or cfg.attention_dir) == "causal"
        and not (softcap is not None and softcap > 0)
        and not getattr(cfg, "use_attention_sinks", False)
        and not getattr(cfg, "use_attn_result", False)
        and not getattr(cfg, "use_split_qkv_input", False)
        and not getattr(cfg, "use_attn_in", False)
        and not getattr(cfg, "load_in_4bit", False)
        and not getattr(cfg, "use_qk_norm", False)
        and getattr(attn, "q_norm", None) is None
        and getattr(cfg, "clip_qkv", None) is None
        and not (getattr(cfg, "use_logn_attn", False) and not attn.training)
    )


def _fused_qkv(attn: Any, x: Float[Tensor, "batch pos d_model"]) -> tuple[Tensor, Tensor, Tensor]:
    """Q, K and V from one matrix multiply instead of three (TL: one ``F.linear`` each)."""
    n_heads, d_model, d_head = attn.W_Q.shape
    w = torch.cat([attn.W_Q, attn.W_K, attn.W_V], 0).transpose(0, 1).reshape(d_model, -1)
    b = torch.cat([attn.b_Q, attn.b_K, attn.b_V], 0).reshape(-1)
    qkv = torch.addmm(b, x.reshape(-1, d_model), w)
    qkv = qkv.view(x.shape[0], x.shape[1], 3, n_heads, d_head)
    q, k, v = qkv.unbind(2)
    return attn.hook_q(q), attn.hook_k(k), attn.hook_v(v)


def _fast_attention_forward(
    self: Any,
    query_input: Float[Tensor, "batch pos d_model"],
    key_input: Float[Tensor, "batch pos d_model"],
    value_input: Float[Tensor, "batch pos d_model"],
    past_kv_cache_entry: Any = None,
    additive_attention_mask: Any = None,
    attention_mask: Any = None,
    position_bias: Any = None,
) -> Float[Tensor, "batch pos d_model"]:
    extra = (past_kv_cache_entry, additive_attention_mask, attention_mask, position_bias)
    if not _attention_fast_ok(self, extra):
        return self._babel_base.forward(self, query_input, key_input, value_input, *extra)
    # Same hook points in the same order as TL, minus hook_attn_scores / hook_pattern.
    if (
        query_input is key_input is value_input
        and type(self).calculate_qkv_matrices is self._babel_base.calculate_qkv_matrices
        and not any(_has_hooks(h) for h in (self.hook_q, self.hook_k, self.hook_v))
    ):
        q, k, v = _fused_qkv(self, query_input)
    else:
        q, k, v = self.calculate_qkv_matrices(query_input, key_input, value_input)
    if self.cfg.positional_embedding_type == "rotary":
        q = self.hook_rot_q(self.apply_rotary(q, 0, None))
        k = self.hook_rot_k(self.apply_rotary(k, 0, None))
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        is_causal=True,
        scale=1.0 / float(self.attn_scale),
    )
    z = self.hook_z(z.transpose(1, 2))  # [batch, pos, head_index, d_head]
    batch, pos = z.shape[0], z.shape[1]
    # W_O [head_index, d_head, d_model] -> [d_model, head_index * d_head], as TL's F.linear.
    w = self.W_O.reshape(-1, self.W_O.shape[-1]).T
    z = z.reshape(batch, pos, -1)
    if z.dtype != w.dtype and not torch.is_autocast_enabled(z.device.type):
        z = z.to(w.dtype)
    return F.linear(z, w, self.b_O)


def _norm_fast_ok(norm: Any) -> bool:
    return (
        norm.cfg.dtype in (torch.float32, torch.float64)
        and not _has_hooks(norm.hook_scale)
        and not _has_hooks(norm.hook_normalized)
        and not _global_hooks()
    )


def _fast_layer_norm_forward(
    self: Any, x: Float[Tensor, "batch pos d"]
) -> Float[Tensor, "batch pos d"]:
    if not _norm_fast_ok(self):
        return self._babel_base.forward(self, x)
    return F.layer_norm(x, (self.length,), self.w, self.b, self.eps)


def _fast_rms_norm_forward(
    self: Any, x: Float[Tensor, "batch pos d"]
) -> Float[Tensor, "batch pos d"]:
    if not _norm_fast_ok(self) or x.device != self.w.device:
        return self._babel_base.forward(self, x)
    return F.rms_norm(x, (self.length,), self.w, self.eps)


def _block_fast_ok(block: Any, extra_inputs: tuple) -> bool:
    """Whether a pre-LN block may normalize its input once for Q, K and V.

    TL applies ``ln1`` three times to the same tensor (once per Q/K/V input) so that split-input
    configurations can differ; for a plain block the three results are identical. With a hook
    on ``ln1`` (which would see three calls) TL's path runs.
    """
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    cfg = block.cfg
    return (
        all(x is None for x in extra_inputs)
        and not getattr(cfg, "use_attn_in", False)
        and not getattr(cfg, "use_split_qkv_input", False)
        and not getattr(cfg, "use_normalization_before_and_after", False)
        and not getattr(cfg, "attn_only", False)
        and not getattr(cfg, "parallel_attn_mlp", False)
        and cfg.original_architecture not in POST_NORM_ARCHITECTURES
        and not _has_hooks(block.ln1)
        and not any(_has_hooks(m) for m in block.ln1.children())
        and not _global_hooks()
    )


def _fast_block_forward(
    self: Any,
    resid_pre: Float[Tensor, "batch pos d_model"],
    shortformer_pos_embed: Any = None,
    past_kv_cache_entry: Any = None,
    attention_mask: Any = None,
) -> Float[Tensor, "batch pos d_model"]:
    extra = (shortformer_pos_embed, past_kv_cache_entry, attention_mask)
    if not _block_fast_ok(self, extra):
        return self._babel_base.forward(self, resid_pre, *extra)
    # TL's block for the plain pre-LN case, with ln1 computed once; every hook point fires.
    resid_pre = self.hook_resid_pre(resid_pre)
    normalized = self.ln1(resid_pre)
    attn_out = self.attn(query_input=normalized, key_input=normalized, value_input=normalized)
    attn_out = self.hook_attn_out(attn_out)
    resid_mid = self.hook_resid_mid(resid_pre + attn_out)
    mlp_in = resid_mid if not self.cfg.use_hook_mlp_in else self.hook_mlp_in(resid_mid.clone())
    mlp_out = self.apply_mlp(self.ln2(mlp_in))
    return self.hook_resid_post(resid_mid + mlp_out)


def _fast_embed_forward(self: Any, tokens: Any) -> Float[Tensor, "batch pos d_model"]:
    # F.embedding's backward is a dedicated kernel; TL's W_E[tokens] goes through index_put_.
    if getattr(self.cfg, "post_embedding_ln", False) or _global_hooks():
        return self._babel_base.forward(self, tokens)
    return F.embedding(tokens, self.W_E)


def _fast_unembed_forward(
    self: Any, residual: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch pos d_vocab"]:
    # TL copies W_U.T into a contiguous matrix on every call (to mirror HF's bf16 layout);
    # addmm reads W_U [d_model, d_vocab] as it is stored.
    if _global_hooks() or self.W_U.dim() != 2:
        return self._babel_base.forward(self, residual)
    residual = self.hook_in(residual)
    flat = residual.reshape(-1, residual.shape[-1])
    # addmm is on autocast's low-precision list, like TL's F.linear: same output dtype.
    out = torch.addmm(self.b_U, flat, self.W_U)
    return self.hook_out(out.reshape(*residual.shape[:-1], self.W_U.shape[-1]))


def _tl4_fast_attention_forward(
    self: Any,
    hidden_states: Float[Tensor, "batch pos d_model"],
    attention_mask: Any = None,
    position_ids: Any = None,
    pattern_fn: Any = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    # TL 4.x native attention: the bridge passes its hook_pattern as pattern_fn and fires
    # hook_attn_scores after the call with the returned pattern. With neither hooked, the
    # pattern is never looked at, so SDPA computes the output and no pattern is returned.
    from transformer_lens.utilities.activation_functions import softcap_enabled

    scores_hook = self.__dict__.get("_babel_scores_hook")
    ok = (
        attention_mask is None
        and not kwargs
        and scores_hook is not None
        and not _has_hooks(scores_hook)
        and (
            pattern_fn is None
            or (isinstance(pattern_fn, torch.nn.Module) and not _has_hooks(pattern_fn))
        )
        and not softcap_enabled(self.attn_scores_soft_cap)
        and not _global_hooks()
    )
    if not ok:
        return self._babel_base.forward(
            self, hidden_states, attention_mask, position_ids, pattern_fn=pattern_fn, **kwargs
        )
    batch, seq, _ = hidden_states.shape
    q = self.q(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
    k = self.k(hidden_states).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
    v = self.v(hidden_states).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
    if self.rotary is not None:
        q, k = self.rotary.apply_rope(q, k, position_ids=position_ids)
    if self.kv_repeats > 1:
        k = k.repeat_interleave(self.kv_repeats, dim=1)
        v = v.repeat_interleave(self.kv_repeats, dim=1)
    z = F.scaled_dot_product_attention(q, k, v, is_causal=bool(self.causal), scale=1.0 / self.scale)
    return self.o(z.transpose(1, 2).contiguous().view(batch, seq, -1)), None


def _tl4_fast_norm_forward(
    self: Any, hidden_states: Float[Tensor, "batch pos d"], **kwargs: Any
) -> Float[Tensor, "batch pos d"]:
    # TL 4.x's bridge computes LayerNorm elementwise so hook_scale / hook_normalized can fire.
    comp = self.original_component
    if (
        kwargs
        or type(comp) is not torch.nn.LayerNorm
        or not comp.elementwise_affine
        or self.uses_rms_norm
        or self.uses_weight_offset
        or self.use_native_layernorm_autograd
        or getattr(self.config, "layer_norm_folding", False)
        or hidden_states.dtype not in (torch.float32, torch.float64)
        or _has_hooks(self.hook_scale)
        or _has_hooks(self.hook_normalized)
        or _global_hooks()
    ):
        return self._babel_base.forward(self, hidden_states, **kwargs)
    x = self.hook_in(hidden_states)
    return self.hook_out(F.layer_norm(x, comp.normalized_shape, self.weight, comp.bias, comp.eps))


def _enable_fast_path_tl4(model: HookedModel) -> int:
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
    from transformer_lens.model_bridge.generalized_components.normalization import (
        NormalizationBridge,
    )
    from transformer_lens.model_bridge.sources.native.model import NativeAttention

    n = 0
    for module in list(model.modules()):  # type: ignore[attr-defined]
        if getattr(module, "_babel_fast_path", False):
            continue
        if type(module) is AttentionBridge and type(module.original_component) is NativeAttention:
            native = module.original_component
            # A plain attribute (not a submodule): the bridge's scores hook point, to check.
            object.__setattr__(native, "_babel_scores_hook", module.hook_attn_scores)
            native.__class__ = _fast_class(NativeAttention, _tl4_fast_attention_forward)
            n += 1
        elif type(module) is NormalizationBridge:
            module.__class__ = _fast_class(NormalizationBridge, _tl4_fast_norm_forward)
            n += 1
    return n


_FAST_CLASSES: dict[type, type] = {}


def _fast_class(base: type, forward: Any) -> type:
    cls = _FAST_CLASSES.get(base)
    if cls is None:
        cls = type(
            base.__name__,
            (base,),
            {
                "forward": forward,
                "_babel_base": base,
                "_babel_fast_path": True,
                "__module__": __name__,
            },
        )
        _FAST_CLASSES[base] = cls
    return cls


def enable_fast_path(model: HookedModel) -> int:
    """Switch a TL 3.x ``HookedTransformer`` to fused kernels where no hook needs TL's own ops.

    Attention uses ``scaled_dot_product_attention``, norms ``F.layer_norm``/``F.rms_norm``,
    blocks normalize once for Q/K/V, the embedding uses ``F.embedding`` and the unembedding
    reads ``W_U`` in place. The modules keep their class hierarchy (each becomes a subclass of
    its own class), weights, hook points and results; per call, a fused kernel runs only when
    the hook points it skips (``attn.hook_attn_scores``/``hook_pattern``, the norms'
    ``hook_scale``/``hook_normalized``) have no hook, and every other hook point fires as in
    TL. On TL 4.x the native bridge's attention (SDPA when ``hook_pattern`` and
    ``hook_attn_scores`` are free) and LayerNorm bridges are switched. Returns the number of
    modules switched.
    """
    if tl_major_version() >= 4:
        return _enable_fast_path_tl4(model)
    from transformer_lens.components import (
        Attention,
        Embed,
        LayerNorm,
        RMSNorm,
        TransformerBlock,
        Unembed,
    )

    plan = {
        Attention: _fast_attention_forward,
        LayerNorm: _fast_layer_norm_forward,
        RMSNorm: _fast_rms_norm_forward,
        TransformerBlock: _fast_block_forward,
        Embed: _fast_embed_forward,
        Unembed: _fast_unembed_forward,
    }
    n = 0
    for module in model.modules():  # type: ignore[attr-defined]
        if getattr(module, "_babel_fast_path", False):
            continue
        forward = plan.get(type(module))  # exact type: subclasses may change the math
        if forward is not None:
            module.__class__ = _fast_class(type(module), forward)
            n += 1
    return n


def fast_path_active(model: HookedModel) -> bool:
    """Whether :func:`enable_fast_path` switched any module of ``model``."""
    return any(getattr(m, "_babel_fast_path", False) for m in model.modules())  # type: ignore[attr-defined]
