"""How a program of the IR becomes text: the shared renderer and the registry of dialects.

A :class:`Dialect` renders IR definitions into a :class:`Writer`, recording a site at the
offset of every built-in, call and fact identifier. The base class renders C-family syntax;
each language's module (``python.py``, ``php.py``, ...) subclasses it with that language's
built-in templates and syntax, and registers an instance with :func:`register_dialect`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

from babel_interp.corpus.synthetic.ir import (
    Answer,
    Aug,
    B,
    Bin,
    C,
    Chr,
    Const,
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
    Program,
    Put,
    Return,
    V,
    While,
)
from babel_interp.corpus.synthetic.records import Site
from babel_interp.languages import CONCEPTS, get_language, list_languages


class Writer:
    """A document being rendered: its text so far, its sites and the fact probe's mark."""

    # StringIO's C-level write and tell keep rendering cheap; tell() is the next site's offset.
    __slots__ = ("buf", "write", "sites", "mark")

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.write = self.buf.write
        self.sites: list[Site] = []
        self.mark: int | None = None

    def site(self, ident: str, concept: str | None, kind: str, fact_id: str | None = None) -> None:
        self.sites.append(Site(self.buf.tell(), ident, concept, kind, fact_id))
        self.write(ident)

    def text(self) -> str:
        return self.buf.getvalue()


_TEMPLATE_TOKEN = re.compile(r"@(\w+)|%(\d|n)|\n")


def parse_template(template: str) -> tuple:
    """A built-in template as ``(kind, value)`` tokens: ``("s", text)``, ``("site", ident)``,
    ``("arg", i)``, ``("name", None)`` and ``("nl", None)``."""
    out: list[tuple[str, Any]] = []
    pos = 0
    for m in _TEMPLATE_TOKEN.finditer(template):
        if m.start() > pos:
            out.append(("s", template[pos : m.start()]))
        if m.group(1):
            out.append(("site", m.group(1)))
        elif m.group(2) == "n":
            out.append(("name", None))
        elif m.group(2):
            out.append(("arg", int(m.group(2))))
        else:
            out.append(("nl", None))
        pos = m.end()
    if pos < len(template):
        out.append(("s", template[pos:]))
    return tuple(out)


# The method writing each loop's header (``for x in xs``, ``while (c)``, ...).
_LOOP_HEADERS = {ForEach: "foreach_header", ForRange: "forrange_header", While: "while_header"}


