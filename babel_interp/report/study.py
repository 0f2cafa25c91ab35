"""Cross-seed views of a Babel Tower study: the continued model against its from-scratch baseline
at equal steps, layer by layer, with confidence intervals across seeds.

The signature the study looks for is relative: at equal target-language steps, do the continued
model's middle layers lean toward the primary language's identifiers (excess over matched
controls near or above zero) while the scratch model's already lean to the target (below zero)?
These functions only read what the analyzers wrote under each run.

Intervals: with two or more seeds, a Student-t interval over the per-seed estimates (each seed is
one independent replicate of the whole pipeline); with one seed, that seed's own bootstrap
interval, marked with what it resampled (``interval``: "pairs" for the analyzer's default, built-in
pairs then probes within them, or "probes"; it does not cover seed-to-seed variation). A region's
one-seed interval is the analyzer's interval of the region mean (``regions.csv``), never an average
of per-layer bounds.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from babel_interp.analysis.stats import t_interval, t_prediction_interval  # noqa: E402
from babel_interp.analysis.working_language.logit_lens import (  # noqa: E402
    REGIONS_CSV,
    SUMMARY_JSON,
    WorkingLanguageResult,
)
from babel_interp.analysis.working_language.regions import (  # noqa: E402
    decoded_depth,
    layer_region,
)
from babel_interp.formatting import fmt_interval  # noqa: E402
from babel_interp.report.figures import panel_grid, save_figure  # noqa: E402
from babel_interp.report.training_plots import eval_records  # noqa: E402
from babel_interp.runs import METRICS, Run, Study  # noqa: E402
from babel_interp.runs import STUDY_KINDS as KINDS  # noqa: E402

# What a one-seed interval resampled, by the analyzer's ``ci_unit``.
_UNIT_LABEL = {"pair": "pairs", "probe": "probes"}


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _ci_unit(wl: Path) -> str:
    """What a saved working-language result's bootstrap resampled ("pairs" or "probes")."""
    meta = json.loads((wl / SUMMARY_JSON).read_text()) if (wl / SUMMARY_JSON).is_file() else {}
    return _UNIT_LABEL.get(meta.get("config", {}).get("ci_unit", "probe"), "probes")


def run_regions(wl_dir: str | os.PathLike) -> pd.DataFrame:
    """The region table (per step, lens and region: the middle layers' and the output's excess
    with an interval of the region mean) of the working-language result saved in ``wl_dir``
    (``RUN/analysis/working_language``).

    Read from ``regions.csv``; a result saved before that table existed has it recomputed from
    its records (with the config it was saved with, so its ``ci_unit`` column says what was
    resampled). Empty when the directory holds no result.
    """
    wl = Path(wl_dir)
    if (wl / REGIONS_CSV).is_file():
        return pd.read_csv(wl / REGIONS_CSV)
    try:
        return WorkingLanguageResult.load(wl).regions()
    except FileNotFoundError:
        return pd.DataFrame()


def layer_excess(root: str | os.PathLike, seeds: Sequence[int], lang: str) -> pd.DataFrame:
    """Per-seed excess over matched controls per kind, step and layer (first lens), with the
    checkpoint's competence flag and what its interval resampled (``interval``: "pairs" or
    "probes"); empty when nothing was analyzed."""
    study = Study(Path(root))
    frames = []
    for seed in seeds:
        for kind in KINDS:
            wl = study.run_dir(seed, lang, kind) / "analysis" / "working_language"
            agg = _csv(wl / "aggregate.csv")
            if agg.empty:
                continue
            agg = agg[agg["lens"] == agg["lens"].iloc[0]].dropna(subset=["step"])
            agg = agg[agg["step"].astype(str).str.isdigit()].copy()
            agg["step"] = agg["step"].astype(int)
            comp = _csv(wl / "competence.csv")
            if not comp.empty:
                comp = comp[comp["step"].astype(str).str.isdigit()]
                flags = dict(
                    zip(comp["step"].astype(int), comp["competent"].astype(bool), strict=True)
                )
                top1 = dict(
                    zip(comp["step"].astype(int), comp["top1_acc"].astype(float), strict=True)
                )
            else:
                flags, top1 = {}, {}
            depth = pd.Series(decoded_depth(agg["layer_pos"]), index=agg.index)
            frames.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "kind": kind,
                        "step": agg["step"].to_numpy(),
                        "layer": agg["layer"].to_numpy(),
                        "depth": depth.to_numpy(),
                        "excess": agg["excess_matched"].to_numpy(float),
                        "lo": agg["excess_matched_lo"].to_numpy(float),
                        "hi": agg["excess_matched_hi"].to_numpy(float),
                        "competent": [flags.get(int(s), False) for s in agg["step"]],
                        "top1_acc": [top1.get(int(s), math.nan) for s in agg["step"]],
                        "interval": _ci_unit(wl),
                    }
                )
            )
    if not frames:
        return pd.DataFrame(
            columns=["seed", "kind", "step", "layer", "depth", "excess", "lo", "hi", "competent"]
        )
    return pd.concat(frames, ignore_index=True)


