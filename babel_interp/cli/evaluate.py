"""``babel-interp evaluate``: pass@k of every checkpoint of a run, by executing sampled programs,
and ``babel-interp toolchains``: which compilers and interpreters the sandbox will use."""

from __future__ import annotations

import argparse
import json

from babel_interp.cli.options import parse_steps
from babel_interp.evaluation.evaluate import ExecutionConfig, evaluate_run
from babel_interp.evaluation.runners import EXECUTION_LANGUAGES, toolchain_report
from babel_interp.report.execution_plots import plot_pass_at_k
from babel_interp.runs import figures_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``toolchains`` commands."""
    p = subparsers.add_parser(
        "evaluate",
        help="pass@k per checkpoint: sample programs, run them in the sandbox",
        description=(
            "Samples completions of a problem suite from every checkpoint of a run, executes "
            "each inside the sandbox (own temporary directory, process group, time/memory/"
            "process limits, scrubbed environment, no network) and writes per-sample, "
            "per-problem and pass@k tables to RUN/analysis/execution/ and the pass@k curve to "
            "RUN/figures/pass_at_k.png. Checkpoints already evaluated with the same settings "
            "are reused."
        ),
    )
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument(
        "--suite",
        default="synthetic",
        help="synthetic (held-out programs of the run's corpus), humaneval, or a JSONL file",
    )
    p.add_argument(
        "--languages",
        help=f"comma-separated (default: the run's trained languages among "
        f"{', '.join(EXECUTION_LANGUAGES)})",
    )
    p.add_argument("--k", default="1", help="comma-separated k values (default: 1)")
    p.add_argument("--n-samples", type=int, default=1, help="samples per problem (>= max k)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-problems", type=int, default=None, help="per language")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    p.add_argument("--workers", type=int, default=None, help="parallel executions (cores)")
    p.add_argument(
        "--checkpoints", nargs="+", metavar="STEP", help="steps to evaluate (default: all)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="torch device (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_evaluate)

    t = subparsers.add_parser(
        "toolchains",
        help="the compilers and interpreters generated programs run with",
        description="Prints each execution language's toolchain version, or the package to "
        "install (`make toolchains` installs them all as root).",
    )
    t.set_defaults(handler=run_toolchains)


def run_evaluate(args: argparse.Namespace) -> int:
    cfg = ExecutionConfig(
        suite=args.suite,
        languages=tuple(x for x in args.languages.split(",") if x) if args.languages else None,
        k=tuple(int(x) for x in str(args.k).split(",") if x),
        n_samples=args.n_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        max_problems=args.max_problems,
        seed=args.seed,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    steps = parse_steps(args.checkpoints) if args.checkpoints else None
    result = evaluate_run(args.run, cfg, steps=steps, device=args.device, progress=not args.quiet)
    table = result.pass_at_k()
    fig = plot_pass_at_k(table, figures_dir(args.run) / "pass_at_k.png", k=min(cfg.k))
    cols = ["step", "language", "k", "pass_at_k", "ci_low", "ci_high", "n_problems"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if result.skipped:
        print(f"{len(result.skipped)} problems not translatable (listed in config.json)")
    print(f"tables: {args.run}/analysis/execution/  figure: {fig}")
    return 0


def run_toolchains(args: argparse.Namespace) -> int:
    report = toolchain_report()
    print(json.dumps(report, indent=2))
    return 1 if any("missing" in v for v in report.values()) else 0
