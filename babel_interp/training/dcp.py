"""Sharded checkpoints of FSDP runs with ``torch.distributed.checkpoint`` (DCP).

Inside a checkpoint directory (see :mod:`babel_interp.training.checkpoints` for the rest)::

    model.dcp/        .metadata + __<rank>_0.distcp   the weights, one file per rank
    optimizer.dcp/    .metadata + __<rank>_0.distcp   AdamW state, keyed by parameter name

The optimizer state is keyed by each parameter's canonical name (:func:`canonical_param_names`):
its first name in the module tree, the name ``set_state_dict`` looks it up by.

Every rank writes its own shards (:func:`save_sharded`, a collective): nothing is gathered
onto one rank. The state is taken with ``get_state_dict`` (sharded ``DTensor`` values keyed by
parameter name), so a checkpoint written by N ranks loads on M ranks (:func:`load_sharded`
reshards on read) and in one process without a process group
(:func:`babel_interp.dcp_files.read_dcp_state_dict`, how analyzers read the weights).

Atomicity and integrity are the checkpoint directory's: the shards are written into the
``step_*.tmp-*`` directory with every file fsynced, rank 0 adds the other files and the
manifest (which lists every shard with its size and SHA-256) and renames the directory into
place. Before a load, the files ``.metadata`` names are checked, so a missing shard is an error
naming its file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from babel_interp.dcp_files import (
    MODEL_DCP,
    OPTIMIZER_DCP,
    DCPFileError,
    dcp_problems,
)

__all__ = [
    "MODEL_DCP",
    "OPTIMIZER_DCP",
    "canonical_param_names",
    "is_sharded_checkpoint",
    "load_sharded",
    "save_sharded",
]


def is_sharded_checkpoint(ckpt_dir: str | os.PathLike) -> bool:
    """Whether a checkpoint holds DCP shards (written by an FSDP run)."""
    return (Path(ckpt_dir) / MODEL_DCP).is_dir()


def save_sharded(directory: str | os.PathLike, model: Any, optimizer: Any, fsync: bool) -> None:
    """Write this rank's shards of ``model`` and ``optimizer`` under ``directory`` (a
    collective: every rank calls it with the same directory, on a file system they share)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.distributed.checkpoint.state_dict import get_state_dict

    d = Path(directory)
    _materialize_adam_state(optimizer)
    model_state, optim_state = get_state_dict(model, optimizer)
    _rename_optim_keys(optim_state, canonical_param_names(model))
    for name, state in ((MODEL_DCP, model_state), (OPTIMIZER_DCP, optim_state)):
        dcp.save(state, storage_writer=FileSystemWriter(str(d / name), sync_files=fsync))


def canonical_param_names(model: Any) -> dict[str, str]:
    """``{name get_state_dict keys a parameter's optimizer state by: its canonical name}``.

    ``get_state_dict`` keys optimizer state by the names ``model.named_parameters()`` returns,
    while ``set_state_dict`` looks each parameter up by its path in the module tree. The two
    agree for a plain module (TransformerLens 3's ``HookedTransformer``: every name maps to
    itself), but TransformerLens 4's ``TransformerBridge`` overrides ``named_parameters`` with
    its wrapped model's names (``tok_embed._original_component.weight``, ``layers.0...``,
    ``head...``), whereas the module tree reaches the same parameters through the bridge's
    components (``embed._original_component.weight``, ``blocks.0...``, ``unembed...``). A
    state saved as ``get_state_dict`` returns it then loads nowhere, not even in the process
    that wrote it ("Missing optimizer state for parameter 'embed._original_component.weight'").

    The canonical name is a parameter's first name in ``nn.Module.named_parameters`` (the
    module tree, not an override), in module registration order: the same in every process
    and for every world size, whatever the string hashing of the process.
    """
    import torch

    first: dict[int, str] = {}
    for name, p in torch.nn.Module.named_parameters(model, remove_duplicate=False):
        first.setdefault(id(p), name)
    return {name: first.get(id(p), name) for name, p in model.named_parameters()}


def _rename_optim_keys(optim_state: dict[str, Any], names: dict[str, str]) -> None:
    """Rename, in place, the parameter keys of a (nested) ``get_state_dict`` optimizer state:
    the keys of ``state`` and the entries of each param group's ``params``."""
    optim_state["state"] = {names.get(k, k): v for k, v in optim_state["state"].items()}
    for group in optim_state["param_groups"]:
        group["params"] = [names.get(k, k) for k in group["params"]]


def _materialize_adam_state(optimizer: Any) -> None:
    """Give a not-yet-stepped Adam(W) the state its first step would create: step 0, zero
    moments.

    ``get_state_dict`` initializes an empty optimizer state by running a step with zero
    gradients and learning rate 0, which leaves the weights alone but counts a step: Adam's
    bias correction would then differ from the run that never saved (a checkpoint at step 0),
    and resuming from that checkpoint would not reproduce it. The state made here is exactly
    what Adam creates lazily, so saving changes nothing.
    """
    import torch

    if optimizer.state:
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not p.requires_grad:
                continue
            state = {
                "step": torch.tensor(0.0),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            optimizer.state[p] = state


def _check(directory: Path) -> None:
    problems = dcp_problems(directory)
    if problems:
        raise DCPFileError(
            f"cannot load the distributed checkpoint {directory}: {'; '.join(problems)}"
        )


def load_sharded(ckpt_dir: str | os.PathLike, model: Any, optimizer: Any | None) -> None:
    """Load a checkpoint's shards into a sharded ``model`` (and ``optimizer``) on however many
    ranks now run (a collective). A missing or truncated shard raises
    :class:`~babel_interp.dcp_files.DCPFileError` naming it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    d = Path(ckpt_dir)
    _check(d / MODEL_DCP)
    if optimizer is None:
        model_state = get_model_state_dict(model)
        dcp.load(model_state, checkpoint_id=str(d / MODEL_DCP))
        set_model_state_dict(model, model_state)
        return
    if not (d / OPTIMIZER_DCP).is_dir():
        raise DCPFileError(f"{d / OPTIMIZER_DCP} is missing: {d} holds no optimizer state")
    _check(d / OPTIMIZER_DCP)
    model_state, optim_state = get_state_dict(model, optimizer)
    # The file holds canonical names, and set_state_dict resolves exactly those.
    _rename_optim_keys(optim_state, canonical_param_names(model))
    dcp.load(model_state, checkpoint_id=str(d / MODEL_DCP))
    dcp.load(optim_state, checkpoint_id=str(d / OPTIMIZER_DCP))
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state)
