"""Resampled corpora and the mixture evaluation harness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from babel_interp.corpus.shards import CorpusReader, ShardWriter, write_manifest
from babel_interp.optimizer.resample import write_resampled_corpus


def _handmade_corpus(root, tokenizer, docs_per_lang=None, seed=0):
    """A corpus written with the real shard writer; document lengths vary from 5 to 40 tokens."""
    docs_per_lang = docs_per_lang or {"python": 30, "php": 60, "go": 10}
    langs = list(docs_per_lang)
    tokenizer.save_pretrained(root / "tokenizer")
    rng = np.random.default_rng(seed)
    eos = tokenizer.eos_token_id
    splits = {}
    for split, scale in (("train", 1.0), ("val", 0.2)):
        w = ShardWriter(root, split, langs, vocab_size=len(tokenizer), eos_id=eos)
        for li, lang in enumerate(langs):
            for _ in range(max(1, int(docs_per_lang[lang] * scale))):
                n = int(rng.integers(5, 41))
                # Token ids encode the language so a test can check labels survived resampling.
                ids = np.full(n, 10 + li)
                w.add(lang, ids, n_bytes=3 * n)
        splits[split] = w.close()
    write_manifest(
        root,
        langs,
        splits,
        {"vocab_size": len(tokenizer), "eos_id": eos, "hash": "test"},
        source="handmade",
    )
    return root


def test_resampled_corpus_follows_the_mixture(tmp_path, small_tokenizer):
    src = _handmade_corpus(tmp_path / "src", small_tokenizer)
    reader = CorpusReader(src)
    sizes = {
        lang: reader.manifest["splits"]["train"]["languages"][lang]["tokens"]
        for lang in reader.languages
    }
    total = 2000
    report = write_resampled_corpus(
        src, {"python": 0.5, "php": 0.2, "go": 0.3}, total, tmp_path / "out", seed=3
    )
    out = CorpusReader(tmp_path / "out")
    assert out.languages == reader.languages
    train = out.split("train")
    for li, lang in enumerate(out.languages):
        got = out.manifest["splits"]["train"]["languages"][lang]["tokens"]
        assert got == report.written[lang]
        # Whole documents, each at most 41 tokens: within one document of the request.
        assert abs(got - report.requested[lang]) <= 41
        lo, hi = train.language_range(lang)
        toks = np.asarray(train.tokens[lo:hi])
        labels = np.asarray(train.lang_ids[lo:hi])
        assert (labels == li).all()
        assert set(np.unique(toks)) <= {10 + li, small_tokenizer.eos_token_id}
    # Go has fewer tokens than its share: it is repeated (more than one epoch).
    assert report.epochs["go"] > 1.0 and sizes["go"] < report.requested["go"]
    # The validation split is the source's, unchanged.
    np.testing.assert_array_equal(out.split("val").tokens, reader.split("val").tokens)
    assert out.manifest["resampled_from"]["total_tokens"] == total
    assert out.manifest["source"] == "handmade"
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "out" / "resample_report.json").read_text())["written"]
    # Same seed, same corpus; the destination is never overwritten by accident.
    with pytest.raises(FileExistsError):
        write_resampled_corpus(src, {"python": 1.0}, 100, tmp_path / "out")
    again = write_resampled_corpus(
        src,
        {"python": 0.5, "php": 0.2, "go": 0.3},
        total,
        tmp_path / "out",
        seed=3,
        overwrite=True,
    )
    assert again.written == report.written


def test_resample_rejects_bad_input_and_leaves_no_debris(tmp_path, small_tokenizer):
    src = _handmade_corpus(tmp_path / "src", small_tokenizer)
    with pytest.raises(ValueError, match="not in corpus"):
        write_resampled_corpus(src, {"rust": 1.0}, 100, tmp_path / "out")
    with pytest.raises(ValueError, match="total_tokens"):
        write_resampled_corpus(src, {"python": 1.0}, 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]
