"""Real-code corpora without a hub: Python from the running interpreter, new languages from Debian.

A study on real code needs the same sources on every machine it runs on, including a GPU machine
that cannot reach the package registry. So the sources go through one folder of plain files:

1. :func:`gather_sources` selects the documents (Python's standard library and, optionally,
   site-packages of this interpreter; each new language's Debian packages, fetched with
   :func:`babel_interp.corpus.debian.fetch_debian`), applies the corpus filters and a byte budget
   per language, and writes them to ``SOURCES/<language>/<origin>/<path>`` with
   ``SOURCES/sources.json`` (files, bytes, origins, Debian package names, versions, licenses).
2. :func:`pack_sources` compresses that folder into one ``.tar.xz`` (code compresses about 5x, so
   tens of millions of tokens fit the 64 MiB a device call may carry); :func:`unpack_sources`
   restores it on the other machine.
3. :func:`real_corpus_config` is the :class:`~babel_interp.corpus.build.CorpusConfig` over the
   folder; the corpus builder tokenizes it as usual.

When a language's budget is smaller than its sources, files are chosen in the order of a hash of
their path (deterministic, and spread across packages rather than the alphabetically first ones).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from babel_interp.config import ConfigBase
from babel_interp.corpus.build import CorpusConfig, swap_into_place
from babel_interp.corpus.debian import DebianFetchConfig, fetch_debian, read_debian_manifest
from babel_interp.corpus.sources import FilterConfig, SkipStats, SourceSpec, resolve_language
from babel_interp.corpus.tokenizer import TokenizerConfig
from babel_interp.io import atomic_path

SOURCES_JSON = "sources.json"
SOURCES_FORMAT = 1
# Python origins named by keyword; anything else in ``python_trees`` is a path.
PYTHON_ORIGINS = ("stdlib", "site-packages")
# The folder names of those origins under SOURCES/python/ ("site-packages" itself is a folder
# name the local-tree reader skips).
_ORIGIN_DIRS = {"stdlib": "stdlib", "site-packages": "site_packages"}
UNAVAILABLE = {
    "csharp": "C# is not available from Debian (mono ships compiled assemblies, and the only "
    "C# source package, swig4.0-examples, has about 120 KB of .cs); build a C# corpus from a "
    "local tree or an HF dataset (babel-interp corpus build --source csharp=DIR or --hf SPEC) "
    "and pass it with --corpus PATH"
}


class RealCorpusError(ValueError):
    """A real-code corpus cannot be gathered as asked (the message says what to do instead)."""


@dataclass
class RealSourcesConfig(ConfigBase):
    """Which real sources a study uses and how much of each.

    ``languages`` are the new languages (from Debian); ``primary`` is Python, read from
    ``python_trees`` (``stdlib``, ``site-packages`` of the running interpreter, or directory
    paths). ``debian_dir`` holds the unpacked Debian trees (fetched there when missing;
    ``debian_cache`` keeps the ``.deb`` files). ``max_bytes`` caps each language's source bytes
    (``None``: everything); ``max_bytes_per_language`` overrides it per language.
    """

    languages: list[str]
    debian_dir: str
    primary: str = "python"
    python_trees: list[str] = field(default_factory=lambda: ["stdlib"])
    debian_cache: str | None = None
    max_bytes: int | None = None
    max_bytes_per_language: dict[str, int] = field(default_factory=dict)
    filters: FilterConfig = field(default_factory=FilterConfig)
    progress: bool = True

    def validate(self) -> None:
        """Check every field; language names become canonical, filters a config."""
        if isinstance(self.languages, str) or not isinstance(self.languages, Sequence):
            raise ValueError("RealSourcesConfig.languages must be a list of language names")
        if not self.languages:
            raise ValueError("RealSourcesConfig.languages must name at least one new language")
        try:
            langs = [resolve_language(x) for x in self.languages]
            self.primary = resolve_language(self.primary)
        except ValueError as exc:
            raise ValueError(f"RealSourcesConfig: {exc}") from None
        for lang in langs:
            if lang in UNAVAILABLE:
                raise RealCorpusError(UNAVAILABLE[lang])
        if self.primary != "python":
            raise ValueError(
                "RealSourcesConfig.primary must be python (the interpreter's own sources); "
                f"got {self.primary!r}: build other corpora with babel-interp corpus build"
            )
        if self.primary in langs:
            raise ValueError("RealSourcesConfig.languages must not include the primary language")
        self.languages = list(dict.fromkeys(langs))
        if isinstance(self.python_trees, str) or not self.python_trees:
            raise ValueError("RealSourcesConfig.python_trees must be a non-empty list")
        self.python_trees = [str(t) for t in self.python_trees]
        self.debian_dir = str(self.debian_dir)
        if self.max_bytes is not None and (
            not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool)
        ):
            raise ValueError(f"RealSourcesConfig.max_bytes must be an int, got {self.max_bytes!r}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"RealSourcesConfig.max_bytes must be positive, got {self.max_bytes}")
        caps = {}
        for lang, cap in dict(self.max_bytes_per_language).items():
            if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
                raise ValueError(
                    f"RealSourcesConfig.max_bytes_per_language[{lang!r}] must be a positive int"
                )
            caps[resolve_language(lang)] = cap
        self.max_bytes_per_language = caps
        if isinstance(self.filters, Mapping):
            self.filters = FilterConfig.from_dict(dict(self.filters))

    def cap(self, language: str) -> int | None:
        """The byte budget of ``language`` (``None``: no cap)."""
        return self.max_bytes_per_language.get(language, self.max_bytes)


def python_tree(name: str) -> tuple[str, Path]:
    """``(origin, directory)`` of a Python tree: ``stdlib``, ``site-packages`` (this
    interpreter's, or its virtualenv's) or a directory path."""
    if name == "stdlib":
        return "stdlib", Path(sysconfig.get_paths()["stdlib"])
    if name == "site-packages":
        return _ORIGIN_DIRS["site-packages"], Path(sysconfig.get_paths()["purelib"])
    path = Path(name).expanduser()
    if not path.is_dir():
        raise RealCorpusError(
            f"python tree {name!r} is neither {' nor '.join(PYTHON_ORIGINS)} nor a directory"
        )
    return path.name or "tree", path.absolute()


def ensure_debian(cfg: RealSourcesConfig) -> dict[str, list[dict[str, Any]]]:
    """The Debian trees of ``cfg.languages`` in ``cfg.debian_dir``, fetched for each language
    that has none yet; returns ``{language: [package record, ...]}``."""
    try:
        have = read_debian_manifest(cfg.debian_dir)
        fetched = {p.language for p in have.packages if p.files > 0}
    except FileNotFoundError:
        fetched = set()
    missing = [lang for lang in cfg.languages if lang not in fetched]
    if missing:
        fetch_debian(
            DebianFetchConfig(
                languages=missing,
                out=cfg.debian_dir,
                cache_dir=cfg.debian_cache,
                max_file_bytes=cfg.filters.max_bytes,
                progress=cfg.progress,
            )
        )
    summary = read_debian_manifest(cfg.debian_dir)
    out: dict[str, list[dict[str, Any]]] = {}
    for lang in cfg.languages:
        records = [p.to_dict() for p in summary.packages if p.language == lang and p.files > 0]
        if not records:
            failures = [f"{f.name}: {f.error}" for f in summary.failures if f.language == lang]
            raise RealCorpusError(
                f"no Debian source for {lang} in {cfg.debian_dir}"
                + (f" (failures: {'; '.join(failures[:3])})" if failures else "")
            )
        out[lang] = records
    return out


def _hash_key(origin: str, rel: str) -> bytes:
    return hashlib.blake2b(f"{origin}/{rel}".encode(), digest_size=8).digest()


def _specs(cfg: RealSourcesConfig) -> list[tuple[str, str, SourceSpec]]:
    """``(language, origin, spec)`` of every source tree, Python first."""
    out = []
    for name in cfg.python_trees:
        origin, path = python_tree(name)
        spec = SourceSpec(
            kind="local", path=str(path), language="python", options={"skip_tests": True}
        )
        out.append(("python", origin, spec))
    packages = ensure_debian(cfg)
    for lang in cfg.languages:
        for rec in packages[lang]:
            tree = str(Path(cfg.debian_dir) / rec["tree"])
            spec = SourceSpec(kind="local", path=tree, language=lang, options={"skip_tests": True})
            out.append((lang, rec["name"], spec))
    return out


def _atomic_dir(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))


def gather_sources(cfg: RealSourcesConfig, dest: str | os.PathLike) -> dict[str, Any]:
    """Select the documents of every language and write them under ``dest`` (see the module
    docstring); returns the content of ``dest/sources.json``.

    Two passes over each tree: the first lists the files that pass the filters with their
    sizes, the budget picks among them in hash order, the second writes the picked ones. The
    folder appears only once complete, so an interrupted gather leaves no half folder behind.
    """
    t0 = time.perf_counter()
    dest = Path(dest)
    specs = _specs(cfg)
    listing: dict[str, list[tuple[bytes, int, int, str]]] = {}  # lang -> (key, bytes, spec, rel)
    stats = SkipStats()
    for i, (lang, origin, spec) in enumerate(
        tqdm(specs, desc="listing sources", unit="tree", disable=not cfg.progress)
    ):
        for doc in spec.iterate(cfg.filters, stats):
            listing.setdefault(lang, []).append(
                (_hash_key(origin, doc.doc_id), doc.n_bytes, i, doc.doc_id)
            )
    chosen: dict[int, set[str]] = {}
    per_lang: dict[str, dict[str, Any]] = {}
    for lang in ["python", *cfg.languages]:
        files = sorted(listing.get(lang, []))
        if not files:
            raise RealCorpusError(f"no {lang} source files passed the filters")
        cap, total, n = cfg.cap(lang), 0, 0
        for _key, n_bytes, i, rel in files:
            if cap is not None and total + n_bytes > cap and n > 0:
                continue  # a smaller file may still fit the budget
            chosen.setdefault(i, set()).add(rel)
            total, n = total + n_bytes, n + 1
        per_lang[lang] = {
            "files": n,
            "bytes": total,
            "available_files": len(files),
            "available_bytes": sum(f[1] for f in files),
            "cap": cap,
        }
    tmp = _atomic_dir(dest)
    try:
        origins: dict[str, list[dict[str, Any]]] = {}
        for i, (lang, origin, spec) in enumerate(
            tqdm(specs, desc="writing sources", unit="tree", disable=not cfg.progress)
        ):
            keep = chosen.get(i, set())
            written = 0
            for doc in spec.iterate(cfg.filters, SkipStats()):
                if doc.doc_id not in keep:
                    continue
                path = tmp / lang / origin / doc.doc_id
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(doc.text, encoding="utf-8")
                written += 1
            origins.setdefault(lang, []).append(
                {"origin": origin, "path": spec.path, "files": written}
            )
        debian = _debian_records(cfg)
        meta = {
            "format": SOURCES_FORMAT,
            "languages": ["python", *cfg.languages],
            "per_language": per_lang,
            "origins": origins,
            "debian_packages": debian,
            "skipped": stats.counts,
            "config": cfg.to_dict(),
            "seconds": time.perf_counter() - t0,
        }
        (tmp / SOURCES_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _debian_records(cfg: RealSourcesConfig) -> list[dict[str, Any]]:
    summary = read_debian_manifest(cfg.debian_dir)
    return [
        {"language": p.language, "name": p.name, "version": p.version, "license": p.license}
        for p in summary.packages
        if p.language in cfg.languages
    ]


def read_sources(sources_dir: str | os.PathLike) -> dict[str, Any]:
    """``sources.json`` of a gathered (or unpacked) sources folder."""
    path = Path(sources_dir) / SOURCES_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{sources_dir} has no {SOURCES_JSON}: gather it with gather_sources or unpack an "
            "archive made by pack_sources"
        ) from None
    if meta.get("format") != SOURCES_FORMAT:
        raise ValueError(f"{path}: unknown sources format {meta.get('format')!r}")
    return meta


def pack_sources(sources_dir: str | os.PathLike, archive: str | os.PathLike) -> dict[str, Any]:
    """Compress a sources folder into ``archive`` (``.tar.xz``), written atomically; returns
    ``{"archive", "bytes", "source_bytes", "ratio", "seconds"}``."""
    t0 = time.perf_counter()
    src = Path(sources_dir)
    meta = read_sources(src)
    archive = Path(archive)
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:xz", preset=6) as tar:
        # Sorted and with fixed metadata, so the same sources give the same archive.
        for path in sorted(src.rglob("*")):
            if not path.is_file():
                continue
            info = tar.gettarinfo(str(path), arcname=path.relative_to(src).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    size = archive.stat().st_size
    source_bytes = sum(v["bytes"] for v in meta["per_language"].values())
    return {
        "archive": str(archive),
        "bytes": size,
        "source_bytes": source_bytes,
        "ratio": source_bytes / max(size, 1),
        "seconds": time.perf_counter() - t0,
    }


def unpack_sources(archive: str | os.PathLike, dest: str | os.PathLike) -> dict[str, Any]:
    """Restore a sources folder from an archive made by :func:`pack_sources`; returns its
    ``sources.json``. Members that would land outside ``dest`` (absolute paths, ``..``, links)
    are an error, and ``dest`` appears only once complete."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"sources archive {archive} does not exist")
    tmp = _atomic_dir(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts or not (member.isfile()):
                    raise RealCorpusError(
                        f"{archive}: refusing member {member.name!r} (not a plain relative file)"
                    )
                out = tmp / name
                out.parent.mkdir(parents=True, exist_ok=True)
                f = tar.extractfile(member)
                assert f is not None  # a regular file always has content
                with f, open(out, "wb") as g:
                    shutil.copyfileobj(f, g)
        meta = read_sources(tmp)
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def real_corpus_config(
    sources_dir: str | os.PathLike,
    out: str | os.PathLike,
    vocab_size: int = 8192,
    seed: int = 0,
    **kwargs: Any,
) -> CorpusConfig:
    """The :class:`~babel_interp.corpus.build.CorpusConfig` of a gathered sources folder: one
    local source per language folder, Python first (label 0)."""
    src = Path(sources_dir).absolute()
    meta = read_sources(src)
    langs = list(meta["languages"])
    sources = [SourceSpec(kind="local", path=str(src / lang), language=lang) for lang in langs]
    return CorpusConfig(
        out=str(out),
        sources=sources,
        languages=langs,
        tokenizer=TokenizerConfig(vocab_size=vocab_size),
        seed=seed,
        **kwargs,
    )
