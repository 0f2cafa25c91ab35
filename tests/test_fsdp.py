"""FSDP2 training and sharded (DCP) checkpoints on CPU: 2 processes under torchrun (gloo) give
the 1-process losses, resume exactly after SIGKILL, and resume across world sizes (2 -> 1 and
1 -> 2); activation checkpointing changes memory, not losses; an exported checkpoint loads in
TransformerLens with the run's logits; damaged input is a clear error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.dcp_files import MODEL_DCP, OPTIMIZER_DCP, DCPFileError
from babel_interp.integrity import CHECKPOINT_MANIFEST, IntegrityError
from babel_interp.model import load_model, tl_major_version
from babel_interp.runs import Run, list_checkpoints, read_metrics
from babel_interp.training import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)

STEPS = 20


@pytest.fixture(autouse=True)
def _one_thread():
    # torchrun gives each worker one thread; the 1-process runs use the same kernels.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php"), docs=60)


def _args(corpus: Path, out: Path, *extra: str) -> list[str]:
    # micro-batches of 2: two accumulation steps per rank at 2 ranks, four in one process.
    return [
        "train",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--batch-size",
        "8",
        "--micro-batch-size",
        "2",
        "--seq-len",
        "32",
        "--lr",
        "3e-3",
        "--warmup",
        "2",
        "--mixture",
        "python=0.5,php=0.5",
        "--eval-every",
        "10",
        "--eval-windows",
        "5",
        "--checkpoints",
        "every:10",
        "--hook",
        "activation-norms",
        "--no-progress",
        *extra,
    ]


def _torchrun(args: list[str], **popen: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "babel_interp.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen
    )


def _run_torchrun(args: list[str]) -> None:
    proc = _torchrun(args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def _records(run: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(run) if r["type"] == kind]


def _assert_same_losses(run: Path, reference: Path, tol: float = 1e-5) -> None:
    one, two = _records(reference, "train"), _records(run, "train")
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=tol, abs=tol)
        assert b["loss_per_language"] == pytest.approx(a["loss_per_language"], rel=tol)
        assert b["tokens_seen"] == a["tokens_seen"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    e1, e2 = _records(reference, "eval"), _records(run, "eval")
    assert [e["step"] for e in e2] == [0, 10, 20]
    for a, b in zip(e1, e2, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=tol)
        assert b["val_tokens"] == a["val_tokens"]  # each window evaluated exactly once


def _killed_after(run: Path, step: int, copy: Path) -> Path:
    """A copy of ``run`` at ``copy`` as if killed right after its checkpoint at ``step``."""
    shutil.copytree(run, copy)
    for c in list_checkpoints(copy):
        if c.step > step:
            shutil.rmtree(c.path)
    return copy


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory) -> Path:
    """The reference: one process, plain (ddp) path."""
    run = tmp_path_factory.mktemp("single") / "run"
    assert main(_args(corpus, run)) == 0
    return run


@pytest.fixture(scope="module")
def fsdp2(corpus, tmp_path_factory) -> Path:
    """The same run sharded over 2 processes."""
    run = tmp_path_factory.mktemp("fsdp2") / "run"
    _run_torchrun(_args(corpus, run, "--parallel", "fsdp"))
    return run


def test_two_fsdp_ranks_match_one_process(single, fsdp2):
    _assert_same_losses(fsdp2, single)
    cfg = Run(fsdp2).config
    assert cfg["world_size"] == 2 and cfg["train"]["parallel"] == "fsdp"
    ckpt = list_checkpoints(fsdp2)[-1].path
    # Sharded: each rank wrote its own file; no consolidated weights or optimizer.pt.
    assert sorted(p.name for p in (ckpt / MODEL_DCP).iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert (ckpt / OPTIMIZER_DCP / "__1_0.distcp").is_file()
    assert not (ckpt / "model.safetensors").exists() and not (ckpt / "optimizer.pt").exists()
    manifest = json.loads((ckpt / CHECKPOINT_MANIFEST).read_text())
    assert f"{MODEL_DCP}/__1_0.distcp" in manifest["files"]
    assert main(["verify", str(fsdp2), "--quiet"]) == 0
    # Callbacks ran on rank 0's gathered copy: the hook saw the same activations.
    for lang in ("python", "php"):
        a = _hook_summary(single, STEPS, lang)
        b = _hook_summary(fsdp2, STEPS, lang)
        assert b == pytest.approx(a, rel=1e-4)


def _hook_summary(run: Path, step: int, lang: str) -> list[float]:
    d = run / "analysis" / "hooks" / f"step_{step:08d}" / lang
    files = sorted(d.rglob("*.json"))
    assert files, f"no hook results under {d}"
    values: list[float] = []

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for k in sorted(x):
                walk(x[k])
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            values.append(float(x))

    for f in files:
        walk(json.loads(f.read_text()))
    return values


def test_two_rank_checkpoint_resumes_in_one_process(corpus, single, fsdp2, tmp_path):
    run = _killed_after(fsdp2, 10, tmp_path / "run")
    assert main([*_args(corpus, run, "--parallel", "fsdp"), "--resume"]) == 0
    _assert_same_losses(run, single)
    resume = [r for r in read_metrics(run) if r.get("event") == "resume"][-1]
    assert resume["step"] == 10
    ckpt = list_checkpoints(run)[-1].path
    assert sorted(p.name for p in (ckpt / MODEL_DCP).iterdir()) == [".metadata", "__0_0.distcp"]


def test_one_process_fsdp_matches_and_resumes_on_two_ranks(corpus, single, tmp_path):
    one = tmp_path / "one"
    assert main(_args(corpus, one, "--parallel", "fsdp")) == 0
    _assert_same_losses(one, single)
    run = _killed_after(one, 10, tmp_path / "cut")
    # With activation checkpointing under 2-rank FSDP too: it changes no loss.
    _run_torchrun(
        [*_args(corpus, run, "--parallel", "fsdp", "--activation-checkpointing"), "--resume"]
    )
    _assert_same_losses(run, single)


def _descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out += [child, *_descendants(child)]
    return out


def _sigkill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the workers, then torchrun (each worker runs in a session of its own, so a
    signal to torchrun's process group would miss them)."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=60)


def test_sigkill_under_fsdp_then_resume_reproduces_the_uninterrupted_run(corpus, fsdp2, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(_args(corpus, run, "--parallel", "fsdp", "--resume-every", "5"))
    target = run / "checkpoints" / "step_00000005"
    deadline = time.monotonic() + 240
    while not target.is_dir():
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            _sigkill_tree(proc)
            pytest.fail("no checkpoint at step 5")
        time.sleep(0.005)
    _sigkill_tree(proc)
    killed_at = list_checkpoints(run)[-1].step
    assert 5 <= killed_at < STEPS, "the run finished before it could be killed"
    _run_torchrun([*_args(corpus, run, "--parallel", "fsdp", "--resume-every", "5"), "--resume"])
    # Same world size, same reductions: the resumed run logs exactly the uninterrupted losses.
    assert [(r["step"], r["loss"], r["grad_norm"]) for r in _records(run, "train")] == [
        (r["step"], r["loss"], r["grad_norm"]) for r in _records(fsdp2, "train")
    ]
    assert [e["val_loss"] for e in _records(run, "eval")] == [
        e["val_loss"] for e in _records(fsdp2, "eval")
    ]
    assert not list((run / "checkpoints").glob("*.tmp-*"))
    assert main(["verify", str(run), "--quiet"]) == 0


_OPTIM_KEYS_SCRIPT = r"""
import json, sys
import torch
from babel_interp.model import build_model, get_preset
from babel_interp.training import fsdp
from babel_interp.training.dcp import load_sharded, save_sharded

