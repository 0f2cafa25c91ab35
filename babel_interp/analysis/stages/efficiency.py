"""Token efficiency of continual pretraining against a from-scratch baseline.

For each evaluation of the continued model on the target language, how many target tokens
does the model trained from scratch (same target data and schedule) need to reach the same
validation loss? The ratio ``scratch tokens / continued tokens`` is the gain bought by the
primary-language pretraining (the pilot measured about 2.5x early on PHP).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from babel_interp.runs import Run


def eval_curve(run: Run | str | os.PathLike, language: str) -> pd.DataFrame:
    """``step``, ``tokens`` (of ``language`` seen) and ``val_loss`` / ``val_bpb`` per evaluation."""
    rows = []
    for rec in Run.of(run).metrics():
        if rec.get("type") != "eval" or language not in rec.get("val_loss", {}):
            continue
        rows.append(
            {
                "step": int(rec["step"]),
                "tokens": int(rec.get("tokens_seen", {}).get(language, 0)),
                "val_loss": metric_value(rec["val_loss"][language]),
                "val_bpb": metric_value(rec.get("val_bpb", {}).get(language)),
            }
        )
    df = pd.DataFrame(rows, columns=["step", "tokens", "val_loss", "val_bpb"])
    # A resumed run may log the same step twice; the later record is the one that counts.
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def tokens_to_reach(curve: pd.DataFrame, loss: float) -> float:
    """Target tokens the curve needs to first reach ``loss`` (linear interpolation in log-tokens
    between evaluations); ``nan`` when it never does within the run."""
    tokens = curve["tokens"].to_numpy(dtype=float)
    losses = curve["val_loss"].to_numpy(dtype=float)
    hit = np.nonzero(losses <= loss)[0]
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(tokens[0])
    t0, t1 = max(tokens[i - 1], 1.0), max(tokens[i], 1.0)
    l0, l1 = losses[i - 1], losses[i]
    frac = 0.0 if l0 == l1 else (l0 - loss) / (l0 - l1)
    return float(np.exp(np.log(t0) + frac * (np.log(t1) - np.log(t0))))


def token_efficiency(
    continued_run: Run | str | os.PathLike, scratch_run: Run | str | os.PathLike, language: str
) -> pd.DataFrame:
    """Per evaluation of the continued run: its loss, the scratch run's loss at the same step,
    the scratch tokens needed for the continued loss, and the gain (``nan`` when the scratch
    run never gets there: the gain is then at least ``scratch tokens seen / tokens``)."""
    cont, scratch = eval_curve(continued_run, language), eval_curve(scratch_run, language)
    if cont.empty:
        raise ValueError(f"{continued_run} has no evaluation of {language!r}")
    if scratch.empty:
        raise ValueError(f"{scratch_run} has no evaluation of {language!r}")
    scratch_by_step = scratch.set_index("step")["val_loss"]
    rows = []
    for rec in cont.itertuples(index=False):
        needed = tokens_to_reach(scratch, rec.val_loss)
        rows.append(
            {
                "step": rec.step,
                "tokens": rec.tokens,
                "continued_loss": rec.val_loss,
                "scratch_loss": float(scratch_by_step.get(rec.step, np.nan)),
                "scratch_tokens_needed": needed,
                "gain": needed / rec.tokens if rec.tokens > 0 and np.isfinite(needed) else np.nan,
                "gain_at_least": (
                    float(scratch["tokens"].max()) / rec.tokens
                    if rec.tokens > 0 and not np.isfinite(needed)
                    else np.nan
                ),
            }
        )
    return pd.DataFrame(rows)


def efficiency_summary(table: pd.DataFrame) -> dict[str, float | int]:
    """One line of a :func:`token_efficiency` table: the median gain over the checkpoints
    where it is measured, its range, and the gain at the last of them (the first checkpoints'
    gains are large ratios of small token counts, so the maximum alone overstates the effect).
    Empty when no gain is measured."""
    known = table[table["gain"].notna()] if not table.empty else table
    if known.empty:
        return {}
    last = known.iloc[-1]
    return {
        "median_gain": float(known["gain"].median()),
        "min_gain": float(known["gain"].min()),
        "max_gain": float(known["gain"].max()),
        "n_checkpoints": int(len(known)),
        "last_step": int(last["step"]),
        "last_gain": float(last["gain"]),
    }


def metric_value(value: object) -> float:
    """A metric value as float; the trainer logs null where a language has no bytes/tokens."""
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]
