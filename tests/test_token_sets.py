"""Token sets: prefix-closed, tokenizer-aware, shared tokens removed and reported."""

from __future__ import annotations

import json

import pytest

from babel_interp.analysis.working_language.token_sets import (
    DroppedPair,
    TokenVocabulary,
    build_token_sets,
)
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts


@pytest.fixture(scope="module")
def code_tokenizer(tmp_path_factory):
    """The project's byte-level BPE, trained on synthetic Python and PHP documents."""
    cfg = SyntheticConfig(languages=("python", "php"), docs_per_language=100, seed=3)
    texts = [d.text for d in generate_documents(cfg)]
    return train_on_texts(texts, TokenizerConfig(vocab_size=2000), tmp_path_factory.mktemp("tok"))


def _oracle(tokenizer, identifier: str, min_chars: int = 1) -> set[int]:
    """Every token whose decoded text, minus one leading space, begins ``identifier``."""
    special = set(tokenizer.all_special_ids)
    out = set()
    for i in range(len(tokenizer)):
        if i in special:
            continue
        text = tokenizer.decode([i])
        text = text[1:] if text.startswith(" ") else text
        if len(text) >= min_chars and identifier.startswith(text):
            out.add(i)
    return out


@pytest.mark.parametrize("min_chars", [1, 3])
def test_sets_equal_a_brute_force_oracle(code_tokenizer, min_chars):
    report = build_token_sets(
        code_tokenizer, [("length", "len", "strlen"), ("upper", "upper", "strtoupper")], min_chars
    )
    for (primary, target), s in report.pairs.items():
        p_all, t_all = (
            _oracle(code_tokenizer, primary, min_chars),
            _oracle(code_tokenizer, target, min_chars),
        )
        assert set(s.primary_ids) == p_all - t_all
        assert set(s.target_ids) == t_all - p_all
        assert set(s.shared_ids) == p_all & t_all
        for i in s.primary_ids + s.target_ids:
            assert s.token_chars[i] >= min_chars


def test_sets_hold_both_spellings_and_the_whole_identifier(code_tokenizer):
    report = build_token_sets(code_tokenizer, [("length", "len", "strlen")])
    s = report.get("len", "strlen")
    texts = {code_tokenizer.decode([i]) for i in s.target_ids}
    # Synthetic PHP writes "= strlen(" (space-prefixed piece) and "(strlen(" (bare piece).
    assert any(t.startswith(" ") for t in texts)
    assert any(not t.startswith(" ") for t in texts)
    assert "s" in texts or " s" in texts
    assert not any(t.strip().startswith("l") for t in texts)


def test_shared_tokens_removed_and_collapsed_pair_dropped(code_tokenizer):
    report = build_token_sets(
        code_tokenizer,
        [
            ("print", "print", "printf"),
            ("upper", "upper", "strtoupper"),
            ("same", "x", "x"),
            ("mixed", "strpos", "strtoupper"),
        ],
    )
    assert report.get("print", "printf") is None
    reasons = {(d.primary, d.target): d.reason for d in report.dropped}
    assert "primary set of 'print' is empty after removing" in reasons[("print", "printf")]
    dropped = next(d for d in report.dropped if d.target == "printf")
    assert dropped.shared_ids and all(
        "printf".startswith(code_tokenizer.decode([i]).lstrip(" ")) for i in dropped.shared_ids
    )
    # A dropped pair survives a JSON round trip (results save them in summary.json).
    assert DroppedPair.from_dict(json.loads(json.dumps(dropped.to_dict()))) == dropped
    assert "equal" in reasons[("x", "x")]
    # "upper" vs "strtoupper": prefixes of different letters, nothing shared.
    assert report.get("upper", "strtoupper").shared_ids == ()
    # Both keep their own pieces; "s", "st", "str" (and spaced forms) go to neither.
    mixed = report.get("strpos", "strtoupper")
    shared = {code_tokenizer.decode([i]).lstrip(" ") for i in mixed.shared_ids}
    assert {"s", "st", "str"} <= shared
    assert not shared & {code_tokenizer.decode([i]).lstrip(" ") for i in mixed.target_ids}
    df = report.to_dataframe()
    assert set(df["side"]) >= {"primary", "target", "shared", "dropped"}
    assert (df.loc[df["side"] == "dropped", "reason"] != "").all()


def test_min_chars_can_empty_a_set(code_tokenizer):
    report = build_token_sets(code_tokenizer, [("q", "qz", "zq")], min_chars=2)
    assert not report.pairs  # the vocabulary has no "qz"/"zq" merges
    assert "no vocabulary token begins" in report.dropped[0].reason


def test_special_tokens_and_out_of_range_ids_are_excluded(code_tokenizer):
    vocab = TokenVocabulary(code_tokenizer, vocab_size=300)
    assert vocab.size == 300
    ids = vocab.prefix_tokens("strlen")
    assert all(i < 300 for i in ids)
    assert code_tokenizer.eos_token_id not in vocab.prefix_tokens("<|endoftext|>")
    assert vocab.text(10_000) == ""


def test_sentencepiece_space_marker(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "</s>"])
    tok.train_from_iterator(["n = strlen(s) + strlen(t)\n"] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")
    vocab = TokenVocabulary(fast)
    marked = [e for e in vocab.entries if e.surface and tok.id_to_token(e.token_id)[0] == "▁"]
    assert marked and all(e.leading_space for e in marked)
    ids = vocab.prefix_tokens("strlen")
    raw = {tok.id_to_token(i) for i in ids}
    assert any(r.startswith("▁") for r in raw) and any(not r.startswith("▁") for r in raw)


def test_bad_arguments(code_tokenizer):
    with pytest.raises(ValueError, match="min_chars"):
        build_token_sets(code_tokenizer, [("a", "len", "strlen")], min_chars=0)
    with pytest.raises(ValueError, match="tokenizer is required"):
        TokenVocabulary(None)
    vocab = TokenVocabulary(code_tokenizer)
    with pytest.raises(ValueError, match="non-empty"):
        vocab.prefix_tokens("")
    s = build_token_sets(vocab, [("length", "len", "strlen")]).get("len", "strlen")
    with pytest.raises(ValueError, match="side"):
        s.short_ids("neither", 2)
    assert set(s.short_ids("target", 2)) == {i for i in s.target_ids if s.token_chars[i] <= 2}
