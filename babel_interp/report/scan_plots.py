"""The scale scan's phase diagram: signature strength over depth x primary tokens.

One panel per corpus and width (the synthetic and real-code scans side by side). Each cell is
coloured by the continued − scratch difference of the middle layers' excess over matched
controls at the first competent checkpoint (the study's verdict,
:mod:`babel_interp.report.verdict`), and carries the number, its 95% interval, the verdict and
the step where the competence gate was first passed. A cell with no verdict (its model never
passed the gate, or it has no middle layer) is hatched: there the working-language signal is
not interpreted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from babel_interp.formatting import fmt_count, fmt_number
from babel_interp.report.figures import panel_grid, save_figure
from babel_interp.report.verdict import INSUFFICIENT, SIGNATURE

# How a verdict reads inside a cell (short, so the number and its interval fit).
_MARK = {SIGNATURE: "signature", "no signature": "no signature", "not run": "not run"}


def _mark(row: dict[str, Any]) -> str:
    """The cell's short label; "insufficient data" says which kind."""
    verdict = str(row.get("verdict", "not run"))
    if verdict != INSUFFICIENT:
        return _MARK.get(verdict, verdict)
    reason = str(row.get("reason", ""))
    if "competence gate" in reason:
        best = row.get("best_top1")
        return "never competent" + (f"\nbest top-1 {float(best):.0%}" if _finite(best) else "")
    if "middle-layer value" in reason:
        return "no middle layer"
    return "no verdict"


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def plot_phase_diagram(
    rows: Sequence[dict[str, Any]], out_path: str | os.PathLike, target: str = "php"
) -> Path:
    """Draw the scan's rows (:func:`babel_interp.experiments.scan.scan_table`, of one scan or
    of several) to ``out_path``; returns the path."""
    if not rows:
        raise ValueError("the scan has no cells to draw")
    # The synthetic corpus (the positive control) first, then real code.
    panels = sorted(
        {(str(r.get("corpus", "synthetic")), int(r["d_model"])) for r in rows},
        key=lambda p: (p[0] != "synthetic", p),
    )
    diffs = [abs(float(r["difference"])) for r in rows if _finite(r.get("difference"))]
    vmax = max(diffs) if diffs else 1.0
    n_tokens = max(
        len(
            {
                int(r["primary_tokens"])
                for r in rows
                if (r.get("corpus", "synthetic"), int(r["d_model"])) == p
            }
        )
        for p in panels
    )
    fig = Figure()
    axes = panel_grid(fig, len(panels), ncols=2, panel_size=(1.9 * n_tokens + 1.6, 5.0))
    image = None
    for ax, (corpus, width) in zip(axes, panels, strict=True):
        mine = [
            r
            for r in rows
            if str(r.get("corpus", "synthetic")) == corpus and int(r["d_model"]) == width
        ]
        depths = sorted({int(r["n_layers"]) for r in mine})
        tokens = sorted({int(r["primary_tokens"]) for r in mine})
        grid = np.full((len(depths), len(tokens)), np.nan)
        for r in mine:
            i, j = depths.index(int(r["n_layers"])), tokens.index(int(r["primary_tokens"]))
            verdict = str(r.get("verdict", "not run"))
            if _finite(r.get("difference")):
                grid[i, j] = float(r["difference"])
                text = (
                    f"{fmt_number(float(r['difference']), signed=True)}\n"
                    f"[{fmt_number(float(r['difference_lo']), signed=True)}, "
                    f"{fmt_number(float(r['difference_hi']), signed=True)}]\n"
                    f"{_mark(r)}\nstep {int(r['step'])}"
                )
            else:
                text = _mark(r)
                if verdict in (INSUFFICIENT, "not run"):
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", color="0.7", lw=0
                        )
                    )
            weight = "bold" if verdict == SIGNATURE else "normal"
            dark = math.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * vmax
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7.5,
                weight=weight,
                color="white" if dark else "black",
            )
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower", aspect="auto")
        ax.set_xticks(range(len(tokens)), [fmt_count(t) for t in tokens])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        n_seeds = sorted({int(r.get("n_seeds", 0)) for r in mine})
        ax.set_xlabel("Python tokens before the new language")
        ax.set_ylabel("layers")
        ax.set_title(
            f"{corpus} code, d_model {width} (seeds per cell: {', '.join(map(str, n_seeds))})",
            fontsize=9,
        )
    fig.suptitle(
        f"Continued − scratch middle-layer excess toward Python on {target}, at the first "
        "competent checkpoint (95% CI)",
        fontsize=10,
    )
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8)
        bar.set_label("difference in excess toward Python (nats)")
    return save_figure(fig, out_path)
