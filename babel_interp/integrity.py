"""Manifests of file sizes and SHA-256 digests: how a directory proves it is whole.

A checkpoint (and anything else written as a directory of files) carries a manifest listing
every file's size and SHA-256, written last. :func:`verify_manifest` re-reads the files and
names each one that is missing, of the wrong size (a copy cut short, a full disk) or of other
content. Files that legitimately change after the manifest was written (a checkpoint's
``trainer_state.json``, rewritten when its callbacks finish) are listed as *mutable*: their
presence is checked, their content is the caller's to validate.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.io import write_json_atomic

__all__ = [
    "CHECKPOINT_MANIFEST",
    "MANIFEST_FORMAT",
    "IntegrityError",
    "Verification",
    "build_manifest",
    "read_manifest",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
]

MANIFEST_FORMAT = 1
# The manifest of a checkpoint directory (babel_interp.training.checkpoints writes it last).
CHECKPOINT_MANIFEST = "checkpoint_manifest.json"
_CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A directory whose files do not match its manifest (or that has none)."""


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _sha256_many(paths: list[Path]) -> list[str]:
    # hashlib releases the GIL on large updates: files hash in parallel, one per core.
    if len(paths) < 2:
        return [sha256_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1)) as pool:
        return list(pool.map(sha256_file, paths))


def _files(directory: Path, exclude: set[str]) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(directory):
        for name in names:
            rel = Path(dirpath, name).relative_to(directory).as_posix()
            if rel not in exclude:
                out.append(rel)
    return sorted(out)


def build_manifest(
    directory: str | os.PathLike,
    exclude: Iterable[str] = (),
    mutable: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of every file under ``directory`` (paths relative, POSIX separators).

    ``exclude`` names files left out entirely (the manifest itself); ``mutable`` names files
    recorded by presence only. ``extra`` adds fields (e.g. the checkpoint's step).
    """
    root = Path(directory)
    mutable = set(mutable)
    names = _files(root, set(exclude) | mutable)
    digests = _sha256_many([root / rel for rel in names])
    files: dict[str, dict[str, Any]] = {
        rel: {"size": (root / rel).stat().st_size, "sha256": h}
        for rel, h in zip(names, digests, strict=True)
    }
    return {
        "format": MANIFEST_FORMAT,
        **dict(extra or {}),
        "files": files,
        "mutable": sorted(mutable),
    }


def write_manifest(
    directory: str | os.PathLike,
    name: str,
    mutable: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``directory/name``, the manifest of every other file there, atomically."""
    manifest = build_manifest(directory, exclude=[name], mutable=mutable, extra=extra)
    path = Path(directory) / name
    write_json_atomic(path, manifest)
    return path


def read_manifest(directory: str | os.PathLike, name: str) -> dict[str, Any]:
    """The manifest ``directory/name``; a clear error when it is missing or unreadable."""
    path = Path(directory) / name
    if not path.is_file():
        raise IntegrityError(f"{path} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(f"{path} is not a manifest (no 'files' mapping)")
    return manifest


@dataclass
class Verification:
    """What :func:`verify_manifest` found: one sentence per problem, each naming its file."""

    directory: Path
    problems: list[str] = field(default_factory=list)
    checked_files: int = 0
    checked_bytes: int = 0
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """``ok`` or the problems joined into one line."""
        return "ok" if self.ok else "; ".join(self.problems)

    def raise_if_bad(self, what: str = "") -> None:
        """Raise :class:`IntegrityError` naming the directory and every problem."""
        if not self.ok:
            head = f"{what} {self.directory}" if what else str(self.directory)
            raise IntegrityError(f"{head} failed verification: {self.describe()}")


def verify_manifest(
    directory: str | os.PathLike,
    name: str,
    only: Callable[[str], bool] | None = None,
) -> Verification:
    """Check the files of ``directory`` against its manifest ``name``.

    ``only`` restricts the check to the files it accepts (e.g. the weights a loader reads).
    Mutable files are checked for presence. Never raises for a bad directory: the problems are
    in the result.
    """
    root = Path(directory)
    result = Verification(root)
    try:
        manifest = read_manifest(root, name)
    except IntegrityError as exc:
        result.problems.append(str(exc))
        return result
    result.manifest = manifest
    to_hash: list[tuple[Path, Any]] = []
    for rel, rec in sorted(manifest["files"].items()):
        if only is not None and not only(rel):
            continue
        path = root / rel
        if not path.is_file():
            result.problems.append(f"{path} is missing")
            continue
        size = path.stat().st_size
        if size != int(rec.get("size", -1)):
            result.problems.append(
                f"{path} is {size} bytes, its manifest says {rec.get('size')} (truncated or "
                "overwritten)"
            )
            continue
        result.checked_files += 1
        result.checked_bytes += size
        to_hash.append((path, rec.get("sha256")))
    # Sizes first (cheap, and what a cut-short copy gets wrong), then every digest.
    digests = _sha256_many([p for p, _ in to_hash])
    for (path, want), got in zip(to_hash, digests, strict=True):
        if got != want:
            result.problems.append(f"{path} does not match its SHA-256 in {name}")
    for rel in manifest.get("mutable", []):
        if (only is None or only(rel)) and not (root / rel).is_file():
            result.problems.append(f"{root / rel} is missing")
    return result
