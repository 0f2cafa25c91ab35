"""``babel-interp analyze ...``: the analyzers' command group.

Each ``babel_interp/cli/analyze_*.py`` module defines ``register_analyze(subparsers)`` and adds
one analyzer (``working-language``, ``neurons``, ``stages``, ...), so analyzers stay independent.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import babel_interp.cli as cli_pkg


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` group and every analyzer subcommand found beside this module."""
    parser = subparsers.add_parser("analyze", help="run an analyzer over a run's checkpoints")
    sub = parser.add_subparsers(dest="analyzer", metavar="ANALYZER")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("analyze_"):
            continue
        module = importlib.import_module(f"{cli_pkg.__name__}.{info.name}")
        register_analyze = getattr(module, "register_analyze", None)
        if register_analyze is not None:
            register_analyze(sub)


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
