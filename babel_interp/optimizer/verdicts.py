"""A verdict per mixture method, in plain words, against the best simple baseline.

The simple baselines are the static mixtures that need no analysis (proportional, uniform,
temperature sampling, UniMax). The best of them is the one with the lowest mean macro bits per
byte over seeds; every other mixture is compared with it, paired by seed (each seed trains
every mixture from the same initialization and data order), on:

* macro bits/byte (the mean over languages; lower is better),
* the worst language's bits/byte (lower is better),
* macro pass@1 by execution, when it was measured (higher is better),

each a mean difference with a Student-t 95% interval over seeds. The verdict reads the macro
bits/byte interval first ("better than", "worse than", or "no better than ... within the
interval") and adds what the worst language and pass@1 say when their intervals exclude 0.

Choosing the best baseline on the same seeds favours it slightly (the winner of several noisy
means looks better than it is), so a method that beats it has beaten a baseline helped by
selection; one that does not may still match the baselines.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from babel_interp.formatting import fmt_interval
from babel_interp.optimizer.baselines import BASELINE_METHODS
from babel_interp.optimizer.stats import paired_difference


def method_of(spec: object) -> str:
    """The method a mixture spec names (``temperature:temperature=3`` -> ``temperature``)."""
    if isinstance(spec, Mapping):
        return str(spec.get("method", ""))
    return str(spec).partition(":")[0].strip()


def _direction(lo: float, hi: float, lower_is_better: bool) -> str:
    """ "better", "worse" or "same" by where the interval lies."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "same"
    if hi < 0:
        return "better" if lower_is_better else "worse"
    if lo > 0:
        return "worse" if lower_is_better else "better"
    return "same"


def method_verdicts(
    per_seed: pd.DataFrame,
    specs: Mapping[str, object],
    pass_at_1: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per mixture: its paired differences from the best simple baseline and a verdict.

    Columns: mixture, method, kind, macro_bpb (mean), and for every mixture but the best
    baseline, per measure (``macro_bpb``, ``worst_bpb``, ``pass_at_1``) the difference as text
    (``<measure>_diff``) and as numbers (``<measure>_d``, ``_d_lo``, ``_d_hi``), n_seeds, and
    the verdict.

    ``per_seed``: :func:`babel_interp.optimizer.summary.per_seed_measures` (``mixture, seed,
    macro_bpb, worst_bpb``); ``specs``: each mixture's spec (to tell baselines from
    optimizers); ``pass_at_1``: the harness's pass@1 table (``mixture, seed, language,
    pass_at_1``) or None. Empty when no simple baseline was run.
    """
    kinds = {m: method_of(s) for m, s in specs.items()}
    baselines = [m for m in per_seed["mixture"].unique() if kinds.get(m) in BASELINE_METHODS]
    if not baselines:
        return pd.DataFrame()
    means = per_seed.groupby("mixture")["macro_bpb"].mean()
    best = min(baselines, key=lambda m: means[m])
    wide = per_seed.set_index(["mixture", "seed"])
    macro_pass = None
    if pass_at_1 is not None and not pass_at_1.empty:
        macro_pass = pass_at_1.groupby(["mixture", "seed"])["pass_at_1"].mean()
    rows = []
    for mix in dict.fromkeys(per_seed["mixture"]):
        row: dict[str, object] = {
            "mixture": mix,
            "method": kinds.get(mix, "mixture"),
            "kind": "simple baseline" if mix in baselines else "optimizer",
            "macro_bpb": float(means[mix]),
        }
        if mix == best:
            row["verdict"] = (
                "the best simple baseline (lowest mean macro bits/byte): the reference for "
                "the comparisons"
            )
            rows.append(row)
            continue
        found = {}
        for measure, lower in (("macro_bpb", True), ("worst_bpb", True)):
            # Series indexed by seed: the subtraction pairs them.
            m, lo, hi, n = paired_difference(wide.loc[mix, measure] - wide.loc[best, measure])
            row[f"{measure}_diff"] = fmt_interval(m, lo, hi, digits=3, signed=True)
            row.update({f"{measure}_d": m, f"{measure}_d_lo": lo, f"{measure}_d_hi": hi})
            found[measure] = _direction(lo, hi, lower)
            row["n_seeds"] = n
        if macro_pass is not None and mix in macro_pass.index and best in macro_pass.index:
            m, lo, hi, _ = paired_difference(macro_pass.loc[mix] - macro_pass.loc[best])
            row["pass_at_1_diff"] = fmt_interval(m, lo, hi, digits=3, signed=True)
            row.update({"pass_at_1_d": m, "pass_at_1_d_lo": lo, "pass_at_1_d_hi": hi})
            found["pass"] = _direction(lo, hi, lower_is_better=False)
        row["verdict"] = _verdict_text(best, found)
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict_text(best: str, found: Mapping[str, str]) -> str:
    head = {
        "better": f"better than {best} on macro bits/byte",
        "worse": f"worse than {best} on macro bits/byte",
        "same": f"no better than {best} on macro bits/byte within the interval",
    }[found["macro_bpb"]]
    extra = []
    if found.get("worst_bpb") in ("better", "worse"):
        extra.append(f"{found['worst_bpb']} on the worst language")
    if found.get("pass") in ("better", "worse"):
        extra.append(f"{found['pass']} on pass@1")
    elif "pass" in found:
        extra.append("pass@1 indistinguishable")
    return head + ("; " + ", ".join(extra) if extra else "")


def verdicts_markdown(verdicts: pd.DataFrame) -> str:
    """The verdict table as a Markdown section ("" when empty)."""
    if verdicts.empty:
        return ""
    cols = [
        c
        for c in (
            "mixture",
            "kind",
            "macro_bpb_diff",
            "worst_bpb_diff",
            "pass_at_1_diff",
            "verdict",
        )
        if c in verdicts.columns
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in verdicts[cols].itertuples(index=False):
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |")
    return (
        "\n## Verdicts against the best simple baseline\n\n"
        "Differences are paired by seed (this mixture minus the best simple baseline): mean "
        "[95% Student-t interval over seeds]. Bits/byte: lower is better; pass@1: higher is "
        "better. The baseline was chosen on the same seeds, which favours it slightly.\n\n"
        + "\n".join(lines)
        + "\n"
    )
