"""The corpus tokenizer: training, specials, save/load, hash, fast exact document encoding."""

from __future__ import annotations

import logging
import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from babel_interp.corpus.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    DocumentEncoder,
    TokenizerConfig,
    TokenizerError,
    TokenizerSample,
    content_key,
    load_tokenizer,
    save_tokenizer,
    tokenizer_hash,
    train_tokenizer,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Characters whose class differs between regex engines if a pattern used Unicode classes.
TRICKY = (
    "x = '<|endoftext|>' + \"<|pad|>\"\r\n"
    "\tif a\u00a0b\u2028c\x1c\x1f: # é 中文 😀 ٣٤ Ⅻ _snake_Case9 0x1F\n"
    "    return  [1,2]   \n\n\n"
)


def _stdlib_texts(*packages: str) -> list[str]:
    texts = []
    for pkg in packages:
        for p in sorted((STDLIB / pkg).rglob("*.py")):
            texts.append(p.read_text(encoding="utf-8"))
    return texts


@pytest.fixture(scope="module")
def texts():
    return _stdlib_texts("json", "email")


@pytest.fixture(scope="module")
def tok_dir(texts, tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts, TokenizerConfig(vocab_size=1024, sample_bytes=2_000_000), d)
    return d


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="TokenizerConfig.vocab_size"):
        TokenizerConfig(vocab_size=100)
    with pytest.raises(ValueError, match="TokenizerConfig.min_frequency"):
        TokenizerConfig(min_frequency=0)
    with pytest.raises(ValueError, match="TokenizerConfig.sample_bytes"):
        TokenizerConfig(sample_bytes=-1)
    with pytest.raises(ValueError, match=r"language_weights\['php'\]"):
        TokenizerConfig(language_weights={"python": 1.0, "php": -1})
    with pytest.raises(ValueError, match="positive weight"):
        TokenizerConfig(language_weights={"python": 0})
    with pytest.raises(ValueError, match="unknown field"):
        TokenizerConfig.from_dict({"vocab": 3})
    cfg = TokenizerConfig(vocab_size=512, language_weights={"python": 2, "php": 1})
    assert TokenizerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.budgets() == {"python": 6_666_666, "php": 3_333_333}


def test_trained_tokenizer_has_fixed_specials_and_loads_with_autotokenizer(tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert len(tok) == 1024
    assert tok.convert_ids_to_tokens([0, 1]) == [EOS_TOKEN, PAD_TOKEN]
    assert tok.eos_token_id == 0 and tok.bos_token_id == 0 and tok.pad_token_id == 1
    # Padding needs no new token: the vocabulary size cannot grow after training.
    batch = tok(["def f():", "x"], padding=True)
    assert len(tok) == 1024 and 1 in batch["input_ids"][1]
    # Code is whitespace-sensitive: decoding never "cleans up" the space before a comma.
    text = "def parse(s):\n    return json.loads(s) , x ;\n"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_hash_is_stable_across_save_and_load(tok_dir, tmp_path):
    h = tokenizer_hash(tok_dir)
    tok = load_tokenizer(tok_dir)
    assert tokenizer_hash(tok) == h
    save_tokenizer(tok, tmp_path / "again")
    assert tokenizer_hash(tmp_path / "again") == h
    assert tokenizer_hash(load_tokenizer(tmp_path / "again")) == h


def test_training_is_deterministic_and_order_independent(texts, tmp_path):
    cfg = TokenizerConfig(vocab_size=600, sample_bytes=300_000)
    a = train_tokenizer(texts, cfg, tmp_path / "a")
    shuffled = list(texts)
    random.Random(1).shuffle(shuffled)
    b = train_tokenizer(shuffled, cfg, tmp_path / "b")
    assert tokenizer_hash(a) == tokenizer_hash(b)
    c = train_tokenizer(texts, TokenizerConfig(vocab_size=601, sample_bytes=300_000))
    assert tokenizer_hash(c) != tokenizer_hash(a)


def test_document_encoder_matches_the_tokenizer_exactly(tok_dir, texts):
    tok = load_tokenizer(tok_dir)
    ref = load_tokenizer(tok_dir).backend_tokenizer
    ref.encode_special_tokens = True
    enc = DocumentEncoder(tok, max_cache_words=500)  # small: exercises cache clearing
    docs = texts + _stdlib_texts("asyncio")[:10] + [TRICKY, "", " ", "\n\n", "a" * 5000]
    got = enc.encode_batch(docs)
    for text, ids in zip(docs, got, strict=True):
        assert ids.dtype == np.uint16
        assert ids.tolist() == ref.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids.tolist()) == text
    # Special-token text inside a document stays text: an EOS id marks only real boundaries.
    ids = enc.encode(TRICKY).tolist()
    assert 0 not in ids and 1 not in ids
    # The caller's tokenizer is left as it was.
    assert tok("<|endoftext|>")["input_ids"] == [0]


