"""The paper's own experiment: from scratch on the corpus the allocation produced vs on the
original corpus.

The babel-tower allocation keeps each new language's tokens up to the end of its best stage and
cuts the rest. Trained once over that optimized corpus (every language one pass, a cut language
only up to its budget), a model sees fewer tokens than one trained once over the original
corpus, so the two differ in budget. This module builds that one-pass mixture and compares its
runs with the reference runs of the equal-budget harness (the reference trained at the
harness's budget: in the ``cpu`` profile about one pass over the original corpus) two ways,
each paired by seed with a Student-t interval:

* **at equal steps**: both runs at the tokens where the shorter of the two ends (each curve
  interpolated between its evaluations, never extrapolated);
* **at each run's end**: the one-pass run at its end against the reference at its end (the
  paper's comparison: does the optimized corpus get there with fewer tokens?).

pass@1 is compared at each run's end only: the harness keeps only each run's last checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from babel_interp.formatting import fmt_count, fmt_interval
from babel_interp.mixture import Mixture
from babel_interp.optimizer.baselines import Allocation
from babel_interp.optimizer.stats import paired_difference
from babel_interp.optimizer.summary import RunOutcome


def arm_name(mixture: str) -> str:
    """The one-pass run's name for a babel-tower mixture (``babel-tower-one-pass``)."""
    return f"{mixture}-one-pass"


@dataclass
class OnePass:
    """One pass over the optimized corpus: the mixture, its total tokens, what was cut."""

    mixture: Mixture
    total_tokens: int
    cut: dict[str, tuple[int, int]]  # language -> (tokens kept, tokens in the corpus)


def one_pass_mixture(allocation: Allocation) -> OnePass:
    """The optimized corpus of an allocation computed at its own total (``total_tokens``
    None): each language drawn in proportion to the tokens it keeps, once (epoch cap 1), a cut
    language also capped at its budget."""
    kept = {lang: int(b) for lang, b in allocation.budgets.items() if b > 0}
    cut = {
        lang: (kept.get(lang, 0), int(allocation.sizes[lang]))
        for lang in allocation.budgets
        if allocation.budgets[lang] < allocation.sizes[lang]
    }
    mixture = Mixture(
        weights=dict(kept),
        budgets={lang: kept[lang] for lang in cut if lang in kept},
        epoch_caps={lang: 1.0 for lang in kept},
    )
    return OnePass(mixture, sum(kept.values()), cut)


def _at_tokens(o: RunOutcome, tokens: float) -> dict[str, float]:
    out = {}
    for lang in o.curve["language"].unique():
        t, v = o.language_curve(str(lang))
        out[str(lang)] = float(np.interp(tokens, t, v)) if len(t) else math.nan
    return out


def _row(comparison: str, measure: str, a: list[float], b: list[float], digits: int = 3) -> dict:
    m, lo, hi, n = paired_difference(np.asarray(a, float) - np.asarray(b, float))
    return {
        "comparison": comparison,
        "measure": measure,
        "one_pass": float(np.nanmean(a)) if len(a) else math.nan,
        "reference": float(np.nanmean(b)) if len(b) else math.nan,
        "difference": fmt_interval(m, lo, hi, digits=digits, signed=True),
        "n_seeds": n,
    }


def compare_one_pass(
    one_pass: Sequence[RunOutcome],
    reference: Sequence[RunOutcome],
    pass_at_1: pd.DataFrame | None = None,
    reference_name: str = "proportional",
    arm: str = "babel-tower-one-pass",
) -> pd.DataFrame:
    """Rows of (comparison, measure, one_pass, reference, difference [CI], n_seeds), paired by
    seed (module docstring). Bits/byte: lower is better; pass@1: higher is better."""
    by_seed = {o.seed: o for o in reference}
    pairs = [(o, by_seed[o.seed]) for o in one_pass if o.seed in by_seed]
    if not pairs:
        return pd.DataFrame()
    rows = []
    end_tokens = [float(o.curve["tokens"].max()) for o, _ in pairs]
    ref_tokens = [float(r.curve["tokens"].max()) for _, r in pairs]
    # Equal steps: both runs where the shorter one ends (neither curve is extrapolated).
    common = [min(a, b) for a, b in zip(end_tokens, ref_tokens, strict=True)]
    equal = f"equal steps ({fmt_count(np.mean(common))} tokens each)"
    ends = (
        f"each run's end ({fmt_count(np.mean(end_tokens))} vs {fmt_count(np.mean(ref_tokens))} "
        "tokens)"
    )
    for label, mine, theirs in (
        (
            equal,
            [_at_tokens(o, t) for (o, _), t in zip(pairs, common, strict=True)],
            [_at_tokens(r, t) for (_, r), t in zip(pairs, common, strict=True)],
        ),
        (ends, [o.final_bpb() for o, _ in pairs], [r.final_bpb() for _, r in pairs]),
    ):
        langs = sorted(set(mine[0]) & set(theirs[0]))
        rows.append(
            _row(
                label,
                "macro bits/byte",
                [np.mean([m[x] for x in langs]) for m in mine],
                [np.mean([t[x] for x in langs]) for t in theirs],
            )
        )
        rows.append(
            _row(
                label,
                "worst-language bits/byte",
                [max(m[x] for x in langs) for m in mine],
                [max(t[x] for x in langs) for t in theirs],
            )
        )
    if pass_at_1 is not None and not pass_at_1.empty:
        macro = pass_at_1.groupby(["mixture", "seed"])["pass_at_1"].mean()
        seeds = [o.seed for o, _ in pairs]
        a = [macro.get((arm, s), math.nan) for s in seeds]
        b = [macro.get((reference_name, s), math.nan) for s in seeds]
        rows.append(_row(ends, "macro pass@1", a, b))
    return pd.DataFrame(rows)


def one_pass_markdown(
    table: pd.DataFrame, one_pass: OnePass, reference: str, mixture: str = "babel-tower"
) -> str:
    """The experiment's Markdown section for one babel-tower mixture."""
    cut = ", ".join(
        f"{lang} {fmt_count(k)} of {fmt_count(n)} tokens" for lang, (k, n) in one_pass.cut.items()
    )
    head = (
        f"\n## The paper's experiment: one pass over the optimized corpus ({mixture})\n\n"
        f"From scratch, one pass over the corpus the {mixture} allocation produced "
        f"({fmt_count(one_pass.total_tokens)} tokens; cut: {cut or 'nothing'}), against "
        f"{reference!r} at the harness's budget. Differences: optimized minus {reference}, "
        "paired by seed, mean [95% Student-t interval over seeds]; bits/byte lower is better, "
        "pass@1 higher is better.\n\n"
    )
    if table.empty:
        return head + "No run to compare.\n"
    lines = [
        "| comparison | measure | optimized | reference | difference |",
        "|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.comparison} | {r.measure} | {r.one_pass:.3f} | {r.reference:.3f} | "
            f"{r.difference} |"
        )
    return head + "\n".join(lines) + "\n"
