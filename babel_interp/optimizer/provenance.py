"""Where a mixture came from: the method, its parameters, the corpus and runs read, the signals.

A mixture file without provenance cannot be audited: a reader could not tell which checkpoints or
which version of the corpus produced a cut. Each input is recorded with a content digest, so a
later change to a run or corpus is detectable.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel_interp import __version__
from babel_interp.config import ConfigBase


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's bytes (streamed, so large files cost no memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return "sha256:" + h.hexdigest()


def corpus_record(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    """The corpus as an input: its path, manifest digest and per-language train tokens."""
    from babel_interp.optimizer.baselines import corpus_language_sizes

    path = Path(corpus_dir)
    return {
        "path": str(path.resolve()),
        "manifest_digest": file_digest(path / "manifest.json"),
        "train_tokens": corpus_language_sizes(path),
    }


def run_record(run_dir: str | os.PathLike, steps: list[int] | None = None) -> dict[str, Any]:
    """A run as an input: its path, the checkpoints read and the digest of its metrics log."""
    path = Path(run_dir)
    metrics = path / "metrics.jsonl"
    return {
        "path": str(path.resolve()),
        "checkpoints": list(steps) if steps is not None else None,
        "metrics_digest": file_digest(metrics) if metrics.is_file() else None,
    }


@dataclass
class Provenance(ConfigBase):
    """Everything needed to audit or recompute a mixture (``to_dict``/``from_dict`` as for a
    config: an unknown field is an error)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created: str = ""
    package_version: str = __version__

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError("Provenance.method must name the method that made the mixture")
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
