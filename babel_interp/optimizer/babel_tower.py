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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from babel_interp.config import ConfigBase, check_choice, check_int
from babel_interp.optimizer.baselines import Allocation, integer_budgets
from babel_interp.optimizer.proxy_fit import SaturatingFit, fit_saturating
from babel_interp.optimizer.stats import Correlation, pearson, spearman
from babel_interp.optimizer.summary import first_crossing

SHARE_RULES = ("budget", "system_share")
PROXY_FITS = ("exp", "tail_median")


@dataclass(frozen=True)
class LossProxy:
    """The two constants of the loss proxy, read off one continual-pretraining loss curve.

    ``method`` is how: "exp" (the saturating fit of :mod:`babel_interp.optimizer.proxy_fit`, with
    ``tau`` and the bootstrap intervals of ``beta`` and ``tau`` at ``level``) or "tail_median"
    (the median of the first ``head`` and last ``tail`` evaluations; no intervals).
    """

    alpha: float
    beta: float
    head: int
    tail: int
    n_points: int
    method: str = "tail_median"
    tau: float | None = None
    t0: float | None = None
    beta_low: float | None = None
    beta_high: float | None = None
    tau_low: float | None = None
    tau_high: float | None = None
    level: float | None = None
    fit: SaturatingFit | None = field(default=None, repr=False, compare=False)

    def share(self, loss: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """``P(loss)`` for this curve (see :func:`system_share`)."""
        return system_share(loss, self.alpha, self.beta)

    def crossing(
        self, tokens: Sequence[float], losses: Sequence[float], share: float
    ) -> tuple[float, float, float] | None:
        """Tokens at which the proxy first reaches ``share``, with its interval.

        "exp": on the fitted curve, ``t0 + tau ln(1 / (1 - share))``, interval from the bootstrap
        ``tau``. "tail_median": on the evaluations, linearly interpolated between the two on either
        side, no interval (NaN). None when the proxy never reaches ``share``.
        """
        if self.fit is not None:
            if share >= 1.0:
                return None
            lo, hi = self.fit.crossing_interval(share)
            return self.fit.crossing(share), lo, hi
        values = np.asarray(self.share(losses), dtype=np.float64)
        hit = first_crossing(np.asarray(tokens, dtype=np.float64), values, share)
        return None if hit is None else (hit, math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("fit")
        return d


def fit_loss_proxy(
    tokens: Sequence[float],
    losses: Sequence[float],
    head: int = 1,
    tail: int = 3,
    method: str = "exp",
    language: str = "",
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> LossProxy:
    """Estimate ``alpha`` (start) and ``beta`` (plateau) from a loss curve over tokens seen.

    ``method="exp"`` (default): the saturating fit ``beta + (alpha - beta) exp(-(t - t0) / tau)``
    (:func:`babel_interp.optimizer.proxy_fit.fit_saturating`): ``beta`` is the curve's asymptote,
    so it does not move with how long the run went on once the curve has bent, and comes with a
    bootstrap interval; a curve that does not identify it raises
    :class:`~babel_interp.optimizer.proxy_fit.ProxyFitError` naming ``language`` and the numbers.
    ``method="tail_median"``: ``alpha`` is the median of the ``head`` earliest evaluations,
    ``beta`` the median of the ``tail`` latest (the earlier estimator; its plateau is wherever the
    run stopped). Either way the curve must fall.
    """
    check_choice("fit_loss_proxy", "method", method, PROXY_FITS)
    if len(tokens) != len(losses):
        raise ValueError(f"tokens ({len(tokens)}) and losses ({len(losses)}) differ in length")
    if head < 1 or tail < 1:
        raise ValueError(f"head and tail must be >= 1, got head={head}, tail={tail}")
    pairs = sorted(
        (float(s), float(v)) for s, v in zip(tokens, losses, strict=True) if math.isfinite(v)
    )
    if method == "exp":
        f = fit_saturating(
            np.array([p[0] for p in pairs]),
            np.array([p[1] for p in pairs]),
            language=language,
            n_boot=n_boot,
            level=level,
            seed=seed,
        )
        return LossProxy(
            alpha=f.alpha,
            beta=f.beta,
            head=head,
            tail=tail,
            n_points=len(pairs),
            method=method,
            tau=f.tau,
            t0=f.t0,
            beta_low=f.beta_low,
            beta_high=f.beta_high,
            tau_low=f.tau_low,
            tau_high=f.tau_high,
            level=level,
            fit=f,
        )
    who = f" of {language!r}" if language else ""
    if len(pairs) < head + tail:
        raise ValueError(
            f"a loss curve{who} needs at least head + tail = {head + tail} finite points, "
            f"got {len(pairs)}"
        )
    values = np.array([v for _, v in pairs])
    alpha = float(np.median(values[:head]))
    beta = float(np.median(values[-tail:]))
    if not alpha > beta:
        raise ValueError(
            f"the loss{who} did not fall (start alpha={alpha:.4f}, plateau beta={beta:.4f}): "
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


# How the allocation decides whether a new language leans on the primary (see the config).
DEPENDENCE_RULES = ("measured", "assumed")


@dataclass
class BabelTowerAllocationConfig(ConfigBase):
    """Parameters of the allocation.

    ``target_share``: the proxy value taken as the end of the best stage when no best step is
    given. The paper's Algorithm 1 gives each language the tokens that keep it at its best stage
    (the end of Translation, while the new language still runs on the primary's system) and
    reads that stage off the proxy ``P(l) = (alpha - l) / (alpha - beta)``, 0 at the start of
    continual pretraining and 1 at the plateau; PAPER.md records no threshold. 0.5 is this
    project's choice: the point where half of the loss drop from start to plateau is made, the
    midpoint between running on the primary's system and on its own (under the saturating fit,
    ``tau ln 2`` tokens, the curve's half-life). It is a choice, not a measured quantity: the
    crossing scales as ``ln(1 / (1 - s))``, so 0.3 gives about half the tokens of 0.5 and 0.7
    about 1.7 times as many; :func:`proxy_sensitivity` tabulates the allocation across shares
    and run lengths. ``proxy_fit``: how alpha and beta are read off the curve, "exp" (default:
    the asymptote of a saturating fit in tokens seen, with bootstrap intervals from
    ``proxy_boot`` replicates at ``proxy_level``) or "tail_median" (the median of the first
    ``head`` and last ``tail`` evaluations: a plateau that moves with the run's length).
    ``token_scale``: multiplies tokens-at-best-stage measured in the analysis run, to carry them
    to a larger training run (1.0: the same scale). ``total_tokens``: rescale the budgets to this
    total (None: their own sum). ``control_margin``: how far above 0 the lower bound of the
    matched excess's interval (nats, mean over the middle layers) must lie, at a competent
    checkpoint, to count as dependence on the primary. ``dependence``: "measured" (default:
    a language is cut only where the working-language evidence shows it leaning on the primary,
    see :func:`_depends`) or "assumed" (the paper's Algorithm 1 as published: every new
    language is taken to pass through Translation, so each is cut at its proxy crossing
    whatever the analyzer measured).
    """

    primary: str = "python"
    target_share: float = 0.5
    token_scale: float = 1.0
    share_rule: str = "budget"
    total_tokens: int | None = None
    head: int = 1
    tail: int = 3
    control_margin: float = 0.0
    proxy_fit: str = "exp"
    proxy_boot: int = 200
    proxy_level: float = 0.95
    dependence: str = "measured"

    def validate(self) -> None:
        name = type(self).__name__
        check_choice(name, "dependence", self.dependence, DEPENDENCE_RULES)
        if not self.primary:
            raise ValueError(f"{name}.primary must name a language")
        if not 0.0 < self.target_share <= 1.0:
            raise ValueError(f"{name}.target_share must lie in (0, 1], got {self.target_share}")
        if not (math.isfinite(self.token_scale) and self.token_scale > 0):
            raise ValueError(f"{name}.token_scale must be positive, got {self.token_scale}")
        check_choice(name, "share_rule", self.share_rule, SHARE_RULES)
        check_choice(name, "proxy_fit", self.proxy_fit, PROXY_FITS)
        check_int(name, "proxy_boot", self.proxy_boot, minimum=0)
        if not 0.0 < self.proxy_level < 1.0:
            raise ValueError(f"{name}.proxy_level must lie in (0, 1), got {self.proxy_level}")
        if self.total_tokens is not None:
            check_int(name, "total_tokens", self.total_tokens, minimum=1)
        if self.head < 1 or self.tail < 1:
            raise ValueError(f"{name}.head and .tail must be >= 1, got {self.head}, {self.tail}")
        if self.control_margin < 0:
            raise ValueError(f"{name}.control_margin must be >= 0, got {self.control_margin}")

    def fit(self, ev: LanguageEvidence, n: int | None = None) -> LossProxy:
        """The loss proxy of ``ev``'s curve (its first ``n`` evaluations) under this config."""
        k = len(ev.steps) if n is None else n
        return fit_loss_proxy(
            ev.tokens[:k],
            ev.losses[:k],
            self.head,
            self.tail,
            method=self.proxy_fit,
            language=ev.language,
            n_boot=self.proxy_boot,
            level=self.proxy_level,
        )


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
    best_tokens_low: float | None = None
    best_tokens_high: float | None = None
    beta_low: float | None = None
    beta_high: float | None = None
    tau: float | None = None
    proxy_fit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BabelTowerResult:
    """The allocation, each language's decision, the proxy's calibration and the crossing's
    sensitivity to ``target_share`` and run length (:func:`proxy_sensitivity`)."""

    allocation: Allocation
    decisions: list[LanguageDecision]
    calibration: list[CalibrationReport]
    config: BabelTowerAllocationConfig
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allocation": self.allocation.to_dict(),
            "decisions": [d.to_dict() for d in self.decisions],
            "calibration": [c.to_dict() for c in self.calibration],
            "config": self.config.to_dict(),
            "sensitivity": _records(self.sensitivity),
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
        if cfg.dependence == "assumed":
            depends, why = (
                True,
                (
                    "assumed to depend on the primary (the paper's Algorithm 1: every new language "
                    "passes through Translation)"
                ),
            )
        else:
            depends, why = _depends(ev, cfg.control_margin)
        needs_proxy = depends is not False
        try:
            proxy: LossProxy | None = cfg.fit(ev)
        except ValueError:
            if needs_proxy:
                raise  # the decision rests on the proxy: its failure names the curve and why
            proxy = None  # a language kept on other grounds needs no proxy
        share = np.asarray(proxy.share(ev.losses), dtype=np.float64) if proxy is not None else None
        if share is not None and ev.measured_share is not None:
            try:
                calibration.append(calibrate_proxy(share, ev.measured_share, label=lang))
            except ValueError:
                pass  # too few points to calibrate; the decision does not depend on it
        common = _proxy_fields(proxy)
        if depends is False or proxy is None or share is None:
            decisions.append(LanguageDecision(lang, "keep", why, n, n, 1.0, **common))
            continue
        tokens = np.asarray(ev.tokens, dtype=np.float64)
        lo = hi = None
        if ev.best_step is not None:
            i = ev.steps.index(ev.best_step)
            best_tokens, eta = float(tokens[i]), float(share[i])
            source = ev.best_step_source
            best_step: int | None = ev.best_step
        else:
            crossing = proxy.crossing(tokens, ev.losses, cfg.target_share)
            if crossing is not None and crossing[0] > float(np.nanmax(tokens)):
                reason = (
                    f"the loss proxy reaches {cfg.target_share} only at {crossing[0]:.0f} tokens, "
                    f"beyond the run's {float(np.nanmax(tokens)):.0f}"
                )
                crossing = None
            else:
                reason = f"the loss proxy never reached {cfg.target_share} within the run"
            if crossing is None:
                top = float(share.max())
                decisions.append(LanguageDecision(lang, "keep", reason, n, n, top, **common))
                continue
            best_tokens, lo, hi = crossing
            eta = cfg.target_share
            source = f"loss proxy reaches {cfg.target_share}"
            if lo is not None and math.isfinite(lo):
                source += f", interval [{lo:.0f}, {hi:.0f}] tokens"
            best_step = None
        scaled = best_tokens * cfg.token_scale
        best = dict(
            best_step=best_step,
            best_tokens=best_tokens,
            best_source=source,
            best_tokens_low=lo,
            best_tokens_high=hi,
        )
        if scaled >= n:
            decisions.append(
                LanguageDecision(
                    lang,
                    "keep",
                    f"its best stage ({scaled:.0f} tokens) lies beyond its {n} natural tokens",
                    n,
                    n,
                    eta,
                    **best,
                    **common,
                )
            )
            continue
        reason = f"cut to the tokens at its best stage ({source}); {why}"
        decisions.append(
            LanguageDecision(lang, "cut", reason, n, int(round(scaled)), eta, **best, **common)
        )
    pooled = _pooled_calibration(evidence, cfg)
    if pooled is not None and len(calibration) > 1:
        calibration.append(pooled)
    allocation = _to_allocation(sizes, decisions, cfg)
    sensitivity = proxy_sensitivity(
        {k: v for k, v in evidence.items() if k != cfg.primary}, cfg, sizes=sizes
    )
    return BabelTowerResult(allocation, decisions, calibration, cfg, sensitivity)


def _proxy_fields(proxy: LossProxy | None) -> dict[str, Any]:
    """The proxy's numbers a decision records."""
    if proxy is None:
        return {}
    return dict(
        alpha=proxy.alpha,
        beta=proxy.beta,
        beta_low=proxy.beta_low,
        beta_high=proxy.beta_high,
        tau=proxy.tau,
        proxy_fit=proxy.method,
    )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records (NaN as None)."""
    if df.empty:
        return []
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in df.astype(object).to_dict(orient="records")
    ]


SENSITIVITY_SHARES = (0.3, 0.4, 0.5, 0.6, 0.7)
SENSITIVITY_FRACTIONS = (0.5, 0.75, 1.0)
SENSITIVITY_COLUMNS = [
    "language",
    "run_fraction",
    "n_points",
    "run_tokens",
    "target_share",
    "proxy_fit",
    "alpha",
    "beta",
    "beta_low",
    "beta_high",
    "crossing_tokens",
    "crossing_low",
    "crossing_high",
    "within_run",
    "budget_tokens",
    "note",
]


def proxy_sensitivity(
    evidence: Mapping[str, LanguageEvidence],
    cfg: BabelTowerAllocationConfig | None = None,
    shares: Sequence[float] = SENSITIVITY_SHARES,
    fractions: Sequence[float] = SENSITIVITY_FRACTIONS,
    sizes: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """How the loss proxy's cut moves with ``target_share`` and with the analysis run's length.

    For each language, the curve truncated to its first ``ceil(fraction * n)`` evaluations
    (``fractions`` of them, by count) is fitted under ``cfg``, and for each of ``shares`` (plus
    ``cfg.target_share``) the tokens at which the proxy reaches it, with its interval. One row per
    (language, run_fraction, target_share), columns :data:`SENSITIVITY_COLUMNS`.
    ``budget_tokens`` is the crossing times ``token_scale``, capped by the language's natural
    tokens when ``sizes`` names it (NaN when the crossing lies beyond the truncated run, where
    the allocation would keep the language's data); a truncation the fit cannot identify gets a
    row per share with NaN numbers and the reason in ``note``. The allocation's dependence
    evidence and explicit best steps do not enter: this is the proxy's own sensitivity.
    """
    cfg = cfg or BabelTowerAllocationConfig()
    grid = sorted({round(float(s), 6) for s in (*shares, cfg.target_share)})
    rows: list[dict[str, Any]] = []
    for lang, ev in evidence.items():
        n_all = len(ev.steps)
        for frac in fractions:
            k = max(1, math.ceil(frac * n_all - 1e-9))
            tokens = np.asarray(ev.tokens[:k], dtype=np.float64)
            base = {
                "language": lang,
                "run_fraction": float(frac),
                "n_points": k,
                "run_tokens": float(np.nanmax(tokens)),
                "proxy_fit": cfg.proxy_fit,
            }
            try:
                proxy = cfg.fit(ev, k)
            except ValueError as exc:
                rows.extend({**base, "target_share": s, "note": str(exc)} for s in grid)
                continue
            for s in grid:
                hit = proxy.crossing(tokens, ev.losses[:k], s)
                est, lo, hi = hit if hit is not None else (math.nan, math.nan, math.nan)
                within = bool(hit is not None and est <= base["run_tokens"])
                budget = est * cfg.token_scale if within else math.nan
                if sizes is not None and lang in sizes and within:
                    budget = min(budget, float(sizes[lang]))
                rows.append(
                    {
                        **base,
                        "target_share": s,
                        "alpha": proxy.alpha,
                        "beta": proxy.beta,
                        "beta_low": proxy.beta_low,
                        "beta_high": proxy.beta_high,
                        "crossing_tokens": est,
                        "crossing_low": lo,
                        "crossing_high": hi,
                        "within_run": within,
                        "budget_tokens": budget,
                        "note": "" if within else "the proxy does not reach it within the run",
                    }
                )
    df = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
    num = [c for c in SENSITIVITY_COLUMNS if c not in ("language", "proxy_fit", "note")]
    df[num] = df[num].apply(pd.to_numeric, errors="coerce")
    df["within_run"] = df["within_run"].eq(1)
    df["note"] = df["note"].fillna("")
    return df


def _pooled_calibration(
    evidence: Mapping[str, LanguageEvidence], cfg: BabelTowerAllocationConfig
) -> CalibrationReport | None:
    xs: list[float] = []
    ys: list[float] = []
    for ev in evidence.values():
        if ev.measured_share is None or ev.language == cfg.primary:
            continue
        try:
            proxy = cfg.fit(ev)
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
