"""``babel-interp analyze performance``: validation loss, bits per byte and completion accuracy
per checkpoint."""

from __future__ import annotations

import argparse

from babel_interp.analysis.performance import ANALYZER, analyze_run, load_completion_items
from babel_interp.cli.options import add_decoding_arguments, decoding_kwargs
from babel_interp.runs import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``performance`` to the ``analyze`` group."""
    p = subparsers.add_parser(
        "performance",
        help="validation loss, bits per byte and completion accuracy per checkpoint",
        description=(
            "Validation loss and bits per byte per language at each checkpoint (from the "
            "trainer's eval records), and exact-match completion accuracy (next identifier, "
            "rest of the line) on held-out probes: a JSONL file, or held-out synthetic "
            "documents when the run's corpus is synthetic. Tables go to "
            "RUN/analysis/performance/."
        ),
    )
    add_decoding_arguments(p)
    p.add_argument("--languages", nargs="+", help="target languages (default: the run's)")
    p.add_argument("--probes", help="JSONL completion items (prompt, answer, line_answer, ...)")
    p.add_argument("--n-documents", type=int, default=40, help="held-out synthetic documents")
    p.add_argument("--no-completion", action="store_true", help="only the eval-record series")
    p.set_defaults(handler=run_performance)


def run_performance(args: argparse.Namespace) -> int:
    """Handler of ``analyze performance``."""
    items = load_completion_items(args.probes) if args.probes else None
    run = Run(args.run)
    result = analyze_run(
        run,
        items=items,
        languages=args.languages,
        primary=args.primary,
        n_documents=args.n_documents,
        completion=not args.no_completion,
        **decoding_kwargs(args),
    )
    print(f"tables written to {run.analysis_dir(ANALYZER)}/")
    val = result.val_series
    if len(val):
        wide = val.pivot_table(index="step", columns="language", values="val_loss")
        print("validation loss (nats/token):")
        print(wide.to_string(float_format=lambda x: f"{x:.3f}"))
    if result.completion is not None:
        cols = ["step", "language", "n", "identifier_accuracy", "line_accuracy"]
        print(result.completion[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0
