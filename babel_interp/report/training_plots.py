"""Per-language training curves: validation loss (and bits per byte) against target tokens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from babel_interp.analysis.stages.efficiency import metric_value  # noqa: E402
from babel_interp.report.figures import panel_grid, save_figure  # noqa: E402
from babel_interp.runs import Run  # noqa: E402


def eval_records(run: Run | str | os.PathLike) -> pd.DataFrame:
    """Long table of a run's evaluations: step, total tokens, language, val_loss, val_bpb."""
    rows = []
    for rec in Run.of(run).metrics():
        if rec.get("type") != "eval":
            continue
        for lang, loss in rec.get("val_loss", {}).items():
            rows.append(
                {
                    "step": int(rec["step"]),
                    "tokens": int(rec.get("tokens", 0)),
                    "language": lang,
                    "val_loss": metric_value(loss),
                    "val_bpb": metric_value(rec.get("val_bpb", {}).get(lang)),
                }
            )
    df = pd.DataFrame(rows, columns=["step", "tokens", "language", "val_loss", "val_bpb"])
    return df.drop_duplicates(["step", "language"], keep="last")


def plot_training_curves(
    runs: Mapping[str, str | os.PathLike],
    out_path: str | os.PathLike,
    languages: list[str] | None = None,
    metric: str = "val_loss",
) -> Path | None:
    """One panel per language; one line per run (e.g. continued vs. from scratch), log-x steps.

    Returns ``None`` when no run has evaluations to draw.
    """
    frames = []
    for name, run in runs.items():
        df = eval_records(run)
        if not df.empty:
            frames.append(df.assign(run=name))
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    if languages:
        data = data[data["language"].isin(languages)]
    langs = list(dict.fromkeys(data["language"]))
    n = max(len(langs), 1)
    fig = plt.figure()
    axes = panel_grid(fig, n, panel_size=(4.8, 3.2), sharey=True)
    last = axes[-1]
    for ax, lang in zip(axes, langs, strict=False):
        sub = data[data["language"] == lang].copy()
        sub["step_plot"] = sub["step"].clip(lower=1)  # log axis: show step 0 at 1
        sns.lineplot(data=sub, x="step_plot", y=metric, hue="run", marker="o", ax=ax)
        ax.set_xscale("log")
        ax.set_title(lang)
        ax.set_xlabel("step (0 shown at 1)")
        ax.set_ylabel("validation loss (nats/token)" if metric == "val_loss" else metric)
        if ax is not last and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    out = save_figure(fig, out_path, dpi=110, tight=False)
    plt.close(fig)
    return out


def plot_efficiency(table: pd.DataFrame, out_path: str | os.PathLike, title: str) -> Path | None:
    """Token-efficiency gain of continual pretraining per evaluation (log-log)."""
    sub = table[(table["tokens"] > 0) & table["gain"].notna()]
    if sub.empty:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.plot(sub["tokens"], sub["gain"], marker="o")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("target-language tokens seen")
    ax.set_ylabel("scratch tokens / continued tokens")
    ax.set_title(title)
    fig.tight_layout()
    out = save_figure(fig, out_path, dpi=110, tight=False)
    plt.close(fig)
    return out
