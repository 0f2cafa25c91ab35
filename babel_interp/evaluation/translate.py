"""Translate Python execution problems (HumanEval-style) into PHP, Go, C++ and C#.

The method is MultiPL-E's (Cassano et al., *MultiPL-E: A Scalable and Polyglot Approach to
Benchmarking Neural Code Generation*, IEEE TSE 2023): a problem is translated, never its
solution. From the Python prompt and test code the translator takes

* the **signature**: the function's name (kept as it is, snake_case included), its parameters and
  the types of parameters and result. Types come from the annotations where the prompt has them
  and are *inferred from the test values* where it does not (most HumanEval prompts after
  HumanEval/30 are unannotated): every argument and every expected result of every check is
  typed (``[1, 2]`` is ``list[int]``, ``None`` makes a type optional, an ``int`` meeting a
  ``float`` is a ``float``) and the types of a position are unified. A position whose values do
  not unify (``int`` and ``str``), ``Any``, or an element type no value pins down has no type in
  a typed language, and the problem is skipped there, with the reason (unless dropping a single
  check makes every position typed: HumanEval/78 passes ``[]`` once where every other check
  passes a string). ``int`` is a 64-bit integer (C++/C# ``long``), ``float`` a ``double``,
  ``Optional[T]`` C++'s ``std::optional<T>``, C#'s ``T?`` (or the reference type), Go's ``*T``;
  a tuple is C++'s ``std::tuple``, C#'s ``Tuple``, and in Go a slice when its elements share a
  type. PHP prompts carry no types (as in MultiPL-E), so only the prompt's shape limits PHP;
* the **docstring**, carried as a comment in the language's doc-comment style, with ``True`` /
  ``False`` / ``None`` and the container nouns in the language's spelling, and the examples that
  call the function (``>>> f(...)`` with its output line, ``f(...) == ...``, ``f(...) ➞ ...``)
  rewritten with the language's literals when they parse;
* the **checks**: each ``assert candidate(...) == value`` of the test code (also ``is``,
  ``assert candidate(...)``, ``assert not candidate(...)``, ``tuple(candidate(...)) ==
  tuple(...)``, and ``abs(candidate(...) - value) < eps``), with arguments and expected value
  evaluated by a small constant evaluator (arithmetic, ``str()``, loop variables of
  ``for x in range(...)`` loops, which are unrolled). A check whose values are not constants
  (random inputs, a call to another function) is dropped and listed in the problem's
  ``meta["dropped_checks"]``. A problem left with no check, or whose prompt defines helper
  functions the solution is meant to call (HumanEval/10, 32, 38, 50), is skipped.

Each check becomes the language's literals and a deep comparison (PHP and C# through a small
structural-equality helper, Go through a ``reflect`` helper that also equates nil and empty
slices, C++ through ``==`` on ``std::vector`` / ``std::map`` / ``std::tuple`` /
``std::optional``). A failed check prints which check failed to stderr and exits with status
:data:`~babel_interp.evaluation.problems.WRONG_ANSWER_EXIT` (3).

The program is ``prompt + completion + "\\n" + tests``. In every language the prompt ends with
the opening brace of the function and the completion is the function's *body*: a stop sequence
at the function's closing brace (``"\\n}"``, C#'s ``"\\n    }"`` inside ``class Problem``) cuts
whatever a model writes after the body, and the tests begin by closing the function. Go's prompt
imports the packages a solution usually needs (``fmt``, ``math``, ``sort``, ``strconv``,
``strings``) besides those the tests use, and the tests reference every one of them, since an
unused import does not compile in Go.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from babel_interp.evaluation.problems import WRONG_ANSWER_EXIT
from babel_interp.languages import get_language

__all__ = [
    "TARGET_LANGUAGES",
    "Check",
    "ParsedProblem",
    "PyType",
    "Untranslatable",
    "parse_problem",
    "render_problem",
    "type_of_value",
    "unify",
]

#: Languages the translator writes (the project's canonical names).
TARGET_LANGUAGES: tuple[str, ...] = ("php", "go", "cpp", "csharp")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Untranslatable(Exception):
    """A problem (or one check of it) that cannot be written in a language; the message says why."""


# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PyType:
    """A Python type as far as the translation needs it.

    ``kind`` is one of ``int``, ``float``, ``str``, ``bool``, ``none``, ``list``, ``tuple``,
    ``dict``, ``optional``, ``unknown`` (no value says: the element type of ``[]``) and ``any``
    (``Any``, or values that do not unify). ``args`` are the element types.
    """

    kind: str
    args: tuple[PyType, ...] = ()

    def __str__(self) -> str:
        names = {"list": "List", "tuple": "Tuple", "dict": "Dict", "optional": "Optional"}
        if self.kind in names:
            return f"{names[self.kind]}[{', '.join(str(a) for a in self.args)}]"
        return {"none": "None", "any": "Any", "unknown": "?"}.get(self.kind, self.kind)

    def contains(self, kind: str) -> bool:
        """Whether ``kind`` occurs anywhere in this type."""
        return self.kind == kind or any(a.contains(kind) for a in self.args)


INT, FLOAT, STR, BOOL = PyType("int"), PyType("float"), PyType("str"), PyType("bool")
NONE, ANY, UNKNOWN = PyType("none"), PyType("any"), PyType("unknown")


def _list(t: PyType) -> PyType:
    return PyType("list", (t,))


def _optional(t: PyType) -> PyType:
    if t.kind in ("optional", "none", "any"):
        return t
    return PyType("optional", (t,))


def type_of_value(value: Any) -> PyType:
    """The type of a constant test value (``bool`` before ``int``: Python's bools are ints)."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if value is None:
        return NONE
    if isinstance(value, list):
        return _list(_unify_all(type_of_value(v) for v in value))
    if isinstance(value, tuple):
        return PyType("tuple", tuple(type_of_value(v) for v in value))
    if isinstance(value, dict):
        return PyType(
            "dict",
            (
                _unify_all(type_of_value(k) for k in value),
                _unify_all(map(type_of_value, value.values())),
            ),
        )
    return ANY


def _unify_all(types) -> PyType:
    out = UNKNOWN
    for t in types:
        out = unify(out, t)
    return out


def unify(a: PyType, b: PyType) -> PyType:
    """The narrowest type holding values of both ``a`` and ``b`` (``any`` when there is none)."""
    if a == b:
        return a
    if a.kind == "unknown":
        return b
    if b.kind == "unknown":
        return a
    if "any" in (a.kind, b.kind):
        return ANY
    if {a.kind, b.kind} == {"int", "float"}:
        return FLOAT
    if a.kind == "none":
        return _optional(b)
    if b.kind == "none":
        return _optional(a)
    if a.kind == "optional" or b.kind == "optional":
        inner_a = a.args[0] if a.kind == "optional" else a
        inner_b = b.args[0] if b.kind == "optional" else b
        return _optional(unify(inner_a, inner_b))
    if a.kind == b.kind and a.kind in ("list", "dict"):
        args = tuple(unify(x, y) for x, y in zip(a.args, b.args, strict=True))
        return ANY if any(x.kind == "any" for x in args) else PyType(a.kind, args)
    if a.kind == b.kind == "tuple" and len(a.args) == len(b.args):
        args = tuple(unify(x, y) for x, y in zip(a.args, b.args, strict=True))
        return ANY if any(x.kind == "any" for x in args) else PyType("tuple", args)
    if a.kind == b.kind == "tuple" or {a.kind, b.kind} == {"tuple", "list"}:
        # Tuples of several lengths (HumanEval/148 returns 0 to 6 names) are sequences.
        elem = _unify_all([*a.args, *b.args])
        return ANY if elem.kind == "any" else _list(elem)
    return ANY


_ANNOTATION_NAMES = {
    "int": INT,
    "float": FLOAT,
    "str": STR,
    "bool": BOOL,
    "None": NONE,
    "Any": ANY,
    "list": _list(UNKNOWN),
    "List": _list(UNKNOWN),
    "dict": PyType("dict", (UNKNOWN, UNKNOWN)),
    "Dict": PyType("dict", (UNKNOWN, UNKNOWN)),
}


def parse_annotation(node: ast.expr | None) -> PyType:
    """The :class:`PyType` of an annotation (``unknown`` when absent, ``any`` when unsupported)."""
    if node is None:
        return UNKNOWN
    if isinstance(node, ast.Constant) and node.value is None:
        return NONE
    if isinstance(node, ast.Name):
        return _ANNOTATION_NAMES.get(node.id, ANY)
    if isinstance(node, ast.Attribute):  # typing.List
        return parse_annotation(ast.Name(id=node.attr))
    if isinstance(node, ast.Subscript):
        base = node.value.attr if isinstance(node.value, ast.Attribute) else node.value
        name = base if isinstance(base, str) else getattr(base, "id", "")
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        args = tuple(parse_annotation(e) for e in elts)
        if name in ("List", "list") and len(args) == 1:
            return _list(args[0])
        if name in ("Dict", "dict") and len(args) == 2:
            return PyType("dict", args)
        if (
            name in ("Tuple", "tuple")
            and args
            and not any(isinstance(e, ast.Constant) and e.value is Ellipsis for e in elts)
        ):
            return PyType("tuple", args)
        if name == "Optional" and len(args) == 1:
            return _optional(args[0])
    return ANY


# ---------------------------------------------------------------------------------------------
# Reading the Python problem: signature, docstring, checks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check: ``candidate(*args) == expected``, or ``abs(candidate(*args) - expected) <
    tolerance`` when ``tolerance`` is set."""

    args: tuple[Any, ...]
    expected: Any
    tolerance: float | None = None


@dataclass(frozen=True)
class ParsedProblem:
    """What the translator reads from one Python problem.

    ``params`` and ``returns`` are the annotations unified with the types of the checks'
    values; ``annotations`` keeps the annotations alone (parameters, then the result), so the
    types can be recomputed for a subset of the checks (:meth:`without_check`).
    """

    task_id: str
    name: str
    params: tuple[tuple[str, PyType], ...]
    returns: PyType
    doc: str
    checks: tuple[Check, ...]
    dropped_checks: tuple[str, ...] = ()
    annotations: tuple[PyType, ...] = ()

    @property
    def typed(self) -> bool:
        """Whether every parameter and the result have one type (no ``Any``)."""
        return not any(t.contains("any") for _, t in self.params) and not self.returns.contains(
            "any"
        )

    def without_check(self, index: int) -> ParsedProblem:
        """The problem without ``checks[index]``, its types recomputed."""
        checks = self.checks[:index] + self.checks[index + 1 :]
        names = [n for n, _ in self.params]
        annotations = self.annotations or (UNKNOWN,) * (len(names) + 1)
        params, returns = _signature_types(names, annotations, checks)
        dropped = f"{_check_text(self.name, self.checks[index])} (its types fit no signature)"
        return ParsedProblem(
            task_id=self.task_id,
            name=self.name,
            params=params,
            returns=returns,
            doc=self.doc,
            checks=checks,
            dropped_checks=(*self.dropped_checks, dropped),
            annotations=annotations,
        )


def _check_text(name: str, c: Check) -> str:
    call = f"{name}({', '.join(map(repr, c.args))})"
    if c.tolerance is not None:
        return f"abs({call} - {c.expected!r}) < {c.tolerance!r}"
    return f"{call} == {c.expected!r}"


def _signature_types(
    names: Sequence[str], annotations: Sequence[PyType], checks: Sequence[Check]
) -> tuple[tuple[tuple[str, PyType], ...], PyType]:
    """Parameter and result types: the annotations unified with every check's values."""
    params = tuple(
        (n, _unify_all([annotations[i], *(type_of_value(c.args[i]) for c in checks)]))
        for i, n in enumerate(names)
    )
    returns = _unify_all(
        [
            annotations[-1],
            *(FLOAT if c.tolerance is not None else type_of_value(c.expected) for c in checks),
        ]
    )
    return params, returns


class _NotConstant(Exception):
    pass


_CONVERTERS: dict[str, Callable[..., Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "len": len,
    "list": list,
    "tuple": tuple,
}


def _evaluate(node: ast.expr, env: dict[str, Any]) -> Any:
    """Evaluate a constant expression of test code; anything else raises :class:`_NotConstant`.

    Only literals, arithmetic, a few pure built-ins and names bound by unrolled loops or
    constant assignments: test code is never executed.
    """
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, str, bool)) or node.value is None:
            return node.value
        raise _NotConstant
    if isinstance(node, ast.List):
        return [_evaluate(e, env) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e, env) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotConstant
        return {
            _evaluate(k, env): _evaluate(v, env)
            for k, v in zip(node.keys, node.values, strict=True)
        }
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _NotConstant
    if isinstance(node, ast.UnaryOp):
        v = _evaluate(node.operand, env)
        if isinstance(node.op, ast.USub) and isinstance(v, (int, float)):
            return -v
        if isinstance(node.op, ast.UAdd) and isinstance(v, (int, float)):
            return +v
        if isinstance(node.op, ast.Not):
            return not v
        raise _NotConstant
    if isinstance(node, ast.BinOp):
        a, b = _evaluate(node.left, env), _evaluate(node.right, env)
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
        try:
            if isinstance(node.op, ast.Add) and (numbers or type(a) is type(b) is str):
                return a + b
            if numbers:
                if isinstance(node.op, ast.Sub):
                    return a - b
                if isinstance(node.op, ast.Mult):
                    return a * b
                if isinstance(node.op, ast.Div):
                    return a / b
                if isinstance(node.op, ast.FloorDiv):
                    return a // b
                if isinstance(node.op, ast.Mod):
                    return a % b
                if isinstance(node.op, ast.Pow) and abs(b) <= 256:
                    return a**b
            if isinstance(node.op, ast.Mult) and isinstance(a, str) and isinstance(b, int):
                if len(a) * b <= 100_000:
                    return a * b
        except (ArithmeticError, ValueError) as e:
            raise _NotConstant from e
        raise _NotConstant
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _CONVERTERS
        and node.func.id not in env
        and not node.keywords
        and len(node.args) == 1
    ):
        try:
            return _CONVERTERS[node.func.id](_evaluate(node.args[0], env))
        except (TypeError, ValueError) as e:
            raise _NotConstant from e
    raise _NotConstant