mode, path = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = build_model(get_preset("tiny").with_vocab(64))
fsdp.init_single_process_group(torch.device("cpu"))
fsdp.shard_model(model, torch.device("cpu"))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
if mode == "save":
    tokens = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    model(tokens, return_type="logits").float().pow(2).mean().backward()
    opt.step()
    save_sharded(path, model, opt, fsync=False)
else:
    load_sharded(path, model, opt)
state = {
    name: [float(opt.state[p]["step"])]
    + [float(opt.state[p][k].full_tensor().double().sum()) for k in ("exp_avg", "exp_avg_sq")]
    for name, p in torch.nn.Module.named_parameters(model)
}
print(json.dumps(state))
"""


def test_optimizer_state_is_saved_under_module_tree_names_whatever_the_hash_seed(tmp_path):
    """The optimizer state of a sharded checkpoint is keyed by each parameter's first name in
    the module tree, and another process (another string-hash seed) loads it exactly."""
    from torch.distributed.checkpoint import FileSystemReader

    ckpt = tmp_path / "ckpt"
    states = []
    for mode, seed in (("save", "1"), ("load", "2")):
        proc = subprocess.run(
            [sys.executable, "-c", _OPTIM_KEYS_SCRIPT, mode, str(ckpt)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": seed},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        states.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    saved, loaded = states
    assert loaded == saved
    assert all(step == 1.0 and any(sums) for step, *sums in saved.values())
    keys = FileSystemReader(str(ckpt / OPTIMIZER_DCP)).read_metadata().state_dict_metadata
    names = {k.removeprefix("state.").rsplit(".", 1)[0] for k in keys if k.startswith("state.")}
    assert names == set(saved)


def test_export_loads_in_transformer_lens_with_the_runs_logits(fsdp2, tmp_path):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(fsdp2), "--step", "10", "--out", str(out)]) == 0
    assert (tmp_path / "model.tokenizer" / "tokenizer.json").is_file()
    tokens = torch.randint(0, 400, (2, 16), generator=torch.Generator().manual_seed(0))
    run_model, _ = Run(fsdp2).load_model(10, device="cpu")  # reads the DCP shards
    with torch.no_grad():
        want = run_model(tokens, return_type="logits")
        got = load_model(out, device="cpu")[0](tokens, return_type="logits")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if tl_major_version() < 4:
        # TransformerLens itself, without babel-interp's loader.
        from safetensors import safe_open
        from safetensors.torch import load_file
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        with safe_open(str(out), framework="pt") as f:
            meta = json.loads(f.metadata()["babel_interp.model_config"])
        tl = HookedTransformer(HookedTransformerConfig(**meta["transformer_lens_config"]))
        missing, unexpected = tl.load_state_dict(load_file(out), strict=False)
        assert not unexpected and not [k for k in missing if k in dict(tl.named_parameters())]
        with torch.no_grad():
            plain = tl(tokens, return_type="logits")
        torch.testing.assert_close(plain, want, rtol=1e-5, atol=1e-5)


def test_a_missing_shard_is_an_error_naming_it(fsdp2, tmp_path):
    ckpt = tmp_path / "step_00000010"
    shutil.copytree(fsdp2 / "checkpoints" / "step_00000010", ckpt)
    (ckpt / MODEL_DCP / "__1_0.distcp").unlink()
    with pytest.raises(IntegrityError, match=r"model\.dcp/__1_0\.distcp is missing"):
        load_model(ckpt, device="cpu")
    # Without the manifest, the DCP metadata still names the shard.
    (ckpt / CHECKPOINT_MANIFEST).unlink()
    with pytest.raises(DCPFileError, match=r"model\.dcp/__1_0\.distcp is missing"):
        load_model(ckpt, device="cpu")
    # The command line: verify names the file and fails, export refuses, nothing written.
    run = _killed_after(fsdp2, 10, tmp_path / "run")
    (run / "checkpoints" / "step_00000010" / OPTIMIZER_DCP / "__0_0.distcp").unlink()
    assert main(["verify", str(run), "--quiet"]) == 1
    (run / "checkpoints" / "step_00000010" / MODEL_DCP / "__0_0.distcp").unlink()
    out = tmp_path / "x.safetensors"
    assert main(["export", str(run), "--step", "10", "--out", str(out)]) == 1
    assert not out.exists()


def test_bad_fsdp_options_are_clear_errors(corpus, single, tmp_path):
    base = dict(corpus=str(corpus), out=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="compile is not supported with parallel='fsdp'"):
        TrainConfig(**base, parallel="fsdp", compile=True)
    with pytest.raises(ValueError, match=r"TrainConfig\.parallel must be one of"):
        TrainConfig(**base, parallel="zero3")
    assert main(["train", "--corpus", str(corpus), "--out", "x", "--parallel", "fsdp",
                 "--compile"]) == 1  # fmt: skip
    # A ddp run's checkpoints hold full weights: an fsdp resume says so instead of guessing.
    copy = tmp_path / "single"
    shutil.copytree(single, copy)
    saved = Run(copy).train_config
    cfg = TrainConfig.from_dict({**saved, "out": str(copy), "resume": True, "parallel": "fsdp"})
    with pytest.raises(ValueError, match="written by a ddp run"):
        Trainer(cfg)
    assert not torch.distributed.is_initialized()  # the one-rank group was left


_AC_SCRIPT = r"""
import json, sys, torch
from babel_interp.bench.memory import peak_tensor_bytes
from babel_interp.model import ModelConfig
from babel_interp.training import TrainConfig, train
from babel_interp.runs import read_metrics
torch.set_num_threads(1)
corpus, out = sys.argv[1], sys.argv[2]
# Attention patterns dominate: TransformerLens's own attention (no fused kernel) keeps
# [batch, heads, pos, pos] scores and patterns for backward in every layer.
model = ModelConfig(n_layers=4, d_model=64, n_heads=8, d_head=8, d_mlp=128, n_ctx=512)
result = {}
for ac in (True, False):
    run = f"{out}/ac{int(ac)}"
    cfg = TrainConfig(corpus=corpus, out=run, model=model, steps=2, batch_size=4, seq_len=512,
                      mixture="python=1", eval_every=0, fast_path=False, progress=False,
                      activation_checkpointing=ac)
    # Peak bytes of live tensors (torch's allocator events), not the resident set: the RSS
    # of a process also holds freed pages and other libraries' buffers.
    peak = peak_tensor_bytes(lambda: None, lambda _: train(cfg)).peak
    losses = [r["loss"] for r in read_metrics(run) if r["type"] == "train"]
    result[f"ac{int(ac)}"] = {"peak_mib": peak / 2**20, "losses": losses}
print(json.dumps(result))
"""


def test_activation_checkpointing_changes_memory_not_losses(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", ("python",), docs=150)
    proc = subprocess.run(
        [sys.executable, "-c", _AC_SCRIPT, str(corpus), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,  # two training runs in one process; shared CI cores are slow
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    with_ac, without = res["ac1"], res["ac0"]
    assert without["losses"] == pytest.approx(with_ac["losses"], rel=1e-5, abs=1e-5)
    # Without checkpointing every layer keeps its attention scores and pattern for backward
    # (4 x 8 heads x 512^2 floats, 32 MiB each); with it, one layer's at a time.
    mib = (round(with_ac["peak_mib"]), round(without["peak_mib"]))
    print(f"peak tensors: with checkpointing {mib[0]} MiB, without {mib[1]} MiB")
    assert without["peak_mib"] - with_ac["peak_mib"] > 150
