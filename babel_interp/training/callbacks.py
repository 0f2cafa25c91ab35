"""Callbacks at eval and checkpoint time: the path from analysis back to the data mixture.

A :class:`Callback` sees the live trainer. :class:`AnalyzerCallback` runs an analysis function
on the live model and stores its result as a *signal*; :class:`HookCallback` runs hooks from the
``hooks/`` registry over fixed validation windows of each language and saves what they
collected; :class:`ControllerCallback` hands the latest signals to a :class:`MixtureController`,
whose new mixture (if any) takes effect from the next training step. Callbacks run in list
order, so put analyzers before the controller that reads them. In data-parallel runs callbacks
run on rank 0 only, and a mixture change is broadcast to the other ranks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from babel_interp.hooks import get_hook
from babel_interp.hooks.registry import run_hooks_by_language
from babel_interp.io import read_jsonl, write_jsonl_atomic
from babel_interp.mixture import Mixture
from babel_interp.runs import analysis_dir, checkpoint_dirname
from babel_interp.training.result import TrainResult

__all__ = [
    "AnalyzerCallback",
    "Callback",
    "ControllerCallback",
    "HookCallback",
    "LiveTrainer",
    "MixtureController",
    "ScheduledCallback",
]


class LiveTrainer(Protocol):
    """The live trainer as callbacks and controllers see it.

    :class:`babel_interp.training.loop.Trainer` is the implementation; callbacks type against
    this surface so that they do not depend on the loop that calls them.
    """

    model: Any
    step: int
    tokens_seen: dict[str, int]
    mixture: Mixture
    signals: dict[str, Any]
    run_dir: Path
    corpus: Any
    config: Any

    @property
    def total_tokens(self) -> int: ...

    def inference(self) -> contextlib.AbstractContextManager[None]: ...

    def eval_languages(self) -> list[str]: ...

    def validation_tokens(self, language: str, n_windows: int | None = None) -> Tensor: ...

    def set_mixture(
        self, mixture: Mixture, reason: str = "controller", source: str = ""
    ) -> None: ...


WHEN = ("eval", "checkpoint")


class Callback:
    """Override any of these; each is called on the main rank with the live trainer."""

    def on_train_start(self, trainer: LiveTrainer) -> None:
        """Before the first step (also after a resume)."""

    def on_step(self, trainer: LiveTrainer, step: int, record: dict[str, Any]) -> None:
        """After each logged training step, with its metrics record. Keep it cheap."""

    def on_eval(self, trainer: LiveTrainer, step: int, metrics: dict[str, Any]) -> None:
        """After an evaluation, with its metrics record (``val_loss``, ``val_bpb``, ...)."""

    def on_checkpoint(self, trainer: LiveTrainer, step: int, ckpt_path: Path) -> None:
        """After the checkpoint of ``step`` was written to ``ckpt_path``."""

    def on_train_end(self, trainer: LiveTrainer, result: TrainResult) -> None:
        """After the last step (also after an early stop)."""


@runtime_checkable
class MixtureController(Protocol):
    """Decides, from signals, whether the data mixture should change.

    ``signals`` maps a source (``"eval"``, or an analyzer's name) to its latest result; each
    result carries the ``step`` it was measured at. Return a new :class:`Mixture` to apply from
    the next step, or None to keep the current one.
    """

    def decide(
        self, trainer: LiveTrainer, step: int, signals: dict[str, Any]
    ) -> Mixture | None: ...


def _check_when(owner: str, when: str | Sequence[str]) -> tuple[str, ...]:
    out = (when,) if isinstance(when, str) else tuple(when)
    bad = [w for w in out if w not in WHEN]
    if not out or bad:
        raise ValueError(f"{owner}.when must name some of {WHEN}, got {when!r}")
    return out


class ScheduledCallback(Callback):
    """A callback that acts at eval and/or checkpoint time, as its ``when`` names.

    A subclass sets ``self.when`` (a tuple of :data:`WHEN` entries) and implements :meth:`fire`;
    ``on_eval`` and ``on_checkpoint`` call it for the events it was asked for.
    """

    when: tuple[str, ...] = ()

    def fire(self, trainer: LiveTrainer, step: int, event: str) -> None:
        """Act at ``step``; ``event`` is ``"eval"`` or ``"checkpoint"``."""
        raise NotImplementedError

    def on_eval(self, trainer: LiveTrainer, step: int, metrics: dict[str, Any]) -> None:
        if "eval" in self.when:
            self.fire(trainer, step, "eval")

    def on_checkpoint(self, trainer: LiveTrainer, step: int, ckpt_path: Path) -> None:
        if "checkpoint" in self.when:
            self.fire(trainer, step, "checkpoint")


class AnalyzerCallback(ScheduledCallback):
    """Runs ``fn(trainer, step, out_dir) -> dict | None`` on the live model.

    ``out_dir`` is ``RUN/analysis/<name>/step_XXXXXXXX/`` (created) for files the analysis
    writes. A returned dict becomes the signal ``signals[name]`` for controllers and is appended
    to ``RUN/analysis/<name>/results.jsonl`` (with ``step`` and ``event``; a resumed run
    replaces the records a killed attempt wrote past its checkpoint). The model is in eval mode
    under ``no_grad``.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[LiveTrainer, int, Path], dict[str, Any] | None],
        when: str | Sequence[str] = "checkpoint",
    ) -> None:
        if not name or any(c in name for c in "/\\"):
            raise ValueError(f"AnalyzerCallback.name must be a plain name, got {name!r}")
        if not callable(fn):
            raise ValueError(f"AnalyzerCallback.fn must be callable, got {fn!r}")
        self.name = name
        self.fn = fn
        self.when = _check_when("AnalyzerCallback", when)

    def fire(self, trainer: LiveTrainer, step: int, event: str) -> None:
        """Run the analysis and record its signal."""
        out_dir = analysis_dir(trainer.run_dir, self.name) / checkpoint_dirname(step)
        out_dir.mkdir(parents=True, exist_ok=True)
        with trainer.inference():
            result = self.fn(trainer, step, out_dir)
        if result is None:
            return
        if not isinstance(result, dict):
            raise TypeError(f"analyzer {self.name!r} returned {type(result).__name__}, not a dict")
        record = {"step": step, "event": event, **result}
        trainer.signals[self.name] = record
        path = analysis_dir(trainer.run_dir, self.name) / "results.jsonl"
        # Steps only grow within a run, so a record at or past this (step, event) was written
        # by an attempt that was killed and resumed: replace it rather than duplicate it.
        kept = [
            r
            for r in read_jsonl(path)
            if r.get("step", -1) < step or (r.get("step") == step and r.get("event") != event)
        ]
        write_jsonl_atomic(path, [*kept, record])


