"""Checkpoint verification against the checkpoint write it protects, in the same run.

A ``medium``-preset model (34M parameters at an 8k vocabulary, the GPU pilot's shape) with
its AdamW state after one step is written with :func:`write_checkpoint` (fsync on, as in
training: weights, optimizer, RNG, trainer state and the manifest of every file's SHA-256),
then verified with :func:`verify_checkpoint` (re-reads every file and its digest). Reported:
the best of ``--repeats`` times of each, the verification's cost as a share of the write, and
the share of the write spent on the manifest (hashing the files just written).

    python benchmarks/checkpoint_verify.py                 # medium, d_vocab 8192
    python benchmarks/checkpoint_verify.py --preset tiny --d-vocab 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from babel_interp.integrity import CHECKPOINT_MANIFEST, write_manifest
from babel_interp.model import build_model, count_parameters, get_preset
from babel_interp.runs import TRAINER_STATE
from babel_interp.training.checkpoints import (
    CheckpointPayload,
    capture_rng,
    verify_checkpoint,
    write_checkpoint,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--d-vocab", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    cfg = get_preset(args.preset).with_vocab(args.d_vocab)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = sum(p.float().pow(2).mean() for p in model.parameters())
    loss.backward()
    opt.step()
    payload = CheckpointPayload(
        trainer_state={"step": 1},
        run_config={},
        optimizer_state=opt.state_dict(),
        rng_state=capture_rng(),
    )
    writes, verifies, manifests = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            run = Path(tmp) / f"run{i}"
            t = time.perf_counter()
            path = write_checkpoint(run, 1, model, payload, model_cfg=cfg, fsync=True)
            writes.append(time.perf_counter() - t)
            t = time.perf_counter()
            check = verify_checkpoint(path)
            verifies.append(time.perf_counter() - t)
            assert check.ok, check.describe()
            t = time.perf_counter()
            write_manifest(path, CHECKPOINT_MANIFEST, mutable=[TRAINER_STATE], extra={"step": 1})
            manifests.append(time.perf_counter() - t)
        size = check.checked_bytes
    w, v, m = min(writes), min(verifies), min(manifests)
    print(f"model: {args.preset}, {count_parameters(model) / 1e6:.1f}M parameters, "
          f"checkpoint {size / 2**20:.0f} MiB ({args.repeats} repeats, best of each)")  # fmt: skip
    print(f"write (fsync, manifest included): {w:.3f} s  ({size / 2**20 / w:.0f} MiB/s)")
    print(f"verify (every file re-read):      {v:.3f} s  ({size / 2**20 / v:.0f} MiB/s)")
    print(f"ratio verify / write:             {v / w:.1%}")
    print(f"manifest share of the write:      {m / w:.1%}")


if __name__ == "__main__":
    main()
