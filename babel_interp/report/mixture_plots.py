"""Figures for the mixture comparison: final bits per byte per language, and learning curves.

:func:`plot_harness_result` draws every figure of an evaluation-harness result
(:func:`babel_interp.optimizer.harness.evaluate_mixtures`) beside its tables.

Error bars are the 95% Student-t interval over seeds, computed here from the per-seed values
(seaborn's own ``errorbar=("ci", 95)`` is a bootstrap, which with three seeds understates the
uncertainty; the table and the figure must show the same interval).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import seaborn as sns

# Figures are built on a bare Figure (no pyplot): nothing opens a window or depends on the
# interactive backend, and no global figure state leaks into a user's notebook.
from matplotlib.figure import Figure

from babel_interp.analysis.stats import t_interval
from babel_interp.report.figures import save_figure

if TYPE_CHECKING:  # for the annotation only: drawing needs the result, not the harness
    from babel_interp.optimizer.harness import HarnessResult

REALIZED_SHARES_TITLE = "share of training tokens (realized, mean over seeds)"


def plot_harness_result(result: HarnessResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """The harness's figures under ``out_dir`` (its output directory): ``comparison.png``
    (:func:`plot_mixture_comparison` with each mixture's realized token shares) and, when the
    loss proxy was calibrated, ``calibration.png`` (:func:`plot_calibration`). Returns
    ``{"figure": ..., "calibration_figure": ...}`` for the figures drawn, and
    ``verdicts_figure`` (:func:`plot_verdicts`) when the verdicts were computed."""
    out = Path(out_dir)
    paths = {
        "figure": plot_mixture_comparison(
            result.per_seed,
            result.curves,
            result.languages,
            out / "comparison.png",
            weights=result.shares,
            weights_title=REALIZED_SHARES_TITLE,
        )
    }
    if not result.verdicts.empty and "macro_bpb_d" in result.verdicts.columns:
        paths["verdicts_figure"] = plot_verdicts(result.verdicts, out / "verdicts.png")
    points = result.calibration_points
    if not points.empty:
        paths["calibration_figure"] = plot_calibration(
            points["proxy"].tolist(),
            points["measured"].tolist(),
            out / "calibration.png",
            points["language"].tolist(),
        )
    return paths


def plot_verdicts(verdicts: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """Each mixture's paired difference from the best simple baseline, with its 95% interval
    over seeds: macro bits/byte (left; below 0 is better) and, when measured, macro pass@1
    (right; above 0 is better). The baseline itself is the zero line."""
    d = verdicts[verdicts["macro_bpb_d"].notna()].iloc[::-1]
    best = verdicts.loc[verdicts["macro_bpb_d"].isna(), "mixture"]
    measures = [("macro_bpb", "macro bits/byte difference (< 0 better)")]
    if "pass_at_1_d" in d.columns and d["pass_at_1_d"].notna().any():
        measures.append(("pass_at_1", "macro pass@1 difference (> 0 better)"))
    fig = Figure(figsize=(5.6 * len(measures), 0.45 * len(d) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    y = np.arange(len(d))
    colors = ["tab:blue" if k == "simple baseline" else "tab:red" for k in d["kind"]]
    for ax, (m, label) in zip(axes, measures, strict=True):
        est, lo, hi = (d[f"{m}_d{s}"].to_numpy(float) for s in ("", "_lo", "_hi"))
        for yi, e, a, b, c in zip(y, est, lo, hi, colors, strict=True):
            ax.plot([a, b], [yi, yi], color=c, lw=2)  # NaN bounds (one seed) draw nothing
            ax.plot([e], [yi], "o", color=c)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(y, d["mixture"])
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    name = best.iloc[0] if len(best) else "the best simple baseline"
    fig.suptitle(f"Against {name}, paired by seed (95% CI; blue: simple baselines)")
    return save_figure(fig, out_path, dpi=120)


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


def _interval_points(
    ax, data: pd.DataFrame, x: str, hue: str, y: str, order, hue_order, palette
) -> None:
    """Dodged means with Student-t 95% intervals: points, not bars, so the axis need not
    start at 0 and differences of a few hundredths stay visible."""
    n_hue = len(hue_order)
    width = 0.8 / n_hue
    for hi, h in enumerate(hue_order):
        xs, means, halves = [], [], []
        for xi, xv in enumerate(order):
            vals = data[(data[x] == xv) & (data[hue] == h)][y].dropna().to_numpy()
            if vals.size == 0:
                continue
            ci = t_interval(vals)
            xs.append(xi - 0.4 + width * (hi + 0.5))
            means.append(ci.estimate)
            halves.append(ci.half_width if np.isfinite(ci.half_width) else 0.0)
        ax.errorbar(
            xs, means, yerr=halves, fmt="o", ms=4, capsize=2, lw=1, color=palette[hi], label=h
        )
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order)
    for xi in range(len(order) - 1):
        ax.axvline(xi + 0.5, color="0.9", lw=0.8, zorder=0)


def plot_mixture_comparison(
    per_seed: pd.DataFrame,
    curves: pd.DataFrame,
    languages: Sequence[str],
    out_path: str | os.PathLike,
    weights: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "Mixtures at an equal token budget",
    weights_title: str = "share of training tokens",
) -> Path:
    """Write the comparison figure (PNG) and return its path.

    Panels: final bits per byte per language (and macro, worst) with 95% intervals over seeds;
    the macro-average learning curve of each mixture; and, when ``weights`` (mixture -> language
    -> share) is given, those shares. ``per_seed``:
    :func:`babel_interp.optimizer.summary.per_seed_measures`; ``curves``: columns ``mixture,
    seed, tokens, language, val_bpb``.
    """
    if per_seed.empty or curves.empty:
        raise ValueError("nothing to plot: per_seed and curves must not be empty")
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = _comparison_figure(per_seed, curves, languages, weights, title, weights_title)
    return save_figure(fig, out_path, dpi=130)


def _comparison_figure(per_seed, curves, languages, weights, title, weights_title) -> Figure:
    mixtures = list(dict.fromkeys(per_seed["mixture"]))
    palette = sns.color_palette("tab10", len(mixtures))
    # Two panels side by side at most (each stays readable in the report); with the weights
    # panel, the fourth cell of the 2 x 2 grid holds the legend.
    nrows = 2 if weights else 1
    fig = Figure(figsize=(11.5, 4.0 * nrows))
    grid = fig.subplots(nrows, 2, squeeze=False, gridspec_kw={"wspace": 0.28, "hspace": 0.45})
    axes = [ax for line in grid for ax in line]
    final = _long_final(per_seed, languages)
    order = [lang for lang in languages if lang in set(final["language"])] + ["macro", "worst"]
    _interval_points(axes[0], final, "language", "mixture", "bpb", order, mixtures, palette)
    axes[0].set_title("final validation bits/byte (mean, 95% CI over seeds)")
    axes[0].set_ylabel("bits per byte (lower is better)")
    axes[0].tick_params(axis="x", rotation=30)

    # Macro average over languages per evaluation, then the mean over seeds.
    macro = curves.groupby(["mixture", "seed", "tokens"], as_index=False)["val_bpb"].mean()
    macro = macro.groupby(["mixture", "tokens"], as_index=False)["val_bpb"].mean()
    for i, m in enumerate(mixtures):
        c = macro[(macro["mixture"] == m) & (macro["tokens"] > 0)].sort_values("tokens")
        axes[1].plot(c["tokens"], c["val_bpb"], color=palette[i], lw=1.3, label=m)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_title("macro-average validation bits/byte (mean over seeds)")
    axes[1].set_xlabel("training tokens")
    axes[1].set_ylabel("bits per byte")
    if weights:
        w = pd.DataFrame(
            [
                {"mixture": m, "language": lang, "share": float(v)}
                for m, ws in weights.items()
                for lang, v in ws.items()
            ]
        )
        hue_order = [m for m in mixtures if m in weights]
        sns.barplot(
            data=w,
            x="language",
            y="share",
            hue="mixture",
            hue_order=hue_order,
            palette=[palette[mixtures.index(m)] for m in hue_order],
            order=[lang for lang in languages if lang in set(w["language"])],
            ax=axes[2],
        )
        axes[2].set_title(weights_title)
        axes[2].set_xlabel("")
        axes[2].set_ylabel("share")
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    if weights:
        axes[3].set_axis_off()
        axes[3].legend(handles, labels, loc="center", fontsize=9, frameon=False)
    else:
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
        fig.subplots_adjust(right=1.0 - 1.3 / 11.5)
    fig.suptitle(title)
    return fig


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
    return save_figure(fig, out_path, dpi=130)
