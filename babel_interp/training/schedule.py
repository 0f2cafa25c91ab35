"""Schedules over training steps: the learning rate, and which steps get a checkpoint.

Both are pure functions of the step, so a resumed run needs nothing but the step to continue
them exactly. Steps count optimizer updates: step ``s`` is the state after ``s`` updates (step 0
is the initialization), and the learning rate of update ``s`` is :meth:`LRSchedule.lr_at`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from babel_interp.config import ConfigBase, check_choice, check_float

__all__ = ["CheckpointSchedule", "LRSchedule"]

LRKind = Literal["cosine", "constant", "wsd"]
CheckpointKind = Literal["log", "every", "steps"]
LR_KINDS: tuple[str, ...] = get_args(LRKind)
CKPT_KINDS: tuple[str, ...] = get_args(CheckpointKind)


def _positive_int(owner: str, name: str, value: Any, allow_zero: bool = False) -> None:
    # Step counts read "> 0" / ">= 0" in their messages (users write them in specs like every:N).
    ok = (
        isinstance(value, int) and not isinstance(value, bool) and value >= (0 if allow_zero else 1)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}.{name} must be an int {bound}, got {value!r}")


@dataclass
class LRSchedule(ConfigBase):
    """Linear warmup, then ``cosine`` decay to ``min_lr_ratio * lr``, ``constant``, or ``wsd``
    (warmup-stable-decay: constant until the last ``decay_fraction`` of the run, then a linear
    decay to the minimum)."""

    kind: LRKind = "cosine"
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2

    def __post_init__(self) -> None:
        self.validate()
        self.lr = float(self.lr)

    def validate(self) -> None:
        check_choice("LRSchedule", "kind", self.kind, LR_KINDS)
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, (int, float))
            or not (self.lr > 0 and math.isfinite(self.lr))
        ):
            raise ValueError(f"LRSchedule.lr must be a finite number > 0, got {self.lr!r}")
        _positive_int("LRSchedule", "warmup_steps", self.warmup_steps, allow_zero=True)
        check_float("LRSchedule", "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_float("LRSchedule", "decay_fraction", self.decay_fraction, 0.0, 1.0)
        if self.decay_fraction <= 0:
            raise ValueError(
                f"LRSchedule.decay_fraction must be in (0, 1], got {self.decay_fraction}"
            )

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of update number ``step`` (1-based) in a run of ``total_steps``."""
        if step <= self.warmup_steps:
            return self.lr * step / max(1, self.warmup_steps)
        if self.kind == "constant":
            return self.lr
        lo = self.lr * self.min_lr_ratio
        if self.kind == "cosine":
            span = max(1, total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return lo + 0.5 * (self.lr - lo) * (1.0 + math.cos(math.pi * progress))
        decay_steps = max(1, int(round(self.decay_fraction * total_steps)))
        decay_start = max(self.warmup_steps, total_steps - decay_steps)
        if step <= decay_start:
            return self.lr
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return self.lr + (lo - self.lr) * progress


@dataclass
class CheckpointSchedule(ConfigBase):
    """Which steps get a checkpoint.

    * ``log``: dense early, sparse later, since a new language is learned fast at first. With
      ``n=None`` the powers of two (1, 2, 4, 8, ...); with ``n`` that many points spaced evenly
      in log-step between 1 and the last step.
    * ``every``: every ``every`` steps.
    * ``steps``: exactly the listed ``steps``.

    ``include_start`` adds step 0 (the initialization; always saved for continual pretraining so
    analyzers see the starting point). The last step of the run is always included.
    """

    kind: CheckpointKind = "log"
    every: int = 0
    n: int | None = None
    steps: list[int] = field(default_factory=list)
    include_start: bool = True

    def __post_init__(self) -> None:
        self.steps = list(self.steps)
        self.validate()

    def validate(self) -> None:
        check_choice("CheckpointSchedule", "kind", self.kind, CKPT_KINDS)
        if self.kind == "every":
            _positive_int("CheckpointSchedule", "every", self.every)
        if self.n is not None:
            _positive_int("CheckpointSchedule", "n", self.n)
        for s in self.steps:
            _positive_int("CheckpointSchedule", "steps[]", s, allow_zero=True)
        if self.kind == "steps" and not self.steps:
            raise ValueError("CheckpointSchedule.steps must list steps when kind='steps'")

    def steps_for(self, total_steps: int) -> list[int]:
        """The sorted checkpoint steps of a run of ``total_steps`` updates."""
        out: set[int] = {total_steps}
        if self.include_start:
            out.add(0)
        if self.kind == "every":
            out.update(range(self.every, total_steps + 1, self.every))
        elif self.kind == "steps":
            out.update(s for s in self.steps if s <= total_steps)
        elif self.n is None:
            s = 1
            while s <= total_steps:
                out.add(s)
                s *= 2
        elif total_steps >= 1:
            n = self.n
            for i in range(n):
                frac = i / (n - 1) if n > 1 else 1.0
                out.add(int(round(math.exp(frac * math.log(total_steps)))))
        return sorted(out)

    @classmethod
    def parse(cls, spec: str) -> CheckpointSchedule:
        """``log``, ``log:20`` (20 log-spaced points), ``every:500``, ``steps:0,10,100``."""
        kind, _, arg = spec.strip().partition(":")
        try:
            if kind == "log":
                return cls(kind="log", n=int(arg) if arg else None)
            if kind == "every":
                return cls(kind="every", every=int(arg))
            if kind == "steps":
                return cls(kind="steps", steps=[int(x) for x in arg.split(",") if x.strip()])
        except ValueError as exc:
            if "invalid literal" not in str(exc):
                raise
        raise ValueError(
            f"checkpoint schedule {spec!r}: expected 'log', 'log:N', 'every:N' or 'steps:A,B,...'"
        )
