"""Reports: what the analyzers measured, with figures, tables and a plain-language summary.

``write_run_report(run)`` reports one training run (``babel-interp report --run RUN``);
``write_experiment_report(dir)`` reports a Babel Tower study (continued vs. from-scratch runs per
new language and seed) and, when present, the corpus-optimizer comparison. Both only read what
the trainer and analyzers wrote; nothing is recomputed here, so a report always matches the
tables beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babel_interp.analysis.neurons.nulls import null_label
from babel_interp.analysis.stages.efficiency import efficiency_summary
from babel_interp.formatting import fmt_count, fmt_interval
from babel_interp.profiles import SCALE_NOTES, STUDY_PROFILES
from babel_interp.report.document import ReportDocument
from babel_interp.report.execution import (
    add_execution_section,
    pass_at_1_curves,
    pass_at_1_sentence,
)
from babel_interp.report.headline_plots import HeadlineRow, plot_headline
from babel_interp.report.stage_plots import stage_figure_name
from babel_interp.report.study import (
    comparison_table,
    equal_step_excess,
    layer_excess,
    neuron_table,
    plot_layer_profiles,
    plot_region_excess,
    random_init_band,
    random_init_region_band,
    region_excess,
    region_records,
    run_regions,
    with_null_kind,
)
from babel_interp.report.training_plots import plot_efficiency, plot_training_curves
from babel_interp.report.verdict import (
    INSUFFICIENT,
    SIGNATURE,
    SignatureVerdict,
    signature_verdict,
)
from babel_interp.runs import Run, Study, figures_dir, read_run_config


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _fig(run: Path, name: str) -> Path | None:
    path = run / "figures" / name
    return path if path.is_file() else None


def efficiency_table_path(continued_run: str | os.PathLike) -> Path:
    """Where the study saved the token-efficiency table of a continued run against its
    scratch baseline (``RUN/analysis/efficiency/efficiency.csv``)."""
    return Path(continued_run) / "analysis" / "efficiency" / "efficiency.csv"


def corpus_table(corpus_dir: str | os.PathLike) -> pd.DataFrame:
    """Per-language documents, bytes, tokens and bytes/token from a corpus manifest."""
    from babel_interp.corpus.build import CorpusSummary

    try:
        return CorpusSummary.from_manifest(corpus_dir).to_dataframe()
    except (FileNotFoundError, KeyError, ValueError):
        return pd.DataFrame()


# --------------------------------------------------------------------------- signal summaries


def working_language_summary(run: Path) -> dict[str, Any]:
    """Excess (log-ratio against matched controls) at the middle layers and at the output, at
    the first competent checkpoint and at the last one, each with the analyzer's interval of the
    region mean (:func:`babel_interp.report.study.run_regions`); empty when not analyzed."""
    wl = run / "analysis" / "working_language"
    reg = run_regions(wl)
    comp = _read_csv(wl / "competence.csv")
    if reg.empty:
        return {}
    lens = sorted(reg["lens"].unique())[0]
    reg = reg[reg["lens"] == lens].dropna(subset=["step"])
    out: dict[str, Any] = {"lens": lens}
    competent = comp[comp["competent"].astype(bool)] if not comp.empty else comp
    out["first_competent_step"] = int(competent["step"].min()) if not competent.empty else None
    out["max_top1"] = float(comp["top1_acc"].max()) if not comp.empty else float("nan")
    out["threshold"] = float(comp["threshold"].iloc[0]) if not comp.empty else float("nan")
    steps = sorted(reg["step"].astype(int).unique())
    probe_steps = [s for s in (out["first_competent_step"], steps[-1]) if s is not None]
    for label, step in zip(("first_competent", "last"), probe_steps, strict=False):
        at = reg[reg["step"].astype(int) == step]
        out[label] = {"step": int(step)}
        for region in ("middle", "output"):
            r = at[at["region"] == region]
            for suffix in ("", "_lo", "_hi"):
                value = float(r[f"excess_matched{suffix}"].iloc[0]) if not r.empty else np.nan
                out[label][f"{region}_excess{suffix}"] = value
    return out


NEURON_COLUMNS = (
    "step",
    "count",
    "null_kind",
    "null_mean",
    "null_lo",
    "null_hi",
    "null_frac_le",
    "random_init_count",
)
LABEL_SHUFFLE_CAVEAT = (
    "The label-shuffled null makes the languages indistinguishable: LAPE's quota then fills with "
    "high-firing neurons assigned to both languages, so a count below it shows that the "
    "languages differ, not that neurons are shared less than chance."
)


def neuron_summary(run: Path, definition: str = "lape_shared") -> pd.DataFrame:
    """One definition's count per checkpoint beside its null (``null_kind`` named; tables from
    before that column were label-shuffled) and the random-init count."""
    df = _read_csv(run / "analysis" / "neurons" / "counts_total.csv")
    if df.empty:
        return df
    col = "definition" if "definition" in df.columns else "set"
    if col in df.columns:
        df = df[df[col] == definition]
    df = with_null_kind(df)
    return df[[c for c in NEURON_COLUMNS if c in df.columns]].reset_index(drop=True)


def neuron_sentence(summary: pd.DataFrame, what: str = "LAPE-shared neurons") -> str:
    """The last checkpoint's count against its null, saying only what that null supports."""
    if summary.empty:
        return ""
    last = summary.iloc[-1]
    head = f"{what} at step {last['step']}: {last['count']:g}"
    if "null_mean" not in summary.columns or not np.isfinite(last["null_mean"]):
        return head + " (no null was drawn)."
    kind = last.get("null_kind")
    text = (
        f"{head} vs a {null_label(kind)} of {last['null_mean']:.1f} "
        f"[{last['null_lo']:g}, {last['null_hi']:g}]"
    )
    if "null_frac_le" in summary.columns and np.isfinite(last["null_frac_le"]):
        text += f"; {last['null_frac_le']:.0%} of its draws are at or below the count"
    text += "."
    if null_label(kind) == null_label("label_shuffle"):
        text += " " + LABEL_SHUFFLE_CAVEAT
    return text


