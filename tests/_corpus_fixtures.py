"""Small language-labelled corpora for the training tests, written with the shard format's own
writer (ShardWriter + write_manifest) and a byte-level BPE tokenizer trained on the documents.

Each language renders the same kind of small program in its own syntax (Python ``len`` vs PHP
``strlen`` ...), so a tiny model learns them within tens of steps and the languages are
distinguishable.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

from babel_interp.corpus.shards import ShardWriter, write_manifest

SYLLABLES = ["ka", "lo", "mi", "nu", "ra", "se", "ti", "vo", "ze", "pa", "qu", "do"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _python(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(3, 6)):
        f, a, n = _name(rng), _name(rng), rng.randint(0, 99)
        body = rng.choice(
            [
                f"    return len({a}) + {n}\n",
                f"    print({a})\n    return {n}\n",
                f"    if {a} > {n}:\n        return {a}\n    return {n}\n",
                f"    for x in {a}:\n        print(x)\n    return None\n",
            ]
        )
        out.append(f"def {f}({a}):\n{body}\n")
    return "".join(out)


def _php(rng: random.Random) -> str:
    out = ["<?php\n"]
    for _ in range(rng.randint(3, 6)):
        f, a, n = _name(rng), _name(rng), rng.randint(0, 99)
        body = rng.choice(
            [
                f"    return strlen(${a}) + {n};\n",
                f"    echo ${a};\n    return {n};\n",
                f"    if (${a} > {n}) {{\n        return ${a};\n    }}\n    return {n};\n",
                f"    foreach (${a} as $x) {{\n        echo $x;\n    }}\n    return null;\n",
            ]
        )
        out.append(f"function {f}(${a}) {{\n{body}}}\n\n")
    return "".join(out)


def _go(rng: random.Random) -> str:
    out = ["package main\n\n"]
    for _ in range(rng.randint(3, 6)):
        f, a, n = _name(rng), _name(rng), rng.randint(0, 99)
        body = rng.choice(
            [
                f"\treturn len({a}) + {n}\n",
                f"\tfmt.Println({a})\n\treturn {n}\n",
            ]
        )
        out.append(f"func {f}({a} string) int {{\n{body}}}\n\n")
    return "".join(out)


RENDER = {"python": _python, "php": _php, "go": _go}


def _tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def make_corpus(
    out: str | Path,
    languages: Sequence[str] = ("python", "php"),
    docs: int | dict[str, int] = 150,
    val_docs: int = 12,
    vocab_size: int = 400,
    seed: int = 0,
) -> Path:
    """Write a corpus directory; ``docs`` train documents per language (or per-language dict)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    per_lang = docs if isinstance(docs, dict) else dict.fromkeys(languages, docs)
    texts = {
        split: {
            lang: [
                RENDER[lang](rng) for _ in range(per_lang[lang] if split == "train" else val_docs)
            ]
            for lang in languages
        }
        for split in ("train", "val")
    }
    tok = _tokenizer([t for lang in languages for t in texts["train"][lang]], vocab_size)
    tok_dir = out / "tokenizer"
    tok.save_pretrained(tok_dir)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    vocab = len(tok)
    splits = {}
    for split in ("train", "val"):
        writer = ShardWriter(out, split, list(languages), vocab, eos)
        for lang in languages:
            for text in texts[split][lang]:
                writer.add(lang, tok.encode(text), n_bytes=len(text.encode("utf-8")))
        splits[split] = writer.close()
    digest = hashlib.sha256((tok_dir / "tokenizer.json").read_bytes()).hexdigest()[:16]
    write_manifest(
        out,
        list(languages),
        splits,
        {"vocab_size": vocab, "eos_id": eos, "hash": digest},
    )
    return out
