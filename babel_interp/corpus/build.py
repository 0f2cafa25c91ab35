"""Build a language-labelled corpus: sources -> dedup -> split -> BPE tokenizer -> token shards.

Two passes, memory bounded whatever the corpus size:

1. Every source is streamed once. Each document is normalized (line endings to ``\\n``),
   deduplicated by content hash (a set of 16-byte digests, never texts), assigned to train or
   validation by a keyed hash of its content (deterministic, independent of order and of the
   other documents), appended to a spill file on disk, and offered to a bounded tokenizer sample
   (train documents only). Sources are therefore read once, which matters for streamed datasets.
2. The tokenizer is trained on the sample (or an existing one is reused), then the spill file is
   read back, tokenized in batches and written to the shards with a per-token language label.
   Larger corpora are tokenized in worker processes; the output bytes do not depend on how many.

The corpus is built in a hidden temporary sibling of the output directory and renamed into place
at the end, so a crash never leaves a half corpus under the output name, and an existing corpus
is only replaced once the new one is complete. A directory holding anything but a corpus is never
touched; a corpus built with a different tokenizer is replaced only with ``overwrite``.

Besides the sources' skip reasons (:mod:`babel_interp.corpus.sources`), the build counts
``duplicate`` (same content as an earlier document; the first one is kept) and
``excluded_language`` (a language outside ``CorpusConfig.languages``) per language.

Split guarantee: a language with at least two documents has at least one document in each split
(its train document of smallest split hash moves to validation if the hash gave it none, and
symmetrically), so per-language validation loss always exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from babel_interp.config import ConfigBase, check_dir_path
from babel_interp.corpus.shards import (
    MANIFEST,
    SPLITS,
    TOKENIZER_DIR,
    CorpusReader,
    ShardWriter,
    write_manifest,
)
from babel_interp.corpus.sources import (
    NO_LANGUAGE,
    FilterConfig,
    SkipStats,
    SourceSpec,
    resolve_language,
)
from babel_interp.corpus.synthetic import SyntheticConfig
from babel_interp.corpus.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    DocumentEncoder,
    TokenizerConfig,
    TokenizerSample,
    load_tokenizer,
    tokenizer_hash,
    train_backend,
    write_tokenizer_dir,
)

log = logging.getLogger(__name__)

# What a corpus directory may hold; anything else in an output directory is someone's data.
CORPUS_ENTRIES = frozenset({MANIFEST, TOKENIZER_DIR, *SPLITS})
_SPILL = "documents.spill"
_HEADER = struct.Struct("<HBI")  # language index, split (0 train / 1 val), UTF-8 byte length
_U64 = 1 << 64


class CorpusBuildError(ValueError):
    """A corpus cannot be built from this input; the message names the problem."""


def normalize_text(text: str) -> str:
    """The text stored for a document: line endings normalized to ``\\n``.

    Documents differing only in line endings or surrounding whitespace count as duplicates.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def content_digest(text: str) -> bytes:
    """The 16-byte dedup digest of a normalized document (whitespace at both ends ignored)."""
    return hashlib.blake2b(text.strip().encode("utf-8"), digest_size=16).digest()


def split_key(digest: bytes, seed: int) -> int:
    """A uniform 64-bit key of a document for the split, keyed by ``seed``."""
    key = seed.to_bytes(16, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(digest, digest_size=8, key=key).digest(), "big")


def split_of(digest: bytes, seed: int, val_fraction: float) -> str:
    """``"val"`` or ``"train"`` for a document digest: the deterministic split rule."""
    return "val" if split_key(digest, seed) < val_fraction * _U64 else "train"


