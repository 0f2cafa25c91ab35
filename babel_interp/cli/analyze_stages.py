"""``babel-interp analyze performance | transfer | stages``: performance per checkpoint, the
knowledge-transfer ratio, and the stage detector over everything the analyzers measured."""

from __future__ import annotations

import argparse
import json

from babel_interp.analysis.stages.detector import NOISE_METHODS, PERFORMANCE_SOURCES, SMOOTHING
from babel_interp.cli.analyze import parse_steps


def _common(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--device", default=None, help="torch device (default: CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register_analyze(subparsers: argparse._SubParsersAction) -> None:
    """Add ``performance``, ``transfer`` and ``stages`` to the ``analyze`` group."""
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
    _common(p)
    p.add_argument("--languages", nargs="+", help="target languages (default: the run's)")
    p.add_argument("--probes", help="JSONL completion items (prompt, answer, line_answer, ...)")
    p.add_argument("--n-documents", type=int, default=40, help="held-out synthetic documents")
    p.add_argument("--no-completion", action="store_true", help="only the eval-record series")
    p.set_defaults(handler=run_performance)

    p = subparsers.add_parser(
        "transfer",
        help="knowledge-transfer ratio |P ∩ C| / |C| per checkpoint",
        description=(
            "P: items needing primary-only knowledge (synthetic: facts planted only in "
            "primary-language documents; or the paper's: solved by a primary-only model and "
            "failed by a target-only model). C: items a checkpoint solves in the target "
            "language. Writes RUN/analysis/transfer/transfer.csv."
        ),
    )
    _common(p)
    p.set_defaults(max_new_tokens=16)
    p.add_argument("--language", help="target language (default: the run's only one)")
    p.add_argument("--probes", help="JSONL completion items instead of the synthetic facts")
    p.add_argument("--primary-model", help="checkpoint dir of the primary-only model")
    p.add_argument("--target-only-model", help="checkpoint dir of a target-only model")
    p.add_argument("--n-planted", type=int, default=None, help="planted-fact items")
    p.add_argument("--n-shared", type=int, default=None, help="shared-fact (control) items")
    p.add_argument("--solved-by", choices=("identifier", "line"), default="identifier")
    p.set_defaults(handler=run_transfer)

    p = subparsers.add_parser(
        "stages",
        help="Translation / Transition / Stabilization from the measured series",
        description=(
            "Detect the Babel Tower stages of one target language from its performance series, "
            "with the working-language share, transferring-neuron count and transfer ratio as "
            "corroboration, below-competence checkpoints excluded. Says so when there are no "
            "three stages. Writes RUN/analysis/stages/stages.csv and stages.json, and "
            "RUN/figures/stages_<language>.png."
        ),
    )
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument("--primary", default="python", help="primary language (default: python)")
    p.add_argument("--language", help="target language (default: the run's only one)")
    p.add_argument("--performance", choices=PERFORMANCE_SOURCES, default="auto")
    p.add_argument("--neuron-definition", default="lape_shared", help="neuron set to count")
    p.add_argument(
        "--competence-threshold",
        type=float,
        default=None,
        help="gate (default: the working-language analyzer's threshold)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level")
    p.add_argument("--smoothing", choices=SMOOTHING, default="median")
    p.add_argument("--window", type=int, default=3, help="smoothing window (odd)")
    p.add_argument("--min-segment", type=int, default=2, help="checkpoints per segment")
    p.add_argument("--noise", choices=NOISE_METHODS, default="mad_diff2")
    p.add_argument("--min-dip-sigma", type=float, default=1.0)
    p.add_argument("--n-boot", type=int, default=200, help="boundary bootstrap refits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")
    p.set_defaults(handler=run_stages)


def run_performance(args: argparse.Namespace) -> int:
    """Handler of ``analyze performance``."""
    from babel_interp.analysis.performance import analyze_run, load_completion_items

    items = load_completion_items(args.probes) if args.probes else None
    tables = analyze_run(
        args.run,
        items=items,
        languages=args.languages,
        primary=args.primary,
        n_documents=args.n_documents,
        steps=parse_steps(args.checkpoints),
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        n_boot=args.n_boot,
        seed=args.seed,
        completion=not args.no_completion,
        progress=not args.quiet,
    )
    print(f"tables written to {args.run}/analysis/performance/")
    val = tables["val_series"]
    if len(val):
        wide = val.pivot_table(index="step", columns="language", values="val_loss")
        print("validation loss (nats/token):")
        print(wide.to_string(float_format=lambda x: f"{x:.3f}"))
    if "completion" in tables:
        cols = ["step", "language", "n", "identifier_accuracy", "line_accuracy"]
        print(tables["completion"][cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    """Handler of ``analyze transfer``."""
    from babel_interp.analysis.performance import load_completion_items
    from babel_interp.analysis.stages.transfer import analyze_run

    items = load_completion_items(args.probes) if args.probes else None
    if items is not None and args.primary_model is None:
        raise ValueError("--probes needs --primary-model and --target-only-model to define P")
    df = analyze_run(
        args.run,
        language=args.language,
        primary=args.primary,
        items=items,
        primary_model=args.primary_model,
        target_only_model=args.target_only_model,
        n_planted=args.n_planted,
        n_shared=args.n_shared,
        steps=parse_steps(args.checkpoints),
        by=args.solved_by,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        n_boot=args.n_boot,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"transfer ratio written to {args.run}/analysis/transfer/transfer.csv")
    print(f"P: {df['definition'].iloc[0]} ({int(df['n_p'].iloc[0])} of {df['n_items'].iloc[0]})")
    cols = ["step", "ratio", "ci_low", "ci_high", "n_c", "n_pc", "accuracy_p", "accuracy_not_p"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


def run_stages(args: argparse.Namespace) -> int:
    """Handler of ``analyze stages``."""
    from babel_interp.analysis.stages.detector import StageConfig, analyze_run

    cfg = StageConfig(
        alpha=args.alpha,
        smoothing=args.smoothing,
        smoothing_window=args.window,
        min_segment=args.min_segment,
        noise_method=args.noise,
        min_dip_sigma=args.min_dip_sigma,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    result, rs, paths = analyze_run(
        args.run,
        language=args.language,
        primary=args.primary,
        cfg=cfg,
        performance=args.performance,
        competence_threshold=args.competence_threshold,
        neuron_definition=args.neuron_definition,
        figures=not args.no_figures,
    )
    print(f"{rs.language}: {result.verdict}")
    print(f"  {result.reason}")
    for name, step in result.boundaries.items():
        interval = getattr(result, f"{name}_interval")
        print(f"  {name}: step {step} (interval {interval[0]}-{interval[1]})")
    if result.confidence is not None:
        print(f"  boundary stability: {result.confidence:.2f}")
    print("series used:")
    for name, src in rs.sources.items():
        print(f"  {name}: {src}")
    if rs.missing:
        print("series missing:")
        for name, why in rs.missing.items():
            print(f"  {name}: {why}")
    for c in result.corroboration:
        print(f"  corroboration {c['series']} ({c['expected']}): {c['verdict']}")
    for note in result.notes:
        print(f"  note: {note}")
    print("written: " + json.dumps({k: str(v) for k, v in paths.items()}))
    return 0
