"""Files that readers never see half-written, and JSON lines that survive a torn last line.

Every table, manifest and log of the project is written here: through a temporary file in the
same directory, flushed and fsynced, then renamed over the destination (``os.replace`` is
atomic on one filesystem). A process killed at any moment leaves either the old file or the
new one, plus at most a ``*.tmp`` file that the next write replaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed over ``path`` on success,
    removed on error. Parents are created. For writers that want a file name (``to_parquet``,
    ``savefig``, ``safetensors.save_file``)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(dest)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """``open`` for writing whose content appears under ``path`` only once it is complete."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically (numpy scalars and paths become numbers and strings)."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, default=_json_default)
        f.write("\n")
    return Path(path)


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Write one JSON object per line atomically."""
    with atomic_open(path) as f:
        for r in records:
            f.write(json.dumps(r, default=_json_default) + "\n")
    return Path(path)


def write_csv_atomic(path: str | os.PathLike, df: pd.DataFrame, index: bool = False) -> Path:
    """Write ``df`` as CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index)
    return Path(path)


def write_table_atomic(path: str | os.PathLike, df: pd.DataFrame, fmt: str = "csv") -> Path:
    """Write ``df`` as ``csv`` or ``parquet`` atomically; ``path``'s suffix is set to ``fmt``."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"table format must be 'csv' or 'parquet', got {fmt!r}")
    dest = Path(path).with_suffix(f".{fmt}")
    with atomic_path(dest) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return dest


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value in the file at ``path``; errors call it the ``what`` file
    (``FileNotFoundError`` when it is missing, ``ValueError`` when it does not parse)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} file {p} is not valid JSON: {exc}") from None


def read_jsonl(path: str | os.PathLike, strict: bool = False) -> list[Any]:
    """Every record of a JSON-lines file; ``[]`` when it does not exist.

    A line that does not parse is skipped (a torn last line from a killed writer) unless
    ``strict``, where it is an error naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if strict:
                raise ValueError(f"{p}:{i}: not a JSON line ({e.msg})") from e
    return out


def append_jsonl(f: IO[str], record: Any) -> None:
    """Append one record to an open JSON-lines file and flush it, so a crash loses at most the
    line being written (which :func:`read_jsonl` then skips)."""
    f.write(json.dumps(record, default=_json_default) + "\n")
    f.flush()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item") and callable(o.item):  # numpy / torch scalars
        return o.item()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Sequence):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")