def _excess_sentence(tag: str, wl: dict[str, Any]) -> str:
    if not wl:
        return f"{tag}: the working-language probe was not run."
    if wl.get("first_competent_step") is None:
        return (
            f"{tag}: the model never became competent at the probe task (best output top-1 "
            f"{wl['max_top1']:.0%} < threshold {wl['threshold']:.0%}), so the working-language "
            "signal is uninformative and is not interpreted."
        )
    first = wl["first_competent"]
    middle = fmt_interval(
        first["middle_excess"], first["middle_excess_lo"], first["middle_excess_hi"], signed=True
    )
    output = fmt_interval(
        first["output_excess"], first["output_excess_lo"], first["output_excess_hi"], signed=True
    )
    return (
        f"{tag}: at the first competent checkpoint (step {first['step']}), excess toward "
        f"the primary against matched controls was {middle} in the middle layers and {output} "
        "at the output (log-ratio, 95% CI; positive = leaning to the primary language)."
    )


# --------------------------------------------------------------------------------- run report


def add_run_sections(doc: ReportDocument, run: Path, title: str, level: int = 2) -> None:
    """Training curve, working language, neurons, transfer and stages of one run."""
    doc.heading(title, level)
    cfg = read_run_config(run)
    lineage = cfg.get("init_from") or cfg.get("train", {}).get("init_from")
    if isinstance(lineage, dict):
        lineage = f"{lineage.get('checkpoint')} (step {lineage.get('step')})"
    weights = cfg.get("mixture", {}).get("weights") or {}
    mixture = ", ".join(f"{lang} {float(w):.2g}" for lang, w in weights.items()) or "not recorded"
    doc.text(
        f"Run `{run}`: mixture {mixture}; {cfg.get('train', {}).get('steps')} steps, seed "
        f"{cfg.get('seed')}" + (f", continued from `{lineage}`." if lineage else ", from scratch.")
    )
    curve = plot_training_curves({run.name: run}, figures_dir(run) / "training_curves.png")
    doc.figure(curve, "Validation loss per language (nats/token) against training steps")
    wl = working_language_summary(run)
    if wl:
        doc.text(_excess_sentence("Working language", wl))
        lens = wl["lens"]
        for name, cap in (
            (f"working_language_excess_{lens}.png", "Excess log-ratio vs. matched controls"),
            (f"working_language_share_{lens}.png", "Share of probes leaning to the primary"),
            ("working_language_competence.png", "Competence gate: output accuracy on probes"),
        ):
            doc.figure(_fig(run, name), cap)
    neurons = neuron_summary(run)
    if not neurons.empty:
        doc.text(neuron_sentence(neurons))
        doc.table(
            neurons,
            "LAPE-shared neurons per checkpoint: count, its null (null_kind; mean and 95% band of "
            "the null's draws; null_frac_le: share of draws at or below the count) and the "
            "random-init count",
        )
        doc.figure(_fig(run, "neurons_counts_null.png"), "Neuron counts against their nulls")
    transfer = _read_csv(run / "analysis" / "transfer" / "transfer.csv")
    if not transfer.empty:
        shown, same = split_constant_columns(transfer)
        doc.table(
            shown,
            "Knowledge-transfer ratio |P ∩ C| / |C| per checkpoint"
            + "".join(f"; {k}: {v}" for k, v in same.items()),
        )
    add_stage_lines(doc, run, "this run")


