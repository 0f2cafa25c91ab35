"""How a training run ended: what :func:`babel_interp.training.train` returns and what
callbacks see in ``on_train_end``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """How a run ended. ``stop_reason``: ``completed``, ``exhausted``, ``signal:SIGTERM`` or
    ``signal:SIGINT``."""

    run_dir: Path
    step: int
    stop_reason: str
    tokens_seen: dict[str, int]
    total_tokens: int
    train_loss: float | None
    eval: dict[str, Any] | None
    checkpoints: list[Path] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def interrupted(self) -> bool:
        """Whether a signal stopped the run (it can be resumed)."""
        return self.stop_reason.startswith("signal:")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["checkpoints"] = [str(p) for p in self.checkpoints]
        return d
