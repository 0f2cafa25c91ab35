"""Figures for the mixture comparison: final bits per byte per language, and learning curves.

Error bars are the 95% Student-t interval over seeds, computed here from the per-seed values
(seaborn's own ``errorbar=("ci", 95)`` is a bootstrap, which with three seeds understates the
uncertainty; the table and the figure must show the same interval).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

# Figures are built on a bare Figure (no pyplot): nothing opens a window or depends on the
# interactive backend, and no global figure state leaks into a user's notebook.
from matplotlib.figure import Figure

from babel_interp.optimizer.stats import mean_ci


def _long_final(per_seed: pd.DataFrame, languages: Sequence[str]) -> pd.DataFrame:
    cols = [f"bpb:{lang}" for lang in languages if f"bpb:{lang}" in per_seed.columns]
    long = per_seed.melt(
        id_vars=["mixture", "seed"], value_vars=cols, var_name="language", value_name="bpb"
    )
    long["language"] = long["language"].str.removeprefix("bpb:")
    extra = per_seed.melt(
        id_vars=["mixture", "seed"],
        value_vars=["macro_bpb", "worst_bpb"],
        var_name="language",
        value_name="bpb",
    )
    extra["language"] = extra["language"].map({"macro_bpb": "macro", "worst_bpb": "worst"})
    return pd.concat([long, extra], ignore_index=True)


def _interval_bars(ax, data: pd.DataFrame, x: str, hue: str, y: str, order, hue_order) -> None:
    """Bars of the mean with Student-t 95% intervals, grouped like ``sns.barplot``."""
    sns.barplot(
        data=data, x=x, y=y, hue=hue, order=order, hue_order=hue_order, errorbar=None, ax=ax
    )
    n_hue = len(hue_order)
    width = 0.8 / n_hue
    for hi, h in enumerate(hue_order):
        for xi, xv in enumerate(order):
            vals = data[(data[x] == xv) & (data[hue] == h)][y].dropna().to_numpy()
            if vals.size < 2:
                continue
            ci = mean_ci(vals)
            pos = xi - 0.4 + width * (hi + 0.5)
            ax.errorbar(pos, ci.mean, yerr=ci.half_width, color="black", capsize=3, lw=1)


def plot_mixture_comparison(
    per_seed: pd.DataFrame,
    curves: pd.DataFrame,
    languages: Sequence[str],
    out_path: str | os.PathLike,
    weights: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "Mixtures at an equal token budget",
) -> Path:
    """Write the comparison figure (PNG) and return its path.

    ``per_seed``: :func:`babel_interp.optimizer.summary.per_seed_measures`; ``curves``: columns
    ``mixture, seed, tokens, language, val_bpb``; ``weights``: mixture -> language -> weight.
    """
    if per_seed.empty or curves.empty:
        raise ValueError("nothing to plot: per_seed and curves must not be empty")
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = _comparison_figure(per_seed, curves, languages, weights, title)
    return _save(fig, out_path)


def _comparison_figure(per_seed, curves, languages, weights, title) -> Figure:
    mixtures = list(dict.fromkeys(per_seed["mixture"]))
    n_panels = 3 if weights else 2
    fig = Figure(figsize=(5.2 * n_panels, 4.0))
    axes = fig.subplots(1, n_panels, gridspec_kw={"wspace": 0.3})
    final = _long_final(per_seed, languages)
    order = [lang for lang in languages if lang in set(final["language"])] + ["macro", "worst"]
    _interval_bars(axes[0], final, "language", "mixture", "bpb", order, mixtures)
    axes[0].set_title("final validation bits/byte (95% CI over seeds)")
    axes[0].set_xlabel("")
    axes[0].tick_params(axis="x", rotation=30)

    sns.lineplot(
        data=curves,
        x="tokens",
        y="val_bpb",
        hue="mixture",
        style="language",
        hue_order=mixtures,
        errorbar=None,
        estimator="mean",
        ax=axes[1],
    )
    axes[1].set_title("validation bits/byte vs training tokens (mean over seeds)")
    axes[1].set_xlabel("training tokens")
    if weights:
        w = pd.DataFrame(
            [
                {"mixture": m, "language": lang, "weight": float(v)}
                for m, ws in weights.items()
                for lang, v in ws.items()
            ]
        )
        sns.barplot(
            data=w,
            x="language",
            y="weight",
            hue="mixture",
            hue_order=[m for m in mixtures if m in weights],
            ax=axes[2],
        )
        axes[2].set_title("sampling weights")
        axes[2].set_xlabel("")
    for ax in axes:
        legend = ax.get_legend()
        if legend is not None:
            legend.set_title(None)
            for text in legend.get_texts():
                text.set_fontsize(7)
    fig.suptitle(title)
    return fig


def _save(fig: Figure, out_path: str | os.PathLike) -> Path:
    """Save through a temporary file, so a crash never leaves half an image under the name."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, out)
    return out


def plot_calibration(
    proxy: Sequence[float],
    measured: Sequence[float],
    out_path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    title: str = "loss proxy vs measured working-language share",
) -> Path:
    """Scatter of the loss proxy against the measured share, with the identity and 1 - x lines."""
    df = pd.DataFrame(
        {
            "proxy": np.asarray(proxy, float),
            "measured": np.asarray(measured, float),
            "language": list(labels) if labels is not None else ["all"] * len(proxy),
        }
    )
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(4.5, 4.0))
        ax = fig.subplots()
        sns.scatterplot(data=df, x="proxy", y="measured", hue="language", ax=ax)
        grid = np.linspace(0, 1, 2)
        ax.plot(grid, grid, ls="--", color="grey", lw=1, label="measured = proxy")
        ax.plot(grid, 1 - grid, ls=":", color="grey", lw=1, label="measured = 1 - proxy")
        ax.set_xlabel("loss proxy P(l) = (alpha - l) / (alpha - beta)")
        ax.set_ylabel("measured primary working-language share")
        ax.set_title(title)
        ax.legend(fontsize=7)
    return _save(fig, out_path)