class Dialect:
    """C-family rendering; subclasses override what their language does differently.

    A subclass sets ``language`` (a registered language name) and its built-in ``templates``;
    its module registers one instance with :func:`register_dialect`.
    """

    language = ""
    unit = "    "
    term = ";"
    # Built-in templates: ``@ident`` is the recorded site (checked against the registry),
    # ``%0``.. the arguments, ``%n`` the declared variable, a newline a line break.
    templates: dict[str, str] = {}
    # Whole-declaration templates, for built-ins that need more than an expression.
    decl_templates: dict[str, str] = {}
    # Condition templates, for membership tests that bind a variable in the if header.
    cond_templates: dict[str, str] = {}
    types: dict[str, str] = {}

    def __init__(self) -> None:
        lang = get_language(self.language)
        for table_name in ("templates", "decl_templates", "cond_templates"):
            table = getattr(self, table_name)
            parsed = {c: parse_template(t) for c, t in table.items()}
            for concept, tokens in parsed.items():
                for kind, val in tokens:
                    if kind == "site" and val != lang.builtins.get(concept):
                        raise AssertionError(
                            f"{self.language} {table_name}[{concept!r}] uses {val!r}; the "
                            f"registry says {lang.builtins.get(concept)!r}"
                        )
            setattr(self, "_" + table_name, parsed)

    # -- expressions ----------------------------------------------------------------------

    def var(self, name: str) -> str:
        return name

    def lit(self, value: int | str) -> str:
        return str(value) if isinstance(value, int) else f'"{value}"'

    def chr(self, value: str) -> str:
        return f'"{value}"'

    def empty(self, typ: str) -> str:
        raise NotImplementedError

    def emit(self, w: Writer, tokens: tuple, concept: str, args: tuple, name: str = "", ind=""):
        for kind, val in tokens:
            if kind == "s":
                w.write(val)
            elif kind == "arg":
                self.expr(w, args[val])
            elif kind == "site":
                w.site(val, concept, "builtin")
            elif kind == "name":
                w.write(self.var(name))
            else:
                w.write("\n" + ind)

    def expr(self, w: Writer, e: Any) -> None:
        t = type(e)
        if t is V:
            w.write(self.var(e.name))
        elif t is L:
            w.write(self.lit(e.value))
        elif t is Bin:
            self.expr(w, e.left)
            w.write(f" {e.op} ")
            self.expr(w, e.right)
        elif t is B:
            self.emit(w, self._templates[e.concept], e.concept, e.args)
        elif t is C:
            w.site(e.name, None, e.kind, e.fact_id)
            w.write("(")
            for i, a in enumerate(e.args):
                if i:
                    w.write(", ")
                self.expr(w, a)
            w.write(")")
        elif t is K:
            w.site(e.name, None, e.kind, e.fact_id)
        elif t is Idx:
            w.write(self.var(e.container) + "[")
            self.expr(w, e.key)
            w.write("]")
        elif t is Chr:
            w.write(self.chr(e.value))
        elif t is Empty:
            w.write(self.empty(e.type))
        elif t is Answer:
            w.mark = w.buf.tell()
            w.write(str(e.value))
        else:  # pragma: no cover - a planner bug, not user input
            raise TypeError(f"unknown expression node {e!r}")

    def cond(self, w: Writer, e: Any) -> None:
        if type(e) is B and e.concept in self._cond_templates:
            self.emit(w, self._cond_templates[e.concept], e.concept, e.args)
        else:
            self.expr(w, e)

    # -- statements -----------------------------------------------------------------------

    def block(self, w: Writer, body: tuple, depth: int) -> None:
        for s in body:
            self.stmt(w, s, depth)

    def nested(self, w: Writer, body: tuple, depth: int) -> None:
        """``body`` one level deeper than ``depth``, between the block's opening and closing."""
        self.open_block(w, "", depth)
        self.block(w, body, depth + 1)
        self.close_block(w, depth)

    def open_block(self, w: Writer, header: str, depth: int) -> None:
        w.write(header + " {\n")

    def close_block(self, w: Writer, depth: int) -> None:
        w.write(self.unit * depth + "}\n")

    def else_block(self, w: Writer, depth: int) -> None:
        w.write(self.unit * depth + "} else {\n")

    def decl_head(self, name: str, typ: str) -> str:
        return f"{self.types[typ]} {name} = "

    def decl(self, w: Writer, s: Decl, ind: str) -> None:
        w.write(ind + self.decl_head(self.var(s.name), s.type))
        self.expr(w, s.expr)
        w.write(self.term + "\n")

    def if_header(self, w: Writer, cond: Any) -> None:
        w.write("if (")
        self.cond(w, cond)
        w.write(")")

    def stmt(self, w: Writer, s: Any, depth: int) -> None:
        ind = self.unit * depth
        t = type(s)
        if t is Decl:
            e = s.expr
            if type(e) is B and e.concept in self._decl_templates:
                w.write(ind)
                self.emit(w, self._decl_templates[e.concept], e.concept, e.args, s.name, ind)
                w.write("\n")
            else:
                self.decl(w, s, ind)
        elif t is Aug:
            w.write(f"{ind}{self.var(s.name)} {s.op} ")
            self.expr(w, s.expr)
            w.write(self.term + "\n")
        elif t is Effect:
            w.write(ind)
            self.expr(w, s.expr)
            w.write(self.term + "\n")
        elif t is Put:
            w.write(f"{ind}{self.var(s.container)}[")
            self.expr(w, s.key)
            w.write("] = ")
            self.expr(w, s.value)
            w.write(self.term + "\n")
        elif t is Return:
            w.write(ind + "return ")
            self.expr(w, s.expr)
            w.write(self.term + "\n")
        elif t is If:
            w.write(ind)
            self.if_header(w, s.cond)
            self.open_block(w, "", depth)
            self.block(w, s.body, depth + 1)
            if s.orelse:
                self.else_block(w, depth)
                self.block(w, s.orelse, depth + 1)
            self.close_block(w, depth)
        elif t in _LOOP_HEADERS:
            w.write(ind)
            getattr(self, _LOOP_HEADERS[t])(w, s)
            self.nested(w, s.body, depth)
        else:  # pragma: no cover
            raise TypeError(f"unknown statement node {s!r}")

    def foreach_header(self, w: Writer, s: ForEach) -> None:
        raise NotImplementedError

    def forrange_header(self, w: Writer, s: ForRange) -> None:
        v = self.var(s.var)
        w.write(f"for (int {v} = 0; {v} < ")
        self.expr(w, s.bound)
        w.write(f"; {v}++)")

    def while_header(self, w: Writer, s: While) -> None:
        w.write("while (")
        self.expr(w, s.cond)
        w.write(")")

    # -- definitions and documents --------------------------------------------------------

    def signature(self, f: Function) -> str:
        raise NotImplementedError

    def function(self, w: Writer, f: Function, depth: int) -> None:
        w.write(self.unit * depth + self.signature(f))
        self.nested(w, f.body, depth)

    def const(self, w: Writer, c: Const, depth: int) -> None:
        w.write(f"{self.unit * depth}const int {c.name} = ")
        self.expr(w, c.value)
        w.write(";\n")

    def definition(self, w: Writer, d: Any, depth: int) -> None:
        if type(d) is Const:
            self.const(w, d, depth)
        else:
            self.function(w, d, depth)

    def separator(self, prev: Any, cur: Any) -> str:
        # Consecutive constants stay together; anything else gets one blank line.
        return "" if type(prev) is Const and type(cur) is Const else "\n"

    def header(self, body_text: str, program: Program | None) -> str:
        return ""

    def footer(self) -> str:
        return ""

    depth0 = 0

    def render_defs(self, defs: Iterable[Any]) -> Writer:
        w = Writer()
        prev = None
        for d in defs:
            if prev is not None:
                w.write(self.separator(prev, d))
            self.definition(w, d, self.depth0)
            prev = d
        return w


