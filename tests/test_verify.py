"""``babel-interp verify`` and the checks behind it: a corpus, a run and a study, each damage
named by file; token ids outside the model's vocabulary stop training with a clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.corpus.shards import CorpusFormatError, CorpusReader, verify_corpus
from babel_interp.runs import list_checkpoints
from babel_interp.training import CheckpointConfig, TrainConfig, Trainer, train
from babel_interp.training.verify import verify_path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php"), docs=30)


@pytest.fixture
def corpus_copy(corpus, tmp_path):
    return shutil.copytree(corpus, tmp_path / "corpus")


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    train(
        TrainConfig(
            corpus=str(corpus),
            out=str(out),
            steps=3,
            batch_size=4,
            seq_len=32,
            eval_every=0,
            progress=False,
            checkpoints=CheckpointConfig(fsync=False),
        )
    )
    return out


def test_a_whole_corpus_and_run_verify(corpus, run, capsys):
    assert verify_corpus(corpus).ok
    checks = verify_path(run)
    # The run itself, each checkpoint and its corpus.
    assert len(checks) == 1 + len(list_checkpoints(run)) + 1 and all(c.ok for c in checks)
    assert main(["verify", str(run)]) == 0
    assert "directories ok" in capsys.readouterr().out


def test_a_truncated_tokens_bin_is_named(corpus_copy, capsys):
    tokens = corpus_copy / "train" / "tokens.bin"
    with open(tokens, "r+b") as f:
        f.truncate(tokens.stat().st_size - 2)
    assert main(["verify", str(corpus_copy)]) == 1
    out = capsys.readouterr().out
    assert f"BAD   {tokens} is" in out and "the corpus is truncated or damaged" in out
    with pytest.raises(CorpusFormatError, match="tokens.bin is .* bytes; the manifest says"):
        CorpusReader(corpus_copy).split("train")


def test_token_ids_outside_the_vocabulary(corpus_copy, tmp_path):
    reader = CorpusReader(corpus_copy)
    tokens = np.memmap(corpus_copy / "train" / "tokens.bin", dtype=reader.dtype, mode="r+")
    tokens[5] = reader.vocab_size + 3
    tokens.flush()
    del tokens
    problems = verify_corpus(corpus_copy).describe()
    assert f"holds token id {reader.vocab_size + 3}, outside the vocabulary" in problems
    with pytest.raises(CorpusFormatError, match="outside the model's vocabulary"):
        Trainer(TrainConfig(corpus=str(corpus_copy), out=str(tmp_path / "r"), steps=1))


def test_mislabelled_tokens_and_bad_offsets_are_named(corpus_copy):
    langs = np.memmap(corpus_copy / "train" / "langs.bin", dtype=np.uint8, mode="r+")
    langs[0] = 1  # python's first token labelled php
    langs.flush()
    del langs
    docs = np.load(corpus_copy / "train" / "docs.npy")
    docs[-1] += 1
    np.save(corpus_copy / "train" / "docs.npy", docs)
    text = verify_corpus(corpus_copy).describe()
    assert "1 tokens of 'python''s range carry another language's label (first at 0)" in text
    assert "docs.npy does not span" in text


def test_an_invalid_manifest_names_the_file(corpus_copy):
    (corpus_copy / "manifest.json").write_text('{"format_version": 1,', encoding="utf-8")
    with pytest.raises(ValueError, match=r"corpus manifest file .*manifest.json is not valid JSON"):
        CorpusReader(corpus_copy)
    assert "manifest.json is not valid JSON" in verify_corpus(corpus_copy).describe()


def test_a_damaged_checkpoint_fails_the_run(run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    cfg = json.loads((copy / "run_config.json").read_text(encoding="utf-8"))
    assert cfg["corpus"]  # the copy still points at the module's corpus
    last = list_checkpoints(copy)[-1].path
    (last / "optimizer.pt").write_bytes(b"")
    assert main(["verify", str(copy), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"BAD   {last / 'optimizer.pt'} is 0 bytes" in out and "ok    " not in out


def test_verify_refuses_what_it_does_not_know(tmp_path):
    assert main(["verify", str(tmp_path)]) == 1
    assert main(["verify", str(tmp_path / "missing")]) == 1
