"""Step-indexed, atomically written checkpoints holding everything needed to resume exactly.

``RUN/checkpoints/step_XXXXXXXX/``::

    model.safetensors, model_config.json, tokenizer/   babel_interp.model.save_model
    optimizer.pt                                       AdamW state
    (FSDP runs: model.dcp/ and optimizer.dcp/, each rank's shards, instead of
    model.safetensors and optimizer.pt; see babel_interp.training.dcp)
    scheduler.json                                     LR schedule and the step it reached
    rng.pt                                             python, numpy and torch RNG states
    trainer_state.json                                 step, tokens seen, data position,
                                                       mixture, lineage, callbacks_done
    run_config.json                                    a copy of the run's configuration
                                                       (a relative corpus path in it is
                                                       relative to the run, not here)
    checkpoint_manifest.json                           every other file's size and SHA-256

A checkpoint is written into ``step_XXXXXXXX.tmp-<pid>`` and renamed into place with
``os.replace`` only when every file is complete (and fsynced), so a process killed at any moment
never leaves a directory that :func:`babel_interp.runs.list_checkpoints` accepts. Deleting goes
the other way: the directory is renamed to ``.trash-*`` first. Leftovers of both are removed by
:func:`clean_stale`.

The manifest is written last; a ``step_*`` directory without a valid one is incomplete.
:func:`verify_checkpoint` re-reads every file against it (a file truncated by a full disk or a
copy cut short after the rename), and :func:`latest_verified_checkpoint` is what ``--resume``
continues from: the newest checkpoint that verifies, with the ones it skipped and why.
``trainer_state.json`` is rewritten once the checkpoint's callbacks have run, so the manifest
records it as mutable and :func:`verify_checkpoint` validates its content instead (JSON, the
directory's step).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from babel_interp.dcp_files import MODEL_DCP, OPTIMIZER_DCP, dcp_problems
from babel_interp.faults import fault_point
from babel_interp.integrity import (
    CHECKPOINT_MANIFEST,
    Verification,
    verify_manifest,
    write_manifest,
)
from babel_interp.io import read_json, write_json_atomic
from babel_interp.model import save_model, save_model_config
from babel_interp.runs import (
    CHECKPOINTS,
    RUN_CONFIG,
    STEP_DIR,
    TRAINER_STATE,
    Checkpoint,
    checkpoint_dirname,
    list_checkpoints,
)

__all__ = [
    "OPTIMIZER",
    "RNG",
    "SCHEDULER",
    "capture_rng",
    "checkpoint_tmp_dir",
    "clean_stale",
    "latest_checkpoint",
    "latest_verified_checkpoint",
    "prune_checkpoints",
    "quarantine_unverified",
    "read_trainer_state",
    "resolve_checkpoint",
    "restore_rng",
    "update_trainer_state",
    "verify_checkpoint",
    "verify_run_checkpoints",
    "write_checkpoint",
]

OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.json"
RNG = "rng.pt"
TMP_MARK = ".tmp-"
TRASH_PREFIX = ".trash-"
CORRUPT_MARK = ".corrupt-"


def capture_rng() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) RNG states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_path(path: str | os.PathLike) -> None:
    """fsync one file or directory (a directory: so a rename inside it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(os.path.join(dirpath, name))
        _fsync_path(dirpath)


def _write_json(path: Path, obj: Any) -> None:
    # Inside the checkpoint's temporary directory: the directory's rename is what makes the
    # checkpoint appear, so its files need no atomic write of their own.
    path.write_text(json.dumps(obj, indent=2), "utf-8")


@dataclass
class CheckpointPayload:
    """What :func:`write_checkpoint` writes besides the weights."""

    trainer_state: dict[str, Any]
    run_config: dict[str, Any]
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    tokenizer_dir: Path | None = None


def checkpoint_tmp_dir(run_dir: str | os.PathLike, step: int, token: int | None = None) -> Path:
    """The temporary directory the checkpoint of ``step`` is written into before its rename
    (``token`` defaults to this process's id; ranks writing one checkpoint share rank 0's)."""
    name = checkpoint_dirname(step)
    return (
        Path(run_dir) / CHECKPOINTS / f"{name}{TMP_MARK}{os.getpid() if token is None else token}"
    )


def write_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: Any,
    payload: CheckpointPayload,
    model_cfg: Any = None,
    fsync: bool = True,
    tmp: Path | None = None,
) -> Path:
    """Write the checkpoint of ``step`` atomically and return its directory.

    An existing checkpoint of the same step is replaced (also atomically: the old one is moved
    aside before the new one is renamed in, and only then deleted). ``model=None`` with
    ``tmp``: the weights are already in ``tmp`` (an FSDP run's shards, written by every rank
    with :func:`babel_interp.training.dcp.save_sharded`); only ``model_config.json`` (from
    ``model_cfg``) joins them. A failure removes ``tmp`` either way.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_dirname(step)
    if model is None and (tmp is None or model_cfg is None):
        raise ValueError(
            "write_checkpoint without a model needs tmp (holding the weights) and model_cfg"
        )
    if tmp is None:
        tmp = checkpoint_tmp_dir(run_dir, step)
        if tmp.exists():
            shutil.rmtree(tmp)
    try:
        fault_point("checkpoint.start")
        if model is not None:
            save_model(model, tmp, cfg=model_cfg)
        else:
            save_model_config(tmp, model_cfg)
        fault_point("checkpoint.after_model")
        if payload.tokenizer_dir is not None:
            shutil.copytree(payload.tokenizer_dir, tmp / "tokenizer")
        if payload.optimizer_state is not None:
            torch.save(payload.optimizer_state, tmp / OPTIMIZER)
        fault_point("checkpoint.after_optimizer")
        if payload.scheduler_state is not None:
            _write_json(tmp / SCHEDULER, payload.scheduler_state)
        if payload.rng_state is not None:
            torch.save(payload.rng_state, tmp / RNG)
        _write_json(tmp / RUN_CONFIG, payload.run_config)
        _write_json(tmp / TRAINER_STATE, payload.trainer_state)
        fault_point("checkpoint.before_manifest")
        # The manifest is what makes the files a checkpoint: written last, over all of them.
        write_manifest(tmp, CHECKPOINT_MANIFEST, mutable=[TRAINER_STATE], extra={"step": step})
        if fsync:
            _fsync_tree(tmp)
        fault_point("checkpoint.before_rename")
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
        fault_point("checkpoint.after_rename")
        if fsync:
            _fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _discard(path: Path) -> None:
    # Rename first: a kill during rmtree must not leave a half-deleted step_* that still has
    # its trainer_state.json and so looks complete.
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{os.getpid()}")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(path, trash)
    fault_point("checkpoint.discard")
    shutil.rmtree(trash, ignore_errors=True)


def clean_stale(run_dir: str | os.PathLike) -> list[Path]:
    """Remove unfinished (``*.tmp-*``) and half-deleted (``.trash-*``) checkpoint directories."""
    root = Path(run_dir) / CHECKPOINTS
    removed = []
    if not root.is_dir():
        return removed
    for d in root.iterdir():
        if d.is_dir() and (TMP_MARK in d.name or d.name.startswith(TRASH_PREFIX)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def read_trainer_state(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint directory."""
    path = Path(ckpt_dir) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(
            f"{ckpt_dir} is not a complete checkpoint ({TRAINER_STATE} missing)"
        )
    return read_json(path, "trainer state")