def _candidate_call(node: ast.expr, names: set[str]) -> ast.Call | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
        return node
    return None


def _unwrap(node: ast.expr) -> tuple[str | None, ast.expr]:
    """``tuple(x)`` / ``list(x)`` -> (``"tuple"``, x): tests compare sequences through them."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("tuple", "list")
        and len(node.args) == 1
        and not node.keywords
    ):
        return node.func.id, node.args[0]
    return None, node


def _parse_assert(test: ast.expr, env: dict[str, Any], names: set[str]) -> Check | None:
    """The :class:`Check` of one ``assert`` (``None`` for a placeholder ``assert True``)."""
    if isinstance(test, ast.Constant) and test.value is True:
        return None

    def call_args(call: ast.Call) -> tuple[Any, ...]:
        if call.keywords or any(isinstance(a, ast.Starred) for a in call.args):
            raise _NotConstant
        return tuple(_evaluate(a, env) for a in call.args)

    call = _candidate_call(test, names)
    if call is not None:
        return Check(call_args(call), True)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        call = _candidate_call(test.operand, names)
        if call is not None:
            return Check(call_args(call), False)
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        raise _NotConstant
    op, left, right = test.ops[0], test.left, test.comparators[0]
    if isinstance(op, (ast.Eq, ast.Is)):
        wrap_l, inner_l = _unwrap(left)
        wrap_r, inner_r = _unwrap(right)
        if wrap_l is not None and wrap_l == wrap_r:  # tuple(candidate(x)) == tuple([...])
            left, right = inner_l, inner_r
        if _candidate_call(left, names) is None:
            left, right = right, left
        call = _candidate_call(left, names)
        if call is None:
            raise _NotConstant
        expected = _evaluate(right, env)
        if isinstance(op, ast.Is) and expected not in (True, False, None):
            raise _NotConstant
        return Check(call_args(call), expected)
    if isinstance(op, (ast.Lt, ast.LtE)):
        # abs(candidate(x) - y) < eps
        if (
            isinstance(left, ast.Call)
            and isinstance(left.func, ast.Name)
            and left.func.id == "abs"
            and len(left.args) == 1
            and isinstance(left.args[0], ast.BinOp)
            and isinstance(left.args[0].op, ast.Sub)
        ):
            a, b = left.args[0].left, left.args[0].right
            if _candidate_call(a, names) is None:
                a, b = b, a
            call = _candidate_call(a, names)
            if call is not None:
                expected = _evaluate(b, env)
                tolerance = _evaluate(right, env)
                if isinstance(expected, (int, float)) and isinstance(tolerance, (int, float)):
                    return Check(call_args(call), float(expected), float(tolerance))
    raise _NotConstant


def _asserts_in(node: ast.AST) -> list[str]:
    return [ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Assert)]


_MAX_UNROLL = 200


def _collect_checks(
    stmts: Sequence[ast.stmt],
    env: dict[str, Any],
    names: set[str],
    checks: list[Check],
    dropped: dict[str, None],
) -> None:
    """Walk a ``check`` body: asserts become checks, constant loops are unrolled."""
    for st in stmts:
        if isinstance(st, ast.Assert):
            try:
                check = _parse_assert(st.test, env, names)
            except _NotConstant:
                dropped[ast.unparse(st)] = None
                continue
            if check is not None:
                checks.append(check)
        elif isinstance(st, ast.For) and isinstance(st.target, ast.Name) and not st.orelse:
            try:
                it = st.iter
                if not (
                    isinstance(it, ast.Call)
                    and isinstance(it.func, ast.Name)
                    and it.func.id == "range"
                    and "range" not in env
                ):
                    raise _NotConstant
                bounds = [_evaluate(a, env) for a in it.args]
                if not bounds or not all(type(b) is int for b in bounds):
                    raise _NotConstant
                values = range(*bounds)
                if len(values) > _MAX_UNROLL:
                    raise _NotConstant
            except (_NotConstant, TypeError, ValueError):
                dropped.update(dict.fromkeys(_asserts_in(st)))
                continue
            for v in values:
                _collect_checks(st.body, {**env, st.target.id: v}, names, checks, dropped)
        elif (
            isinstance(st, ast.Assign)
            and len(st.targets) == 1
            and isinstance(st.targets[0], ast.Name)
        ):
            try:
                env[st.targets[0].id] = _evaluate(st.value, env)
            except _NotConstant:
                env.pop(st.targets[0].id, None)
        elif isinstance(st, (ast.Import, ast.ImportFrom, ast.Expr, ast.Pass)):
            continue  # imports, print(...): nothing to check
        else:
            dropped.update(dict.fromkeys(_asserts_in(st)))


def _docstring(fn: ast.FunctionDef) -> str:
    """The function's docstring; also one that follows an ``import`` (HumanEval/115)."""
    for st in fn.body:
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
            if isinstance(st.value.value, str):
                return inspect.cleandoc(st.value.value)
        elif not isinstance(st, (ast.Import, ast.ImportFrom)):
            break
    return ""


