"""``babel-interp train``: pretrain, continue pretraining, or resume a run.

::

    babel-interp train --corpus DIR --out RUN [--preset NAME] [--mixture SPEC|FILE] [--steps N]
                       [--init-from CKPT] [--resume] [--seed S] [...]

A thin layer over :func:`babel_interp.training.train`. With ``--resume`` the run's saved
configuration is the base and only options given on the command line override it, so the
same command (or just ``--out RUN --resume``) continues a run exactly. Data-parallel:
``torchrun --nproc_per_node N -m babel_interp.cli train ...``. A run stopped by SIGINT/SIGTERM
saves a checkpoint and exits with status 128 + the signal number.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``train`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a model on a corpus (from scratch, continual, or resumed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--corpus", help="corpus directory (babel-interp corpus ...)")
    g.add_argument("--out", required=True, help="run directory to create or resume")
    g.add_argument("--config", help="JSON file of TrainConfig fields (options override it)")
    g.add_argument("--preset", help="model preset (tiny, pilot, small, medium, gpt2-small, 1.3b)")
    g.add_argument("--model", help="JSON file of ModelConfig fields (overrides --preset)")
    g.add_argument(
        "--mixture",
        help="mixture spec ('python=0.7,php=0.3', '0:python=1;1000:php=1', "
        "'...;budget:php=2M;epochs:php=2') or a JSON file",
    )
    g.add_argument("--steps", type=int, help="optimizer steps (default 1000)")
    g.add_argument(
        "--schedule-steps",
        type=int,
        help="lay the LR schedule out over this many steps and stop at --steps (a truncated run)",
    )
    g.add_argument("--seed", type=int, help="seed of initialization and data (default 0)")
    g.add_argument("--init-from", help="checkpoint (or run) whose weights start this run")
    g.add_argument(
        "--init-optimizer",
        action="store_true",
        default=None,
        help="also take the optimizer state from --init-from",
    )
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    g.add_argument(
        "--hook",
        action="append",
        help="hook (registry name or module:attr) to run at checkpoints; repeatable",
    )
    b = p.add_argument_group("batches")
    b.add_argument("--batch-size", type=int, help="global sequences per step (default 16)")
    b.add_argument("--micro-batch-size", type=int, help="sequences per forward (accumulation)")
    b.add_argument("--seq-len", type=int, help="tokens per sequence (default: model n_ctx)")
    b.add_argument("--sequence-mode", choices=("pure", "mixed"), help="language-pure or mixed")
    o = p.add_argument_group("optimizer")
    o.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    o.add_argument("--lr-schedule", choices=("cosine", "constant", "wsd"))
    o.add_argument("--warmup", type=int, help="warmup steps (default 100)")
    o.add_argument("--min-lr-ratio", type=float, help="final lr / peak lr (default 0.1)")
    o.add_argument("--decay-fraction", type=float, help="wsd: share of steps decaying")
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    e = p.add_argument_group("evaluation and checkpoints")
    e.add_argument("--eval-every", type=int, help="steps between evaluations (0: none)")
    e.add_argument("--eval-windows", type=int, help="validation windows per language (0: all)")
    e.add_argument("--eval-batch-size", type=int)
    e.add_argument("--log-every", type=int, help="steps between train records")
    e.add_argument(
        "--checkpoints", help="schedule: log, log:N, every:N or steps:A,B,... (default log)"
    )
    e.add_argument("--resume-every", type=int, help="extra checkpoints every N steps")
    e.add_argument("--keep-last", type=int, help="keep only the N newest unscheduled checkpoints")
    e.add_argument(
        "--no-keep-scheduled",
        dest="keep_scheduled",
        action="store_false",
        default=None,
        help="let --keep-last prune scheduled checkpoints too",
    )
    h = p.add_argument_group("hardware")
    h.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    h.add_argument("--dtype", choices=("auto", "float32", "bfloat16"))
    h.add_argument("--compile", action="store_true", default=None, help="torch.compile")
    h.add_argument(
        "--deterministic",
        choices=("auto", "on", "off"),
        help="deterministic kernels (auto: on CPU only; makes resumed losses bit-identical)",
    )
    h.add_argument(
        "--no-fast-path",
        dest="fast_path",
        action="store_false",
        default=None,
        help="use TransformerLens's attention even when no hook needs it",
    )
    h.add_argument("--threads", type=int, help="torch CPU threads")
    h.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.set_defaults(handler=run_train)


_TOP = {
    "corpus": "corpus",
    "preset": "preset",
    "steps": "steps",
    "schedule_steps": "schedule_steps",
    "seed": "seed",
    "init_from": "init_from",
    "init_optimizer": "init_optimizer",
    "batch_size": "batch_size",
    "micro_batch_size": "micro_batch_size",
    "seq_len": "seq_len",
    "sequence_mode": "sequence_mode",
    "eval_every": "eval_every",
    "eval_windows": "eval_windows",
    "eval_batch_size": "eval_batch_size",
    "log_every": "log_every",
    "device": "device",
    "dtype": "dtype",
    "compile": "compile",
    "fast_path": "fast_path",
    "progress": "progress",
}
_SCHEDULE = {
    "lr": "lr",
    "lr_schedule": "kind",
    "warmup": "warmup_steps",
    "min_lr_ratio": "min_lr_ratio",
    "decay_fraction": "decay_fraction",
}
_OPTIM = {"weight_decay": "weight_decay", "grad_clip": "grad_clip"}


def _read_json(path: str, what: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} file {p} is not valid JSON: {exc}") from None


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~babel_interp.training.TrainConfig` the command line describes."""
    from babel_interp.mixture import load_mixture
    from babel_interp.runs import RUN_CONFIG
    from babel_interp.training import TrainConfig
    from babel_interp.training.schedule import CheckpointSchedule

    base: dict[str, Any] = {}
    saved = Path(args.out) / RUN_CONFIG
    if args.resume and saved.is_file():
        base = dict(json.loads(saved.read_text(encoding="utf-8"))["train"])
    elif args.config:
        base = _read_json(args.config, "--config")
    base = json.loads(json.dumps(base))  # deep copy
    base["out"] = args.out
    base["resume"] = bool(args.resume)
    for arg, key in _TOP.items():
        value = getattr(args, arg)
        if value is not None:
            base[key] = value
    optim = base.setdefault("optim", {})
    sched = optim.setdefault("schedule", {})
    for arg, key in _SCHEDULE.items():
        if getattr(args, arg) is not None:
            sched[key] = getattr(args, arg)
    for arg, key in _OPTIM.items():
        if getattr(args, arg) is not None:
            optim[key] = getattr(args, arg)
    ckpt = base.setdefault("checkpoints", {})
    if args.checkpoints is not None:
        ckpt["schedule"] = CheckpointSchedule.parse(args.checkpoints).to_dict()
    if args.resume_every is not None:
        ckpt["resume_every"] = args.resume_every
    if args.keep_last is not None:
        ckpt["keep_last"] = args.keep_last
    if args.keep_scheduled is not None:
        ckpt["keep_scheduled"] = args.keep_scheduled
    if args.deterministic is not None:
        base["deterministic"] = {"auto": None, "on": True, "off": False}[args.deterministic]
    if args.mixture is not None:
        base["mixture"] = load_mixture(args.mixture).to_dict()
    if args.model is not None:
        base["model"] = _read_json(args.model, "--model")
    if args.hook:
        base["hooks"] = list(args.hook)
    if not base.get("corpus"):
        raise ValueError("--corpus is required (except with --resume of an existing run)")
    return TrainConfig.from_dict(base)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``babel-interp train``."""
    import torch

    from babel_interp.training import train

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
