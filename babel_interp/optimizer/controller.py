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
:class:`StageAwareController` binds it to the trainer: it is a training callback (and a
:class:`~babel_interp.training.callbacks.MixtureController`) that reads the per-language
validation loss of each evaluation and, optionally, the working-language share that an analyzer
callback measured on the live model (:func:`working_language_analyzer`), and calls
``trainer.set_mixture``. Every decision, with its reasons and signals, goes to
``RUN/controller.jsonl``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase
from babel_interp.io import append_jsonl, read_jsonl, write_jsonl_atomic
from babel_interp.mixture import Mixture
from babel_interp.training.callbacks import ScheduledCallback

CONTROLLER_LOG = "controller.jsonl"
TRANSLATION = "translation"
RELEASED = "released"


@dataclass
class ControllerConfig(ConfigBase):
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

    def validate(self) -> None:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue deciding exactly where this decider stopped."""
        return {
            "base": dict(self.base),
            "config": self.cfg.to_dict(),
            "states": {lang: st.to_dict() for lang, st in self.states.items()},
        }

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> StageDecider:
        dec = cls(d["base"], ControllerConfig.from_dict(d["config"]))
        dec.states = {lang: _LangState(**st) for lang, st in d["states"].items()}
        return dec

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
            wait = self._not_yet(st, st.exit_streak, cond)
            if wait:
                return "hold", wait
            st.state, st.exit_streak, st.dwell = RELEASED, 0, 0
            return "release", f"left Translation ({cond}, {cfg.patience} checks): stop up-weighting"
        # Released: only a measured share clearly back on the primary takes it back.
        if share is not None and share >= cfg.share_enter:
            st.enter_streak += 1
            cond = f"primary share {share:.3f} >= {cfg.share_enter}"
            wait = self._not_yet(st, st.enter_streak, cond)
            if wait:
                return "hold", wait
            st.state, st.enter_streak, st.dwell = TRANSLATION, 0, 0
            return "re-enter", f"back on the primary system ({cond}): up-weight again"
        st.enter_streak = 0
        return "hold", "released: no sign of renewed dependence on the primary"

    def _not_yet(self, st: _LangState, streak: int, cond: str) -> str:
        """Why a signal seen on ``streak`` checks in a row does not switch the state yet, or ""
        when it does. Both switches wait alike: ``patience`` consecutive checks, and at least
        ``min_dwell`` checks in the current state, so one noisy check cannot flip it."""
        cfg = self.cfg
        if streak < cfg.patience:
            return f"{cond}: {streak}/{cfg.patience} consecutive checks"
        if st.dwell < cfg.min_dwell:
            return f"{cond}: dwell {st.dwell} < min_dwell {cfg.min_dwell}"
        return ""


def append_decisions(path: str | os.PathLike, decisions: list[Decision]) -> None:
    """Append decisions to a JSONL log, one flushed line each, fsynced at the end.

    A crash can at worst leave a torn last line, which :func:`read_decisions` skips.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for d in decisions:
            append_jsonl(f, d.to_dict())
        os.fsync(f.fileno())


