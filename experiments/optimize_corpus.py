"""Corpus optimization: the paper's allocation against the original mixture and standard
baselines, with the same model trained from scratch at an equal token budget per mixture.

Two modes:

* ``--from-experiment DIR``: read a finished Babel Tower study (its corpus and each new
  language's continual-pretraining run) and write every method's mixture with its provenance
  under ``DIR/optimize/`` (no training): proportional (the original distribution), uniform,
  temperature sampling, UniMax and the paper's babel-tower allocation. ``make demo`` runs this.
* ``--profile quick|full``: the evaluation harness. Every mixture trains the same model from
  scratch at an equal token budget for each seed (at least 3 in the full profile), then a table
  reports per-language bits per byte with confidence intervals, macro average, worst language,
  primary regression, tokens-to-target speedup and the optimizer's overhead.

    python -m babel_interp.experiments.optimize_corpus --from-experiment runs/demo
    python -m babel_interp.experiments.optimize_corpus --profile full --out runs/optimize
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from babel_interp.io import write_csv_atomic
from babel_interp.profiles import HARNESS_PROFILES
from babel_interp.runs import Study

BASELINES = {
    "proportional": {"method": "proportional"},
    "uniform": {"method": "uniform"},
    "temperature": {"method": "temperature", "temperature": 3.0},
    "unimax": {"method": "unimax", "max_epochs": 4.0},
}


def mixtures_from_experiment(exp_dir: str | Path, seed: int | None = None) -> pd.DataFrame:
    """Every method's mixture for a finished study, written under ``EXP/optimize/``.

    The babel-tower allocation reads each new language's continual-pretraining run of ``seed``
    (default: the study's first seed): its loss curve (the paper's proxy), the measured
    working-language share (to calibrate that proxy) and the stage detector's verdict.
    Returns one row per (method, language) with weight, token budget and epochs.
    """
    from babel_interp.optimizer.evidence import evidence_from_run
    from babel_interp.optimizer.methods import allocate, write_mixture_file
    from babel_interp.optimizer.provenance import run_record

    study = Study(Path(exp_dir))
    if not study.meta.is_file():
        raise FileNotFoundError(
            f"{study.root} has no {study.meta.name}: run babel_interp.experiments.babel_tower first"
        )
    meta = json.loads(study.meta.read_text(encoding="utf-8"))
    cfg = meta["config"]
    corpus = str(study.corpus_dir(meta))
    seed = cfg["seeds"][0] if seed is None else seed
    out = study.optimize
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    results = {}
    for name, params in BASELINES.items():
        results[name] = allocate(dict(params), corpus)
    evidence, runs = {}, []
    for lang in cfg["targets"]:
        run = study.continual(seed, lang)
        ev = evidence_from_run(run, lang, primary=cfg["primary"])
        evidence[lang] = ev
        runs.append(run_record(run, ev.steps))
    results["babel-tower"] = allocate(
        {"method": "babel-tower", "primary": cfg["primary"]}, corpus, evidence=evidence, runs=runs
    )
    for name, result in results.items():
        write_mixture_file(out / f"{name}.json", result)
        alloc = result.allocation
        for lang in alloc.languages:
            rows.append(
                {
                    "method": name,
                    "language": lang,
                    "weight": alloc.weights[lang],
                    "budget_tokens": alloc.budgets[lang],
                    "epochs": alloc.epochs[lang],
                }
            )
    table = pd.DataFrame(rows)
    write_csv_atomic(out / "mixtures.csv", table)
    decisions = [
        {"language": d["language"], "action": d["action"], "reason": d["reason"]}
        for d in results["babel-tower"].provenance.decisions
    ]
    write_csv_atomic(out / "babel_tower_decisions.csv", pd.DataFrame(decisions))
    sensitivity = results["babel-tower"].provenance.sensitivity
    if sensitivity:
        write_csv_atomic(out / "babel_tower_sensitivity.csv", pd.DataFrame(sensitivity))
    calib = results["babel-tower"].provenance.calibration
    if calib:
        calib_rows = [
            {
                "label": c["label"],
                "pearson_r": c["pearson"]["r"],
                "rmse": c["rmse"],
                "rmse_complement": c["rmse_complement"],
            }
            for c in calib
        ]
        write_csv_atomic(out / "proxy_calibration.csv", pd.DataFrame(calib_rows))
    return table


def evaluate(
    profile: str,
    out: str,
    seeds: list[int] | None,
    corpus: str | None,
    progress: bool = True,
) -> Path:
    """The evaluation harness at one profile, then its figures; returns the comparison
    table's Markdown path. ``progress=False``: no progress bars in any stage of the harness
    (its corpus, evidence runs, analyzers and runs)."""
    from babel_interp.optimizer.harness import HarnessConfig, evaluate_mixtures
    from babel_interp.report.mixture_plots import plot_harness_result

    overrides: dict[str, Any] = {}
    if seeds:
        overrides["seeds"] = seeds
    if corpus:
        overrides["corpus"] = corpus
    cfg = HarnessConfig.for_profile(profile, out, progress=progress, **overrides)
    result = evaluate_mixtures(cfg)
    plot_harness_result(result, cfg.out)
    print(result.markdown)
    for note in result.notes:
        print(f"note: {note}")
    return Path(result.paths["table_md"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m babel_interp.experiments.optimize_corpus",
        description=__doc__.split("\n\n")[0],
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from-experiment", help="a finished Babel Tower study directory")
    mode.add_argument(
        "--profile", choices=tuple(HARNESS_PROFILES), help="run the evaluation harness"
    )
    parser.add_argument("--out", default="runs/optimize", help="harness output directory")
    parser.add_argument("--seeds", help="comma-separated seeds (full profile: at least 3)")
    parser.add_argument("--corpus", help="corpus directory (default: the embedded synthetic one)")
    parser.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bars"
    )
    args = parser.parse_args(argv)
    try:
        if args.from_experiment:
            table = mixtures_from_experiment(args.from_experiment)
            print(table.to_string(index=False))
            print(f"mixtures: {Study(Path(args.from_experiment)).optimize}")
        else:
            seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
            md = evaluate(args.profile, args.out, seeds, args.corpus, progress=not args.no_progress)
            print(f"comparison: {md}")
    except (ValueError, FileNotFoundError) as exc:
        print(f"optimize_corpus: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
