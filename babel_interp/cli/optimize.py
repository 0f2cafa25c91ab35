"""``babel-interp optimize`` and ``babel-interp evaluate-mixtures``: the corpus optimizer.

* ``optimize --method {proportional,uniform,temperature,unimax,babel-tower} --corpus DIR
  --out MIX.json``: a mixture the trainer reads directly (``train --mixture MIX.json``), with its
  provenance in ``MIX.provenance.json``; ``--resample-out DIR`` also writes it as a corpus.
* ``evaluate-mixtures --corpus DIR --out DIR``: train the same model on each mixture at an equal
  token budget for several seeds, and write the comparison table and figure.

Heavy imports happen inside the handlers, so ``babel-interp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from babel_interp.profiles import HARNESS_PROFILES


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """``["php=RUN", "csharp=RUN2"]`` -> ``{"php": "RUN", ...}``."""
    out: dict[str, str] = {}
    for item in values or []:
        lang, eq, value = item.partition("=")
        if not eq or not lang.strip() or not value.strip():
            raise ValueError(f"{what} takes LANG=VALUE, got {item!r}")
        out[lang.strip()] = value.strip()
    return out


def _tokens(text: str) -> int:
    from babel_interp.mixture import parse_token_count

    try:
        return parse_token_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``optimize`` and ``evaluate-mixtures``."""
    from babel_interp.optimizer.methods import METHODS

    p = subparsers.add_parser(
        "optimize",
        help="compute a data mixture (baselines or the paper's allocation)",
        description=(
            "Compute a data mixture over a corpus and write it as MIX.json (read directly by "
            "`babel-interp train --mixture MIX.json`) with its provenance beside it."
        ),
    )
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--corpus", required=True, help="corpus directory (its train sizes are read)")
    p.add_argument("--out", required=True, help="mixture file to write (MIX.json)")
    p.add_argument(
        "--total-tokens",
        type=_tokens,
        default=None,
        help="training budget (e.g. 5M; default: "
        "the corpus's natural total, or the babel-tower budgets' sum)",
    )
    p.add_argument("--languages", type=_csv, default=None, help="restrict to these languages")
    p.add_argument("--temperature", type=float, default=3.0, help="tau of temperature sampling")
    p.add_argument("--max-epochs", type=float, default=4.0, help="UniMax epoch cap N")
    g = p.add_argument_group("babel-tower")
    g.add_argument(
        "--run",
        action="append",
        metavar="LANG=RUN",
        help="continual-pretraining run of a new language (repeatable)",
    )
    g.add_argument("--evidence", help="JSON file of per-language evidence instead of runs")
    g.add_argument(
        "--best-step",
        action="append",
        metavar="LANG=STEP",
        help="step at which LANG is at its best stage (overrides the stage detector)",
    )
    g.add_argument(
        "--independent",
        type=_csv,
        default=[],
        metavar="LANGS",
        help="languages known never to depend on the primary (they keep their data)",
    )
    g.add_argument(
        "--stages",
        choices=("auto", "off"),
        default="auto",
        help="run the stage detector on each run's performance series (default auto)",
    )
    g.add_argument("--primary", default="python")
    g.add_argument(
        "--target-share",
        type=float,
        default=0.5,
        help="proxy value taken as the end of the best stage (a choice; default 0.5, half the "
        "loss drop from start to plateau); the sensitivity table shows 0.3-0.7",
    )
    g.add_argument(
        "--proxy-fit",
        choices=("exp", "tail_median"),
        default="exp",
        help="plateau of the loss proxy: asymptote of a saturating fit (default) or the median "
        "of the last evaluations",
    )
    g.add_argument(
        "--dependence",
        choices=("measured", "assumed"),
        default="measured",
        help="cut a language only where the working-language evidence shows it leaning on the "
        "primary (default), or assume every new language does (the paper's Algorithm 1)",
    )
    g.add_argument("--token-scale", type=float, default=1.0)
    g.add_argument("--share-rule", choices=("budget", "system_share"), default="budget")
    r = p.add_argument_group("resampled corpus")
    r.add_argument("--resample-out", help="also write the mixture as a resampled corpus here")
    r.add_argument("--resample-tokens", type=_tokens, default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=run_optimize)

    e = subparsers.add_parser(
        "evaluate-mixtures",
        help="train one model per mixture and seed at an equal budget; compare",
        description=(
            "Train the same model on each mixture at an equal token budget for several seeds and "
            "write a comparison table (CSV, Markdown) and a figure under --out."
        ),
    )
    e.add_argument(
        "--corpus",
        default=None,
        help="corpus directory (default: build the embedded synthetic corpus under --out)",
    )
    e.add_argument("--out", required=True, help="harness directory (runs, table, figure)")
    e.add_argument(
        "--mixture",
        action="append",
        metavar="NAME=SPEC",
        help="a mixture: NAME=METHOD[:k=v,...], NAME=MIX.json or NAME=python=0.7,php=0.3 "
        "(repeatable; default: the profile's set)",
    )
    e.add_argument("--profile", choices=tuple(HARNESS_PROFILES), default="full")
    e.add_argument("--token-budget", type=_tokens, default=None)
    e.add_argument("--seeds", type=lambda s: [int(x) for x in _csv(s)], default=None)
    e.add_argument("--preset", default=None, help="model preset (default: the profile's)")
    e.add_argument("--primary", default="python")
    e.add_argument("--reference", default="proportional")
    e.add_argument("--device", default="auto")
    e.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads during the runs"
    )
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(handler=run_evaluate)


