"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) and
activation checkpointing for the trainer.

:func:`shard_model` shards each transformer block (``model.blocks[i]``), then the root (the
embeddings, the final norm and the unembedding), over every rank of the default process group.
Parameters, gradients and AdamW state live as ``DTensor`` shards: a rank holds ``1/N`` of
them, and each block's full weights exist only while that block runs (all-gathered before its
forward and backward, freed after). Gradients are reduce-scattered with the mean over ranks,
as DDP averages them, so the trainer's loss scaling is the same for both.

On a GPU with ``bfloat16``, a :class:`~torch.distributed.fsdp.MixedPrecisionPolicy` all-gathers
and computes in bfloat16 and reduces gradients in float32; the sharded master weights and the
optimizer stay float32.

One process: :func:`init_single_process_group` opens a one-rank group (gloo on CPU, nccl on
CUDA, over an in-process store, so nothing listens on a port) and the same sharding code runs
on a mesh of one. The run then writes the same sharded checkpoints a multi-rank run does, and
they resume on any number of ranks.

Hook points under sharding: a sharded model's forward is a collective (every rank must run it,
and only through ``module(...)``: TransformerLens's ``run_with_hooks`` calls ``forward``
directly, which skips FSDP's all-gather of the root's weights). The trainer's own forwards
(training, the per-language loss, evaluation) run on the sharded model on every rank.
Callbacks run on rank 0 only, so they get an unsharded copy: :func:`gather_full_state` (a
collective) brings the full weights to rank 0, which loads them into a plain hooked model;
analyzers' hooks then behave exactly as on a single process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "apply_activation_checkpointing",
    "clip_grad_norm",
    "gather_full_state",
    "init_single_process_group",
    "set_gradient_sync",
    "shard_model",
]


def init_single_process_group(device: torch.device) -> bool:
    """Open a one-rank process group for FSDP in a single process; False if one exists."""
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    # An in-process store: no rendezvous address, no port, nothing another process can join.
    dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


def _blocks(model: Any) -> list[torch.nn.Module]:
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise ValueError(
            f"cannot shard {type(model).__name__}: it has no transformer blocks "
            "(model.blocks) to shard one by one"
        )
    return list(blocks)


def apply_activation_checkpointing(model: Any) -> int:
    """Recompute each transformer block's activations in the backward pass; returns the count.

    Uses the composable ``torch.distributed._composable.checkpoint`` (non-reentrant
    ``torch.utils.checkpoint`` installed as module hooks) rather than ``checkpoint_wrapper``:
    it leaves the module tree, and so every parameter name and TransformerLens hook name
    (``blocks.{l}.hook_resid_post``), unchanged, and it composes with ``fully_shard``. Hooks
    inside a block fire again during the recomputation; the trainer's callbacks do not run
    during training forwards, so they never see it.
    """
    from torch.distributed._composable import checkpoint

    blocks = _blocks(model)
    for block in blocks:
        checkpoint(block)
    return len(blocks)


def shard_model(model: Any, device: torch.device, param_dtype: torch.dtype | None = None) -> None:
    """Shard ``model`` in place over the default process group: each block, then the root.

    ``param_dtype`` (bfloat16 on a GPU) sets the mixed-precision policy: parameters are
    all-gathered and used in that dtype, gradients reduced in float32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not dist.is_initialized():
        raise RuntimeError("shard_model needs a process group (init_single_process_group)")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs: dict[str, Any] = {"mesh": mesh}
    if param_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=param_dtype, reduce_dtype=torch.float32
        )
    for block in _blocks(model):
        fully_shard(block, **kwargs)
    # The root keeps its weights unsharded after forward: the unembedding runs right after the
    # last block and its backward comes first, so resharding it would only gather it again.
    fully_shard(model, reshard_after_forward=False, **kwargs)


def set_gradient_sync(model: Any, sync: bool) -> None:
    """Reduce-scatter gradients in this backward (``sync``) or accumulate them unsharded-
    locally (a non-final micro-step of gradient accumulation, as DDP's ``no_sync``)."""
    model.set_requires_gradient_sync(sync, recurse=True)


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm over all ranks' shards; returns the norm before clipping.

    ``clip_grad_norm_`` on ``DTensor`` gradients computes the norm over the sharded tensors
    (a collective) and returns it as a replicated ``DTensor``.
    """
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
    full = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return float(full)


def gather_full_state(model: Any) -> dict[str, Tensor] | None:
    """The full (unsharded) weights of a sharded model on rank 0, on CPU; None elsewhere.

    A collective: every rank must call it. Parameters are gathered one at a time and only rank
    0 keeps them, so other ranks never hold more than one full tensor.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=opts)
    return state if dist.get_rank() == 0 else None
