"""Token sets: prefix-closed, tokenizer-aware, shared tokens and the other language's identifiers
removed and reported."""

from __future__ import annotations

import json

import pytest

from babel_interp.analysis.working_language.token_sets import (
    DROP_REASONS,
    DroppedPair,
    TokenVocabulary,
    build_token_sets,
)
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts
from babel_interp.languages import builtin_pairs, get_language

PY_PHP = dict(primary_language="python", target_language="php")


def _identifiers(language: str) -> set[str]:
    """Every built-in spelling and keyword of ``language`` in the registry."""
    lang = get_language(language)
    return set(lang.builtins.values()) | set(lang.keywords)


def _all_pairs() -> list[tuple[str, str, str]]:
    return [(b.concept, b.primary, b.target) for b in builtin_pairs("python", "php")]


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


def _text(tokenizer, i: int) -> str:
    text = tokenizer.decode([i])
    return text[1:] if text.startswith(" ") else text


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("min_chars", [1, 3])
def test_sets_equal_a_brute_force_oracle(code_tokenizer, min_chars, drop):
    pairs = [("length", "len", "strlen"), ("upper", "upper", "strtoupper")]
    report = build_token_sets(code_tokenizer, pairs, min_chars, drop_cross_language=drop, **PY_PHP)
    for (primary, target), s in report.pairs.items():
        p_all, t_all = (
            _oracle(code_tokenizer, primary, min_chars),
            _oracle(code_tokenizer, target, min_chars),
        )
        p_want, t_want = p_all - t_all, t_all - p_all
        if drop:
            # One-character pieces and whole identifiers of the other language go.
            p_bad = _identifiers("php") | {"strlen", "strtoupper"}
            t_bad = _identifiers("python") | {"len", "upper"}
            p_want = {i for i in p_want if len(_text(code_tokenizer, i)) > 1}
            p_want = {i for i in p_want if _text(code_tokenizer, i) not in p_bad}
            t_want = {i for i in t_want if len(_text(code_tokenizer, i)) > 1}
            t_want = {i for i in t_want if _text(code_tokenizer, i) not in t_bad}
        assert set(s.primary_ids) == p_want
        assert set(s.target_ids) == t_want
        assert set(s.shared_ids) == p_all & t_all
        for i in s.primary_ids + s.target_ids:
            assert s.token_chars[i] >= max(min_chars, 2 if drop else 1)


def test_sets_hold_both_spellings_and_the_whole_identifier(code_tokenizer):
    report = build_token_sets(code_tokenizer, [("length", "len", "strlen")], **PY_PHP)
    s = report.get("len", "strlen")
    texts = {code_tokenizer.decode([i]) for i in s.target_ids}
    # Synthetic PHP writes "= strlen(" (space-prefixed piece) and "(strlen(" (bare piece).
    assert any(t.startswith(" ") for t in texts)
    assert any(not t.startswith(" ") for t in texts)
    assert " strlen" in texts
    assert not any(t.strip().startswith("l") for t in texts)
    # The earlier sets kept the one-letter piece and Python's "str".
    old = build_token_sets(code_tokenizer, [("length", "len", "strlen")], drop_cross_language=False)
    old_texts = {code_tokenizer.decode([i]) for i in old.get("len", "strlen").target_ids}
    assert "s" in old_texts or " s" in old_texts
    assert {"str", " str"} & old_texts and not {"s", " s", "str", " str"} & texts


def test_target_sets_hold_no_primary_identifier_and_vice_versa(code_tokenizer):
    report = build_token_sets(code_tokenizer, _all_pairs(), **PY_PHP)
    python, php = _identifiers("python"), _identifiers("php")
    assert "str" in python and "print" in php  # what the checks below are about
    strlen = report.get("len", "strlen")
    assert strlen is not None
    strlen_texts = {_text(code_tokenizer, i) for i in strlen.target_ids}
    assert strlen_texts and not strlen_texts & python
    assert not strlen_texts & {"s", "str", "len"}
    for s in report.pairs.values():
        target_texts = {_text(code_tokenizer, i) for i in s.target_ids}
        primary_texts = {_text(code_tokenizer, i) for i in s.primary_ids}
        assert not target_texts & python, (s.key, target_texts & python)
        assert not primary_texts & php, (s.key, primary_texts & php)
        assert all(len(t) >= 2 for t in target_texts | primary_texts)


def test_dropped_table_names_each_removal_with_its_reason(code_tokenizer):
    old = build_token_sets(code_tokenizer, _all_pairs(), drop_cross_language=False)
    new = build_token_sets(code_tokenizer, _all_pairs(), **PY_PHP)
    df = new.dropped_tokens_frame()
    assert set(df["reason"]) <= set(DROP_REASONS) and (df["detail"] != "").all()
    removed = {(r.primary, r.target, r.side, r.token_id): r for r in df.itertuples()}
    dropped = {(d.primary, d.target): d.reason for d in new.dropped}
    for key, s in old.pairs.items():
        kept = new.get(*key)
        if kept is None:  # emptied by the rule: the pair is dropped, saying so
            assert "other-language identifier token(s)" in dropped[key]
        for side in ("primary", "target"):
            before = set(getattr(s, f"{side}_ids"))
            after = set(getattr(kept, f"{side}_ids")) if kept is not None else set()
            assert after <= before
            # Every token that left a kept set has a row saying why.
            for i in before - after if kept is not None else ():
                row = removed[(*key, side, i)]
                assert row.text == _text(code_tokenizer, i)
                assert row.reason in ("single_char", "other_builtin", "other_keyword")
            assert not after & {k[3] for k in removed if k[:3] == (*key, side)}
        for i in s.shared_ids:
            assert removed[(*key, "both", i)].reason == "shared"
    # Python's str, read at the start of PHP's strlen, and PHP's print in Python's print set.
    strlen = df[(df["target"] == "strlen") & (df["side"] == "target")]
    row = strlen[strlen["text"] == "str"].iloc[0]
    assert row["reason"] == "other_builtin" and "python built-in str" in row["detail"]
    assert set(strlen.loc[strlen["text"] == "s", "reason"]) == {"single_char"}
    echo = df[(df["target"] == "echo") & (df["side"] == "primary") & (df["text"] == "print")]
    assert list(echo["reason"]) == ["other_keyword"]
    assert echo["detail"].iloc[0] == "php keyword print"


def test_a_set_emptied_by_the_rule_drops_its_pair(code_tokenizer):
    # "in" begins with "i" (one character) and is a Python keyword: nothing is left of it.
    report = build_token_sets(code_tokenizer, [("x", "upper", "in")], **PY_PHP)
    assert report.get("upper", "in") is None
    (d,) = report.dropped
    assert "target set of 'in' is empty" in d.reason and "other-language identifier" in d.reason
    df = report.dropped_tokens_frame()
    reasons = dict(zip(df["text"], df["reason"], strict=False))
    assert reasons["i"] == "single_char" and reasons["in"] == "other_keyword"
    # Without languages, the other side's identifiers of the given pairs still count.
    bare = build_token_sets(code_tokenizer, [("x", "upper", "in"), ("y", "in", "inx")])
    rows = bare.dropped_tokens_frame()
    assert "other_pair_identifier" in set(rows.loc[rows["text"] == "in", "reason"])
    kept = build_token_sets(code_tokenizer, [("x", "upper", "in")], drop_cross_language=False)
    assert kept.get("upper", "in") is not None


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
    report = build_token_sets(code_tokenizer, [("q", "qz", "zq")], min_chars=2, **PY_PHP)
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
