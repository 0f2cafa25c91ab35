"""The synthetic corpus in C++: ``std::`` containers, in-place transforms, and exactly the
headers a file uses."""

from __future__ import annotations

import re

from babel_interp.corpus.synthetic.dialect import Dialect, Writer, register_dialect
from babel_interp.corpus.synthetic.ir import (
    DICT,
    FLOAT,
    INT,
    LIST,
    STR,
    Decl,
    Empty,
    ForEach,
    Function,
    Program,
)


class CppDialect(Dialect):
    language = "cpp"
    templates = {
        "length": "%0.@size()",
        "count": "%0.@size()",
        "find": "%0.@find(%1)",
        "startswith": "%0.@starts_with(%1)",
        "endswith": "%0.@ends_with(%1)",
        "to_int": "std::@stoi(%0)",
        "to_string": "std::@to_string(%0)",
        "abs": "std::@abs(%0)",
        "max": "std::@max(%0, %1)",
        "min": "std::@min(%0, %1)",
        "sqrt": "std::@sqrt(%0)",
        "pow": "std::@pow(%0, %1)",
        "floor": "(int)std::@floor(%0)",
        "round": "(int)std::@round(%0)",
        "format": 'std::@format("{}:{}", %0, %1)',
        "sort": "std::@sort(%0.begin(), %0.end())",
        "reverse": "std::@reverse(%0.begin(), %0.end())",
        "append": "%0.@push_back(%1)",
        "print": 'std::@cout << %0 << "\\n"',
        "has_key": "%0.@contains(%1)",
    }
    # std::string has no upper/lower/replace-all returning a copy: copy, then transform in place.
    decl_templates = {
        "upper": "std::string %n = %0;\n"
        "std::transform(%n.begin(), %n.end(), %n.begin(), ::@toupper);",
        "lower": "std::string %n = %0;\n"
        "std::transform(%n.begin(), %n.end(), %n.begin(), ::@tolower);",
        "replace": "std::string %n = %0;\nstd::@replace(%n.begin(), %n.end(), %1, %2);",
    }
    types = {
        INT: "int",
        STR: "std::string",
        FLOAT: "double",
        LIST: "std::vector<int>",
        DICT: "std::map<std::string, int>",
    }

    def chr(self, value: str) -> str:
        return f"'{value}'"

    def decl(self, w: Writer, s: Decl, ind: str) -> None:
        if type(s.expr) is Empty:
            w.write(f"{ind}{self.types[s.type]} {s.name};\n")
        else:
            super().decl(w, s, ind)

    def foreach_header(self, w: Writer, s: ForEach) -> None:
        w.write(f"for (int {s.var} : {s.seq})")

    def signature(self, f: Function) -> str:
        params = ", ".join(f"{self.types[t]} {p}" for p, t in f.params)
        return f"{self.types[f.ret]} {f.name}({params})"

    def header(self, body_text: str, program: Program | None) -> str:
        heads = []
        if re.search(r"std::(sort|reverse|replace|transform|max|min)\b", body_text):
            heads.append("algorithm")
        if re.search(r"std::(sqrt|floor|round|pow|abs)\b", body_text):
            heads.append("cmath")
        if "::toupper" in body_text or "::tolower" in body_text:
            heads.append("cctype")
        if "std::format" in body_text:
            heads.append("format")
        if "std::cout" in body_text:
            heads.append("iostream")
        if "std::map" in body_text:
            heads.append("map")
        heads += ["string", "vector"]
        return "".join(f"#include <{h}>\n" for h in sorted(heads)) + "\n"


register_dialect(CppDialect())
