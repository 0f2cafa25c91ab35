"""Checkpoint schedules, atomic writes, stale-directory cleanup, retention and contents."""

from __future__ import annotations

import json

import pytest
import torch

from babel_interp.model import build_model, get_preset, load_model
from babel_interp.runs import list_checkpoints
from babel_interp.training.checkpoints import (
    CheckpointPayload,
    capture_rng,
    clean_stale,
    latest_checkpoint,
    prune_checkpoints,
    read_trainer_state,
    resolve_checkpoint,
    restore_rng,
    update_trainer_state,
    write_checkpoint,
)
from babel_interp.training.schedule import CheckpointSchedule, LRSchedule


@pytest.fixture(autouse=True)
def _one_thread():
    # One intra-op thread: a loaded 2-core machine thrashes OpenMP barriers (10x slower steps).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_log_schedule_is_dense_early_and_ends_at_the_last_step():
    assert CheckpointSchedule().steps_for(100) == [0, 1, 2, 4, 8, 16, 32, 64, 100]
    steps = CheckpointSchedule(kind="log", n=6).steps_for(1000)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 1000
    gaps = [b - a for a, b in zip(steps[1:], steps[2:], strict=False)]
    assert gaps == sorted(gaps)  # spacing grows: log-spaced
    assert CheckpointSchedule(include_start=False).steps_for(5) == [1, 2, 4, 5]


def test_every_and_explicit_schedules():
    assert CheckpointSchedule(kind="every", every=30).steps_for(100) == [0, 30, 60, 90, 100]
    s = CheckpointSchedule(kind="steps", steps=[5, 50, 500], include_start=False)
    assert s.steps_for(100) == [5, 50, 100]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("log", CheckpointSchedule()),
        ("log:20", CheckpointSchedule(n=20)),
        ("every:500", CheckpointSchedule(kind="every", every=500)),
        ("steps:0,10,100", CheckpointSchedule(kind="steps", steps=[0, 10, 100])),
    ],
)
def test_schedule_parse(spec, expected):
    assert CheckpointSchedule.parse(spec) == expected
    assert CheckpointSchedule.from_dict(expected.to_dict()) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [("every:0", "every must be an int > 0"), ("weekly", "expected"), ("every:x", "expected")],
)
def test_bad_schedule_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        CheckpointSchedule.parse(spec)


