"""A stage-aware online mixture controller.

The paper's recipe is static: measure when each new language leaves its best stage, then retrain
with budgets cut there. The controller does it in one run: while a new language is in its
Translation stage (it still runs on the primary's system and learns fast from it) it is
up-weighted; once the signals say it has left Translation (the working-language share of the
primary has fallen, or its loss has plateaued) the up-weighting stops.

Signals are noisy, so every change has hysteresis: a condition must hold on ``patience``
consecutive checks before it acts, and a language must dwell ``min_dwell`` checks in a state
before it may change again. Leaving and re-entering use different share thresholds
(``share_exit < share_enter``), so a share hovering at one threshold cannot flip the state.

:class:`StageDecider` is the pure decision logic over explicit signal sequences;
:class:`StageAwareController` (in :mod:`babel_interp.optimizer.online`) binds it to the trainer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CONTROLLER_LOG = "controller.jsonl"
TRANSLATION = "translation"
RELEASED = "released"


@dataclass
class ControllerConfig:
    """Parameters of the stage-aware controller.

    ``boost``: weight multiplier of a language in Translation (before renormalizing).
    ``share_exit``/``share_enter``: working-language share of the primary below which a language
    has left Translation, and above which it is taken back into it.
    ``plateau_rel``: relative loss improvement per check below which the loss has plateaued
    (used when no share is measured, and as a second exit signal).
    ``patience``: consecutive checks a condition must hold; ``min_dwell``: checks between changes.
    """

    primary: str = "python"
    boost: float = 2.0
    share_exit: float = 0.4
    share_enter: float = 0.6
    plateau_rel: float = 0.01
    patience: int = 2
    min_dwell: int = 2
    use_loss_plateau: bool = True
    languages: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.primary:
            raise ValueError("ControllerConfig.primary must name a language")
        if not (math.isfinite(self.boost) and self.boost >= 1.0):
            raise ValueError(f"ControllerConfig.boost must be >= 1, got {self.boost}")
        if not 0.0 <= self.share_exit < self.share_enter <= 1.0:
            raise ValueError(
                "ControllerConfig.share_exit must be below share_enter, both in [0, 1], got "
                f"share_exit={self.share_exit}, share_enter={self.share_enter}"
            )
        if not (math.isfinite(self.plateau_rel) and self.plateau_rel >= 0):
            raise ValueError(f"ControllerConfig.plateau_rel must be >= 0, got {self.plateau_rel}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"ControllerConfig.patience must be an int >= 1, got {self.patience}")
        if not isinstance(self.min_dwell, int) or self.min_dwell < 0:
            raise ValueError(
                f"ControllerConfig.min_dwell must be an int >= 0, got {self.min_dwell}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControllerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"ControllerConfig: unknown field(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**d)


@dataclass
class LanguageSignal:
    """What the analyzers say about one language at one check (any field may be missing)."""

    val_loss: float | None = None
    primary_share: float | None = None


@dataclass
class Decision:
    """One check of one language: what was decided and why (a line of ``controller.jsonl``)."""

    step: int
    language: str
    action: str  # "hold" | "release" | "re-enter"
    state_before: str
    state_after: str
    reason: str
    signals: dict[str, float | None]
    streak: int
    dwell: int
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _LangState:
    state: str = TRANSLATION
    exit_streak: int = 0
    enter_streak: int = 0
    dwell: int = 0
    last_loss: float | None = None


class StageDecider:
    """Pure decision logic: feed it signals per check, it returns decisions and weights.

    ``base_weights`` are the mixture's weights without up-weighting; every non-primary language
    starts in Translation (it has just been introduced), so it starts boosted.
    """

    def __init__(self, base_weights: Mapping[str, float], cfg: ControllerConfig | None = None):
        self.cfg = cfg or ControllerConfig()
        if not base_weights:
            raise ValueError("base_weights must name at least one language")
        if any((not math.isfinite(w)) or w < 0 for w in base_weights.values()):
            raise ValueError(f"base_weights must be finite and >= 0, got {dict(base_weights)}")
        z = float(sum(base_weights.values()))
        if z <= 0:
            raise ValueError("base_weights sum to 0")
        self.base = {lang: float(w) / z for lang, w in base_weights.items()}
        managed = self.cfg.languages or [lang for lang in self.base if lang != self.cfg.primary]
        unknown = [lang for lang in managed if lang not in self.base]
        if unknown:
            raise ValueError(f"ControllerConfig.languages {unknown} are not in the mixture")
        self.states = {lang: _LangState() for lang in managed}

    def weights(self) -> dict[str, float]:
        """Current weights: base weights, Translation languages multiplied by ``boost``."""
        raw = {
            lang: w
            * (
                self.cfg.boost
                if lang in self.states and self.states[lang].state == TRANSLATION
                else 1.0
            )
            for lang, w in self.base.items()
        }
        z = sum(raw.values())
        return {lang: v / z for lang, v in raw.items()}

    def state_of(self, language: str) -> str:
        return self.states[language].state

    def update(
        self, step: int, signals: Mapping[str, LanguageSignal]
    ) -> tuple[list[Decision], dict[str, float] | None]:
        """One check. Returns every language's decision, and the new weights if any changed."""
        decisions: list[Decision] = []
        changed = False
        for lang, st in self.states.items():
            sig = signals.get(lang, LanguageSignal())
            rel = None
            if sig.val_loss is not None and st.last_loss is not None and st.last_loss > 0:
                rel = (st.last_loss - sig.val_loss) / st.last_loss
            if sig.val_loss is not None:
                st.last_loss = sig.val_loss
            st.dwell += 1
            before = st.state
            action, reason = self._decide(st, sig, rel)
            if action != "hold":
                changed = True
            decisions.append(
                Decision(
                    step=int(step),
                    language=lang,
                    action=action,
                    state_before=before,
                    state_after=st.state,
                    reason=reason,
                    signals={
                        "val_loss": sig.val_loss,
                        "primary_share": sig.primary_share,
                        "loss_rel_improvement": rel,
                    },
                    streak=max(st.exit_streak, st.enter_streak),
                    dwell=st.dwell,
                )
            )
        weights = self.weights()
        for d in decisions:
            d.weights = weights
        return decisions, (weights if changed else None)

    def _decide(self, st: _LangState, sig: LanguageSignal, rel: float | None) -> tuple[str, str]:
        cfg = self.cfg
        share = sig.primary_share
        if st.state == TRANSLATION:
            why = []
            if share is not None and share <= cfg.share_exit:
                why.append(f"primary share {share:.3f} <= {cfg.share_exit}")
            if cfg.use_loss_plateau and rel is not None and rel < cfg.plateau_rel:
                why.append(f"loss improved {rel:.4f} < {cfg.plateau_rel} (plateau)")
            if share is not None and share >= cfg.share_enter:
                why = []  # the measured share overrides a loss plateau: still on the primary
            st.exit_streak = st.exit_streak + 1 if why else 0
            if not why:
                return "hold", "still in Translation: no exit signal"
            cond = "; ".join(why)
            if st.exit_streak < cfg.patience:
                return "hold", f"{cond}: {st.exit_streak}/{cfg.patience} consecutive checks"
            if st.dwell < cfg.min_dwell:
                return "hold", f"{cond}: dwell {st.dwell} < min_dwell {cfg.min_dwell}"
            st.state, st.exit_streak, st.dwell = RELEASED, 0, 0
            return "release", f"left Translation ({cond}, {cfg.patience} checks): stop up-weighting"
        # Released: only a measured share clearly back on the primary takes it back.
        if share is not None and share >= cfg.share_enter:
            st.enter_streak += 1
            cond = f"primary share {share:.3f} >= {cfg.share_enter}"
            if st.enter_streak < cfg.patience:
                return "hold", f"{cond}: {st.enter_streak}/{cfg.patience} consecutive checks"
            if st.dwell < cfg.min_dwell:
                return "hold", f"{cond}: dwell {st.dwell} < min_dwell {cfg.min_dwell}"
            st.state, st.enter_streak, st.dwell = TRANSLATION, 0, 0
            return "re-enter", f"back on the primary system ({cond}): up-weight again"
        st.enter_streak = 0
        return "hold", "released: no sign of renewed dependence on the primary"


def append_decisions(path: str | os.PathLike, decisions: list[Decision]) -> None:
    """Append decisions to a JSONL log, one flushed and fsynced line each.

    A crash can at worst leave a torn last line, which :func:`read_decisions` skips.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for d in decisions:
            f.write(json.dumps(d.to_dict(), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_decisions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``controller.jsonl`` log (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
