"""The synthetic corpus in Python: indentation blocks, ``for x in range(n)``, ``key in d``."""

from __future__ import annotations

from typing import Any

from babel_interp.corpus.synthetic.dialect import Dialect, Writer, register_dialect
from babel_interp.corpus.synthetic.ir import (
    LIST,
    B,
    Const,
    ForEach,
    ForRange,
    Function,
    Program,
    While,
)


class PythonDialect(Dialect):
    language = "python"
    term = ""
    templates = {
        "length": "@len(%0)",
        "count": "@len(%0)",
        "upper": "%0.@upper()",
        "lower": "%0.@lower()",
        "replace": "%0.@replace(%1, %2)",
        "find": "%0.@find(%1)",
        "startswith": "%0.@startswith(%1)",
        "endswith": "%0.@endswith(%1)",
        "to_int": "@int(%0)",
        "to_string": "@str(%0)",
        "abs": "@abs(%0)",
        "max": "@max(%0, %1)",
        "min": "@min(%0, %1)",
        "sqrt": "math.@sqrt(%0)",
        "pow": "@pow(%0, %1)",
        "floor": "math.@floor(%0)",
        "round": "@round(%0)",
        "format": '"{}:{}".@format(%0, %1)',
        "sort": "%0.@sort()",
        "reverse": "%0.@reverse()",
        "append": "%0.@append(%1)",
        "print": "@print(%0)",
        "has_key": "%1 in %0",
        "range": "@range(%0)",
    }

    def empty(self, typ: str) -> str:
        return "[]" if typ == LIST else "{}"

    def decl_head(self, name: str, typ: str) -> str:
        return f"{name} = "

    def open_block(self, w: Writer, header: str, depth: int) -> None:
        w.write(":\n")

    def close_block(self, w: Writer, depth: int) -> None:
        pass

    def else_block(self, w: Writer, depth: int) -> None:
        w.write(self.unit * depth + "else:\n")

    def if_header(self, w: Writer, cond: Any) -> None:
        w.write("if ")
        self.cond(w, cond)

    def foreach_header(self, w: Writer, s: ForEach) -> None:
        w.write(f"for {s.var} in {s.seq}")

    def forrange_header(self, w: Writer, s: ForRange) -> None:
        w.write(f"for {s.var} in ")
        self.expr(w, B("range", (s.bound,)))

    def while_header(self, w: Writer, s: While) -> None:
        w.write("while ")
        self.expr(w, s.cond)

    def signature(self, f: Function) -> str:
        return f"def {f.name}({', '.join(p for p, _ in f.params)})"

    def const(self, w: Writer, c: Const, depth: int) -> None:
        w.write(f"{c.name} = ")
        self.expr(w, c.value)
        w.write("\n")

    def separator(self, prev: Any, cur: Any) -> str:
        if type(prev) is Const and type(cur) is Const:
            return ""
        return "\n\n"

    def header(self, body_text: str, program: Program | None) -> str:
        return "import math\n\n\n" if "math." in body_text else ""


register_dialect(PythonDialect())
