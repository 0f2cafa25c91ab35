"""``babel-interp train``: pretrain, continue pretraining, or resume a run.

::

    babel-interp train --corpus DIR --out RUN [--preset NAME] [--mixture SPEC|FILE] [--steps N]
                       [--init-from CKPT] [--resume] [--seed S] [...]

A thin layer over :func:`babel_interp.training.train`. The options are the fields of
:class:`~babel_interp.training.TrainConfig` and its optimizer, learning-rate and checkpoint
configs. With ``--resume`` the run's saved configuration is the base and only options given on
the command line override it, so the same command (or just ``--out RUN --resume``) continues a
run exactly. Data-parallel: ``torchrun --nproc_per_node N -m babel_interp.cli train ...``
(``--parallel fsdp`` shards the model over the ranks; it also runs in one process). A run
stopped by SIGINT/SIGTERM saves a checkpoint and exits with status 128 + the signal number.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import torch

from babel_interp.cli.args import add_config_arguments, config_from_arguments
from babel_interp.io import read_json
from babel_interp.mixture import load_mixture
from babel_interp.model import PRESETS
from babel_interp.runs import Run
from babel_interp.training import (
    CheckpointConfig,
    CheckpointSchedule,
    LRSchedule,
    OptimConfig,
    TrainConfig,
    train,
)

TRAIN_HELP = {
    "corpus": "corpus directory (babel-interp corpus ...)",
    "preset": f"model preset ({', '.join(PRESETS)})",
    "steps": "optimizer steps",
    "schedule_steps": "lay the LR schedule out over this many steps and stop at --steps "
    "(a truncated run)",
    "seed": "seed of initialization and data",
    "init_from": "checkpoint (or run) whose weights start this run",
    "init_optimizer": "also take the optimizer state from --init-from",
    "batch_size": "global sequences per step",
    "micro_batch_size": "sequences per forward (accumulation)",
    "seq_len": "tokens per sequence (default: model n_ctx)",
    "sequence_mode": "language-pure or mixed sequences",
    "eval_every": "steps between evaluations (0: none)",
    "eval_windows": "validation windows per language (0: all)",
    "eval_batch_size": "sequences per evaluation forward",
    "log_every": "steps between train records",
    "device": "auto, cpu, cuda or cuda:N",
    "dtype": "autocast dtype (auto: bfloat16 on CUDA that has it, else float32)",
    "compile": "torch.compile",
    "fast_path": "fused kernels where no hook needs TransformerLens's own ops "
    "(--no-fast-path: TransformerLens's attention even when no hook needs it)",
    "on_nan": "a step whose loss is NaN/inf: stop (weights kept, last checkpoint named) or "
    "skip its update and go on",
    "progress": "progress bar",
    "parallel": "ddp: a full model per rank; fsdp: parameters, gradients and optimizer state "
    "sharded over ranks (FSDP2), sharded checkpoints",
    "activation_checkpointing": "recompute each block's activations in backward (less memory, "
    "same losses)",
}
LR_HELP = {
    "kind": "learning-rate schedule",
    "lr": "peak learning rate",
    "warmup_steps": "warmup steps",
    "min_lr_ratio": "final lr / peak lr",
    "decay_fraction": "wsd: share of steps decaying",
}
# Historic names of the schedule's flags.
LR_FLAGS = {"kind": "--lr-schedule", "warmup_steps": "--warmup"}
OPTIM_HELP = {
    "weight_decay": "AdamW weight decay (matrices only)",
    "beta1": "AdamW beta1",
    "beta2": "AdamW beta2",
    "eps": "AdamW epsilon",
    "grad_clip": "max gradient norm (0: off)",
}
CHECKPOINT_HELP = {
    "resume_every": "extra checkpoints every N steps",
    "keep_last": "keep only the N newest unscheduled checkpoints",
    "keep_scheduled": "keep scheduled checkpoints whatever --keep-last says "
    "(--no-keep-scheduled: let --keep-last prune them too)",
    "fsync": "fsync each checkpoint before it counts as written",
}
# TrainConfig fields with hand-written options: --out and --resume pick the base configuration,
# the others read files or specs, or are repeated.
HAND_WRITTEN = ("out", "resume", "model", "mixture", "deterministic", "hooks")
DETERMINISTIC = {"auto": None, "on": True, "off": False}


def register(subparsers: Any) -> None:
    """Add the ``train`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a model on a corpus (from scratch, continual, or resumed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    added: set[str] = set()

    def train_fields(group: Any, names: tuple[str, ...] | None) -> None:
        exclude = (*HAND_WRITTEN, *added) if names is None else ()
        added.update(
            add_config_arguments(group, TrainConfig, only=names, exclude=exclude, help=TRAIN_HELP)
        )

    g = p.add_argument_group("run")
    train_fields(g, ("corpus",))
    g.add_argument("--out", required=True, help="run directory to create or resume")
    g.add_argument("--config", help="JSON file of TrainConfig fields (options override it)")
    train_fields(g, ("preset",))
    g.add_argument("--model", help="JSON file of ModelConfig fields (overrides --preset)")
    g.add_argument(
        "--mixture",
        help="mixture spec ('python=0.7,php=0.3', '0:python=1;1000:php=1', "
        "'...;budget:php=2M;epochs:php=2') or a JSON file",
    )
    train_fields(g, ("steps", "schedule_steps", "seed", "init_from", "init_optimizer"))
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    g.add_argument(
        "--hook",
        action="append",
        help="hook (registry name or module:attr) to run at checkpoints; repeatable",
    )
    b = p.add_argument_group("batches")
    train_fields(b, ("batch_size", "micro_batch_size", "seq_len", "sequence_mode"))
    o = p.add_argument_group("optimizer")
    add_config_arguments(o, LRSchedule, help=LR_HELP, flags=LR_FLAGS)
    add_config_arguments(o, OptimConfig, help=OPTIM_HELP)
    e = p.add_argument_group("evaluation and checkpoints")
    train_fields(e, ("eval_every", "eval_windows", "eval_batch_size", "log_every"))
    e.add_argument(
        "--checkpoints", help="schedule: log, log:N, every:N or steps:A,B,... (default log)"
    )
    add_config_arguments(e, CheckpointConfig, help=CHECKPOINT_HELP)
    h = p.add_argument_group("hardware")
    train_fields(h, None)  # every remaining field: device, dtype, compile, fast_path, progress
    h.add_argument(
        "--deterministic",
        choices=tuple(DETERMINISTIC),
        help="deterministic kernels (auto: on CPU only; makes resumed losses bit-identical)",
    )
    h.add_argument("--threads", type=int, help="torch CPU threads")
    p.set_defaults(handler=run_train)


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The saved configuration of the run being resumed, else ``--config``, else nothing."""
    if args.resume:
        try:
            return Run(args.out).train_config
        except FileNotFoundError:
            pass  # killed before it saved its configuration: start from the options
    if args.config:
        return read_json(args.config, "--config")
    return {}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~babel_interp.training.TrainConfig` the command line describes."""
    base = _base_config(args)
    base["out"] = args.out
    base["resume"] = bool(args.resume)
    optim = dict(base.get("optim") or {})
    optim["schedule"] = config_from_arguments(LRSchedule, args, optim.get("schedule"))
    base["optim"] = config_from_arguments(OptimConfig, args, optim)
    ckpt = dict(base.get("checkpoints") or {})
    if args.checkpoints is not None:
        ckpt["schedule"] = CheckpointSchedule.parse(args.checkpoints)
    base["checkpoints"] = config_from_arguments(CheckpointConfig, args, ckpt)
    if args.deterministic is not None:
        base["deterministic"] = DETERMINISTIC[args.deterministic]
    if args.mixture is not None:
        base["mixture"] = load_mixture(args.mixture)
    if args.model is not None:
        base["model"] = read_json(args.model, "--model")
    if args.hook:
        base["hooks"] = list(args.hook)
    if not (args.corpus or base.get("corpus")):
        raise ValueError("--corpus is required (except with --resume of an existing run)")
    return config_from_arguments(TrainConfig, args, base)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``babel-interp train``."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    result = train(config)
    summary = {
        "run_dir": str(result.run_dir),
        "step": result.step,
        "stop_reason": result.stop_reason,
        "total_tokens": result.total_tokens,
        "train_loss": result.train_loss,
        "val_loss": (result.eval or {}).get("val_loss"),
    }
    is_main = int(os.environ.get("RANK", "0")) == 0  # torchrun: one summary, from rank 0
    if is_main and (result.eval is not None or result.train_loss is not None):
        print(json.dumps(summary), file=sys.stderr if result.interrupted else sys.stdout)
    if result.interrupted:
        name = result.stop_reason.split(":", 1)[1]
        return 128 + int(getattr(signal, name, signal.SIGTERM))
    return 0