def read_decisions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``controller.jsonl`` log (a torn last line is skipped)."""
    return read_jsonl(path)


class StageAwareController(ScheduledCallback):
    """The stage-aware controller as a training callback.

    At the start of a fresh run it takes the trainer's mixture as the base weights and applies
    the Translation boost to every new language (they have just been introduced). At each
    evaluation (and/or checkpoint, by ``when``) it reads the per-language validation loss of that
    evaluation and, when ``share_signal`` names an analyzer callback that ran at the same step,
    its ``primary_share`` per language; the decider's new weights, if any, go to
    ``trainer.set_mixture``. Budgets and epoch caps of the base mixture are kept.

    ``seconds`` accumulates the wall time spent deciding (for the overhead report). The state is
    checkpointed with the run, so a resumed run continues with the same streaks and dwell times,
    and decisions logged after the checkpoint are dropped from ``controller.jsonl`` on resume.
    """

    def __init__(
        self,
        cfg: ControllerConfig | None = None,
        share_signal: str | None = None,
        when: str | tuple[str, ...] = "eval",
        log_name: str = CONTROLLER_LOG,
    ) -> None:
        self.cfg = cfg or ControllerConfig()
        self.share_signal = share_signal
        self.when = (when,) if isinstance(when, str) else tuple(when)
        bad = [w for w in self.when if w not in ("eval", "checkpoint")]
        if bad or not self.when:
            raise ValueError(f"StageAwareController.when must name eval and/or checkpoint: {when}")
        self.log_name = log_name
        self.decider: StageDecider | None = None
        self.base_mixture: Mixture | None = None
        self.seconds = 0.0
        self.last_step: int | None = None
        self._resumed_at: int | None = None

    # -------------------------------------------------------------- protocol
    def decide(self, trainer: Any, step: int, signals: dict[str, Any]) -> Mixture | None:
        """One check at ``step`` from the trainer's ``signals``; a new Mixture or None."""
        if self.decider is None:
            raise RuntimeError("StageAwareController.decide before on_train_start")
        per_lang: dict[str, LanguageSignal] = {}
        ev = signals.get("eval")
        losses = ev.get("val_loss", {}) if isinstance(ev, dict) and ev.get("step") == step else {}
        shares: dict[str, Any] = {}
        if self.share_signal is not None:
            rec = signals.get(self.share_signal)
            if isinstance(rec, dict) and rec.get("step") == step:
                shares = rec.get("primary_share") or {}
        for lang in self.decider.states:
            loss = losses.get(lang)
            share = shares.get(lang)
            per_lang[lang] = LanguageSignal(
                val_loss=None if loss is None else float(loss),
                primary_share=None if share is None or not math.isfinite(share) else float(share),
            )
        decisions, new = self.decider.update(step, per_lang)
        append_decisions(Path(trainer.run_dir) / self.log_name, decisions)
        self.last_step = int(step)
        return None if new is None else self._mixture(new)

    def _mixture(self, weights: Mapping[str, float]) -> Mixture:
        base = self.base_mixture
        assert base is not None
        return Mixture(weights=dict(weights), budgets=base.budgets, epoch_caps=base.epoch_caps)

    # -------------------------------------------------------------- callback
    def on_train_start(self, trainer: Any) -> None:
        run_log = Path(trainer.run_dir) / self.log_name
        if self.decider is not None:
            # Resumed: decisions logged after the checkpoint will be made again.
            if self._resumed_at is not None:
                _truncate_log(run_log, self._resumed_at)
            return
        t0 = time.perf_counter()
        base = trainer.mixture
        if base.phases:
            raise ValueError(
                "StageAwareController sets the weights itself; the run's mixture has phases "
                f"({base.to_spec()}): give it a static mixture"
            )
        self.base_mixture = base
        self.decider = StageDecider(base.weights, self.cfg)
        boosted = self.decider.weights()
        start = Decision(
            step=int(trainer.step),
            language="*",
            action="start",
            state_before="",
            state_after=TRANSLATION,
            reason=(
                f"new languages {list(self.decider.states)} start in Translation: "
                f"weights x{self.cfg.boost}"
            ),
            signals={},
            streak=0,
            dwell=0,
            weights=boosted,
        )
        append_decisions(run_log, [start])
        trainer.set_mixture(self._mixture(boosted), reason="controller", source="stage-aware")
        self.seconds += time.perf_counter() - t0

    def fire(self, trainer: Any, step: int, event: str) -> None:
        """One check; a new mixture goes to the trainer."""
        t0 = time.perf_counter()
        new = self.decide(trainer, step, dict(trainer.signals))
        if new is not None:
            trainer.set_mixture(new, reason="controller", source="stage-aware")
        self.seconds += time.perf_counter() - t0

    # ------------------------------------------------------------ resumption
    def state_dict(self) -> dict[str, Any] | None:
        if self.decider is None or self.base_mixture is None:
            return None
        return {
            "decider": self.decider.state_dict(),
            "base_mixture": self.base_mixture.to_dict(),
            "seconds": self.seconds,
            "last_step": self.last_step,
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.decider = StageDecider.from_state_dict(d["decider"])
        self.base_mixture = Mixture.from_dict(d["base_mixture"])
        self.seconds = float(d.get("seconds", 0.0))
        self.last_step = d.get("last_step")
        self._resumed_at = self.last_step if self.last_step is not None else -1


def _truncate_log(path: Path, step: int) -> None:
    """Keep the records of ``path`` with ``step <= step`` (atomically)."""
    if not path.is_file():
        return
    keep = [r for r in read_decisions(path) if int(r.get("step", -1)) <= step]
    write_jsonl_atomic(path, keep)


class WorkingLanguageSignal:
    """An analyzer for :class:`~babel_interp.training.callbacks.AnalyzerCallback`: the primary
    working-language share of each new language, measured on the live model.

    For each language, probes are built once (from the run's corpus, as the working-language
    analyzer does for a saved run) and decoded with the logit lens; the share is averaged over
    the middle layers (see :func:`babel_interp.optimizer.evidence.working_share_series`).
    Returns ``{"primary_share": {lang: x}, "control_share": {lang: x}, "competent": {...}}``.
    ``seconds`` accumulates the time spent, for the overhead report. ``drop_cross_language_tokens``
    as in :class:`~babel_interp.analysis.working_language.logit_lens.WorkingLanguageConfig`.
    """

    def __init__(
        self,
        languages: list[str],
        primary: str = "python",
        n_per_pair: int = 2,
        batch_size: int = 16,
        seed: int = 0,
        drop_cross_language_tokens: bool = True,
    ) -> None:
        if not languages:
            raise ValueError("WorkingLanguageSignal needs at least one target language")
        self.languages = list(languages)
        self.primary = primary
        self.n_per_pair = n_per_pair
        self.batch_size = batch_size
        self.seed = seed
        self.drop_cross_language_tokens = drop_cross_language_tokens
        self.seconds = 0.0
        self._probes: dict[str, Any] = {}
        self._token_sets: dict[str, Any] = {}

    def _config(self, lang: str) -> Any:
        from babel_interp.analysis.working_language.logit_lens import WorkingLanguageConfig

        return WorkingLanguageConfig(
            primary=self.primary,
            target=lang,
            n_per_pair=self.n_per_pair,
            batch_size=self.batch_size,
            n_boot=1,
            seed=self.seed,
            drop_cross_language_tokens=self.drop_cross_language_tokens,
        )

    def __call__(self, trainer: Any, step: int, out_dir: Path) -> dict[str, Any] | None:
        from babel_interp.analysis.working_language.logit_lens import (
            analyze_working_language,
            probes_for_run,
            token_sets_for,
        )
        from babel_interp.optimizer.evidence import working_share_series

        t0 = time.perf_counter()
        out: dict[str, dict[str, float]] = {
            "primary_share": {},
            "control_share": {},
            "competent": {},
        }
        tokenizer = getattr(trainer.model, "tokenizer", None)
        for lang in self.languages:
            cfg = self._config(lang)
            if lang not in self._probes:
                self._probes[lang] = probes_for_run(trainer.run_dir, cfg)
            probes = self._probes[lang]
            if not probes:
                continue
            if lang not in self._token_sets:
                # The sets depend only on the tokenizer: build them once, not at every check.
                self._token_sets[lang] = token_sets_for(
                    tokenizer, probes, cfg, vocab_size=int(trainer.model.cfg.d_vocab)
                )
            res = analyze_working_language(
                trainer.model,
                tokenizer,
                probes,
                cfg,
                step=step,
                token_sets=self._token_sets.get(lang),
                progress=False,
            )
            agg = res.aggregate()
            if agg.empty:
                continue
            series = working_share_series(agg)
            row = series.iloc[-1]
            out["primary_share"][lang] = float(row["share"])
            out["control_share"][lang] = float(row["control_share"])
            if "competent" in series.columns:
                out["competent"][lang] = float(bool(row["competent"]))
        self.seconds += time.perf_counter() - t0
        return out
