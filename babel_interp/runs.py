"""The run directory layout shared by the trainer, the analyzers and the reports.

::

    RUN/run_config.json                 # what was trained: corpus path, model, mixture, seed
    RUN/metrics.jsonl                   # one JSON object per logged step / eval
    RUN/checkpoints/step_00000100/      # one complete checkpoint per directory
        model.safetensors, model_config.json, tokenizer/   (babel_interp.model.save_model)
        trainer_state.json              # step, tokens_seen per language, total_tokens, ...
    RUN/analysis/<analyzer>/...         # tables written by analyzers
    RUN/figures/...                     # figures

A checkpoint directory is written under a temporary name and renamed when complete, so any
``step_*`` directory that exists is whole.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

CHECKPOINTS = "checkpoints"
RUN_CONFIG = "run_config.json"
METRICS = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def checkpoint_dirname(step: int) -> str:
    """``step_00000100`` for step 100: sorts lexically in step order."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return f"step_{step:08d}"


@dataclass
class Checkpoint:
    """One complete checkpoint of a run."""

    step: int
    path: Path
    tokens_seen: dict[str, int] = field(default_factory=dict)
    total_tokens: int = 0

    @property
    def name(self) -> str:
        return self.path.name


def list_checkpoints(run_dir: str | os.PathLike) -> list[Checkpoint]:
    """Every complete checkpoint of ``run_dir``, in step order."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINTS}/ directory: is it a run?")
    out = []
    for d in sorted(root.iterdir()):
        m = _STEP_DIR.match(d.name)
        state_path = d / TRAINER_STATE
        if not (m and d.is_dir() and state_path.is_file()):
            continue
        state = json.loads(state_path.read_text(encoding="utf-8"))
        out.append(
            Checkpoint(
                step=int(m.group(1)),
                path=d,
                tokens_seen={k: int(v) for k, v in state.get("tokens_seen", {}).items()},
                total_tokens=int(state.get("total_tokens", 0)),
            )
        )
    return out


def select_checkpoints(
    run_dir: str | os.PathLike, steps: list[int] | None = None
) -> list[Checkpoint]:
    """The checkpoints at ``steps`` (all when None); an unknown step is an error naming it."""
    ckpts = list_checkpoints(run_dir)
    if steps is None:
        return ckpts
    by_step = {c.step: c for c in ckpts}
    missing = [s for s in steps if s not in by_step]
    if missing:
        raise ValueError(
            f"run {run_dir} has no checkpoint at step(s) {missing}; it has {sorted(by_step)}"
        )
    return [by_step[s] for s in steps]


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The run's ``run_config.json``."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {run_dir} is not a training run")
    return json.loads(path.read_text(encoding="utf-8"))


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All records of ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def analysis_dir(run_dir: str | os.PathLike, analyzer: str) -> Path:
    """``RUN/analysis/<analyzer>/``, created."""
    d = Path(run_dir) / "analysis" / analyzer
    d.mkdir(parents=True, exist_ok=True)
    return d


def figures_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/figures/``, created."""
    d = Path(run_dir) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d
