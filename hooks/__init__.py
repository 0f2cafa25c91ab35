"""Reusable TransformerLens hooks and their registry: the place users extend babel-interp.

>>> from babel_interp.hooks import get_hook, list_hooks, register_hook, run_hooks

Built-in hooks (``babel_interp.hooks.library``): ``residual-recorder``, ``activation-norms``,
``neuron-stats``,
``zero-ablation``, ``mean-ablation``, ``activation-patch``, ``steering-vector``.
A user's hook is a class with ``fwd_hooks(model)`` (see
:class:`babel_interp.hooks.registry.BabelHook`) or a plain hook function registered with its hook
points.
"""

from babel_interp.hooks import library  # noqa: F401  (importing it registers the built-in hooks)
from babel_interp.hooks.registry import (
    BabelHook,
    FunctionHook,
    get_hook,
    list_hooks,
    register_hook,
    resolve_hook_points,
    run_hooks,
    save_hook_results,
)

__all__ = [
    "BabelHook",
    "FunctionHook",
    "get_hook",
    "list_hooks",
    "register_hook",
    "resolve_hook_points",
    "run_hooks",
    "save_hook_results",
]
