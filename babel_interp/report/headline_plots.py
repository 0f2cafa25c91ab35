"""The study report's first figure: per new language, the signal the verdict rests on.

One row per language. Left: the middle layers' excess toward the primary over matched controls
against steps, continued vs. from scratch, with 95% intervals, the band where one random-init
model falls, and the first competent checkpoint marked. Right, where execution ran: pass@1 of
the same two models against steps. Two panel columns at most, so each panel is wide enough to
read at the report's width.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from babel_interp.report.figures import save_figure

_COLORS = {"continual": "tab:blue", "scratch": "tab:orange"}
_LABELS = {"continual": "continued", "scratch": "from scratch"}


@dataclass
class HeadlineRow:
    """What one language's row draws.

    ``regions``: :func:`babel_interp.report.study.region_excess` rows (kind, step, region,
    excess, lo, hi); ``random_band``: the middle region's (lo, hi) for one random-init model;
    ``first_competent``: the verdict's step; ``pass_at_1``: per kind, a table with step,
    pass_at_k, ci_low, ci_high (means over seeds where there are several).
    """

    language: str
    regions: pd.DataFrame
    verdict: str = ""
    random_band: tuple[float, float] | None = None
    first_competent: int | None = None
    pass_at_1: Mapping[str, pd.DataFrame] = field(default_factory=dict)


def plot_headline(
    rows: Sequence[HeadlineRow], primary: str, out_path: str | os.PathLike
) -> Path | None:
    """Draw the headline figure; None when no language has a working-language result."""
    rows = [r for r in rows if not r.regions.empty]
    if not rows:
        return None
    with_exec = any(r.pass_at_1 for r in rows)
    ncols = 2 if with_exec else min(2, len(rows))
    nrows = len(rows) if with_exec else -(-len(rows) // ncols)
    fig = Figure(figsize=(5.6 * ncols, 3.3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = [ax for line in axes for ax in line]
    for i, row in enumerate(rows):
        ax = axes[i][0] if with_exec else flat[i]
        _excess_panel(ax, row, primary)
        if with_exec:
            _pass_panel(axes[i][1], row)
    for ax in flat[len(rows) * (2 if with_exec else 1) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, out_path, dpi=100, tight=False)


def _x(steps: pd.Series) -> pd.Series:
    return steps.clip(lower=1)  # log axis: step 0 is drawn at 1


def _excess_panel(ax, row: HeadlineRow, primary: str) -> None:
    mid = row.regions[row.regions["region"] == "middle"]
    if row.random_band is not None:
        lo, hi = row.random_band
        ax.axhspan(lo, hi, color="grey", alpha=0.25, label="random init (one model)")
    for kind in ("continual", "scratch"):
        g = mid[mid["kind"] == kind].sort_values("step")
        if g.empty:
            continue
        ax.plot(
            _x(g["step"]), g["excess"], marker="o", ms=4, color=_COLORS[kind], label=_LABELS[kind]
        )
        if g["lo"].notna().all():
            ax.fill_between(_x(g["step"]), g["lo"], g["hi"], color=_COLORS[kind], alpha=0.2)
    if row.first_competent is not None:
        ax.axvline(
            max(row.first_competent, 1), color="black", ls="--", lw=1, label="first competent"
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"{row.language} steps (0 drawn at 1)")
    ax.set_ylabel(f"middle-layer excess\n(> 0: leans to {primary})")
    title = row.language + (f": {row.verdict}" if row.verdict else "")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)


def _pass_panel(ax, row: HeadlineRow) -> None:
    if not row.pass_at_1:
        ax.text(0.5, 0.5, "execution not run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    for kind, d in row.pass_at_1.items():
        d = d.sort_values("step")
        color = _COLORS.get(kind, "black")
        ax.plot(
            _x(d["step"]),
            d["pass_at_k"],
            marker="o",
            ms=4,
            color=color,
            label=_LABELS.get(kind, kind),
        )
        ax.fill_between(_x(d["step"]), d["ci_low"], d["ci_high"], color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{row.language} steps (0 drawn at 1)")
    ax.set_ylabel("pass@1 (executed)")
    ax.set_title(f"{row.language}: pass@1 on held-out problems")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
