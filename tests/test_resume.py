"""Exact resume: a run killed with SIGKILL, or stopped with SIGTERM, and resumed with ``--resume``
logs exactly the losses of the run that was never interrupted (CPU, same thread count)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.mixture import Mixture
from babel_interp.runs import list_checkpoints, read_metrics
from babel_interp.training import (
    CheckpointConfig,
    CheckpointSchedule,
    ControllerCallback,
    TrainConfig,
    Trainer,
    read_trainer_state,
    train,
)
from babel_interp.training.callbacks import Callback

STEPS = 80


@pytest.fixture(autouse=True)
def _one_thread():
    # The subprocesses run with --threads 1; the in-process runs must use the same kernels.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php"), docs=60)


def _args(corpus: Path, out: Path) -> list[str]:
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
        "--seq-len",
        "32",
        "--lr",
        "3e-3",
        "--warmup",
        "5",
        "--mixture",
        "0:python=1;40:php=0.8,python=0.2",
        "--eval-every",
        "20",
        "--eval-windows",
        "4",
        "--checkpoints",
        "log",
        "--resume-every",
        "20",
        "--threads",
        "1",
        "--no-progress",
    ]


def _comparable(run: Path) -> list[tuple]:
    out = []
    for r in read_metrics(run):
        if r["type"] == "train":
            out.append(("train", r["step"], r["loss"], r["loss_per_language"], r["tokens_seen"],
                        r["lr"], r["grad_norm"]))  # fmt: skip
        elif r["type"] == "eval":
            out.append(("eval", r["step"], r["val_loss"], r["val_bpb"]))
        elif r["type"] == "mixture":
            out.append(("mixture", r["step"], r["reason"], r["weights"]))
    return out


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> list[tuple]:
    run = tmp_path_factory.mktemp("ref") / "run"
    n = torch.get_num_threads()
    try:
        assert main(_args(corpus, run)) == 0
    finally:
        torch.set_num_threads(n)
    ref = _comparable(run)
    assert sum(r[0] == "train" for r in ref) == STEPS
    return ref


def _start(corpus: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "babel_interp.cli", *_args(corpus, out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, step: int, timeout: float = 240):
    target = run / "checkpoints" / f"step_{step:08d}"
    deadline = time.monotonic() + timeout
    while not target.is_dir():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"training exited ({proc.returncode}) before step {step}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint at step {step} after {timeout}s")
        time.sleep(0.005)


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(corpus, tmp_path, reference):
    run = tmp_path / "run"
    proc = _start(corpus, run)
    _wait_for_checkpoint(proc, run, 20)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = list_checkpoints(run)[-1].step
    assert 20 <= killed_at < STEPS
    # The same command with --resume continues from the last complete checkpoint.
    assert main([*_args(corpus, run), "--resume"]) == 0
    assert _comparable(run) == reference
    events = [r for r in read_metrics(run) if r["type"] == "event"]
    assert [e["event"] for e in events] == ["start", "resume", "end"]
    assert events[1]["step"] == killed_at
    assert not list((run / "checkpoints").glob("*.tmp-*"))


def test_sigterm_saves_a_checkpoint_and_resume_completes_exactly(corpus, tmp_path, reference):
    run = tmp_path / "run"
    proc = _start(corpus, run)
    _wait_for_checkpoint(proc, run, 20)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    ends = [r for r in read_metrics(run) if r.get("event") == "end"]
    assert ends and ends[-1]["reason"] == "signal:SIGTERM"
    stopped = ends[-1]["step"]
    assert list_checkpoints(run)[-1].step == stopped
    assert json.loads(err.decode().strip().splitlines()[-1])["stop_reason"] == "signal:SIGTERM"
    if stopped < STEPS:
        assert main(["train", "--out", str(run), "--resume", "--threads", "1"]) == 0
    assert _comparable(run) == reference


def test_resume_rejects_a_changed_configuration(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = dict(
        corpus=str(corpus),
        out=str(run),
        steps=4,
        batch_size=4,
        seq_len=32,
        eval_every=0,
        progress=False,
        checkpoints=CheckpointConfig(fsync=False),
    )
    train(TrainConfig(**cfg))
    with pytest.raises(ValueError, match=r"\['seed'\] differ"):
        Trainer(TrainConfig(**{**cfg, "seed": 9, "resume": True}))
    # Resuming a finished run is a no-op that changes nothing.
    before = read_metrics(run)
    result = train(TrainConfig(**{**cfg, "resume": True}))
    assert result.step == 4 and result.stop_reason == "completed"
    assert [r for r in read_metrics(run) if r["type"] == "train"] == [
        r for r in before if r["type"] == "train"
    ]


class _Halve:
    """A checkpoint-time controller: each checkpoint moves half of python's weight to php."""

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, trainer, step, signals):
        self.calls += 1
        w = trainer.mixture.weights
        py = w.get("python", 0.0) / 2
        return Mixture(weights={"python": py, "php": 1 - py}) if py > 0.01 else None

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


