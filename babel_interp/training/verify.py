"""Verify what is on disk: a corpus, a run (every checkpoint and its corpus) or a whole study.

``babel-interp verify PATH`` calls :func:`verify_path`; each checked directory gives one
:class:`babel_interp.integrity.Verification` whose problems name the file at fault.
"""

from __future__ import annotations

import os
from pathlib import Path

from babel_interp.corpus.shards import MANIFEST, verify_corpus
from babel_interp.integrity import Verification
from babel_interp.io import read_json
from babel_interp.runs import CHECKPOINTS, RUN_CONFIG, Study, run_corpus_dir
from babel_interp.training.checkpoints import verify_run_checkpoints

__all__ = ["verify_path", "verify_run"]


def _model_vocab(check: Verification) -> int | None:
    # The vocabulary of the model a verified checkpoint holds, to check the corpus ids against.
    try:
        meta = read_json(check.directory / "model_config.json", "model configuration")
        return int(meta["model"]["d_vocab"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def verify_run(run_dir: str | os.PathLike, corpus: bool = True) -> list[Verification]:
    """Every checkpoint of a run (manifest, sizes, SHA-256, trainer state), its
    ``run_config.json`` and, with ``corpus``, the corpus it was trained on."""
    run = Path(run_dir)
    out: list[Verification] = []
    head = Verification(run)
    try:
        read_json(run / RUN_CONFIG, "run configuration")
    except (FileNotFoundError, ValueError) as exc:
        head.problems.append(str(exc))
    checks = verify_run_checkpoints(run)
    if not checks:
        head.problems.append(f"{run / CHECKPOINTS} holds no checkpoint")
    out.append(head)
    out.extend(checks)
    if corpus and head.ok:
        try:
            corpus_dir = run_corpus_dir(run)
        except (FileNotFoundError, ValueError) as exc:
            out.append(Verification(run, problems=[str(exc)]))
        else:
            vocab = next((v for c in reversed(checks) if c.ok and (v := _model_vocab(c))), None)
            out.append(verify_corpus(corpus_dir, d_vocab=vocab))
    return out


def verify_path(path: str | os.PathLike) -> list[Verification]:
    """Verify a corpus (has ``manifest.json``), a run (has ``checkpoints/``) or a study (has
    ``experiment.json``: the corpus it records and every run); one result per directory
    checked."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if (p / MANIFEST).is_file():
        return [verify_corpus(p)]
    if (p / CHECKPOINTS).is_dir() or (p / RUN_CONFIG).is_file():
        return verify_run(p)
    study = Study(p)
    if study.meta.is_file():
        out: list[Verification] = []
        try:
            corpus = study.corpus_dir()
        except ValueError as exc:  # a damaged experiment.json: say so, check the default corpus
            out.append(Verification(p, problems=[str(exc)]))
            corpus = study.corpus
        if (corpus / MANIFEST).is_file():
            out.append(verify_corpus(corpus))
        for seed in study.seeds():
            if study.primary(seed).is_dir():
                out.extend(verify_run(study.primary(seed), corpus=False))
        for _, _, _, run in study.runs():
            out.extend(verify_run(run.path, corpus=False))
        return out
    raise ValueError(
        f"{p} is neither a corpus ({MANIFEST}), a run ({CHECKPOINTS}/) nor a study "
        "(experiment.json)"
    )
