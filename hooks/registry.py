"""The hook registry: named, reusable TransformerLens hooks that callbacks and analyzers run.

A *hook* here is an object with ``fwd_hooks(model) -> list[(hook_name, fn)]`` (the pairs
``run_with_hooks`` takes), plus optional ``reset()``, ``summary() -> dict`` and ``save(dir)``.
Register a class or factory under a name with :func:`register_hook`, or a plain TransformerLens
hook function ``fn(activation, hook)`` together with the hook points it attaches to. A user's
hook can also be named on the command line by module path (``my_pkg.my_hooks:MyHook``) or file
path (``./my_hooks.py:MyHook``) without registering it.

This module holds only the mechanics; the built-in hooks live in
:mod:`babel_interp.hooks.library`, which registers them when the ``babel_interp.hooks`` package
is imported (as it is before any of its modules).
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from babel_interp.io import write_json_atomic

HookFn = Callable[..., Any]
FwdHooks = list[tuple[str, HookFn]]


@runtime_checkable
class BabelHook(Protocol):
    """What the training callbacks and analyzers need from a hook."""

    def fwd_hooks(self, model: Any) -> FwdHooks: ...


class FunctionHook:
    """Wraps a plain ``fn(activation, hook)`` and the hook points (glob patterns) it attaches to.

    Patterns are matched against the model's hook names, e.g. ``blocks.*.hook_resid_post``.
    On TransformerLens 4.x the callback's ``hook.name`` may be a canonical name rather than the
    alias registered, so ``fn`` also receives ``name=`` with the name it was attached under when
    its signature accepts it.
    """

    def __init__(self, fn: HookFn, points: str | Iterable[str], name: str | None = None) -> None:
        self.fn = fn
        self.points = [points] if isinstance(points, str) else list(points)
        if not self.points:
            raise ValueError(f"hook {name or fn!r}: no hook points given")
        self.name = name or getattr(fn, "__name__", "hook")
        params = inspect.signature(fn).parameters
        self._wants_name = "name" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )

    def fwd_hooks(self, model: Any) -> FwdHooks:
        names = resolve_hook_points(model, self.points)
        if self._wants_name:
            return [(n, _bind_name(self.fn, n)) for n in names]
        return [(n, self.fn) for n in names]

    def summary(self) -> dict:
        return {"name": self.name, "points": self.points}


def _bind_name(fn: HookFn, name: str) -> HookFn:
    def bound(activation: Any, hook: Any) -> Any:
        return fn(activation, hook, name=name)

    return bound


def resolve_hook_points(model: Any, patterns: Iterable[str]) -> list[str]:
    """Hook names of ``model`` matching any glob pattern, in the model's order.

    A pattern without a wildcard must name an existing hook exactly (an error lists close
    names otherwise), so a typo never silently attaches to nothing.
    """
    available = list(model.hook_dict.keys())
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            hits = [n for n in available if fnmatch.fnmatchcase(n, pattern)]
        else:
            hits = [pattern] if pattern in model.hook_dict else []
        if not hits:
            stem = pattern.split(".")[-1].strip("*")
            close = [n for n in available if stem and stem in n][:6]
            raise ValueError(f"hook point {pattern!r} matches no hook of the model; e.g. {close}")
        out.extend(h for h in hits if h not in out)
    return out


_REGISTRY: dict[str, Callable[..., BabelHook]] = {}


def register_hook(
    name: str,
    obj: Any = None,
    *,
    points: str | Iterable[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """Register a hook class/factory (or a plain hook function with ``points``) under ``name``.

    Usable as a decorator: ``@register_hook("my-hook")`` on a class, or
    ``@register_hook("my-fn", points="blocks.*.hook_resid_post")`` on a function.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"hook name must be a non-empty string, got {name!r}")

    def deco(target: Any) -> Any:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"a hook named {name!r} is already registered (pass overwrite=True)")
        if inspect.isclass(target):
            factory = target
        elif points is not None:

            def factory(**kwargs: Any) -> BabelHook:
                if kwargs:
                    raise TypeError(f"function hook {name!r} takes no options, got {kwargs}")
                return FunctionHook(target, points, name=name)

        elif callable(target):
            factory = target  # a factory function returning a hook object
        else:
            raise TypeError(f"cannot register {target!r} as hook {name!r}")
        _REGISTRY[name] = factory
        return target

    return deco if obj is None else deco(obj)


def list_hooks() -> list[str]:
    """Names of all registered hooks."""
    return sorted(_REGISTRY)


def get_hook(spec: str, **kwargs: Any) -> BabelHook:
    """Instantiate a hook from a registered name or a ``module:attr`` / ``file.py:attr`` path.

    ``kwargs`` go to the hook's constructor. A ``module:attr`` that is a plain function must
    declare its hook points as a ``points`` attribute (or be registered instead).
    """
    if spec in _REGISTRY:
        hook = _REGISTRY[spec](**kwargs)
    elif ":" in spec:
        target = _import_target(spec)
        if inspect.isclass(target):
            hook = target(**kwargs)
        elif callable(target) and getattr(target, "points", None) is not None:
            hook = FunctionHook(target, target.points, name=spec)
        elif callable(target):
            hook = target(**kwargs)
        else:
            raise TypeError(f"{spec} is neither a hook class nor a function")
    else:
        raise ValueError(
            f"unknown hook {spec!r}: registered hooks are {sorted(_REGISTRY)}; "
            "or give a module path like my_pkg.hooks:MyHook or ./hooks.py:MyHook"
        )
    if not isinstance(hook, BabelHook):
        raise TypeError(f"hook {spec!r} has no fwd_hooks(model) method")
    return hook


def _import_target(spec: str) -> Any:
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise ValueError(f"hook path {spec!r} must look like module.path:attr or file.py:attr")
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_file():
            raise FileNotFoundError(f"hook file {path} does not exist")
        mod_name = f"babel_user_hooks_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{module_part} has no attribute {attr!r}") from None


def run_hooks(model: Any, tokens: Any, hooks: Iterable[BabelHook], **kwargs: Any) -> Any:
    """One forward pass of ``model`` on ``tokens`` with every hook attached; returns the output."""
    fwd: FwdHooks = []
    for hook in hooks:
        fwd.extend(hook.fwd_hooks(model))
    return model.run_with_hooks(tokens, fwd_hooks=fwd, **kwargs)


def run_hooks_by_language(
    model: Any,
    hooks: list[Any],
    tokens_by_language: dict[str, Any],
    out_dir: str | Path,
    batch_size: int = 8,
) -> dict[str, list[Path]]:
    """For each language: reset the hooks, run them over its ``[n, pos]`` token windows in
    batches, and save their results under ``out_dir/<language>/``. Used by the training
    callback and by ``babel-interp analyze hooks`` so both write the same layout."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    written = {}
    for lang, tokens in tokens_by_language.items():
        for hook in hooks:
            if callable(getattr(hook, "reset", None)):
                hook.reset()
        for i in range(0, tokens.shape[0], batch_size):
            run_hooks(model, tokens[i : i + batch_size], hooks)
        written[lang] = save_hook_results(hooks, Path(out_dir) / lang)
    return written


def save_hook_results(hooks: Iterable[Any], out_dir: str | Path) -> list[Path]:
    """Let each hook save itself (``save(dir)``) or write its ``summary()`` as JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, hook in enumerate(hooks):
        name = getattr(hook, "name", type(hook).__name__) or f"hook{i}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        if hasattr(hook, "save"):
            written.append(Path(hook.save(out / safe)))
        elif hasattr(hook, "summary"):
            written.append(write_json_atomic(out / f"{safe}.json", hook.summary()))
    return written
