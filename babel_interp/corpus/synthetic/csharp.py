"""The synthetic corpus in C#: Allman braces, one static class per document."""

from __future__ import annotations

from babel_interp.corpus.synthetic.dialect import Dialect, Writer, register_dialect
from babel_interp.corpus.synthetic.ir import (
    DICT,
    FLOAT,
    INT,
    LIST,
    STR,
    ForEach,
    Function,
    Program,
)


class CSharpDialect(Dialect):
    language = "csharp"
    depth0 = 1
    templates = {
        "length": "%0.@Length",
        "count": "%0.@Count",
        "upper": "%0.@ToUpper()",
        "lower": "%0.@ToLower()",
        "replace": "%0.@Replace(%1, %2)",
        "find": "%0.@IndexOf(%1)",
        "startswith": "%0.@StartsWith(%1)",
        "endswith": "%0.@EndsWith(%1)",
        "to_int": "int.@Parse(%0)",
        "to_string": "%0.@ToString()",
        "abs": "Math.@Abs(%0)",
        "max": "Math.@Max(%0, %1)",
        "min": "Math.@Min(%0, %1)",
        "sqrt": "Math.@Sqrt(%0)",
        "pow": "Math.@Pow(%0, %1)",
        "floor": "(int)Math.@Floor(%0)",
        "round": "(int)Math.@Round(%0)",
        "format": 'string.@Format("{0}:{1}", %0, %1)',
        "sort": "%0.@Sort()",
        "reverse": "%0.@Reverse()",
        "append": "%0.@Add(%1)",
        "print": "Console.@WriteLine(%0)",
        "has_key": "%0.@ContainsKey(%1)",
    }
    types = {
        INT: "int",
        STR: "string",
        FLOAT: "double",
        LIST: "List<int>",
        DICT: "Dictionary<string, int>",
    }

    def empty(self, typ: str) -> str:
        return f"new {self.types[typ]}()"

    def decl_head(self, name: str, typ: str) -> str:
        if typ in (LIST, DICT):
            return f"var {name} = "
        return f"{self.types[typ]} {name} = "

    # Allman braces, the .NET convention.
    def open_block(self, w: Writer, header: str, depth: int) -> None:
        w.write("\n" + self.unit * depth + "{\n")

    def else_block(self, w: Writer, depth: int) -> None:
        ind = self.unit * depth
        w.write(f"{ind}}}\n{ind}else\n{ind}{{\n")

    def foreach_header(self, w: Writer, s: ForEach) -> None:
        w.write(f"foreach (int {s.var} in {s.seq})")

    def signature(self, f: Function) -> str:
        params = ", ".join(f"{self.types[t]} {p}" for p, t in f.params)
        prefix = "public static" if f.public else "static"
        return f"{prefix} {self.types[f.ret]} {f.name}({params})"

    def header(self, body_text: str, program: Program | None) -> str:
        name = program.class_name if program is not None else "Program"
        return (
            f"using System;\nusing System.Collections.Generic;\n\npublic static class {name}\n{{\n"
        )

    def footer(self) -> str:
        return "}\n"


register_dialect(CSharpDialect())