def split_constant_columns(
    df: pd.DataFrame, keep: tuple[str, ...] = ("step",)
) -> tuple[pd.DataFrame, dict[str, object]]:
    """``df`` without its text columns that hold one value in every row (a definition repeated
    per row widens a table and says nothing), and those values, for the caption."""
    same = {
        c: df[c].iloc[0]
        for c in df.columns
        if c not in keep
        and not pd.api.types.is_numeric_dtype(df[c])
        and df[c].nunique(dropna=False) == 1
    }
    return df.drop(columns=list(same)), same


def write_run_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """A report of one run (``RUN/report.md`` and ``report.html``); returns the Markdown path."""
    run = Path(run_dir)
    read_run_config(run)  # not a run: an error before anything is written
    doc = ReportDocument(f"Run report: {run.name}")
    try:
        table = corpus_table(Run(run).corpus_dir)
    except (FileNotFoundError, ValueError):  # the run's corpus is gone or was never named
        table = pd.DataFrame()
    if not table.empty:
        doc.heading("Corpus").table(table)
    add_run_sections(doc, run, "Training and analyses")
    md, _ = doc.write(out_dir or run)
    return md


# -------------------------------------------------------------------------- experiment report


def add_optimizer_sections(doc: ReportDocument, optimize: Path) -> None:
    """Mixtures computed from the study (``babel_interp.experiments.optimize_corpus
    --from-experiment``) and,
    when the harness ran there, their comparison at equal token budgets."""
    mixtures = _read_csv(optimize / "mixtures.csv")
    comparison = _read_csv(optimize / "comparison.csv")
    if mixtures.empty and comparison.empty:
        return
    doc.heading("Corpus optimizer")
    if not mixtures.empty:
        weights = mixtures.pivot(index="method", columns="language", values="weight")
        doc.table(weights.reset_index(), "Mixture weights per method (from this study's runs)")
        decisions = _read_csv(optimize / "babel_tower_decisions.csv")
        if not decisions.empty:
            doc.table(decisions, "The babel-tower allocation's decisions and their reasons")
        sensitivity = _read_csv(optimize / "babel_tower_sensitivity.csv")
        if not sensitivity.empty:
            doc.table(
                sensitivity_table(sensitivity),
                "Tokens at which the loss proxy reaches each target share (columns), with the "
                "analysis run truncated to a fraction of its evaluations (rows): estimate "
                "[95% interval]. 0.5 is the allocation's default; the spread across columns and "
                "rows is how much the cut rests on that choice and on the run's length",
            )
        calib = _read_csv(optimize / "proxy_calibration.csv")
        if not calib.empty:
            doc.table(
                calib,
                "The paper's loss proxy P(l) against the measured working-language share "
                "(rmse_complement: the error of 1 - P)",
            )
    if not comparison.empty:
        doc.table(comparison, "Validation bits per byte by mixture (mean and 95% CI over seeds)")
        for png in sorted(optimize.glob("*.png")):
            doc.figure(png, png.stem.replace("_", " "))


