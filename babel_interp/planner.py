"""How much memory training a model takes on each GPU, and the largest micro-batch that fits.

:func:`plan_memory` predicts the peak memory of one rank of :class:`~babel_interp.training.Trainer`
for a GPT-2-style shape (:class:`ModelShape`, e.g. the ``1.3b`` and ``6.7b`` presets), a number
of GPUs, a sequence length, ``ddp`` or ``fsdp``, a compute dtype and activation checkpointing,
and searches the largest micro-batch under the GPU's memory. Planning is arithmetic: this module
imports no torch (only :func:`shape_of_preset` reads the presets, from ``babel_interp.model``).

What is counted, per rank (``P`` parameters, ``N`` ranks):

* AdamW keeps fp32 weights, fp32 gradients and two fp32 moments: 16 bytes a parameter under
  ``ddp`` (plus DDP's gradient buckets, another 4, when ``N > 1``); ``fsdp`` (FSDP2, each block
  and then the root sharded, as :mod:`babel_interp.training.fsdp` does) divides all of it by
  ``N`` and adds the gathered parameters: in bfloat16, two blocks (the one computing and the
  one prefetched) and the root (embeddings and unembedding, kept gathered through the step).
  With gradient accumulation, the trainer skips the reduce-scatter on all but the last
  micro-step, so each rank holds the full fp32 gradients between micro-steps.
* AdamW's ``foreach`` step allocates one fp32 temporary the size of the (sharded) parameters.
* bfloat16 under ``ddp`` is autocast: each weight matrix is cast to a bfloat16 copy that the
  backward pass keeps.
* Activations are the tensors autograd saves, counted per block from the hooked model's actual
  forward (listed with ``torch.autograd.graph.saved_tensors_hooks`` on both TransformerLens
  lines): the residual stream and norm statistics in fp32, matmul inputs and outputs in the
  compute dtype. ``attention="sdpa"`` is the trainer's default (``fast_path=True``, nothing
  hooked on the attention pattern): ``scaled_dot_product_attention`` keeps Q, K, V, its output
  and a log-sum-exp, never the ``n_heads x seq x seq`` pattern. ``attention="eager"`` is
  TransformerLens's own attention (``fast_path=False``, or a training hook on
  ``hook_pattern``): it keeps the scores and the pattern (in bfloat16, CUDA autocast runs the
  softmax in fp32 and the pattern is cast again for the value product).
* The loss: the trainer keeps the logits until the step ends; the fp32 cross-entropy keeps
  its log-probabilities, and its backward holds two more fp32 ``batch x seq x vocab`` tensors
  at once, which is usually the step's peak.
* Activation checkpointing keeps only each block's input and recomputes one block at a time.

The peak is the larger of the loss's backward (everything saved, the loss tensors) and the
optimizer step (weights, gradients, moments, the temporary). Not counted: the CUDA context,
NCCL buffers and allocator fragmentation, left to ``headroom`` (10% of the GPU by default).
``torch.compile`` usually saves less than eager execution, so the plan is then conservative.
Checked against measured peaks of real training steps on CPU (``tests/test_planner.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from babel_interp.config import ConfigBase, check_choice, check_float, check_int

Parallel = Literal["ddp", "fsdp"]
PlanDType = Literal["bfloat16", "float32"]
Attention = Literal["sdpa", "eager"]
PARALLEL: tuple[str, ...] = get_args(Parallel)
PLAN_DTYPES: tuple[str, ...] = get_args(PlanDType)
ATTENTIONS: tuple[str, ...] = get_args(Attention)
DTYPE_BYTES = {"bfloat16": 2, "float32": 4}
FP32 = 4
INT64 = 8
# The paper's vocabulary (GPT-2's BPE).
PAPER_VOCAB = 50257

_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_bytes(text: str) -> int:
    """Bytes from a size such as ``80GB`` (10^9), ``141GiB`` (2^30), ``512MB`` or ``80`` (GB)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
    if not m:
        raise ValueError(f"memory size {text!r} is not a number with a unit, e.g. 80GB or 141GiB")
    number, unit = float(m.group(1)), (m.group(2) or "GB").upper()
    if unit not in _UNITS:
        raise ValueError(
            f"memory size {text!r}: unknown unit {m.group(2)!r}; use B, KB, MB, GB, TB (powers "
            "of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
        )
    value = int(number * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive")
    return value


def fmt_bytes(n: float) -> str:
    """``n`` bytes in GB (10^9), or MB/KB for small sizes."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


@dataclass
class ModelShape(ConfigBase):
    """The shape of a GPT-2-style decoder, as :class:`babel_interp.model.ModelConfig` (with its
    vocabulary set)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    positional_embedding: str = "standard"
    normalization: str = "LN"

    def validate(self) -> None:
        for f in fields(self):
            if f.type in ("int", int):
                check_int("ModelShape", f.name, getattr(self, f.name), 1)
        check_choice("ModelShape", "normalization", self.normalization, ("LN", "RMS"))

    @classmethod
    def of(cls, cfg: Any) -> ModelShape:
        """The shape of a ``ModelConfig`` (or any object with the same attributes)."""
        if getattr(cfg, "d_vocab", -1) <= 0:
            raise ValueError("the model's d_vocab is unset (-1): give the vocabulary size")
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})

    @property
    def d_attn(self) -> int:
        """Width of the attention's Q, K, V and output (``n_heads * d_head``)."""
        return self.n_heads * self.d_head

    def block_matrix_params(self) -> int:
        """Weights of one block's matrices (Q, K, V, O and the MLP's two)."""
        return 4 * self.d_model * self.d_attn + 2 * self.d_model * self.d_mlp

    def block_params(self) -> int:
        """Parameters of one transformer block (biases and norms included)."""
        biases = 3 * self.d_attn + self.d_model + self.d_mlp + self.d_model
        norms = (4 if self.normalization == "LN" else 2) * self.d_model
        return self.block_matrix_params() + biases + norms

    def root_params(self) -> int:
        """Parameters outside the blocks: embeddings, final norm, unembedding (with bias)."""
        emb = self.d_vocab * self.d_model * 2 + self.d_vocab
        emb += (2 if self.normalization == "LN" else 1) * self.d_model
        if self.positional_embedding == "standard":
            emb += self.n_ctx * self.d_model
        return emb

    def n_params(self) -> int:
        """All parameters (as ``ModelConfig.n_params``)."""
        return self.n_layers * self.block_params() + self.root_params()


