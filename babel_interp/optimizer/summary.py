"""The mixture comparison table: per-language bits per byte across seeds, and derived measures.

Input is one :class:`RunOutcome` per (mixture, seed): the per-language validation curve of a run
against total training tokens. Every measure is computed per seed first and only then averaged
with a Student-t interval over seeds, so the interval reflects seed-to-seed variation of the
measure itself (e.g. the worst language can differ between seeds):

* per-language final validation bits per byte (bpb);
* macro average over languages, and the worst (highest-bpb) language;
* primary regression: primary bpb minus the reference mixture's, paired by seed;
* tokens-to-target speedup per language: the reference's final bpb is the target; the speedup is
  (tokens the reference needed to first reach it) / (tokens this mixture needed), with both
  crossings linearly interpolated between evaluations. A mixture that never reaches the target
  has no speedup for that language (NaN, counted in ``not_reached``); the overall speedup is the
  geometric mean over the languages that were reached;
* optimizer overhead: seconds spent in the optimizer (analyzers, controller, allocation) over
  seconds spent training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from jaxtyping import Float

from babel_interp.analysis.stats import t_interval


@dataclass
class RunOutcome:
    """One trained run of the harness.

    ``curve`` has columns ``tokens`` (total training tokens at the evaluation), ``language``,
    ``val_bpb``; ``optimizer_seconds`` is time spent deciding the mixture (0 for static baselines).
    """

    mixture: str
    seed: int
    curve: pd.DataFrame
    train_seconds: float = 0.0
    optimizer_seconds: float = 0.0
    run_dir: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = {"tokens", "language", "val_bpb"} - set(self.curve.columns)
        if missing:
            raise ValueError(f"RunOutcome.curve lacks column(s) {sorted(missing)}")
        if self.curve.empty:
            raise ValueError(f"RunOutcome({self.mixture!r}, seed {self.seed}).curve is empty")

    def final_bpb(self) -> dict[str, float]:
        """Each language's bpb at the run's last evaluation."""
        last = self.curve[self.curve["tokens"] == self.curve["tokens"].max()]
        return {str(r.language): float(r.val_bpb) for r in last.itertuples()}

    def language_curve(self, language: str) -> tuple[np.ndarray, np.ndarray]:
        c = self.curve[self.curve["language"] == language].sort_values("tokens")
        return c["tokens"].to_numpy(np.float64), c["val_bpb"].to_numpy(np.float64)


def first_crossing(
    tokens: Float[np.ndarray, " n"],
    values: Float[np.ndarray, " n"],
    target: float,
    rising: bool = True,
) -> float | None:
    """Tokens at which a curve first reaches ``target``: from below when ``rising``, from above
    otherwise. Linearly interpolated between the evaluations on either side (a curve that starts
    at the target reaches it at ``tokens[0]``); None if it never does."""
    hit = np.nonzero(values >= target if rising else values <= target)[0]
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(tokens[0])
    v0, v1 = values[i - 1], values[i]
    gained, needed = (v1 - v0, target - v0) if rising else (v0 - v1, v0 - target)
    # The step gains unless the value before the hit is NaN; then the hit itself is the crossing.
    frac = needed / gained if gained > 0 else 1.0
    return float(tokens[i - 1] + frac * (tokens[i] - tokens[i - 1]))


def tokens_to_target(
    tokens: Float[np.ndarray, " n"], values: Float[np.ndarray, " n"], target: float
) -> float:
    """Tokens at which a falling curve first reaches ``target`` (linear interpolation); NaN if
    never."""
    crossing = first_crossing(tokens, values, target, rising=False)
    return math.nan if crossing is None else crossing


def per_seed_measures(outcomes: Sequence[RunOutcome], primary: str, reference: str) -> pd.DataFrame:
    """One row per (mixture, seed) with every measure of the table, before averaging."""
    if not outcomes:
        raise ValueError("no run outcomes to summarize")
    refs = {o.seed: o for o in outcomes if o.mixture == reference}
    if not refs:
        raise ValueError(
            f"reference mixture {reference!r} has no runs; mixtures: "
            f"{sorted({o.mixture for o in outcomes})}"
        )
    ref_primary = [o.final_bpb().get(primary, math.nan) for o in refs.values()]
    ref_primary_mean = float(np.nanmean(ref_primary)) if ref_primary else math.nan
    rows = []
    for o in outcomes:
        final = o.final_bpb()
        ref = refs.get(o.seed)
        ref_final = ref.final_bpb() if ref is not None else None
        row: dict = {"mixture": o.mixture, "seed": o.seed}
        for lang, v in final.items():
            row[f"bpb:{lang}"] = v
        values = list(final.values())
        row["macro_bpb"] = float(np.mean(values))
        worst = max(final, key=final.get)
        row["worst_bpb"] = final[worst]
        row["worst_language"] = worst
        base = ref_final.get(primary) if ref_final else ref_primary_mean
        row["primary_regression"] = (
            final[primary] - base if primary in final and base is not None else math.nan
        )
        speedups = []
        not_reached = 0
        for lang in final:
            if ref is None:
                continue
            rt, rv = ref.language_curve(lang)
            if rt.size == 0:
                continue
            target = float(rv[-1])
            t_ref = tokens_to_target(rt, rv, target)
            t_mix = tokens_to_target(*o.language_curve(lang), target)
            s = t_ref / t_mix if (np.isfinite(t_mix) and t_mix > 0) else math.nan
            row[f"speedup:{lang}"] = s
            if np.isfinite(s):
                speedups.append(s)
            else:
                not_reached += 1
        row["speedup"] = float(np.exp(np.mean(np.log(speedups)))) if speedups else math.nan
        row["not_reached"] = not_reached
        row["train_seconds"] = o.train_seconds
        row["optimizer_seconds"] = o.optimizer_seconds
        row["overhead_share"] = (
            o.optimizer_seconds / o.train_seconds if o.train_seconds > 0 else math.nan
        )
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(
    outcomes: Sequence[RunOutcome], primary: str, reference: str = "proportional", level=0.95
) -> pd.DataFrame:
    """The comparison table: one row per mixture, ``<measure>_mean/_low/_high`` columns."""
    per_seed = per_seed_measures(outcomes, primary, reference)
    measures = [
        c
        for c in per_seed.columns
        if c not in {"mixture", "seed", "worst_language", "not_reached"}
        and pd.api.types.is_numeric_dtype(per_seed[c])
    ]
    rows = []
    for mixture, group in per_seed.groupby("mixture", sort=False):
        row: dict = {"mixture": mixture, "seeds": int(group["seed"].nunique())}
        for m in measures:
            vals = group[m].to_numpy(np.float64)
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                row[f"{m}_mean"] = row[f"{m}_low"] = row[f"{m}_high"] = math.nan
                continue
            ci = t_interval(vals, level)
            row[f"{m}_mean"], row[f"{m}_low"], row[f"{m}_high"] = ci.estimate, ci.low, ci.high
        row["worst_language"] = group["worst_language"].mode().iat[0]
        row["not_reached"] = int(group["not_reached"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(mean: float, low: float, high: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def markdown_table(table: pd.DataFrame, languages: Sequence[str]) -> str:
    """The table as Markdown: mean ± 95% CI half-width for each measure.

    ``targets missed`` counts (language, seed) pairs that never reached the reference's final
    bits per byte; they have no speedup, so the speedup column averages over the others only.
    """
    cols = [f"bpb:{lang}" for lang in languages] + [
        "macro_bpb",
        "worst_bpb",
        "primary_regression",
        "speedup",
        "overhead_share",
    ]
    heads = [c.replace("bpb:", "") + (" bpb" if c.startswith("bpb:") else "") for c in cols]
    lines = [
        "| mixture | seeds | " + " | ".join(heads) + " | worst language | targets missed |",
        "|---|---|" + "---|" * len(cols) + "---|---|",
    ]
    for _, row in table.iterrows():
        d = row.to_dict()
        cells = [
            _fmt(d[f"{c}_mean"], d[f"{c}_low"], d[f"{c}_high"]) if f"{c}_mean" in d else "n/a"
            for c in cols
        ]
        head = f"| {d['mixture']} | {d['seeds']} | "
        tail = f" | {d['worst_language']} | {d['not_reached']} |"
        lines.append(head + " | ".join(cells) + tail)
    return "\n".join(lines) + "\n"
