"""``babel-interp analyze neurons``: language-transferring neurons over a run's checkpoints."""

from __future__ import annotations

import argparse

import torch

from babel_interp.analysis.neurons.ablation import AblationConfig
from babel_interp.analysis.neurons.contrast import STATISTICS, ContrastConfig
from babel_interp.analysis.neurons.lape import LapeConfig
from babel_interp.analysis.neurons.neuron_stats import NeuronStatsConfig
from babel_interp.analysis.neurons.nulls import DEFAULT_NULL, DEFAULT_STRATUM_WINDOWS, NULL_KINDS
from babel_interp.analysis.neurons.transferring import (
    DEFINITIONS,
    NeuronAnalysisConfig,
    TransferConfig,
    analyze_run,
    summarize_counts,
)
from babel_interp.report.neuron_plots import plot_neuron_analysis
from babel_interp.runs import Run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurons`` to the ``analyze`` group."""
    p = subparsers.add_parser(
        "neurons",
        help="LAPE / activation-contrast neurons shared by two languages, with nulls and ablation",
        description=(
            "Streams MLP activation statistics at each checkpoint, finds language-specific "
            "neurons with LAPE (Tang et al. 2024) and activation contrast, counts the neurons "
            "shared by the primary and target language next to a permutation null and a "
            "random-init model, and ablates them against random same-size sets. Tables go to "
            "RUN/analysis/neurons/, figures to RUN/figures/."
        ),
    )
    p.add_argument("--run", required=True, help="run directory (with checkpoints/)")
    p.add_argument("--primary", default="python", help="the primary language (default python)")
    p.add_argument("--target", required=True, help="the new language, e.g. php")
    p.add_argument(
        "--languages", nargs="+", default=None, help="more languages for LAPE beside the pair"
    )
    p.add_argument(
        "--checkpoints", nargs="+", type=int, default=None, help="steps to analyze (default all)"
    )
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument(
        "--device", default="auto", help="torch device (default: auto, CUDA when available)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = p.add_argument_group("statistics")
    g.add_argument("--tokens-per-language", type=int, default=65_536)
    g.add_argument("--window-len", type=int, default=128)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--max-windows", type=int, default=1024, help="window records per language")
    g.add_argument("--threshold", type=float, default=0.0, help="activation threshold (LAPE: 0)")
    g.add_argument("--layers", nargs="+", type=int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--no-reuse", action="store_true", help="recompute saved statistics")
    g = p.add_argument_group("LAPE")
    g.add_argument("--filter-rate", type=float, default=0.95)
    g.add_argument("--top-rate", type=float, default=0.01)
    g.add_argument("--activation-bar", type=float, default=0.95)
    g.add_argument("--active-quantile", type=float, default=0.5)
    g.add_argument("--null-permutations", type=int, default=50)
    g.add_argument(
        "--null-kind",
        default=DEFAULT_NULL,
        choices=NULL_KINDS,
        help="null beside every count: window labels permuted among windows of matched overall "
        "firing rate (firing_matched) or over all windows (label_shuffle, inflates LAPE's "
        "shared count)",
    )
    g.add_argument(
        "--null-stratum-windows",
        type=int,
        default=DEFAULT_STRATUM_WINDOWS,
        help="windows per firing-rate stratum of the firing_matched null",
    )
    g.add_argument("--no-random-init", action="store_true")
    g = p.add_argument_group("contrast")
    g.add_argument("--statistic", default="cohens_d", choices=STATISTICS)
    g.add_argument("--n-bootstrap", type=int, default=200)
    g.add_argument("--n-permutations", type=int, default=200)
    g.add_argument("--alpha", type=float, default=0.05, help="false-discovery rate")
    g.add_argument("--min-effect", type=float, default=0.5)
    g.add_argument("--fdr-method", default="pooled", choices=("pooled", "bh"))
    g.add_argument("--k-per-language", type=int, default=None)
    g = p.add_argument_group("ablation")
    g.add_argument("--no-ablation", action="store_true")
    g.add_argument("--ablation-mode", default="mean", choices=("zero", "mean"))
    g.add_argument("--n-random-sets", type=int, default=20)
    g.add_argument("--ablation-tokens", type=int, default=16_384)
    g.add_argument("--ablate-sets", nargs="+", default=None, choices=DEFINITIONS)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_neurons)


def config_from_args(args: argparse.Namespace) -> NeuronAnalysisConfig:
    """The analysis configuration the command line describes."""
    ablation = None
    if not args.no_ablation:
        ablation = AblationConfig(
            mode=args.ablation_mode,
            n_random=args.n_random_sets,
            tokens_per_language=args.ablation_tokens,
            window_len=args.window_len,
            batch_size=args.batch_size,
        )
    cfg = NeuronAnalysisConfig(
        primary=args.primary,
        target=args.target,
        languages=args.languages,
        split=args.split,
        stats=NeuronStatsConfig(
            threshold=args.threshold,
            tokens_per_language=args.tokens_per_language,
            window_len=args.window_len,
            batch_size=args.batch_size,
            max_windows_per_language=args.max_windows,
            layers=args.layers,
            seed=args.seed,
        ),
        lape=LapeConfig(
            filter_rate=args.filter_rate,
            top_rate=args.top_rate,
            activation_bar_ratio=args.activation_bar,
        ),
        transfer=TransferConfig(active_quantile=args.active_quantile),
        contrast=ContrastConfig(
            statistic=args.statistic,
            n_bootstrap=args.n_bootstrap,
            n_permutations=args.n_permutations,
            alpha=args.alpha,
            min_effect=args.min_effect,
            fdr_method=args.fdr_method,
            k_per_language=args.k_per_language,
            seed=args.seed,
        ),
        ablation=ablation,
        n_null_permutations=args.null_permutations,
        null_kind=args.null_kind,
        null_stratum_windows=args.null_stratum_windows,
        random_init=not args.no_random_init,
        device=args.device,
        reuse_stats=not args.no_reuse,
        progress=not args.quiet,
    )
    if args.ablate_sets is not None:
        cfg = cfg.replace(ablate_sets=list(args.ablate_sets))
    return cfg


def run_neurons(args: argparse.Namespace) -> int:
    """Handler of ``babel-interp analyze neurons``."""
    cfg = config_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    result = analyze_run(args.run, cfg, checkpoints=args.checkpoints)
    summary = summarize_counts(result)
    if not summary.empty:
        print(summary.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"tables: {result.out_dir}")
    if not args.no_figures:
        for path in plot_neuron_analysis(result, Run(args.run).figures_dir()):
            print(f"figure: {path}")
    return 0