def shape_of_preset(name: str, d_vocab: int = PAPER_VOCAB) -> ModelShape:
    """The shape of a model preset (``babel_interp.model.PRESETS``) with vocabulary ``d_vocab``."""
    from babel_interp.model import get_preset  # torch: only to read the preset table

    return ModelShape.of(get_preset(name).with_vocab(d_vocab))


@dataclass
class PlanConfig(ConfigBase):
    """What to plan for. ``gpu_mem`` is each GPU's memory in bytes; ``headroom`` the fraction
    kept free (CUDA context, NCCL buffers, allocator fragmentation). ``micro_batch``: plan
    that many sequences per rank instead of searching the largest that fits.
    ``grad_accumulation``: several micro-batches per optimizer step (gradients then stay
    allocated while the next micro-batch runs). ``tl_major``: the TransformerLens line (3 or
    4), whose hooked models keep slightly different tensors."""

    model: ModelShape
    seq_len: int = 2048
    gpus: int = 1
    gpu_mem: int = 80 * 10**9
    parallel: Parallel = "ddp"
    dtype: PlanDType = "bfloat16"
    activation_checkpointing: bool = False
    attention: Attention = "sdpa"
    grad_accumulation: bool = True
    micro_batch: int | None = None
    headroom: float = 0.1
    tl_major: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelShape.from_dict(self.model)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.model, ModelShape):
            raise ValueError(f"PlanConfig.model must be a ModelShape, got {self.model!r}")
        check_int("PlanConfig", "seq_len", self.seq_len, 1)
        check_int("PlanConfig", "gpus", self.gpus, 1)
        check_int("PlanConfig", "gpu_mem", self.gpu_mem, 1)
        check_choice("PlanConfig", "parallel", self.parallel, PARALLEL)
        check_choice("PlanConfig", "dtype", self.dtype, PLAN_DTYPES)
        check_choice("PlanConfig", "attention", self.attention, ATTENTIONS)
        check_choice("PlanConfig", "tl_major", self.tl_major, (3, 4))
        check_float("PlanConfig", "headroom", self.headroom, 0.0, 0.9)
        for name in ("activation_checkpointing", "grad_accumulation"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PlanConfig.{name} must be True or False")
        if self.micro_batch is not None:
            check_int("PlanConfig", "micro_batch", self.micro_batch, 1)
        if self.seq_len > self.model.n_ctx and self.model.positional_embedding == "standard":
            raise ValueError(
                f"PlanConfig.seq_len {self.seq_len} exceeds the model's context "
                f"({self.model.n_ctx} positions)"
            )

    @property
    def usable(self) -> int:
        """Bytes a rank may fill: the GPU's memory less the headroom."""
        return int(self.gpu_mem * (1.0 - self.headroom))


# ------------------------------------------------------------------------------------------------
# What is resident regardless of the micro-batch
# ------------------------------------------------------------------------------------------------


def static_memory(cfg: PlanConfig) -> dict[str, int]:
    """Per-rank bytes that do not depend on the micro-batch, by component.

    Keys: ``weights``, ``gradients``, ``optimizer``, ``optimizer_temp`` (the ``foreach``
    step's temporary), ``ddp_buckets``, ``gathered_params`` (FSDP: the root and two blocks
    unsharded), ``accumulated_gradients`` (FSDP with gradient accumulation: full fp32
    gradients between micro-steps), ``weight_copies`` (casts and rearranged copies that the
    backward pass keeps).
    """
    m, n = cfg.model, cfg.gpus
    p = m.n_params()
    shard = 1 if cfg.parallel == "ddp" else n
    out = {
        "weights": FP32 * ceil_div(p, shard),
        "gradients": FP32 * ceil_div(p, shard),
        "optimizer": 2 * FP32 * ceil_div(p, shard),
        "optimizer_temp": FP32 * ceil_div(p, shard),
        "ddp_buckets": FP32 * p if cfg.parallel == "ddp" and n > 1 else 0,
        "gathered_params": 0,
        "accumulated_gradients": 0,
        "weight_copies": 0,
    }
    w = DTYPE_BYTES[cfg.dtype]
    if cfg.parallel == "fsdp":
        # FSDP2 keeps the root gathered through the step and prefetches the next block.
        out["gathered_params"] = w * (m.root_params() + 2 * m.block_params())
        if cfg.grad_accumulation:
            out["accumulated_gradients"] = FP32 * p
    if cfg.dtype == "bfloat16" and cfg.parallel == "ddp":
        # Autocast's bf16 copy of every weight matrix (the unembedding too; not the embedding,
        # a lookup), kept by the backward pass.
        out["weight_copies"] = w * (m.n_layers * m.block_matrix_params() + m.d_model * m.d_vocab)
    elif cfg.dtype == "float32" and cfg.tl_major == 3:
        # TL 3's attention rearranges its weights for the matmul: the fast path concatenates
        # W_Q, W_K, W_V; TL's own code copies all four, and W_U too.
        per_block = (3 if cfg.attention == "sdpa" else 4) * m.d_model * m.d_attn
        unembed = m.d_model * m.d_vocab if cfg.attention == "eager" else 0
        out["weight_copies"] = FP32 * (m.n_layers * per_block + unembed)
    return out


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------------------
# What autograd keeps for a micro-batch
# ------------------------------------------------------------------------------------------------


def block_activations(cfg: PlanConfig, batch: int) -> dict[str, int]:
    """Bytes one transformer block keeps for the backward pass, for ``batch`` sequences."""
    m = cfg.model
    w = DTYPE_BYTES[cfg.dtype]
    bf16 = cfg.dtype == "bfloat16"
    tokens = batch * cfg.seq_len
    bsd, bsa, bsf = tokens * m.d_model, tokens * m.d_attn, tokens * m.d_mlp
    pattern = batch * m.n_heads * cfg.seq_len * cfg.seq_len
    out: dict[str, int] = {}
    if cfg.attention == "sdpa":
        # resid_pre and resid_mid (fp32: the residual adds promote), the two norms' outputs as
        # matmul inputs (TL 4 casts ln1's output once per Q, K and V under autocast).
        out["residual_fp32"] = 2 * FP32 * bsd
        out["norm_outputs"] = (4 if bf16 and cfg.tl_major >= 4 else 2) * w * bsd
        out["attention_qkvo"] = 4 * w * bsa
        out["attention_logsumexp"] = FP32 * batch * m.n_heads * cfg.seq_len
        out["norm_stats"] = 4 * FP32 * tokens
    else:
        # TransformerLens's own code: norms computed elementwise (and ln1 three times on TL 3),
        # the scores and the pattern materialized.
        fp32_copies = {(3, False): 12, (3, True): 8, (4, False): 6, (4, True): 4}
        out["residual_fp32"] = fp32_copies[(min(cfg.tl_major, 4), bf16)] * FP32 * bsd
        out["norm_outputs"] = 4 * w * bsd if bf16 else 0
        out["attention_qkvo"] = 4 * w * bsa
        # fp32: scores and pattern; bf16: the fp32 softmax output and its bf16 cast.
        out["attention_pattern"] = (FP32 + w if bf16 else 2 * FP32) * pattern
        if cfg.tl_major == 3:
            out["attention_pattern"] += pattern  # the NaN scrub's bool mask
        out["norm_stats"] = (4 if cfg.tl_major == 3 else 2) * FP32 * tokens
    out["mlp"] = 2 * w * bsf
    return out


def head_activations(cfg: PlanConfig, batch: int) -> dict[str, int]:
    """Bytes outside the blocks at the loss's backward: token ids, the final norm, the
    logits the trainer holds, the log-probabilities and the two fp32 gradients of the
    cross-entropy's backward."""
    m = cfg.model
    w = DTYPE_BYTES[cfg.dtype]
    tokens = batch * cfg.seq_len
    vocab = tokens * m.d_vocab
    final_norm = (2 if cfg.attention == "eager" else 1) * FP32 * tokens * m.d_model
    return {
        "token_ids": 2 * INT64 * tokens,
        "final_norm": final_norm + w * tokens * m.d_model + 2 * FP32 * tokens,
        "logits": w * vocab,
        "log_probs": FP32 * vocab,
        "loss_backward": 2 * FP32 * vocab,
    }


def block_backward_transient(cfg: PlanConfig, batch: int) -> int:
    """Gradients alive at once inside one block's backward (residual and MLP gradients)."""
    m = cfg.model
    tokens = batch * cfg.seq_len
    return 2 * FP32 * tokens * m.d_model + 2 * DTYPE_BYTES[cfg.dtype] * tokens * m.d_mlp


def phase_peaks(cfg: PlanConfig, batch: int) -> dict[str, int]:
    """Per-rank bytes at the moments that can be a step's peak, for ``batch`` sequences.

    ``loss_backward``: every activation kept, the loss tensors; ``block_recompute`` (with
    activation checkpointing): each block's input, then one block recomputed; ``optimizer``:
    the AdamW step, with the full (sharded) gradients and the logits still held.
    """
    s = static_memory(cfg)
    blocks = sum(block_activations(cfg, batch).values())
    head = head_activations(cfg, batch)
    m = cfg.model
    base = s["weights"] + s["optimizer"] + s["ddp_buckets"] + s["gathered_params"]
    # Before the backward pass, gradients exist only as left by earlier micro-steps.
    if cfg.grad_accumulation:
        base += s["accumulated_gradients"] if cfg.parallel == "fsdp" else s["gradients"]
    block_inputs = m.n_layers * FP32 * batch * cfg.seq_len * m.d_model
    kept = block_inputs if cfg.activation_checkpointing else m.n_layers * blocks
    out = {"loss_backward": base + s["weight_copies"] + kept + sum(head.values())}
    if cfg.activation_checkpointing:
        out["block_recompute"] = (
            base
            + s["weight_copies"]
            + block_inputs
            + head["logits"]
            + blocks
            + block_backward_transient(cfg, batch)
        )
    else:
        out["block_backward"] = (
            base
            + s["weight_copies"]
            + m.n_layers * blocks
            + head["logits"]
            + block_backward_transient(cfg, batch)
        )
    out["optimizer"] = (
        s["weights"]
        + s["gradients"]
        + s["optimizer"]
        + s["optimizer_temp"]
        + s["ddp_buckets"]
        + head["logits"]
    )
    return out


def peak_memory(cfg: PlanConfig, batch: int) -> tuple[int, str]:
    """The predicted peak bytes of one rank for ``batch`` sequences, and the phase it is in."""
    peaks = phase_peaks(cfg, batch)
    phase = max(peaks, key=peaks.__getitem__)
    return peaks[phase], phase


# ------------------------------------------------------------------------------------------------
# The plan
# ------------------------------------------------------------------------------------------------


@dataclass
class MemoryPlan:
    """A rank's memory for :class:`PlanConfig`: the components, the activations per sequence,
    the largest micro-batch that fits (0: none) and the peak at the planned micro-batch."""

    config: PlanConfig
    params: int
    static: dict[str, int]
    activations_per_sequence: int
    activations_per_sequence_checkpointed: int
    micro_batch: int
    peak: int
    peak_phase: str
    phases: dict[str, int]
    fits: bool
    message: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every number in bytes, and the config."""
        return {
            "config": self.config.to_dict(),
            "params": self.params,
            "usable_bytes": self.config.usable,
            "static_bytes": dict(self.static),
            "activations_per_sequence_bytes": self.activations_per_sequence,
            "activations_per_sequence_checkpointed_bytes": (
                self.activations_per_sequence_checkpointed
            ),
            "micro_batch": self.micro_batch,
            "peak_bytes": self.peak,
            "peak_phase": self.peak_phase,
            "phase_bytes": dict(self.phases),
            "fits": self.fits,
            "message": self.message,
            "notes": list(self.notes),
        }


def activations_per_sequence(cfg: PlanConfig) -> int:
    """Bytes one more sequence adds at the loss's backward (the activations kept, the loss's
    tensors), for ``cfg.activation_checkpointing`` as set."""
    one = phase_peaks(cfg, 1)["loss_backward"]
    return phase_peaks(cfg, 2)["loss_backward"] - one


def largest_micro_batch(cfg: PlanConfig, limit: int = 1 << 20) -> int:
    """The most sequences per rank whose predicted peak fits ``cfg.usable`` (0: not even one)."""
    if peak_memory(cfg, 1)[0] > cfg.usable:
        return 0
    lo, hi = 1, 2
    while hi <= limit and peak_memory(cfg, hi)[0] <= cfg.usable:
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:  # the peak grows with the batch: bisect
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if peak_memory(cfg, mid)[0] <= cfg.usable else (lo, mid)
    return lo


def plan_memory(cfg: PlanConfig) -> MemoryPlan:
    """Plan one rank's memory: components, activations, the largest micro-batch that fits."""
    static = static_memory(cfg)
    per_seq = activations_per_sequence(cfg.replace(activation_checkpointing=False))
    per_seq_ckpt = activations_per_sequence(cfg.replace(activation_checkpointing=True))
    best = largest_micro_batch(cfg)
    batch = cfg.micro_batch if cfg.micro_batch is not None else max(best, 1)
    peak, phase = peak_memory(cfg, batch)
    phases = phase_peaks(cfg, batch)
    usable = cfg.usable
    fits = peak <= usable
    if cfg.micro_batch is not None:
        verdict = "fits" if fits else "does not fit"
        message = (
            f"micro-batch {batch} {verdict}: peak {fmt_bytes(peak)} of {fmt_bytes(usable)} "
            f"usable per GPU (largest that fits: {best})"
        )
    elif best > 0:
        message = (
            f"largest micro-batch: {best} sequence{'s' if best > 1 else ''} of {cfg.seq_len} "
            f"tokens per GPU (peak {fmt_bytes(peak)} of {fmt_bytes(usable)} usable)"
        )
    else:
        message = _nothing_fits(cfg, static, peak)
    return MemoryPlan(
        config=cfg,
        params=cfg.model.n_params(),
        static=static,
        activations_per_sequence=per_seq,
        activations_per_sequence_checkpointed=per_seq_ckpt,
        micro_batch=batch if (best > 0 or cfg.micro_batch is not None) else 0,
        peak=peak,
        peak_phase=phase,
        phases=phases,
        fits=fits,
        message=message,
        notes=_notes(cfg, static),
    )


