"""``babel-interp analyze hooks``: run your own (or built-in) hooks over a run's checkpoints."""

from __future__ import annotations

import argparse
import json


def register_analyze(subparsers: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--device", default=None)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from babel_interp.analysis.neurons.hook_runner import analyze_run

    kwargs = json.loads(args.hook_args) if args.hook_args else None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValueError("--hook-args must be a JSON object")
    written = analyze_run(
        args.run,
        args.hook,
        checkpoints=args.checkpoints,
        languages=args.languages,
        n_windows=args.windows,
        batch_size=args.batch_size,
        hook_kwargs=kwargs,
        device=args.device,
    )
    n = sum(len(paths) for per_lang in written.values() for paths in per_lang.values())
    print(f"{n} result files for {len(written)} checkpoint(s) under {args.run}/analysis/hooks/")
    return 0
