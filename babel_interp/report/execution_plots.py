"""pass@k curves: functional correctness over training, one panel per language.

Each curve is one run (e.g. the continued model and the scratch baseline) with its bootstrap
interval over problems as a band; the x axis is the training step (symmetric-log, since
checkpoints are log-spaced and step 0 is present).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from babel_interp.report.figures import save_figure

__all__ = ["plot_pass_at_k"]

_COLORS = ["#377eb8", "#e41a1c", "#4daf4a", "#984ea3", "#ff7f00", "#a65628"]


def plot_pass_at_k(
    tables: Mapping[str, pd.DataFrame] | pd.DataFrame,
    out_path: str | os.PathLike,
    k: int = 1,
    title: str | None = None,
) -> Path:
    """Draw pass@k against steps from ``pass_at_k.csv`` tables.

    ``tables`` maps a curve label (``"continued"``, ``"scratch"``) to a table with columns
    ``step, language, k, pass_at_k, ci_low, ci_high``; a single table is one unlabeled curve.
    """
    if isinstance(tables, pd.DataFrame):
        tables = {"": tables}
    tables = {name: df[df["k"] == k] for name, df in tables.items() if len(df)}
    langs = sorted({x for df in tables.values() for x in df["language"].unique()})
    if not langs:
        raise ValueError(f"no pass@{k} rows to draw")
    fig = Figure(figsize=(6.0 * len(langs), 4.2))
    axes = fig.subplots(1, len(langs), squeeze=False)[0]
    for ax, lang in zip(axes, langs, strict=True):
        for i, (name, df) in enumerate(tables.items()):
            d = df[df["language"] == lang].sort_values("step")
            if not len(d):
                continue
            color = _COLORS[i % len(_COLORS)]
            ax.plot(d["step"], d["pass_at_k"], marker="o", ms=3, color=color, label=name or None)
            ax.fill_between(d["step"], d["ci_low"], d["ci_high"], color=color, alpha=0.15)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"pass@{k}")
        ax.set_title(lang)
        ax.grid(alpha=0.3)
        if any(tables):
            ax.legend(loc="upper left", fontsize=8)
    if title and not (len(langs) == 1 and title == langs[0]):
        fig.suptitle(title)
    return save_figure(fig, out_path)
