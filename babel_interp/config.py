"""One base for the project's configuration dataclasses.

A config is a ``@dataclass`` that also derives from :class:`ConfigBase`. It gets

* ``to_dict()``: JSON-ready (tuples become lists, paths strings, nested configs dicts);
* ``from_dict(d)``: the inverse, where an unknown field is an error naming it and the known
  ones, nested configs are rebuilt from their dicts and list values of tuple fields become
  tuples again;
* ``validate()``: called after construction; subclasses override it to check their fields
  (with :func:`check_int`, :func:`check_float`, :func:`check_choice`, :func:`check_dir_path`)
  and keep the error messages of the form ``ClassName.field must ...``.

A dataclass that defines ``__post_init__`` itself should call ``super().__post_init__()`` or
``self.validate()`` from it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C", bound="ConfigBase")


class ConfigBase:
    """Serialization and validation shared by every config dataclass (see the module doc)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the fields; raise ``ValueError`` naming the class and the field. No-op here."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; an unknown field is an error that names it."""
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__} must be read from a dict, got {type(d).__name__}")
        reject_unknown(cls, d)
        hints = _hints(cls)
        kwargs = {k: _coerce(hints.get(k), v) for k, v in d.items()}
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` (validated like a new config; unknown names are errors)."""
        reject_unknown(type(self), changes)
        return dataclasses.replace(self, **changes)


def reject_unknown(cls: type, d: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the keys of ``d`` that are not fields of ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")


def check_int(owner: str, name: str, value: Any, minimum: int | None = None) -> None:
    """``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def check_float(
    owner: str, name: str, value: Any, lo: float = -math.inf, hi: float = math.inf
) -> None:
    """``value`` is a finite number in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not (lo <= value <= hi):
        raise ValueError(f"{owner}.{name} must be in [{lo}, {hi}], got {value!r}")


def check_choice(owner: str, name: str, value: Any, choices: Collection[Any]) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"{owner}.{name} must be one of {sorted(map(str, choices))}, got {value!r}"
        )


def check_dir_path(owner: str, name: str, value: Any) -> str:
    """``value`` is a non-empty path (``str`` or ``os.PathLike``); returns it as a ``str``."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{owner}.{name} must be a directory path, got {value!r}")
    return str(value)


def _plain(v: Any) -> Any:
    if isinstance(v, ConfigBase):
        return v.to_dict()
    if hasattr(v, "to_dict") and callable(v.to_dict) and not isinstance(v, type):
        return v.to_dict()
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (Path, os.PathLike)):
        return os.fspath(v)
    return v


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a hint naming a type only imported for checking: no coercion for it
        return {}


def _coerce(hint: Any, value: Any) -> Any:
    """``value`` read from JSON, rebuilt as ``hint`` where the JSON form loses the type."""
    if hint is None or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            out = _coerce(arg, value)
            if out is not value:
                return out
        return value
    if isinstance(hint, type) and isinstance(value, dict) and hasattr(hint, "from_dict"):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_coerce(item, x) for x in value)
    if hint is tuple and isinstance(value, list):
        return tuple(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    return value
