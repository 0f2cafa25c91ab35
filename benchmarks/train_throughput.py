"""Training throughput: the trainer's step against a plain PyTorch GPT of exactly the same shape.

The reference is written here: token and position embeddings, pre-LN blocks with one fused QKV
projection and ``scaled_dot_product_attention``, GELU MLP, final LayerNorm and an unembedding
with bias (without on TL 4.x, whose bridge keeps that bias fixed), i.e. the trainable
parameters of TransformerLens's GPT-2-style model (asserted). Its step
is forward, float32 cross-entropy, backward, gradient clipping and AdamW on an in-memory batch.
The trainer's step (:meth:`babel_interp.training.Trainer.train_step`) is the real one: it draws
the batch from corpus shards by the mixture, runs the hooked model, computes per-language
losses, clips and steps AdamW.

Both run in the same process, interleaved step by step (alternating which goes first) so that
load from other processes hits both alike. Each is summarized by its best step time, the one
least disturbed by other processes (as ``timeit`` advises); the ratio of median step times is
printed beside it. The ratio is trainer tokens/s over reference tokens/s.

    python benchmarks/train_throughput.py                      # CPU: tiny and small, fp32
    python benchmarks/train_throughput.py --device cuda --dtype bf16 --compile \\
        --preset gpt2-small --batch-size 8                      # GPU: GPT-2-small shape
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from babel_interp.corpus.shards import ShardWriter, write_manifest
from babel_interp.model import ModelConfig, count_parameters, get_preset, tl_major_version
from babel_interp.training import (
    CheckpointConfig,
    LRSchedule,
    OptimConfig,
    TrainConfig,
    Trainer,
)


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, preset: str, workdir: Path) -> dict:
    device = torch.device(args.device)
    base = get_preset(preset)
    seq = args.seq_len or base.n_ctx
    cfg = replace(base, d_vocab=args.vocab, n_ctx=max(base.n_ctx, seq))
    batch = args.batch_size
    tokens_per_step = batch * seq
    corpus = random_corpus(
        workdir / f"corpus-{preset}", args.vocab, max(200_000, 4 * tokens_per_step)
    )
    amp = {"fp32": "float32", "bf16": "bfloat16"}[args.dtype]
    tcfg = TrainConfig(
        corpus=str(corpus),
        out=str(workdir / f"run-{preset}"),
        model=cfg,
        steps=10**6,
        batch_size=batch,
        micro_batch_size=args.micro_batch_size,
        seq_len=seq,
        device=args.device,
        dtype=amp,
        compile=args.compile,
        fast_path=not args.no_fast_path,
        deterministic=False if args.device != "cpu" else None,
        eval_every=0,
        progress=False,
        optim=OptimConfig(schedule=LRSchedule(lr=1e-4, warmup_steps=0, kind="constant")),
        checkpoints=CheckpointConfig(fsync=False),
    )
    trainer = Trainer(tcfg)
    torch.manual_seed(0)
    n_tl = count_parameters(trainer.model)
    # TL 4.x's native bridge keeps the unembedding bias as a fixed buffer, not a parameter.
    ref = PlainGPT(cfg, head_bias=n_tl == cfg.n_params()).to(device)
    n_ref = count_parameters(ref)
    if n_ref != n_tl:
        raise SystemExit(f"shape mismatch: reference has {n_ref} parameters, trainer {n_tl}")
    decay = [p for p in ref.parameters() if p.dim() >= 2]
    no_decay = [p for p in ref.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        foreach=True,
    )
    ref_fwd = torch.compile(ref) if args.compile else ref
    micro = args.micro_batch_size or batch
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, args.vocab, (batch, seq + 1), generator=gen).to(device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.dtype == "bf16"
        else torch.autocast(device.type, enabled=False)
    )

    def ref_step() -> None:
        for i in range(0, batch, micro):
            x = data[i : i + micro]
            with autocast:
                logits = ref_fwd(x[:, :-1])
            loss = F.cross_entropy(
                logits.float().reshape(-1, args.vocab), x[:, 1:].reshape(-1), reduction="sum"
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
    for i in range(args.warmup + args.steps):
        # Alternate the order each round so neither always runs right after the other.
        order = ("trainer", "reference") if i % 2 == 0 else ("reference", "trainer")
        for name in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    torch.use_deterministic_algorithms(False)
    # Best step time (as timeit advises: the least disturbed by other processes) and median.
    tps = {k: tokens_per_step / min(v) for k, v in times.items()}
    tps_median = {k: tokens_per_step / statistics.median(v) for k, v in times.items()}
    return {
        "preset": preset,
        "params": n_tl,
        "batch": batch,
        "seq_len": seq,
        "vocab": args.vocab,
        "device": str(device),
        "dtype": args.dtype,
        "compile": args.compile,
        "fast_path": not args.no_fast_path,
        "threads": torch.get_num_threads(),
        "tl_major": tl_major_version(),
        "trainer_tokens_per_s": tps["trainer"],
        "reference_tokens_per_s": tps["reference"],
        "ratio": tps["trainer"] / tps["reference"],
        "ratio_median": tps_median["trainer"] / tps_median["reference"],
        "trainer_step_s": times["trainer"],
        "reference_step_s": times["reference"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny,small", help="comma-separated model presets")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--micro-batch-size", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=None, help="default: the preset's n_ctx")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--steps", type=int, default=16, help="measured steps per model")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--no-fast-path",
        action="store_true",
        help="train with TransformerLens's own attention/norm code (to measure the fast path)",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="babel-bench-") as tmp:
        for preset in [x.strip() for x in args.preset.split(",") if x.strip()]:
            r = measure(args, preset, Path(tmp))
            results.append(r)
            print(
                f"{preset:>10} ({r['params'] / 1e6:.1f}M params, {r['batch']}x{r['seq_len']}, "
                f"{r['device']} {r['dtype']}{' compiled' if r['compile'] else ''}"
                f"{'' if r['fast_path'] else ', no fast path'}, "
                f"TL {r['tl_major']}.x): trainer {r['trainer_tokens_per_s']:,.0f} tok/s, "
                f"reference {r['reference_tokens_per_s']:,.0f} tok/s, "
                f"ratio {r['ratio']:.3f} (of medians {r['ratio_median']:.3f})",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    worst = min(r["ratio"] for r in results)
    print(f"min ratio {worst:.3f}")
    return 0 if math.isfinite(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
