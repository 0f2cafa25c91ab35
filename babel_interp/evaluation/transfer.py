"""The knowledge-transfer ratio by the paper's problem route, from execution results.

P = the tasks the primary-only model solves in the primary language and the target-only
(scratch) model fails in the target language; C = the tasks the continued model solves in the
target language at a checkpoint. The ratio |P ∩ C| / |C| is the share of what the continued
model can do in the new language that needed the primary language's knowledge. Tasks are joined
across languages by ``task_id`` (a suite's task has one id in every language). "Solves" is at
least one passing sample. The interval is the percentile bootstrap of
:func:`babel_interp.analysis.stages.transfer.transfer_ratio` over every task asked at the
checkpoint: each draw resamples the tasks and recomputes C and P ∩ C, so it reflects which tasks
happen to be solved.
"""

from __future__ import annotations

import pandas as pd

from babel_interp.analysis.stages.transfer import primary_only_items, transfer_ratio

__all__ = ["problem_transfer_series", "solved_tasks"]


def solved_tasks(samples: pd.DataFrame, language: str, step: int | None = None) -> dict[str, bool]:
    """task_id -> solved (some sample passed) for ``language`` at ``step`` (default: the last)."""
    d = samples[samples["language"] == language]
    if not len(d):
        raise ValueError(f"no execution results in {language!r}")
    step = int(d["step"].max()) if step is None else step
    d = d[d["step"] == step]
    if not len(d):
        raise ValueError(f"no execution results in {language!r} at step {step}")
    return d.groupby("task_id")["status"].apply(lambda s: bool((s == "passed").any())).to_dict()


def problem_transfer_series(
    primary: pd.DataFrame,
    scratch: pd.DataFrame,
    continued: pd.DataFrame,
    language: str,
    primary_language: str = "python",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per checkpoint of ``continued``: ratio, |C|, |P ∩ C|, interval, and |P|.

    ``primary``, ``scratch`` and ``continued`` are ``samples.csv`` tables of the primary-only
    run (its last checkpoint is used, in ``primary_language``), the scratch run (its last
    checkpoint, in ``language``) and the continued run (every checkpoint, in ``language``).
    Tasks missing from one of the first two are left out (a task never asked is not "failed");
    at each checkpoint the universe of the bootstrap is the remaining tasks it was asked.
    """
    prim = solved_tasks(primary, primary_language)
    scr = solved_tasks(scratch, language)
    common = set(prim) & set(scr)
    P = primary_only_items({t: prim[t] for t in common}, {t: scr[t] for t in common})
    rows = []
    cont = continued[continued["language"] == language]
    for step in sorted(cont["step"].unique()):
        solved = solved_tasks(cont, language, int(step))
        asked = common & set(solved)
        C = {t for t in asked if solved[t]}
        r = transfer_ratio(P & asked, C, asked, n_boot=n_boot, seed=seed)
        rows.append(
            {
                "step": int(step),
                "language": language,
                "ratio": r.ratio,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "n_c": r.n_c,
                "n_pc": r.n_pc,
                "n_p": len(P),
                "n_tasks": len(common),
            }
        )
    return pd.DataFrame(rows)