@dataclass
class CorpusConfig(ConfigBase):
    """Everything that decides a corpus.

    ``languages`` restricts the corpus to these languages and fixes their order (their label ids
    in ``langs.bin``); without it, languages are ordered by first appearance in the sources.
    ``tokenizer_dir`` reuses an existing tokenizer instead of training one (``tokenizer`` is then
    ignored). ``filters.max_bytes`` is the largest document kept. ``batch_bytes`` is how much text
    is tokenized per batch; ``workers`` is the number of tokenizing processes (0: one per CPU
    core, up to 4, for corpora over 8 MB; 1: in this process). ``overwrite`` allows replacing a
    corpus in ``out`` that was built with a different tokenizer (never a directory holding
    anything else).
    """

    out: str
    sources: list[SourceSpec] = field(default_factory=list)
    languages: list[str] | None = None
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenizer_dir: str | None = None
    filters: FilterConfig = field(default_factory=FilterConfig)
    val_fraction: float = 0.05
    seed: int = 0
    batch_bytes: int = 1_000_000
    workers: int = 0
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Check every field; sources, tokenizer and filters given as dicts become configs."""
        self.out = check_dir_path("CorpusConfig", "out", self.out)
        if not isinstance(self.sources, Sequence) or isinstance(self.sources, str):
            raise ValueError("CorpusConfig.sources must be a list of SourceSpec")
        self.sources = [
            s if isinstance(s, SourceSpec) else SourceSpec.from_dict(dict(s)) for s in self.sources
        ]
        if not self.sources:
            raise ValueError(
                "CorpusConfig.sources is empty: give at least one source "
                "(--source LANG=PATH, --jsonl FILE, --hf SPEC, or the synthetic generator)"
            )
        if self.languages is not None:
            if isinstance(self.languages, str) or not self.languages:
                raise ValueError("CorpusConfig.languages must be a non-empty list or None")
            try:
                langs = [resolve_language(x) for x in self.languages]
            except ValueError as exc:
                raise ValueError(f"CorpusConfig.languages: {exc}") from None
            if len(set(langs)) != len(langs):
                raise ValueError(f"CorpusConfig.languages has duplicates: {langs}")
            if len(langs) > 255:
                raise ValueError("CorpusConfig.languages: at most 255 languages fit a uint8 label")
            self.languages = langs
        if isinstance(self.tokenizer, Mapping):
            self.tokenizer = TokenizerConfig.from_dict(dict(self.tokenizer))
        if isinstance(self.filters, Mapping):
            self.filters = FilterConfig.from_dict(dict(self.filters))
        if self.tokenizer_dir is not None:
            self.tokenizer_dir = str(self.tokenizer_dir)
        if (
            not isinstance(self.val_fraction, (int, float))
            or isinstance(self.val_fraction, bool)
            or not 0.0 <= self.val_fraction < 1.0
        ):
            raise ValueError(
                f"CorpusConfig.val_fraction must be a number in [0, 1), got {self.val_fraction!r}"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"CorpusConfig.seed must be an int, got {self.seed!r}")
        if not -(2**127) <= self.seed < 2**127:
            raise ValueError("CorpusConfig.seed must fit in 128 bits")
        if not isinstance(self.batch_bytes, int) or self.batch_bytes <= 0:
            raise ValueError(
                f"CorpusConfig.batch_bytes must be a positive int, got {self.batch_bytes!r}"
            )
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 0:
            raise ValueError(f"CorpusConfig.workers must be an int >= 0, got {self.workers!r}")
        for name in ("overwrite", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CorpusConfig.{name} must be a bool")

    def recorded(self) -> dict[str, Any]:
        """The config as recorded in the manifest: what decides the content, not where it went."""
        d = self.to_dict()
        for key in ("out", "overwrite", "progress", "batch_bytes", "workers"):
            d.pop(key)
        return d


def synthetic_corpus_config(
    out: str | os.PathLike,
    languages: Sequence[str] = ("python", "php", "csharp", "go", "cpp"),
    docs_per_language: int = 1000,
    seed: int = 0,
    vocab_size: int = 4096,
    **kwargs: Any,
) -> CorpusConfig:
    """A :class:`CorpusConfig` over the synthetic generator (``babel-interp corpus synth``)."""
    synth = SyntheticConfig(
        languages=tuple(languages), docs_per_language=docs_per_language, seed=seed
    )
    tok = kwargs.pop("tokenizer", None) or TokenizerConfig(vocab_size=vocab_size)
    return CorpusConfig(
        out=str(out),
        sources=[SourceSpec(kind="synthetic", options=synth.to_dict())],
        languages=list(synth.languages),
        tokenizer=tok,
        seed=seed,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


@dataclass
class LanguageSummary:
    """One language of a built corpus."""

    language: str
    documents: int
    train_documents: int
    val_documents: int
    bytes: int
    train_tokens: int
    val_tokens: int
    bytes_per_token: float
    skipped: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.train_tokens + self.val_tokens


@dataclass
class CorpusSummary:
    """What a build produced (also readable back from any corpus's manifest)."""

    corpus_dir: str
    languages: list[LanguageSummary]
    tokenizer_hash: str
    vocab_size: int
    skipped: dict[str, int] = field(default_factory=dict)
    other_files: int = 0
    source_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))

    @property
    def mb_per_second(self) -> float:
        """Source megabytes (10^6 bytes read from the sources) per second, end to end."""
        t = self.total_seconds
        return self.source_bytes / 1e6 / t if t > 0 else float("nan")

    def language(self, name: str) -> LanguageSummary:
        for lang in self.languages:
            if lang.language == name:
                return lang
        raise KeyError(
            f"language {name!r} is not in this corpus: {[x.language for x in self.languages]}"
        )

    def to_dataframe(self) -> Any:
        """One row per language: documents, bytes, tokens, bytes per token, skipped."""
        rows = []
        for s in self.languages:
            rows.append(
                {
                    "language": s.language,
                    "documents": s.documents,
                    "train_docs": s.train_documents,
                    "val_docs": s.val_documents,
                    "MB": s.bytes / 1e6,
                    "train_tokens": s.train_tokens,
                    "val_tokens": s.val_tokens,
                    "bytes_per_token": s.bytes_per_token,
                    "skipped": sum(s.skipped.values()),
                    "skip_reasons": ", ".join(f"{k}={v}" for k, v in sorted(s.skipped.items())),
                }
            )
        return pd.DataFrame(rows)

    def table(self) -> str:
        """A printable summary: the per-language table plus totals."""
        df = self.to_dataframe()
        lines = [
            df.to_string(
                index=False,
                formatters={"MB": "{:.2f}".format, "bytes_per_token": "{:.2f}".format},
            )
        ]
        total_tokens = sum(s.tokens for s in self.languages)
        lines.append(
            f"total: {sum(s.documents for s in self.languages)} documents, "
            f"{total_tokens} tokens; vocabulary {self.vocab_size}, "
            f"tokenizer {self.tokenizer_hash[:12]}"
        )
        if self.skipped:
            lines.append(
                "skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
            )
        if self.other_files:
            lines.append(f"files of other types ignored: {self.other_files}")
        if self.seconds:
            parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
            lines.append(
                f"time: {parts}; {self.source_bytes / 1e6:.1f} MB of source at "
                f"{self.mb_per_second:.2f} MB/s"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_manifest(cls, corpus_dir: str | os.PathLike) -> CorpusSummary:
        """The summary of an existing corpus directory (no timings)."""
        reader = CorpusReader(corpus_dir)
        m = reader.manifest
        per = m.get("per_language", {})
        langs = []
        for lang in reader.languages:
            p = per.get(lang, {})
            tr = m["splits"]["train"]["languages"].get(lang, {})
            va = m["splits"].get("val", {}).get("languages", {}).get(lang, {})
            langs.append(
                LanguageSummary(
                    language=lang,
                    documents=int(p.get("documents", tr.get("docs", 0) + va.get("docs", 0))),
                    train_documents=int(tr.get("docs", 0)),
                    val_documents=int(va.get("docs", 0)),
                    bytes=int(p.get("bytes", tr.get("bytes", 0) + va.get("bytes", 0))),
                    train_tokens=int(tr.get("tokens", 0)),
                    val_tokens=int(va.get("tokens", 0)),
                    bytes_per_token=float(p.get("bytes_per_token", float("nan"))),
                    skipped=dict(p.get("skipped", {})),
                    sources=dict(p.get("sources", {})),
                )
            )
        build = m.get("build", {})
        return cls(
            corpus_dir=str(corpus_dir),
            languages=langs,
            tokenizer_hash=m["tokenizer"]["hash"],
            vocab_size=int(m["tokenizer"]["vocab_size"]),
            skipped=dict(build.get("skipped", {})),
            other_files=int(build.get("other_files", 0)),
            source_bytes=int(build.get("source_bytes", 0)),
        )


# ---------------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------------


@dataclass
class _LangStats:
    docs: list[int] = field(default_factory=lambda: [0, 0])  # per split
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    sources: dict[str, int] = field(default_factory=dict)
    # (key, spill index, bytes) of the train document closest to val and the val document
    # closest to train, for the split guarantee.
    min_train: tuple[int, int, int] | None = None
    max_val: tuple[int, int, int] | None = None


class _Pass1:
    """Streams the sources into the spill file; dedups, splits and samples on the way."""

    def __init__(self, cfg: CorpusConfig, spill_path: Path, train_sample: bool) -> None:
        self.cfg = cfg
        self.languages: list[str] = list(cfg.languages or [])
        self.fixed_languages = cfg.languages is not None
        self.stats: dict[str, _LangStats] = {}
        self.skips = SkipStats()
        self.seen: set[bytes] = set()
        self.sample = (
            TokenizerSample(cfg.tokenizer.sample_bytes, cfg.tokenizer.budgets())
            if train_sample
            else None
        )
        self.spill_path = spill_path
        self.n_docs = 0
        self.source_bytes = 0
        self.val_cut = cfg.val_fraction * _U64

    def run(self) -> None:
        with open(self.spill_path, "wb", buffering=1 << 20) as spill:
            bar = tqdm(
                desc="reading sources", unit="doc", disable=not self.cfg.progress, leave=False
            )
            try:
                for spec in self.cfg.sources:
                    self._read_source(spec, spill, bar)
            finally:
                bar.close()

    def _read_source(self, spec: SourceSpec, spill: Any, bar: Any) -> None:
        name = spec.describe()
        skips = SkipStats()
        produced = 0
        for doc in spec.iterate(self.cfg.filters, skips):
            produced += 1
            self.source_bytes += doc.n_bytes
            bar.update(1)
            self._add(doc.text, doc.language, name, f"{doc.source}/{doc.doc_id}", spill, skips)
        self.skips.merge(skips)
        if produced == 0:
            examples = "; ".join(skips.example_list()) or "none"
            raise CorpusBuildError(
                f"source {name} yielded no documents ({skips.describe()}); examples: {examples}"
            )

    def _add(
        self, text: str, language: str, source: str, where: str, spill: Any, skips: SkipStats
    ) -> None:
        if language not in self.languages:
            if self.fixed_languages:
                skips.add(language, "excluded_language", where)
                return
            if len(self.languages) >= 255:
                raise CorpusBuildError("more than 255 languages: they do not fit a uint8 label")
            self.languages.append(language)
        text = normalize_text(text)
        digest = content_digest(text)
        if digest in self.seen:
            skips.add(language, "duplicate", where)
            return
        self.seen.add(digest)
        data = text.encode("utf-8")
        key = split_key(digest, self.cfg.seed)
        split = 1 if key < self.val_cut else 0
        st = self.stats.setdefault(language, _LangStats())
        st.docs[split] += 1
        st.bytes[split] += len(data)
        st.sources[source] = st.sources.get(source, 0) + 1
        index = self.n_docs
        if split == 0 and (st.min_train is None or key < st.min_train[0]):
            st.min_train = (key, index, len(data))
        if split == 1 and (st.max_val is None or key > st.max_val[0]):
            st.max_val = (key, index, len(data))
        spill.write(_HEADER.pack(self.languages.index(language), split, len(data)))
        spill.write(data)
        self.n_docs += 1
        if self.sample is not None and split == 0:
            self.sample.offer(int.from_bytes(digest[:8], "big"), text, len(data), language)

    def moves(self) -> dict[int, int]:
        """Spill indices whose split changes (index -> new split) for the split guarantee."""
        moved: dict[int, int] = {}
        for lang, st in self.stats.items():
            train, val = st.docs
            if train + val < 2:
                continue
            if val == 0 and st.min_train is not None:
                _, idx, nb = st.min_train
                moved[idx] = 1
                st.docs = [train - 1, 1]
                st.bytes = [st.bytes[0] - nb, st.bytes[1] + nb]
                log.info("%s: no document hashed into val; moved one train document", lang)
            elif train == 0 and st.max_val is not None:
                _, idx, nb = st.max_val
                moved[idx] = 0
                st.docs = [1, val - 1]
                st.bytes = [st.bytes[0] + nb, st.bytes[1] - nb]
        return moved


def _read_spill(path: Path) -> Iterator[tuple[int, int, str, int]]:
    """``(language index, split, text, n_bytes)`` of each spilled document, in order."""
    with open(path, "rb", buffering=1 << 20) as f:
        while True:
            head = f.read(_HEADER.size)
            if not head:
                return
            lang, split, n = _HEADER.unpack(head)
            data = f.read(n)
            if len(data) != n:
                raise CorpusBuildError(f"{path} is truncated (the disk may be full)")
            yield lang, split, data.decode("utf-8"), n


_PARALLEL_MIN_BYTES = 8_000_000
_Meta = list[tuple[int, int, int]]  # (language index, split, n_bytes) per document


def _batches(
    spill_path: Path, moves: dict[int, int], lang_index: dict[int, int], batch_bytes: int
) -> Iterator[tuple[_Meta, list[str]]]:
    """The spilled documents in order, in batches of about ``batch_bytes`` of text."""
    meta: _Meta = []
    texts: list[str] = []
    size = 0
    for index, (lang, split, text, n) in enumerate(_read_spill(spill_path)):
        meta.append((lang_index[lang], moves.get(index, split), n))
        texts.append(text)
        size += n
        if size >= batch_bytes:
            yield meta, texts
            meta, texts, size = [], [], 0
    if meta:
        yield meta, texts


def _encode_batches(
    batches: Iterator[tuple[_Meta, list[str]]], encoder: DocumentEncoder, workers: int
) -> Iterator[tuple[_Meta, list[Any]]]:
    """Encoded batches in input order; with ``workers > 1`` in worker processes.

    At most ``2 * workers`` batches are in flight, so memory stays bounded and the output order
    (hence the corpus bytes) does not depend on the number of workers.
    """
    if workers <= 1:
        for meta, texts in batches:
            yield meta, encoder.encode_batch(texts)
        return
    # fork on Linux: spawn would re-run an unguarded calling script in every worker. The
    # workers run only tokenizers' single-threaded encoding, which is fork-safe.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    spec = encoder._backend.to_str()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(spec,)
    ) as pool:
        pending: deque = deque()
        first = True
        for meta, texts in batches:
            if first:
                # Workers start on the first submit: with TOKENIZERS_PARALLELISM set they start
                # single-threaded and silent (tokenizers warns after a fork otherwise).
                with _env("TOKENIZERS_PARALLELISM", "false"):
                    pending.append((meta, pool.submit(_worker_encode, texts)))
                first = False
            else:
                pending.append((meta, pool.submit(_worker_encode, texts)))
            if len(pending) >= 2 * workers:
                done_meta, future = pending.popleft()
                yield done_meta, _from_bytes(future.result(), encoder.dtype)
        while pending:
            done_meta, future = pending.popleft()
            yield done_meta, _from_bytes(future.result(), encoder.dtype)


