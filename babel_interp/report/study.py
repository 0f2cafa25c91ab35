"""Cross-seed views of a Babel Tower study: the continued model against its from-scratch baseline
at equal steps, layer by layer, with confidence intervals across seeds.

The signature the study looks for is relative: at equal target-language steps, do the continued
model's middle layers lean toward the primary language's identifiers (excess over matched
controls near or above zero) while the scratch model's already lean to the target (below zero)?
These functions only read what the analyzers wrote under each run.

Intervals: with two or more seeds, a Student-t interval over the per-seed estimates (each seed is
one independent replicate of the whole pipeline); with one seed, that seed's bootstrap interval
over probes, marked as such (it does not cover seed-to-seed variation).
"""

from __future__ import annotations

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
from babel_interp.report.figures import save_figure  # noqa: E402
from babel_interp.report.training_plots import eval_records  # noqa: E402
from babel_interp.runs import METRICS, Run, Study  # noqa: E402
from babel_interp.runs import STUDY_KINDS as KINDS  # noqa: E402

# Decoded depths counted as "middle layers": strictly between the embedding (0) and the output (1).
MIDDLE = (0.0, 1.0)


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def layer_excess(root: str | os.PathLike, seeds: Sequence[int], lang: str) -> pd.DataFrame:
    """Per-seed excess over matched controls per kind, step and layer (first lens), with the
    checkpoint's competence flag; empty when nothing was analyzed."""
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
            depth = agg["layer_pos"] / max(float(agg["layer_pos"].max()), 1e-9)
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
                    }
                )
            )
    if not frames:
        return pd.DataFrame(
            columns=["seed", "kind", "step", "layer", "depth", "excess", "lo", "hi", "competent"]
        )
    return pd.concat(frames, ignore_index=True)


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
    df["depth"] = df["layer_pos"] / max(float(df["layer_pos"].max()), 1e-9)
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
    df["region"] = _region(df["depth"])
    per_init = df.groupby(["seed", "init_seed", "region"], as_index=False)["excess_matched"].mean()
    out = {}
    for region in ("middle", "output"):
        x = per_init.loc[per_init["region"] == region, "excess_matched"].to_numpy(float)
        if x.size >= 2:
            band = t_prediction_interval(x)
            out[region] = (float(band.low), float(band.high))
    return out


def _region(depth: pd.Series) -> pd.Series:
    return np.where(
        depth >= 1.0, "output", np.where((depth > MIDDLE[0]) & (depth < MIDDLE[1]), "middle", "emb")
    )


def common_steps(df: pd.DataFrame) -> set[int]:
    """The steps present for every kind (continued and scratch) in a table with ``kind`` and
    ``step`` columns: where the two runs can be compared."""
    return set.intersection(*(set(df.loc[df["kind"] == k, "step"]) for k in KINDS))


def equal_step_excess(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Excess per kind, step and layer across seeds, at the steps both kinds reached.

    Columns: kind, step, layer, depth, excess, lo, hi, n_seeds, interval ("seeds" or "probes"),
    competent_seeds (how many seeds passed the competence gate there).
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
            how = "probes"
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
        out["region"] = _region(out["depth"])
    return out


def region_excess(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Middle-layer and output excess per kind and equal step, across seeds: each seed's
    middle value is its mean over the middle layers, then seeds are combined as above."""
    if per_seed.empty:
        return pd.DataFrame()
    df = per_seed.assign(region=_region(per_seed["depth"]))
    df = df[df["region"] != "emb"]
    per = df.groupby(["kind", "step", "region", "seed"], as_index=False).agg(
        excess=("excess", "mean"), lo=("lo", "mean"), hi=("hi", "mean"), top1=("top1_acc", "mean")
    )
    steps = common_steps(per_seed)
    rows = []
    for (kind, step, region), g in per[per["step"].isin(steps)].groupby(["kind", "step", "region"]):
        if len(g) >= 2:
            ci = t_interval(g["excess"])
            m, lo, hi = ci.estimate, ci.low, ci.high
        else:
            m, lo, hi = (float(g[c].iloc[0]) for c in ("excess", "lo", "hi"))
        rows.append(
            {
                "kind": kind,
                "step": int(step),
                "region": region,
                "excess": m,
                "lo": lo,
                "hi": hi,
                "n_seeds": len(g),
                "top1_acc": float(g["top1"].mean()),
            }
        )
    return pd.DataFrame(rows)


def _fmt(m: float, lo: float, hi: float, sign: str = "+") -> str:
    if not np.isfinite(m):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m:{sign}.2f}"
    return f"{m:{sign}.2f} [{lo:{sign}.2f}, {hi:{sign}.2f}]"


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
) -> pd.DataFrame:
    """At every equal step: target tokens, validation loss (nats), probe top-1 and the
    middle/output excess of the continued and the scratch model, across seeds (``per_seed``:
    :func:`layer_excess` when the caller already read it)."""
    study = Study(Path(root))
    if per_seed is None:
        per_seed = layer_excess(study.root, seeds, lang)
    reg = region_excess(per_seed)
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
            row[f"{short}_loss"] = _fmt(ci.estimate, ci.low, ci.high, sign="")
            at = reg[(reg["kind"] == kind) & (reg["step"] == step)]
            for region in ("middle", "output"):
                r = at[at["region"] == region]
                row[f"{short}_{region}"] = (
                    _fmt(*r[["excess", "lo", "hi"]].iloc[0]) if len(r) else ""
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
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.4 * len(chosen), 3.2), squeeze=False)
    colors = {"continual": "tab:blue", "scratch": "tab:orange"}
    for ax, step in zip(axes[0], chosen, strict=True):
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
    axes[0][0].set_ylabel("excess log P(primary)/P(target)\nover matched controls")
    axes[0][-1].legend(loc="best", fontsize=8)
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
