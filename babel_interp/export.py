"""One checkpoint as one file: ``babel-interp export RUN [--step S] --out FILE.safetensors``.

The weights of a checkpoint (a ddp run's ``model.safetensors`` or an FSDP run's sharded
``model.dcp/``, consolidated here in one process from the shard files) go into a single
safetensors file whose header carries the checkpoint's ``model_config.json`` (entry
:data:`~babel_interp.model.EXPORT_META_KEY`); the tokenizer, when the checkpoint has one, is
copied beside it as ``FILE.tokenizer/``. :func:`babel_interp.model.load_model` loads the file
like a checkpoint directory; without babel-interp, TransformerLens 3.x loads it as::

    meta = json.loads(safe_open(FILE, "pt").metadata()["babel_interp.model_config"])
    model = HookedTransformer(HookedTransformerConfig(**meta["transformer_lens_config"]))
    model.load_state_dict(load_file(FILE), strict=False)  # strict=False: TL's masks are buffers
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from babel_interp.model import (
    EXPORT_META_KEY,
    ModelConfig,
    exported_tokenizer_dir,
    read_saved_model,
    tl_config_kwargs,
)
from babel_interp.runs import Run
from babel_interp.training.checkpoints import resolve_checkpoint

__all__ = ["export_checkpoint"]


def export_checkpoint(
    path: str | os.PathLike, out: str | os.PathLike, step: int | None = None
) -> Path:
    """Write the checkpoint at ``step`` of run ``path`` (default: its latest; ``path`` may also
    be a checkpoint directory) to the single file ``out`` (``*.safetensors``); returns it.

    The files read are verified against the checkpoint's manifest first, and the file is
    written under a temporary name and renamed, so ``out`` is whole or absent.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export writes a .safetensors file, got --out {out}")
    ckpt = Run(path).checkpoint(step).path if step is not None else resolve_checkpoint(path)
    state, meta, tok_dir = read_saved_model(ckpt)
    cfg = ModelConfig.from_dict(meta["model"])
    meta = {**meta, "transformer_lens_config": tl_config_kwargs(cfg), "source": str(ckpt)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata={EXPORT_META_KEY: json.dumps(meta)})
        tok_out = exported_tokenizer_dir(out)
        if tok_dir is not None:
            tok_tmp = tok_out.with_name(f"{tok_out.name}.tmp-{os.getpid()}")
            shutil.rmtree(tok_tmp, ignore_errors=True)
            shutil.copytree(tok_dir, tok_tmp)
            shutil.rmtree(tok_out, ignore_errors=True)
            os.replace(tok_tmp, tok_out)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
