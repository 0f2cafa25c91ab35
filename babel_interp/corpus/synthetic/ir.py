"""The program IR: a tiny language-neutral syntax tree that every dialect renders.

Expressions: :class:`V` (a variable), :class:`L` (an int or string literal), :class:`Chr`,
:class:`Answer` (the literal a fact probe asks for), :class:`Bin`, :class:`B` (a built-in use),
:class:`C` (a call of a user function), :class:`K` (a user constant), :class:`Idx`,
:class:`Empty`. Statements: :class:`Decl`, :class:`Aug`, :class:`Effect`, :class:`If`,
:class:`ForEach`, :class:`ForRange`, :class:`While`, :class:`Put`, :class:`Return`. Definitions:
:class:`Function` and :class:`Const`, gathered in a :class:`Program`. Value types are the tags
:data:`STR`, :data:`INT`, :data:`FLOAT`, :data:`LIST` and :data:`DICT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from babel_interp.corpus.synthetic.records import PlantedFact

STR, INT, FLOAT, LIST, DICT = "str", "int", "float", "list", "dict"


@dataclass(slots=True)
class V:
    name: str


@dataclass(slots=True)
class L:
    value: int | str


@dataclass(slots=True)
class Chr:
    """A one-character literal: C++ needs char quotes where the others take a string."""

    value: str


@dataclass(slots=True)
class Answer:
    """An integer literal whose position a fact probe needs (the value it asks for)."""

    value: int


@dataclass(slots=True)
class Bin:
    # Rendered without parentheses: the planner only builds left-nested, precedence-safe shapes.
    left: Any
    op: str
    right: Any


@dataclass(slots=True)
class B:
    """A built-in use, realized per language by that dialect's template for ``concept``."""

    concept: str
    args: tuple


@dataclass(slots=True)
class C:
    """A call of a user-defined function."""

    name: str
    args: tuple
    kind: str = "call"
    fact_id: str | None = None


@dataclass(slots=True)
class K:
    """A use of a user-defined constant."""

    name: str
    kind: str = "call"
    fact_id: str | None = None


@dataclass(slots=True)
class Idx:
    container: str
    key: Any


@dataclass(slots=True)
class Empty:
    type: str


@dataclass(slots=True)
class Decl:
    name: str
    type: str
    expr: Any


@dataclass(slots=True)
class Aug:
    name: str
    op: str
    expr: Any


@dataclass(slots=True)
class Effect:
    expr: Any


@dataclass(slots=True)
class If:
    cond: Any
    body: tuple
    orelse: tuple = ()


@dataclass(slots=True)
class ForEach:
    var: str
    seq: str
    body: tuple


@dataclass(slots=True)
class ForRange:
    var: str
    bound: Any
    body: tuple


@dataclass(slots=True)
class While:
    cond: Any
    body: tuple


@dataclass(slots=True)
class Put:
    container: str
    key: Any
    value: Any


@dataclass(slots=True)
class Return:
    expr: Any


@dataclass(slots=True)
class Function:
    """A function definition; ``fact`` is set when it defines a planted or shared fact."""

    name: str
    params: tuple  # ((name, type), ...)
    ret: str
    body: tuple
    public: bool = False
    fact: PlantedFact | None = None


@dataclass(slots=True)
class Const:
    """A constant definition; ``fact`` is set when it defines a planted or shared fact."""

    name: str
    value: Any  # L or Answer
    fact: PlantedFact | None = None


@dataclass(slots=True)
class Program:
    """One abstract program: its id, the class name C# wraps it in, and its definitions."""

    program_id: int
    class_name: str
    defs: tuple  # Const and Function items, in document order; main is last