def _nothing_fits(cfg: PlanConfig, static: dict[str, int], peak: int) -> str:
    usable = cfg.usable
    fixed = static["weights"] + static["gradients"] + static["optimizer"]
    fixed += static["ddp_buckets"] + static["gathered_params"] + static["accumulated_gradients"]
    head = f"nothing fits: one sequence needs {fmt_bytes(peak)} per GPU, {fmt_bytes(usable)} usable"
    if fixed > usable:
        why = f"weights, gradients and optimizer state alone take {fmt_bytes(fixed)}"
    else:
        why = f"the activations of one {cfg.seq_len}-token sequence do not fit beside them"
    tries = []
    if cfg.parallel == "ddp":
        tries.append("--parallel fsdp" + (" (shards them over the GPUs)" if cfg.gpus > 1 else ""))
    if cfg.parallel == "fsdp" and cfg.grad_accumulation:
        tries.append("no gradient accumulation (--no-accumulation: gradients stay sharded)")
    tries.append("more GPUs")
    if fixed <= usable:
        # Only the activations are in the way: shrink them.
        if not cfg.activation_checkpointing:
            tries.append("--activation-checkpointing")
        tries.append("a shorter --seq")
    return f"{head}; {why}. Try {', '.join(tries)}."


def _notes(cfg: PlanConfig, static: dict[str, int]) -> list[str]:
    notes = [
        "attention: "
        + (
            "scaled_dot_product_attention (the trainer's fast path): no n_heads x seq x seq "
            "pattern is kept"
            if cfg.attention == "sdpa"
            else "TransformerLens's own (fast_path off or a hook on the pattern): scores and "
            "pattern kept"
        ),
        f"headroom: {cfg.headroom:.0%} of each GPU left for the CUDA context, NCCL and "
        "fragmentation",
    ]
    if static["accumulated_gradients"]:
        notes.append(
            "gradient accumulation under fsdp holds full fp32 gradients between micro-steps "
            f"({fmt_bytes(static['accumulated_gradients'])}); without accumulation they stay "
            "sharded"
        )
    return notes


