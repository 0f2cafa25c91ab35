"""Run registered or user-written hooks (``hooks/``) over a run's checkpoints.

The same hooks a training run can execute at its checkpoints (``babel-interp train --hook``)
can be run afterwards on any saved run: per checkpoint and language, over fixed validation
windows of the run's corpus, with results in ``RUN/analysis/hooks/step_XXXXXXXX/<language>/``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from babel_interp.corpus.shards import CorpusReader
from babel_interp.model import load_model
from babel_interp.runs import analysis_dir, checkpoint_dirname, read_run_config, select_checkpoints


def validation_windows(
    reader: CorpusReader, language: str, n_windows: int, seq_len: int
) -> torch.Tensor:
    """``n_windows`` evenly spread ``[n, seq_len]`` validation windows of one language."""
    from babel_interp.training.sampler import eval_windows

    split = reader.split("val")
    windows = eval_windows(split, [language], seq_len, n_windows)
    if not windows or not windows[0].starts:
        raise ValueError(f"corpus {reader.dir} has no validation tokens of {language!r}")
    # Evaluation windows carry one extra token (the last target); hooks need model inputs only.
    return torch.from_numpy(windows[0].tokens(split))[:, :seq_len]


def analyze_run(
    run_dir: str | os.PathLike,
    hook_specs: Sequence[str | Any],
    checkpoints: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    n_windows: int = 8,
    batch_size: int = 8,
    hook_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[int, dict[str, list[Path]]]:
    """Run the hooks at each selected checkpoint; returns the files written per step/language."""
    from hooks import get_hook
    from hooks.registry import run_hooks_by_language

    if not hook_specs:
        raise ValueError("name at least one hook (a registry name or module:attr / file.py:attr)")
    run = Path(run_dir)
    reader = CorpusReader(read_run_config(run)["corpus"])
    langs = list(languages) if languages else reader.languages
    ckpts = select_checkpoints(run, list(checkpoints) if checkpoints is not None else None)
    if not ckpts:
        raise ValueError(f"run {run} has no checkpoints")
    written: dict[int, dict[str, list[Path]]] = {}
    for ckpt in tqdm(ckpts, desc="hooks", unit="ckpt", disable=not progress):
        model, cfg = load_model(ckpt.path, device=device, with_tokenizer=False)
        model.eval()
        dev = next(model.parameters()).device
        hooks = [
            get_hook(h, **(hook_kwargs or {})) if isinstance(h, str) else h for h in hook_specs
        ]
        tokens = {
            lang: validation_windows(reader, lang, n_windows, cfg.n_ctx).to(dev) for lang in langs
        }
        out = analysis_dir(run, "hooks") / checkpoint_dirname(ckpt.step)
        with torch.no_grad():
            written[ckpt.step] = run_hooks_by_language(model, hooks, tokens, out, batch_size)
    return written