def update_trainer_state(ckpt_dir: str | os.PathLike, **changes: Any) -> dict[str, Any]:
    """Rewrite fields of a checkpoint's ``trainer_state.json`` atomically (file-level replace)."""
    state = read_trainer_state(ckpt_dir)
    state.update(changes)
    write_json_atomic(Path(ckpt_dir) / TRAINER_STATE, state)
    return state


def verify_checkpoint(ckpt_dir: str | os.PathLike) -> Verification:
    """Every file of a checkpoint against its manifest, and ``trainer_state.json``'s content.

    Problems (each naming its file) are in the result; nothing is raised for a bad checkpoint.
    """
    d = Path(ckpt_dir)
    result = verify_manifest(d, CHECKPOINT_MANIFEST)
    for sub in (MODEL_DCP, OPTIMIZER_DCP):
        if (d / sub).is_dir():
            # Sharded state: every shard its .metadata names must be there (a manifest lists
            # what was written; this also catches a checkpoint written without one).
            named = " ".join(result.problems)
            result.problems.extend(
                p for p in dcp_problems(d / sub) if p.split(" ", 1)[0] not in named
            )
    state_path = d / TRAINER_STATE
    if not state_path.is_file():
        if not any(str(state_path) in p for p in result.problems):
            result.problems.append(f"{state_path} is missing")
        return result
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        result.problems.append(f"{state_path} is not valid JSON ({exc})")
        return result
    m = STEP_DIR.match(d.name)
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(state, dict):
        result.problems.append(f"{state_path} is not a JSON object")
    elif not isinstance(step, int):
        result.problems.append(f"{state_path} has no integer 'step' (got {step!r})")
    elif m and int(m.group(1)) != step:
        result.problems.append(f"{state_path} says step {step}, its directory {d.name}")
    manifest_step = (result.manifest or {}).get("step")
    if isinstance(step, int) and manifest_step is not None and manifest_step != step:
        result.problems.append(
            f"{d / CHECKPOINT_MANIFEST} says step {manifest_step}, {TRAINER_STATE} step {step}"
        )
    return result


