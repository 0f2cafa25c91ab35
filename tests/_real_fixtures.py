"""Real-code source fixtures without apt: a Python tree copied from the standard library and
Debian-style package trees (with a fetch manifest) for PHP and Go.

The PHP and Go files are rendered by the synthetic generator (valid code, dense in built-in
calls, so probes can be mined from them); the Python files are the interpreter's own modules.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from babel_interp.corpus.debian import FetchSummary, PackageRecord, write_debian_manifest

# Pure-Python standard-library packages: real code, a few hundred KB together.
STDLIB_PACKAGES = ("json", "email", "html", "http", "urllib", "logging", "xml")


def python_tree(dest: Path) -> Path:
    """A copy of a few standard-library packages under ``dest``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_PACKAGES:
        shutil.copytree(stdlib / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def debian_dir(dest: Path, languages=("php", "go"), docs: int = 160, packages: int = 3) -> Path:
    """``dest`` laid out like a ``fetch_debian`` output: ``LANG/PACKAGE/...`` trees and
    ``debian_manifest.json``, each language's documents spread over ``packages`` packages."""
    from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents

    cfg = SyntheticConfig(languages=tuple(languages), docs_per_language=docs, seed=3)
    ext = {"php": ".php", "go": ".go"}
    records = []
    counts: dict[tuple[str, int], list[int]] = {}
    for i, doc in enumerate(generate_documents(cfg)):
        k = i % packages
        tree = dest / doc.language / f"pkg-{doc.language}-{k}"
        path = tree / "src" / f"file_{i:05d}{ext[doc.language]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc.text, encoding="utf-8")
        counts.setdefault((doc.language, k), []).append(len(doc.text.encode()))
    for (lang, k), sizes in sorted(counts.items()):
        records.append(
            PackageRecord(
                name=f"pkg-{lang}-{k}",
                language=lang,
                version=f"1.{k}-1",
                license="Expat",
                deb=f"pkg-{lang}-{k}_1.{k}-1_all.deb",
                tree=f"{lang}/pkg-{lang}-{k}",
                files=len(sizes),
                bytes=sum(sizes),
            )
        )
    write_debian_manifest(FetchSummary(out_dir=str(dest), packages=records))
    return dest
