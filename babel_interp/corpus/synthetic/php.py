"""The synthetic corpus in PHP: ``$`` variables, PSR-12 braces, a ``<?php`` header."""

from __future__ import annotations

from babel_interp.corpus.synthetic.dialect import Dialect, Writer, register_dialect
from babel_interp.corpus.synthetic.ir import (
    Const,
    ForEach,
    ForRange,
    Function,
    Program,
)


class PhpDialect(Dialect):
    language = "php"
    templates = {
        "length": "@strlen(%0)",
        "count": "@count(%0)",
        "upper": "@strtoupper(%0)",
        "lower": "@strtolower(%0)",
        "replace": "@str_replace(%1, %2, %0)",
        "find": "@strpos(%0, %1)",
        "startswith": "@str_starts_with(%0, %1)",
        "endswith": "@str_ends_with(%0, %1)",
        "to_int": "@intval(%0)",
        "to_string": "@strval(%0)",
        "abs": "@abs(%0)",
        "max": "@max(%0, %1)",
        "min": "@min(%0, %1)",
        "sqrt": "@sqrt(%0)",
        "pow": "@pow(%0, %1)",
        "floor": "(int) @floor(%0)",
        "round": "(int) @round(%0)",
        "format": '@sprintf("%s:%d", %0, %1)',
        "sort": "@sort(%0)",
        "reverse": "%0 = @array_reverse(%0)",
        "append": "@array_push(%0, %1)",
        "print": '@echo %0 . "\\n"',
        "has_key": "@array_key_exists(%1, %0)",
    }

    def var(self, name: str) -> str:
        return "$" + name

    def empty(self, typ: str) -> str:
        return "[]"

    def decl_head(self, name: str, typ: str) -> str:
        return f"{name} = "

    def foreach_header(self, w: Writer, s: ForEach) -> None:
        w.write(f"foreach (${s.seq} as ${s.var})")

    def forrange_header(self, w: Writer, s: ForRange) -> None:
        v = self.var(s.var)
        w.write(f"for ({v} = 0; {v} < ")
        self.expr(w, s.bound)
        w.write(f"; {v}++)")

    def signature(self, f: Function) -> str:
        return f"function {f.name}({', '.join('$' + p for p, _ in f.params)})"

    def function(self, w: Writer, f: Function, depth: int) -> None:
        # PSR-12: a function's brace goes on its own line, a control structure's does not.
        w.write(self.unit * depth + self.signature(f) + "\n" + self.unit * depth + "{\n")
        self.block(w, f.body, depth + 1)
        self.close_block(w, depth)

    def const(self, w: Writer, c: Const, depth: int) -> None:
        w.write(f"const {c.name} = ")
        self.expr(w, c.value)
        w.write(";\n")

    def header(self, body_text: str, program: Program | None) -> str:
        return "<?php\n\n"


register_dialect(PhpDialect())