def plan_table(cfg: PlanConfig) -> list[dict[str, Any]]:
    """The largest micro-batch for each of ``ddp``/``fsdp`` with and without activation
    checkpointing, the rest of ``cfg`` unchanged (the alternatives a plan is read against)."""
    rows = []
    for parallel in PARALLEL:
        for ckpt in (False, True):
            alt = cfg.replace(parallel=parallel, activation_checkpointing=ckpt, micro_batch=None)
            best = largest_micro_batch(alt)
            peak, _ = peak_memory(alt, max(best, 1))
            rows.append(
                {
                    "parallel": parallel,
                    "activation_checkpointing": ckpt,
                    "micro_batch": best,
                    "peak_bytes": peak,
                    "tokens_per_step": best * cfg.seq_len * cfg.gpus,
                }
            )
    return rows


_STATIC_LABELS = {
    "weights": "weights (fp32{shard})",
    "gradients": "gradients (fp32{shard})",
    "optimizer": "AdamW moments (2 x fp32{shard})",
    "optimizer_temp": "AdamW step temporary (fp32{shard})",
    "ddp_buckets": "DDP gradient buckets (fp32)",
    "gathered_params": "gathered parameters ({dtype}: root + 2 blocks)",
    "accumulated_gradients": "accumulated gradients (fp32, unsharded)",
    "weight_copies": "weight copies kept for backward",
}


