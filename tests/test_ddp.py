"""Data-parallel training: 2 CPU processes under torchrun (gloo) give the 1-process losses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.runs import list_checkpoints, read_metrics, read_run_config

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)


@pytest.fixture(autouse=True)
def _one_thread():
    # torchrun gives each worker one thread; the 1-process reference uses the same.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _args(corpus: Path, out: Path) -> list[str]:
    return [
        "train",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--lr",
        "3e-3",
        "--warmup",
        "2",
        "--mixture",
        "python=0.5,php=0.5",
        "--eval-every",
        "3",
        "--eval-windows",
        "5",
        "--checkpoints",
        "every:3",
        "--no-progress",
    ]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", ("python", "php"), docs=60)
    single = tmp_path / "single"
    assert main(_args(corpus, single)) == 0
    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "babel_interp.cli", *_args(corpus, ddp)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 2 ranks on 2 shared cores: generous, so load alone does not fail it
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One summary line: only rank 0 reports, writes metrics and writes checkpoints.
    assert len([x for x in proc.stdout.splitlines() if x.startswith("{")]) == 1
    assert read_run_config(ddp)["world_size"] == 2

    def records(run, kind):
        return [r for r in read_metrics(run) if r["type"] == kind]

    one, two = records(single, "train"), records(ddp, "train")
    assert [r["step"] for r in two] == list(range(1, 7))
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        assert b["loss_per_language"] == pytest.approx(a["loss_per_language"], rel=1e-5)
        assert b["tokens_seen"] == a["tokens_seen"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    e1, e2 = records(single, "eval"), records(ddp, "eval")
    assert [e["step"] for e in e2] == [0, 3, 6]
    for a, b in zip(e1, e2, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
        assert b["val_tokens"] == a["val_tokens"]  # each window evaluated exactly once
    assert [c.step for c in list_checkpoints(ddp)] == [0, 3, 6]
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == [
        "step_00000000",
        "step_00000003",
        "step_00000006",
    ]
