"""The study report's execution section: pass@1 of the continued and scratch models at equal
steps, across seeds, with the problem-route transfer ratio. Reads saved tables only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from babel_interp.analysis.stats import t_interval
from babel_interp.formatting import fmt_interval
from babel_interp.report.document import ReportDocument
from babel_interp.report.execution_plots import plot_pass_at_k
from babel_interp.runs import STUDY_KINDS, Study

__all__ = [
    "add_execution_section",
    "execution_comparison",
    "pass_at_1_sentence",
    "read_pass_at_k",
]

_LABEL = {"continual": "continued", "scratch": "scratch"}


def read_pass_at_k(run: Path, language: str, k: int = 1) -> pd.DataFrame:
    """``RUN/analysis/execution/pass_at_k.csv`` rows of ``language`` and ``k`` (empty if none)."""
    path = run / "analysis" / "execution" / "pass_at_k.csv"
    if not path.is_file():
        return pd.DataFrame()
    df = pd.read_csv(path)
    return df[(df["language"] == language) & (df["k"] == k)]


def pass_at_1_sentence(continued: Path, scratch: Path, language: str) -> str:
    """One sentence on pass@1 of a continued run beside its scratch baseline ("" if not run)."""
    c = read_pass_at_k(continued, language)
    s = read_pass_at_k(scratch, language)
    if c.empty:
        return ""
    c = c.sort_values("step")
    s = s.sort_values("step") if not s.empty else s
    best = c.loc[c["pass_at_k"].idxmax()]
    last = c.iloc[-1]
    peak = fmt_interval(best["pass_at_k"], best["ci_low"], best["ci_high"])
    end = fmt_interval(last["pass_at_k"], last["ci_low"], last["ci_high"])
    text = (
        f"pass@1 by execution ({int(last['n_problems'])} held-out problems): the continued "
        f"model peaks at {peak} at step {int(best['step'])} and ends at {end} at step "
        f"{int(last['step'])}"
    )
    if not s.empty:
        sl = s.iloc[-1]
        reached = fmt_interval(sl["pass_at_k"], sl["ci_low"], sl["ci_high"])
        text += f"; the scratch model reaches {reached} at its last step {int(sl['step'])}"
    return text + "."


def pass_at_1_curves(root: Path, seeds: list[int], language: str) -> dict[str, pd.DataFrame]:
    """Per kind (continual, scratch): pass@1 against steps, the mean over seeds with a Student-t
    interval (two or more seeds) or the one seed's bootstrap interval over problems; columns
    step, pass_at_k, ci_low, ci_high. Kinds without results are left out."""
    out = {}
    for kind in STUDY_KINDS:
        frames = [
            read_pass_at_k(Study(root).run_dir(s, language, kind), language).assign(seed=s)
            for s in seeds
        ]
        frames = [f for f in frames if len(f)]
        if not frames:
            continue
        df = pd.concat(frames)
        if len(frames) == 1:
            out[kind] = df[["step", "pass_at_k", "ci_low", "ci_high"]].reset_index(drop=True)
            continue
        rows = []
        for step, g in df.groupby("step"):
            ci = t_interval(g["pass_at_k"].to_numpy(float))
            rows.append(
                {"step": int(step), "pass_at_k": float(g["pass_at_k"].mean()),
                 "ci_low": ci.low, "ci_high": ci.high}
            )  # fmt: skip
        out[kind] = pd.DataFrame(rows)
    return out


def execution_comparison(root: Path, seeds: list[int], language: str) -> pd.DataFrame:
    """pass@1 of both runs at the steps both reached, per step: mean over seeds with a
    Student-t interval (two or more seeds) or the bootstrap interval over problems (one)."""
    per: dict[str, list[pd.DataFrame]] = {kind: [] for kind in STUDY_KINDS}
    for s in seeds:
        for kind in STUDY_KINDS:
            df = read_pass_at_k(Study(root).run_dir(s, language, kind), language)
            if len(df):
                per[kind].append(df.assign(seed=s))
    if not per["continual"] or not per["scratch"]:
        return pd.DataFrame()
    tables = {kind: pd.concat(frames) for kind, frames in per.items()}
    steps = sorted(set(tables["continual"]["step"]) & set(tables["scratch"]["step"]))
    rows = []
    for step in steps:
        row: dict = {"step": int(step)}
        for kind in STUDY_KINDS:
            d = tables[kind][tables[kind]["step"] == step]
            if len(d) >= 2:
                ci = t_interval(d["pass_at_k"].to_numpy())
                row[_LABEL[kind]] = fmt_interval(float(d["pass_at_k"].mean()), ci.low, ci.high)
            else:
                r = d.iloc[0]
                row[_LABEL[kind]] = fmt_interval(r["pass_at_k"], r["ci_low"], r["ci_high"])
        rows.append(row)
    return pd.DataFrame(rows)


def add_execution_section(
    doc: ReportDocument,
    root: Path,
    seeds: list[int],
    language: str,
    fig_dir: Path,
    figure: bool = True,
) -> bool:
    """pass@1 curves (unless ``figure`` is False: the study report draws them in its headline
    figure) and the equal-step table of ``language``; False when nothing was run."""
    table = execution_comparison(root, seeds, language)
    if table.empty:
        return False
    curves = {}
    for s in seeds:
        for kind in STUDY_KINDS:
            df = read_pass_at_k(Study(root).run_dir(s, language, kind), language)
            if len(df):
                curves[f"{_LABEL[kind]} (seed {s})"] = df
    n = len(seeds)
    if figure:
        doc.figure(
            plot_pass_at_k(curves, fig_dir / f"{language}_pass_at_1.png", title=language),
            f"{language}: pass@1 (greedy) of executed programs against steps, continued vs. "
            "scratch (bands: bootstrap interval over problems)",
        )
    how = "Student t across seeds" if n > 1 else "bootstrap over problems, one seed"
    cut = [
        df["share_prompt_truncated"].max()
        for df in curves.values()
        if "share_prompt_truncated" in df.columns
    ]
    if cut and max(cut) > 0:
        doc.text(
            f"{max(cut):.0%} of the {language} prompts are longer than the model's context "
            "minus the completion budget: the model sees their last tokens only."
        )
    doc.table(
        table,
        f"{language}: pass@1 at equal steps, mean [95% CI, {how}]: the share of held-out "
        "problems whose greedy completion passes its tests when executed",
    )
    transfers = []
    for s in seeds:
        path = Study(root).continual(s, language) / "analysis" / "execution" / "transfer.csv"
        if path.is_file():
            transfers.append(pd.read_csv(path).assign(seed=s))
    if transfers:
        t = pd.concat(transfers)
        t = t[t["n_c"] > 0]
        if len(t):
            doc.table(
                t[["seed", "step", "ratio", "ci_low", "ci_high", "n_c", "n_pc", "n_p"]].round(3),
                "Knowledge-transfer ratio by the paper's problem route: P = tasks the "
                "primary-only model solves in the primary language and the scratch model "
                "fails; C = tasks the continued model solves (checkpoints solving none are "
                "left out: the ratio is undefined there)",
            )
        else:
            doc.text(
                f"Problem-route transfer ratio ({language}): undefined at every checkpoint — "
                "the continued model solves no task that both reference models were scored on."
            )
    return True
