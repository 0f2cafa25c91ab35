"""Options shared by several commands: checkpoint steps and greedy-decoding settings."""

from __future__ import annotations

import argparse
from typing import Any


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    """The options of analyzers that greedy-decode probes at every checkpoint of a run
    (``performance``, ``transfer``)."""
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument("--primary", default="python", help="primary language (default: python)")
    p.add_argument(
        "--checkpoints",
        nargs="+",
        metavar="STEP",
        help="steps to evaluate (space- or comma-separated; default: all)",
    )
    p.add_argument("--max-new-tokens", type=int, default=32, help="greedy decoding budget")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", default="auto", help="torch device (default: auto, CUDA when available)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def decoding_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the analyzers' ``analyze_run`` that the options of
    :func:`add_decoding_arguments` set (``--run`` and ``--primary`` aside)."""
    return dict(
        steps=parse_steps(args.checkpoints),
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        n_boot=args.n_boot,
        seed=args.seed,
        progress=not args.quiet,
    )


def parse_steps(values: list[str] | None) -> list[int] | None:
    """Checkpoint steps from ``--checkpoints 10 20`` or ``--checkpoints 10,20`` (None: all)."""
    if not values:
        return None
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise ValueError(f"--checkpoints takes step numbers, got {part!r}") from None
    return out
