"""Command-line flags derived from the fields of a config dataclass.

:func:`add_config_arguments` adds one flag per field (``steps`` -> ``--steps``), typed from the
field's annotation, and :func:`config_from_arguments` builds the config back from the parsed
arguments, where only the flags given on the command line override a base config. So a command
never restates a config's fields, types or defaults::

    add_config_arguments(parser, TrainConfig, exclude=("out",), help=TRAIN_HELP)
    args = parser.parse_args()
    cfg = config_from_arguments(TrainConfig, args, base={"out": args.out})

Annotations and the flags they give:

* ``int``, ``float``, ``str``, ``Path``: one value of that type;
* ``bool``: ``--name`` and ``--no-name``;
* ``Literal["a", "b"]``: one of the listed values (argparse checks the choice);
* ``X | None``: as ``X`` (leaving the flag out keeps the base's value, ``None`` included);
* ``tuple[X, ...]``, ``list[X]``: comma-separated values (``--steps 0,10,100``).

Fields of any other type (nested configs, mappings) get no flag: give them flags of their own,
or add the nested config's flags with a ``prefix``. Help comes from ``help[field]``, else the
field's ``metadata["help"]``, else a ``field: text`` line of the class docstring (plain text:
a ``%`` is shown as is); the field's default is appended.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["add_config_arguments", "config_from_arguments"]

C = TypeVar("C")

# Where the parsed namespace remembers which flags belong to which config (a parser default,
# so every namespace the parser fills carries it).
_REGISTRY = "_config_arguments"
_SCALARS: dict[type, Callable[[str], Any]] = {int: int, float: float, str: str, Path: Path}


@dataclasses.dataclass(frozen=True)
class _FlagType:
    """How one field reads from the command line."""

    kind: str  # "bool", "value" or "sequence"
    convert: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    container: type = tuple


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_cls: type,
    *,
    exclude: Collection[str] = (),
    only: Collection[str] | None = None,
    prefix: str = "",
    help: Mapping[str, str] | None = None,
    flags: Mapping[str, str | tuple[str, ...]] | None = None,
) -> dict[str, str]:
    """Add a flag for each field of the dataclass ``config_cls``; returns field -> dest.

    ``exclude`` leaves fields out; ``only`` adds just the named fields (to spread one config's
    flags over argument groups: call once per group). ``prefix`` goes in front of every flag
    and dest (``prefix="lr-"``: ``--lr-kind``, dest ``lr_kind``), so two configs with a field
    of the same name can share a parser. ``help`` maps field names to help texts. ``flags``
    gives a field other option strings than the derived one (``{"warmup_steps": "--warmup"}``).
    Every flag defaults to ``None``, which :func:`config_from_arguments` reads as "not given".
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    names = list(fields) if only is None else list(only)
    for what, given in (("exclude", exclude), ("only", only or ()), ("flags", flags or {})):
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ValueError(f"{what} names no field of {config_cls.__name__}: {unknown}")
    hints = _hints(config_cls)
    doc_help = _docstring_help(config_cls)
    dest_prefix = prefix.replace("-", "_")
    added: dict[str, str] = {}
    for name in names:
        if name in exclude:
            continue
        flag_type = _flag_type(hints.get(name))
        if flag_type is None:
            if only is not None:
                raise ValueError(
                    f"{config_cls.__name__}.{name} ({hints.get(name)}) has no command-line form"
                )
            continue
        f = fields[name]
        text = (help or {}).get(name) or f.metadata.get("help") or doc_help.get(name, "")
        text = _with_default(text.replace("%", "%%"), _default(f))  # argparse %-formats help
        dest = f"{dest_prefix}{name}"
        option = (flags or {}).get(name) or f"--{prefix}{name.replace('_', '-')}"
        options = (option,) if isinstance(option, str) else tuple(option)
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": text}
        if flag_type.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif flag_type.kind == "sequence":
            kwargs["type"] = _comma_list(flag_type.convert, flag_type.container)
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = flag_type.convert
            if flag_type.choices is not None:
                kwargs["choices"] = flag_type.choices
            else:  # named after the flag, which may differ from the dest
                kwargs["metavar"] = options[0].lstrip("-").replace("-", "_").upper()
        parser.add_argument(*options, **kwargs)
        added[name] = dest
    registry = dict(parser.get_default(_REGISTRY) or {})
    key = _key(config_cls, prefix)
    registry[key] = {**registry.get(key, {}), **added}
    parser.set_defaults(**{_REGISTRY: registry})
    return added


