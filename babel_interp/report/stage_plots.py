"""The stages figure: every per-checkpoint series on one training axis, the stages shaded.

The measured counterpart of the paper's Figure 1. Each series is min-max normalized to [0, 1] so
they share one y axis (their units differ); performance is drawn oriented so that up is better,
with the smoothed curve and the fitted segmented model the detector used. Stages are shaded,
uninformative checkpoints (below the competence gate) are hatched grey, and each boundary is a
vertical line with its bootstrap interval as a band. The x axis is the training step on a log
scale (symmetric-log when step 0 is present), since checkpoints are log-spaced.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

# A bare Figure (no pyplot): nothing opens a window or touches global figure state.
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from babel_interp.analysis.layers import ALIGNMENT_NOTE
from babel_interp.analysis.stages.detector import (
    STAGES,
    UNINFORMATIVE,
    StageAnalysis,
    StageResult,
    min_informative_checkpoints,
)
from babel_interp.report.figures import save_figure

__all__ = [
    "STAGE_COLORS",
    "plot_stage_analysis",
    "plot_stages",
    "stage_figure_name",
    "statistics_text",
]

STAGE_COLORS = {
    "translation": "#4daf4a",
    "transition": "#ff7f00",
    "stabilization": "#377eb8",
    UNINFORMATIVE: "#bbbbbb",
}
_SERIES_COLORS = ["#984ea3", "#e41a1c", "#a65628", "#f781bf", "#999999", "#66c2a5"]


def _normalize(v: np.ndarray) -> np.ndarray:
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return v
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo <= 0:
        return np.where(np.isfinite(v), 0.5, np.nan)
    return (v - lo) / (hi - lo)


def _edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around each checkpoint: geometric midpoints (arithmetic next to step 0), so a
    shaded checkpoint looks as wide as its neighbours on the log axis."""
    s = steps.astype(float)
    mids = []
    for a, b in zip(s[:-1], s[1:], strict=True):
        mids.append(math.sqrt(a * b) if a > 0 else (a + b) / 2)
    if len(s) == 1:
        return np.array([s[0] * 0.9, s[0] * 1.1 + 1])
    first = s[0] * s[0] / mids[0] if s[0] > 0 else s[0] - (mids[0] - s[0])
    last = s[-1] * s[-1] / mids[-1] if s[-1] > 0 else s[-1] + (s[-1] - mids[-1])
    return np.array([first, *mids, last])


def _runs(labels: list[str]) -> list[tuple[str, int, int]]:
    """Contiguous runs ``(label, first index, last index)``."""
    out: list[tuple[str, int, int]] = []
    for i, lab in enumerate(labels):
        if out and out[-1][0] == lab:
            out[-1] = (lab, out[-1][1], i)
        else:
            out.append((lab, i, i))
    return out


def _why_not_estimated(result: StageResult) -> str:
    """Why the detector left its statistics NaN, in words (the figure must never show "nan")."""
    cfg = result.config
    n_all = len(result.steps)
    n_ok = int(np.sum(result.informative))
    needed = min_informative_checkpoints(cfg)
    if n_ok >= needed:
        # Not a case the detector produces today; still say something true rather than "nan".
        return f"the detector did not compute it ({result.verdict})"
    why = f"{n_ok} informative checkpoint{'s' if n_ok != 1 else ''}, {needed} needed"
    if n_ok < n_all:
        why += (
            f" ({n_all - n_ok} of {n_all} below the competence gate: "
            f"{cfg.competence_series} < {cfg.competence_threshold:g})"
        )
    return why


def statistics_text(result: StageResult) -> str:
    """The figure's evidence line: noise sd, largest drawdown and its p-value.

    A statistic the detector could not compute is named with the reason instead of printed as
    ``nan`` (e.g. ``"noise sd and largest drawdown not estimated: 2 informative checkpoints, 7
    needed (5 of 7 below the competence gate: competence < 0.1)"``).
    """
    shown: list[str] = []
    missing: list[str] = []
    if math.isfinite(result.noise_sigma):
        shown.append(f"noise sd {result.noise_sigma:.3g}")
    else:
        missing.append("noise sd")
    if math.isfinite(result.dip_depth):
        drawdown = f"largest drawdown {result.dip_depth:.3g}"
        if math.isfinite(result.dip_p_value):
            drawdown += f" (p = {result.dip_p_value:.3g})"
        else:
            missing.append("its p-value")
        shown.append(drawdown)
    else:
        missing.append("largest drawdown")
    if missing:
        shown.append(f"{' and '.join(missing)} not estimated: {_why_not_estimated(result)}")
    return ", ".join(shown)


