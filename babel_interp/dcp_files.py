"""Single-process access to ``torch.distributed.checkpoint`` (DCP) directories.

An FSDP run saves each checkpoint's weights as a DCP directory (``model.dcp/``): one
``__<rank>_<n>.distcp`` file per writing rank and a ``.metadata`` file that maps every tensor
chunk to the file, offset and length holding it. This module reads such a directory back in
one process, with no process group and no trainer: :func:`read_dcp_state_dict` gives the full
(unsharded) tensors, which is how the analyzers, ``babel-interp export`` and ``init_from`` load
an FSDP run's weights. It only needs the chunks' own files, so a model is consolidated from
disk, never gathered over the network onto one rank.

:func:`dcp_problems` checks that every file the metadata names is there and long enough, so a
missing or cut-short shard is an error naming that file before DCP fails deep inside a read.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "DCP_METADATA",
    "MODEL_DCP",
    "OPTIMIZER_DCP",
    "DCPFileError",
    "dcp_problems",
    "dcp_storage_files",
    "is_dcp_dir",
    "read_dcp_state_dict",
]

# The sharded weights and optimizer state of a checkpoint written by an FSDP run.
MODEL_DCP = "model.dcp"
OPTIMIZER_DCP = "optimizer.dcp"
DCP_METADATA = ".metadata"


class DCPFileError(FileNotFoundError):
    """A DCP directory whose metadata, or a shard file it names, is missing or cut short."""


def is_dcp_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a DCP ``.metadata`` file."""
    return (Path(path) / DCP_METADATA).is_file()


def _metadata(directory: Path):  # -> torch.distributed.checkpoint.metadata.Metadata
    from torch.distributed.checkpoint import FileSystemReader

    if not (directory / DCP_METADATA).is_file():
        raise DCPFileError(
            f"{directory / DCP_METADATA} is missing: {directory} is not a complete "
            "distributed checkpoint"
        )
    try:
        return FileSystemReader(str(directory)).read_metadata()
    except Exception as exc:  # unpickling a damaged file raises anything
        raise DCPFileError(
            f"{directory / DCP_METADATA} cannot be read ({type(exc).__name__}: {exc})"
        ) from None


def dcp_storage_files(directory: str | os.PathLike) -> dict[str, int]:
    """Every shard file the DCP ``.metadata`` of ``directory`` names, with the least size it
    must have (the end of its last chunk)."""
    meta = _metadata(Path(directory))
    need: dict[str, int] = {}
    for info in meta.storage_data.values():
        end = int(info.offset) + int(info.length)
        need[info.relative_path] = max(need.get(info.relative_path, 0), end)
    return need


def dcp_problems(directory: str | os.PathLike) -> list[str]:
    """One sentence per missing or cut-short file of the DCP directory (empty: whole)."""
    d = Path(directory)
    try:
        need = dcp_storage_files(d)
    except DCPFileError as exc:
        return [str(exc)]
    problems = []
    for rel, size in sorted(need.items()):
        path = d / rel
        if not path.is_file():
            problems.append(f"{path} is missing (a shard {d / DCP_METADATA} lists)")
        elif path.stat().st_size < size:
            problems.append(
                f"{path} is {path.stat().st_size} bytes, its chunks in {d / DCP_METADATA} end "
                f"at byte {size} (truncated)"
            )
    return problems


def read_dcp_state_dict(directory: str | os.PathLike) -> dict[str, Tensor]:
    """The full tensors of a DCP directory, read in this process (on CPU).

    Every shard file is checked first: a missing or truncated one raises
    :class:`DCPFileError` naming it. Non-tensor entries are left out.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    d = Path(directory)
    problems = dcp_problems(d)
    if problems:
        raise DCPFileError(f"distributed checkpoint {d} is damaged: {'; '.join(problems)}")
    meta = _metadata(d)
    state: dict[str, Tensor] = {
        key: torch.empty(m.size, dtype=m.properties.dtype)
        for key, m in meta.state_dict_metadata.items()
        if isinstance(m, TensorStorageMetadata)
    }
    # no_dist: a plain read in this process, whether or not a process group exists (DCP
    # still warns that it assumes so when no group exists: that is the intent here).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single")
        dcp.load(state, checkpoint_id=str(d), no_dist=True)
    return state
