"""``babel-interp analyze working-language``: the logit-lens working-language probe of a run."""

from __future__ import annotations

import argparse
import json

from babel_interp.analysis.working_language.logit_lens import (
    ANALYZER,
    CI_UNITS,
    COMPETENCE_METRICS,
    LENS_KINDS,
    WorkingLanguageConfig,
    analyze_run,
)
from babel_interp.analysis.working_language.probes import CONTROL_MATCH, load_probes_jsonl
from babel_interp.analysis.working_language.token_sets import dropped_token_counts
from babel_interp.cli.options import parse_steps
from babel_interp.report.working_language_plots import plot_working_language_run
from babel_interp.runs import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``working-language`` to the ``analyze`` group."""
    p = subparsers.add_parser(
        "working-language",
        help="which language the intermediate layers decode to (logit / tuned lens)",
        description=(
            "Decode each layer's residual at probe sites (a target built-in is due) and compare "
            "the probability mass on the primary and target identifiers, against matched and "
            "random-position controls, with a competence gate per checkpoint. Tables go to "
            "RUN/analysis/working_language/, figures to RUN/figures/."
        ),
    )
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument("--primary", default="python", help="primary language (default: python)")
    p.add_argument("--target", required=True, help="new language, e.g. php")
    p.add_argument(
        "--checkpoints",
        nargs="+",
        metavar="STEP",
        help="steps to analyze (space- or comma-separated; default: all)",
    )
    p.add_argument("--lens", choices=LENS_KINDS, default="logit")
    p.add_argument("--probes", help="JSONL probe file to use instead of building probes")
    p.add_argument("--include-mid", action="store_true", help="also decode hook_resid_mid")
    p.add_argument("--n-per-pair", type=int, default=10, help="probes per built-in pair")
    p.add_argument("--min-token-chars", type=int, default=1, help="drop shorter set tokens")
    p.add_argument(
        "--keep-cross-language-tokens",
        action="store_true",
        help="keep one-character tokens and tokens that are identifiers of the other language "
        "(str in PHP's strlen set) in the token sets, as earlier versions did; by default they "
        "are dropped and listed in dropped_tokens.csv",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--vocab-chunk", type=int, default=8192)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument(
        "--ci-unit",
        choices=CI_UNITS,
        default="pair",
        help="what the bootstrap intervals resample: pair (default; built-in pairs, then probes "
        "within each drawn pair, since the prompts of one pair share its token sets) or probe "
        "(probes as if independent: narrower, too narrow when pairs differ)",
    )
    p.add_argument("--competence-metric", choices=COMPETENCE_METRICS, default="top1")
    p.add_argument("--competence-threshold", type=float, default=0.10)
    p.add_argument("--tuned-steps", type=int, default=None, help="tuned-lens training steps")
    p.add_argument(
        "--control-match",
        choices=CONTROL_MATCH,
        default="last_token",
        help="matched controls: the nearest call ending in the probe's last token (default), or "
        "the nearest call in the same document",
    )
    p.add_argument(
        "--random-inits",
        type=int,
        default=0,
        metavar="N",
        help="also score N freshly initialized models of the run's architecture (a baseline: one "
        "random network's excess is not zero, the mean over inits is)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", dest="fmt")
    p.add_argument(
        "--device", default="auto", help="torch device (default: auto, CUDA when available)"
    )
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-resume", action="store_true", help="recompute every checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: build the config, analyze the run, draw its figures, print where results went
    and the gate."""
    tuned = {"steps": args.tuned_steps} if args.tuned_steps is not None else {}
    cfg = WorkingLanguageConfig(
        primary=args.primary,
        target=args.target,
        include_mid=args.include_mid,
        batch_size=args.batch_size,
        vocab_chunk=args.vocab_chunk,
        lens=args.lens,
        min_token_chars=args.min_token_chars,
        drop_cross_language_tokens=not args.keep_cross_language_tokens,
        n_per_pair=args.n_per_pair,
        n_boot=args.n_boot,
        ci_unit=args.ci_unit,
        competence_metric=args.competence_metric,
        competence_threshold=args.competence_threshold,
        seed=args.seed,
        tuned=tuned,
        control_match=args.control_match,
        n_random_init=args.random_inits,
    )
    probes = (
        load_probes_jsonl(args.probes, primary_language=args.primary, target_language=args.target)
        if args.probes
        else None
    )
    run_dir = Run(args.run)
    result = analyze_run(
        run_dir,
        cfg,
        checkpoints=parse_steps(args.checkpoints),
        probes=probes,
        fmt=args.fmt,
        device=args.device,
        resume=not args.no_resume,
        progress=not args.quiet,
    )
    if not args.no_figures:
        plot_working_language_run(result, run_dir.figures_dir())
    comp = result.competence()
    agg = result.aggregate()
    print(f"analysis written to {run_dir.analysis_dir(ANALYZER)}/")
    if result.dropped_pairs:
        print("dropped pairs: " + json.dumps([d.to_dict() for d in result.dropped_pairs])[:2000])
    counts = dropped_token_counts(result.dropped_tokens)
    if counts["total"]:
        print(f"dropped tokens: {counts['total']} {json.dumps(counts['by_reason'])}")
    for issue in result.coverage_issues:
        print(f"coverage: {issue}")
    cols = ["step", "n_probes", "top1_acc", "top5_acc", "p_target", "competent"]
    print(comp[cols].to_string(index=False))
    last = agg[agg["step"].fillna(-1) == agg["step"].fillna(-1).max()]
    cols = ["lens", "layer", "share_primary", "excess_matched", "excess_matched_lo"]
    cols += ["excess_matched_hi", "kl_to_final"]
    print(last[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0
