"""``babel-interp analyze hooks``: run your own (or built-in) hooks over a run's checkpoints."""

from __future__ import annotations

import argparse
import json

from babel_interp.analysis.neurons.hook_runner import analyze_run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``hooks`` to the ``analyze`` group."""
    parser = subparsers.add_parser(
        "hooks", help="run registered or user hooks (hooks/) at every checkpoint of a run"
    )
    parser.add_argument("--run", required=True, help="training run directory")
    parser.add_argument(
        "--hook",
        action="append",
        required=True,
        help="registry name or module:attr / file.py:attr (repeatable)",
    )
    parser.add_argument("--hook-args", help="JSON object of keyword arguments for the hooks")
    parser.add_argument("--checkpoints", type=int, nargs="+", metavar="STEP")
    parser.add_argument("--languages", nargs="+", help="default: every corpus language")
    parser.add_argument("--windows", type=int, default=8, help="validation windows per language")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--device", default="auto", help="torch device (default: auto, CUDA when available)"
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    kwargs = json.loads(args.hook_args) if args.hook_args else None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValueError("--hook-args must be a JSON object")
    result = analyze_run(
        args.run,
        args.hook,
        checkpoints=args.checkpoints,
        languages=args.languages,
        n_windows=args.windows,
        batch_size=args.batch_size,
        hook_kwargs=kwargs,
        device=args.device,
    )
    n_files, n_steps = len(result.paths()), len(result.files)
    print(f"{n_files} result files for {n_steps} checkpoint(s) under {result.out_dir}/")
    return 0