_DIALECTS: dict[str, Dialect] = {}


def register_dialect(dialect: Dialect) -> Dialect:
    """Make ``dialect`` the renderer of its language; returns it."""
    if dialect.language in _DIALECTS:
        raise ValueError(f"a synthetic dialect for {dialect.language!r} is already registered")
    _DIALECTS[dialect.language] = dialect
    return dialect


def get_dialect(language: str) -> Dialect:
    """The registered dialect of ``language`` (a canonical language name)."""
    try:
        return _DIALECTS[language]
    except KeyError:
        raise ValueError(f"no synthetic dialect renders {language!r}") from None


def supported_languages() -> tuple[str, ...]:
    """The languages with a registered dialect, in the language registry's order."""
    order = {name: i for i, name in enumerate(list_languages())}
    return tuple(sorted(_DIALECTS, key=lambda name: (order.get(name, len(order)), name)))


def synthetic_concepts() -> tuple[str, ...]:
    """Built-in concepts some registered dialect emits (in registry order); a language lacking
    an identifier for one (Python and Go for ``has_key``) realizes it with syntax and records
    no site."""
    return tuple(
        c
        for c in CONCEPTS
        if any(
            c in getattr(d, t) for d in _DIALECTS.values() for t in ("templates", "decl_templates")
        )
    )
