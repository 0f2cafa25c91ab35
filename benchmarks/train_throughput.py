"""Training throughput: the trainer's step against a plain PyTorch GPT of exactly the same shape.

The measurement is :func:`babel_interp.bench.throughput.measure_throughput` (also run by
``python -m babel_interp.experiments.gpu_check``); this script is its command line.

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
import sys
import tempfile
from pathlib import Path

import torch

from babel_interp.bench.throughput import (  # random_corpus: fsdp_vs_ddp.py imports it from here
    ThroughputConfig,
    measure_throughput,
    random_corpus,
)

__all__ = ["main", "random_corpus"]


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
            cfg = ThroughputConfig(
                preset=preset,
                device=args.device,
                dtype=args.dtype,
                compile=args.compile,
                batch_size=args.batch_size,
                micro_batch_size=args.micro_batch_size,
                seq_len=args.seq_len,
                vocab=args.vocab,
                steps=args.steps,
                warmup=args.warmup,
                fast_path=not args.no_fast_path,
            )
            r = measure_throughput(cfg, Path(tmp) / preset)
            results.append(r)
            mfu = f", MFU {r['trainer_mfu']:.3f}" if r["trainer_mfu"] is not None else ""
            print(
                f"{preset:>10} ({r['params'] / 1e6:.1f}M params, {r['batch']}x{r['seq_len']}, "
                f"{r['device']} {r['dtype']}{' compiled' if r['compile'] else ''}"
                f"{'' if r['fast_path'] else ', no fast path'}, "
                f"TL {r['tl_major']}.x): trainer {r['trainer_tokens_per_s']:,.0f} tok/s, "
                f"reference {r['reference_tokens_per_s']:,.0f} tok/s, "
                f"ratio {r['ratio']:.3f} (of medians {r['ratio_median']:.3f}){mfu}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    worst = min(r["ratio"] for r in results)
    print(f"min ratio {worst:.3f}")
    return 0 if math.isfinite(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
