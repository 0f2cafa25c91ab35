"""``babel-interp analyze ...``: one subcommand per analyzer, one module per subcommand.

To add an analyzer command: write ``babel_interp/cli/analyze/<name>.py`` with a
``register(subparsers)`` that adds the subcommand and sets its handler, and list it in
:data:`ANALYZERS`.
"""

from __future__ import annotations

import argparse

from babel_interp.cli.analyze import (
    hooks,
    neurons,
    performance,
    stages,
    transfer,
    working_language,
)

# The subcommands in the order ``--help`` lists them: the flow of a study.
ANALYZERS = (working_language, neurons, performance, transfer, stages, hooks)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` group and its analyzer subcommands."""
    parser = subparsers.add_parser("analyze", help="run an analyzer over a run's checkpoints")
    sub = parser.add_subparsers(dest="analyzer", metavar="ANALYZER")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    for module in ANALYZERS:
        module.register(sub)
