"""The shard format: writer and reader round trip, labels, O(1) windows, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from babel_interp.corpus.shards import (
    MANIFEST,
    CorpusFormatError,
    CorpusReader,
    ShardWriter,
    token_dtype,
    write_manifest,
)

LANGS = ["python", "php", "go"]


def _write_corpus(root, docs, vocab_size=1000, eos_id=0):
    """docs: list of (split, language, ids, n_bytes), in arrival order."""
    writers = {s: ShardWriter(root, s, LANGS, vocab_size, eos_id) for s in ("train", "val")}
    for split, lang, ids, n in docs:
        writers[split].add(lang, ids, n)
    entries = {s: w.close() for s, w in writers.items()}
    write_manifest(
        root,
        LANGS,
        entries,
        {"vocab_size": vocab_size, "eos_id": eos_id, "hash": "h"},
        {lang: {"documents": 0} for lang in LANGS},
    )
    return entries


def _docs():
    # Languages arrive interleaved; the writer groups them in manifest order.
    return [
        ("train", "php", [5, 6, 7], 11),
        ("train", "python", [1, 2], 6),
        ("val", "python", [3], 2),
        ("train", "python", [4, 4, 4, 4], 9),
        ("train", "php", [8], 3),
        ("val", "php", [9, 9], 5),
    ]


def test_round_trip_groups_languages_and_labels_every_token(tmp_path):
    _write_corpus(tmp_path, _docs())
    r = CorpusReader(tmp_path)
    assert r.languages == LANGS and r.vocab_size == 1000 and r.eos_id == 0
    train = r.split("train")
    # python docs first (manifest order), each followed by EOS, then php; go is empty.
    assert train.tokens.tolist() == [1, 2, 0, 4, 4, 4, 4, 0, 5, 6, 7, 0, 8, 0]
    assert train.lang_ids.tolist() == [0] * 8 + [1] * 6
    assert train.language_range("python") == (0, 8)
    assert train.language_range("php") == (8, 14)
    assert train.language_range("go") == (14, 14)
    assert list(train.documents("php")) == [(8, 12), (12, 14)]
    assert list(train.documents()) == [(0, 3), (3, 8), (8, 12), (12, 14)]
    assert list(train.documents("go")) == []
    val = r.split("val")
    assert val.tokens.tolist() == [3, 0, 9, 9, 0]
    assert val.lang_ids.tolist() == [0, 0, 1, 1, 1]
    m = r.manifest["splits"]["train"]["languages"]
    assert m["python"] == {"start": 0, "end": 8, "docs": 2, "tokens": 8, "bytes": 15}
    assert r.bytes_per_token("php", "train") == pytest.approx(14 / 6)
    assert r.lang_id("php") == 1


def test_window_is_a_slice_of_a_memory_map(tmp_path):
    _write_corpus(tmp_path, _docs())
    train = CorpusReader(tmp_path).split("train")
    assert isinstance(train.tokens, np.memmap) and isinstance(train.lang_ids, np.memmap)
    ids, langs = train.window(2, 5)
    assert ids.dtype == np.int64 and langs.dtype == np.uint8
    assert ids.tolist() == [0, 4, 4, 4, 4] and langs.tolist() == [0] * 5
    with pytest.raises(IndexError, match="outside split 'train'"):
        train.window(10, 5)
    with pytest.raises(IndexError):
        train.window(-1, 2)


def test_token_dtype_by_vocabulary(tmp_path):
    assert token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == np.uint32
    with pytest.raises(ValueError, match="vocab_size must be positive"):
        token_dtype(0)
    _write_corpus(tmp_path, [("train", "go", [70_000, 1], 4)], vocab_size=100_000)
    r = CorpusReader(tmp_path)
    assert r.dtype == np.uint32
    assert r.split("train").tokens.tolist() == [70_000, 1, 0]


def test_empty_split_reads_as_zero_tokens(tmp_path):
    _write_corpus(tmp_path, [("train", "go", [3], 1)])
    val = CorpusReader(tmp_path).split("val")
    assert val.n_tokens == 0 and list(val.documents()) == []
    with pytest.raises(ValueError, match="no tokens in split 'val'"):
        CorpusReader(tmp_path).bytes_per_token("go", "val")


def test_writer_refusals(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        ShardWriter(tmp_path, "test", LANGS, 100, 0)
    with pytest.raises(ValueError, match="languages must not be empty"):
        ShardWriter(tmp_path, "train", [], 100, 0)
    w = ShardWriter(tmp_path, "train", LANGS, 100, 0)
    with pytest.raises(ValueError, match="'rust' is not in this corpus"):
        w.add("rust", [1], 1)
    w.close()
    with pytest.raises(RuntimeError, match="already closed"):
        w.close()


def test_reader_refuses_incomplete_or_inconsistent_corpora(tmp_path):
    with pytest.raises(CorpusFormatError, match="manifest.json is missing"):
        CorpusReader(tmp_path)
    _write_corpus(tmp_path, _docs())
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["format_version"] = 99
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CorpusFormatError, match="format_version 99"):
        CorpusReader(tmp_path)
    manifest["format_version"] = 1
    manifest["splits"]["train"]["n_tokens"] = 3
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CorpusFormatError, match="the manifest says 3"):
        CorpusReader(tmp_path).split("train")
    r = CorpusReader(tmp_path)
    with pytest.raises(KeyError, match="no split 'test'"):
        r.split("test")
    with pytest.raises(KeyError, match="'rust' is not in corpus"):
        r.lang_id("rust")
    with pytest.raises(KeyError, match="'rust' is not in split"):
        r.split("val").language_range("rust")


def test_manifest_requires_tokenizer_fields(tmp_path):
    with pytest.raises(ValueError, match="lacks 'hash'"):
        write_manifest(tmp_path, LANGS, {}, {"vocab_size": 10, "eos_id": 0})
    assert not (tmp_path / MANIFEST).exists()