def test_lr_schedules():
    cos = LRSchedule(kind="cosine", lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert cos.lr_at(5, 100) == pytest.approx(0.5)
    assert cos.lr_at(10, 100) == pytest.approx(1.0)
    assert cos.lr_at(55, 100) == pytest.approx(0.55)
    assert cos.lr_at(100, 100) == pytest.approx(0.1)
    const = LRSchedule(kind="constant", lr=2.0, warmup_steps=0)
    assert {const.lr_at(s, 50) for s in (1, 25, 50)} == {2.0}
    wsd = LRSchedule(kind="wsd", lr=1.0, warmup_steps=10, min_lr_ratio=0.0, decay_fraction=0.2)
    assert wsd.lr_at(80, 100) == pytest.approx(1.0)
    assert wsd.lr_at(90, 100) == pytest.approx(0.5)
    assert wsd.lr_at(100, 100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="LRSchedule.kind"):
        LRSchedule(kind="linear")
    with pytest.raises(ValueError, match="LRSchedule.lr"):
        LRSchedule(lr=0)


@pytest.fixture
def model(small_tokenizer):
    cfg = get_preset("tiny").with_vocab(len(small_tokenizer))
    cfg.n_layers, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.n_ctx = 1, 32, 8, 64, 16
    return build_model(cfg, tokenizer=small_tokenizer), cfg


def _payload(step, tok_dir=None, **extra):
    state = {"step": step, "tokens_seen": {"python": 10 * step}, "total_tokens": 10 * step}
    state.update(extra)
    return CheckpointPayload(
        trainer_state=state,
        run_config={"corpus": "/nowhere"},
        optimizer_state={"state": {}, "param_groups": []},
        scheduler_state={"last_step": step},
        rng_state=capture_rng(),
        tokenizer_dir=tok_dir,
    )


def test_checkpoint_holds_everything_and_loads_as_a_model(tmp_path, model, small_tokenizer):
    m, cfg = model
    tok_dir = tmp_path / "tok"
    small_tokenizer.save_pretrained(tok_dir)
    path = write_checkpoint(tmp_path / "run", 3, m, _payload(3, tok_dir), model_cfg=cfg)
    assert path.name == "step_00000003"
    names = {p.name for p in path.iterdir()}
    assert {
        "model.safetensors",
        "model_config.json",
        "tokenizer",
        "optimizer.pt",
        "scheduler.json",
        "rng.pt",
        "trainer_state.json",
        "run_config.json",
    } <= names
    loaded, lcfg = load_model(path)
    assert lcfg == cfg and loaded.tokenizer is not None
    x = torch.randint(0, cfg.d_vocab, (2, 8))
    assert torch.equal(loaded(x, return_type="logits"), m(x, return_type="logits"))
    ck = list_checkpoints(tmp_path / "run")
    assert [c.step for c in ck] == [3] and ck[0].tokens_seen == {"python": 30}
    assert resolve_checkpoint(tmp_path / "run") == path
    assert resolve_checkpoint(path) == path


def test_a_write_that_fails_midway_leaves_no_checkpoint(tmp_path, model, monkeypatch):
    m, cfg = model
    run = tmp_path / "run"
    write_checkpoint(run, 1, m, _payload(1), model_cfg=cfg)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(run, 2, m, _payload(2), model_cfg=cfg)
    assert [c.step for c in list_checkpoints(run)] == [1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001"]


def test_stale_temporaries_are_invisible_and_cleaned(tmp_path, model):
    m, cfg = model
    run = tmp_path / "run"
    write_checkpoint(run, 4, m, _payload(4), model_cfg=cfg)
    # What a SIGKILL mid-write leaves: a temporary directory, complete-looking inside.
    stale = run / "checkpoints" / "step_00000008.tmp-99999"
    write_checkpoint(tmp_path / "other", 8, m, _payload(8), model_cfg=cfg).rename(stale)
    trash = run / "checkpoints" / ".trash-step_00000002-1"
    trash.mkdir()
    (trash / "trainer_state.json").write_text("{}", encoding="utf-8")
    assert [c.step for c in list_checkpoints(run)] == [4]
    assert latest_checkpoint(run).step == 4
    removed = clean_stale(run)
    assert sorted(p.name for p in removed) == sorted([stale.name, trash.name])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000004"]


def test_rewriting_a_step_replaces_it(tmp_path, model):
    m, cfg = model
    run = tmp_path / "run"
    write_checkpoint(run, 5, m, _payload(5, note="first"), model_cfg=cfg)
    write_checkpoint(run, 5, m, _payload(5, note="second"), model_cfg=cfg)
    assert read_trainer_state(run / "checkpoints" / "step_00000005")["note"] == "second"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000005"]


def test_retention_keeps_protected_and_newest(tmp_path, model):
    m, cfg = model
    run = tmp_path / "run"
    for s in (0, 1, 2, 4, 5, 6, 8):
        write_checkpoint(run, s, m, _payload(s), model_cfg=cfg, fsync=False)
    assert prune_checkpoints(run, None, ()) == []
    deleted = prune_checkpoints(run, keep_last=2, protected={0, 4})
    assert deleted == [1, 2, 5]
    assert [c.step for c in list_checkpoints(run)] == [0, 4, 6, 8]
    assert prune_checkpoints(run, keep_last=1, protected=()) == [0, 4, 6]
    assert [c.step for c in list_checkpoints(run)] == [8]


def test_update_trainer_state_is_a_whole_file_replace(tmp_path, model):
    m, cfg = model
    path = write_checkpoint(tmp_path / "run", 2, m, _payload(2, callbacks_done=False), cfg)
    update_trainer_state(path, callbacks_done=True, mixture={"weights": {"php": 1.0}})
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["callbacks_done"] is True and state["mixture"] == {"weights": {"php": 1.0}}
    assert state["step"] == 2
    assert not list(path.glob("*.tmp"))


def test_rng_states_round_trip():
    import random

    import numpy as np

    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
