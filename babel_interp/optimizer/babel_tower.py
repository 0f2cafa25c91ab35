"""The paper's corpus allocation (its Algorithm 1), with the loss proxy calibrated.

What the paper states, and what this module chooses where it is silent:

* Training loss stands in for the share of the primary (Python) system,
  ``P(l) = (alpha - l) / (alpha - beta)``, with ``alpha`` the loss at the start of continual
  pretraining and ``beta`` its plateau. Read literally, ``P`` is 0 at the start and 1 at the
  plateau: it measures how far the language has come along its curve. We implement the formula
  exactly (:func:`system_share`, clipped to [0, 1]) and let :func:`calibrate_proxy` say, against
  the measured working-language share, how it relates to the share of the primary system (its
  sign and error, which the paper never checked).
* alpha and beta are estimated robustly: the median of the first ``head`` evaluations and of the
  last ``tail`` ones, so one noisy evaluation moves neither.
* Each language gets the token budget that keeps it at its best stage. The best point comes, in
  order of preference, from an explicit step (the stage detector's end of Translation, or the
  checkpoint with the best downstream score), or else from the loss proxy: the first point where
  ``P`` reaches ``target_share``. Its tokens seen (of that language, from the continual-pretraining
  run) times ``token_scale`` is the budget, never more than the language's natural data.
* A language that never depended on the primary keeps its data, as does the primary itself.
  Dependence is read from the working-language analyzer only at checkpoints that pass its
  competence gate (a model that cannot yet produce the built-ins leans on noise), and only where
  the interval of the matched excess lies above ``control_margin``. A run with no competent
  checkpoint is insufficient evidence of dependence, so the language is not cut on its account.
* The paper's mapping "token share = final system share eta_i / sum_j eta_j" is available as
  ``share_rule="system_share"``, applied among the languages the allocation cuts: they share the
  tokens of their budgets in proportion to their eta, while every language it keeps keeps its
  budget. The default ``"budget"`` sets weights proportional to the budgets, which is what
  reproduces the paper's applied result (PHP 23B -> 5B, C# 16B -> 10B, others kept).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from babel_interp.config import ConfigBase, check_choice, check_int
from babel_interp.optimizer.baselines import Allocation, integer_budgets
from babel_interp.optimizer.stats import Correlation, pearson, spearman
from babel_interp.optimizer.summary import first_crossing

SHARE_RULES = ("budget", "system_share")


@dataclass(frozen=True)
class LossProxy:
    """The two constants of the loss proxy, read off one continual-pretraining loss curve."""

    alpha: float
    beta: float
    head: int
    tail: int
    n_points: int

    def share(self, loss: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """``P(loss)`` for this curve (see :func:`system_share`)."""
        return system_share(loss, self.alpha, self.beta)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_loss_proxy(
    steps: Sequence[int], losses: Sequence[float], head: int = 1, tail: int = 3
) -> LossProxy:
    """Estimate ``alpha`` (start) and ``beta`` (plateau) from a loss curve.

    ``alpha`` is the median of the ``head`` earliest evaluations, ``beta`` the median of the
    ``tail`` latest. The curve must fall: a curve whose end is not below its start has no
    plateau to measure progress against, and is reported as such.
    """
    if len(steps) != len(losses):
        raise ValueError(f"steps ({len(steps)}) and losses ({len(losses)}) differ in length")
    if head < 1 or tail < 1:
        raise ValueError(f"head and tail must be >= 1, got head={head}, tail={tail}")
    pairs = sorted(
        (int(s), float(v)) for s, v in zip(steps, losses, strict=True) if math.isfinite(v)
    )
    if len(pairs) < head + tail:
        raise ValueError(
            f"a loss curve needs at least head + tail = {head + tail} finite points, "
            f"got {len(pairs)}"
        )
    values = np.array([v for _, v in pairs])
    alpha = float(np.median(values[:head]))
    beta = float(np.median(values[-tail:]))
    if not alpha > beta:
        raise ValueError(
            f"the loss did not fall (start alpha={alpha:.4f}, plateau beta={beta:.4f}): "
            "the loss proxy needs a continual-pretraining curve that decreases"
        )
    return LossProxy(alpha=alpha, beta=beta, head=head, tail=tail, n_points=len(pairs))


def system_share(
    loss: float | Sequence[float] | np.ndarray, alpha: float, beta: float
) -> float | np.ndarray:
    """The paper's proxy ``P(l) = (alpha - l) / (alpha - beta)``, clipped to [0, 1]."""
    if not alpha > beta:
        raise ValueError(f"alpha must exceed beta, got alpha={alpha}, beta={beta}")
    arr = np.clip((alpha - np.asarray(loss, dtype=np.float64)) / (alpha - beta), 0.0, 1.0)
    return float(arr) if arr.ndim == 0 else arr


