"""Run and Study: the one place that knows the run and study directory layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.runs import (
    Run,
    Study,
    portable_path,
    recorded_corpus_path,
    run_corpus_dir,
    study_corpus_dir,
    study_corpus_fields,
)
from babel_interp.training import CheckpointConfig, CheckpointSchedule, TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    corpus = make_corpus(root / "corpus", docs=40)
    out = root / "run"
    _train(corpus, out)
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


def _train(corpus, out, steps=3, **kw):
    return train(
        TrainConfig(
            corpus=str(corpus),
            out=str(out),
            steps=steps,
            batch_size=4,
            seq_len=32,
            progress=False,
            mixture={"weights": {"php": 1.0}},
            checkpoints=CheckpointConfig(
                schedule=CheckpointSchedule(kind="steps", steps=[1, 3]), fsync=False
            ),
            **kw,
        )
    )


def _write_config(run_dir, conf):
    (Path(run_dir) / "run_config.json").write_text(json.dumps(conf))


def test_a_run_records_a_nearby_corpus_relative_to_itself(run):
    conf = run.config
    assert conf["corpus"] == "../corpus" and conf["train"]["corpus"] == "../corpus"
    assert conf["corpus_absolute"] == str(run.corpus_dir)
    assert run.corpus_dir == (run.path.parent / "corpus").resolve()
    # The train section comes back usable from any working directory.
    assert run.train_config["corpus"] == str(run.corpus_dir)


def test_a_relative_corpus_is_relative_to_the_run_never_the_working_directory(
    run, tmp_path, monkeypatch
):
    moved = tmp_path / "study"
    shutil.copytree(run.corpus_dir, moved / "corpus")
    shutil.copytree(run.path, moved / "run")
    conf = run.config
    conf.pop("corpus_absolute")
    conf["corpus"] = "../corpus"
    _write_config(moved / "run", conf)
    # A "../corpus" beside the working directory is not the run's.
    (tmp_path / "cwd").mkdir()
    (tmp_path / "corpus").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert Run(moved / "run").corpus_dir == (moved / "corpus").resolve()
    conf["corpus"] = "nowhere"
    _write_config(moved / "run", conf)
    with pytest.raises(FileNotFoundError, match=r"corpus of run .* \(nowhere\) does not exist"):
        _ = Run(moved / "run").corpus_dir
    # A run moved away from its corpus finds it where it was trained.
    conf["corpus_absolute"] = str(run.corpus_dir)
    _write_config(moved / "run", conf)
    assert Run(moved / "run").corpus_dir == run.corpus_dir


def test_an_old_run_config_with_an_absolute_corpus_still_works(run, tmp_path):
    copy = shutil.copytree(run.path, tmp_path / "elsewhere" / "deeper" / "run")
    conf = run.config
    conf.pop("corpus_absolute")
    conf["corpus"] = conf["train"]["corpus"] = str(run.corpus_dir)
    _write_config(copy, conf)
    assert Run(copy).corpus_dir == run.corpus_dir
    assert Run(copy).train_config["corpus"] == str(run.corpus_dir)
    assert Run(copy).corpus().languages == ["python", "php"]


def test_a_corpus_far_from_the_run_is_recorded_absolute(tmp_path):
    corpus = tmp_path / "data" / "corpus"
    study = tmp_path / "study"
    # Inside the run, beside it, and up to three levels above it: relative.
    assert recorded_corpus_path(study / "run" / "corpus", study / "run") == "corpus"
    assert recorded_corpus_path(study / "corpus", study / "seed_0" / "primary") == "../../corpus"
    deep = study / "seed_0" / "php" / "continual"
    assert recorded_corpus_path(study / "corpus", deep) == "../../../corpus"
    # Four levels up, or reachable only through the filesystem root: absolute.
    assert recorded_corpus_path(corpus, tmp_path / "a" / "b" / "c" / "run") == str(corpus)
    assert recorded_corpus_path("/corpus_at_root", "/r/run") == str(Path("/corpus_at_root"))
    assert portable_path(corpus, study) == str(corpus)
    assert portable_path(study / "corpus", study) == "corpus"


def test_a_run_trained_on_a_corpus_far_away_records_it_absolute(run, tmp_path):
    out = tmp_path / "a" / "b" / "c" / "d" / "run"
    _train(run.corpus_dir, out, steps=1)
    conf = Run(out).config
    assert conf["corpus"] == str(run.corpus_dir) == conf["train"]["corpus"]
    assert Run(out).corpus_dir == run.corpus_dir


def test_a_moved_study_keeps_its_corpus_verifies_and_resumes(tmp_path, monkeypatch):
    """A study-like tree (STUDY/corpus, STUDY/seed_0/php/continual, experiment.json) moved as
    a whole: the run finds the moved corpus, reads its tokens, verifies and resumes."""
    torch.set_num_threads(1)
    study = tmp_path / "here" / "study"
    corpus = make_corpus(study / "corpus", docs=40)
    run_dir = Study(study).continual(0, "php")
    _train(corpus, run_dir)
    meta = {"experiment": "babel_tower", **study_corpus_fields(study, corpus)}
    Study(study).meta.write_text(json.dumps(meta))
    assert meta["corpus_relative"] == "corpus" and meta["corpus"] == str(corpus.resolve())
    assert Run(run_dir).config["corpus"] == "../../../corpus"

    moved = tmp_path / "there" / "moved_study"
    moved.parent.mkdir()
    shutil.move(str(study), str(moved))
    assert not corpus.exists()
    monkeypatch.chdir(tmp_path)  # nothing may resolve against the working directory
    run = Study(moved).run(0, "php", "continual")
    assert run.corpus_dir == (moved / "corpus").resolve()
    assert run.validation_windows("php", n_windows=2, seq_len=16).shape == (2, 16)
    assert Study(moved).corpus_dir() == (moved / "corpus").resolve()
    assert main(["verify", str(moved), "--quiet"]) == 0
    # Resume from the saved configuration alone (its corpus is the moved one).
    code = main(["train", "--out", str(run.path), "--resume", "--steps", "5", "--no-progress"])
    assert code == 0 and run.latest().step == 5


def test_the_study_corpus_is_read_from_experiment_json(tmp_path):
    study = tmp_path / "study"
    (study / "corpus").mkdir(parents=True)
    given = tmp_path / "given_corpus"
    given.mkdir()
    # Recorded beneath the study: the relative path wins over a stale absolute one.
    meta = {"corpus": str(tmp_path / "gone"), "corpus_relative": "corpus"}
    assert study_corpus_dir(study, meta) == (study / "corpus").resolve()
    # A corpus given from elsewhere is recorded (and read) absolute.
    fields = study_corpus_fields(study, given)
    assert fields == {"corpus": str(given.resolve())}
    assert study_corpus_dir(study, fields) == given.resolve()
    # Older studies record only the absolute path, or one relative to the working directory
    # they ran in (their own STUDY/corpus then); none at all means STUDY/corpus.
    assert study_corpus_dir(study, {"corpus": str(given)}) == given
    assert study_corpus_dir(study, {"corpus": "runs/demo/corpus"}) == study / "corpus"
    assert study_corpus_dir(study, {}) == study / "corpus"
    # A corpus that is gone is named as recorded (callers report it).
    bare = tmp_path / "bare_study"
    assert study_corpus_dir(bare, {"corpus": str(tmp_path / "gone")}) == tmp_path / "gone"
    assert Study(study).corpus_dir() == study / "corpus"  # no experiment.json yet
    Study(study).meta.write_text(json.dumps(["not", "an", "object"]))
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        Study(study).corpus_dir()


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
