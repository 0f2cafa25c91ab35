"""Real-code sources: gathering with byte budgets, packing for another machine, unpacking,
bad input, interrupted writes, and the corpus built from them."""

from __future__ import annotations

import io
import tarfile

import pytest
from _real_fixtures import debian_dir, python_tree

from babel_interp.corpus import real
from babel_interp.corpus.real import (
    RealCorpusError,
    RealSourcesConfig,
    gather_sources,
    pack_sources,
    read_sources,
    real_corpus_config,
    unpack_sources,
)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    return python_tree(root / "py"), debian_dir(root / "debian")


def _cfg(trees, **kw):
    py, deb = trees
    return RealSourcesConfig(
        languages=["php", "go"], debian_dir=str(deb), python_trees=[str(py)], progress=False, **kw
    )


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_gather_pack_unpack_round_trip(trees, tmp_path):
    meta = gather_sources(_cfg(trees), tmp_path / "src")
    assert meta["languages"] == ["python", "php", "go"]
    for lang in ("python", "php", "go"):
        info = meta["per_language"][lang]
        assert info["files"] == info["available_files"] > 0
        on_disk = [p for p in (tmp_path / "src" / lang).rglob("*") if p.is_file()]
        assert len(on_disk) == info["files"]
        assert sum(p.stat().st_size for p in on_disk) == info["bytes"]
    # Test folders of the standard library are left out, as the corpus builder would.
    assert not any("/tests/" in p for p in _files(tmp_path / "src"))
    names = {(p["language"], p["name"], p["version"]) for p in meta["debian_packages"]}
    assert ("php", "pkg-php-0", "1.0-1") in names and len(names) == 6
    first = pack_sources(tmp_path / "src", tmp_path / "a.tar.xz")
    second = pack_sources(tmp_path / "src", tmp_path / "b.tar.xz")
    # Deterministic: the same sources give byte-identical archives; code compresses well.
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    assert first["ratio"] > 3 and second["bytes"] == first["bytes"]
    back = unpack_sources(tmp_path / "a.tar.xz", tmp_path / "restored")
    assert back == meta
    assert _files(tmp_path / "restored") == _files(tmp_path / "src")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_byte_budget_picks_files_across_packages(trees, tmp_path):
    full = gather_sources(_cfg(trees), tmp_path / "full")
    cap = full["per_language"]["php"]["bytes"] // 3
    meta = gather_sources(_cfg(trees, max_bytes_per_language={"php": cap}), tmp_path / "capped")
    php = meta["per_language"]["php"]
    assert 0 < php["bytes"] <= cap and php["files"] < php["available_files"]
    assert meta["per_language"]["go"] == full["per_language"]["go"]  # only php was capped
    packages = {p.name for p in (tmp_path / "capped" / "php").iterdir()}
    assert len(packages) == 3  # hash order spreads the budget over every package
    # The same budget selects the same files.
    again = gather_sources(_cfg(trees, max_bytes_per_language={"php": cap}), tmp_path / "again")
    assert _files(tmp_path / "again" / "php") == _files(tmp_path / "capped" / "php")
    assert again["per_language"] == meta["per_language"]


def test_corpus_from_gathered_sources(trees, tmp_path):
    from babel_interp.corpus.build import build_corpus
    from babel_interp.corpus.shards import CorpusReader

    gather_sources(_cfg(trees), tmp_path / "src")
    build_corpus(real_corpus_config(tmp_path / "src", tmp_path / "corpus", vocab_size=512))
    reader = CorpusReader(tmp_path / "corpus")
    assert reader.languages == ["python", "php", "go"]
    train = reader.split("train")
    for lang in reader.languages:
        start, end = train.language_range(lang)
        assert end - start > 1000, lang


def test_bad_input_is_named(trees, tmp_path):
    py, deb = trees
    with pytest.raises(RealCorpusError, match="C# is not available from Debian"):
        RealSourcesConfig(languages=["csharp"], debian_dir=str(deb))
    with pytest.raises(ValueError, match="must not include the primary"):
        RealSourcesConfig(languages=["python"], debian_dir=str(deb))
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        RealSourcesConfig(languages=["php"], debian_dir=str(deb), max_bytes=0)
    with pytest.raises(RealCorpusError, match="neither stdlib nor site-packages"):
        gather_sources(
            RealSourcesConfig(
                languages=["php"], debian_dir=str(deb), python_trees=[str(tmp_path / "nope")]
            ),
            tmp_path / "out",
        )
    with pytest.raises(FileNotFoundError, match="sources.json"):
        read_sources(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        unpack_sources(tmp_path / "missing.tar.xz", tmp_path / "dest")
    # An archive member that escapes the destination is refused, and nothing is left behind.
    evil = tmp_path / "evil.tar.xz"
    with tarfile.open(evil, "w:xz") as tar:
        data = b"<?php echo 1;"
        info = tarfile.TarInfo("../escaped.php")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(RealCorpusError, match="refusing member"):
        unpack_sources(evil, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path.parent / "escaped.php").exists()


def test_interrupted_gather_keeps_the_previous_folder(trees, tmp_path, monkeypatch):
    gather_sources(_cfg(trees), tmp_path / "src")
    before = _files(tmp_path / "src")

    def boom(cfg):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(real, "_debian_records", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        gather_sources(_cfg(trees, max_bytes=10_000), tmp_path / "src")
    assert _files(tmp_path / "src") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_binary_and_non_utf8_files_in_a_debian_tree_are_skipped_and_counted(trees, tmp_path):
    import json
    import shutil

    from babel_interp.corpus.build import build_corpus

    py, deb = trees
    deb = shutil.copytree(deb, tmp_path / "debian")
    pkg = deb / "php" / "pkg-php-0" / "src"
    (pkg / "blob.php").write_bytes(b"<?php\x00\x01\x02 binary payload")
    (pkg / "latin.php").write_bytes("<?php echo 'caf\xe9';\n".encode("latin-1"))
    cfg = RealSourcesConfig(
        languages=["php", "go"], debian_dir=str(deb), python_trees=[str(py)], progress=False
    )
    meta = gather_sources(cfg, tmp_path / "src")
    # Left out when the sources are gathered, counted per language and reason.
    assert meta["skipped"]["php"] == {"binary": 1, "non_utf8": 1}, meta["skipped"]
    assert read_sources(tmp_path / "src")["skipped"] == meta["skipped"]
    assert not list((tmp_path / "src" / "php").rglob("blob.php"))
    assert not list((tmp_path / "src" / "php").rglob("latin.php"))
    build_corpus(real_corpus_config(tmp_path / "src", tmp_path / "corpus", vocab_size=512))
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["per_language"]["php"]["documents"] == meta["per_language"]["php"]["files"]
