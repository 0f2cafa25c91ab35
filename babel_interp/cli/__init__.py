"""The ``babel-interp`` command line: a thin layer over the Python API.

:data:`COMMANDS` lists one module per command group, in the order of a study (``corpus``,
``plan``, ``train``, ``export``, ``analyze``, ``evaluate``, ``optimize``, ``report``, then
``verify``). Each module's ``register(subparsers)`` adds its commands; their handlers call the
library's functions. Shared flags live in :mod:`babel_interp.cli.options` and, derived from config
dataclasses, in :mod:`babel_interp.cli.args`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from babel_interp import __version__
from babel_interp.cli import (
    analyze,
    corpus,
    evaluate,
    export,
    optimize,
    plan,
    report,
    train,
    verify,
)

# One module per command group, in the order ``--help`` lists them.
COMMANDS = (corpus, plan, train, export, analyze, evaluate, optimize, report, verify)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command group of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="babel-interp",
        description="Study how code language models learn new programming languages.",
    )
    parser.add_argument("--version", action="version", version=f"babel-interp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``babel-interp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input is reported as one clear line, not a traceback.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"babel-interp: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