def plot_stages(
    result: StageResult,
    out_path: str | os.PathLike,
    title: str | None = None,
    sites: dict[str, str] | None = None,
) -> Path:
    """Draw ``result`` (from :func:`babel_interp.analysis.stages.detector.detect_stages`) to a
    PNG.

    ``sites`` names the layers each series summarizes (``{"working_language_excess": "mean
    over resid_pre 1-3", "transferring_neurons": "sum over mlp 0-3"}``); the legend shows them,
    and when both kinds of layer appear a note says how they align.

    The file is written through a temporary name and renamed, so a crash never leaves half a
    figure. Returns the path written.
    """
    steps = np.asarray(result.steps)
    if steps.size == 0:
        raise ValueError("nothing to plot: the stage result has no checkpoints")
    cfg = result.config
    fig = Figure(figsize=(9.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    edges = _edges(steps)
    for lab, i, j in _runs(result.labels):
        if lab not in STAGE_COLORS:
            continue
        ax.axvspan(
            edges[i],
            edges[j + 1],
            color=STAGE_COLORS[lab],
            alpha=0.18 if lab != UNINFORMATIVE else 0.35,
            hatch="//" if lab == UNINFORMATIVE else None,
            lw=0,
        )
    for name, interval in (
        ("translation_end", result.translation_end_interval),
        ("transition_end", result.transition_end_interval),
    ):
        step = getattr(result, name)
        if step is None:
            continue
        if interval is not None and interval[0] != interval[1]:
            ax.axvspan(interval[0], interval[1], color="black", alpha=0.08, lw=0)
        ax.axvline(step, color="black", ls="--", lw=1.2)

    d = cfg.performance_direction
    perf = d * np.asarray(result.series[cfg.performance], dtype=float)
    fitted = d * np.asarray(result.fitted, dtype=float)
    smoothed = d * np.asarray(result.smoothed, dtype=float)
    # One normalization for the raw, smoothed and fitted performance, so they overlay.
    both = np.concatenate([perf, smoothed[np.isfinite(smoothed)], fitted[np.isfinite(fitted)]])
    finite = both[np.isfinite(both)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    label = cfg.performance + ("" if d > 0 else " (inverted: lower is better)")
    ax.plot(steps, (perf - lo) / span, "o", color="black", ms=3.5, label=label, zorder=5)
    if np.isfinite(smoothed).any():
        ax.plot(steps, (smoothed - lo) / span, "-", color="black", lw=0.8, alpha=0.6)
    if np.isfinite(fitted).any():
        ax.plot(
            steps,
            (fitted - lo) / span,
            "-",
            color="black",
            lw=2.2,
            alpha=0.8,
            label="segmented fit",
        )
    others = [k for k in result.series if k != cfg.performance]
    for k, name in enumerate(others):
        v = np.asarray(result.series[name], dtype=float)
        if not np.isfinite(v).any():
            continue
        ok = np.isfinite(v)
        style = ":" if name == cfg.competence_series else "-"
        ax.plot(
            steps[ok],
            _normalize(v)[ok],
            style,
            marker=".",
            color=_SERIES_COLORS[k % len(_SERIES_COLORS)],
            lw=1.2,
            label=f"{name} ({sites[name]})" if sites and name in sites else name,
        )

    if steps.min() <= 0:
        pos = steps[steps > 0]
        ax.set_xscale("symlog", linthresh=float(pos.min()) if pos.size else 1.0)
    else:
        ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("training step")
    ax.set_ylabel("normalized value")
    conf = "" if result.confidence is None else f", boundary stability {result.confidence:.2f}"
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}{result.verdict}{conf}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    for lab in [*STAGES, UNINFORMATIVE]:
        if lab in result.labels:
            handles.append(
                Patch(
                    facecolor=STAGE_COLORS[lab],
                    alpha=0.35,
                    hatch="//" if lab == UNINFORMATIVE else None,
                )
            )
            labels.append(lab)
    ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    drawn = [sites[n] for n in others if sites and n in sites]
    if any("resid" in s for s in drawn) and any("mlp" in s for s in drawn):
        fig.text(0.01, 0.005, f"layers: {ALIGNMENT_NOTE}", fontsize=7, alpha=0.8)
    ax.text(
        0.01,
        0.01,
        statistics_text(result),
        transform=ax.transAxes,
        fontsize=7,
        va="bottom",
        alpha=0.8,
    )
    return save_figure(fig, out_path, dpi=120)


def stage_figure_name(language: str) -> str:
    """``stages_<language>.png``: the stage figure's file name in a run's figure directory."""
    return f"stages_{language}.png"


def plot_stage_analysis(
    analysis: StageAnalysis | str | os.PathLike,
    figures_dir: str | os.PathLike,
    language: str | None = None,
) -> Path:
    """Draw a run's stage analysis to ``figures_dir/stages_<language>.png``, titled with the
    language.

    ``analysis`` is what :func:`babel_interp.analysis.stages.detector.analyze_run` returned, or
    the directory it saved to (``RUN/analysis/stages``), read for ``language`` (default: the
    only one there). Returns the path written.
    """
    if not isinstance(analysis, StageAnalysis):
        analysis = StageAnalysis.load(analysis, language)
    out = Path(figures_dir) / stage_figure_name(analysis.language)
    return plot_stages(analysis.detection, out, title=analysis.language, sites=analysis.sites)