def config_from_arguments(
    config_cls: type[C],
    args: argparse.Namespace,
    base: Any = None,
    *,
    prefix: str = "",
) -> C:
    """``config_cls`` from ``base`` with every flag the user gave (not ``None``) applied.

    ``base`` is a config instance, a dict of fields (a config's ``to_dict()``, a JSON file), or
    ``None`` (the class defaults). The flags are those :func:`add_config_arguments` added for
    ``config_cls`` with the same ``prefix``. Values are checked by the config itself.
    """
    registry = getattr(args, _REGISTRY, None) or {}
    dests = registry.get(_key(config_cls, prefix))
    if dests is None:
        raise ValueError(
            f"no flags of {config_cls.__name__} (prefix {prefix!r}) were added to this parser"
        )
    if base is None:
        values: dict[str, Any] = {}
    elif isinstance(base, Mapping):
        values = dict(base)
    elif isinstance(base, config_cls):
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    else:
        raise TypeError(
            f"base must be a {config_cls.__name__}, a dict or None, got {type(base).__name__}"
        )
    for name, dest in dests.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[name] = value
    from_dict = getattr(config_cls, "from_dict", None)
    return from_dict(values) if callable(from_dict) else config_cls(**values)


def _key(config_cls: type, prefix: str) -> str:
    return f"{config_cls.__module__}.{config_cls.__qualname__}:{prefix}"


def _hints(config_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception as exc:  # a forward reference the module cannot resolve
        raise ValueError(f"cannot read the field types of {config_cls.__name__}: {exc}") from exc


def _flag_type(hint: Any) -> _FlagType | None:
    """The command-line form of a field annotation, or None where it has none."""
    if hint is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _flag_type(args[0]) if len(args) == 1 else None
    if hint is bool:
        return _FlagType("bool")
    if hint in _SCALARS:
        return _FlagType("value", _SCALARS[hint])
    if origin is Literal:
        choices = typing.get_args(hint)
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in _SCALARS:
            return None
        return _FlagType("value", _SCALARS[next(iter(kinds))], choices=choices)
    if hint in (tuple, list):
        return _FlagType("sequence", str, container=hint)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return None  # a fixed-length tuple has no single item type
        item = _flag_type(args[0]) if args else _FlagType("value", str)
        if item is None or item.kind != "value" or item.choices is not None:
            return None
        return _FlagType("sequence", item.convert, container=origin)
    return None


def _comma_list(convert: Callable[[str], Any], container: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return container(convert(x.strip()) for x in text.split(",") if x.strip())

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _with_default(text: str, default: Any) -> str:
    if default is None or default == [] or default == ():
        return text
    if isinstance(default, bool):
        shown = "on" if default else "off"
    elif isinstance(default, (list, tuple)):
        shown = ",".join(map(str, default))
    else:
        shown = str(default)
    suffix = f"default: {shown}".replace("%", "%%")
    return f"{text} ({suffix})" if text else suffix


def _docstring_help(config_cls: type) -> dict[str, str]:
    """``field: text`` lines of the class docstring (an ``Attributes:`` section, say)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    out = {}
    for line in (config_cls.__doc__ or "").splitlines():
        m = re.match(r"^\s*`{0,2}(\w+)`{0,2}(?:\s*\([^)]*\))?\s*:\s+(\S.*)$", line)
        if m and m.group(1) in names:
            out[m.group(1)] = m.group(2).strip()
    return out
