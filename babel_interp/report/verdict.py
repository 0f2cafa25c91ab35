"""The study's answer per new language: is there a Babel Tower signature, at which step, how
large, and against which controls.

The rule is fixed here, once, and every report and scan reads it from this module:

* **Where**: the first step both runs reached at which the continued model passes the
  competence gate in every finished seed (the first competent checkpoint). Before it, the
  working-language signal is uninformative by construction.
* **What**: the middle layers' excess over matched controls (log P(primary)/P(target) at the
  probe minus the same at its matched control site), for the continued model and for the
  from-scratch baseline trained on the same target data, and their difference
  (continued − scratch).
* **Signature** when, at that step, the continued model's middle layers lean to the primary
  (the interval of its excess lies above 0) *and* lean to it more than the scratch model's
  (the interval of the difference lies above 0). **No signature** otherwise.
  **Insufficient data** when the analyzer was not run, the continued model never passes the
  gate at a step both runs reached, or the scratch baseline has no value there.

Intervals: with two or more seeds, Student t over seeds (the difference paired by seed). With
one seed, the analyzer's bootstrap interval of each region mean; the difference's interval then
combines the two half-widths in quadrature (a normal approximation for two independently
trained models), and says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from babel_interp.analysis.stats import t_interval
from babel_interp.analysis.working_language.regions import layer_region
from babel_interp.formatting import fmt_interval, fmt_number
from babel_interp.report.study import (
    layer_excess,
    random_init_region_band,
    region_excess,
    region_records,
)

SIGNATURE = "signature"
NO_SIGNATURE = "no signature"
INSUFFICIENT = "insufficient data"

CONTROLS = (
    "matched control sites (the excess), a from-scratch model trained on the same target data "
    "(the difference), and the competence gate"
)


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval (NaN bounds when none could be made)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def __str__(self) -> str:
        return fmt_interval(self.value, self.low, self.high, signed=True)

    @property
    def above_zero(self) -> bool:
        return math.isfinite(self.low) and self.low > 0


@dataclass(frozen=True)
class SignatureVerdict:
    """One new language's answer (see the module's rule)."""

    language: str
    primary: str
    verdict: str
    reason: str
    step: int | None = None
    n_seeds: int = 0
    interval: str = ""
    continued: Estimate | None = None
    scratch: Estimate | None = None
    difference: Estimate | None = None
    continued_output: Estimate | None = None
    random_band: tuple[float, float] | None = None

    def sentence(self) -> str:
        """The verdict in one plain sentence with its numbers (Markdown inline)."""
        if self.verdict == INSUFFICIENT:
            return f"**{self.language}: {self.verdict}** — {self.reason}."
        assert self.continued and self.scratch and self.difference
        text = (
            f"**{self.language}: {self.verdict}** at step {self.step} (first competent "
            f"checkpoint): middle-layer excess toward {self.primary} {self.continued} for the "
            f"continued model vs. {self.scratch} from scratch, difference {self.difference} "
            f"(95% CI; {self.interval})"
        )
        if self.random_band is not None:
            lo, hi = self.random_band
            text += (
                f"; one random-init model's middle excess falls in "
                f"[{fmt_number(lo, signed=True)}, {fmt_number(hi, signed=True)}]"
            )
        return text + f". {self.reason}."


def _diff_one_seed(c: pd.Series, s: pd.Series) -> Estimate:
    """continued − scratch from two independent one-seed intervals (normal approximation)."""
    d = float(c["excess"]) - float(s["excess"])
    lo = d - math.hypot(float(c["excess"]) - float(c["lo"]), float(s["hi"]) - float(s["excess"]))
    hi = d + math.hypot(float(c["hi"]) - float(c["excess"]), float(s["excess"]) - float(s["lo"]))
    return Estimate(d, lo, hi)


def signature_verdict(
    root: str | os.PathLike,
    seeds: Sequence[int],
    language: str,
    primary: str,
    per_seed: pd.DataFrame | None = None,
    regions: pd.DataFrame | None = None,
) -> SignatureVerdict:
    """The verdict for ``language`` over the finished ``seeds`` of the study in ``root``
    (``per_seed``: :func:`~babel_interp.report.study.layer_excess`, ``regions``:
    :func:`~babel_interp.report.study.region_records`, when the caller already read them)."""
    seeds = list(seeds)

    def insufficient(reason: str, **kw: object) -> SignatureVerdict:
        return SignatureVerdict(language, primary, INSUFFICIENT, reason, n_seeds=len(seeds), **kw)

    if not seeds:
        return insufficient("no seed has finished")
    if per_seed is None:
        per_seed = layer_excess(root, seeds, language)
    if regions is None:
        regions = region_records(root, seeds, language)
    if per_seed.empty:
        return insufficient("the working-language analyzer has no results")
    reg = region_excess(per_seed, regions)
    if reg.empty:
        return insufficient("the continued and scratch runs share no analyzed step")
    cont_steps = per_seed[per_seed["kind"] == "continual"]
    competent = cont_steps.groupby(["step", "seed"])["competent"].max().groupby("step").sum()
    equal = set(reg["step"])
    steps = sorted(s for s, n in competent.items() if n >= len(seeds) and s in equal)
    if not steps:
        best = float(cont_steps["top1_acc"].max())
        return insufficient(
            "the continued model never passes the competence gate at a step both runs reached "
            f"(best probe top-1 {best:.0%}), so its working-language signal is not interpreted"
        )
    step = steps[0]
    at = reg[(reg["step"] == step) & (reg["region"] == "middle")].set_index("kind")
    if "continual" not in at.index or "scratch" not in at.index:
        return insufficient(f"the scratch baseline has no middle-layer value at step {step}")
    c, s = at.loc["continual"], at.loc["scratch"]
    out = reg[(reg["step"] == step) & (reg["region"] == "output") & (reg["kind"] == "continual")]
    cont_out = Estimate(*out[["excess", "lo", "hi"]].iloc[0]) if len(out) else None
    if len(seeds) >= 2:
        df = per_seed.assign(region=layer_region(per_seed["depth"]))
        df = df[(df["step"] == step) & (df["region"] == "middle")]
        means = df.groupby(["seed", "kind"])["excess"].mean().unstack("kind")
        ci = t_interval((means["continual"] - means["scratch"]).dropna().to_numpy(float))
        diff, how = Estimate(ci.estimate, ci.low, ci.high), f"Student t over {len(seeds)} seeds"
    else:
        diff = _diff_one_seed(c, s)
        how = f"one seed, bootstrap over {c['interval']}; the difference's in quadrature"
    cont = Estimate(float(c["excess"]), float(c["lo"]), float(c["hi"]))
    scratch = Estimate(float(s["excess"]), float(s["lo"]), float(s["hi"]))
    if cont.above_zero and diff.above_zero:
        verdict = SIGNATURE
        reason = (
            f"The continued model's middle layers lean to {primary} against matched controls, "
            "and more than the scratch model's"
        )
    else:
        verdict = NO_SIGNATURE
        if not cont.above_zero and not diff.above_zero:
            reason = (
                f"Neither the continued model's middle-layer excess toward {primary} nor its "
                "difference from the scratch model has an interval above 0"
            )
        elif not cont.above_zero:
            reason = (
                f"The continued model leans to {primary} more than the scratch model, but its "
                f"middle layers do not lean to {primary} (the interval of its excess does not "
                "lie above 0)"
            )
        else:
            reason = (
                f"The continued model's middle layers lean to {primary}, but not more than the "
                "scratch model's (the difference's interval does not lie above 0)"
            )
    band = random_init_region_band(root, seeds, language).get("middle")
    return SignatureVerdict(
        language,
        primary,
        verdict,
        reason,
        step=int(step),
        n_seeds=len(seeds),
        interval=how,
        continued=cont,
        scratch=scratch,
        difference=diff,
        continued_output=cont_out,
        random_band=band,
    )