@dataclass(frozen=True)
class CalibrationReport:
    """How well the loss proxy tracks the measured working-language share.

    ``rmse``/``mae`` compare the proxy with the measured share as it stands; ``*_complement``
    compare ``1 - proxy`` (if the proxy measures progress away from the primary, its complement is
    what should match a primary share). ``slope``/``intercept`` are the least-squares line
    ``measured ~ slope * proxy + intercept``; ``orientation`` is "direct" when the proxy rises with
    the measured share and "inverse" when it falls.
    """

    n: int
    pearson: Correlation
    spearman: Correlation
    rmse: float
    mae: float
    rmse_complement: float
    mae_complement: float
    slope: float
    intercept: float
    orientation: str
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pearson"] = self.pearson.to_dict()
        d["spearman"] = self.spearman.to_dict()
        return d

    def to_dataframe(self) -> pd.DataFrame:
        """One row: the fit's numbers, flat."""
        row = {
            "label": self.label,
            "n": self.n,
            "pearson_r": self.pearson.r,
            "pearson_low": self.pearson.low,
            "pearson_high": self.pearson.high,
            "pearson_p": self.pearson.p_value,
            "spearman_rho": self.spearman.r,
            "spearman_low": self.spearman.low,
            "spearman_high": self.spearman.high,
            "spearman_p": self.spearman.p_value,
            "rmse": self.rmse,
            "mae": self.mae,
            "rmse_complement": self.rmse_complement,
            "mae_complement": self.mae_complement,
            "slope": self.slope,
            "intercept": self.intercept,
            "orientation": self.orientation,
        }
        return pd.DataFrame([row])


def calibrate_proxy(
    proxy_series: Sequence[float],
    measured_share_series: Sequence[float],
    level: float = 0.95,
    label: str = "",
) -> CalibrationReport:
    """Compare the loss proxy with a measured working-language share at the same checkpoints."""
    x = np.asarray(proxy_series, dtype=np.float64)
    y = np.asarray(measured_share_series, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"proxy and measured series must be 1-D and paired, got {x.shape} and {y.shape}"
        )
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        raise ValueError(f"calibration needs at least 3 paired finite points, got {x.size}")
    pr = pearson(x, y, level)
    sr = spearman(x, y, level)
    if float(np.var(x)) > 0:
        slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    else:
        slope, intercept = math.nan, float(y.mean())
    return CalibrationReport(
        n=int(x.size),
        pearson=pr,
        spearman=sr,
        rmse=float(np.sqrt(np.mean((x - y) ** 2))),
        mae=float(np.mean(np.abs(x - y))),
        rmse_complement=float(np.sqrt(np.mean((1 - x - y) ** 2))),
        mae_complement=float(np.mean(np.abs(1 - x - y))),
        slope=slope,
        intercept=intercept,
        orientation="inverse" if (np.isfinite(pr.r) and pr.r < 0) else "direct",
        label=label,
    )


