"""The mixture sampler: pure function of (seed, step), language purity, counts, limits, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.corpus.shards import CorpusReader
from babel_interp.mixture import DataExhausted
from babel_interp.training.sampler import MixtureSampler, eval_windows

SEQ = 32


@pytest.fixture(autouse=True)
def _one_thread():
    # One intra-op thread: a loaded 2-core machine thrashes OpenMP barriers (10x slower steps).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php", "go"), docs=40)
    return CorpusReader(d)


def _sampler(corpus, mode="pure", seed=0):
    return MixtureSampler(corpus.split("train"), corpus.languages, SEQ, seed, mode)


def test_plan_is_a_pure_function_of_seed_and_step(corpus):
    w = {"python": 0.5, "php": 0.5}
    a = _sampler(corpus).plan(7, 16, w, {}, {})
    b = _sampler(corpus).plan(7, 16, w, {}, {})
    c = _sampler(corpus).plan(8, 16, w, {}, {})
    d = _sampler(corpus, seed=1).plan(7, 16, w, {}, {})
    assert a.rows == b.rows
    assert a.rows != c.rows and a.rows != d.rows


def test_pure_rows_stay_inside_one_language(corpus):
    s = _sampler(corpus)
    plan = s.plan(1, 64, {"python": 1, "php": 1, "go": 1}, {}, {})
    tokens, langs = s.load(plan)
    assert tokens.shape == langs.shape == (64, SEQ + 1)
    assert tokens.dtype == langs.dtype == torch.int64
    for row, labels in zip(plan.rows, langs, strict=True):
        assert len(row) == 1
        assert torch.all(labels == row[0].language)
    split = corpus.split("train")
    for i, row in enumerate(plan.rows):
        expect = np.asarray(split.tokens[row[0].start : row[0].start + SEQ + 1], dtype=np.int64)
        assert np.array_equal(tokens[i].numpy(), expect)
    assert sum(plan.tokens.values()) == 64 * SEQ


def test_language_shares_follow_the_weights(corpus):
    s = _sampler(corpus)
    counts = {"python": 0, "php": 0}
    for step in range(1, 41):
        plan = s.plan(step, 50, {"python": 0.8, "php": 0.2}, {}, {})
        for lang, n in plan.tokens.items():
            counts[lang] += n
    share = counts["python"] / (counts["python"] + counts["php"])
    # 2000 rows: the binomial standard error of the share is ~0.009.
    assert share == pytest.approx(0.8, abs=0.04)


def test_mixed_rows_mix_languages_and_count_by_label(corpus):
    s = _sampler(corpus, mode="mixed")
    plan = s.plan(3, 32, {"python": 1, "php": 1, "go": 1}, {}, {})
    tokens, langs = s.load(plan)
    assert tokens.shape == (32, SEQ + 1)
    assert sum(len(r) > 1 for r in plan.rows) > 0
    assert any(len(set(r.language for r in row)) > 1 for row in plan.rows)
    # Tokens seen count the predicted positions (1..SEQ) by their language label.
    labels = langs[:, 1:].reshape(-1)
    by_label = {lang: int((labels == i).sum()) for i, lang in enumerate(corpus.languages)}
    assert {k: v for k, v in by_label.items() if v} == plan.tokens
    # Each segment matches the split's own labels.
    train = corpus.split("train")
    for i, row in enumerate(plan.rows):
        for seg in row:
            assert np.all(train.lang_ids[seg.start : seg.start + seg.length] == seg.language)
            assert torch.all(langs[i, seg.at : seg.at + seg.length] == seg.language)


def test_token_limits_stop_a_language_mid_batch(corpus):
    s = _sampler(corpus)
    plan = s.plan(1, 20, {"python": 0.5, "php": 0.5}, {"python": 0}, {"python": 3 * SEQ})
    assert plan.tokens["python"] <= 3 * SEQ
    assert plan.tokens["php"] == 20 * SEQ - plan.tokens["python"]
    with pytest.raises(DataExhausted, match="token limit"):
        s.plan(2, 4, {"python": 1.0}, {"python": 3 * SEQ}, {"python": 3 * SEQ})


def test_rank_slices_read_the_same_rows_as_one_process(corpus):
    s = _sampler(corpus)
    plan = s.plan(5, 8, {"python": 1, "go": 1}, {}, {})
    full, full_l = s.load(plan)
    halves = [s.load(plan, slice(r * 4, (r + 1) * 4)) for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), full)
    assert torch.equal(torch.cat([h[1] for h in halves]), full_l)


def test_unknown_and_too_small_languages_are_clear_errors(corpus):
    s = _sampler(corpus)
    with pytest.raises(ValueError, match=r"\['rust'\] not in corpus"):
        s.plan(1, 2, {"rust": 1.0}, {}, {})
    big = MixtureSampler(corpus.split("train"), corpus.languages, 10**7, 0)
    with pytest.raises(ValueError, match="fewer than"):
        big.plan(1, 1, {"python": 1.0}, {}, {})
    with pytest.raises(ValueError, match="sequence mode"):
        MixtureSampler(corpus.split("train"), corpus.languages, SEQ, 0, "interleaved")


def test_eval_windows_are_fixed_spread_and_in_range(corpus):
    val = corpus.split("val")
    a = eval_windows(val, corpus.languages, SEQ, 5)
    b = eval_windows(val, corpus.languages, SEQ, 5)
    assert a == b
    assert [w.language for w in a] == corpus.languages
    for w in a:
        lo, hi = val.language_range(w.language)
        assert len(w.starts) == 5 and w.length == SEQ + 1
        assert w.starts[0] == lo and w.starts[-1] + w.length == hi
        assert w.starts == sorted(set(w.starts))
    everything = eval_windows(val, ["python"], SEQ, 0)[0]
    lo, hi = val.language_range("python")
    assert len(everything.starts) == (hi - lo) // (SEQ + 1)
    tiny = eval_windows(val, ["python"], 10**7, 3)[0]
    assert tiny.length == hi - lo and tiny.starts == [lo]