def _step_dirs(run_dir: str | os.PathLike) -> list[Path]:
    # Every step_* directory, complete or not, newest last; reads nothing inside them.
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and STEP_DIR.match(d.name))


def verify_run_checkpoints(run_dir: str | os.PathLike) -> list[Verification]:
    """:func:`verify_checkpoint` for every ``step_*`` directory of a run, in step order."""
    return [verify_checkpoint(d) for d in _step_dirs(run_dir)]


def latest_verified_checkpoint(
    run_dir: str | os.PathLike,
) -> tuple[Path | None, list[Verification]]:
    """The newest checkpoint directory that verifies, and the newer ones skipped (with why).

    A run written before checkpoints had manifests (none of its checkpoints has one) resumes
    from its newest checkpoint whose ``trainer_state.json`` reads, unverified.
    """
    dirs = _step_dirs(run_dir)
    legacy = bool(dirs) and not any((d / CHECKPOINT_MANIFEST).exists() for d in dirs)
    skipped: list[Verification] = []
    for d in reversed(dirs):
        check = verify_checkpoint(d)
        if legacy:
            check.problems = [p for p in check.problems if CHECKPOINT_MANIFEST not in p]
        if check.ok:
            return d, skipped
        skipped.append(check)
    return None, skipped


def quarantine_unverified(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Move aside every checkpoint newer than the newest one that verifies.

    Each is renamed ``step_XXXXXXXX.corrupt-<n>`` (kept for inspection, never deleted, no
    longer listed), so resuming, pruning and the analyzers see the newest good checkpoint as
    the last one. A warning names each and why. Returns ``[{"checkpoint", "why"}]``.
    """
    _, skipped = latest_verified_checkpoint(run_dir)
    moved = []
    for check in skipped:
        src = check.directory
        n = 0
        while (dst := src.with_name(f"{src.name}{CORRUPT_MARK}{n}")).exists():
            n += 1
        os.replace(src, dst)
        why = check.describe()
        warnings.warn(
            f"skipping checkpoint {src}: {why}; moved to {dst.name}", UserWarning, stacklevel=2
        )
        moved.append({"checkpoint": str(src), "moved_to": str(dst), "why": why})
    return moved


def latest_checkpoint(run_dir: str | os.PathLike) -> Checkpoint | None:
    """The newest complete checkpoint of a run, or None."""
    if not (Path(run_dir) / CHECKPOINTS).is_dir():
        return None
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a checkpoint path or a run directory (its last checkpoint)."""
    p = Path(path)
    if (p / TRAINER_STATE).is_file():
        return p
    if (p / CHECKPOINTS).is_dir():
        last = latest_checkpoint(p)
        if last is None:
            raise FileNotFoundError(f"run {p} has no complete checkpoint to start from")
        return last.path
    raise FileNotFoundError(
        f"{p} is neither a checkpoint directory (with {TRAINER_STATE}) nor a run directory"
    )


def prune_checkpoints(
    run_dir: str | os.PathLike,
    keep_last: int | None,
    protected: Iterable[int] = (),
) -> list[int]:
    """Delete checkpoints that are neither ``protected`` nor among the ``keep_last`` newest.

    ``keep_last=None`` keeps everything. The newest checkpoint is always kept. Returns the
    deleted steps.
    """
    if keep_last is None:
        return []
    ckpts = list_checkpoints(run_dir)
    keep = {c.step for c in ckpts[-max(1, keep_last) :]} | set(protected)
    deleted = []
    for c in ckpts:
        if c.step not in keep:
            _discard(c.path)
            deleted.append(c.step)
    return deleted
