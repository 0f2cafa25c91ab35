"""The import graph of the package: no cycle, and no arrow from a lower room up to the report
or the command line. Imports inside functions count: they hide an arrow, they do not remove it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the package it is installed as (pyproject.toml's package-dir).
PACKAGES = {
    "babel_interp": "babel_interp",
    "hooks": "babel_interp.hooks",
    "experiments": "babel_interp.experiments",
}
# Rooms that compute: none of them may import the rooms that present.
LOWER = (
    "babel_interp.analysis",
    "babel_interp.optimizer",
    "babel_interp.evaluation",
    "babel_interp.training",
    "babel_interp.corpus",
    "babel_interp.model",
    "babel_interp.runs",
    "babel_interp.io",
    "babel_interp.integrity",
    "babel_interp.faults",
    "babel_interp.config",
    "babel_interp.formatting",
    "babel_interp.devices",
    "babel_interp.languages",
    "babel_interp.mixture",
    "babel_interp.hooks",
)
UPPER = ("babel_interp.report", "babel_interp.cli", "babel_interp.experiments")


def _module_name(folder: str, path: Path) -> str:
    parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGES[folder], *parts])


def _modules() -> dict[str, Path]:
    out = {}
    for folder in PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            out[_module_name(folder, path)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                # The deepest project module the name resolves to.
                parts = t.split(".")
                while parts and ".".join(parts) not in modules:
                    parts = parts[:-1]
                if parts and ".".join(parts) != mod:
                    graph[mod].add(".".join(parts))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_package_face(mod: str, target: str) -> bool:
    # A package's __init__ importing its own modules is not a cycle worth the name.
    return target.startswith(mod + ".")


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    graph = {m: {t for t in ts if not _is_package_face(m, t)} for m, ts in graph.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("lower", LOWER)
def test_no_room_that_computes_imports_one_that_presents(lower):
    graph = import_graph()
    upward = sorted(
        f"{m} -> {t}"
        for m, ts in graph.items()
        if m == lower or m.startswith(lower + ".")
        for t in ts
        if any(t == u or t.startswith(u + ".") for u in UPPER)
    )
    assert upward == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    # The checks above must be able to fail: a planted two-module cycle is found.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycles(graph) == [["a", "b"]]
    graph = import_graph()
    assert "babel_interp.runs" in graph["babel_interp.analysis.protocol"]
    assert "babel_interp.hooks.registry" in graph["babel_interp.hooks.library"]


def test_generic_top_level_packages_are_not_installed(tmp_path):
    # hooks/ and experiments/ install as babel_interp.hooks / babel_interp.experiments only:
    # outside the checkout, the generic names are not importable.
    code = (
        "import importlib.util, babel_interp.hooks, babel_interp.experiments;"
        "print(importlib.util.find_spec('hooks'), importlib.util.find_spec('experiments'),"
        " babel_interp.hooks.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:2] == ["None", "None"]
    assert out[2] == str(ROOT / "hooks" / "__init__.py")