class HookCallback(ScheduledCallback):
    """Runs hooks on the live model over fixed validation windows of each language.

    ``hooks`` are names or ``module:attr`` paths from the ``hooks/`` registry (instantiated with
    ``hooks.get_hook``) or hook objects with ``fwd_hooks(model)``. Per language, the hooks are
    reset (if they can be), run over ``n_windows`` validation windows, and saved with
    ``hooks.save_hook_results`` under ``RUN/analysis/hooks/step_XXXXXXXX/<language>/``.
    """

    def __init__(
        self,
        hooks: Iterable[str | Any],
        when: str | Sequence[str] = "checkpoint",
        n_windows: int = 8,
        batch_size: int = 8,
        languages: Sequence[str] | None = None,
    ) -> None:
        self.hooks = [get_hook(h) if isinstance(h, str) else h for h in hooks]
        if not self.hooks:
            raise ValueError("HookCallback needs at least one hook")
        for h in self.hooks:
            if not callable(getattr(h, "fwd_hooks", None)):
                raise ValueError(f"HookCallback: {h!r} has no fwd_hooks(model) method")
        if n_windows < 1 or batch_size < 1:
            raise ValueError(
                f"HookCallback.n_windows and batch_size must be >= 1, got {n_windows}, {batch_size}"
            )
        self.when = _check_when("HookCallback", when)
        self.n_windows = n_windows
        self.batch_size = batch_size
        self.languages = None if languages is None else list(languages)

    def fire(self, trainer: LiveTrainer, step: int, event: str) -> None:
        """Run the hooks over every language's windows and save what they collected."""
        root = analysis_dir(trainer.run_dir, "hooks") / checkpoint_dirname(step)
        langs = self.languages or trainer.eval_languages()
        with trainer.inference():
            tokens = {lang: trainer.validation_tokens(lang, self.n_windows) for lang in langs}
            run_hooks_by_language(trainer.model, self.hooks, tokens, root, self.batch_size)


class ControllerCallback(ScheduledCallback):
    """Asks a :class:`MixtureController` for a new mixture at eval and/or checkpoint time."""

    def __init__(
        self,
        controller: MixtureController,
        when: str | Sequence[str] = "eval",
        name: str | None = None,
    ) -> None:
        if not callable(getattr(controller, "decide", None)):
            raise ValueError(f"ControllerCallback: {controller!r} has no decide() method")
        self.controller = controller
        self.when = _check_when("ControllerCallback", when)
        self.name = name or type(controller).__name__

    def state_dict(self) -> dict[str, Any] | None:
        """The controller's state (if it has ``state_dict``), saved in every checkpoint."""
        fn = getattr(self.controller, "state_dict", None)
        return fn() if callable(fn) else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        fn = getattr(self.controller, "load_state_dict", None)
        if callable(fn):
            fn(state)

    def fire(self, trainer: LiveTrainer, step: int, event: str) -> None:
        """Ask the controller; apply the mixture it returns, if any."""
        new = self.controller.decide(trainer, step, dict(trainer.signals))
        if new is None:
            return
        if not isinstance(new, Mixture):
            raise TypeError(
                f"controller {self.name!r} returned {type(new).__name__}; expected Mixture or None"
            )
        trainer.set_mixture(new, reason="controller", source=self.name)


def run_callbacks(callbacks: Sequence[Callback], event: str, *args: Any) -> None:
    """Call ``event`` on every callback in order."""
    for cb in callbacks:
        getattr(cb, event)(*args)
