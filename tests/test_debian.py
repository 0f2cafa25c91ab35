"""Debian package corpora: missing tools, bad languages, license parsing, manifest, a real fetch."""

from __future__ import annotations

import json
import shutil

import pytest

from babel_interp.cli import build_parser, main
from babel_interp.corpus.debian import (
    MANIFEST_NAME,
    DebianFetchConfig,
    DebianFetchError,
    FetchFailure,
    FetchSummary,
    PackageRecord,
    fetch_debian,
    parse_license,
    read_debian_manifest,
    write_debian_manifest,
)

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: getID3()
Source: https://github.com/JamesHeinrich/getID3
Files-Excluded: helperapps/*.dll
                helperapps/*.exe

Files: *
Copyright: 2001-2005, James Heinrich <info@getid3.org>
License: GPL-1+ or LGPL-3 or MPL-2.0

Files: debian/*
Copyright: 2006, Romain Beauxis <toots@rastageeks.org>
License: GPL-2+

License: GPL-1+
 This package is free software; you can redistribute it and/or modify
 it under the terms of the GNU General Public License.
"""

FREEFORM = """\
This package was debianized by Jane Doe on Mon, 1 Jan 2001.

It was downloaded from https://example.org/

Upstream Author: John Roe
"""


def test_missing_apt_get_names_the_tool_and_the_alternatives(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    cfg = DebianFetchConfig(languages=["php"], out=str(tmp_path / "out"), progress=False)
    with pytest.raises(DebianFetchError) as err:
        fetch_debian(cfg)
    msg = str(err.value)
    assert "'apt-get'" in msg and "--hf" in msg and "--source LANG=PATH" in msg
    assert not (tmp_path / "out").exists()  # nothing created before the check

    rc = main(["corpus", "fetch-debian", "--language", "php", "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "'apt-get' was not found on PATH" in capsys.readouterr().err


def test_unknown_language_and_language_without_packages(tmp_path):
    with pytest.raises(ValueError, match="no Debian package list for 'klingon'.*php"):
        DebianFetchConfig(languages=["klingon"], out=str(tmp_path))
    # C# is a known language, but Debian ships almost no C# source.
    with pytest.raises(ValueError, match="'csharp'; supported: cpp, go, java, lua, php"):
        DebianFetchConfig(languages=["csharp"], out=str(tmp_path))
    # An explicit package list makes any registry language fetchable.
    cfg = DebianFetchConfig(
        languages=["csharp"], out=str(tmp_path), packages={"csharp": ["swig4.0-examples"]}
    )
    assert cfg.package_list("csharp") == ["swig4.0-examples"]
    with pytest.raises(ValueError, match="not a Debian package name"):
        DebianFetchConfig(languages=["php"], out=str(tmp_path), packages={"php": ["Bad Name"]})
    with pytest.raises(ValueError, match="max_file_bytes"):
        DebianFetchConfig(languages=["php"], out=str(tmp_path), max_file_bytes=0)
    # Aliases resolve; the config round-trips.
    cfg = DebianFetchConfig(languages=["golang", "php"], out=str(tmp_path))
    assert cfg.languages == ["go", "php"]
    assert DebianFetchConfig.from_dict(cfg.to_dict()) == cfg
    # "lang" folders are translations in PHP but a code package in Java (java/lang).
    assert "lang" in cfg.dropped_dirs("php") and "lang" not in cfg.dropped_dirs("java")


def test_license_parsing(tmp_path):
    path = tmp_path / "copyright"
    path.write_text(DEP5, encoding="utf-8")
    assert parse_license(path.read_text(encoding="utf-8")) == "GPL-1+ or LGPL-3 or MPL-2.0"
    assert parse_license(FREEFORM) == (
        "This package was debianized by Jane Doe on Mon, 1 Jan 2001. "
        "It was downloaded from https://example.org/ Upstream Author: John Roe"
    )
    assert len(parse_license("word " * 200, max_chars=50)) == 50
    assert parse_license("\n\n") == "unknown"


def test_manifest_round_trip(tmp_path):
    summary = FetchSummary(
        out_dir=str(tmp_path),
        packages=[
            PackageRecord(
                name="php-monolog",
                language="php",
                version="2.8.0-1",
                license="Expat",
                deb="php-monolog_2.8.0-1_all.deb",
                tree="php/php-monolog",
                files=120,
                bytes=456_789,
                dropped={"dirs": 2},
            )
        ],
        failures=[FetchFailure(name="php-gone", language="php", error="E: Unable to locate")],
        seconds=1.5,
    )
    cfg = DebianFetchConfig(languages=["php"], out=str(tmp_path))
    path = write_debian_manifest(summary, cfg)
    assert path == tmp_path / MANIFEST_NAME
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]  # no temp file left
    back = read_debian_manifest(tmp_path)
    assert back == summary
    assert json.loads(path.read_text())["config"]["languages"] == ["php"]
    assert "php-monolog" in back.table() and "FAILED php/php-gone" in back.table()
    path.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_debian_manifest(tmp_path)


def test_real_fetch_of_one_php_package(tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("apt-get/dpkg not available on this machine")
    out = tmp_path / "debian"
    cfg = DebianFetchConfig(
        languages=["php"],
        out=str(out),
        packages={"php": ["php-getid3"]},
        update_lists=False,  # a test never changes the system's package lists
        progress=False,
    )
    summary = fetch_debian(cfg)
    if summary.failures:
        pytest.skip(
            f"apt-get download php-getid3 failed (no network or no package lists; run "
            f"'apt-get update' once): {summary.failures[0].error}"
        )
    (rec,) = summary.packages
    assert rec.name == "php-getid3" and rec.version and rec.license != "unknown"
    tree = out / "php" / "php-getid3"
    php_files = [p for p in tree.rglob("*") if p.is_file() and p.suffix == ".php"]
    assert rec.files == len(php_files) > 10
    assert rec.bytes == sum(p.stat().st_size for p in php_files)
    assert all(p.stat().st_size <= cfg.max_file_bytes for p in php_files)
    others = {p.name for p in tree.rglob("*") if p.is_file() and p.suffix != ".php"}
    assert others <= {"copyright"}
    assert not any(p.is_symlink() for p in tree.rglob("*"))
    assert read_debian_manifest(out).packages == summary.packages
    # A second fetch reuses the cached .deb and replaces the tree.
    debs = list((out / ".debs").glob("php-getid3_*.deb"))
    assert len(debs) == 1
    mtime = debs[0].stat().st_mtime_ns
    again = fetch_debian(cfg)
    assert again.packages == summary.packages and debs[0].stat().st_mtime_ns == mtime
    assert not [p for p in (out / "php").iterdir() if p.name.startswith(".")]


def test_fetch_then_build_a_corpus_from_the_command_line(tmp_path, capsys):
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("apt-get/dpkg not available on this machine")
    from babel_interp.corpus.shards import CorpusReader

    out, corpus = tmp_path / "debian", tmp_path / "corpus"
    argv = ["corpus", "fetch-debian", "--language", "php", "--packages", "php=php-getid3"]
    argv += ["--out", str(out), "--build", str(corpus), "--vocab-size", "512", "--quiet"]
    code = main(argv)
    printed = capsys.readouterr().out
    if code != 0 and "FAILED" in printed:
        pytest.skip(f"apt-get download php-getid3 failed: {printed.splitlines()[-1]}")
    assert code == 0
    reader = CorpusReader(corpus)
    # Python from this interpreter's standard library, PHP from the package just fetched.
    assert reader.languages == ["python", "php"]
    train = reader.split("train")
    for lang in reader.languages:
        start, end = train.language_range(lang)
        assert end - start > 10_000, lang
    assert "provenance of the php trees" in printed and str(out) in printed


def test_fetching_never_updates_the_package_lists_unless_asked(tmp_path):
    # `apt-get update` changes the system: only --update-lists (update_lists=True) may run it.
    assert DebianFetchConfig(languages=["php"], out=str(tmp_path / "o")).update_lists is False
    args = build_parser().parse_args(["corpus", "fetch-debian", "--language", "php", "--out", "o"])
    assert args.update_lists is False
    args = build_parser().parse_args(
        ["corpus", "fetch-debian", "--language", "php", "--out", "o", "--update-lists"]
    )
    assert args.update_lists is True