class _env:
    """Set an environment variable for the duration of a ``with`` block."""

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value

    def __enter__(self) -> None:
        self.old = os.environ.get(self.key)
        os.environ[self.key] = self.value

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop(self.key, None)
        else:
            os.environ[self.key] = self.old


_worker_encoder: DocumentEncoder | None = None


def _worker_init(tokenizer_json: str) -> None:
    # One thread per worker process: the processes are the parallelism.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer  # deferred like every use of tokenizers: a heavy import

    global _worker_encoder
    _worker_encoder = DocumentEncoder(Tokenizer.from_str(tokenizer_json))


def _worker_encode(texts: list[str]) -> list[bytes]:
    assert _worker_encoder is not None
    return [ids.tobytes() for ids in _worker_encoder.encode_batch(texts)]


def _from_bytes(parts: list[bytes], dtype: Any) -> list[Any]:
    return [np.frombuffer(b, dtype=dtype) for b in parts]


def _existing_corpus_hash(out: Path) -> str | None:
    """The tokenizer hash of a corpus already in ``out`` (None if ``out`` is new or empty).

    Refuses a directory holding anything but a corpus: its contents would be lost.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise CorpusBuildError(f"output {str(out)!r} exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return None
    if MANIFEST not in entries:
        raise CorpusBuildError(
            f"output directory {str(out)!r} is not empty and holds no corpus "
            f"({', '.join(entries[:8])}{', ...' if len(entries) > 8 else ''}); "
            "choose a new or empty directory: nothing in it was changed"
        )
    foreign = [e for e in entries if e not in CORPUS_ENTRIES]
    if foreign:
        raise CorpusBuildError(
            f"output directory {str(out)!r} holds a corpus and other files {foreign}; "
            "replacing the corpus would delete them: move them or choose another directory"
        )
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["tokenizer"]["hash"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusBuildError(
            f"output directory {str(out)!r} holds a damaged corpus manifest ({exc}); "
            "remove it yourself or choose another directory"
        ) from None


def _check_reuse(out: Path, existing: str | None, new: str, cfg: CorpusConfig) -> None:
    if existing is None or existing == new or cfg.overwrite:
        return
    raise CorpusBuildError(
        f"output directory {str(out)!r} holds a corpus built with a different tokenizer "
        f"(hash {existing[:12]}, this build's is {new[:12]}): models trained on it would read "
        f"wrong ids. Reuse its tokenizer with --tokenizer {out / TOKENIZER_DIR}, choose another "
        "--out, or pass --overwrite to replace it"
    )


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished directory ``tmp`` to ``out``; a directory already there is moved
    aside first and removed only afterwards (and put back if the rename fails), so ``out`` is
    always either the old or the new content. ``tmp`` must be a sibling of ``out``."""
    if not out.exists():
        os.rename(tmp, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old = aside / out.name
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def build_corpus(cfg: CorpusConfig) -> CorpusSummary:
    """Build the corpus described by ``cfg`` into ``cfg.out``; returns its summary.

    Raises :class:`CorpusBuildError` (a ``ValueError``) naming the problem for an empty source,
    a declared language without surviving documents, a tokenizer that differs from the one of a
    corpus already in ``cfg.out``, or an output directory holding other data. Nothing in
    ``cfg.out`` changes unless the build succeeds.
    """
    out = Path(cfg.out).absolute()
    existing_hash = _existing_corpus_hash(out)
    reuse = None
    if cfg.tokenizer_dir is not None:
        reuse = load_tokenizer(cfg.tokenizer_dir)
        _check_reuse(out, existing_hash, tokenizer_hash(cfg.tokenizer_dir), cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make a shared corpus private
    try:
        summary = _build_into(cfg, tmp, out, existing_hash, reuse)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.corpus_dir = str(out)
    return summary


def _build_into(
    cfg: CorpusConfig, tmp: Path, out: Path, existing_hash: str | None, reuse: Any
) -> CorpusSummary:
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    spill_path = tmp / _SPILL
    p1 = _Pass1(cfg, spill_path, train_sample=reuse is None)
    p1.run()
    seconds["read"] = time.perf_counter() - t0

    declared = list(cfg.languages or [])
    for spec in cfg.sources:
        declared += [x for x in spec.declared_languages() if x not in declared]
    empty = [lang for lang in declared if sum(p1.stats.get(lang, _LangStats()).docs) == 0]
    if empty:
        details = []
        for lang in empty:
            examples = p1.skips.example_list(lang)
            details.append(
                f"{lang}: {p1.skips.describe(lang)}"
                + (f" (examples: {'; '.join(examples)})" if examples else "")
            )
        raise CorpusBuildError(
            f"no documents survived for language(s) {empty}: {'; '.join(details)}"
        )
    if not p1.stats:
        raise CorpusBuildError(
            f"the sources yielded no documents to build a corpus from ({p1.skips.describe()})"
        )
    languages = [lang for lang in p1.languages if lang in p1.stats]
    moves = p1.moves()

    t0 = time.perf_counter()
    tok_dir = tmp / TOKENIZER_DIR
    sample_info: dict[str, Any] = {}
    if reuse is None:
        assert p1.sample is not None
        sample_info = {"sample_bytes": p1.sample.n_bytes, "sample_documents": p1.sample.n_docs}
        texts = p1.sample.texts()
        p1.sample = None  # the sample's memory is free before the tokenizer trains
        backend = train_backend(texts, cfg.tokenizer)
        del texts
        write_tokenizer_dir(backend, tok_dir)
        eos_id = backend.token_to_id(EOS_TOKEN)
        special_ids = {
            "vocab_size": backend.get_vocab_size(with_added_tokens=True),
            "eos_id": eos_id,
            "bos_id": eos_id,
            "pad_id": backend.token_to_id(PAD_TOKEN),
        }
        encoder = DocumentEncoder(backend)
    else:
        shutil.copytree(cfg.tokenizer_dir, tok_dir)  # type: ignore[arg-type]
        tokenizer = load_tokenizer(tok_dir)
        special_ids = {
            "vocab_size": len(tokenizer),
            "eos_id": int(tokenizer.eos_token_id),
            "bos_id": tokenizer.bos_token_id,
            "pad_id": tokenizer.pad_token_id,
        }
        encoder = DocumentEncoder(tokenizer)
    tok_hash = tokenizer_hash(tok_dir)
    _check_reuse(out, existing_hash, tok_hash, cfg)
    seconds["tokenizer"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vocab_size = int(special_ids["vocab_size"])
    eos_id = int(special_ids["eos_id"])
    writers = {split: ShardWriter(tmp, split, languages, vocab_size, eos_id) for split in SPLITS}
    old_index = {
        i: languages.index(lang) for i, lang in enumerate(p1.languages) if lang in languages
    }
    bar = tqdm(
        total=p1.n_docs, desc="tokenizing", unit="doc", disable=not cfg.progress, leave=False
    )
    workers = cfg.workers or (
        min(4, os.cpu_count() or 1) if spill_path.stat().st_size > _PARALLEL_MIN_BYTES else 1
    )
    try:
        batches = _batches(spill_path, moves, old_index, cfg.batch_bytes)
        for meta, encoded in _encode_batches(batches, encoder, workers):
            for (lang, split, n), doc_ids in zip(meta, encoded, strict=True):
                writers[SPLITS[split]].add(languages[lang], doc_ids, n)
            bar.update(len(meta))
    finally:
        bar.close()
    os.remove(spill_path)
    entries = {split: w.close() for split, w in writers.items()}
    seconds["tokenize"] = time.perf_counter() - t0

    per_language: dict[str, dict[str, Any]] = {}
    lang_summaries = []
    for lang in languages:
        st = p1.stats[lang]
        tr = entries["train"]["languages"][lang]
        va = entries["val"]["languages"][lang]
        n_bytes = tr["bytes"] + va["bytes"]
        n_tokens = tr["tokens"] + va["tokens"]
        bpt = n_bytes / n_tokens if n_tokens else float("nan")
        skipped = dict(sorted(p1.skips.for_language(lang).items()))
        per_language[lang] = {
            "documents": tr["docs"] + va["docs"],
            "bytes": n_bytes,
            "tokens": n_tokens,
            "bytes_per_token": bpt,
            "sources": dict(st.sources),
            "skipped": skipped,
        }
        lang_summaries.append(
            LanguageSummary(
                language=lang,
                documents=tr["docs"] + va["docs"],
                train_documents=tr["docs"],
                val_documents=va["docs"],
                bytes=n_bytes,
                train_tokens=tr["tokens"],
                val_tokens=va["tokens"],
                bytes_per_token=bpt,
                skipped=skipped,
                sources=dict(st.sources),
            )
        )
    skipped_total = dict(sorted(p1.skips.by_reason().items()))
    other_files = skipped_total.pop("other_extension", 0)
    tokenizer_info = {
        **special_ids,
        "hash": tok_hash,
        "trained": reuse is None,
        **sample_info,
    }
    write_manifest(
        tmp,
        languages,
        entries,
        tokenizer_info,
        per_language,
        build={
            "config": cfg.recorded(),
            "sources": [s.describe() for s in cfg.sources],
            "skipped": skipped_total,
            "skip_examples": {
                lang: ex for lang, ex in p1.skips.examples.items() if lang != NO_LANGUAGE
            },
            "other_files": other_files,
            "source_bytes": p1.source_bytes,
            "moved_for_split_guarantee": len(moves),
        },
    )
    return CorpusSummary(
        corpus_dir=str(out),
        languages=lang_summaries,
        tokenizer_hash=tok_hash,
        vocab_size=vocab_size,
        skipped=skipped_total,
        other_files=other_files,
        source_bytes=p1.source_bytes,
        seconds=seconds,
    )