def region_records(root: str | os.PathLike, seeds: Sequence[int], lang: str) -> pd.DataFrame:
    """Per seed, kind, step and region (first lens): the analyzer's region mean of the excess
    over matched controls with its own interval (:func:`run_regions`), and what that interval
    resampled (``interval``); empty when nothing was analyzed."""
    study = Study(Path(root))
    frames = []
    for seed in seeds:
        for kind in KINDS:
            reg = run_regions(study.run_dir(seed, lang, kind) / "analysis" / "working_language")
            if reg.empty:
                continue
            reg = reg[reg["lens"] == sorted(reg["lens"].unique())[0]].dropna(subset=["step"])
            reg = reg[reg["step"].astype(str).str.isdigit()]
            frames.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "kind": kind,
                        "step": reg["step"].astype(int).to_numpy(),
                        "region": reg["region"].to_numpy(),
                        "excess": reg["excess_matched"].to_numpy(float),
                        "lo": reg["excess_matched_lo"].to_numpy(float),
                        "hi": reg["excess_matched_hi"].to_numpy(float),
                        "interval": [_UNIT_LABEL.get(u, str(u)) for u in reg["ci_unit"]],
                    }
                )
            )
    cols = ["seed", "kind", "step", "region", "excess", "lo", "hi", "interval"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def random_init_records(root: str | os.PathLike, seeds: Sequence[int], lang: str) -> pd.DataFrame:
    """The per-init rows (first lens) of the random-init models scored beside each seed's
    continued run, with ``seed`` and the decoded ``depth``; empty when none were scored."""
    study = Study(Path(root))
    frames = []
    for seed in seeds:
        wl = study.continual(seed, lang) / "analysis" / "working_language"
        df = _csv(wl / "random_init.csv")
        if not df.empty:
            frames.append(df[df["lens"] == df["lens"].iloc[0]].assign(seed=seed))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df["depth"] = decoded_depth(df["layer_pos"])
    return df


def random_init_band(root: str | os.PathLike, seeds: Sequence[int], lang: str) -> pd.DataFrame:
    """Per decoded depth: the matched excess of freshly initialized models (pooled over the
    inits scored beside each seed's continued run), their mean with a t-interval and the
    prediction band where one more random network should fall. Empty when none were scored."""
    df = random_init_records(root, seeds, lang)
    if df.empty:
        return pd.DataFrame()
    rows = []
    for (depth, layer), g in df.groupby(["depth", "layer"], sort=True):
        x = g["excess_matched"].to_numpy(float)
        mean, band = t_interval(x), t_prediction_interval(x)
        rows.append(
            {
                "layer": layer,
                "depth": float(depth),
                "n_models": len(x),
                "mean": mean.estimate,
                "mean_lo": mean.low,
                "mean_hi": mean.high,
                "band_lo": band.low,
                "band_hi": band.high,
            }
        )
    return pd.DataFrame(rows)


def random_init_region_band(
    root: str | os.PathLike, seeds: Sequence[int], lang: str
) -> dict[str, tuple[float, float]]:
    """``{"middle": (lo, hi), "output": (lo, hi)}``: the 95% prediction band of one random-init
    model's region excess (each init's mean over the region's layers, pooled over seeds)."""
    df = random_init_records(root, seeds, lang)
    if df.empty:
        return {}
    df["region"] = layer_region(df["depth"])
    per_init = df.groupby(["seed", "init_seed", "region"], as_index=False)["excess_matched"].mean()
    out = {}
    for region in ("middle", "output"):
        x = per_init.loc[per_init["region"] == region, "excess_matched"].to_numpy(float)
        if x.size >= 2:
            band = t_prediction_interval(x)
            out[region] = (float(band.low), float(band.high))
    return out


def common_steps(df: pd.DataFrame) -> set[int]:
    """The steps present for every kind (continued and scratch) in a table with ``kind`` and
    ``step`` columns: where the two runs can be compared."""
    return set.intersection(*(set(df.loc[df["kind"] == k, "step"]) for k in KINDS))


def equal_step_excess(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Excess per kind, step and layer across seeds, at the steps both kinds reached.

    Columns: kind, step, layer, depth, excess, lo, hi, n_seeds, interval ("seeds", or with one
    seed what its bootstrap resampled: "pairs" or "probes"), competent_seeds (how many seeds
    passed the competence gate there).
    """
    if per_seed.empty:
        return pd.DataFrame()
    rows = []
    sub = per_seed[per_seed["step"].isin(common_steps(per_seed))]
    for (kind, step, layer), g in sub.groupby(["kind", "step", "layer"], sort=True):
        if len(g) >= 2:
            ci = t_interval(g["excess"])
            m, lo, hi = ci.estimate, ci.low, ci.high
            how = "seeds"
        else:
            m, lo, hi = float(g["excess"].iloc[0]), float(g["lo"].iloc[0]), float(g["hi"].iloc[0])
            how = str(g["interval"].iloc[0]) if "interval" in g else "probes"
        rows.append(
            {
                "kind": kind,
                "step": int(step),
                "layer": layer,
                "depth": float(g["depth"].iloc[0]),
                "excess": m,
                "lo": lo,
                "hi": hi,
                "n_seeds": len(g),
                "interval": how,
                "competent_seeds": int(g["competent"].sum()),
                "top1_acc": float(g["top1_acc"].mean()),
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["region"] = layer_region(out["depth"])
    return out


def region_excess(per_seed: pd.DataFrame, regions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Middle-layer and output excess per kind and equal step, across seeds: each seed's region
    value is its mean over the region's layers.

    With two or more seeds, a Student-t interval over the seeds' region means (``interval``
    "seeds"). With one seed, the interval of that seed's region mean from ``regions``
    (:func:`region_records`: the analyzer's bootstrap of per-probe region means; ``interval``
    "pairs" or "probes"). Without a region row for it (``regions`` not given, or the seed has
    none) the bounds are NaN and ``interval`` is "none": averaging per-layer bounds would not give
    an interval of the region mean.
    """
    if per_seed.empty:
        return pd.DataFrame()
    df = per_seed.assign(region=layer_region(per_seed["depth"]))
    df = df[df["region"] != "emb"]
    keys = ["kind", "step", "region", "seed"]
    per = df.groupby(keys, as_index=False).agg(excess=("excess", "mean"), top1=("top1_acc", "mean"))
    own = (
        regions.set_index(keys)[["excess", "lo", "hi", "interval"]]
        if regions is not None and not regions.empty
        else None
    )
    steps = common_steps(per_seed)
    rows = []
    for (kind, step, region), g in per[per["step"].isin(steps)].groupby(["kind", "step", "region"]):
        if len(g) >= 2:
            ci = t_interval(g["excess"])
            m, lo, hi, how = ci.estimate, ci.low, ci.high, "seeds"
        else:
            key = (kind, step, region, g["seed"].iloc[0])
            m, lo, hi, how = float(g["excess"].iloc[0]), math.nan, math.nan, "none"
            if own is not None and key in own.index:
                r = own.loc[key]
                m, lo, hi, how = float(r["excess"]), float(r["lo"]), float(r["hi"]), r["interval"]
        rows.append(
            {
                "kind": kind,
                "step": int(step),
                "region": region,
                "excess": m,
                "lo": lo,
                "hi": hi,
                "n_seeds": len(g),
                "interval": how,
                "top1_acc": float(g["top1"].mean()),
            }
        )
    return pd.DataFrame(rows)


def _eval_losses(run: Path, lang: str) -> dict[int, float]:
    if not (run / METRICS).is_file():
        return {}
    df = eval_records(run)
    df = df[df["language"] == lang]
    return dict(zip(df["step"].astype(int), df["val_loss"].astype(float), strict=True))


def comparison_table(
    root: str | os.PathLike,
    seeds: Sequence[int],
    lang: str,
    per_seed: pd.DataFrame | None = None,
    regions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """At every equal step: target tokens, validation loss (nats), probe top-1 and the
    middle/output excess of the continued and the scratch model, across seeds (``per_seed``:
    :func:`layer_excess`, ``regions``: :func:`region_records`, when the caller already read
    them)."""
    study = Study(Path(root))
    if per_seed is None:
        per_seed = layer_excess(study.root, seeds, lang)
    if regions is None:
        regions = region_records(study.root, seeds, lang)
    reg = region_excess(per_seed, regions)
    if reg.empty:
        return pd.DataFrame()
    losses = {
        (kind, seed): _eval_losses(study.run_dir(seed, lang, kind), lang)
        for kind in KINDS
        for seed in seeds
    }
    tokens_per_step = _tokens_per_step(study.continual(seeds[0], lang))
    rows = []
    for step in sorted(set(reg["step"])):
        row: dict[str, object] = {"step": step}
        if tokens_per_step:
            row["target_tokens"] = int(step * tokens_per_step)
        for kind, short in (("continual", "cont"), ("scratch", "scratch")):
            vals = [losses[(kind, s)].get(step, math.nan) for s in seeds]
            ci = t_interval(vals)
            row[f"{short}_loss"] = fmt_interval(ci.estimate, ci.low, ci.high)
            at = reg[(reg["kind"] == kind) & (reg["step"] == step)]
            for region in ("middle", "output"):
                r = at[at["region"] == region]
                row[f"{short}_{region}"] = (
                    fmt_interval(*r[["excess", "lo", "hi"]].iloc[0], signed=True) if len(r) else ""
                )
            row[f"{short}_top1"] = f"{at['top1_acc'].mean():.0%}" if len(at) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _tokens_per_step(run: Path) -> float:
    try:
        cfg = Run(run).train_config
        return float(cfg.get("batch_size", 0)) * float(cfg.get("seq_len") or 0)
    except (FileNotFoundError, ValueError, TypeError):
        return 0.0


def with_null_kind(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``null_kind`` on every row that has a null: tables written before the
    column existed were label-shuffled, so their rows read as ``"label_shuffle"``."""
    if "null_mean" not in df.columns:
        return df
    kind = df["null_kind"] if "null_kind" in df.columns else pd.Series(np.nan, index=df.index)
    kind = kind.astype(object).where(kind.notna() & (kind != ""), None)
    has_null = df["null_mean"].notna()
    return df.assign(null_kind=kind.where(~has_null | kind.notna(), "label_shuffle"))


def neuron_table(root: str | os.PathLike, seeds: Sequence[int], lang: str) -> pd.DataFrame:
    """LAPE-shared and contrast counts per kind and equal step, mean over seeds, beside the
    mean of their nulls (mean and band ends; ``null_kind`` names the null) and the random-init
    count."""
    study = Study(Path(root))
    frames = []
    for seed in seeds:
        for kind in KINDS:
            df = _csv(study.run_dir(seed, lang, kind) / "analysis" / "neurons" / "counts_total.csv")
            if df.empty:
                continue
            df = df[df["step"].astype(str).str.isdigit()].copy()
            df["step"] = df["step"].astype(int)
            frames.append(df.assign(seed=seed, kind=kind))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df = with_null_kind(df[df["step"].isin(common_steps(df))])
    stats = ("count", "null_mean", "null_lo", "null_hi", "random_init_count")
    keep = [c for c in stats if c in df.columns]
    by = ["definition", "kind", "step"]
    if "null_kind" in df.columns:
        df = df.assign(null_kind=df["null_kind"].fillna("none"))
        by.append("null_kind")
    out = df.groupby(by, as_index=False)[keep].mean()
    return out.round(1)


def plot_layer_profiles(
    eq: pd.DataFrame,
    lang: str,
    out_path: str | os.PathLike,
    max_panels: int = 4,
    random_band: pd.DataFrame | None = None,
) -> Path | None:
    """Excess by decoded depth, continued vs. scratch, at up to ``max_panels`` equal steps
    (spread over the run, step 0 left out), with the interval as a band; ``random_band``
    (:func:`random_init_band`) is drawn in grey: where one random network's excess falls."""
    if eq.empty:
        return None
    steps = sorted(s for s in set(eq["step"]) if s > 0)
    if not steps:
        return None
    idx = np.unique(np.linspace(0, len(steps) - 1, min(max_panels, len(steps))).round().astype(int))
    chosen = [steps[i] for i in idx]
    fig = plt.figure()
    axes = panel_grid(fig, len(chosen), panel_size=(5.2, 3.3))
    colors = {"continual": "tab:blue", "scratch": "tab:orange"}
    for ax, step in zip(axes, chosen, strict=True):
        if random_band is not None and not random_band.empty:
            rb = random_band.sort_values("depth")
            ax.fill_between(
                rb["depth"],
                rb["band_lo"],
                rb["band_hi"],
                color="grey",
                alpha=0.25,
                label="random init (one model)",
            )
        for kind in KINDS:
            g = eq[(eq["kind"] == kind) & (eq["step"] == step)].sort_values("depth")
            if g.empty:
                continue
            label = "continued" if kind == "continual" else "from scratch"
            ax.plot(g["depth"], g["excess"], marker="o", color=colors[kind], label=label)
            if g["lo"].notna().all():
                ax.fill_between(g["depth"], g["lo"], g["hi"], color=colors[kind], alpha=0.2)
        ax.axhline(0, color="grey", lw=0.8)
        how = eq.loc[eq["step"] == step, "interval"].iloc[0]
        n = int(eq.loc[eq["step"] == step, "n_seeds"].max())
        ax.set_title(f"{lang}, step {step}\n(95% CI over {how}, {n} seed{'s' * (n > 1)})")
        ax.set_xlabel("decoded depth (0 = embedding, 1 = output)")
    for ax in axes[:: min(2, len(chosen))]:  # the first panel of each row
        ax.set_ylabel("excess log P(primary)/P(target)\nover matched controls")
    axes[-1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = save_figure(fig, out_path, dpi=110, tight=False)
    plt.close(fig)
    return out


def plot_region_excess(
    reg: pd.DataFrame,
    lang: str,
    out_path: str | os.PathLike,
    random_band: dict[str, tuple[float, float]] | None = None,
) -> Path | None:
    """Middle-layer and output excess against steps, continued vs. scratch, with intervals;
    ``random_band`` (:func:`random_init_region_band`) is drawn as a grey stripe."""
    if reg.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    colors = {"continual": "tab:blue", "scratch": "tab:orange"}
    for ax, region in zip(axes, ("middle", "output"), strict=True):
        if random_band and region in random_band:
            lo, hi = random_band[region]
            ax.axhspan(lo, hi, color="grey", alpha=0.25, label="random init (one model)")
        for kind in KINDS:
            g = reg[(reg["kind"] == kind) & (reg["region"] == region)].sort_values("step")
            if g.empty:
                continue
            x = g["step"].clip(lower=1)
            label = "continued" if kind == "continual" else "from scratch"
            ax.plot(x, g["excess"], marker="o", color=colors[kind], label=label)
            if g["lo"].notna().all():
                ax.fill_between(x, g["lo"], g["hi"], color=colors[kind], alpha=0.2)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{lang} steps (0 shown at 1)")
        ax.set_title(f"{region} layers" if region == "middle" else "output")
    axes[0].set_ylabel("excess over matched controls\n(> 0: leans to the primary)")
    axes[1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = save_figure(fig, out_path, dpi=110, tight=False)
    plt.close(fig)
    return out