def sensitivity_table(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy sensitivity frame as a display table: one row per (language, run fraction), one
    column per target share, cells "crossing [low, high]" in tokens (or why there is none)."""

    def cell(r: pd.Series) -> str:
        if not np.isfinite(r.get("crossing_tokens", np.nan)):
            return "not identified" if str(r.get("note", "") or "") else "n/a"
        text = fmt_count(r["crossing_tokens"])
        if np.isfinite(r.get("crossing_low", np.nan)):
            text += f" [{fmt_count(r['crossing_low'])}, {fmt_count(r['crossing_high'])}]"
        if not bool(r.get("within_run", True)):
            text += " (beyond run)"
        return text

    d = df.assign(cell=df.apply(cell, axis=1))
    wide = d.pivot_table(
        index=["language", "run_fraction", "n_points"],
        columns="target_share",
        values="cell",
        aggfunc="first",
    ).reset_index()
    run = [
        f"{f:.0%} ({int(n)} evals)"
        for f, n in zip(wide["run_fraction"], wide["n_points"], strict=True)
    ]
    shares = [c for c in wide.columns if c not in ("language", "run_fraction", "n_points")]
    out = pd.DataFrame({"language": wide["language"], "run": run})
    for c in shares:
        out[f"share {c:g}"] = wide[c].to_numpy()
    return out


def experiment_summary(root: Path, meta: dict) -> list[str]:
    """Plain-language findings, one per (seed, language), as measured."""
    cfg = meta.get("config", {})
    return [
        seed_language_summary(root, meta, seed, lang)
        for seed in seeds_done(meta)
        for lang in cfg.get("targets", [])
    ]


def seed_language_summary(root: Path, meta: dict, seed: int, lang: str) -> str:
    """One seed's findings for one new language: stage verdict, working language of both runs,
    pass@1 and token efficiency, each with its interval or the reason it is missing."""
    study = Study(Path(root))
    cont, scratch = study.continual(seed, lang), study.scratch(seed, lang)
    verdict = meta.get("verdicts", {}).get(Study.key(seed, lang, "continual"), "not run")
    parts = [f"**{lang}, seed {seed}**: stage detector: {verdict}."]
    parts.append(_excess_sentence("Continued model", working_language_summary(cont)))
    parts.append(_excess_sentence("From-scratch baseline", working_language_summary(scratch)))
    parts.append(pass_at_1_sentence(cont, scratch, lang))
    parts.append(_efficiency_sentence(study.root, cont))
    return " ".join(p for p in parts if p)


def _efficiency_sentence(root: Path, cont: Path) -> str:
    """The token-efficiency finding of one (seed, language) from the table the study saved
    beside the continued run, or why there is none: a finding that silently goes missing
    reads as "not measured" when the analysis may have failed."""
    path = efficiency_table_path(cont)
    if not path.is_file():
        # The report reads better with paths relative to the study.
        where = str(path).replace(f"{root}{os.sep}", "")
        return (
            f"Token efficiency not reported: {where} was not written (the analysis did not "
            "run, or failed)."
        )
    eff = pd.read_csv(path)
    summ = efficiency_summary(eff)
    if not summ:
        # No gain is measured where the continued run had seen no target tokens yet, or where
        # the scratch run never got down to the continued loss.
        seen = eff[eff["tokens"] > 0]
        if seen.empty:
            return (
                "Token efficiency not measured: the continued run was never evaluated after "
                "seeing target tokens."
            )
        return (
            "Token efficiency not measured: the scratch model never reached the continued "
            f"model's loss at any of its {len(seen)} evaluations."
        )
    return (
        f"Token efficiency: the scratch model needs {summ['median_gain']:.1f}x "
        f"the target tokens to reach the continued model's loss (median over "
        f"{summ['n_checkpoints']} checkpoints; range {summ['min_gain']:.1f}-"
        f"{summ['max_gain']:.1f}x; {summ['last_gain']:.1f}x at step "
        f"{summ['last_step']})."
    )


def seeds_done(meta: dict) -> list[int]:
    """The seeds whose runs and analyses are complete (all configured seeds for a study
    written before ``seeds_done`` was recorded)."""
    done = meta.get("seeds_done")
    return list(done) if done is not None else list(meta.get("config", {}).get("seeds", []))


def compact_neuron_table(
    neurons: pd.DataFrame, definitions: tuple[str, ...] = ("lape_shared", "primary_active")
) -> pd.DataFrame:
    """One row per step, one ``count (null mean [lo, hi]; random init)`` column per definition
    and kind."""
    out = pd.DataFrame({"step": sorted(set(neurons["step"]))})
    for definition in definitions:
        for kind in ("continual", "scratch"):
            sub = neurons[(neurons["definition"] == definition) & (neurons["kind"] == kind)]
            if sub.empty:
                continue
            cells = {
                int(r.step): f"{r.count:g} ({getattr(r, 'null_mean', float('nan')):g} "
                f"[{getattr(r, 'null_lo', float('nan')):g}, "
                f"{getattr(r, 'null_hi', float('nan')):g}]; "
                f"{getattr(r, 'random_init_count', float('nan')):g})"
                for r in sub.itertuples(index=False)
            }
            out[f"{definition} {kind}"] = [cells.get(int(st), "") for st in out["step"]]
    return out


def sources_table(root: Path) -> pd.DataFrame:
    """Debian packages of a real-code study (name, version, license) from ``sources.json``."""
    info = _read_json(Study(Path(root)).sources / "sources.json")
    return pd.DataFrame(info.get("debian_packages", []))


def _one_seed_interval(reg: pd.DataFrame) -> str:
    """How a one-seed region table's intervals were made, for a caption."""
    units = set(reg["interval"]) if "interval" in reg else set()
    if units == {"pairs"}:
        return "over built-in pairs and the probes within them (one seed)"
    if units == {"probes"}:
        return "over probes (one seed)"
    return "of one seed (bootstrap; where missing, the result predates region intervals)"


def add_comparison_sections(
    doc: ReportDocument,
    root: Path,
    meta: dict,
    verdicts: list[SignatureVerdict] | None = None,
    tables: dict[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None,
) -> None:
    """Per new language: the verdict with its reason, then the continued model against the
    scratch baseline at equal steps, across seeds (excess by region and layer, probe accuracy,
    losses, neuron counts beside their nulls, execution, token efficiency); long tables are
    closed sections. ``verdicts`` and ``tables`` (per language, :func:`layer_excess` and
    :func:`region_records`) are what the caller already computed; missing ones are read."""
    study = Study(Path(root))
    cfg = meta.get("config", {})
    seeds = seeds_done(meta)
    if not seeds:
        doc.text("No seed has finished yet.")
        return
    fig_dir = study.figures
    n = len(seeds)
    by_lang = {v.language: v for v in verdicts or []}
    for lang in cfg.get("targets", []):
        doc.heading(f"{lang}: continued vs. from scratch ({n} seed{'s' * (n > 1)})")
        if tables and lang in tables:
            per_seed, regions = tables[lang]
        else:
            per_seed = layer_excess(root, seeds, lang)
            regions = region_records(root, seeds, lang)
        v = by_lang.get(lang) or signature_verdict(
            root, seeds, lang, cfg.get("primary", ""), per_seed, regions
        )
        doc.text(v.sentence())
        table = comparison_table(root, seeds, lang, per_seed, regions)
        if table.empty:
            doc.text("The working-language analyzer has no results at common steps yet.")
            continue
        reg = region_excess(per_seed, regions)
        how = "across seeds (Student t)" if n > 1 else _one_seed_interval(reg)
        excess_cols = {
            "step": "step",
            "target_tokens": "target tokens",
            "cont_middle": "middle, continued",
            "scratch_middle": "middle, scratch",
            "cont_output": "output, continued",
            "scratch_output": "output, scratch",
            "cont_top1": "top-1, continued",
            "scratch_top1": "top-1, scratch",
        }
        shown = table[[c for c in excess_cols if c in table.columns]].rename(columns=excess_cols)
        doc.table(
            shown,
            f"Excess log-ratio over matched controls in the middle layers and at the output "
            f"(mean, 95% CI {how}; > 0 leans to {cfg.get('primary')}), and probe top-1 at the "
            "output (the competence gate)",
        )
        doc.figure(
            plot_region_excess(
                reg,
                lang,
                fig_dir / f"{lang}_region_excess.png",
                random_band=random_init_region_band(root, seeds, lang),
            ),
            f"{lang}: middle-layer and output excess against steps (grey: where one "
            "random-init model falls)",
        )
        band = random_init_band(root, seeds, lang)
        doc.figure(
            plot_layer_profiles(
                equal_step_excess(per_seed),
                lang,
                fig_dir / f"{lang}_layer_profiles.png",
                random_band=band,
            ),
            f"{lang}: excess by layer at equal steps (grey: where one random-init model falls)",
        )
        loss_cols = {"step": "step", "cont_loss": "continued", "scratch_loss": "scratch"}
        with doc.collapsed(f"{lang}: validation loss and the random-init baseline, per step"):
            doc.table(
                table[list(loss_cols)].rename(columns=loss_cols),
                f"Validation loss on {lang} (nats/token) at equal steps",
            )
            if not band.empty:
                doc.table(
                    band.round(3),
                    "Random-init baseline: matched excess of freshly initialized models of the "
                    "same architecture (mean with t-interval; band: 95% prediction interval for "
                    "one model). A trained model's excess inside the band is indistinguishable "
                    "from a random network's.",
                )
        neurons = neuron_table(root, seeds, lang)
        if not neurons.empty:
            kinds = sorted(
                set(neurons.get("null_kind", pd.Series(dtype=object)).dropna()) - {"none"}
            )
            labels = " and ".join(null_label(k) for k in kinds) or "no null"
            doc.text(_neuron_overview(neurons, labels))
            caption = (
                f"Transferring neurons per equal step: count ({labels}: mean [2.5%, 97.5%] of its "
                "draws; random-init count), means over seeds. lape_shared: assigned by LAPE to "
                "both languages; primary_active: primary-specific and active on the target"
            )
            if "label_shuffle" in kinds:
                caption += ". " + LABEL_SHUFFLE_CAVEAT
            with doc.collapsed(f"{lang}: neuron counts per step"):
                doc.table(compact_neuron_table(neurons), caption)
        add_execution_section(doc, root, seeds, lang, fig_dir, figure=False)
        gains = []
        for s in seeds:
            eff = _read_csv(efficiency_table_path(study.continual(s, lang)))
            summ = efficiency_summary(eff)
            if summ:
                gains.append({"seed": s, **{k: round(v, 2) for k, v in summ.items()}})
        if gains:
            doc.table(
                pd.DataFrame(gains),
                "Token-efficiency gain: target tokens the scratch model needs to reach the "
                "continued model's loss, over the continued model's (over the checkpoints where "
                "the scratch run gets there)",
            )


def _neuron_overview(neurons: pd.DataFrame, labels: str) -> str:
    """One sentence: the continued model's counts at its last equal step beside the null."""
    last = int(neurons["step"].max())
    parts = []
    for definition in ("lape_shared", "primary_active"):
        sub = neurons[
            (neurons["definition"] == definition)
            & (neurons["kind"] == "continual")
            & (neurons["step"] == last)
        ]
        if sub.empty:
            continue
        r = sub.iloc[0]
        null = fmt_interval(r.get("null_mean"), r.get("null_lo"), r.get("null_hi"), digits=1)
        parts.append(f"{definition} {r['count']:g} (null {null})")
    if not parts:
        return ""
    return f"Neurons of the continued model at step {last}: " + "; ".join(parts) + f" ({labels})."


def add_stage_lines(doc: ReportDocument, run: Path, what: str) -> None:
    """The stage detector's verdict and reason for one run, with its figure."""
    stages = _read_json(run / "analysis" / "stages" / "stages.json")
    for lang, info in stages.get("languages", stages).items() if stages else []:
        if isinstance(info, dict) and "verdict" in info:
            doc.text(f"Stage detector, {what}: **{info['verdict']}**. {info.get('reason', '')}")
            doc.figure(_fig(run, stage_figure_name(lang)), f"Signals and detected stages, {what}")


def platform_text(platform: dict) -> str:
    """``experiment.json``'s platform record in words."""
    if not platform:
        return "not recorded"
    parts = []
    if platform.get("python"):
        parts.append(f"Python {platform['python']}")
    if platform.get("torch"):
        parts.append(f"torch {platform['torch']}")
    where = []
    if platform.get("machine"):
        where.append(str(platform["machine"]))
    if platform.get("cpus"):
        where.append(f"{platform['cpus']} CPU{'s' * (int(platform['cpus']) != 1)}")
    if platform.get("device") or platform.get("gpu"):
        where.append(str(platform.get("device") or platform.get("gpu")))
    known = {"python", "torch", "machine", "cpus", "device", "gpu"}
    rest = [f"{k} {v}" for k, v in platform.items() if k not in known]
    return ", ".join(parts + [" ".join(where)] * bool(where) + rest)


def timing_text(meta: dict) -> str:
    """How long the study took: each stage summed over every invocation (a resumed study's
    last invocation alone would say "training 0 s" for runs it found done)."""
    history = meta.get("timings_history") or [meta.get("timings", {})]
    history = [h for h in history if h]
    if not history:
        return "not recorded"
    total = {k: sum(float(h.get(k, 0.0)) for h in history) for k in (
        "corpus_s", "training_s", "analysis_s", "total_s")}  # fmt: skip
    text = (
        f"corpus {total['corpus_s']:.0f} s, training {total['training_s']:.0f} s, analyses "
        f"{total['analysis_s']:.0f} s; {total['total_s']:.0f} s in all"
    )
    if len(history) > 1:
        text += f" over {len(history)} invocations (the study was resumed)"
    return text


def _stage_line(meta: dict, seeds: list[int], lang: str) -> str:
    """The stage detector's verdicts on the continued runs, grouped ("insufficient data in 3 of
    3 seeds")."""
    got = [meta.get("verdicts", {}).get(Study.key(s, lang, "continual"), "not run") for s in seeds]
    counts = pd.Series(got).value_counts()
    if len(seeds) == 1:
        return str(got[0])
    return "; ".join(f"{v} in {n} of {len(seeds)} seeds" for v, n in counts.items())


def scale_note(cfg: dict[str, Any]) -> str:
    """What the scale scan measured at this study's profile
    (:data:`babel_interp.profiles.SCALE_NOTES`), when the study kept the profile's model and
    primary training ("" otherwise, or for a profile the scan has no note on)."""
    note = SCALE_NOTES.get(str(cfg.get("profile")), "")
    if not note:
        return ""
    profile = STUDY_PROFILES[cfg["profile"]]
    same = (
        cfg.get("preset") == profile["preset"]
        and not cfg.get("n_layers")
        and not cfg.get("d_model")
        and cfg.get("primary_steps") == profile["primary_steps"]
        and cfg.get("corpus", "synthetic") == profile.get("corpus", "synthetic")
    )
    return note if same else ""


def answer_text(meta: dict, verdicts: list[SignatureVerdict], pass_lines: dict[str, str]) -> str:
    """The report's first screen in Markdown: what was measured, one verdict line per new
    language, and the controls."""
    cfg = meta["config"]
    seeds = seeds_done(meta)
    n = len(seeds)
    lines = [
        f"**Does a new language first run on {cfg['primary']}'s knowledge system?** Profile "
        f"`{cfg['profile']}`: model preset `{cfg['preset']}`, {n} seed{'s' * (n != 1)} "
        f"({', '.join(map(str, seeds))}), {cfg['primary']} first, then "
        f"{', '.join(cfg['targets'])}.",
        "",
    ]
    for v in verdicts:
        line = f"- **{v.language}: {v.verdict}**"
        if v.verdict == INSUFFICIENT:
            line += f". {v.reason[0].upper()}{v.reason[1:]}."
        else:
            assert v.difference and v.continued and v.scratch
            line += (
                f" at step {v.step} (first competent checkpoint): continued − scratch "
                f"middle-layer excess {v.difference} (continued {v.continued}, scratch "
                f"{v.scratch})."
            )
        line += f" Stage detector: {_stage_line(meta, seeds, v.language)}."
        if pass_lines.get(v.language):
            line += f" {pass_lines[v.language]}"
        lines.append(line)
    note = scale_note(cfg)
    if note and not any(v.verdict == SIGNATURE for v in verdicts):
        lines += ["", f"*At this scale:* {note}"]
    how = next((v.interval for v in verdicts if v.interval), "")
    lines += [
        "",
        f"A signature needs both intervals above 0: the continued model's middle layers lean "
        f"to {cfg['primary']} against matched control sites, and more than a model trained "
        "from scratch on the same target data. Only checkpoints past the competence gate "
        "count. Excess: log P(primary)/P(target), probe minus matched control, 95% CI"
        + (f" ({how})" if how else "")
        + ". Nothing was tuned toward the hypothesis.",
    ]
    return "\n".join(lines)


def _pass_line(curves: dict[str, pd.DataFrame]) -> str:
    """pass@1 at the last step both runs reached, continued vs. scratch, from
    :func:`~babel_interp.report.execution.pass_at_1_curves` ("" if not run)."""
    if set(curves) != {"continual", "scratch"}:
        return ""
    c, s = curves["continual"], curves["scratch"]
    common = sorted(set(c["step"]) & set(s["step"]))
    if not common:
        return ""
    step = common[-1]
    rc, rs = c[c["step"] == step].iloc[0], s[s["step"] == step].iloc[0]
    return (
        f"pass@1 at step {step}: continued "
        f"{fmt_interval(rc['pass_at_k'], rc['ci_low'], rc['ci_high'])}, scratch "
        f"{fmt_interval(rs['pass_at_k'], rs['ci_low'], rs['ci_high'])}."
    )


def write_experiment_report(root_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The study's report (``report.md`` + self-contained ``report.html``) in its directory.

    The first screen answers the question (:func:`answer_text`, verdicts from
    :mod:`babel_interp.report.verdict`) beside the one figure that shows it; per-language
    evidence, the setup, the optimizer and the limits follow under a table of contents; each
    seed's runs are in closed sections at the end.
    """
    study = Study(Path(root_dir))
    root = study.root
    meta = _read_json(study.meta)
    if not meta:
        raise FileNotFoundError(f"{root} has no {study.meta.name}: is it an experiment directory?")
    cfg = meta["config"]
    seeds = seeds_done(meta)
    fig_dir = study.figures
    doc = ReportDocument(
        "The Babel Tower study: how a Python-first code model learns new languages"
    )
    verdicts, rows, pass_lines, tables = [], [], {}, {}
    for lang in cfg.get("targets", []):
        # Read once: the answer, the headline figure and the language's section all use them.
        per_seed = layer_excess(root, seeds, lang)
        regions = region_records(root, seeds, lang)
        tables[lang] = (per_seed, regions)
        v = signature_verdict(root, seeds, lang, cfg["primary"], per_seed, regions)
        verdicts.append(v)
        curves = pass_at_1_curves(root, seeds, lang)
        pass_lines[lang] = _pass_line(curves)
        rows.append(
            HeadlineRow(
                lang,
                region_excess(per_seed, regions) if not per_seed.empty else pd.DataFrame(),
                verdict=v.verdict,
                random_band=v.random_band,
                first_competent=v.step,
                pass_at_1=curves,
            )
        )
    doc.callout(answer_text(meta, verdicts, pass_lines))
    doc.figure(
        plot_headline(rows, cfg["primary"], fig_dir / "headline.png"),
        "Per new language, left: the middle layers' excess toward the primary over matched "
        "controls, continued vs. from scratch (95% CI bands; grey: where one random-init "
        "model falls; dashed: the first competent checkpoint). Right: pass@1 of executed "
        "programs on held-out problems",
    )
    doc.toc()
    add_comparison_sections(doc, root, meta, verdicts, tables)
    doc.heading("Setup")
    doc.text(
        f"Profile `{cfg['profile']}`, primary `{cfg['primary']}`, new languages "
        f"{', '.join(f'`{t}`' for t in cfg['targets'])}, seeds "
        f"{', '.join(map(str, cfg['seeds']))} ({len(seeds)} finished), model preset "
        f"`{cfg['preset']}`, {cfg['primary_steps']} primary steps, {cfg['continual_steps']} "
        f"continual steps, {cfg['scratch_steps']} scratch-baseline steps, batch "
        f"{cfg['batch_size']} × {cfg['seq_len']} tokens.\n\n"
        f"Platform: {platform_text(meta.get('platform', {}))}. Time: {timing_text(meta)}."
    )
    table = corpus_table(study.corpus_dir(meta))
    if not table.empty:
        doc.table(table, "Corpus: documents, bytes and tokens per language")
    debian = sources_table(root)
    if not debian.empty:
        doc.table(debian, "Debian packages of the new languages (name, version, license)")
    add_optimizer_sections(doc, study.optimize)
    doc.heading("Limits")
    if cfg.get("corpus") == "real":
        doc.text(
            "Real code at this scale: a small model and a few million tokens per language. "
            "A checkpoint below the competence threshold is uninformative by construction. "
            "C# is not in this study: Debian ships no C# source to speak of (mono ships "
            "compiled assemblies). Seeds and confidence intervals are as stated; nothing here "
            "was tuned toward the hypothesis."
        )
    else:
        doc.text(
            "The synthetic corpus is a positive control with frequent, learnable built-ins, not "
            "real code; results at this scale say what the tools measure, not what a 1.3B model "
            "does. A checkpoint below the competence threshold is uninformative by "
            "construction. Seeds and confidence intervals are as stated; nothing here was tuned "
            "toward the hypothesis."
        )
    for name, note in meta.get("notes", {}).items():
        doc.text(f"{name.replace('_', ' ').capitalize()}: {note}.")
    add_seed_appendix(doc, root, meta)
    return doc.write(root)


def add_seed_appendix(doc: ReportDocument, root: Path, meta: dict) -> None:
    """Each finished seed's runs in a closed section: training curves, continued vs. scratch
    losses, token efficiency, and the stage detector's figures and reasons."""
    study = Study(root)
    cfg = meta["config"]
    seeds = seeds_done(meta)
    if not seeds:
        return
    doc.heading("Appendix: each seed's runs")
    doc.text(
        "Closed by default (click to open). Every table behind these figures is a CSV under the "
        "run's `analysis/` directory; `babel-interp report --run RUN` writes one run's own "
        "report."
    )
    fig_dir = study.figures
    for seed in seeds:
        with doc.collapsed(f"Seed {seed}: training curves, efficiency and stages"):
            runs = {"primary": study.primary(seed)}
            for lang in cfg["targets"]:
                runs[f"{lang} continued"] = study.continual(seed, lang)
            curve = plot_training_curves(
                runs,
                fig_dir / f"seed_{seed}_training.png",
                languages=[cfg["primary"], *cfg["targets"]],
            )
            doc.figure(curve, "Per-language validation loss of the primary and continued runs")
            for lang in cfg["targets"]:
                cont, scratch = study.continual(seed, lang), study.scratch(seed, lang)
                doc.heading(f"{lang}, seed {seed}", 3)
                both = plot_training_curves(
                    {"continued": cont, "scratch": scratch},
                    fig_dir / f"seed_{seed}_{lang}_vs_scratch.png",
                    languages=[lang],
                )
                doc.figure(both, f"{lang}: continued pretraining vs. from scratch (same data)")
                doc.text(seed_language_summary(root, meta, seed, lang))
                eff = _read_csv(efficiency_table_path(cont))
                if not eff.empty:
                    doc.figure(
                        plot_efficiency(eff, fig_dir / f"seed_{seed}_{lang}_efficiency.png", lang),
                        "Token-efficiency gain of continual pretraining over the scratch baseline",
                    )
                for run, what in ((cont, "continued"), (scratch, "from scratch")):
                    add_stage_lines(doc, run, f"{lang} {what}")
