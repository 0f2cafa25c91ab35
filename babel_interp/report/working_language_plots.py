"""Figures of the working-language analysis.

Per lens: a heatmap of the primary-language share (layer x checkpoint), a heatmap of the excess
over matched controls, and line plots of both against depth with one line per checkpoint and
bootstrap bands; plus the competence curve with its gate. Checkpoints below the competence gate
are hatched in heatmaps and dashed in line plots: their probes say little.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state), so plotting from a
worker thread or a headless machine needs no backend set-up, and each file is written under a
temporary name and renamed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from babel_interp.analysis.layers import residual_site
from babel_interp.analysis.working_language.logit_lens import (
    AGGREGATE_CSV,
    COMPETENCE_CSV,
    WorkingLanguageResult,
)
from babel_interp.report.figures import save_figure


def _step_labels(df: pd.DataFrame) -> list[str]:
    steps = sorted(df["step"].fillna(-1).astype(int).unique())
    return ["model" if s < 0 else str(s) for s in steps]


def _grid(agg: pd.DataFrame, value: str) -> pd.DataFrame:
    df = agg.assign(_step=agg["step"].fillna(-1).astype(int))
    grid = df.pivot_table(index=["layer_pos", "layer"], columns="_step", values=value)
    grid = grid.sort_index(level="layer_pos", ascending=False)
    grid.index = [residual_site(name) for _, name in grid.index]
    grid.columns = ["model" if s < 0 else str(s) for s in grid.columns]
    return grid


def _uninformative(agg: pd.DataFrame) -> set[str]:
    if "competent" not in agg:
        return set()
    df = agg.assign(_step=agg["step"].fillna(-1).astype(int))
    bad = df.loc[~df["competent"].astype(bool), "_step"].unique()
    return {"model" if s < 0 else str(s) for s in bad}


def heatmap(
    agg: pd.DataFrame, value: str, title: str, center: float, path: Path, label: str
) -> Path:
    """A layer x checkpoint heatmap of ``value``; uninformative checkpoints hatched."""
    grid = _grid(agg, value)
    fig = Figure(figsize=(max(4.0, 0.6 * grid.shape[1] + 3), max(3.0, 0.35 * grid.shape[0] + 1.5)))
    ax = fig.subplots()
    finite = np.abs(grid.to_numpy(float) - center)
    span = float(np.nanmax(finite)) if np.isfinite(finite).any() else 1.0
    with warnings.catch_warnings():
        # seaborn 0.13 calls a matplotlib colormap method that 3.10+ marks for deprecation.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(
            grid,
            ax=ax,
            cmap="RdBu_r",
            center=center,
            vmin=center - (span or 1.0),
            vmax=center + (span or 1.0),
            annot=grid.size <= 200,
            fmt=".2f",
            cbar_kws={"label": label},
        )
    bad = _uninformative(agg)
    for j, col in enumerate(grid.columns):
        if col in bad:
            ax.add_patch(
                Rectangle((j, 0), 1, grid.shape[0], fill=False, hatch="///", edgecolor="0.4", lw=0)
            )
    ax.set_xlabel("checkpoint step" + (" (hatched: below competence gate)" if bad else ""))
    ax.set_ylabel("residual stream (resid_pre L: entering block L)")
    ax.set_title(title)
    return save_figure(fig, path, dpi=150)


def depth_lines(agg: pd.DataFrame, lens: str, path: Path) -> Path:
    """Share and excess against depth, one line per checkpoint, with bootstrap bands."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    steps = sorted(agg["step"].fillna(-1).astype(int).unique())
    palette = sns.color_palette("viridis", n_colors=max(len(steps), 1))
    bad = _uninformative(agg)
    panels = (
        ("share_primary", "share P(primary) > P(target)", "primary-language share", 0.5),
        ("excess_matched", "excess log-ratio", "excess over matched controls", 0.0),
    )
    for ax, (value, ylabel, title, ref) in zip(axes, panels, strict=True):
        for colour, step in zip(palette, steps, strict=True):
            d = agg[agg["step"].fillna(-1).astype(int) == step].sort_values("layer_pos")
            name = "model" if step < 0 else str(step)
            style = "--" if name in bad else "-"
            ax.plot(d["layer_pos"], d[value], style, color=colour, marker="o", ms=3, label=name)
            lo, hi = d.get(f"{value}_lo"), d.get(f"{value}_hi")
            if lo is not None and hi is not None:
                ax.fill_between(d["layer_pos"], lo, hi, color=colour, alpha=0.12, lw=0)
        ax.axhline(ref, color="0.5", lw=0.8)
        ax.set_xlabel("depth (resid_pre of block L = L; output = n_layers)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    axes[1].legend(title="step (dashed: not competent)", fontsize=7, title_fontsize=7)
    fig.suptitle(f"working language by depth ({lens} lens)")
    return save_figure(fig, path, dpi=150)


def competence_curve(comp: pd.DataFrame, path: Path) -> Path:
    """Output top-1 / top-5 accuracy on the probe identifiers over checkpoints, with the gate."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    d = comp.assign(_step=comp["step"].fillna(-1).astype(int)).sort_values("_step")
    for metric, colour in (("top1_acc", "C0"), ("top5_acc", "C1")):
        ax.plot(d["_step"], d[metric], marker="o", color=colour, label=metric.replace("_", " "))
        ax.fill_between(
            d["_step"], d[f"{metric}_lo"], d[f"{metric}_hi"], color=colour, alpha=0.15, lw=0
        )
    if len(d):
        thr, metric = float(d["threshold"].iloc[0]), str(d["metric"].iloc[0])
        ax.axhline(thr, color="C3", ls=":", label=f"gate ({metric} >= {thr:g})")
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("accuracy on the identifier's first token")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("competence at the output")
    return save_figure(fig, path, dpi=150)


def plot_working_language(
    aggregate: pd.DataFrame,
    competence: pd.DataFrame | None,
    out_dir: str | os.PathLike,
    prefix: str = "working_language",
) -> list[Path]:
    """Write every working-language figure for ``aggregate`` (and ``competence``) to ``out_dir``.

    Returns the paths written. ``aggregate`` is :meth:`WorkingLanguageResult.aggregate`'s table.
    """
    if aggregate is None or aggregate.empty:
        raise ValueError("nothing to plot: the aggregate table is empty")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lens, agg in aggregate.groupby("lens", sort=True):
        paths.append(
            heatmap(
                agg,
                "share_primary",
                f"primary-language share ({lens} lens)",
                0.5,
                out / f"{prefix}_share_{lens}.png",
                "share P(primary) > P(target)",
            )
        )
        if agg["excess_matched"].notna().any():
            paths.append(
                heatmap(
                    agg,
                    "excess_matched",
                    f"excess over matched controls ({lens} lens)",
                    0.0,
                    out / f"{prefix}_excess_{lens}.png",
                    "excess mean log(P_primary / P_target)",
                )
            )
        paths.append(depth_lines(agg, str(lens), out / f"{prefix}_depth_{lens}.png"))
    if competence is not None and not competence.empty:
        paths.append(competence_curve(competence, out / f"{prefix}_competence.png"))
    return paths


def plot_working_language_run(
    result: WorkingLanguageResult | str | os.PathLike,
    fig_dir: str | os.PathLike,
    prefix: str = "working_language",
) -> list[Path]:
    """Every figure of a working-language analysis as ``fig_dir/<prefix>_*.png``; the paths
    drawn.

    ``result`` is the analyzer's result, or the directory it was saved to
    (``RUN/analysis/working_language/``), whose ``aggregate.csv`` and ``competence.csv`` are
    drawn as saved.
    """
    if isinstance(result, WorkingLanguageResult):
        aggregate, competence = result.aggregate(), result.competence()
    else:
        d = Path(result)
        if not (d / AGGREGATE_CSV).is_file():
            raise FileNotFoundError(
                f"{d / AGGREGATE_CSV} is missing: run `analyze working-language` first"
            )
        aggregate = pd.read_csv(d / AGGREGATE_CSV)
        competence = pd.read_csv(d / COMPETENCE_CSV) if (d / COMPETENCE_CSV).is_file() else None
    return plot_working_language(aggregate, competence, fig_dir, prefix)
