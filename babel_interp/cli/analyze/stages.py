"""``babel-interp analyze stages``: the stage detector over everything the analyzers measured,
and its figure."""

from __future__ import annotations

import argparse
import json

from babel_interp.analysis.stages.detector import (
    ANALYZER,
    NOISE_METHODS,
    PERFORMANCE_SOURCES,
    SMOOTHING,
    STAGES_CSV,
    STAGES_JSON,
    StageConfig,
    analyze_run,
)
from babel_interp.report.stage_plots import plot_stage_analysis
from babel_interp.runs import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stages`` to the ``analyze`` group."""
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


def run_stages(args: argparse.Namespace) -> int:
    """Handler of ``analyze stages``."""
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
    run = Run(args.run)
    analysis = analyze_run(
        run,
        language=args.language,
        primary=args.primary,
        cfg=cfg,
        performance=args.performance,
        competence_threshold=args.competence_threshold,
        neuron_definition=args.neuron_definition,
    )
    out = run.analysis_dir(ANALYZER)
    paths = {"csv": out / STAGES_CSV, "json": out / STAGES_JSON}
    if not args.no_figures:
        paths["figure"] = plot_stage_analysis(analysis, run.figures_dir())
    result = analysis.detection
    print(f"{analysis.language}: {result.verdict}")
    print(f"  {result.reason}")
    for name, step in result.boundaries.items():
        interval = getattr(result, f"{name}_interval")
        print(f"  {name}: step {step} (interval {interval[0]}-{interval[1]})")
    if result.confidence is not None:
        print(f"  boundary stability: {result.confidence:.2f}")
    print("series used:")
    for name, src in analysis.sources.items():
        print(f"  {name}: {src}")
    if analysis.missing:
        print("series missing:")
        for name, why in analysis.missing.items():
            print(f"  {name}: {why}")
    for c in result.corroboration:
        print(f"  corroboration {c['series']} ({c['expected']}): {c['verdict']}")
    for note in result.notes:
        print(f"  note: {note}")
    print("written: " + json.dumps({k: str(v) for k, v in paths.items()}))
    return 0
