"""Run registered or user-written hooks (``hooks/``) over a run's checkpoints.

The same hooks a training run can execute at its checkpoints (``babel-interp train --hook``)
can be run afterwards on any saved run: per checkpoint and language, over fixed validation
windows of the run's corpus (:func:`babel_interp.runs.validation_windows`), with results in
``RUN/analysis/hooks/step_XXXXXXXX/<language>/``. The hooks write their own files;
:func:`analyze_run` returns them as a :class:`HookRunResult` and lists them in
``RUN/analysis/hooks/files.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from babel_interp.devices import model_device
from babel_interp.hooks import get_hook
from babel_interp.hooks.registry import run_hooks_by_language
from babel_interp.io import write_bytes_atomic, write_csv_atomic
from babel_interp.runs import Run, checkpoint_dirname, validation_windows

ANALYZER = "hooks"
FILES = "files.csv"
COLUMNS = ["step", "language", "file"]


@dataclass
class HookRunResult:
    """The files the hooks wrote, per checkpoint step and language, under ``out_dir``
    (``out_dir/step_XXXXXXXX/<language>/...``)."""

    out_dir: Path
    files: dict[int, dict[str, list[Path]]] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        """Every file written, in step and language order."""
        return [p for per_lang in self.files.values() for ps in per_lang.values() for p in ps]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per file: ``step``, ``language`` and ``file`` (relative to ``out_dir``)."""
        rows = [
            {"step": step, "language": lang, "file": _relative(p, self.out_dir)}
            for step, per_lang in self.files.items()
            for lang, ps in per_lang.items()
            for p in ps
        ]
        return pd.DataFrame(rows, columns=COLUMNS)

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write the listing (``files.csv``) under ``directory``, with a copy of every listed
        file when ``directory`` is not :attr:`out_dir`; the paths written."""
        d = Path(directory)
        written = []
        if d.resolve() != self.out_dir.resolve():
            for p in self.paths():
                written.append(write_bytes_atomic(d / _relative(p, self.out_dir), p.read_bytes()))
        written.append(write_csv_atomic(d / FILES, self.to_dataframe()))
        return written

    @classmethod
    def load(cls, directory: str | os.PathLike) -> HookRunResult:
        """The listing :meth:`save` wrote under ``directory``."""
        d = Path(directory)
        if not (d / FILES).is_file():
            raise FileNotFoundError(f"{d} holds no hook run listing ({FILES})")
        df = pd.read_csv(d / FILES, dtype={"language": str, "file": str})
        files: dict[int, dict[str, list[Path]]] = {}
        for row in df.itertuples(index=False):
            files.setdefault(int(row.step), {}).setdefault(row.language, []).append(d / row.file)
        return cls(out_dir=d, files=files)


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:  # a hook that saved outside its directory: keep the path as given
        return Path(path).as_posix()


def analyze_run(
    run_dir: Run | str | os.PathLike,
    hook_specs: Sequence[str | Any],
    checkpoints: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    n_windows: int = 8,
    batch_size: int = 8,
    hook_kwargs: dict[str, Any] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> HookRunResult:
    """Run the hooks at each selected checkpoint over ``n_windows`` validation windows (of the
    model's context length) per language; returns the files written per step and language."""
    if not hook_specs:
        raise ValueError("name at least one hook (a registry name or module:attr / file.py:attr)")
    run = Run.of(run_dir)
    reader = run.corpus()
    langs = list(languages) if languages else reader.languages
    ckpts = run.checkpoints(checkpoints)
    if not ckpts:
        raise ValueError(f"run {run.path} has no checkpoints")
    out = run.analysis_dir(ANALYZER)
    result = HookRunResult(out_dir=out)
    for ckpt in tqdm(ckpts, desc="hooks", unit="ckpt", disable=not progress):
        model, cfg = run.load_model(ckpt, device=device, with_tokenizer=False)
        model.eval()
        dev = model_device(model)
        hooks = [
            get_hook(h, **(hook_kwargs or {})) if isinstance(h, str) else h for h in hook_specs
        ]
        tokens = {
            lang: validation_windows(reader, lang, n_windows, cfg.n_ctx).to(dev) for lang in langs
        }
        step_dir = out / checkpoint_dirname(ckpt.step)
        with torch.no_grad():
            result.files[ckpt.step] = run_hooks_by_language(
                model, hooks, tokens, step_dir, batch_size
            )
    result.save(out)
    return result