def format_plan(plan: MemoryPlan, table: list[dict[str, Any]] | None = None) -> str:
    """The plan as text: the setting, the components, the activations, the verdict."""
    cfg, m = plan.config, plan.config.model
    shard = f", 1/{cfg.gpus} each" if cfg.parallel == "fsdp" and cfg.gpus > 1 else ""
    lines = [
        f"model: {m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads of {m.d_head}, "
        f"d_mlp {m.d_mlp}, vocabulary {m.d_vocab:,}: {plan.params / 1e9:.2f}B parameters",
        f"setting: {cfg.gpus} GPU{'s' if cfg.gpus > 1 else ''} of {fmt_bytes(cfg.gpu_mem)}, "
        f"{cfg.parallel}, {cfg.dtype}, sequence {cfg.seq_len:,}, {cfg.attention} attention, "
        f"activation checkpointing {'on' if cfg.activation_checkpointing else 'off'}, "
        f"gradient accumulation {'on' if cfg.grad_accumulation else 'off'}",
        "",
        "per GPU:",
    ]
    for key, label in _STATIC_LABELS.items():
        value = plan.static[key]
        if value:
            text = label.format(shard=shard, dtype=cfg.dtype)
            lines.append(f"  {text:<50}{fmt_bytes(value):>12}")
    lines.append(
        f"  {'activations per sequence':<50}{fmt_bytes(plan.activations_per_sequence):>12}"
    )
    lines.append(
        f"  {'  with activation checkpointing':<50}"
        f"{fmt_bytes(plan.activations_per_sequence_checkpointed):>12}"
    )
    lines.append(
        f"  {'peak at micro-batch ' + str(max(plan.micro_batch, 1)):<50}"
        f"{fmt_bytes(plan.peak):>12}  ({plan.peak_phase.replace('_', ' ')})"
    )
    lines.append(f"  {'usable (GPU less headroom)':<50}{fmt_bytes(cfg.usable):>12}")
    lines += ["", plan.message]
    if table:
        lines += ["", "alternatives (largest micro-batch per GPU):"]
        lines.append(f"  {'parallel':<10}{'checkpointing':<15}{'micro-batch':>12}{'peak':>12}")
        for row in table:
            lines.append(
                f"  {row['parallel']:<10}{'on' if row['activation_checkpointing'] else 'off':<15}"
                f"{row['micro_batch'] or 'none':>12}{fmt_bytes(row['peak_bytes']):>12}"
            )
    lines += ["", *[f"note: {n}" for n in plan.notes]]
    return "\n".join(lines)
