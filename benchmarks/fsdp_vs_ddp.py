"""Training time per token with FSDP (``--parallel fsdp``) against DDP, the reference, at 2 ranks.

Both are the trainer's real step (:meth:`babel_interp.training.Trainer.train_step`: the batch
drawn from corpus shards, the hooked model, per-language losses, gradient clipping, AdamW),
on the same shape, batch and data. The script starts itself under ``torchrun`` (gloo on CPU,
nccl on GPU); each worker builds both trainers in one process group and runs their steps
interleaved (alternating which goes first), so load from other processes hits both alike.
Each is summarized by its best step (the least disturbed, as ``timeit`` advises) and its
median; the ratio FSDP/DDP of time per token is printed for both (the goal: within 1.2x).

    python benchmarks/fsdp_vs_ddp.py                          # CPU, 2 ranks, the small preset
    python benchmarks/fsdp_vs_ddp.py --steps 8 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import random_corpus  # noqa: E402  (the benchmarks' shared corpus)

from babel_interp.model import get_preset  # noqa: E402
from babel_interp.training import (  # noqa: E402
    CheckpointConfig,
    LRSchedule,
    OptimConfig,
    TrainConfig,
    Trainer,
)

KINDS = ("ddp", "fsdp")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> None:
    """One rank: both trainers, steps interleaved; rank 0 prints the step times as JSON."""
    cfg = replace(get_preset(args.preset), d_vocab=args.vocab)
    trainers = {}
    for kind in KINDS:
        trainers[kind] = Trainer(
            TrainConfig(
                corpus=args.corpus,
                out=str(Path(args.workdir) / f"run-{kind}"),
                model=cfg,
                steps=10**6,
                batch_size=args.batch_size,
                seq_len=args.seq_len,
                device=args.device,
                eval_every=0,
                progress=False,
                parallel=kind,
                optim=OptimConfig(schedule=LRSchedule(lr=1e-4, warmup_steps=0, kind="constant")),
                checkpoints=CheckpointConfig(fsync=False),
            )
        )
    device = trainers["ddp"].device
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for i in range(args.warmup + args.steps):
        order = KINDS if i % 2 == 0 else KINDS[::-1]
        for kind in order:
            _sync(device)
            t0 = time.perf_counter()
            trainers[kind].train_step()
            _sync(device)
            if i >= args.warmup:
                times[kind].append(time.perf_counter() - t0)
    if trainers["ddp"].dist.is_main:
        print(
            "RESULT " + json.dumps({"times": times, "world_size": trainers["ddp"].dist.world_size})
        )
    trainers["ddp"].close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--nproc", type=int, default=2, help="ranks (processes)")
    p.add_argument("--steps", type=int, default=3, help="timed steps of each")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each first")
    p.add_argument("--batch-size", type=int, default=8, help="global sequences per step")
    p.add_argument("--seq-len", type=int, default=256, help="the small preset's context")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="fsdp-bench-") as tmp:
        tokens = max(200_000, 8 * args.batch_size * args.seq_len * (args.steps + args.warmup))
        corpus = random_corpus(Path(tmp) / "corpus", args.vocab, tokens)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc_per_node", str(args.nproc), __file__, "--worker"]
        cmd += ["--corpus", str(corpus), "--workdir", tmp, "--preset", args.preset]
        cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        cmd += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)]
        cmd += ["--vocab", str(args.vocab), "--device", args.device]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(proc.stderr[-4000:], file=sys.stderr)
            return 1
    res = json.loads(lines[-1][len("RESULT ") :])
    tokens_per_step = args.batch_size * args.seq_len
    print(
        f"preset {args.preset}, {res['world_size']} ranks on {args.device}, "
        f"{tokens_per_step} tokens per step, {args.steps} timed steps each"
    )
    per_token = {}
    for kind in KINDS:
        t = res["times"][kind]
        per_token[kind] = (min(t) / tokens_per_step, statistics.median(t) / tokens_per_step)
        best, med = per_token[kind]
        print(f"{kind:5s} best {best * 1e6:9.1f} us/token   median {med * 1e6:9.1f} us/token")
    best = per_token["fsdp"][0] / per_token["ddp"][0]
    med = per_token["fsdp"][1] / per_token["ddp"][1]
    print(f"FSDP / DDP time per token: {best:.3f}x (best), {med:.3f}x (median); goal <= 1.2x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
