"""Read the evidence for the paper's allocation from a continual-pretraining run.

For one new language, a run gives: per checkpoint its validation loss and tokens seen
(:func:`babel_interp.analysis.performance.performance_series`); when the working-language analyzer
has run (``RUN/analysis/working_language/aggregate.csv``), the share of probes whose intermediate
layers favour the primary identifier, the same share at matched controls, the matched excess with
its interval, and whether the checkpoint passes the analyzer's competence gate; and, from the
stage detector over these series, the end of Translation (the best stage).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babel_interp.optimizer.babel_tower import LanguageEvidence

WORKING_LANGUAGE_TABLE = Path("analysis") / "working_language" / "aggregate.csv"
COMPETENCE_TABLE = Path("analysis") / "working_language" / "competence.csv"


def working_share_series(
    aggregate: pd.DataFrame | str | os.PathLike, lens: str = "logit"
) -> pd.DataFrame:
    """Per step: the primary working-language share at the middle layers, and at the controls.

    "Middle" excludes the first decoded layer (the embedding) and the output, where the
    Babel Tower signature lives (PAPER.md: middle layers still on the primary while the output
    has switched). Columns: ``step``, ``share``, ``control_share``, and where the table has
    them ``excess``, ``excess_lo``, ``excess_hi`` (the matched excess and its interval) and
    ``competent``. The excess and both bounds are means over the middle layers. For roughly
    normal estimates the mean of the layers' bounds is no tighter than an interval for the mean
    excess (the standard deviation of a mean is at most the mean of the standard deviations,
    whatever the layers' correlation), so a lower bound above 0 here is not made by averaging.
    """
    df = aggregate if isinstance(aggregate, pd.DataFrame) else pd.read_csv(aggregate)
    need = {"step", "lens", "layer_pos", "share_primary", "matched_share_primary"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"working-language table lacks column(s) {sorted(missing)}")
    df = df[(df["lens"] == lens) & df["step"].notna()]
    if df.empty:
        raise ValueError(f"working-language table has no rows for lens {lens!r}")
    lo, hi = df["layer_pos"].min(), df["layer_pos"].max()
    mid = df[(df["layer_pos"] > lo) & (df["layer_pos"] < hi)]
    if mid.empty:  # a one- or two-layer model has no middle: use every layer but the output
        mid = df[df["layer_pos"] < hi] if (df["layer_pos"] < hi).any() else df
    agg = {"share": ("share_primary", "mean"), "control_share": ("matched_share_primary", "mean")}
    for name, col in (
        ("excess", "excess_matched"),
        ("excess_lo", "excess_matched_lo"),
        ("excess_hi", "excess_matched_hi"),
    ):
        if col in mid.columns:
            agg[name] = (col, "mean")
    if "competent" in mid.columns:
        agg["competent"] = ("competent", "max")
    out = mid.groupby("step", as_index=False).agg(**agg)
    out["step"] = out["step"].astype(int)
    return out.sort_values("step").reset_index(drop=True)


def working_language_evidence(series: pd.DataFrame, steps: Sequence[int]) -> dict[str, Any]:
    """The working-language fields of :class:`LanguageEvidence` at ``steps``.

    ``series`` is :func:`working_share_series`'s table (``step`` as a column or the index). A
    step the analyzer did not score has NaN measurements and has not passed the competence
    gate; a field the table lacks (or has only NaN for) is None, which leaves dependence
    undecided rather than guessed.
    """
    s = series.set_index("step") if "step" in series.columns else series

    def column(name: str) -> list[float] | None:
        if name not in s.columns:
            return None
        values = [float(s[name].get(step, math.nan)) for step in steps]
        return None if all(math.isnan(v) for v in values) else values

    measured = column("share")
    control = column("control_share") if measured is not None else None
    excess, lo, hi = column("excess"), column("excess_lo"), column("excess_hi")
    if lo is None:
        excess = hi = None
    competent = None
    if "competent" in s.columns:
        flags = [s["competent"].get(step, False) for step in steps]
        # NaN (a step of a table concatenated with one lacking the flag) has not passed.
        competent = [bool(f) if pd.notna(f) else False for f in flags]
    return dict(
        measured_share=measured,
        control_share=control,
        competent=competent,
        excess=excess,
        excess_lo=lo,
        excess_hi=hi,
    )


def _with_competence(wl: pd.DataFrame, table: Path) -> pd.DataFrame:
    """``wl`` with the analyzer's per-step gate from ``competence.csv`` beside ``table`` when
    the aggregate itself lacks the ``competent`` column."""
    comp_path = table.parent / COMPETENCE_TABLE.name
    if "competent" in wl.columns or not comp_path.is_file():
        return wl
    comp = pd.read_csv(comp_path)
    if not {"step", "competent"} <= set(comp.columns):
        return wl
    comp = comp[comp["step"].notna()]
    gate = {
        int(step): bool(flag) for step, flag in zip(comp["step"], comp["competent"], strict=True)
    }
    return wl.assign(competent=[gate.get(int(step), False) for step in wl.index])


def evidence_from_run(
    run_dir: str | os.PathLike,
    language: str,
    primary: str = "python",
    best_step: int | None = None,
    detect: bool = True,
    depends_on_primary: bool | None = None,
    performance: Mapping[int, float] | None = None,
    stage_config: Mapping[str, Any] | None = None,
) -> LanguageEvidence:
    """The :class:`LanguageEvidence` of ``language`` from its continual-pretraining run.

    ``best_step`` overrides the stage detector. With ``detect``, the detector runs on
    ``performance`` (step -> score, higher better; e.g. completion accuracy) when given, else on
    the validation loss (lower better), with the working-language share as corroboration; its
    end of Translation becomes the best step. No detected Translation leaves the best point to
    the loss proxy.
    """
    from babel_interp.analysis.performance import performance_series

    perf = performance_series(run_dir, [language])
    perf = perf[perf["language"] == language]
    perf = perf[np.isfinite(perf["val_loss"].astype(float))]
    if perf.empty:
        raise ValueError(
            f"run {run_dir} has no validation loss for {language!r}: was it evaluated on it?"
        )
    steps = [int(s) for s in perf["step"]]
    tokens_col = perf["tokens_seen"].astype(float)
    if tokens_col.isna().any():
        raise ValueError(
            f"run {run_dir}: tokens seen of {language!r} are missing at some checkpoints "
            "(trainer_state.json lacks tokens_seen)"
        )
    tokens = [int(t) for t in tokens_col]
    losses = [float(v) for v in perf["val_loss"]]
    table = Path(run_dir) / WORKING_LANGUAGE_TABLE
    wl = None
    measured: dict[str, Any] = {}
    if table.is_file():
        wl = _with_competence(working_share_series(table).set_index("step"), table)
        measured = working_language_evidence(wl, steps)
    source = "explicit"
    if best_step is None and detect:
        best_step, source = _detect_best_step(steps, losses, wl, performance, stage_config)
    if best_step is not None and best_step not in steps:
        raise ValueError(
            f"best step {best_step} of {language!r} is not a checkpoint of run {run_dir}: {steps}"
        )
    return LanguageEvidence(
        language=language,
        steps=steps,
        tokens=tokens,
        losses=losses,
        best_step=best_step,
        best_step_source=source,
        depends_on_primary=depends_on_primary,
        source=str(Path(run_dir).resolve()),
        **measured,
    )


def _detect_best_step(
    steps: list[int],
    losses: list[float],
    wl: pd.DataFrame | None,
    performance: Mapping[int, float] | None,
    stage_config: Mapping[str, Any] | None,
) -> tuple[int | None, str]:
    from babel_interp.analysis.stages.detector import StageConfig, detect_stages

    if len(steps) < 7:  # three segments of >= 2 intervals each need 7 checkpoints
        return None, "too few checkpoints for the stage detector"
    series: dict[str, Any] = {}
    cfg_d = dict(stage_config or {})
    if performance is not None:
        series["performance"] = dict(performance)
        cfg_d.setdefault("performance_direction", 1)
        what = "performance"
    else:
        series["performance"] = dict(zip(steps, losses, strict=True))
        cfg_d.setdefault("performance_direction", -1)
        what = "validation loss"
    if wl is not None:
        series["working_language_share"] = wl["share"].to_dict()
    result = detect_stages(series, StageConfig.from_dict(cfg_d))
    if result.translation_end is None:
        return None, f"stage detector on {what}: {result.verdict}"
    return int(result.translation_end), f"stage detector on {what} ({result.verdict})"
