"""``babel-interp export RUN [--step S] --out FILE.safetensors``: one checkpoint as one file.

A thin layer over :func:`babel_interp.export.export_checkpoint`; works for ddp and FSDP runs
(whose sharded checkpoints it consolidates in this process).
"""

from __future__ import annotations

import argparse

from babel_interp.export import export_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export",
        help="write a run's checkpoint as a single safetensors model file",
        description=(
            "Write the weights of a run's checkpoint (the latest, or --step) to one "
            "safetensors file whose header holds the model configuration, with the tokenizer "
            "beside it (FILE.tokenizer/). FSDP runs' sharded checkpoints are consolidated "
            "from their shard files in this process. The checkpoint is verified first."
        ),
    )
    parser.add_argument("run", help="a run directory (or one checkpoint directory)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    out = export_checkpoint(args.run, args.out, step=args.step)
    print(f"exported {out}")
    return 0