@dataclass
class LanguageEvidence(ConfigBase):
    """What the analyzers measured about one new language in its continual-pretraining run.

    ``steps``, ``tokens`` (this language's tokens seen) and ``losses`` (its validation loss) are
    parallel and cover the run's evaluations. ``best_step`` is the step at which the language is
    at its best stage, when the stage detector or a downstream evaluation says so.
    ``depends_on_primary`` states the answer (False: the language was found never to rely on
    the primary system, e.g. no Translation stage); None leaves it to the measurements below.
    ``measured_share`` is the working-language share of the primary at the same steps (optional,
    for calibration); ``control_share`` the same measure on matched controls. ``competent`` is
    the analyzer's competence gate per step (False where a step was not analyzed); ``excess``,
    ``excess_lo`` and ``excess_hi`` are the matched excess (mean ``log(P_primary / P_target)``
    at probes minus at their matched controls) at the middle layers and its interval. Only these
    decide dependence: a share without a gate or an interval cannot tell a lean from noise.
    """

    language: str
    steps: list[int]
    tokens: list[int]
    losses: list[float]
    best_step: int | None = None
    best_step_source: str = "explicit"
    depends_on_primary: bool | None = None
    measured_share: list[float] | None = None
    control_share: list[float] | None = None
    source: str = ""
    competent: list[bool] | None = None
    excess: list[float] | None = None
    excess_lo: list[float] | None = None
    excess_hi: list[float] | None = None

    def validate(self) -> None:
        n = len(self.steps)
        if n == 0:
            raise ValueError(f"LanguageEvidence({self.language!r}).steps is empty")
        for name in (
            "tokens",
            "losses",
            "measured_share",
            "control_share",
            "competent",
            "excess",
            "excess_lo",
            "excess_hi",
        ):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(
                    f"LanguageEvidence({self.language!r}).{name} has {len(value)} entries, "
                    f"steps has {n}"
                )
        if list(self.steps) != sorted(self.steps):
            raise ValueError(f"LanguageEvidence({self.language!r}).steps must be increasing")
        if self.best_step is not None and self.best_step not in self.steps:
            raise ValueError(
                f"LanguageEvidence({self.language!r}).best_step {self.best_step} is not one of "
                f"the evaluated steps {self.steps}"
            )


@dataclass
class BabelTowerAllocationConfig(ConfigBase):
    """Parameters of the allocation.

    ``target_share``: proxy value taken as the end of the best stage when no best step is given.
    ``token_scale``: multiplies tokens-at-best-stage measured in the analysis run, to carry them
    to a larger training run (1.0: the same scale). ``total_tokens``: rescale the budgets to this
    total (None: their own sum). ``control_margin``: how far above 0 the lower bound of the
    matched excess's interval (nats, mean over the middle layers) must lie, at a competent
    checkpoint, to count as dependence on the primary.
    """

    primary: str = "python"
    target_share: float = 0.5
    token_scale: float = 1.0
    share_rule: str = "budget"
    total_tokens: int | None = None
    head: int = 1
    tail: int = 3
    control_margin: float = 0.0

    def validate(self) -> None:
        name = type(self).__name__
        if not self.primary:
            raise ValueError(f"{name}.primary must name a language")
        if not 0.0 < self.target_share <= 1.0:
            raise ValueError(f"{name}.target_share must lie in (0, 1], got {self.target_share}")
        if not (math.isfinite(self.token_scale) and self.token_scale > 0):
            raise ValueError(f"{name}.token_scale must be positive, got {self.token_scale}")
        check_choice(name, "share_rule", self.share_rule, SHARE_RULES)
        if self.total_tokens is not None:
            check_int(name, "total_tokens", self.total_tokens, minimum=1)
        if self.head < 1 or self.tail < 1:
            raise ValueError(f"{name}.head and .tail must be >= 1, got {self.head}, {self.tail}")
        if self.control_margin < 0:
            raise ValueError(f"{name}.control_margin must be >= 0, got {self.control_margin}")


@dataclass
class LanguageDecision:
    """What the allocation did with one language, and the numbers behind it."""

    language: str
    action: str  # "keep" | "cut"
    reason: str
    natural_tokens: int
    budget_tokens: int
    eta: float
    alpha: float | None = None
    beta: float | None = None
    best_step: int | None = None
    best_tokens: float | None = None
    best_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BabelTowerResult:
    """The allocation, each language's decision and the proxy's calibration."""

    allocation: Allocation
    decisions: list[LanguageDecision]
    calibration: list[CalibrationReport]
    config: BabelTowerAllocationConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "allocation": self.allocation.to_dict(),
            "decisions": [d.to_dict() for d in self.decisions],
            "calibration": [c.to_dict() for c in self.calibration],
            "config": self.config.to_dict(),
        }

    def decisions_frame(self) -> pd.DataFrame:
        return pd.DataFrame([d.to_dict() for d in self.decisions])

    def calibration_frame(self) -> pd.DataFrame:
        if not self.calibration:
            return pd.DataFrame()
        return pd.concat([c.to_dataframe() for c in self.calibration], ignore_index=True)


