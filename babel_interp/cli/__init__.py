"""The ``babel-interp`` command line: a thin layer over the Python API.

Each module of this package that defines ``register(subparsers)`` adds one command group
(``corpus``, ``train``, ``analyze``, ...); the module's handlers call the library's functions.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from babel_interp import __version__


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command group found in this package."""
    parser = argparse.ArgumentParser(
        prog="babel-interp",
        description="Study how code language models learn new programming languages.",
    )
    parser.add_argument("--version", action="version", version=f"babel-interp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue  # __main__ runs the CLI on import
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
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
