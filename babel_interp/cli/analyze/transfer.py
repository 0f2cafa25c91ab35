"""``babel-interp analyze transfer``: the knowledge-transfer ratio |P ∩ C| / |C| per
checkpoint."""

from __future__ import annotations

import argparse

from babel_interp.analysis.performance import CompletionItem, load_completion_items
from babel_interp.analysis.stages.transfer import ANALYZER, TABLE, analyze_run
from babel_interp.cli.options import add_decoding_arguments, decoding_kwargs
from babel_interp.runs import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transfer`` to the ``analyze`` group."""
    p = subparsers.add_parser(
        "transfer",
        help="knowledge-transfer ratio |P ∩ C| / |C| per checkpoint",
        description=(
            "P: items needing primary-only knowledge (synthetic: facts planted only in "
            "primary-language documents; or the paper's: solved by a primary-only model in the "
            "primary language and failed by a target-only model in the target language, on "
            "renderings of the same items joined by item_id). C: items a checkpoint solves in "
            "the target language. The interval resamples every item asked, so C varies "
            "between draws. Writes RUN/analysis/transfer/transfer.csv."
        ),
    )
    add_decoding_arguments(p)
    p.set_defaults(max_new_tokens=16)
    p.add_argument("--language", help="target language (default: the run's only one)")
    p.add_argument(
        "--probes",
        help=(
            "JSONL completion items instead of the synthetic facts: each item in the primary "
            "and the target language (fields language and item_id; the same item_id in both)"
        ),
    )
    p.add_argument("--primary-model", help="checkpoint dir of the primary-only model")
    p.add_argument("--target-only-model", help="checkpoint dir of a target-only model")
    p.add_argument("--n-planted", type=int, default=None, help="planted-fact items")
    p.add_argument("--n-shared", type=int, default=None, help="shared-fact (control) items")
    p.add_argument("--solved-by", choices=("identifier", "line"), default="identifier")
    p.set_defaults(handler=run_transfer)


def items_by_language(items: list[CompletionItem], path: str) -> dict[str, list[CompletionItem]]:
    """A probes file's items grouped by their ``language`` field."""
    out: dict[str, list[CompletionItem]] = {}
    for k, it in enumerate(items, start=1):
        if not it.language:
            raise ValueError(
                f"{path}: item {k} has no language: each item needs its language and item_id "
                "(the primary- and target-language renderings are joined by item_id)"
            )
        out.setdefault(it.language, []).append(it)
    return out


def run_transfer(args: argparse.Namespace) -> int:
    """Handler of ``analyze transfer``."""
    items = None
    if args.probes:
        if args.primary_model is None:
            raise ValueError("--probes needs --primary-model and --target-only-model to define P")
        items = items_by_language(load_completion_items(args.probes), args.probes)
    run = Run(args.run)
    df = analyze_run(
        run,
        language=args.language,
        primary=args.primary,
        items=items,
        primary_model=args.primary_model,
        target_only_model=args.target_only_model,
        n_planted=args.n_planted,
        n_shared=args.n_shared,
        by=args.solved_by,
        **decoding_kwargs(args),
    ).to_dataframe()
    print(f"transfer ratio written to {run.analysis_dir(ANALYZER) / TABLE}")
    print(f"P: {df['definition'].iloc[0]} ({int(df['n_p'].iloc[0])} of {df['n_items'].iloc[0]})")
    cols = ["step", "ratio", "ci_low", "ci_high", "n_c", "n_pc", "accuracy_p", "accuracy_not_p"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0