def test_document_encoder_shapes_are_checked(tok_dir):
    from beartype import beartype
    from jaxtyping import jaxtyped

    enc = DocumentEncoder(load_tokenizer(tok_dir))
    encode = jaxtyped(typechecker=beartype)(DocumentEncoder.encode)
    assert encode(enc, "x = 1\n").ndim == 1
    encode_batch = jaxtyped(typechecker=beartype)(DocumentEncoder.encode_batch)
    assert [a.shape for a in encode_batch(enc, ["", "a b"])] == [(0,), (2,)]


def test_document_encoder_falls_back_for_other_tokenizers(small_tokenizer):
    # A GPT-2-style pre-tokenizer (not this project's) goes through the backend.
    from tokenizers import Tokenizer

    enc = DocumentEncoder(small_tokenizer)
    assert not enc._fast
    ref = Tokenizer.from_str(small_tokenizer.backend_tokenizer.to_str())
    ref.encode_special_tokens = True
    for text in ("def count(items):\n    return len(items)\n", TRICKY):
        assert enc.encode(text).tolist() == ref.encode(text, add_special_tokens=False).ids
    assert 0 not in enc.encode(TRICKY).tolist()


def test_build_model_accepts_the_tokenizer(tok_dir, texts):
    from babel_interp.model import build_model, get_preset

    tok = train_tokenizer(texts[:5], TokenizerConfig(vocab_size=400, sample_bytes=100_000))
    model = build_model(get_preset("tiny"), tokenizer=tok)
    assert model.cfg.d_vocab == len(tok) == 400
    model = build_model(get_preset("tiny"), tokenizer=str(tok_dir))
    assert model.cfg.d_vocab == 1024


def test_sample_is_bounded_and_order_independent():
    rng = random.Random(0)
    docs = [("x" * rng.randint(1, 400)) + str(i) for i in range(300)]
    samples = []
    for seed in range(3):
        order = list(docs)
        random.Random(seed).shuffle(order)
        s = TokenizerSample(5_000)
        for d in order:
            s.offer(content_key(d.encode()), d, len(d.encode()))
        assert s.n_bytes <= 5_000
        samples.append(s.texts())
    assert samples[0] == samples[1] == samples[2] and len(samples[0]) > 5
    # The sample is the run of smallest keys that fits the budget.
    by_key = sorted(docs, key=lambda d: content_key(d.encode()))
    total, expected = 0, []
    for d in by_key:
        if total + len(d) > 5_000:
            break
        total += len(d)
        expected.append(d)
    assert samples[0] == expected


def test_weighted_sample_budgets_per_language():
    s = TokenizerSample(1000, {"python": 800, "php": 200})
    for i in range(200):
        s.offer(i, f"py{i:03d}", 5, "python")
        s.offer(i, f"ph{i:03d}", 5, "php")
    texts = s.texts()
    assert sum(t.startswith("py") for t in texts) == 160
    assert sum(t.startswith("ph") for t in texts) == 40
    with pytest.raises(ValueError, match="no weight for language 'go'"):
        s.offer(1, "go", 2, "go")


def test_small_sample_warns_about_a_smaller_vocabulary(caplog):
    with caplog.at_level(logging.WARNING):
        tok = train_tokenizer(["ab ab ab"], TokenizerConfig(vocab_size=5000))
    assert len(tok) < 5000
    assert "fewer than vocab_size=5000" in caplog.text


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json is missing"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot load the tokenizer"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="sample holds no text"):
        train_tokenizer([], TokenizerConfig(vocab_size=300))