def _depends(ev: LanguageEvidence, margin: float) -> tuple[bool | None, str]:
    """Whether ``ev`` shows the language leaning on the primary, with the reason to record.

    True only where, at a checkpoint that passes the competence gate, the matched excess's
    interval lies above ``margin``: an incompetent model's lean, and an excess whose interval
    reaches down to 0, are what noise alone produces. No competent checkpoint at all is
    insufficient evidence of dependence (False). Without a gate or an interval the measurements
    cannot decide (None). A False reason reads as the whole reason of a "keep"; the others are
    appended to a "cut".
    """
    if ev.depends_on_primary is not None:
        if ev.depends_on_primary:
            return True, "depends on the primary: stated by the stage detector / caller"
        return False, "never depended on the primary: stated by the stage detector / caller"
    if ev.competent is None or ev.excess_lo is None:
        if ev.measured_share is not None:
            return None, (
                "dependence on the primary not established: the measured share comes without "
                "the competence gate or the interval of its excess over the controls"
            )
        return None, "dependence on the primary not measured"
    gate = np.asarray(ev.competent, dtype=bool)
    lo = np.asarray(ev.excess_lo, dtype=np.float64)
    n_competent = int(gate.sum())
    if n_competent == 0:
        return False, (
            "insufficient evidence of dependence on the primary: none of the "
            f"{len(ev.steps)} checkpoints passed the working-language competence gate"
        )
    usable = gate & np.isfinite(lo)
    if not usable.any():
        return False, (
            "insufficient evidence of dependence on the primary: no interval of the matched "
            f"excess at the {n_competent} competent checkpoint(s)"
        )
    above = np.nonzero(usable & (lo > margin))[0]
    if above.size:
        i = int(above[0])
        est = ev.excess[i] if ev.excess is not None else math.nan
        hi = ev.excess_hi[i] if ev.excess_hi is not None else math.nan
        return True, (
            f"depends on the primary: the matched excess's interval lay above {margin} at "
            f"{above.size} of {int(usable.sum())} competent checkpoints (first at step "
            f"{ev.steps[i]}: {est:.3f} [{lo[i]:.3f}, {hi:.3f}])"
        )
    j = int(np.nanargmax(np.where(usable, lo, np.nan)))
    return False, (
        f"never depended on the primary: at none of the {int(usable.sum())} competent "
        f"checkpoints did the matched excess's interval lie above {margin} (highest lower "
        f"bound {lo[j]:.3f}, at step {ev.steps[j]})"
    )


def babel_tower_allocation(
    sizes: Mapping[str, int],
    evidence: Mapping[str, LanguageEvidence],
    cfg: BabelTowerAllocationConfig | None = None,
) -> BabelTowerResult:
    """The paper's Algorithm 1 over natural ``sizes`` and per-language ``evidence``.

    Languages without evidence, the primary, languages that never depended on the primary and
    languages whose run gives insufficient evidence of dependence (no competent checkpoint)
    keep their natural data; every other language is cut to the tokens that keep it at its best
    stage. Every decision, with its numbers and reason, is in the result.
    """
    cfg = cfg or BabelTowerAllocationConfig()
    if not sizes:
        raise ValueError("sizes must name at least one language")
    unknown = sorted(set(evidence) - set(sizes))
    if unknown:
        raise ValueError(f"evidence for language(s) {unknown} not in the corpus {list(sizes)}")
    decisions: list[LanguageDecision] = []
    calibration: list[CalibrationReport] = []
    for lang, n in sizes.items():
        n = int(n)
        ev = evidence.get(lang)
        if lang == cfg.primary:
            decisions.append(
                LanguageDecision(lang, "keep", "the primary language keeps its data", n, n, 1.0)
            )
            continue
        if ev is None:
            decisions.append(
                LanguageDecision(lang, "keep", "no continual-pretraining evidence", n, n, 1.0)
            )
            continue
        proxy = fit_loss_proxy(ev.steps, ev.losses, cfg.head, cfg.tail)
        share = np.asarray(proxy.share(ev.losses), dtype=np.float64)
        if ev.measured_share is not None:
            try:
                calibration.append(calibrate_proxy(share, ev.measured_share, label=lang))
            except ValueError:
                pass  # too few points to calibrate; the decision does not depend on it
        depends, why = _depends(ev, cfg.control_margin)
        common = dict(alpha=proxy.alpha, beta=proxy.beta)
        if depends is False:
            decisions.append(LanguageDecision(lang, "keep", why, n, n, 1.0, **common))
            continue
        tokens = np.asarray(ev.tokens, dtype=np.float64)
        if ev.best_step is not None:
            i = ev.steps.index(ev.best_step)
            best_tokens, eta = float(tokens[i]), float(share[i])
            source = ev.best_step_source
            best_step: int | None = ev.best_step
        else:
            crossing = first_crossing(tokens, share, cfg.target_share)
            if crossing is None:
                decisions.append(
                    LanguageDecision(
                        lang,
                        "keep",
                        f"the loss proxy never reached {cfg.target_share} within the run",
                        n,
                        n,
                        float(share.max()),
                        **common,
                    )
                )
                continue
            best_tokens, eta = crossing, cfg.target_share
            source = f"loss proxy reaches {cfg.target_share}"
            best_step = None
        scaled = best_tokens * cfg.token_scale
        if scaled >= n:
            decisions.append(
                LanguageDecision(
                    lang,
                    "keep",
                    f"its best stage ({scaled:.0f} tokens) lies beyond its {n} natural tokens",
                    n,
                    n,
                    eta,
                    best_step=best_step,
                    best_tokens=best_tokens,
                    best_source=source,
                    **common,
                )
            )
            continue
        reason = f"cut to the tokens at its best stage ({source}); {why}"
        decisions.append(
            LanguageDecision(
                lang,
                "cut",
                reason,
                n,
                int(round(scaled)),
                eta,
                best_step=best_step,
                best_tokens=best_tokens,
                best_source=source,
                **common,
            )
        )
    pooled = _pooled_calibration(evidence, cfg)
    if pooled is not None and len(calibration) > 1:
        calibration.append(pooled)
    allocation = _to_allocation(sizes, decisions, cfg)
    return BabelTowerResult(allocation, decisions, calibration, cfg)


