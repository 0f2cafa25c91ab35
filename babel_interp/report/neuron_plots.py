"""Figures of the language-transferring-neuron analysis.

* counts per layer x checkpoint (a heatmap per neuron set);
* each set's total count over checkpoints beside its null (mean and 95% band, labelled with the
  null's kind: firing-rate-matched by default, label-shuffled in older tables) and the
  random-init model's count, so a reader sees at a glance whether a count means anything;
* Cohen's d per layer and checkpoint (primary minus target);
* the ablation loss change against the random same-size control.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects (no pyplot state) and saved through
a temporary file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning
from matplotlib.figure import Figure

from babel_interp.analysis.layers import mlp_site
from babel_interp.analysis.neurons.nulls import null_label
from babel_interp.analysis.neurons.transferring import NeuronAnalysisResult
from babel_interp.report.figures import panel_grid, save_figure

DEFINITION_ORDER = ("lape_shared", "primary_active", "primary_specific", "target_specific")


def _definitions(df: pd.DataFrame) -> list[str]:
    present = set(df["definition"])
    return [d for d in DEFINITION_ORDER if d in present] + sorted(present - set(DEFINITION_ORDER))


def _numeric_steps(df: pd.DataFrame) -> pd.DataFrame:
    # Random-init rows carry step "random_init"; checkpoints are plotted by their step number.
    steps = pd.to_numeric(df["step"], errors="coerce")
    return df[steps.notna()].assign(step=steps[steps.notna()].astype(int))


def plot_counts_heatmap(counts: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """One heatmap per neuron set: count per layer (rows) and checkpoint step (columns)."""
    df = _numeric_steps(counts)
    if df.empty:
        raise ValueError("no per-layer counts to plot")
    defs = _definitions(df)
    width = max(3.5, 1.2 + 0.5 * df["step"].nunique())
    fig = Figure(
        figsize=(width * len(defs), 0.8 + 0.35 * df["layer"].nunique() + 2.5), layout="constrained"
    )
    axes = fig.subplots(1, len(defs), squeeze=False)[0]
    for ax, name in zip(axes, defs, strict=True):
        grid = df[df["definition"] == name].pivot_table(
            index="layer", columns="step", values="count", aggfunc="sum"
        )
        grid.index = [mlp_site(layer) for layer in grid.index]
        sns.heatmap(grid, annot=grid.size <= 200, fmt="g", cmap="viridis", ax=ax, cbar=True)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("MLP layer (blocks.L.mlp.hook_post)")
    fig.suptitle("Neurons per layer and checkpoint")
    return save_figure(fig, out_path, dpi=120)


def plot_counts_vs_null(counts_total: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """Total count per set over checkpoints, with the null's band (named by its kind) and random
    init."""
    df = _numeric_steps(counts_total)
    if df.empty:
        raise ValueError("no counts to plot")
    defs = _definitions(df)
    fig = Figure(layout="constrained")
    axes = panel_grid(fig, len(defs))
    for ax, name in zip(axes, defs, strict=True):
        d = df[df["definition"] == name].sort_values("step")
        x = np.arange(len(d))
        ax.plot(x, d["count"], marker="o", color="C0", label="observed")
        if "null_mean" in d.columns and d["null_mean"].notna().any():
            label = null_label(d["null_kind"].iloc[0] if "null_kind" in d.columns else None)
            ax.plot(x, d["null_mean"], color="C1", ls="--", label=label)
            ax.fill_between(x, d["null_lo"], d["null_hi"], color="C1", alpha=0.25, lw=0)
        if "random_init_count" in d.columns and d["random_init_count"].notna().any():
            ax.axhline(
                float(d["random_init_count"].iloc[0]), color="C2", ls=":", label="random init"
            )
        ax.set_xticks(x, [str(s) for s in d["step"]], rotation=45, fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("neurons")
    axes[0].legend(fontsize=7)
    fig.suptitle("Neuron counts against their nulls")
    return save_figure(fig, out_path, dpi=120)


def plot_firing_rates(firing: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """Left: per layer, the share of neurons firing on more than half of all tokens, over
    checkpoints (random init dotted). Right: the histogram of activation probabilities at the
    last checkpoint, one line per layer."""
    if firing.empty:
        raise ValueError("no firing rates to plot")
    rand = firing[firing["step"].astype(str) == "random_init"]
    df = _numeric_steps(firing)
    hist_cols = [c for c in firing.columns if c.startswith("hist_")]
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    ax_share, ax_hist = fig.subplots(1, 2)
    for i, (layer, d) in enumerate(df.groupby("layer", sort=True)):
        d = d.sort_values("step")
        x = np.arange(len(d))
        ax_share.plot(x, d["share_over_half"], marker="o", color=f"C{i}", label=mlp_site(layer))
        r = rand[rand["layer"] == layer]
        if not r.empty:
            ax_share.axhline(float(r["share_over_half"].iloc[0]), color=f"C{i}", ls=":")
        if i == 0:
            ax_share.set_xticks(x, [str(s) for s in d["step"]], rotation=45, fontsize=7)
        last = d.iloc[-1]
        mids = [(float(c.split("_")[1]) + float(c.split("_")[2])) / 2 for c in hist_cols]
        ax_hist.plot(mids, [last[c] / last["n_neurons"] for c in hist_cols], color=f"C{i}")
    ax_share.set_xlabel("step")
    ax_share.set_ylabel("share of neurons firing on > half of tokens")
    ax_share.set_ylim(0, 1)
    ax_share.legend(fontsize=7)
    ax_hist.set_xlabel("activation probability (all tokens)")
    ax_hist.set_ylabel("share of neurons (last checkpoint)")
    fig.suptitle("Neuron firing rates (dotted: random init)")
    return save_figure(fig, out_path, dpi=120)


def plot_effect_sizes(
    effects: pd.DataFrame,
    out_path: str | os.PathLike,
    primary: str = "primary",
    target: str = "target",
    statistic: str = "cohens_d",
) -> Path:
    """Distribution of the per-neuron effect size by checkpoint, one box per layer."""
    if effects.empty or statistic not in effects.columns:
        raise ValueError(f"no {statistic} values to plot")
    df = effects.assign(step=effects["step"].astype(str), layer=effects["layer"].map(mlp_site))
    order = [str(s) for s in sorted(effects["step"].unique())]
    fig = Figure(
        figsize=(max(5.0, 0.8 * len(order) * df["layer"].nunique() ** 0.5), 3.8),
        layout="constrained",
    )
    ax = fig.subplots()
    with warnings.catch_warnings():
        # seaborn 0.13 passes matplotlib 3.11 a deprecated boxplot argument; nothing to act on.
        warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
        # Outliers are drawn: the few language-specific neurons are the point of the figure.
        sns.boxplot(
            data=df, x="step", y=statistic, hue="layer", order=order, ax=ax,
            flierprops={"marker": ".", "markersize": 3, "alpha": 0.6},
        )  # fmt: skip
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel(f"{statistic} ({primary} - {target})")
    ax.legend(title="MLP layer", fontsize=7, title_fontsize=7)
    fig.suptitle("Activation contrast per neuron")
    return save_figure(fig, out_path, dpi=120)


def plot_ablation(ablation: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """Loss change from ablating each set, against random same-size sets (mean, 95% range)."""
    if ablation.empty:
        raise ValueError("no ablation results to plot")
    sets = list(dict.fromkeys(ablation["set"]))
    langs = list(dict.fromkeys(ablation["language"]))
    fig = Figure(figsize=(4.0 * len(sets), 3.2 * len(langs)), layout="constrained")
    axes = fig.subplots(len(langs), len(sets), squeeze=False)
    for r, lang in enumerate(langs):
        for c, name in enumerate(sets):
            ax = axes[r][c]
            d = ablation[(ablation["set"] == name) & (ablation["language"] == lang)]
            d = d.sort_values("step")
            x = np.arange(len(d))
            ax.plot(x, d["delta"], marker="o", color="C3", label="set ablated")
            if "random_mean" in d.columns and d["random_mean"].notna().any():
                lo = (d["random_mean"] - d["random_lo"]).clip(lower=0)
                hi = (d["random_hi"] - d["random_mean"]).clip(lower=0)
                ax.errorbar(
                    x, d["random_mean"], yerr=[lo, hi], color="gray", capsize=3, fmt="s",
                    label="random sets",
                )  # fmt: skip
            ax.axhline(0.0, color="black", lw=0.6)
            # The set size changes between checkpoints: show it under each step.
            labels = [f"{s}\nn={n}" for s, n in zip(d["step"], d["set_size"], strict=True)]
            ax.set_xticks(x, labels, fontsize=7)
            ax.set_title(f"{name} / {lang} loss", fontsize=9)
            ax.set_ylabel("loss change (nats)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Causal check: ablation loss change")
    return save_figure(fig, out_path, dpi=120)


def plot_neuron_analysis(
    result: NeuronAnalysisResult | str | os.PathLike,
    fig_dir: str | os.PathLike,
    primary: str | None = None,
    target: str | None = None,
) -> list[Path]:
    """Every figure of a neuron analysis (the result, or the directory it was saved to) as
    ``fig_dir/neurons_*.png``; the paths drawn. ``primary``/``target`` label the effect sizes
    (default: the languages of the result's configuration)."""
    if not isinstance(result, NeuronAnalysisResult):
        result = NeuronAnalysisResult.load(result)
    primary = primary or result.primary
    target = target or result.target
    fig_dir = Path(fig_dir)
    paths: list[Path] = []
    if not result.counts.empty:
        paths.append(plot_counts_heatmap(result.counts, fig_dir / "neurons_counts_heatmap.png"))
    if not result.counts_total.empty:
        paths.append(plot_counts_vs_null(result.counts_total, fig_dir / "neurons_counts_null.png"))
    firing = result.firing_rates
    if not firing.empty and not _numeric_steps(firing).empty:
        paths.append(plot_firing_rates(firing, fig_dir / "neurons_firing_rates.png"))
    effects = result.effect_sizes()
    if not effects.empty:
        paths.append(
            plot_effect_sizes(effects, fig_dir / "neurons_effect_sizes.png", primary, target)
        )
    if not result.ablation.empty:
        paths.append(plot_ablation(result.ablation, fig_dir / "neurons_ablation.png"))
    return paths