def parse_problem(task_id: str, prompt: str, test: str, entry_point: str) -> ParsedProblem:
    """Read signature, types, docstring and checks of one Python problem.

    Raises :class:`Untranslatable` when the prompt cannot be translated at all (it does not
    parse, defines helper functions the solution relies on, or has no constant check).
    """
    try:
        module = ast.parse(prompt)
        test_module = ast.parse(test)
    except SyntaxError as e:
        raise Untranslatable(f"does not parse: {e.msg}") from None
    functions = [n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    fn = next((f for f in functions if f.name == entry_point), None)
    if fn is None or not isinstance(fn, ast.FunctionDef):
        raise Untranslatable(f"the prompt defines no function {entry_point!r}")
    helpers = [f.name for f in functions if f is not fn]
    if helpers:
        # The solution is meant to call them; translating arbitrary Python code is out of scope.
        raise Untranslatable(f"the prompt defines helper functions ({', '.join(helpers)})")
    args = fn.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs:
        raise Untranslatable("the signature has *args, **kwargs, keyword-only or default arguments")

    check_fn = next(
        (n for n in test_module.body if isinstance(n, ast.FunctionDef) and n.name == "check"),
        None,
    )
    if check_fn is None or not check_fn.args.args:
        raise Untranslatable("the test code has no check(candidate) function")
    names = {check_fn.args.args[0].arg}
    env: dict[str, Any] = {}
    for st in test_module.body:  # module-level constants the checks may use
        if (
            isinstance(st, ast.Assign)
            and len(st.targets) == 1
            and isinstance(st.targets[0], ast.Name)
        ):
            try:
                env[st.targets[0].id] = _evaluate(st.value, env)
            except _NotConstant:
                pass
    checks: list[Check] = []
    dropped: dict[str, None] = {}
    _collect_checks(check_fn.body, env, names, checks, dropped)
    n_params = len(args.args)
    for c in list(checks):
        if len(c.args) != n_params:
            checks.remove(c)
            dropped[f"candidate called with {len(c.args)} arguments"] = None
    if not checks:
        raise Untranslatable("no check of the test code has constant arguments and result")

    annotations = (
        *(parse_annotation(a.annotation) for a in args.args),
        parse_annotation(fn.returns),
    )
    params, returns = _signature_types([a.arg for a in args.args], annotations, checks)
    return ParsedProblem(
        task_id=task_id,
        name=fn.name,
        params=params,
        returns=returns,
        doc=_docstring(fn),
        checks=tuple(checks),
        dropped_checks=tuple(dropped),
        annotations=annotations,
    )


# ---------------------------------------------------------------------------------------------
# Language back ends
# ---------------------------------------------------------------------------------------------


def _c_escape(s: str, *, hex_escape: Callable[[int], str], dollar: bool = False) -> str:
    """Escape a string for a C-family double-quoted literal (UTF-8 text kept as it is)."""
    out = []
    simple = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    for ch in s:
        if ch in simple:
            out.append(simple[ch])
        elif dollar and ch == "$":
            out.append("\\$")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(hex_escape(ord(ch)))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _octal_escape(code: int) -> str:
    # Octal, not hex: a hex escape in C++ swallows every hex digit that follows it.
    return "\\" + format(code, "03o")


def _float_text(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        raise Untranslatable(f"float value {x!r} has no literal")
    text = repr(float(x))
    return text if any(c in text for c in ".eE") else text + ".0"


def _int_check(v: int) -> None:
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise Untranslatable(f"integer {v} does not fit in 64 bits")


def _words(*names: str) -> frozenset[str]:
    return frozenset(" ".join(names).split())


class _Backend:
    """One target language: types, literals, comments, the prompt and the tests.

    The tests are one shape in every language: the function's closing, the language's
    helpers, then one ``if`` per check inside the test entry point; a language fills in the
    templates below. Types are built from ``scalar_types`` and the ``*_type`` templates, with
    :meth:`tuple_type` and :meth:`optional_type` for what differs most between languages.
    """

    name = ""
    stop_sequences: tuple[str, ...] = ()
    reserved: frozenset[str] = frozenset()
    true, false, none = "true", "false", "null"
    nouns: dict[str, str] = {}
    typed = True  # whether parameters and results carry types

    # Types: Python's scalar kinds, and templates of a list, a dict (key, value).
    scalar_types: dict[str, str] = {}
    list_type = ""
    dict_type = ""

    # The tests: a check passes when ``equal`` (or, for a float with a tolerance, ``close``)
    # holds; ``check`` is the line reporting a failed check; ``tests_tail`` ends the file.
    equal = ""
    close = ""
    check = ""
    tests_tail: tuple[str, ...] = ()

    # -- names and types --
    @property
    def display(self) -> str:
        return get_language(self.name).display_name

    def param(self, name: str) -> str:
        """A parameter's name; one that is a reserved word gets a trailing underscore."""
        return name + "_" if name in self.reserved else name

    def type_name(self, t: PyType) -> str:
        """The language's spelling of ``t``; :class:`Untranslatable` when it has none."""
        k = t.kind
        if k in self.scalar_types:
            return self.scalar_types[k]
        if k == "list":
            return self.list_type.format(self.type_name(t.args[0]))
        if k == "tuple":
            return self.tuple_type(t)
        if k == "dict":
            return self.dict_type.format(self.type_name(t.args[0]), self.type_name(t.args[1]))
        if k == "optional":
            return self.optional_type(t)
        raise Untranslatable(f"type {t} has no {self.display} equivalent")

    def tuple_type(self, t: PyType) -> str:
        raise NotImplementedError

    def optional_type(self, t: PyType) -> str:
        raise NotImplementedError

    def literal(self, v: Any, t: PyType) -> str:
        """``v`` as a literal of type ``t`` in the tests."""
        scalar = self.scalar_literal(v, t)
        return scalar if scalar is not None else self.composite_literal(v, t)

    def composite_literal(self, v: Any, t: PyType) -> str:
        """A list, tuple, dict or optional ``v`` of type ``t`` (see :meth:`literal`)."""
        raise NotImplementedError

    def int_literal(self, v: int) -> str:
        """An integer (already checked to fit in 64 bits)."""
        return str(v)

    def str_literal(self, v: str) -> str:
        raise NotImplementedError

    def scalar_literal(self, v: Any, t: PyType) -> str | None:
        """``v`` when ``t`` is a bool, int, float or str (the typed languages spell booleans and
        floats alike); None for the other kinds, which each language builds itself."""
        k = t.kind
        if k == "bool":
            return "true" if v else "false"
        if k == "int":
            _int_check(v)
            return self.int_literal(v)
        if k == "float":
            return _float_text(float(v))
        if k == "str":
            return self.str_literal(v)
        return None

    def brace_entries(self, v: dict, t: PyType, literal: Callable[[Any, PyType], str]) -> str:
        """A dict's entries as ``{key, value}`` initializers (C++ and C#), each side written by
        ``literal``."""
        kt, vt = t.args
        return ", ".join(f"{{{literal(a, kt)}, {literal(b, vt)}}}" for a, b in v.items())

    def doc_literal(self, v: Any, t: PyType) -> str:
        """``v`` as the docstring's examples show it (the tests' literal by default)."""
        return self.literal(v, t)

    def check_function_name(self, name: str) -> None:
        if name in self.reserved:
            raise Untranslatable(f"the function name {name!r} is reserved in {self.display}")

    # -- comments --
    def comment(self, lines: list[str]) -> str:
        raise NotImplementedError

    def call(self, p: ParsedProblem, args: Sequence[Any], doc: bool = False) -> str:
        """A call of the function with constant arguments (as a docstring shows it, if ``doc``)."""
        lit = self.doc_literal if doc else self.literal
        return f"{p.name}({', '.join(lit(a, t) for a, (_, t) in zip(args, p.params, strict=True))})"

    # -- program parts --
    def params(self, p: ParsedProblem) -> str:
        """The signature's parameter list (without parentheses)."""
        return ", ".join(self.param_decl(n, t) for n, t in p.params)

    def param_decl(self, name: str, t: PyType) -> str:
        return f"{self.type_name(t)} {self.param(name)}"

    def doc_comment(self, doc_lines: list[str]) -> str:
        """The docstring's comment, or nothing when there is no docstring."""
        return self.comment(doc_lines) if doc_lines else ""

    def prompt(self, p: ParsedProblem, doc_lines: list[str]) -> str:
        raise NotImplementedError

    def tests_head(self) -> list[str]:
        """The lines from the function's closing to the test entry point's opening."""
        raise NotImplementedError

    def tests(self, p: ParsedProblem) -> str:
        """The test code: each check of ``p`` in the language, reporting the first failure."""
        lines = self.tests_head()
        for i, c in enumerate(p.checks, 1):
            got = self.call(p, c.args)
            if c.tolerance is not None:
                cond = self.close.format(
                    got=got, expected=_float_text(c.expected), tolerance=_float_text(c.tolerance)
                )
            else:
                cond = self.equal.format(got=got, expected=self.literal(c.expected, p.returns))
            lines.append(self.check.format(cond=cond, failure=self.failure(i)))
        lines += self.tests_tail
        return "\n".join(lines)

    def check_types(self, p: ParsedProblem) -> None:
        """Raise :class:`Untranslatable` when a parameter or the result has no type here."""
        for pname, t in p.params:
            self._need_type(t, f"parameter {pname!r}")
        self._need_type(p.returns, "the result")

    def _need_type(self, t: PyType, what: str) -> None:
        if t.contains("any"):
            raise Untranslatable(f"{what} mixes types or is Any, which {self.display} cannot type")
        if t.contains("unknown"):
            raise Untranslatable(f"{what} has a type no test value or annotation pins down ({t})")
        self.type_name(t)

    def failure(self, index: int) -> str:
        """The statement(s) reporting that check ``index`` (1-based) failed."""
        raise NotImplementedError


# Built-in functions that HumanEval-style names collide with (redeclaring one is a fatal error).
_PHP_FUNCTION_NAMES = _words(
    "strlen count max min sort abs round floor ceil sqrt pow range implode explode",
    "array_sum str_repeat intdiv fmod substr strrev ord chr md5 sha1 trim ucfirst",
    "lcfirst strtolower strtoupper in_array array_map array_filter usort key next",
    "prev end reset current compact extract date time hash is_int is_float is_string",
    "babel_equal babel_check",
)


class _PHP(_Backend):
    name = "php"
    # The completion is the body: "\n}" is the function's closing brace; the others are
    # MultiPL-E's (a new function, the end of PHP code, a comment at column 0).
    stop_sequences = ("\n}", "\nfunction", "\n?>", "\n//", "\n#")
    reserved = frozenset({"this"})  # parameters carry a '$'; only $this is taken
    typed = False
    nouns = {
        "list": "array",
        "lists": "arrays",
        "tuple": "array",
        "tuples": "arrays",
        "dictionary": "array",
        "dictionaries": "arrays",
        "dict": "array",
    }

    # Names a PHP function cannot take: keywords, built-ins, the tests' own functions.
    function_names = _PHP_FUNCTION_NAMES | get_language("php").keywords

    def check_function_name(self, name: str) -> None:
        if name.lower() in self.function_names:
            raise Untranslatable(
                f"the function name {name!r} is a PHP keyword or built-in function"
            )

    def type_name(self, t: PyType) -> str:
        return ""  # PHP prompts carry no types (as in MultiPL-E): nothing to be untyped

    def _need_type(self, t: PyType, what: str) -> None:
        return None

    def literal(self, v: Any, t: PyType) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            if t.kind == "float" or (t.kind == "optional" and t.args[0].kind == "float"):
                return _float_text(float(v))
            _int_check(v)
            return str(v)
        if isinstance(v, float):
            return _float_text(v)
        if isinstance(v, str):
            return _c_escape(v, hex_escape=lambda c: f"\\x{c:02x}", dollar=True)
        elem = t.args[0] if t.kind in ("list", "optional") and t.args else ANY
        if t.kind == "optional":
            return self.literal(v, elem)
        if isinstance(v, (list, tuple)):
            types = t.args if t.kind == "tuple" and len(t.args) == len(v) else [elem] * len(v)
            return (
                "[" + ", ".join(self.literal(x, tt) for x, tt in zip(v, types, strict=True)) + "]"
            )
        if isinstance(v, dict):
            kt, vt = t.args if t.kind == "dict" else (ANY, ANY)
            items = ", ".join(
                f"{self.literal(k, kt)} => {self.literal(x, vt)}" for k, x in v.items()
            )
            return f"[{items}]"
        raise Untranslatable(f"value {v!r} has no PHP literal")

    def comment(self, lines: list[str]) -> str:
        body = [(" * " + ln.replace("*/", "* /")).rstrip() for ln in lines]
        return "/**\n" + "\n".join(body) + "\n */\n"

    def param_decl(self, name: str, t: PyType) -> str:
        return f"${name}"

    def prompt(self, p: ParsedProblem, doc_lines: list[str]) -> str:
        return f"<?php\n{self.doc_comment(doc_lines)}function {p.name}({self.params(p)}) {{\n"

    def failure(self, index: int) -> str:
        return f'fwrite(STDERR, "check {index} failed\\n"); exit({WRONG_ANSWER_EXIT});'

    equal = "babel_equal({got}, {expected})"
    close = "abs({got} - {expected}) < {tolerance}"
    check = "    if (!({cond})) {{ {failure} }}"
    tests_tail = ("}", "", "babel_check();", "")

    def tests_head(self) -> list[str]:
        return ["}", "", _PHP_HELPERS, "function babel_check() {"]


# Deep equality as Python's ==: lists in order, maps (non-list arrays) by key regardless of
# order, an int equal to the same float (6 == 6.0), everything else strict (no "1" == 1).
_PHP_HELPERS = """\
function babel_equal($a, $b) {
    if (is_array($a) && is_array($b)) {
        if (count($a) !== count($b)) { return false; }
        if (array_is_list($a) && array_is_list($b)) {
            foreach ($a as $i => $x) { if (!babel_equal($x, $b[$i])) { return false; } }
            return true;
        }
        foreach ($a as $k => $x) {
            if (!array_key_exists($k, $b) || !babel_equal($x, $b[$k])) { return false; }
        }
        return true;
    }
    if ((is_int($a) || is_float($a)) && (is_int($b) || is_float($b))) { return $a == $b; }
    return $a === $b;
}
"""


class _Go(_Backend):
    name = "go"
    # "\n}" ends the body; then MultiPL-E's: a new function, a comment at column 0. (MultiPL-E
    # also stops at "struct", which cuts correct bodies that declare one.)
    stop_sequences = ("\n}", "\nfunc ", "\n// ", "\ntype ")
    reserved = _words(
        "break case chan const continue default defer else fallthrough for func go goto if",
        "import interface map package range return select struct switch type var",
        "bool byte complex64 complex128 error float32 float64 int int8 int16 int32 int64 rune",
        "string uint uint8 uint16 uint32 uint64 uintptr true false iota nil append cap close",
        "complex copy delete imag len make new panic print println real recover any",
        # the imported packages (a parameter named `strings` would hide the package) and
        # the names the tests define
        "fmt math os reflect sort strconv strings main babelEqual babelValueEqual babelPtr",
    )
    true, false, none = "true", "false", "nil"
    nouns = {
        "list": "slice",
        "lists": "slices",
        "tuple": "slice",
        "tuples": "slices",
        "dictionary": "map",
        "dictionaries": "maps",
        "dict": "map",
    }
    # Imported by every prompt (a solution cannot add imports after the signature) and each
    # referenced by the tests, so none is ever unused.
    imports = ("fmt", "math", "os", "reflect", "sort", "strconv", "strings")
    _uses = {
        "fmt": "fmt.Sprint",
        "math": "math.Abs",
        "os": "os.Exit",
        "reflect": "reflect.DeepEqual",
        "sort": "sort.Ints",
        "strconv": "strconv.Itoa",
        "strings": "strings.Split",
    }

    scalar_types = {"int": "int", "float": "float64", "str": "string", "bool": "bool"}
    list_type = "[]{}"
    dict_type = "map[{}]{}"

    def tuple_type(self, t: PyType) -> str:
        if len(set(t.args)) != 1:
            raise Untranslatable(f"a tuple of mixed types ({t}) has no Go type")
        return "[]" + self.type_name(t.args[0])  # a homogeneous tuple is a slice

    def optional_type(self, t: PyType) -> str:
        return "*" + self.type_name(t.args[0])  # nil or a pointer to the value

    def literal(self, v: Any, t: PyType) -> str:
        return self._literal(v, t, doc=False)

    def doc_literal(self, v: Any, t: PyType) -> str:
        # The tests' pointer helper means nothing in a comment: optional values show plainly.
        return self._literal(v, t, doc=True)

    def str_literal(self, v: str) -> str:
        return _c_escape(v, hex_escape=lambda c: f"\\x{c:02x}")

    def _literal(self, v: Any, t: PyType, doc: bool) -> str:
        scalar = self.scalar_literal(v, t)
        if scalar is not None:
            return scalar
        k = t.kind
        if k in ("list", "tuple"):
            elem = t.args[0]
            return self.type_name(t) + "{" + ", ".join(self._literal(x, elem, doc) for x in v) + "}"
        if k == "dict":
            kt, vt = t.args
            items = ", ".join(
                f"{self._literal(a, kt, doc)}: {self._literal(b, vt, doc)}" for a, b in v.items()
            )
            return f"{self.type_name(t)}{{{items}}}"
        if k == "optional":
            if doc:
                return "nil" if v is None else self._literal(v, t.args[0], doc)
            if v is None:
                return f"({self.type_name(t)})(nil)"
            return f"babelPtr({self.literal(v, t.args[0])})"
        raise Untranslatable(f"value {v!r} of type {t} has no Go literal")

    def comment(self, lines: list[str]) -> str:
        return "\n".join(("// " + ln).rstrip() for ln in lines) + "\n"

    def param_decl(self, name: str, t: PyType) -> str:
        return f"{self.param(name)} {self.type_name(t)}"

    def prompt(self, p: ParsedProblem, doc_lines: list[str]) -> str:
        imports = "".join(f'\t"{m}"\n' for m in self.imports)
        return (
            f"package main\n\nimport (\n{imports})\n\n{self.doc_comment(doc_lines)}"
            f"func {p.name}({self.params(p)}) {self.type_name(p.returns)} {{\n"
        )

    def failure(self, index: int) -> str:
        return f'fmt.Fprintln(os.Stderr, "check {index} failed"); os.Exit({WRONG_ANSWER_EXIT})'

    equal = "babelEqual({got}, {expected})"
    close = "math.Abs({got}-{expected}) < {tolerance}"
    check = "\tif !({cond}) {{\n\t\t{failure}\n\t}}"
    tests_tail = ("}", "")

    def tests_head(self) -> list[str]:
        uses = [f"var _ = {self._uses[m]}" for m in self.imports]
        return ["}", "", *uses, "", _GO_HELPERS, "func main() {"]


# reflect.DeepEqual tells a nil slice from an empty one; Python does not. Pointers (optional
# values) are compared by DeepEqual, which compares what they point to.
_GO_HELPERS = """\
func babelPtr[T any](v T) *T {
\treturn &v
}

func babelEqual(a, b interface{}) bool {
\treturn babelValueEqual(reflect.ValueOf(a), reflect.ValueOf(b))
}

func babelValueEqual(a, b reflect.Value) bool {
\tif a.Kind() == reflect.Slice && b.Kind() == reflect.Slice {
\t\tif a.Type() != b.Type() || a.Len() != b.Len() {
\t\t\treturn false
\t\t}
\t\tfor i := 0; i < a.Len(); i++ {
\t\t\tif !babelValueEqual(a.Index(i), b.Index(i)) {
\t\t\t\treturn false
\t\t\t}
\t\t}
\t\treturn true
\t}
\tif a.Kind() == reflect.Map && b.Kind() == reflect.Map {
\t\tif a.Type() != b.Type() || a.Len() != b.Len() {
\t\t\treturn false
\t\t}
\t\tfor _, k := range a.MapKeys() {
\t\t\tv := b.MapIndex(k)
\t\t\tif !v.IsValid() || !babelValueEqual(a.MapIndex(k), v) {
\t\t\t\treturn false
\t\t\t}
\t\t}
\t\treturn true
\t}
\treturn reflect.DeepEqual(a.Interface(), b.Interface())
}
"""


class _Cpp(_Backend):
    name = "cpp"
    # The completion is the body; "\n}" is the function's closing brace (MultiPL-E's C++ stop).
    stop_sequences = ("\n}",)
    reserved = _words(
        "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t",
        "char32_t class compl const constexpr const_cast continue decltype default delete do",
        "double dynamic_cast else enum explicit export extern false float for friend goto if",
        "inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq",
        "private protected public register reinterpret_cast return short signed sizeof static",
        "static_assert static_cast struct switch template this thread_local throw true try",
        "typedef typeid typename union unsigned using virtual void volatile wchar_t while xor",
        "xor_eq main",
    )
    true, false, none = "true", "false", "std::nullopt"
    nouns = {
        "list": "vector",
        "lists": "vectors",
        "tuple": "tuple",
        "dictionary": "map",
        "dictionaries": "maps",
        "dict": "map",
    }
    headers = (
        "algorithm", "cctype", "climits", "cmath", "cstdlib", "iostream", "map", "numeric",
        "optional", "set", "sstream", "string", "tuple", "vector",
    )  # fmt: skip

    scalar_types = {"int": "long", "float": "double", "str": "std::string", "bool": "bool"}
    list_type = "std::vector<{}>"
    dict_type = "std::map<{}, {}>"

    def tuple_type(self, t: PyType) -> str:
        return f"std::tuple<{', '.join(self.type_name(a) for a in t.args)}>"

    def optional_type(self, t: PyType) -> str:
        return f"std::optional<{self.type_name(t.args[0])}>"

    def int_literal(self, v: int) -> str:
        return str(v) if -(2**31) <= v < 2**31 else f"{v}L"

    def str_literal(self, v: str) -> str:
        return f"std::string({_c_escape(v, hex_escape=_octal_escape)})"

    def composite_literal(self, v: Any, t: PyType) -> str:
        k = t.kind
        if k == "list":
            if not v:
                return f"{self.type_name(t)}()"
            return f"{self.type_name(t)}({{{', '.join(self.literal(x, t.args[0]) for x in v)}}})"
        if k == "tuple":
            items = ", ".join(self.literal(x, a) for x, a in zip(v, t.args, strict=True))
            return f"{self.type_name(t)}({items})"
        if k == "dict":
            items = self.brace_entries(v, t, self.literal)
            return f"{self.type_name(t)}({{{items}}})" if v else f"{self.type_name(t)}()"
        if k == "optional":
            if v is None:
                return f"{self.type_name(t)}()"
            return f"{self.type_name(t)}({self.literal(v, t.args[0])})"
        raise Untranslatable(f"value {v!r} of type {t} has no C++ literal")

    def doc_literal(self, v: Any, t: PyType) -> str:
        # Examples in comments use brace initialization, which reads like the Python they
        # replace; the tests spell every type out.
        k = t.kind
        if k == "str":
            return _c_escape(v, hex_escape=_octal_escape)
        if k == "dict":
            return "{" + self.brace_entries(v, t, self.doc_literal) + "}"
        if k == "list":
            return "{" + ", ".join(self.doc_literal(x, t.args[0]) for x in v) + "}"
        if k == "tuple":
            items = ", ".join(self.doc_literal(x, a) for x, a in zip(v, t.args, strict=True))
            return f"std::make_tuple({items})"
        if k == "optional":
            return "std::nullopt" if v is None else self.doc_literal(v, t.args[0])
        return self.literal(v, t)

    def comment(self, lines: list[str]) -> str:
        # A trailing backslash would splice the next line into the comment.
        return "\n".join(("// " + ln).rstrip().rstrip("\\") for ln in lines) + "\n"

    def prompt(self, p: ParsedProblem, doc_lines: list[str]) -> str:
        includes = "".join(f"#include <{h}>\n" for h in self.headers)
        return (
            f"{includes}{self.doc_comment(doc_lines)}"
            f"{self.type_name(p.returns)} {p.name}({self.params(p)}) {{\n"
        )

    def failure(self, index: int) -> str:
        return f'std::cerr << "check {index} failed" << std::endl; std::exit({WRONG_ANSWER_EXIT});'

    # The function is called by name, not through `auto candidate = f`: a name such as strlen
    # is overloaded with the C library's, and a pointer to it would be ambiguous.
    equal = "{got} == {expected}"
    close = "std::abs({got} - {expected}) < {tolerance}"
    check = "    if (!({cond})) {{ {failure} }}"
    tests_tail = ("    return 0;", "}", "")

    def tests_head(self) -> list[str]:
        return ["}", "", "int main() {"]


class _CSharp(_Backend):
    name = "csharp"
    # The method's body ends at its closing brace, indented by four spaces inside the class.
    stop_sequences = ("\n    }", "\n}")
    reserved = _words(
        "abstract as base bool break byte case catch char checked class const continue decimal",
        "default delegate do double else enum event explicit extern false finally fixed float",
        "for foreach goto if implicit in int interface internal is lock long namespace new null",
        "object operator out override params private protected public readonly ref return",
        "sbyte sealed short sizeof stackalloc static string struct switch this throw true try",
        "typeof uint ulong unchecked unsafe ushort using virtual void volatile while",
        "Main Problem Fail Eq",
    )
    nouns = {"dictionary": "Dictionary", "dictionaries": "Dictionaries", "tuple": "Tuple"}
    usings = (
        "System", "System.Collections", "System.Collections.Generic", "System.Linq",
        "System.Security.Cryptography", "System.Text",
    )  # fmt: skip

    scalar_types = {"int": "long", "float": "double", "str": "string", "bool": "bool"}
    list_type = "List<{}>"
    dict_type = "Dictionary<{}, {}>"

    def tuple_type(self, t: PyType) -> str:
        if len(t.args) > 7:
            raise Untranslatable(f"a tuple of {len(t.args)} elements has no C# Tuple type")
        return f"Tuple<{', '.join(self.type_name(a) for a in t.args)}>"

    def optional_type(self, t: PyType) -> str:
        inner = self.type_name(t.args[0])
        # Value types need Nullable<T>; strings, lists, maps and tuples are references.
        return inner + "?" if t.args[0].kind in ("int", "float", "bool") else inner

    def int_literal(self, v: int) -> str:
        return f"{v}L"

    def str_literal(self, v: str) -> str:
        return _c_escape(v, hex_escape=lambda c: f"\\u{c:04x}")

    def composite_literal(self, v: Any, t: PyType) -> str:
        k = t.kind
        if k == "list":
            return f"new {self.type_name(t)} {{{', '.join(self.literal(x, t.args[0]) for x in v)}}}"
        if k == "tuple":
            args = ", ".join(self.literal(x, a) for x, a in zip(v, t.args, strict=True))
            return f"new {self.type_name(t)}({args})"  # typed: Tuple.Create(null, 1L) is not
        if k == "dict":
            return f"new {self.type_name(t)} {{{self.brace_entries(v, t, self.literal)}}}"
        if k == "optional":
            return "null" if v is None else self.literal(v, t.args[0])
        raise Untranslatable(f"value {v!r} of type {t} has no C# literal")

    def comment(self, lines: list[str]) -> str:
        return "\n".join(("    /// " + ln).rstrip() for ln in lines) + "\n"

    def prompt(self, p: ParsedProblem, doc_lines: list[str]) -> str:
        usings = "".join(f"using {u};\n" for u in self.usings)
        return (
            f"{usings}\nclass Problem {{\n{self.doc_comment(doc_lines)}"
            f"    public static {self.type_name(p.returns)} {p.name}({self.params(p)}) {{\n"
        )

    def failure(self, index: int) -> str:
        return f"Fail({index});"

    equal = "Eq({got}, {expected})"
    close = "Math.Abs({got} - {expected}) < {tolerance}"
    check = "        if (!({cond})) {{ {failure} }}"
    tests_tail = ("    }", "}", "")

    def tests_head(self) -> list[str]:
        return ["    }", "", _CSHARP_HELPERS, "    public static void Main(string[] args) {"]


# Structural equality as Python's ==: lists in order, dictionaries regardless of order, tuples
# by component; Equals on everything else (long, double, bool, string).
_CSHARP_HELPERS = f"""\
    static void Fail(int check) {{
        Console.Error.WriteLine("check " + check + " failed");
        Environment.Exit({WRONG_ANSWER_EXIT});
    }}

    static bool Eq(object a, object b) {{
        if (a == null || b == null) return a == null && b == null;
        if (a is IDictionary && b is IDictionary) {{
            var da = (IDictionary)a;
            var db = (IDictionary)b;
            if (da.Count != db.Count) return false;
            foreach (DictionaryEntry e in da) {{
                if (!db.Contains(e.Key) || !Eq(e.Value, db[e.Key])) return false;
            }}
            return true;
        }}
        if (a is IList && b is IList) {{
            var la = (IList)a;
            var lb = (IList)b;
            if (la.Count != lb.Count) return false;
            for (int i = 0; i < la.Count; i++) {{
                if (!Eq(la[i], lb[i])) return false;
            }}
            return true;
        }}
        var ta = a.GetType();
        if (ta.IsGenericType && ta.FullName.StartsWith("System.Tuple`")) {{
            if (ta != b.GetType()) return false;
            foreach (var prop in ta.GetProperties()) {{
                if (!Eq(prop.GetValue(a), prop.GetValue(b))) return false;
            }}
            return true;
        }}
        return a.Equals(b);
    }}
"""

BACKENDS: dict[str, _Backend] = {b.name: b for b in (_PHP(), _Go(), _Cpp(), _CSharp())}


# ---------------------------------------------------------------------------------------------
# The docstring
# ---------------------------------------------------------------------------------------------

_ARROWS = ("==>", "==", "➞", "=>", "->", "→")


def _balanced_call(line: str, start: int) -> int | None:
    """Index after the parenthesis closing the call that opens at ``line[start]``."""
    depth = 0
    quote = None
    for i in range(start, len(line)):
        ch = line[i]
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _render_call_text(text: str, p: ParsedProblem, b: _Backend) -> str | None:
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or node.keywords or len(node.args) != len(p.params):
            return None
        args = [_evaluate(a, {}) for a in node.args]
        if any(unify(t, type_of_value(a)) != t for a, (_, t) in zip(args, p.params, strict=True)):
            return None
        return b.call(p, args, doc=True)
    except (SyntaxError, _NotConstant, Untranslatable, ValueError, TypeError):
        return None


def _render_value_text(text: str, t: PyType, b: _Backend) -> str | None:
    try:
        v = _evaluate(ast.parse(text.strip(), mode="eval").body, {})
        if unify(t, type_of_value(v)) != t:
            return None
        return b.doc_literal(v, t)
    except (SyntaxError, _NotConstant, Untranslatable, ValueError, TypeError):
        return None


def _prose(text: str, b: _Backend, keep: frozenset[str] = frozenset()) -> str:
    """Python's spellings in prose replaced by the language's (the words in ``keep``, the
    parameters' names, stay as they are)."""
    words = {"True": b.true, "False": b.false, "None": b.none, **b.nouns}

    def sub(m: re.Match) -> str:
        article, w = m.group(1), m.group(2)
        if w in keep:
            return m.group(0)
        if w in words:
            new = words[w]
        elif w.lower() in b.nouns and w[0].isupper():
            new = b.nouns[w.lower()][:1].upper() + b.nouns[w.lower()][1:]
        else:
            return m.group(0)
        if article:  # "a list" -> "an array"
            an = new[:1].lower() in "aeiou"
            article = (article[0] + ("n" if an else "")) + " "
        return (article or "") + new

    return re.sub(r"\b(?:([Aa]n?) )?([A-Za-z]+)\b", sub, text)


def _rewrite_line(line: str, p: ParsedProblem, b: _Backend) -> str:
    """Calls of the function (and the value after ``==`` / ``➞``) in the language's literals."""
    out = []
    pos = 0
    keep = frozenset(n for n, _ in p.params)
    pattern = re.compile(r"\b" + re.escape(p.name) + r"\s*\(")
    for m in pattern.finditer(line):
        if m.start() < pos:
            continue
        end = _balanced_call(line, m.end() - 1)
        if end is None:
            continue
        call = _render_call_text(line[m.start() : end], p, b)
        if call is None:
            continue
        out.append(_prose(line[pos : m.start()], b, keep))
        out.append(call)
        pos = end
        rest = line[end:]
        stripped = rest.lstrip()
        for arrow in _ARROWS:
            if stripped.startswith(arrow):
                value_text = stripped[len(arrow) :]
                value = _render_value_text(value_text, p.returns, b)
                if value is not None:
                    out.append(rest[: len(rest) - len(stripped)] + arrow + " " + value)
                    pos = len(line)
                break
    out.append(_prose(line[pos:], b, keep))
    return "".join(out)


def doc_lines(p: ParsedProblem, b: _Backend) -> list[str]:
    """The docstring as comment lines in ``b``'s language, examples rewritten where they parse."""
    lines = [ln.rstrip() for ln in p.doc.splitlines()]
    out: list[str] = []
    expecting_output = False
    for ln in lines:
        stripped = ln.lstrip()
        indent = ln[: len(ln) - len(stripped)]
        if stripped.startswith(">>>"):
            code = stripped[3:].strip()
            call = _render_call_text(code, p, b) if code.startswith(p.name) else None
            out.append(indent + ">>> " + (call if call is not None else code))
            expecting_output = call is not None
            continue
        if expecting_output and stripped:
            value = _render_value_text(stripped, p.returns, b)
            out.append(indent + (value if value is not None else stripped))
            expecting_output = False
            continue
        expecting_output = False
        out.append(_rewrite_line(ln, p, b))
    while out and not out[-1].strip():
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    return out


# ---------------------------------------------------------------------------------------------
# One problem in one language
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The prompt, tests and stop sequences of one problem in one language."""

    prompt: str
    tests: str
    stop_sequences: tuple[str, ...]
    parsed: ParsedProblem  # the problem as rendered (a contradicting check may be gone)


def render_problem(p: ParsedProblem, language: str) -> Rendered:
    """Write ``p`` in ``language``; raises :class:`Untranslatable` with the reason."""
    b = BACKENDS.get(language)
    if b is None:
        raise ValueError(f"no translator for {language!r}; known: {sorted(BACKENDS)}")
    b.check_function_name(p.name)
    if not p.typed and b.typed:
        # One check whose values contradict all the others (HumanEval/78 passes [] where every
        # other check passes a string) is dropped rather than the whole problem.
        fixes = [q for q in (p.without_check(i) for i in range(len(p.checks))) if q.typed]
        if len(p.checks) >= 4 and fixes:
            p = fixes[0]
    b.check_types(p)
    # A parameter renamed away from a reserved word must not collide with another parameter.
    renamed = [b.param(n) for n, _ in p.params]
    if len(set(renamed)) != len(renamed):
        raise Untranslatable("parameter names collide once reserved words are renamed")
    prompt = b.prompt(p, doc_lines(p, b))
    tests = b.tests(p)
    return Rendered(prompt=prompt, tests=tests, stop_sequences=b.stop_sequences, parsed=p)