def _pooled_calibration(
    evidence: Mapping[str, LanguageEvidence], cfg: BabelTowerAllocationConfig
) -> CalibrationReport | None:
    xs: list[float] = []
    ys: list[float] = []
    for ev in evidence.values():
        if ev.measured_share is None or ev.language == cfg.primary:
            continue
        try:
            proxy = fit_loss_proxy(ev.steps, ev.losses, cfg.head, cfg.tail)
        except ValueError:
            continue
        xs.extend(np.asarray(proxy.share(ev.losses)).tolist())
        ys.extend(ev.measured_share)
    if len(xs) < 3:
        return None
    return calibrate_proxy(xs, ys, label="pooled")


def _to_allocation(
    sizes: Mapping[str, int], decisions: list[LanguageDecision], cfg: BabelTowerAllocationConfig
) -> Allocation:
    """The mixture of the decisions under ``cfg.share_rule``.

    "budget": weights proportional to the decisions' budgets. "system_share": a language the
    allocation keeps keeps its budget's weight whatever its eta (a kept language's eta only
    records where its proxy stood, e.g. short of the target; it is no reason to shrink data the
    decision keeps); the cut languages split the weight of their budgets' sum in proportion to
    their eta, so one cut language may get more than its own budget. Without ``total_tokens``
    the budgets are the decisions' own (under "system_share", the cut languages' sum split by
    eta); with it, every budget is rescaled to that total.
    """
    budgets = {d.language: d.budget_tokens for d in decisions}
    total_budget = sum(budgets.values())
    if total_budget <= 0:
        raise ValueError("every language has a budget of 0 tokens")
    weights = {lang: b / total_budget for lang, b in budgets.items()}
    final = dict(budgets)
    cut = [d for d in decisions if d.action == "cut"]
    cut_tokens = sum(budgets[d.language] for d in cut)
    if cfg.share_rule == "system_share" and cut_tokens > 0:
        etas = {d.language: d.eta if sizes[d.language] > 0 else 0.0 for d in cut}
        z = sum(etas.values())
        if z <= 0:
            raise ValueError("every cut language has a system share of 0; cannot normalize")
        for lang, e in etas.items():
            weights[lang] = (cut_tokens / total_budget) * e / z
        final.update(integer_budgets(etas, cut_tokens))
    total = cfg.total_tokens if cfg.total_tokens is not None else int(total_budget)
    if cfg.total_tokens is not None:
        final = integer_budgets(weights, total)
    notes = [f"{d.language}: {d.action} ({d.reason})" for d in decisions]
    return Allocation(
        method="babel-tower",
        weights=weights,
        budgets=final,
        sizes={k: int(v) for k, v in sizes.items()},
        total_tokens=total,
        params=cfg.to_dict(),
        notes=notes,
    )
