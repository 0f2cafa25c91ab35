"""Language-labelled token shards: the on-disk corpus format.

A corpus directory holds::

    manifest.json            # languages, per-language counts, tokenizer hash, split layout
    tokenizer/               # HF tokenizer directory (AutoTokenizer.from_pretrained loads it)
    train/tokens.bin         # 1-D token ids, uint16 or uint32 (by vocabulary size)
    train/langs.bin          # 1-D uint8 language ids, parallel to tokens.bin
    train/docs.npy           # int64 document start offsets, n_docs + 1 entries
    val/...                  # the same for the validation split

Inside a split, documents are grouped by language (contiguous ranges, languages in manifest
order) so a language-pure window is one random offset inside that language's range. Every
document is followed by the EOS token, labelled with the document's language, so a label never
has to be inferred from neighbours. Every window read is an O(1) slice of a memory map.

Writes go to ``*.tmp`` files that are renamed into place only when complete, and the manifest is
written last: a directory without ``manifest.json`` is never a readable corpus.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from babel_interp.integrity import Verification
from babel_interp.io import read_json, write_json_atomic
from babel_interp.languages import language_index

FORMAT_VERSION = 1
SPLITS = ("train", "val")
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"


class CorpusFormatError(ValueError):
    """A corpus directory is missing, incomplete or inconsistent."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id of a vocabulary."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class _LanguageBuffer:
    """Appends one language's documents of one split to spill files on disk."""

    def __init__(self, directory: Path, dtype: np.dtype) -> None:
        self.tokens_path = directory / "tokens.part"
        self.tokens = open(self.tokens_path, "wb")
        self.doc_lengths: list[int] = []
        self.n_bytes = 0
        self.dtype = dtype

    def append(self, ids: np.ndarray, n_bytes: int) -> None:
        self.tokens.write(ids.astype(self.dtype, copy=False).tobytes())
        self.doc_lengths.append(int(ids.shape[0]))
        self.n_bytes += n_bytes

    @property
    def n_tokens(self) -> int:
        return int(sum(self.doc_lengths))


