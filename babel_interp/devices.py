"""One device rule for training, analysis, sampling and evaluation.

``"auto"`` (the default everywhere) is the first CUDA device when one is available, else the
CPU. ``"cuda"`` without an index is the process's local rank under ``torchrun``. Asking for
CUDA where there is none is an error, never a silent fall-back to the CPU.
"""

from __future__ import annotations

import os
from typing import Any

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(
    spec: str | torch.device | None = "auto", local_rank: int | None = None
) -> torch.device:
    """The torch device of ``spec`` (``None`` and ``"auto"``: CUDA when available, else CPU).

    ``local_rank`` picks the CUDA device of a distributed process (default: ``LOCAL_RANK`` from
    the environment, else 0).
    """
    if isinstance(spec, torch.device):
        return spec
    name = "auto" if spec is None else str(spec)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asked for CUDA but no CUDA device is available")
    if name == "cuda":
        rank = local_rank if local_rank is not None else int(os.environ.get("LOCAL_RANK", 0))
        name = f"cuda:{rank}"
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {spec!r}: use one of {DEVICE_CHOICES} or 'cuda:N'") from e


def model_device(model: Any) -> torch.device:
    """The device a model's parameters live on (its config's device when it has none)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        cfg = getattr(model, "cfg", None)
        return torch.device(getattr(cfg, "device", None) or "cpu")
