"""The synthetic execution suite: held-out programs of the embedded generator as executable
problems in all five languages, sized so that the tiny models trained on that corpus can pass
some of them.

What is held out. A problem is one function of one program of the synthetic generator
(:mod:`babel_interp.corpus.synthetic`) in the *world* of the model's training corpus: the same
program seed and fact tables (``SyntheticConfig.seed``, ``fact_seed``, ...), so the prompts call
the same helpers and facts the model was trained on. Its program id is far beyond any training
range: the corpus trains on ids ``first_program .. first_program + docs_per_language - 1`` of its
config (``0 .. N-1`` in the experiments, whose validation split is drawn from the same ids), the
held-out completion items of :mod:`babel_interp.analysis.performance` use another seed stream and
the probes ids from 50,000,000; the suite takes the ids from
``first_program + 1,000,000 * seed`` (900,000,000 by default), one program per problem.
:func:`synthetic_problems` refuses a range that meets the training range of the config it is
given, and :func:`assert_held_out` checks a list of problems against a built corpus's manifest.
What is new is the program: a local helper is drawn from a small space (a name of 8 x 56, three
shapes, a few constants), so the same helper also occurs in training documents, beside many other
bodies under the same name; its name does not determine its body.

Kinds and difficulty. A problem asks for the last statements of a function whose earlier lines
are in the prompt:

* ``main_tail_K``: the last K top-level statements of the program's main function (K = 1 is its
  ``return`` of the accumulator, which every main function ends with: the easy end);
* ``helper_tail``: a local helper's last statement (a ``return``);
* ``helper_body``: a local helper's whole body (its constants appear nowhere else: the hard end).

``meta["difficulty"]`` is the number of statements to write (nested ones included, the same in
every language); ``meta["lines"]`` the canonical completion's lines in that language. The kinds
cycle through ``SyntheticSuiteConfig.kinds``, so a suite of any size mixes them evenly.

Prompts. The prompt is the program as the generator renders it, up to the cut: the file header,
every definition before the function, its signature and its first statements. Definitions after
the function are left out (nothing before it calls them). A main function calls the planted facts,
which the corpus defines only in ``planted_in``; its prompts in the other languages define them
too, where the Python document does (``meta["defines_planted"]``). Helper prompts follow the
corpus exactly. Two changes make every program build:

* Go: a variable that the prompt declares but does not read gets ``_ = name`` after its
  declaration (Go rejects unused variables, and the completion may not read it); the imports are
  those of the rendered text plus ``os`` (the tests exit through it), each one also used by the
  tests, so a completion that drops the only use of a package still compiles. The corpus's Go uses
  ``min``, ``max`` and ``slices`` (Go 1.21); the tests define stand-ins, and ``slices`` is not
  imported, so the program builds with Go 1.19 as well as later;
* C++ is compiled as C++17 (g++ 12 has no ``<format>``, and ``starts_with``, ``ends_with`` and
  ``map::contains`` are C++20): main functions using ``startswith``, ``endswith``, ``has_key`` or
  ``format`` are skipped, in every language, so the problems are the same everywhere.

Tests. The expected values come from an interpreter of the generator's program IR, which refuses
any input on which the five languages could disagree: a ``find`` that misses (PHP's ``strpos``
returns false, not -1), ``%`` of a negative number, a value beyond 32-bit ``int``, an unparsable
``to_int``, a ``round`` of an exact half, the square root of a negative number, a missing key or a
run that is too long. Inputs are drawn (seeded) until ``n_tests`` valid ones are found that give at
least two distinct results (so no constant passes) and run every statement to complete at least
once (so a helper's last ``return`` behind an ``if`` is exercised); a program without such inputs
is skipped. The test code calls the function on each input and exits with status 3
(:data:`~babel_interp.evaluation.problems.WRONG_ANSWER_EXIT`) at the first mismatch. Expected
values are identical in every language.

Stop sequences end a completion where the function ends: a closing brace at the function's
indentation (``"\\n}"``; ``"\\n    }"`` for C#'s methods), a new top-level definition, or for
Python the usual top-level starts. The tests begin with that brace, so ``prompt + completion +
"\\n" + tests`` is the whole program (:func:`~babel_interp.evaluation.problems.assemble_program`).
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase
from babel_interp.corpus.shards import MANIFEST
from babel_interp.corpus.synthetic import (
    MAX_FACTS,
    SUPPORTED_LANGUAGES,
    Answer,
    Aug,
    B,
    Bin,
    C,
    Chr,
    Decl,
    Effect,
    Empty,
    ForEach,
    ForRange,
    Function,
    Idx,
    If,
    K,
    L,
    Put,
    Return,
    SyntheticConfig,
    V,
    While,
    plan_program,
    render_function_cut,
)
from babel_interp.evaluation.problems import Problem
from babel_interp.io import read_json
from babel_interp.languages import get_language

__all__ = [
    "DEFAULT_FIRST_PROGRAM",
    "DEFAULT_KINDS",
    "KINDS",
    "SEED_STRIDE",
    "STOP_SEQUENCES",
    "SUITE",
    "HeldOutError",
    "SyntheticSuiteConfig",
    "assert_held_out",
    "synthetic_problems",
    "training_program_ranges",
]

SUITE = "synthetic"
#: Where held-out program ids start (seed 0): far beyond any training range of the experiments.
DEFAULT_FIRST_PROGRAM = 900_000_000
#: Ids available to one suite seed: seed ``s`` draws from ``first_program + s * SEED_STRIDE``.
SEED_STRIDE = 1_000_000
KINDS = ("main_tail_1", "main_tail_2", "main_tail_3", "helper_tail", "helper_body")
#: Two easy kinds (one statement), two medium (two and three statements), one hard (a body).
DEFAULT_KINDS = ("main_tail_1", "helper_tail", "main_tail_2", "helper_body", "main_tail_3")

STOP_SEQUENCES: dict[str, tuple[str, ...]] = {
    "python": ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"),
    "php": ("\n}", "\nfunction ", "\n?>"),
    "go": ("\n}", "\nfunc "),
    "cpp": ("\n}",),
    "csharp": ("\n    }", "\n}"),
}

# Built-ins that g++ 12 in C++17 mode cannot compile as the generator renders them.
_CPP17_MISSING = frozenset({"startswith", "endswith", "has_key", "format"})
# Every Go package the generator's Go can use, with a symbol that marks its import as used.
_GO_PACKAGES = {"fmt": "Sprint", "math": "Abs", "strconv": "Itoa", "strings": "ToUpper"}
_INT_MAX = 2**31 - 1  # C# and C++ ``int``: every value the suite computes stays within it
_STEP_BUDGET = 20_000  # statements one test call may execute
_PROGRAM_BUDGET = 300_000  # statements all the input draws of one program may execute
_MAX_SCAN = 2_000  # programs tried for one problem before giving up
_INPUT_TRIES = 400  # inputs drawn for one program
_STRING_CHARS = "abcdefghijklmnoprstuvwy"  # the generator's letters: literals need no escaping


class HeldOutError(ValueError):
    """Problems of the suite use programs that a training corpus contains."""


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# The fields that decide the generator's world (the program plans and the fact tables), as
# (suite field, SyntheticConfig field).
_WORLD_FIELDS = (
    ("synthetic_seed", "seed"),
    ("fact_seed", "fact_seed"),
    ("n_planted_facts", "n_planted_facts"),
    ("n_shared_facts", "n_shared_facts"),
    ("planted_in", "planted_in"),
    ("min_ops", "min_ops"),
    ("max_ops", "max_ops"),
    ("max_facts_per_doc", "max_facts_per_doc"),
)


@dataclass
class SyntheticSuiteConfig(ConfigBase):
    """Which problems to build. Every field is plain data (round-trips through JSON).

    ``n_problems`` problems, each rendered in every one of ``languages``; problem ``i`` is of kind
    ``kinds[i % len(kinds)]`` (see :data:`KINDS`), with ``n_tests`` test inputs. Programs come
    from ids ``first_program + seed * SEED_STRIDE`` onward, one per problem, skipping programs a
    kind cannot use. The remaining fields are the generator's world and must match the training
    corpus's :class:`~babel_interp.corpus.synthetic.SyntheticConfig` (``synthetic_seed`` is its
    ``seed``); :meth:`with_world` copies them from one.
    """

    languages: tuple[str, ...] = SUPPORTED_LANGUAGES
    n_problems: int = 40
    seed: int = 0
    first_program: int = DEFAULT_FIRST_PROGRAM
    kinds: tuple[str, ...] = DEFAULT_KINDS
    n_tests: int = 4
    synthetic_seed: int = 0
    fact_seed: int = 0
    n_planted_facts: int = 64
    n_shared_facts: int = 64
    planted_in: str = "python"
    min_ops: int = 4
    max_ops: int = 8
    max_facts_per_doc: int = 2

    def validate(self) -> None:
        """Check every field; language names become canonical, ``kinds`` a tuple."""
        self.languages = self._language_tuple("languages", self.languages)
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"SyntheticSuiteConfig.languages has duplicates: {self.languages}")
        self.planted_in = self._language_tuple("planted_in", (self.planted_in,))[0]
        if isinstance(self.kinds, str) or not isinstance(self.kinds, Sequence):
            raise ValueError(
                f"SyntheticSuiteConfig.kinds must be a sequence of kinds, got {self.kinds!r}"
            )
        self.kinds = tuple(self.kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or bad:
            raise ValueError(
                f"SyntheticSuiteConfig.kinds must list kinds among {', '.join(KINDS)}, "
                f"got {list(self.kinds)}"
            )
        for name in ("synthetic_seed", "fact_seed"):
            if not _is_int(getattr(self, name)):
                raise ValueError(
                    f"SyntheticSuiteConfig.{name} must be an integer, got {getattr(self, name)!r}"
                )
        for name, lo, hi in (
            ("n_problems", 1, SEED_STRIDE // 100),
            ("seed", 0, None),
            ("first_program", 0, None),
            ("n_tests", 2, 50),
            ("n_planted_facts", 0, MAX_FACTS),
            ("n_shared_facts", 0, MAX_FACTS),
            ("min_ops", 1, None),
            ("max_ops", 1, None),
            ("max_facts_per_doc", 1, None),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < lo or (hi is not None and value > hi):
                bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(
                    f"SyntheticSuiteConfig.{name} must be an integer {bounds}, got {value!r}"
                )
        if self.max_ops < self.min_ops:
            raise ValueError(
                f"SyntheticSuiteConfig.max_ops ({self.max_ops}) must be >= min_ops ({self.min_ops})"
            )

    @staticmethod
    def _language_tuple(field_name: str, names: Any) -> tuple[str, ...]:
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise ValueError(
                f"SyntheticSuiteConfig.{field_name} must be a sequence of language names, "
                f"got {names!r}"
            )
        out = []
        for name in names:
            try:
                lang = get_language(name).name
            except (ValueError, TypeError) as e:
                raise ValueError(f"SyntheticSuiteConfig.{field_name}: {e}") from None
            if lang not in SUPPORTED_LANGUAGES:
                raise ValueError(
                    f"SyntheticSuiteConfig.{field_name}: the synthetic generator renders only "
                    f"{', '.join(SUPPORTED_LANGUAGES)}, not {lang!r}"
                )
            out.append(lang)
        if not out:
            raise ValueError(f"SyntheticSuiteConfig.{field_name} must name at least one language")
        return tuple(out)

    @property
    def start_program(self) -> int:
        """The first program id this suite may use."""
        return self.first_program + self.seed * SEED_STRIDE

    def world(self) -> SyntheticConfig:
        """The generator config whose programs and facts the problems use (its languages,
        counts and ``first_program`` do not affect a program's plan)."""
        return SyntheticConfig(**{syn: getattr(self, own) for own, syn in _WORLD_FIELDS})

    def with_world(
        self, synthetic_config: SyntheticConfig | Mapping[str, Any]
    ) -> SyntheticSuiteConfig:
        """A copy whose world fields are those of ``synthetic_config`` (e.g. a corpus's)."""
        sc = _as_synthetic_config(synthetic_config)
        return replace(self, **{own: getattr(sc, syn) for own, syn in _WORLD_FIELDS})


def _as_synthetic_config(cfg: SyntheticConfig | Mapping[str, Any]) -> SyntheticConfig:
    if isinstance(cfg, SyntheticConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return SyntheticConfig.from_dict(dict(cfg))
    raise ValueError(f"expected a SyntheticConfig or its dict, got {type(cfg).__name__}")


# ---------------------------------------------------------------------------------------------
# The reference interpreter of the program IR
# ---------------------------------------------------------------------------------------------


class _Divergent(Exception):
    """The input is unusable: the languages could disagree on it, or it runs too long."""


_INT_TEXT = re.compile(r"-?[0-9]{1,9}")


def _int(v: int) -> int:
    if not -_INT_MAX <= v <= _INT_MAX:
        raise _Divergent(f"{v} overflows a 32-bit int")
    return v


def _is_function(d: Any) -> bool:
    return type(d) is Function


class _Interpreter:
    """Evaluates a program's functions with the semantics every rendering shares, raising
    :class:`_Divergent` wherever the renderings' built-ins could differ."""

    def __init__(self, program: Any) -> None:
        self.functions = {d.name: d for d in program.defs if _is_function(d)}
        self.constants = {d.name: d.value.value for d in program.defs if not _is_function(d)}
        self.steps = 0
        self.total_steps = 0
        self.covered: set[int] = set()

    def run(self, name: str, args: Sequence[Any]) -> int:
        """``name(*args)``; records the top-level statements it executed in ``covered``."""
        self.steps = 0
        self.covered = set()
        try:
            # Fresh copies: a function may sort or reverse its list argument in place.
            return self.call(name, [list(a) if isinstance(a, list) else a for a in args], True)
        finally:
            self.total_steps += self.steps

    def call(self, name: str, args: Sequence[Any], track: bool = False) -> int:
        f = self.functions[name]
        env = {p: a for (p, _), a in zip(f.params, args, strict=True)}
        for i, stmt in enumerate(f.body):
            if track:
                self.covered.add(i)
            done, value = self.execute(stmt, env)
            if done:
                if not _is_int(value):
                    raise _Divergent(f"{name} returned {value!r}")
                return value
        raise _Divergent(f"{name} ended without a return")

    def block(self, body: Iterable[Any], env: dict) -> tuple[bool, Any]:
        for stmt in body:
            done, value = self.execute(stmt, env)
            if done:
                return done, value
        return False, None

    def execute(self, s: Any, env: dict) -> tuple[bool, Any]:
        self.steps += 1
        if self.steps > _STEP_BUDGET:
            raise _Divergent("runs too long")
        t = type(s)
        if t is Decl:
            env[s.name] = self.eval(s.expr, env)
        elif t is Aug:
            value = self.eval(s.expr, env)
            if s.op == "+=":
                env[s.name] = _int(env[s.name] + value)
            elif s.op == "-=":
                env[s.name] = _int(env[s.name] - value)
            elif not (s.op == "=" and s.name == "_"):
                raise TypeError(f"unknown assignment {s!r}")
        elif t is Effect:
            self.eval(s.expr, env)
        elif t is Return:
            return True, self.eval(s.expr, env)
        elif t is If:
            return self.block(s.body if self.eval(s.cond, env) else s.orelse, env)
        elif t is ForEach:
            for x in list(env[s.seq]):
                env[s.var] = x
                done, value = self.block(s.body, env)
                if done:
                    return done, value
        elif t is ForRange:
            for i in range(self.eval(s.bound, env)):
                env[s.var] = i
                done, value = self.block(s.body, env)
                if done:
                    return done, value
        elif t is While:
            while self.eval(s.cond, env):
                done, value = self.block(s.body, env)
                if done:
                    return done, value
                self.steps += 1
                if self.steps > _STEP_BUDGET:
                    raise _Divergent("runs too long")
        elif t is Put:
            env[s.container][self.eval(s.key, env)] = self.eval(s.value, env)
        else:
            raise TypeError(f"unknown statement {s!r}")
        return False, None

    def eval(self, e: Any, env: dict) -> Any:
        t = type(e)
        if t is V:
            return env[e.name]
        if t is L or t is Chr or t is Answer:
            return e.value
        if t is Bin:
            return self.binary(e.op, self.eval(e.left, env), self.eval(e.right, env))
        if t is B:
            return self.builtin(e.concept, [self.eval(a, env) for a in e.args])
        if t is C:
            return self.call(e.name, [self.eval(a, env) for a in e.args])
        if t is K:
            return self.constants[e.name]
        if t is Idx:
            container, key = env[e.container], self.eval(e.key, env)
            if key not in container:
                raise _Divergent(f"missing key {key!r}")
            return container[key]
        if t is Empty:
            return [] if e.type == "list" else {}
        raise TypeError(f"unknown expression {e!r}")

    @staticmethod
    def binary(op: str, a: Any, b: Any) -> Any:
        if not (_is_int(a) and _is_int(b)):
            raise TypeError(f"{op} of {a!r} and {b!r}")
        if op == "+":
            return _int(a + b)
        if op == "-":
            return _int(a - b)
        if op == "*":
            return _int(a * b)
        if op == "%":
            # Python's % of a negative number differs from the C family's (and PHP's).
            if a < 0 or b <= 0:
                raise _Divergent(f"{a} % {b}")
            return a % b
        if op == ">":
            return a > b
        if op == "<":
            return a < b
        if op == ">=":
            return a >= b
        if op == "<=":
            return a <= b
        raise TypeError(f"unknown operator {op!r}")

    @staticmethod
    def builtin(concept: str, args: list[Any]) -> Any:
        if concept in ("length", "count"):
            return len(args[0])
        if concept == "upper":
            return args[0].upper()
        if concept == "lower":
            return args[0].lower()
        if concept == "replace":
            return args[0].replace(args[1], args[2])
        if concept == "find":
            pos = args[0].find(args[1])
            if pos < 0:
                raise _Divergent("find misses (PHP's strpos returns false, C++ npos)")
            return pos
        if concept == "startswith":
            return args[0].startswith(args[1])
        if concept == "endswith":
            return args[0].endswith(args[1])
        if concept == "to_int":
            if not _INT_TEXT.fullmatch(args[0]):
                raise _Divergent(f"to_int of {args[0]!r}")
            return _int(int(args[0]))
        if concept == "to_string":
            return str(args[0])
        if concept == "abs":
            return _int(abs(args[0]))
        if concept == "max":
            return max(args[0], args[1])
        if concept == "min":
            return min(args[0], args[1])
        if concept == "sqrt":
            if args[0] < 0:
                raise _Divergent(f"sqrt of {args[0]}")
            return math.sqrt(args[0])
        if concept == "pow":
            return float(_int(args[0] ** args[1]))
        if concept == "floor":
            return _int(math.floor(args[0]))
        if concept == "round":
            # Python and C# round halves to even, the others away from zero.
            if args[0] - math.floor(args[0]) == 0.5:
                raise _Divergent(f"round of {args[0]}")
            return _int(round(args[0]))
        if concept == "format":
            return f"{args[0]}:{args[1]}"
        if concept == "sort":
            args[0].sort()
            return None
        if concept == "reverse":
            args[0].reverse()
            return None
        if concept == "append":
            args[0].append(args[1])
            return None
        if concept == "print":
            return None
        if concept == "has_key":
            return args[1] in args[0]
        raise TypeError(f"unknown built-in {concept!r}")


# ---------------------------------------------------------------------------------------------
# IR queries
# ---------------------------------------------------------------------------------------------


def _children(node: Any) -> list[Any]:
    """The sub-expressions and sub-statements of an IR node."""
    t = type(node)
    if t is Bin:
        return [node.left, node.right]
    if t in (B, C):
        return list(node.args)
    if t is Idx:
        return [node.key]
    if t in (Decl, Aug, Effect, Return):
        return [node.expr]
    if t is If:
        return [node.cond, *node.body, *node.orelse]
    if t is ForEach:
        return list(node.body)
    if t is ForRange:
        return [node.bound, *node.body]
    if t is While:
        return [node.cond, *node.body]
    if t is Put:
        return [node.key, node.value]
    return []


def _walk(nodes: Iterable[Any]) -> Iterable[Any]:
    stack = list(nodes)
    while stack:
        n = stack.pop()
        yield n
        stack.extend(_children(n))


def _reads(nodes: Iterable[Any]) -> set[str]:
    """Variables the nodes read. A compound assignment reads its target, as Go counts it."""
    out: set[str] = set()
    for n in _walk(nodes):
        t = type(n)
        if t is V:
            out.add(n.name)
        elif t is Idx or t is Put:
            out.add(n.container)
        elif t is ForEach:
            out.add(n.seq)
        elif t is Aug:
            out.add(n.name)
    return out


def _concepts(nodes: Iterable[Any]) -> set[str]:
    return {n.concept for n in _walk(nodes) if type(n) is B}


def _count_statements(body: Iterable[Any]) -> int:
    n = 0
    for s in body:
        n += 1
        if type(s) is If:
            n += _count_statements(s.body) + _count_statements(s.orelse)
        elif type(s) in (ForEach, ForRange, While):
            n += _count_statements(s.body)
    return n


def _unread_declarations(body: Sequence[Any]) -> list[int]:
    """Indices of the declarations in ``body`` that no later statement of ``body`` reads."""
    return [
        i for i, s in enumerate(body) if type(s) is Decl and s.name not in _reads(body[i + 1 :])
    ]


def _nested_blocks_clean(body: Iterable[Any]) -> bool:
    """Every declaration inside a nested block is read within it (Go would reject it)."""
    for s in body:
        blocks = []
        if type(s) is If:
            blocks = [s.body, s.orelse]
        elif type(s) in (ForEach, ForRange, While):
            blocks = [s.body]
        for b in blocks:
            if _unread_declarations(b) or not _nested_blocks_clean(b):
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Choosing problems
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    program: Any
    kind: str
    function: str
    keep: int  # top-level statements of the function shown in the prompt
    cases: tuple[tuple[tuple[Any, ...], int], ...]  # (arguments, expected result)
    needs_planted: bool


def _helpers(program: Any) -> list[Any]:
    # Local helpers: functions that are neither facts nor the main function (the last).
    return [d for d in program.defs[:-1] if _is_function(d) and d.fact is None]


def _pick_cases(
    interp: _Interpreter,
    name: str,
    candidates: Iterable[tuple[Any, ...]],
    must_cover: set[int],
    n: int,
) -> tuple[tuple[tuple[Any, ...], int], ...] | None:
    """``n`` valid inputs that together run every statement in ``must_cover`` and give at least
    two distinct results; None when the candidates have none."""
    valid: list[tuple[tuple[Any, ...], int, frozenset[int]]] = []
    seen: set[str] = set()
    for args in candidates:
        if interp.total_steps > _PROGRAM_BUDGET:
            break  # a program whose inputs mostly run too long is not worth more draws
        key = repr(args)
        if key in seen:
            continue
        seen.add(key)
        try:
            value = interp.run(name, args)
        except _Divergent:
            continue
        valid.append((args, value, frozenset(interp.covered)))
        if len(valid) >= 4 * n:
            break
    chosen: list[tuple[tuple[Any, ...], int, frozenset[int]]] = []
    missing = set(must_cover)
    # Greedy: first inputs that reach statements not yet reached, then new results, then any.
    for want in ("cover", "value", "any"):
        for item in valid:
            if len(chosen) == n:
                break
            if item in chosen:
                continue
            if want == "cover" and not (item[2] & missing):
                continue
            if want == "value" and item[1] in {c[1] for c in chosen}:
                continue
            chosen.append(item)
            missing -= item[2]
    if len(chosen) < n or missing or len({c[1] for c in chosen}) < 2:
        return None
    return tuple((args, value) for args, value, _ in chosen)


def _helper_task(program: Any, kind: str, rng: random.Random, n_tests: int) -> _Task | None:
    helpers = _helpers(program)
    if not helpers:
        return None
    helper = rng.choice(helpers)
    keep = len(helper.body) - 1 if kind == "helper_tail" else 0
    # Non-negative arguments: ``%`` of a negative number differs across the languages.
    candidates = [(rng.randint(0, 120),) for _ in range(_INPUT_TRIES // 4)]
    cases = _pick_cases(
        _Interpreter(program),
        helper.name,
        candidates,
        set(range(keep, len(helper.body))),
        n_tests,
    )
    if cases is None:
        return None
    return _Task(program, kind, helper.name, keep, cases, needs_planted=False)


def _main_arguments(main: Any, rng: random.Random) -> tuple[Any, ...]:
    # The words the function searches for: strings built from them make ``find`` succeed.
    needles = sorted(
        {
            a.value
            for n in _walk(main.body)
            if type(n) is B
            for a in n.args
            if type(a) is L and isinstance(a.value, str)
        }
    )
    args: list[Any] = []
    for _, typ in main.params:
        if typ == "int":
            args.append(rng.randint(-10, 80))
        elif typ == "list":
            args.append([rng.randint(-20, 60) for _ in range(rng.randint(1, 6))])
        elif typ == "str":
            style = rng.random()
            if style < 0.2:
                # A number, for programs that parse their string.
                args.append(str(rng.randint(-99, 999)))
            else:
                parts = []
                for _ in range(rng.randint(1, 3)):
                    if needles and rng.random() < 0.6:
                        parts.append(rng.choice(needles))
                    else:
                        parts.append(
                            "".join(rng.choice(_STRING_CHARS) for _ in range(rng.randint(1, 4)))
                        )
                args.append("".join(parts))
        else:  # pragma: no cover - the generator's main functions take str, list and int
            raise TypeError(f"unsupported parameter type {typ!r}")
    return tuple(args)


def _main_task(program: Any, kind: str, rng: random.Random, n_tests: int) -> _Task | None:
    main = program.defs[-1]
    if _concepts(main.body) & _CPP17_MISSING:
        return None
    k = int(kind.rsplit("_", 1)[1])
    keep = len(main.body) - k
    # Go rejects a declared variable that nothing reads: the completion must read what it
    # declares (what the prompt declares gets ``_ = name`` in Go).
    tail = main.body[keep:]
    if _unread_declarations(tail) or not _nested_blocks_clean(main.body):
        return None
    candidates = (_main_arguments(main, rng) for _ in range(_INPUT_TRIES))
    cases = _pick_cases(
        _Interpreter(program), main.name, candidates, set(range(keep, len(main.body))), n_tests
    )
    if cases is None:
        return None
    needs = any(d.fact is not None and d.fact.planted for d in program.defs[:-1])
    return _Task(program, kind, main.name, keep, cases, needs_planted=needs)


def _tasks(cfg: SyntheticSuiteConfig) -> list[_Task]:
    world = cfg.world()
    tasks: list[_Task] = []
    pid = cfg.start_program
    end = cfg.start_program + SEED_STRIDE
    for i in range(cfg.n_problems):
        kind = cfg.kinds[i % len(cfg.kinds)]
        for _ in range(_MAX_SCAN):
            if pid >= end:
                raise RuntimeError(
                    f"the suite's program range [{cfg.start_program}, {end}) is exhausted"
                )
            program = plan_program(world, pid)
            pid += 1
            rng = random.Random(f"babel-suite/v1/{cfg.seed}/{world.seed}/{program.program_id}")
            make = _main_task if kind.startswith("main_tail") else _helper_task
            task = make(program, kind, rng, cfg.n_tests)
            if task is not None:
                tasks.append(task)
                break
        else:
            raise RuntimeError(f"no usable program for a {kind!r} problem in {_MAX_SCAN} tries")
    return tasks


# ---------------------------------------------------------------------------------------------
# Rendering problems
# ---------------------------------------------------------------------------------------------


def _literal(value: Any, language: str) -> str:
    if isinstance(value, str):
        return f'"{value}"'  # [a-z0-9-] only: the same literal in every language
    if isinstance(value, list):
        items = ", ".join(str(v) for v in value)
        if language == "go":
            return f"[]int{{{items}}}"
        if language == "cpp":
            return f"std::vector<int>{{{items}}}"
        if language == "csharp":
            return f"new List<int> {{ {items} }}"
        return f"[{items}]"
    return str(value)


def _calls(task: _Task, language: str) -> list[str]:
    out = []
    for i, (args, expected) in enumerate(task.cases, 1):
        call = f"{task.function}({', '.join(_literal(a, language) for a in args)})"
        out.append(f'babel_check({call}, {expected}, "{task.function} case {i}")')
    return out


def _harness(task: _Task, language: str, go_packages: Sequence[str]) -> str:
    """The test code after the function's closing: checks, then the entry point."""
    calls = _calls(task, language)
    if language == "python":
        return (
            "import sys\n\n\n"
            "def babel_check(got, want, case):\n"
            "    if type(got) is not int or got != want:\n"
            '        print(f"{case}: got {got!r}, expected {want!r}", file=sys.stderr)\n'
            "        sys.exit(3)\n\n\n" + "".join(c + "\n" for c in calls)
        )
    if language == "php":
        return (
            "function babel_check($got, $want, $case)\n{\n"
            "    if ($got !== $want) {\n"
            '        fwrite(STDERR, $case . ": got " . var_export($got, true) . ", expected "'
            ' . $want . "\\n");\n'
            "        exit(3);\n    }\n}\n\n" + "".join(c + ";\n" for c in calls)
        )
    if language == "go":
        uses = "".join(f"var _ = {p}.{_GO_PACKAGES[p]}\n" for p in go_packages if p != "os")
        return (
            "// The generator's Go uses min, max and slices (Go 1.21); these stand-ins build\n"
            "// with older toolchains as well.\n"
            "func min(a, b int) int {\n\tif a < b {\n\t\treturn a\n\t}\n\treturn b\n}\n\n"
            "func max(a, b int) int {\n\tif a > b {\n\t\treturn a\n\t}\n\treturn b\n}\n\n"
            "var slices = struct {\n\tSort    func([]int)\n\tReverse func([]int)\n}{\n"
            "\tSort: func(s []int) {\n"
            "\t\tfor i := 1; i < len(s); i++ {\n"
            "\t\t\tfor j := i; j > 0 && s[j] < s[j-1]; j-- {\n"
            "\t\t\t\ts[j], s[j-1] = s[j-1], s[j]\n\t\t\t}\n\t\t}\n\t},\n"
            "\tReverse: func(s []int) {\n"
            "\t\tfor i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {\n"
            "\t\t\ts[i], s[j] = s[j], s[i]\n\t\t}\n\t},\n}\n\n"
            + (uses + "\n" if uses else "")
            + "func babel_check(got int, want int, what string) {\n"
            "\tif got != want {\n"
            '\t\tprintln(what+": got", got, "expected", want)\n'
            "\t\tos.Exit(3)\n\t}\n}\n\n"
            "func main() {\n" + "".join(f"\t{c}\n" for c in calls) + "}\n"
        )
    if language == "cpp":
        return (
            "#include <cstdlib>\n#include <iostream>\n\n"
            "void babel_check(int got, int want, const char* what) {\n"
            "    if (got != want) {\n"
            '        std::cerr << what << ": got " << got << ", expected " << want << "\\n";\n'
            "        std::exit(3);\n    }\n}\n\n"
            "int main() {\n" + "".join(f"    {c};\n" for c in calls) + "    return 0;\n}\n"
        )
    if language == "csharp":
        return (
            "    static void babel_check(int got, int want, string what)\n    {\n"
            "        if (got != want)\n        {\n"
            '            Console.Error.WriteLine(what + ": got " + got + ", expected " + want);\n'
            "            Environment.Exit(3);\n        }\n    }\n\n"
            "    public static void Main()\n    {\n"
            + "".join(f"        {c};\n" for c in calls)
            + "    }\n"
        )
    raise ValueError(f"no test harness for {language!r}")  # pragma: no cover


def _go_program(task: _Task) -> tuple[Any, int]:
    """The program with ``_ = name`` after each declaration the prompt does not read, and the
    new number of kept statements."""
    f = next(d for d in task.program.defs if _is_function(d) and d.name == task.function)
    head, tail = list(f.body[: task.keep]), list(f.body[task.keep :])
    unread = set(_unread_declarations(head))
    body: list[Any] = []
    for i, s in enumerate(head):
        body.append(s)
        if i in unread:
            body.append(Aug("_", "=", V(s.name)))
    keep = len(body)
    g = replace(f, body=tuple(body + tail))
    defs = tuple(g if d is f else d for d in task.program.defs)
    return replace(task.program, defs=defs), keep


def _go_header(text: str) -> tuple[str, list[str]]:
    # Only what the text uses (Go rejects unused imports), plus os for the tests; slices is the
    # tests' stand-in.
    used = sorted([p for p in _GO_PACKAGES if p + "." in text] + ["os"])
    if len(used) == 1:
        imports = f'import "{used[0]}"\n\n'
    else:
        imports = "import (\n" + "".join(f'\t"{p}"\n' for p in used) + ")\n\n"
    return "package main\n\n" + imports, used


def _problem(task: _Task, language: str, world: SyntheticConfig, suite_seed: int) -> Problem:
    program, keep = (task.program, task.keep)
    if language == "go":
        program, keep = _go_program(task)
    keep_planted = language == world.planted_in or task.needs_planted
    cut = render_function_cut(program, language, task.function, keep, keep_planted=keep_planted)
    canonical = cut.rest[:-1]  # the newline before the closing is the join's "\n"
    header, go_packages = cut.header, []
    if language == "go":
        header, go_packages = _go_header(cut.before + cut.rest)
    sep = "\n\n" if language == "python" else "\n"
    tests = cut.close + sep + _harness(task, language, go_packages) + cut.footer
    f = next(d for d in task.program.defs if _is_function(d) and d.name == task.function)
    statements = _count_statements(f.body[task.keep :])
    meta = {
        "program_id": task.program.program_id,
        "kind": task.kind,
        "function": task.function,
        "difficulty": statements,
        "statements": statements,
        "lines": sum(1 for ln in canonical.splitlines() if ln.strip()),
        "n_tests": len(task.cases),
        "defines_planted": keep_planted and language != world.planted_in,
        "suite_seed": suite_seed,
        "world": {syn: getattr(world, syn) for _, syn in _WORLD_FIELDS},
    }
    return Problem(
        task_id=f"{SUITE}/{task.program.program_id}/{task.kind}",
        language=language,
        prompt=header + cut.before,
        tests=tests,
        entry_point=task.function,
        stop_sequences=STOP_SEQUENCES[language],
        canonical_solution=canonical,
        suite=SUITE,
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def synthetic_problems(
    cfg: SyntheticSuiteConfig | None = None,
    synthetic_config: SyntheticConfig | Mapping[str, Any] | None = None,
) -> list[Problem]:
    """The suite: ``cfg.n_problems`` tasks, each as one :class:`Problem` per language (task by
    task, languages in ``cfg.languages`` order); every problem of a task has the same task id
    and the same tests.

    ``synthetic_config`` is the training corpus's generator config (e.g.
    :func:`babel_interp.analysis.performance.synthetic_config_of_run`): its world replaces
    ``cfg``'s, and a suite whose program ids meet its training range is refused. Deterministic in
    ``cfg``; a language's problems do not depend on which other languages are requested.
    """
    cfg = cfg or SyntheticSuiteConfig()
    if synthetic_config is not None:
        synthetic_config = _as_synthetic_config(synthetic_config)
        cfg = cfg.with_world(synthetic_config)
    tasks = _tasks(cfg)
    if synthetic_config is not None:
        lo, hi = _training_range(synthetic_config)
        used = [t.program.program_id for t in tasks]
        if any(lo <= pid < hi for pid in used):
            raise HeldOutError(
                f"SyntheticSuiteConfig.first_program: the suite's programs "
                f"[{min(used)}, {max(used)}] meet the training programs [{lo}, {hi}) of the "
                f"synthetic config; choose first_program >= {hi}"
            )
    world = cfg.world()
    return [_problem(t, lang, world, cfg.seed) for t in tasks for lang in cfg.languages]


def _training_range(sc: SyntheticConfig) -> tuple[int, int]:
    docs = sc.docs_per_language
    n = max(docs.values()) if isinstance(docs, Mapping) else docs
    return sc.first_program, sc.first_program + n


def training_program_ranges(corpus_dir: str | os.PathLike) -> list[tuple[int, int, int]]:
    """``(seed, first, end)`` of every synthetic source recorded in a corpus's manifest: the
    corpus holds programs ``first .. end - 1`` of generator seed ``seed`` (both splits). Empty
    for a corpus without synthetic sources."""
    path = Path(corpus_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{corpus_dir} is not a corpus directory: {MANIFEST} is missing")
    manifest = read_json(path, "corpus manifest")
    sources = manifest.get("build", {}).get("config", {}).get("sources", [])
    out = []
    for src in sources:
        if isinstance(src, Mapping) and src.get("kind") == "synthetic":
            sc = SyntheticConfig.from_dict(dict(src.get("options") or {}))
            out.append((sc.seed, *_training_range(sc)))
    return out


def assert_held_out(problems: Iterable[Problem], corpus_dir: str | os.PathLike) -> int:
    """Raise :class:`HeldOutError` when a problem's program is one the corpus in
    ``corpus_dir`` was built from (train or validation split); returns the number of problems
    checked.

    A program is identified by its id; an id inside a recorded synthetic range counts as an
    overlap whatever the seeds (stricter than needed: another seed plans another program).
    """
    ranges = training_program_ranges(corpus_dir)
    overlaps: list[str] = []
    n = 0
    for p in problems:
        pid = p.meta.get("program_id") if isinstance(p.meta, Mapping) else None
        if not _is_int(pid):
            raise ValueError(
                f"problem {p.task_id!r} has no meta['program_id']: not a synthetic one"
            )
        n += 1
        for seed, lo, hi in ranges:
            if lo <= pid < hi:
                overlaps.append(
                    f"{p.task_id} ({p.language}): program {pid} in seed {seed}'s [{lo}, {hi})"
                )
    if overlaps:
        more = f" (and {len(overlaps) - 5} more)" if len(overlaps) > 5 else ""
        raise HeldOutError(
            f"{len(overlaps)} problem(s) use programs of the training corpus {corpus_dir}: "
            + "; ".join(overlaps[:5])
            + more
        )
    return n
