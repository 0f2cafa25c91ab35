"""``babel-interp plan``: per-GPU memory of training a preset, and the largest micro-batch that
fits (a thin layer over :mod:`babel_interp.planner`)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json

from babel_interp.model import PRESETS
from babel_interp.planner import (
    ATTENTIONS,
    PAPER_VOCAB,
    PARALLEL,
    PLAN_DTYPES,
    PlanConfig,
    format_plan,
    parse_bytes,
    plan_memory,
    plan_table,
    shape_of_preset,
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= value <= 0.9:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.9, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="per-GPU memory of training a model preset, and the largest micro-batch that fits",
        description=(
            "Predict one GPU's memory when training a model preset (weights, gradients, AdamW "
            "state, activations per sequence, with ddp or fsdp, with or without activation "
            "checkpointing) and the largest micro-batch that fits; the alternatives (ddp/fsdp, "
            "checkpointing on/off) follow. Arithmetic only: nothing is allocated."
        ),
    )
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model shape")
    parser.add_argument("--gpus", type=_positive, default=1, help="GPUs (ranks), default 1")
    parser.add_argument(
        "--gpu-mem",
        type=_size,
        default=parse_bytes("80GB"),
        help="memory of each GPU: 80GB (10^9 bytes), 141GiB (2^30), ... (default 80GB)",
    )
    parser.add_argument(
        "--seq", type=_positive, default=None, help="tokens per sequence (default: the context)"
    )
    parser.add_argument(
        "--vocab", type=_positive, default=PAPER_VOCAB, help=f"vocabulary (default {PAPER_VOCAB})"
    )
    parser.add_argument(
        "--parallel",
        choices=PARALLEL,
        default=None,
        help="ddp (replicated) or fsdp (sharded); default fsdp on several GPUs, else ddp",
    )
    parser.add_argument("--dtype", choices=PLAN_DTYPES, default="bfloat16")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument(
        "--attention",
        choices=ATTENTIONS,
        default="sdpa",
        help="sdpa: the trainer's fast path (default); eager: TransformerLens's own attention "
        "(--no-fast-path, or a hook on the pattern), which keeps n_heads x seq x seq scores",
    )
    parser.add_argument(
        "--no-accumulation",
        action="store_true",
        help="one micro-batch per optimizer step (gradients not kept between micro-batches)",
    )
    parser.add_argument(
        "--micro-batch", type=_positive, default=None, help="check this micro-batch per GPU"
    )
    parser.add_argument(
        "--headroom",
        type=_fraction,
        default=0.1,
        help="fraction of each GPU left free for the CUDA context and fragmentation (0.1)",
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    shape = shape_of_preset(args.preset, args.vocab)
    if args.seq is not None and args.seq > shape.n_ctx:
        raise ValueError(
            f"--seq {args.seq} exceeds the {args.preset} preset's context of {shape.n_ctx} tokens"
        )
    cfg = PlanConfig(
        model=shape,
        seq_len=args.seq or shape.n_ctx,
        gpus=args.gpus,
        gpu_mem=args.gpu_mem,
        parallel=args.parallel or ("fsdp" if args.gpus > 1 else "ddp"),
        dtype=args.dtype,
        activation_checkpointing=args.activation_checkpointing,
        attention=args.attention,
        grad_accumulation=not args.no_accumulation,
        micro_batch=args.micro_batch,
        headroom=args.headroom,
        tl_major=int(importlib.metadata.version("transformer-lens").split(".")[0]),
    )
    plan = plan_memory(cfg)
    table = plan_table(cfg)
    if args.json:
        out = {"preset": args.preset, **plan.to_dict(), "alternatives": table}
        print(json.dumps(out, indent=2))
    else:
        print(f"preset {args.preset}")
        print(format_plan(plan, table))
    return 0 if plan.fits else 3
