"""Training throughput: the trainer's step against a plain PyTorch GPT of exactly the same shape,
and model FLOPs utilization (MFU).

The reference is written here: token and position embeddings, pre-LN blocks with one fused QKV
projection and ``scaled_dot_product_attention``, GELU MLP, final LayerNorm and an unembedding
with bias (without on TL 4.x, whose bridge keeps that bias fixed), i.e. the trainable
parameters of TransformerLens's GPT-2-style model (asserted). Its step is forward, float32
cross-entropy, backward, gradient clipping and AdamW on an in-memory batch. The trainer's step
(:meth:`babel_interp.training.Trainer.train_step`) is the real one: it draws the batch from
corpus shards by the mixture, runs the hooked model, computes per-language losses, clips and
steps AdamW.

Both run in the same process, interleaved step by step (alternating which goes first) so that
load from other processes hits both alike. Each is summarized by its best step time, the one
least disturbed by other processes (as ``timeit`` advises); the ratio of median step times is
given beside it. The ratio is trainer tokens/s over reference tokens/s.

MFU is achieved model FLOP/s over the device's peak: :func:`train_flops_per_token` counts
``6 x`` the matmul parameters (the unembedding included, the embedding lookup not) plus the
attention's ``12 x layers x seq x n_heads*d_head`` (PaLM's appendix B; the causal mask not
discounted, as nanoGPT and PaLM count), and :data:`PEAK_BF16_FLOPS` holds dense bfloat16 peaks.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from babel_interp.config import ConfigBase, check_choice, check_int
from babel_interp.corpus.shards import ShardWriter, write_manifest
from babel_interp.model import ModelConfig, count_parameters, get_preset, tl_major_version
from babel_interp.planner import ModelShape

# Dense (no structured sparsity) bfloat16 tensor-core peaks, FLOP/s. Sources: NVIDIA H100 Tensor
# Core GPU datasheet (H100 SXM 989.4 TFLOPS, H100 PCIe 756.5 TFLOPS: half the "with sparsity"
# figures of 1,979 and 1,513) and NVIDIA H200 Tensor Core GPU datasheet (H200 SXM 989.4 TFLOPS,
# half of 1,979); NVIDIA A100 datasheet (312 TFLOPS). Matched in order on the device's name.
PEAK_BF16_FLOPS: tuple[tuple[str, str, float], ...] = (
    ("H200", "H200 (datasheet, dense bf16)", 989.4e12),
    ("H100 PCIe", "H100 PCIe (datasheet, dense bf16)", 756.5e12),
    ("H100", "H100 SXM (datasheet, dense bf16)", 989.4e12),
    ("A100", "A100 (datasheet, dense bf16)", 312e12),
)


def peak_bf16_flops(device_name: str) -> tuple[float, str] | None:
    """The dense bf16 peak FLOP/s of a GPU from its name, and the entry used; None if unknown."""
    for key, label, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops, label
    return None


def train_flops_per_token(shape: ModelShape, seq_len: int) -> float:
    """Training FLOPs per token (forward and backward) of a GPT-2-style model."""
    matmul = shape.n_layers * shape.block_matrix_params() + shape.d_model * shape.d_vocab
    return 6.0 * matmul + 12.0 * shape.n_layers * seq_len * shape.d_attn


class Block(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        inner = c.n_heads * c.d_head
        self.n_heads, self.d_head = c.n_heads, c.d_head
        self.ln1 = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * inner)
        self.proj = nn.Linear(inner, c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.fc = nn.Linear(c.d_model, c.d_mlp)
        self.out = nn.Linear(c.d_mlp, c.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (
            self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, -1))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    """The reference: a GPT-2-style decoder in plain PyTorch."""

    def __init__(self, c: ModelConfig, head_bias: bool = True) -> None:
        super().__init__()
        self.wte = nn.Embedding(c.d_vocab, c.d_model)
        self.wpe = nn.Embedding(c.n_ctx, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.d_vocab, bias=head_bias)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def random_corpus(directory: Path, vocab: int, n_tokens: int, seed: int = 0) -> Path:
    """A two-language corpus of random token documents (throughput does not read the text)."""
    rng = np.random.default_rng(seed)
    langs = ["python", "php"]
    splits = {}
    for split, n in (("train", n_tokens), ("val", max(4096, n_tokens // 50))):
        w = ShardWriter(directory, split, langs, vocab, eos_id=0)
        for lang in langs:
            left = n // 2
            while left > 0:
                k = int(min(left, rng.integers(200, 2000)))
                w.add(lang, rng.integers(1, vocab, size=k), n_bytes=3 * k)
                left -= k + 1
        splits[split] = w.close()
    write_manifest(directory, langs, splits, {"vocab_size": vocab, "eos_id": 0, "hash": "random"})
    return directory


@dataclass
class ThroughputConfig(ConfigBase):
    """One throughput measurement: a preset's shape (context stretched to ``seq_len``), the
    batch, device and precision (``fp32`` or ``bf16`` autocast) of both models, and the number
    of measured steps after ``warmup`` steps (which absorb ``torch.compile``)."""

    preset: str = "tiny"
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    batch_size: int = 16
    micro_batch_size: int | None = None
    seq_len: int | None = None
    vocab: int = 8192
    steps: int = 16
    warmup: int = 3
    fast_path: bool = True

    def validate(self) -> None:
        check_choice("ThroughputConfig", "dtype", self.dtype, ("fp32", "bf16"))
        for name in ("batch_size", "vocab", "steps"):
            check_int("ThroughputConfig", name, getattr(self, name), 1)
        check_int("ThroughputConfig", "warmup", self.warmup, 0)
        if self.seq_len is not None:
            check_int("ThroughputConfig", "seq_len", self.seq_len, 2)
        get_preset(self.preset)  # names the known presets when unknown


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(cfg: ThroughputConfig, workdir: Path) -> dict[str, Any]:
    """Tokens/s of the trainer and of the plain PyTorch reference, their ratio, and FLOPs.

    ``workdir`` receives the random corpus and the trainer's run directory. MFU is filled in
    where the device's peak is known (:func:`peak_bf16_flops`, bf16 on CUDA only).
    """
    from babel_interp.training import (
        CheckpointConfig,
        LRSchedule,
        OptimConfig,
        TrainConfig,
        Trainer,
    )

    device = torch.device(cfg.device)
    base = get_preset(cfg.preset)
    seq = cfg.seq_len or base.n_ctx
    mcfg = base.replace(d_vocab=cfg.vocab, n_ctx=max(base.n_ctx, seq))
    batch = cfg.batch_size
    tokens_per_step = batch * seq
    workdir = Path(workdir)
    corpus = random_corpus(
        workdir / f"corpus-{cfg.preset}", cfg.vocab, max(200_000, 4 * tokens_per_step)
    )
    amp = {"fp32": "float32", "bf16": "bfloat16"}[cfg.dtype]
    tcfg = TrainConfig(
        corpus=str(corpus),
        out=str(workdir / f"run-{cfg.preset}"),
        model=mcfg,
        steps=10**6,
        batch_size=batch,
        micro_batch_size=cfg.micro_batch_size,
        seq_len=seq,
        device=cfg.device,
        dtype=amp,
        compile=cfg.compile,
        fast_path=cfg.fast_path,
        deterministic=False if cfg.device != "cpu" else None,
        eval_every=0,
        progress=False,
        optim=OptimConfig(schedule=LRSchedule(lr=1e-4, warmup_steps=0, kind="constant")),
        checkpoints=CheckpointConfig(fsync=False),
    )
    trainer = Trainer(tcfg)
    torch.manual_seed(0)
    n_tl = count_parameters(trainer.model)
    # TL 4.x's native bridge keeps the unembedding bias as a fixed buffer, not a parameter.
    ref = PlainGPT(mcfg, head_bias=n_tl == mcfg.n_params()).to(device)
    n_ref = count_parameters(ref)
    if n_ref != n_tl:
        raise RuntimeError(f"shape mismatch: reference has {n_ref} parameters, trainer {n_tl}")
    decay = [p for p in ref.parameters() if p.dim() >= 2]
    no_decay = [p for p in ref.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        foreach=True,
    )
    ref_fwd = torch.compile(ref) if cfg.compile else ref
    micro = cfg.micro_batch_size or batch
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab, (batch, seq + 1), generator=gen).to(device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.dtype == "bf16"
        else torch.autocast(device.type, enabled=False)
    )

    def ref_step() -> None:
        for i in range(0, batch, micro):
            x = data[i : i + micro]
            with autocast:
                logits = ref_fwd(x[:, :-1])
            loss = F.cross_entropy(
                logits.float().reshape(-1, cfg.vocab), x[:, 1:].reshape(-1), reduction="sum"
            ) / (batch * seq)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def trainer_step() -> None:
        trainer.train_step()

    deterministic = tcfg.deterministic if tcfg.deterministic is not None else device.type == "cpu"
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    times: dict[str, list[float]] = {"trainer": [], "reference": []}
    fns = {"trainer": trainer_step, "reference": ref_step}
    try:
        for i in range(cfg.warmup + cfg.steps):
            # Alternate the order each round so neither always runs right after the other.
            order = ("trainer", "reference") if i % 2 == 0 else ("reference", "trainer")
            for name in order:
                _sync(device)
                t0 = time.perf_counter()
                fns[name]()
                _sync(device)
                if i >= cfg.warmup:
                    times[name].append(time.perf_counter() - t0)
    finally:
        torch.use_deterministic_algorithms(False)
        trainer.close()
    # Best step time (as timeit advises: the least disturbed by other processes) and median.
    tps = {k: tokens_per_step / min(v) for k, v in times.items()}
    tps_median = {k: tokens_per_step / statistics.median(v) for k, v in times.items()}
    flops_per_token = train_flops_per_token(ModelShape.of(mcfg), seq)
    peak = None
    if device.type == "cuda" and cfg.dtype == "bf16":
        peak = peak_bf16_flops(torch.cuda.get_device_name(device))
    achieved = {k: v * flops_per_token for k, v in tps.items()}
    return {
        "preset": cfg.preset,
        "params": n_tl,
        "batch": batch,
        "seq_len": seq,
        "vocab": cfg.vocab,
        "device": str(device),
        "dtype": cfg.dtype,
        "compile": cfg.compile,
        "fast_path": cfg.fast_path,
        "threads": torch.get_num_threads(),
        "tl_major": tl_major_version(),
        "trainer_tokens_per_s": tps["trainer"],
        "reference_tokens_per_s": tps["reference"],
        "ratio": tps["trainer"] / tps["reference"],
        "ratio_median": tps_median["trainer"] / tps_median["reference"],
        "trainer_step_s": times["trainer"],
        "reference_step_s": times["reference"],
        "flops_per_token": flops_per_token,
        "trainer_tflops": achieved["trainer"] / 1e12,
        "reference_tflops": achieved["reference"] / 1e12,
        "peak_tflops": peak[0] / 1e12 if peak else None,
        "peak_source": peak[1] if peak else None,
        "trainer_mfu": achieved["trainer"] / peak[0] if peak else None,
        "reference_mfu": achieved["reference"] / peak[0] if peak else None,
    }
