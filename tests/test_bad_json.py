"""Invalid JSON in any manifest, configuration or state file: one clear error naming the file,
never a bare ``JSONDecodeError``."""

from __future__ import annotations

import shutil

import pytest
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.corpus.shards import CorpusReader
from babel_interp.corpus.tokenizer import tokenizer_hash
from babel_interp.integrity import CHECKPOINT_MANIFEST
from babel_interp.mixture import load_mixture
from babel_interp.model import load_model
from babel_interp.runs import list_checkpoints, read_run_config
from babel_interp.training import CheckpointConfig, TrainConfig, train
from babel_interp.training.checkpoints import verify_checkpoint

BROKEN = '{"step": 1,'


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_json")
    corpus = make_corpus(root / "corpus", ("python", "php"), docs=30)
    run = root / "run"
    train(
        TrainConfig(
            corpus=str(corpus),
            out=str(run),
            steps=2,
            batch_size=4,
            seq_len=32,
            eval_every=0,
            progress=False,
            checkpoints=CheckpointConfig(fsync=False),
        )
    )
    return corpus, run


@pytest.fixture
def copy(trained, tmp_path):
    corpus, run = trained
    return shutil.copytree(corpus, tmp_path / "corpus"), shutil.copytree(run, tmp_path / "run")


def _last(run):
    return list_checkpoints(run)[-1].path


CASES = {
    "corpus manifest": (
        lambda c, r: c / "manifest.json",
        lambda c, r: CorpusReader(c),
    ),
    "tokenizer": (
        lambda c, r: c / "tokenizer" / "tokenizer.json",
        lambda c, r: tokenizer_hash(c / "tokenizer"),
    ),
    "run configuration": (
        lambda c, r: r / "run_config.json",
        lambda c, r: read_run_config(r),
    ),
    "model configuration": (
        lambda c, r: _last(r) / "model_config.json",
        lambda c, r: load_model(_last(r)),
    ),
    "trainer state": (
        lambda c, r: _last(r) / "trainer_state.json",
        lambda c, r: list_checkpoints(r),
    ),
}


@pytest.mark.parametrize("what", sorted(CASES))
def test_invalid_json_is_an_error_naming_the_file(copy, what):
    corpus, run = copy
    locate, read = CASES[what]
    path = locate(corpus, run)
    # The model configuration is also in the checkpoint's manifest: damage it after reading
    # the path, so the error is the manifest's (naming the file) or the parser's.
    path.write_text(BROKEN, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read(corpus, run)
    assert str(path) in str(err.value)
    assert (
        "not valid JSON" in str(err.value)
        or "does not match" in str(err.value)
        or ("bytes, its manifest says" in str(err.value))
    )


def test_a_checkpoint_manifest_that_does_not_parse_fails_verification(copy):
    _, run = copy
    (_last(run) / CHECKPOINT_MANIFEST).write_text(BROKEN, encoding="utf-8")
    assert "checkpoint_manifest.json is not valid JSON" in verify_checkpoint(_last(run)).describe()


def test_mixture_and_train_config_files(tmp_path, capsys):
    bad = tmp_path / "mix.json"
    bad.write_text(BROKEN, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"mixture file {bad} is not valid JSON"):
        load_mixture(bad)
    rc = main(["train", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert rc == 1 and f"{bad} is not valid JSON" in capsys.readouterr().err


def test_resume_with_a_damaged_run_configuration_names_it(copy, capsys):
    corpus, run = copy
    (run / "run_config.json").write_text(BROKEN, encoding="utf-8")
    assert main(["train", "--out", str(run), "--resume"]) == 1
    assert f"run configuration file {run / 'run_config.json'} is not valid JSON" in (
        capsys.readouterr().err
    )