def run_optimize(args: argparse.Namespace) -> int:
    """Handler of ``optimize``."""
    from babel_interp.optimizer.evidence import evidence_from_run
    from babel_interp.optimizer.methods import allocate, write_mixture_file
    from babel_interp.optimizer.provenance import run_record
    from babel_interp.optimizer.resample import write_resampled_corpus

    params: dict[str, Any] = {"method": args.method}
    evidence = None
    runs: list[dict[str, Any]] = []
    if args.method == "babel-tower":
        params.update(
            primary=args.primary,
            target_share=args.target_share,
            proxy_fit=args.proxy_fit,
            dependence=args.dependence,
            token_scale=args.token_scale,
            share_rule=args.share_rule,
        )
        run_dirs = _pairs(args.run, "--run")
        best = {k: int(v) for k, v in _pairs(args.best_step, "--best-step").items()}
        if args.evidence:
            params["evidence"] = args.evidence
        elif not run_dirs:
            raise ValueError("babel-tower needs --run LANG=RUN (repeatable) or --evidence FILE")
        else:
            evidence = {}
            for lang, run_dir in run_dirs.items():
                ev = evidence_from_run(
                    run_dir,
                    lang,
                    primary=args.primary,
                    best_step=best.get(lang),
                    detect=args.stages == "auto",
                    depends_on_primary=False if lang in args.independent else None,
                )
                evidence[lang] = ev
                runs.append(run_record(run_dir, ev.steps))
    else:
        params.update(languages=args.languages)
        if args.method == "temperature":
            params["temperature"] = args.temperature
        if args.method == "unimax":
            params["max_epochs"] = args.max_epochs
    result = allocate(params, args.corpus, args.total_tokens, evidence=evidence, runs=runs)
    mix_path, prov_path = write_mixture_file(args.out, result)
    alloc = result.allocation
    print(f"mixture ({args.method}): {result.mixture.to_spec()}")
    print(f"  total tokens {alloc.total_tokens}")
    for lang in alloc.languages:
        print(
            f"  {lang:>10}: weight {alloc.weights[lang]:.4f}  budget {alloc.budgets[lang]:>12}  "
            f"epochs {alloc.epochs[lang]:.3f}"
        )
    for d in result.provenance.decisions:
        print(f"  {d['language']}: {d['action']} ({d['reason']})")
    for c in result.provenance.calibration:
        print(
            f"  proxy calibration [{c['label']}]: pearson r={c['pearson']['r']:.3f}, "
            f"rmse={c['rmse']:.3f} (complement {c['rmse_complement']:.3f})"
        )
    sens = result.provenance.sensitivity
    if sens:
        print("  proxy crossing (tokens) by target share and run length:")
        for r in sens:
            if r["crossing_tokens"] is None:
                cell = r["note"] or "n/a"
            else:
                cell = f"{r['crossing_tokens']:.0f}"
                if r["crossing_low"] is not None:
                    cell += f" [{r['crossing_low']:.0f}, {r['crossing_high']:.0f}]"
            print(
                f"    {r['language']} run {r['run_fraction']:.0%} share {r['target_share']}: {cell}"
            )
    print(f"wrote {mix_path} and {prov_path}")
    if args.resample_out:
        total = args.resample_tokens or alloc.total_tokens
        rep = write_resampled_corpus(
            args.corpus,
            result.mixture,
            total,
            args.resample_out,
            seed=args.seed,
            overwrite=args.overwrite,
            provenance=result.provenance.to_dict(),
        )
        print(f"wrote resampled corpus {rep.out_dir}: {json.dumps(rep.written)}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``evaluate-mixtures``: the harness, then its figures."""
    from babel_interp.optimizer.harness import HarnessConfig, evaluate_mixtures
    from babel_interp.report.mixture_plots import plot_harness_result

    mixtures = _pairs(args.mixture, "--mixture") if args.mixture else None
    overrides: dict[str, Any] = {}
    for key in ("token_budget", "seeds", "preset"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    cfg = HarnessConfig.for_profile(
        args.profile,
        corpus=args.corpus,
        out=args.out,
        mixtures=mixtures,
        primary=args.primary,
        reference=args.reference,
        device=args.device,
        progress=not args.quiet,
        **overrides,
    )
    result = evaluate_mixtures(cfg)
    figures = plot_harness_result(result, cfg.out)
    sys.stdout.write(result.markdown)
    for name, path in {**result.paths, **figures}.items():
        print(f"{name}: {path}")
    return 0