class _DieAt(Callback):
    """Raises at one checkpoint, after it is written and before later callbacks run."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_checkpoint(self, trainer, step, ckpt_path):
        if step == self.step:
            raise RuntimeError("simulated crash inside checkpoint callbacks")


def test_a_crash_inside_checkpoint_callbacks_is_replayed_on_resume(corpus, tmp_path):
    def cfg(out, resume=False):
        return TrainConfig(
            corpus=str(corpus),
            out=str(out),
            steps=12,
            batch_size=4,
            seq_len=32,
            eval_every=0,
            mixture=Mixture(weights={"python": 1.0}),
            progress=False,
            resume=resume,
            checkpoints=CheckpointConfig(
                schedule=CheckpointSchedule(kind="every", every=4), fsync=False
            ),
        )

    ref = tmp_path / "ref"
    train(cfg(ref), callbacks=[_DieAt(None), ControllerCallback(_Halve(), when="checkpoint")])
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg(run), callbacks=[_DieAt(8), ControllerCallback(_Halve(), when="checkpoint")])
    state = read_trainer_state(run / "checkpoints" / "step_00000008")
    assert state["callbacks_done"] is False
    ctl = _Halve()
    callbacks = [_DieAt(None), ControllerCallback(ctl, when="checkpoint")]
    train(cfg(run, resume=True), callbacks=callbacks)
    assert _comparable(run) == _comparable(ref)
    assert ctl.calls == 4  # steps 0, 4, 8 (replayed) and 12
    final = read_trainer_state(list_checkpoints(run)[-1].path)
    assert final["mixture"] == read_trainer_state(list_checkpoints(ref)[-1].path)["mixture"]


class _InterruptAt(Callback):
    """Sends this process SIGINT from inside the loop, as Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer, step, record):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_checkpoints_and_the_resumed_run_matches(corpus, tmp_path):
    def cfg(out, resume=False):
        return TrainConfig(
            corpus=str(corpus),
            out=str(out),
            steps=10,
            batch_size=4,
            seq_len=32,
            eval_every=5,
            eval_windows=2,
            progress=False,
            resume=resume,
            checkpoints=CheckpointConfig(schedule=CheckpointSchedule(kind="steps", steps=[8])),
        )

    ref = tmp_path / "ref"
    train(cfg(ref), callbacks=[_InterruptAt(-1)])
    run = tmp_path / "run"
    result = train(cfg(run), callbacks=[_InterruptAt(3)])
    assert result.stop_reason == "signal:SIGINT" and result.interrupted
    # The flag is seen at the end of the step in flight, and that step is checkpointed.
    assert result.step == 4 and list_checkpoints(run)[-1].step == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert train(cfg(run, resume=True), callbacks=[_InterruptAt(-1)]).step == 10
    assert _comparable(run) == _comparable(ref)


def test_replayed_analyzers_replace_their_records(corpus, tmp_path):
    from babel_interp.training import AnalyzerCallback

    def count_step(trainer, step, out_dir):
        return {"tokens": trainer.total_tokens}

    def cfg(resume=False):
        return TrainConfig(
            corpus=str(corpus),
            out=str(tmp_path / "run"),
            steps=6,
            batch_size=4,
            seq_len=32,
            eval_every=0,
            progress=False,
            resume=resume,
            checkpoints=CheckpointConfig(schedule=CheckpointSchedule(kind="every", every=2)),
        )

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg(), callbacks=[AnalyzerCallback("count", count_step), _DieAt(4)])
    train(cfg(resume=True), callbacks=[AnalyzerCallback("count", count_step), _DieAt(None)])
    lines = (tmp_path / "run" / "analysis" / "count" / "results.jsonl").read_text("utf-8")
    records = [json.loads(x) for x in lines.splitlines()]
    assert [(r["step"], r["event"], r["tokens"]) for r in records] == [
        (s, "checkpoint", s * 4 * 32) for s in (0, 2, 4, 6)
    ]


def test_a_truncated_latest_checkpoint_resumes_from_the_previous_one(corpus, tmp_path, reference):
    # A finished run whose last checkpoint was cut short on disk (a full disk, a copy cut off).
    run = tmp_path / "run"
    assert main(_args(corpus, run)) == 0
    ckpts = list_checkpoints(run)
    last, previous = ckpts[-1], ckpts[-2]
    weights = last.path / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.warns(UserWarning, match=rf"skipping checkpoint .*{last.name}.*model.safetensors"):
        assert main([*_args(corpus, run), "--resume"]) == 0
    # It continued from the newest checkpoint that verifies and logged what the whole run logs.
    assert _comparable(run) == reference
    resume = [r for r in read_metrics(run) if r.get("event") == "resume"][-1]
    assert resume["step"] == previous.step
    assert resume["skipped_checkpoints"][0]["checkpoint"] == str(last.path)
    assert "truncated" in resume["skipped_checkpoints"][0]["why"]
    # The damaged checkpoint was kept aside, not deleted, and rewritten whole.
    kept = run / "checkpoints" / f"{last.name}.corrupt-0"
    assert kept.is_dir() and (kept / "model.safetensors").stat().st_size < weights.stat().st_size
    assert list_checkpoints(run)[-1].step == last.step


def test_resume_refuses_a_run_whose_checkpoints_all_fail_verification(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = dict(
        corpus=str(corpus),
        out=str(run),
        steps=2,
        batch_size=4,
        seq_len=32,
        eval_every=0,
        progress=False,
        checkpoints=CheckpointConfig(fsync=False),
    )
    train(TrainConfig(**cfg))
    ckpts = list_checkpoints(run)
    for c in ckpts:
        (c.path / "trainer_state.json").write_text("{not json", encoding="utf-8")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of its checkpoints"):
        Trainer(TrainConfig(**{**cfg, "resume": True}))
    # Nothing was deleted: every checkpoint is still there, set aside.
    assert len(list((run / "checkpoints").glob("step_*.corrupt-0"))) == len(ckpts) >= 2