class ShardWriter:
    """Streams tokenized documents into one split of a corpus directory.

    Documents may arrive in any language order; each language is spilled to its own part file
    and the parts are concatenated in ``languages`` order by :meth:`close`, so memory stays
    bounded by one document whatever the corpus size.
    """

    def __init__(
        self,
        corpus_dir: str | os.PathLike,
        split: str,
        languages: Sequence[str],
        vocab_size: int,
        eos_id: int,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if len(languages) == 0:
            raise ValueError("languages must not be empty")
        if len(languages) > 255:
            raise ValueError(f"at most 255 languages fit a uint8 label, got {len(languages)}")
        self.dir = Path(corpus_dir) / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.languages = list(languages)
        self.dtype = token_dtype(vocab_size)
        self.eos_id = int(eos_id)
        self._buffers: dict[str, _LanguageBuffer] = {}
        self._closed = False

    def add(self, language: str, token_ids: Sequence[int] | np.ndarray, n_bytes: int) -> None:
        """Append one document (without EOS; it is added here) of ``language``."""
        if language not in self.languages:
            raise ValueError(f"language {language!r} is not in this corpus: {self.languages}")
        buf = self._buffers.get(language)
        if buf is None:
            part_dir = self.dir / f".{language}.parts"
            part_dir.mkdir(parents=True, exist_ok=True)
            buf = self._buffers[language] = _LanguageBuffer(part_dir, self.dtype)
        ids = np.asarray(token_ids, dtype=np.int64)
        buf.append(np.concatenate([ids, np.array([self.eos_id], dtype=np.int64)]), n_bytes)

    def close(self) -> dict:
        """Concatenate the parts into the split's files; return the split's manifest entry."""
        if self._closed:
            raise RuntimeError("ShardWriter already closed")
        self._closed = True
        tok_tmp = self.dir / "tokens.bin.tmp"
        lang_tmp = self.dir / "langs.bin.tmp"
        doc_starts: list[int] = [0]
        entry: dict = {"languages": {}}
        pos = 0
        with open(tok_tmp, "wb") as tok_out, open(lang_tmp, "wb") as lang_out:
            for lang_id, lang in enumerate(self.languages):
                buf = self._buffers.get(lang)
                start = pos
                if buf is not None:
                    buf.tokens.close()
                    n = buf.n_tokens
                    with open(buf.tokens_path, "rb") as part:
                        while chunk := part.read(1 << 22):
                            tok_out.write(chunk)
                    _write_constant(lang_out, lang_id, n)
                    for length in buf.doc_lengths:
                        doc_starts.append(doc_starts[-1] + length)
                    pos += n
                    os.remove(buf.tokens_path)
                    os.rmdir(buf.tokens_path.parent)
                entry["languages"][lang] = {
                    "start": start,
                    "end": pos,
                    "docs": 0 if buf is None else len(buf.doc_lengths),
                    "tokens": pos - start,
                    "bytes": 0 if buf is None else buf.n_bytes,
                }
        np.save(self.dir / "docs.npy.tmp.npy", np.asarray(doc_starts, dtype=np.int64))
        os.replace(self.dir / "docs.npy.tmp.npy", self.dir / "docs.npy")
        os.replace(tok_tmp, self.dir / "tokens.bin")
        os.replace(lang_tmp, self.dir / "langs.bin")
        entry["n_tokens"] = pos
        entry["n_docs"] = len(doc_starts) - 1
        return entry


def _write_constant(f, value: int, n: int, chunk: int = 1 << 22) -> None:
    block = np.full(min(n, chunk), value, dtype=np.uint8).tobytes()
    while n > 0:
        k = min(n, chunk)
        f.write(block[:k])
        n -= k


@dataclass
class SplitShard:
    """One split of a corpus, memory-mapped. Slicing never reads more than the window."""

    name: str
    tokens: np.ndarray
    lang_ids: np.ndarray
    doc_starts: np.ndarray
    language_ranges: dict[str, tuple[int, int]]
    languages: list[str] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def language_range(self, language: str) -> tuple[int, int]:
        """The contiguous ``[start, end)`` token range holding ``language``'s documents."""
        try:
            return self.language_ranges[language]
        except KeyError:
            raise KeyError(
                f"language {language!r} is not in split {self.name!r}; "
                f"it has {sorted(self.language_ranges)}"
            ) from None

    def window(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and language ids of ``[start, start + length)`` as int64 / uint8 arrays."""
        if start < 0 or length < 0 or start + length > self.n_tokens:
            raise IndexError(
                f"window [{start}, {start + length}) outside split {self.name!r} "
                f"of {self.n_tokens} tokens"
            )
        end = start + length
        return self.tokens[start:end].astype(np.int64), np.array(self.lang_ids[start:end])

    def documents(self, language: str | None = None) -> Iterable[tuple[int, int]]:
        """``(start, end)`` of each document (EOS included), optionally of one language."""
        lo, hi = (0, self.n_tokens) if language is None else self.language_range(language)
        starts = self.doc_starts
        first = int(np.searchsorted(starts, lo, side="left"))
        for i in range(first, len(starts) - 1):
            if starts[i] >= hi:
                break
            yield int(starts[i]), int(starts[i + 1])


class CorpusReader:
    """Reads a corpus directory written by the corpus builder."""

    def __init__(self, corpus_dir: str | os.PathLike) -> None:
        self.dir = Path(corpus_dir)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise CorpusFormatError(
                f"{self.dir} is not a corpus directory: {MANIFEST} is missing "
                "(build one with `babel-interp corpus synth` or `babel-interp corpus build`)"
            )
        self.manifest: dict = read_json(path, "corpus manifest")
        if not isinstance(self.manifest, dict):
            raise CorpusFormatError(f"corpus manifest file {path} is not a JSON object")
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise CorpusFormatError(
                f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        self.languages: list[str] = list(self.manifest["languages"])
        self.dtype = np.dtype(self.manifest["dtype"])
        self._splits: dict[str, SplitShard] = {}

    @property
    def tokenizer_dir(self) -> Path:
        return self.dir / self.manifest.get("tokenizer", {}).get("dir", TOKENIZER_DIR)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.manifest["tokenizer"]["eos_id"])

    def lang_id(self, language: str) -> int:
        """The integer label of ``language`` in ``langs.bin``."""
        missing = f"language {language!r} is not in corpus {self.dir}; it has {self.languages}"
        return language_index(self.languages, language, missing)

    def bytes_per_token(self, language: str, split: str = "val") -> float:
        """Source bytes per token of ``language`` in ``split``: converts nats/token to bits/byte."""
        info = self.manifest["splits"][split]["languages"][language]
        if info["tokens"] == 0:
            raise ValueError(f"language {language!r} has no tokens in split {split!r}")
        # EOS tokens carry no source bytes but are predicted, so they count as tokens.
        return info["bytes"] / info["tokens"]

    def split(self, name: str) -> SplitShard:
        """The memory-mapped split ``name`` ("train" or "val")."""
        if name in self._splits:
            return self._splits[name]
        if name not in self.manifest.get("splits", {}):
            raise KeyError(f"corpus {self.dir} has no split {name!r}")
        info = self.manifest["splits"][name]
        d = self.dir / name
        n = int(info["n_tokens"])
        if n == 0:
            tokens = np.zeros(0, dtype=self.dtype)
            langs = np.zeros(0, dtype=np.uint8)
        else:
            for fname, width in (("tokens.bin", self.dtype.itemsize), ("langs.bin", 1)):
                f = d / fname
                size = f.stat().st_size if f.is_file() else None
                if size != n * width:
                    raise CorpusFormatError(
                        f"{f} is {'missing' if size is None else f'{size} bytes'}; the manifest "
                        f"says {n} tokens ({n * width} bytes): the corpus is truncated or damaged, "
                        "rebuild it"
                    )
            tokens = np.memmap(d / "tokens.bin", dtype=self.dtype, mode="r")
            langs = np.memmap(d / "langs.bin", dtype=np.uint8, mode="r")
        if tokens.shape[0] != n or langs.shape[0] != n:
            raise CorpusFormatError(
                f"{d}: tokens.bin has {tokens.shape[0]} and langs.bin {langs.shape[0]} entries, "
                f"the manifest says {n}"
            )
        ranges = {lang: (int(v["start"]), int(v["end"])) for lang, v in info["languages"].items()}
        shard = SplitShard(
            name=name,
            tokens=tokens,
            lang_ids=langs,
            doc_starts=np.load(d / "docs.npy"),
            language_ranges=ranges,
            languages=self.languages,
        )
        self._splits[name] = shard
        return shard


def max_token_id(tokens: np.ndarray, chunk: int = 1 << 24) -> int:
    """The largest id in a (memory-mapped) token array, read in chunks; -1 when empty."""
    top = -1
    for i in range(0, tokens.shape[0], chunk):
        top = max(top, int(tokens[i : i + chunk].max()))
    return top


def check_token_ids(reader: CorpusReader, d_vocab: int) -> None:
    """Raise naming the split and the id when a token id is outside a model's vocabulary."""
    for name in reader.manifest.get("splits", {}):
        top = max_token_id(reader.split(name).tokens)
        if top >= d_vocab:
            raise CorpusFormatError(
                f"{reader.dir / name / 'tokens.bin'} holds token id {top}, outside the model's "
                f"vocabulary of {d_vocab}: the corpus was tokenized with another tokenizer "
                "(or is damaged)"
            )


def verify_corpus(corpus_dir: str | os.PathLike, d_vocab: int | None = None) -> Verification:
    """Check a corpus: manifest, every split's file sizes, document offsets, language ranges and
    labels, and token ids below the tokenizer's (and, given, a model's) vocabulary."""
    result = Verification(Path(corpus_dir))
    try:
        reader = CorpusReader(corpus_dir)
        limit = reader.vocab_size if d_vocab is None else min(reader.vocab_size, d_vocab)
        for name in reader.manifest.get("splits", {}):
            shard = reader.split(name)
            d = reader.dir / name
            n = shard.n_tokens
            starts = shard.doc_starts
            if starts.ndim != 1 or starts.size == 0 or starts[0] != 0 or starts[-1] != n:
                result.problems.append(f"{d / 'docs.npy'} does not span [0, {n}]")
            elif np.any(np.diff(starts) <= 0):
                result.problems.append(f"{d / 'docs.npy'} has empty or decreasing documents")
            for lang, (lo, hi) in shard.language_ranges.items():
                if not 0 <= lo <= hi <= n:
                    result.problems.append(
                        f"{d}: range of {lang!r} [{lo}, {hi}) is outside the split"
                    )
                    continue
                bad = np.flatnonzero(np.asarray(shard.lang_ids[lo:hi]) != reader.lang_id(lang))
                if bad.size:
                    result.problems.append(
                        f"{d / 'langs.bin'}: {bad.size} tokens of {lang!r}'s range carry another "
                        f"language's label (first at {lo + int(bad[0])})"
                    )
            top = max_token_id(shard.tokens)
            if top >= limit:
                result.problems.append(
                    f"{d / 'tokens.bin'} holds token id {top}, outside the vocabulary of {limit}"
                )
            result.checked_files += 3
            result.checked_bytes += n * (reader.dtype.itemsize + 1)
    except (CorpusFormatError, ValueError, KeyError, FileNotFoundError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        result.problems.append(str(msg))
    return result


def write_manifest(
    corpus_dir: str | os.PathLike,
    languages: Sequence[str],
    splits: dict[str, dict],
    tokenizer_info: dict,
    per_language: dict[str, dict] | None = None,
    **extra: object,
) -> Path:
    """Write ``manifest.json`` last, atomically: the corpus becomes readable only now.

    ``splits`` maps split names to :meth:`ShardWriter.close` entries; ``tokenizer_info`` holds at
    least ``vocab_size``, ``eos_id`` and ``hash``; ``per_language`` holds per-language totals
    (documents, bytes, tokens, bytes_per_token, sources, skipped) for the summary table.
    """
    for key in ("vocab_size", "eos_id", "hash"):
        if key not in tokenizer_info:
            raise ValueError(f"tokenizer_info lacks {key!r}")
    manifest = {
        "format_version": FORMAT_VERSION,
        "languages": list(languages),
        "dtype": token_dtype(int(tokenizer_info["vocab_size"])).name,
        "tokenizer": {"dir": TOKENIZER_DIR, **tokenizer_info},
        "splits": splits,
        "per_language": per_language or {},
        **extra,
    }
    path = Path(corpus_dir) / MANIFEST
    write_json_atomic(path, manifest)
    return path
