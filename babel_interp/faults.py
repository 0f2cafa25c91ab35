"""Named fault points: where the fault-injection campaign kills a process on purpose.

A fault point is a line in a writer that matters for durability (between two files of a
checkpoint, before its manifest, around its rename). It does nothing unless the environment
variable ``BABEL_INTERP_FAULTS`` names it, as ``NAME@N`` (comma-separated): then the process
sends itself SIGKILL the N-th time it passes that point (1-based), exactly as a power cut or
the OOM killer would stop it there. ``benchmarks/fault_injection.py`` and the tests set it in
child processes only; nothing else does.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "FAULT_POINTS", "fault_due", "fault_point", "kill_now"]

ENV = "BABEL_INTERP_FAULTS"
# Every point the code passes, so a campaign can draw from them and a typo is an error.
FAULT_POINTS = (
    "checkpoint.start",
    "checkpoint.after_model",
    "checkpoint.after_optimizer",
    "checkpoint.before_manifest",
    "checkpoint.before_rename",
    "checkpoint.after_rename",
    "checkpoint.discard",
    "metrics.torn_write",
)


def _armed() -> dict[str, int]:
    spec = os.environ.get(ENV, "").strip()
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, n = item.partition("@")
        if name not in FAULT_POINTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{ENV}: {item!r} is not NAME@N with NAME one of {FAULT_POINTS}")
        out[name] = int(n)
    return out


_ARMED = _armed()
_HITS: dict[str, int] = {}


def fault_due(name: str) -> bool:
    """Pass the fault point ``name``; True when this pass is the armed one (the caller does
    its partial work, e.g. half a line, then calls :func:`kill_now`)."""
    if not _ARMED:
        return False
    _HITS[name] = _HITS.get(name, 0) + 1
    return _ARMED.get(name) == _HITS[name]


def kill_now() -> None:
    """SIGKILL this process: no handler, no cleanup, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    """Pass the fault point ``name``: SIGKILL this process if it is armed for this pass."""
    if fault_due(name):
        kill_now()
