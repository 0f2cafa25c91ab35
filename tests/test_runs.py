"""Run and Study: the one place that knows the run and study directory layouts."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.runs import Run, Study, run_corpus_dir
from babel_interp.training import CheckpointConfig, CheckpointSchedule, TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    corpus = make_corpus(root / "corpus", docs=40)
    out = root / "run"
    cfg = TrainConfig(
        corpus=str(corpus),
        out=str(out),
        steps=3,
        batch_size=4,
        seq_len=32,
        progress=False,
        mixture={"weights": {"php": 1.0}},
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="steps", steps=[1, 3]), fsync=False
        ),
    )
    train(cfg)
    return Run(out)


def test_a_run_knows_its_corpus_checkpoints_and_languages(run):
    assert Run.of(run) is run and Run.of(str(run.path)).path == run.path
    assert run.corpus_dir == run_corpus_dir(run.path)
    assert run.corpus().languages == ["python", "php"]
    assert run.target_languages() == ["php"]
    assert [c.step for c in run.checkpoints()] == [0, 1, 3]
    assert run.latest().step == 3 and run.checkpoint(1).step == 1
    with pytest.raises(ValueError, match=r"no checkpoint at step\(s\) \[2\]"):
        run.checkpoints([2])
    assert any("loss" in r for r in run.metrics())


def test_models_load_one_at_a_time_on_the_resolved_device(run):
    seen = []
    for ckpt, model, mcfg in run.iter_models([1, 3], device="cpu"):
        assert next(model.parameters()).device == torch.device("cpu")
        seen.append((ckpt.step, mcfg.n_ctx))
    assert [s for s, _ in seen] == [1, 3]
    latest, _ = run.load_model(device="auto")
    again, _ = run.load_model(3, device="cpu")
    x = torch.tensor([[1, 2, 3]])
    assert torch.equal(latest(x).cpu(), again(x))


def test_validation_windows_never_exceed_the_context(run):
    w = run.validation_windows("python", n_windows=3, seq_len=64, n_ctx=16)
    assert w.shape == (3, 16)
    with pytest.raises(KeyError, match="'cobol' is not in split 'val'"):
        run.validation_windows("cobol", 2, 16)


def test_a_relative_corpus_is_found_from_the_run_when_the_study_moves(run, tmp_path):
    moved = tmp_path / "study"
    shutil.copytree(run.corpus_dir, moved / "corpus")
    shutil.copytree(run.path, moved / "run")
    conf = json.loads((moved / "run" / "run_config.json").read_text())
    conf["corpus"] = "../corpus"
    (moved / "run" / "run_config.json").write_text(json.dumps(conf))
    assert Run(moved / "run").corpus_dir == moved / "run" / "../corpus"
    conf["corpus"] = "nowhere"
    (moved / "run" / "run_config.json").write_text(json.dumps(conf))
    with pytest.raises(FileNotFoundError, match=r"corpus of run .* \(nowhere\) does not exist"):
        _ = Run(moved / "run").corpus_dir


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_config.json is missing"):
        _ = Run(tmp_path).config
    with pytest.raises(FileNotFoundError, match="has no checkpoints/ directory"):
        Run(tmp_path).checkpoints()


def test_study_layout_and_discovery(tmp_path):
    study = Study(tmp_path)
    assert study.primary(0) == tmp_path / "seed_0" / "primary"
    assert study.continual(1, "php") == tmp_path / "seed_1" / "php" / "continual"
    assert study.scratch(1, "php") == tmp_path / "seed_1" / "php" / "scratch"
    assert Study.key(1, "php", "scratch") == "seed_1/php/scratch"
    with pytest.raises(ValueError, match="kind must be one of"):
        study.run_dir(0, "php", "primary")
    for seed, lang, kind in [(0, "php", "continual"), (0, "go", "scratch"), (2, "php", "scratch")]:
        study.run_dir(seed, lang, kind).mkdir(parents=True)
    study.primary(0).mkdir()
    (tmp_path / "seed_x").mkdir()
    assert study.seeds() == [0, 2]
    assert study.languages(0) == ["go", "php"]
    assert [(s, lang, k) for s, lang, k, _ in study.runs()] == [
        (0, "go", "scratch"),
        (0, "php", "continual"),
        (2, "php", "scratch"),
    ]
    assert [r.path for *_, r in study.runs("continual")] == [study.continual(0, "php")]
