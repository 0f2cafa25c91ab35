"""The synthetic corpus in Go: ``:=`` declarations, ``for`` as the only loop, and exactly the
imports a file uses."""

from __future__ import annotations

from typing import Any

from babel_interp.corpus.synthetic.dialect import Dialect, Writer, register_dialect
from babel_interp.corpus.synthetic.ir import (
    DICT,
    FLOAT,
    INT,
    LIST,
    STR,
    Const,
    ForEach,
    ForRange,
    Function,
    Program,
    While,
)


class GoDialect(Dialect):
    language = "go"
    unit = "\t"
    term = ""
    templates = {
        "length": "@len(%0)",
        "count": "@len(%0)",
        "upper": "strings.@ToUpper(%0)",
        "lower": "strings.@ToLower(%0)",
        "replace": "strings.@ReplaceAll(%0, %1, %2)",
        "find": "strings.@Index(%0, %1)",
        "startswith": "strings.@HasPrefix(%0, %1)",
        "endswith": "strings.@HasSuffix(%0, %1)",
        "to_string": "strconv.@Itoa(%0)",
        "abs": "int(math.@Abs(float64(%0)))",
        "max": "@max(%0, %1)",
        "min": "@min(%0, %1)",
        "sqrt": "math.@Sqrt(float64(%0))",
        "pow": "math.@Pow(float64(%0), %1)",
        "floor": "int(math.@Floor(%0))",
        "round": "int(math.@Round(%0))",
        "format": 'fmt.@Sprintf("%s:%d", %0, %1)',
        "sort": "slices.@Sort(%0)",
        "reverse": "slices.@Reverse(%0)",
        "append": "%0 = @append(%0, %1)",
        "print": "fmt.@Println(%0)",
    }
    # strconv.Atoi returns (int, error), so it only fits a declaration.
    decl_templates = {"to_int": "%n, _ := strconv.@Atoi(%0)"}
    cond_templates = {"has_key": "_, ok := %0[%1]; ok"}
    types = {INT: "int", STR: "string", FLOAT: "float64", LIST: "[]int", DICT: "map[string]int"}
    packages = ("fmt", "math", "slices", "strconv", "strings")

    def empty(self, typ: str) -> str:
        return self.types[typ] + "{}"

    def decl_head(self, name: str, typ: str) -> str:
        return f"{name} := "

    def if_header(self, w: Writer, cond: Any) -> None:
        w.write("if ")
        self.cond(w, cond)

    def foreach_header(self, w: Writer, s: ForEach) -> None:
        w.write(f"for _, {s.var} := range {s.seq}")

    def forrange_header(self, w: Writer, s: ForRange) -> None:
        w.write(f"for {s.var} := 0; {s.var} < ")
        self.expr(w, s.bound)
        w.write(f"; {s.var}++")

    def while_header(self, w: Writer, s: While) -> None:
        w.write("for ")
        self.expr(w, s.cond)

    def signature(self, f: Function) -> str:
        params = ", ".join(f"{p} {self.types[t]}" for p, t in f.params)
        return f"func {f.name}({params}) {self.types[f.ret]}"

    def const(self, w: Writer, c: Const, depth: int) -> None:
        w.write(f"const {c.name} = ")
        self.expr(w, c.value)
        w.write("\n")

    def header(self, body_text: str, program: Program | None) -> str:
        # Go refuses unused imports, so a file imports exactly the packages it uses.
        used = [p for p in self.packages if p + "." in body_text]
        if not used:
            imports = ""
        elif len(used) == 1:
            imports = f'import "{used[0]}"\n\n'
        else:
            imports = "import (\n" + "".join(f'\t"{p}"\n' for p in used) + ")\n\n"
        return "package main\n\n" + imports


register_dialect(GoDialect())
