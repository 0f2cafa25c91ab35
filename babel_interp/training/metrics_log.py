"""``RUN/metrics.jsonl``: one JSON object per line, appended as training goes.

Record types (``type`` field), all with ``step``:

* ``train``: ``loss`` (mean nats/token over the global batch), ``loss_per_language``,
  ``tokens`` (total training tokens so far), ``tokens_seen`` per language, ``lr``,
  ``grad_norm``, ``tokens_per_s``;
* ``eval``: ``val_loss`` and ``val_bpb`` per language (nats/token, bits/byte), their means;
* ``mixture``: the effective weights changed (``reason``: ``start``, ``phase``, ``controller``,
  ``exhausted``, ``resume``);
* ``checkpoint``: a checkpoint was written (``path``);
* ``event``: ``start``, ``resume``, ``stop`` (``reason``), ``end``.

On resume the file is cut back to the last checkpoint's record, so the log of a resumed run is
the log of an uninterrupted one (plus its ``resume`` event).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from babel_interp.faults import fault_due, kill_now
from babel_interp.io import append_jsonl, read_jsonl, write_jsonl_atomic
from babel_interp.runs import METRICS

__all__ = ["MetricsLog"]


def _clean(obj: Any) -> Any:
    # JSON has no NaN/inf: write them as null rather than produce an unreadable line.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class MetricsLog:
    """Appends records to ``RUN/metrics.jsonl``; a no-op on non-main ranks."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.path = Path(run_dir) / METRICS
        self.enabled = enabled
        self._f: IO[str] | None = None

    def _file(self) -> IO[str]:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        return self._f

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one line, flushed so a reader or a crash sees whole lines)."""
        if not self.enabled:
            return
        if fault_due("metrics.torn_write"):
            # Killed half-way through a line, as a power cut can leave the file.
            f = self._file()
            text = json.dumps(_clean(record))
            f.write(text[: len(text) // 2])
            f.flush()
            kill_now()
        append_jsonl(self._file(), _clean(record))

    def sync(self) -> None:
        """Flush to disk (called at checkpoints, so the log is never behind a checkpoint)."""
        if self.enabled and self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def truncate_to_checkpoint(self, step: int) -> int:
        """Drop every record logged after the checkpoint of ``step``; returns records dropped.

        Records up to and including that checkpoint's ``checkpoint`` record are kept. Without
        one (a log from before checkpoints were recorded), records with ``step <= step`` are.
        A torn last line from a kill is dropped too. The file is replaced atomically.
        """
        if not self.enabled or not self.path.is_file():
            return 0
        self.close()
        n_lines = len(self.path.read_text(encoding="utf-8").splitlines())
        records = read_jsonl(self.path)
        cut = None
        for i, r in enumerate(records):
            if r.get("type") == "checkpoint" and r.get("step") == step:
                cut = i + 1
        kept = (
            records[:cut] if cut is not None else [r for r in records if r.get("step", 0) <= step]
        )
        write_jsonl_atomic(self.path, kept)
        # Counts every line that is gone, torn and blank ones included.
        return n_lines - len(kept)
