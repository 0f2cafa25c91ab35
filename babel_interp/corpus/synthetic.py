"""The embedded default corpus: small parallel programs rendered in the five paper languages.

Why a synthetic corpus: on real code a small model never becomes competent at predicting the
built-ins the working-language probe asks about, so the probe says nothing (see PAPER.md, the CPU
pilot). Here the built-ins are frequent and sit in predictable contexts (``$title_len =
strlen($title);`` where the Python rendering has ``title_len = len(title)``), so a small model can
learn them: this corpus is the positive control for the probes.

Programs. Program ``k`` is one abstract program (a few helper functions and a main function using
string, list, map and math built-ins, a loop, a condition and calls), planned from
``(seed, first_program + k)`` alone and rendered into each language with that language's own
built-ins from :mod:`babel_interp.languages`. The same ``program_id`` in two languages is the same
program rendered twice: identifiers, constants and statement order are shared, so syntax and
built-ins are the only systematic differences. Because the plan does not depend on the language,
the stream for one language is the same whichever other languages are requested.

Order. :func:`generate_documents` is language-interleaved: program 0 in every requested language
(in ``cfg.languages`` order), then program 1, and so on; a language whose quota is filled drops
out. Documents are produced one at a time, so memory does not grow with the corpus.

Sites. Every use of a built-in is recorded as a :class:`Site` of kind ``"builtin"`` at the exact
character offset of its identifier (``Length`` in ``title.Length``, ``sqrt`` in ``math.sqrt``).
Calls of user-defined functions and uses of user constants are ``"call"`` sites: a place in the
same document where some other identifier is due, the matched control for a probe (see
:func:`probe_sites`). Uses of planted facts are ``"fact"`` sites; a site of a fact (planted or
shared) carries its ``fact_id``. A built-in that a language realizes with an operator (Python's
``key in d``, Go's ``_, ok := d[key]``) has no identifier and no site in that language; a counted
loop is ``for i in range(n)`` in Python (a ``range`` site) and a C-style ``for`` elsewhere.

Planted knowledge, for measuring cross-language transfer. A fixed table of facts is drawn from
``fact_seed``: functions ``scale_order(x)`` returning ``x * 7 + 3`` and constants ``PEAK_ORDER =
42``. There are two tables with disjoint names:

* *shared* facts are defined in every language where a program uses them, with the same values,
  so a model learns in every language that a helper's name determines its body;
* *planted* facts are defined only in documents of ``planted_in`` (the primary language). The
  other languages call them (``"fact"`` sites) but never define them, so their values never occur
  in a target-language document at all.

A transfer probe (:func:`fact_probe_items`) writes the target-language *definition* of a fact and
stops right before the value: ``function scale_order($x)\n{\n    return $x *`` with answer
``" 7"``. Only the planted-language documents reveal the answer, so a correct target-language
completion measures knowledge transferred from the primary language; the same items for shared
facts are the in-language control. The prompt stops before the space, and the answer carries it,
because byte-level BPE tokenizers fold the space into the number's token.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from babel_interp.languages import CONCEPTS, PAPER_LANGUAGES, builtin_pairs, get_language

__all__ = [
    "SUPPORTED_LANGUAGES",
    "SYNTHETIC_CONCEPTS",
    "FactItem",
    "FunctionCut",
    "PlantedFact",
    "ProbeSite",
    "Site",
    "SyntheticConfig",
    "SyntheticDocument",
    "fact_probe_items",
    "generate_documents",
    "plan_program",
    "planted_facts",
    "probe_sites",
    "render_document",
    "render_fact_definition",
    "render_function_cut",
    "shared_facts",
]

SUPPORTED_LANGUAGES: tuple[str, ...] = PAPER_LANGUAGES
GENERATOR_VERSION = 1
SITE_KINDS = ("builtin", "call", "fact")

# Word lists. Fixed (never filtered against the registry at run time) so that a user registering
# a language cannot change the corpus; a test checks that none is a keyword or built-in.
NOUNS = (
    "order", "price", "ticket", "widget", "sample", "bucket", "column", "packet", "signal",
    "token", "batch", "cargo", "parcel", "pixel", "vertex", "sensor", "ledger", "budget",
    "voucher", "invoice", "rocket", "planet", "garden", "forest", "river", "bridge", "tunnel",
    "engine", "motor", "wheel", "anchor", "harbor", "island", "castle", "tower", "market",
    "school", "player", "credit", "reward", "bonus", "margin", "weight", "height", "volume",
    "layer", "frame", "stamp", "badge", "coupon", "quota", "tariff", "salary", "rental",
)  # fmt: skip
PLANTED_VERBS = (
    "scale", "warp", "boost", "bend", "twist", "stretch", "shift", "tilt", "nudge", "blend",
    "fold", "spin",
)  # fmt: skip
SHARED_VERBS = (
    "grow", "lift", "drift", "pump", "widen", "skew", "churn", "brew", "forge", "mold", "tune",
    "dampen",
)  # fmt: skip
PLANTED_ADJECTIVES = (
    "PEAK", "CREST", "GRID", "CORE", "TIDE", "RIDGE", "SPARK", "FROST", "EMBER", "STORM", "CLOUD",
    "STONE",
)  # fmt: skip
SHARED_ADJECTIVES = (
    "LIMIT", "SPAN", "DEPTH", "RANK", "TIER", "LEVEL", "PITCH", "RATE", "GAUGE", "NOTCH", "BAND",
    "SLOT",
)  # fmt: skip
LOCAL_VERBS = ("clamp", "grade", "weigh", "probe", "audit", "settle", "measure", "assess")
MAIN_VERBS = (
    "process", "handle", "compute", "summarize", "analyze", "update", "collect", "inspect",
    "review", "prepare", "resolve", "evaluate",
)  # fmt: skip
CLASS_SUFFIXES = ("Service", "Helpers", "Utils", "Logic", "Module", "Tools")
STR_PARAMS = (
    "text", "title", "label", "word", "line", "phrase", "caption", "slug", "message", "headline",
)  # fmt: skip
LIST_PARAMS = (
    "values", "scores", "amounts", "weights", "readings", "points", "ticks", "marks", "levels",
    "ratings",
)  # fmt: skip
INT_PARAMS = ("limit", "threshold", "cutoff", "ceiling", "target", "pivot", "goal")
ACC_NAMES = ("total", "result", "acc", "running", "outcome")
DICT_NAMES = ("seen", "lookup", "table", "cache", "bins", "memo")
LIST_OUT_NAMES = ("picked", "kept", "chosen", "selected", "passing")
LOOP_VARS = ("x", "v", "elem", "cur")
INDEX_VARS = ("i", "j", "k")
HELPER_PARAMS = ("value", "amount", "n", "num")
HELPER_LOCALS = ("rest", "accum")
KEY_NAMES = ("key", "slot_key", "name_key")
COUNTER_NAMES = ("steps", "remaining", "countdown", "left")
LETTERS = "abcdefghijklmnoprstuvwy"

# Each fact kind draws names from 12 x 56 combinations; staying well below that keeps the
# rejection sampling of unused names fast.
MAX_FACTS = 512

STR, INT, FLOAT, LIST, DICT = "str", "int", "float", "list", "dict"


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------


@dataclass
class Site:
    """An identifier use in a document: where a built-in, a user call or a planted fact is due.

    ``offset`` is a character offset into the document text: ``text[offset:]`` starts with
    ``identifier``.
    """

    offset: int
    identifier: str
    concept: str | None
    kind: str
    fact_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "identifier": self.identifier,
            "concept": self.concept,
            "kind": self.kind,
            "fact_id": self.fact_id,
        }


@dataclass
class SyntheticDocument:
    """One program rendered in one language, with its identifier sites."""

    text: str
    language: str
    sites: list[Site]
    doc_id: str
    program_id: int

    def builtin_sites(self) -> list[Site]:
        return [s for s in self.sites if s.kind == "builtin"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "program_id": self.program_id,
            "language": self.language,
            "text": self.text,
            "sites": [s.to_dict() for s in self.sites],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyntheticDocument:
        return cls(
            text=d["text"],
            language=d["language"],
            sites=[Site(**s) for s in d["sites"]],
            doc_id=d["doc_id"],
            program_id=int(d["program_id"]),
        )


@dataclass(frozen=True)
class PlantedFact:
    """A helper function or constant whose value a transfer probe asks for.

    A function fact ``name(x)`` returns ``x * value + offset``; a constant fact ``name`` equals
    ``value``. ``planted`` is True for facts defined only in the planted language and False for
    the shared (defined-everywhere) control facts.
    """

    fact_id: str
    name: str
    kind: str
    value: int
    offset: int
    planted: bool

    @property
    def answer(self) -> str:
        return f" {self.value}"


@dataclass(frozen=True)
class FactItem:
    """A completion prompt in one language whose correct continuation is a fact's value."""

    prompt: str
    answer: str
    fact_id: str
    language: str
    name: str
    kind: str
    value: int
    planted: bool


class ProbeSite(NamedTuple):
    """A built-in site and its matched control (another identifier due in the same document)."""

    document: SyntheticDocument
    site: Site
    control: Site | None


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class SyntheticConfig:
    """What to generate. Every field is plain data, so a config round-trips through JSON.

    ``docs_per_language`` is one count for every language or a mapping language -> count.
    ``seed`` picks the programs; ``fact_seed`` picks the fact tables (names and values), kept
    apart so that several corpus seeds can share one set of facts. ``planted_in`` is the only
    language whose documents define the ``n_planted_facts`` planted facts; the
    ``n_shared_facts`` control facts are defined wherever they are used.
    ``first_program`` offsets the program ids, so disjoint ranges give disjoint splits (e.g. a
    validation stream starting where the training stream ends). ``min_ops``/``max_ops`` bound the
    number of free statements per main function (mandatory calls, one loop and one condition come
    on top); ``max_facts_per_doc`` bounds the planted facts one program uses.
    """

    languages: tuple[str, ...] = PAPER_LANGUAGES
    docs_per_language: int | dict[str, int] = 1000
    seed: int = 0
    n_planted_facts: int = 64
    planted_in: str = "python"
    n_shared_facts: int = 64
    fact_seed: int = 0
    first_program: int = 0
    min_ops: int = 4
    max_ops: int = 8
    max_facts_per_doc: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.languages, str):
            raise ValueError(
                f"SyntheticConfig.languages must be a sequence of names, not one string "
                f"({self.languages!r})"
            )
        langs = tuple(self._canonical("languages", name) for name in self.languages)
        if not langs:
            raise ValueError("SyntheticConfig.languages must name at least one language")
        if len(set(langs)) != len(langs):
            raise ValueError(f"SyntheticConfig.languages has duplicates: {langs}")
        self.languages = langs
        self.planted_in = self._canonical("planted_in", self.planted_in)

        if isinstance(self.docs_per_language, Mapping):
            counts = {
                self._canonical("docs_per_language", k): v
                for k, v in self.docs_per_language.items()
            }
            missing = [lang for lang in langs if lang not in counts]
            extra = [lang for lang in counts if lang not in langs]
            if missing or extra:
                raise ValueError(
                    f"SyntheticConfig.docs_per_language must give a count for exactly the "
                    f"requested languages (missing {missing}, not requested {extra})"
                )
            for lang, n in counts.items():
                if not _is_int(n) or n <= 0:
                    raise ValueError(
                        f"SyntheticConfig.docs_per_language[{lang!r}] must be a positive "
                        f"integer, got {n!r}"
                    )
            self.docs_per_language = counts
        elif not _is_int(self.docs_per_language) or self.docs_per_language <= 0:
            raise ValueError(
                f"SyntheticConfig.docs_per_language must be a positive integer or a mapping, "
                f"got {self.docs_per_language!r}"
            )

        for name in ("seed", "fact_seed"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"SyntheticConfig.{name} must be an integer")
        for name, lo in (
            ("n_planted_facts", 0),
            ("n_shared_facts", 0),
            ("first_program", 0),
            ("min_ops", 1),
            ("max_ops", 1),
            ("max_facts_per_doc", 1),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < lo:
                raise ValueError(
                    f"SyntheticConfig.{name} must be an integer >= {lo}, got {value!r}"
                )
        if self.max_ops < self.min_ops:
            raise ValueError(
                f"SyntheticConfig.max_ops ({self.max_ops}) must be >= min_ops ({self.min_ops})"
            )
        for name in ("n_planted_facts", "n_shared_facts"):
            if getattr(self, name) > MAX_FACTS:
                raise ValueError(
                    f"SyntheticConfig.{name} must be <= {MAX_FACTS} (the name space of a fact "
                    f"table), got {getattr(self, name)}"
                )

    @staticmethod
    def _canonical(field_name: str, name: object) -> str:
        try:
            lang = get_language(name)  # type: ignore[arg-type]
        except ValueError as e:
            raise ValueError(f"SyntheticConfig.{field_name}: {e}") from None
        if lang.name not in SUPPORTED_LANGUAGES:
            raise ValueError(
                f"SyntheticConfig.{field_name}: the synthetic generator renders only "
                f"{', '.join(SUPPORTED_LANGUAGES)}, not {lang.name!r}"
            )
        return lang.name

    def count_for(self, language: str) -> int:
        """Number of documents requested for ``language``."""
        lang = get_language(language).name
        if lang not in self.languages:
            raise ValueError(f"language {lang!r} is not in SyntheticConfig.languages")
        if isinstance(self.docs_per_language, Mapping):
            return self.docs_per_language[lang]
        return self.docs_per_language

    def to_dict(self) -> dict[str, Any]:
        docs = self.docs_per_language
        return {
            "languages": list(self.languages),
            "docs_per_language": dict(docs) if isinstance(docs, Mapping) else docs,
            "seed": self.seed,
            "n_planted_facts": self.n_planted_facts,
            "planted_in": self.planted_in,
            "n_shared_facts": self.n_shared_facts,
            "fact_seed": self.fact_seed,
            "first_program": self.first_program,
            "min_ops": self.min_ops,
            "max_ops": self.max_ops,
            "max_facts_per_doc": self.max_facts_per_doc,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyntheticConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SyntheticConfig.from_dict: unknown fields {unknown}")
        kwargs = dict(d)
        if "languages" in kwargs:
            kwargs["languages"] = tuple(kwargs["languages"])
        return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Program IR: a tiny language-neutral syntax tree, rendered by one dialect per language
# ---------------------------------------------------------------------------------------------


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
class _Function:
    name: str
    params: tuple  # ((name, type), ...)
    ret: str
    body: tuple
    public: bool = False
    fact: PlantedFact | None = None


@dataclass(slots=True)
class _Const:
    name: str
    value: Any  # L or Answer
    fact: PlantedFact | None = None


@dataclass(slots=True)
class _Program:
    program_id: int
    class_name: str
    defs: tuple  # _Const and _Function items, in document order; main is last


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


class _Writer:
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


def _parse_template(template: str) -> tuple:
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


class _Dialect:
    """C-family rendering; subclasses override what their language does differently."""

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
            parsed = {c: _parse_template(t) for c, t in table.items()}
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

    def emit(self, w: _Writer, tokens: tuple, concept: str, args: tuple, name: str = "", ind=""):
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

    def expr(self, w: _Writer, e: Any) -> None:
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

    def cond(self, w: _Writer, e: Any) -> None:
        if type(e) is B and e.concept in self._cond_templates:
            self.emit(w, self._cond_templates[e.concept], e.concept, e.args)
        else:
            self.expr(w, e)

    # -- statements -----------------------------------------------------------------------

    def block(self, w: _Writer, body: tuple, depth: int) -> None:
        for s in body:
            self.stmt(w, s, depth)

    def open_block(self, w: _Writer, header: str, depth: int) -> None:
        w.write(header + " {\n")

    def close_block(self, w: _Writer, depth: int) -> None:
        w.write(self.unit * depth + "}\n")

    def else_block(self, w: _Writer, depth: int) -> None:
        w.write(self.unit * depth + "} else {\n")

    def decl_head(self, name: str, typ: str) -> str:
        return f"{self.types[typ]} {name} = "

    def decl(self, w: _Writer, s: Decl, ind: str) -> None:
        w.write(ind + self.decl_head(self.var(s.name), s.type))
        self.expr(w, s.expr)
        w.write(self.term + "\n")

    def if_header(self, w: _Writer, cond: Any) -> None:
        w.write("if (")
        self.cond(w, cond)
        w.write(")")

    def stmt(self, w: _Writer, s: Any, depth: int) -> None:
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
        elif t is ForEach:
            w.write(ind)
            self.foreach_header(w, s)
            self.open_block(w, "", depth)
            self.block(w, s.body, depth + 1)
            self.close_block(w, depth)
        elif t is ForRange:
            w.write(ind)
            self.forrange_header(w, s)
            self.open_block(w, "", depth)
            self.block(w, s.body, depth + 1)
            self.close_block(w, depth)
        elif t is While:
            w.write(ind)
            self.while_header(w, s)
            self.open_block(w, "", depth)
            self.block(w, s.body, depth + 1)
            self.close_block(w, depth)
        else:  # pragma: no cover
            raise TypeError(f"unknown statement node {s!r}")

    def foreach_header(self, w: _Writer, s: ForEach) -> None:
        raise NotImplementedError

    def forrange_header(self, w: _Writer, s: ForRange) -> None:
        v = self.var(s.var)
        w.write(f"for (int {v} = 0; {v} < ")
        self.expr(w, s.bound)
        w.write(f"; {v}++)")

    def while_header(self, w: _Writer, s: While) -> None:
        w.write("while (")
        self.expr(w, s.cond)
        w.write(")")

    # -- definitions and documents --------------------------------------------------------

    def signature(self, f: _Function) -> str:
        raise NotImplementedError

    def function(self, w: _Writer, f: _Function, depth: int) -> None:
        w.write(self.unit * depth + self.signature(f))
        self.open_block(w, "", depth)
        self.block(w, f.body, depth + 1)
        self.close_block(w, depth)

    def const(self, w: _Writer, c: _Const, depth: int) -> None:
        w.write(f"{self.unit * depth}const int {c.name} = ")
        self.expr(w, c.value)
        w.write(";\n")

    def definition(self, w: _Writer, d: Any, depth: int) -> None:
        if type(d) is _Const:
            self.const(w, d, depth)
        else:
            self.function(w, d, depth)

    def separator(self, prev: Any, cur: Any) -> str:
        # Consecutive constants stay together; anything else gets one blank line.
        return "" if type(prev) is _Const and type(cur) is _Const else "\n"

    def header(self, body_text: str, program: _Program | None) -> str:
        return ""

    def footer(self) -> str:
        return ""

    depth0 = 0

    def render_defs(self, defs: Iterable[Any]) -> _Writer:
        w = _Writer()
        prev = None
        for d in defs:
            if prev is not None:
                w.write(self.separator(prev, d))
            self.definition(w, d, self.depth0)
            prev = d
        return w


class _Python(_Dialect):
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

    def decl(self, w: _Writer, s: Decl, ind: str) -> None:
        w.write(f"{ind}{s.name} = ")
        self.expr(w, s.expr)
        w.write("\n")

    def open_block(self, w: _Writer, header: str, depth: int) -> None:
        w.write(":\n")

    def close_block(self, w: _Writer, depth: int) -> None:
        pass

    def else_block(self, w: _Writer, depth: int) -> None:
        w.write(self.unit * depth + "else:\n")

    def if_header(self, w: _Writer, cond: Any) -> None:
        w.write("if ")
        self.cond(w, cond)

    def foreach_header(self, w: _Writer, s: ForEach) -> None:
        w.write(f"for {s.var} in {s.seq}")

    def forrange_header(self, w: _Writer, s: ForRange) -> None:
        w.write(f"for {s.var} in ")
        self.expr(w, B("range", (s.bound,)))

    def while_header(self, w: _Writer, s: While) -> None:
        w.write("while ")
        self.expr(w, s.cond)

    def signature(self, f: _Function) -> str:
        return f"def {f.name}({', '.join(p for p, _ in f.params)})"

    def const(self, w: _Writer, c: _Const, depth: int) -> None:
        w.write(f"{c.name} = ")
        self.expr(w, c.value)
        w.write("\n")

    def separator(self, prev: Any, cur: Any) -> str:
        if type(prev) is _Const and type(cur) is _Const:
            return ""
        return "\n\n"

    def header(self, body_text: str, program: _Program | None) -> str:
        return "import math\n\n\n" if "math." in body_text else ""


class _Php(_Dialect):
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

    def foreach_header(self, w: _Writer, s: ForEach) -> None:
        w.write(f"foreach (${s.seq} as ${s.var})")

    def forrange_header(self, w: _Writer, s: ForRange) -> None:
        v = self.var(s.var)
        w.write(f"for ({v} = 0; {v} < ")
        self.expr(w, s.bound)
        w.write(f"; {v}++)")

    def signature(self, f: _Function) -> str:
        return f"function {f.name}({', '.join('$' + p for p, _ in f.params)})"

    def function(self, w: _Writer, f: _Function, depth: int) -> None:
        # PSR-12: a function's brace goes on its own line, a control structure's does not.
        w.write(self.unit * depth + self.signature(f) + "\n" + self.unit * depth + "{\n")
        self.block(w, f.body, depth + 1)
        self.close_block(w, depth)

    def const(self, w: _Writer, c: _Const, depth: int) -> None:
        w.write(f"const {c.name} = ")
        self.expr(w, c.value)
        w.write(";\n")

    def header(self, body_text: str, program: _Program | None) -> str:
        return "<?php\n\n"


class _CSharp(_Dialect):
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
    def open_block(self, w: _Writer, header: str, depth: int) -> None:
        w.write("\n" + self.unit * depth + "{\n")

    def else_block(self, w: _Writer, depth: int) -> None:
        ind = self.unit * depth
        w.write(f"{ind}}}\n{ind}else\n{ind}{{\n")

    def foreach_header(self, w: _Writer, s: ForEach) -> None:
        w.write(f"foreach (int {s.var} in {s.seq})")

    def signature(self, f: _Function) -> str:
        params = ", ".join(f"{self.types[t]} {p}" for p, t in f.params)
        prefix = "public static" if f.public else "static"
        return f"{prefix} {self.types[f.ret]} {f.name}({params})"

    def header(self, body_text: str, program: _Program | None) -> str:
        name = program.class_name if program is not None else "Program"
        return (
            f"using System;\nusing System.Collections.Generic;\n\npublic static class {name}\n{{\n"
        )

    def footer(self) -> str:
        return "}\n"


class _Go(_Dialect):
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

    def decl(self, w: _Writer, s: Decl, ind: str) -> None:
        w.write(f"{ind}{s.name} := ")
        self.expr(w, s.expr)
        w.write("\n")

    def if_header(self, w: _Writer, cond: Any) -> None:
        w.write("if ")
        self.cond(w, cond)

    def foreach_header(self, w: _Writer, s: ForEach) -> None:
        w.write(f"for _, {s.var} := range {s.seq}")

    def forrange_header(self, w: _Writer, s: ForRange) -> None:
        w.write(f"for {s.var} := 0; {s.var} < ")
        self.expr(w, s.bound)
        w.write(f"; {s.var}++")

    def while_header(self, w: _Writer, s: While) -> None:
        w.write("for ")
        self.expr(w, s.cond)

    def signature(self, f: _Function) -> str:
        params = ", ".join(f"{p} {self.types[t]}" for p, t in f.params)
        return f"func {f.name}({params}) {self.types[f.ret]}"

    def const(self, w: _Writer, c: _Const, depth: int) -> None:
        w.write(f"const {c.name} = ")
        self.expr(w, c.value)
        w.write("\n")

    def header(self, body_text: str, program: _Program | None) -> str:
        # Go refuses unused imports, so a file imports exactly the packages it uses.
        used = [p for p in self.packages if p + "." in body_text]
        if not used:
            imports = ""
        elif len(used) == 1:
            imports = f'import "{used[0]}"\n\n'
        else:
            imports = "import (\n" + "".join(f'\t"{p}"\n' for p in used) + ")\n\n"
        return "package main\n\n" + imports


class _Cpp(_Dialect):
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

    def decl(self, w: _Writer, s: Decl, ind: str) -> None:
        if type(s.expr) is Empty:
            w.write(f"{ind}{self.types[s.type]} {s.name};\n")
        else:
            super().decl(w, s, ind)

    def foreach_header(self, w: _Writer, s: ForEach) -> None:
        w.write(f"for (int {s.var} : {s.seq})")

    def signature(self, f: _Function) -> str:
        params = ", ".join(f"{self.types[t]} {p}" for p, t in f.params)
        return f"{self.types[f.ret]} {f.name}({params})"

    def header(self, body_text: str, program: _Program | None) -> str:
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


_DIALECTS: dict[str, _Dialect] = {
    d.language: d for d in (_Python(), _Php(), _CSharp(), _Go(), _Cpp())
}
assert tuple(_DIALECTS) == SUPPORTED_LANGUAGES

#: Built-in concepts the generator emits (in registry order); a language lacking an identifier
#: for one (Python and Go for ``has_key``) realizes it with syntax and records no site.
SYNTHETIC_CONCEPTS: tuple[str, ...] = tuple(
    c
    for c in CONCEPTS
    if any(c in getattr(d, t) for d in _DIALECTS.values() for t in ("templates", "decl_templates"))
)


def _render(program: _Program, language: str, planted_in: str, doc_id: str) -> SyntheticDocument:
    dialect = _DIALECTS[language]
    keep_planted = language == planted_in
    defs = [
        d for d in program.defs if d.fact is None or not d.fact.planted or keep_planted
    ]  # fmt: skip
    w = dialect.render_defs(defs)
    body = w.text()
    head = dialect.header(body, program)
    shift = len(head)
    for s in w.sites:
        s.offset += shift
    return SyntheticDocument(
        text=head + body + dialect.footer(),
        language=language,
        sites=w.sites,
        doc_id=doc_id,
        program_id=program.program_id,
    )


# ---------------------------------------------------------------------------------------------
# Fact tables
# ---------------------------------------------------------------------------------------------


def _make_facts(fact_seed: int, n: int, planted: bool) -> list[PlantedFact]:
    # One stream per table, so fact k is the same whatever n is and whatever the other table holds.
    rng = random.Random(f"babel-synth/facts/v{GENERATOR_VERSION}/{fact_seed}/{planted}")
    verbs = PLANTED_VERBS if planted else SHARED_VERBS
    adjectives = PLANTED_ADJECTIVES if planted else SHARED_ADJECTIVES
    prefix = "p" if planted else "s"
    facts: list[PlantedFact] = []
    names: set[str] = set()
    for i in range(n):
        kind = "function" if i % 2 == 0 else "constant"
        while True:
            noun = rng.choice(NOUNS)
            if kind == "function":
                name = f"{rng.choice(verbs)}_{noun}"
            else:
                name = f"{rng.choice(adjectives)}_{noun.upper()}"
            if name not in names:
                names.add(name)
                break
        if kind == "function":
            value, offset = rng.randint(2, 99), rng.randint(1, 99)
        else:
            value, offset = rng.randint(10, 999), 0
        facts.append(PlantedFact(f"{prefix}{i}", name, kind, value, offset, planted))
    return facts


def planted_facts(cfg: SyntheticConfig) -> list[PlantedFact]:
    """The facts defined only in ``cfg.planted_in`` documents (ids ``p0``, ``p1``, ...)."""
    return _make_facts(cfg.fact_seed, cfg.n_planted_facts, planted=True)


def shared_facts(cfg: SyntheticConfig) -> list[PlantedFact]:
    """The control facts, defined in every language that uses them (ids ``s0``, ``s1``, ...)."""
    return _make_facts(cfg.fact_seed, cfg.n_shared_facts, planted=False)


def _fact_def(fact: PlantedFact, mark: bool = False) -> _Const | _Function:
    value = Answer(fact.value) if mark else L(fact.value)
    if fact.kind == "constant":
        return _Const(fact.name, value, fact)
    body = (Return(Bin(Bin(V("x"), "*", value), "+", L(fact.offset))),)
    return _Function(fact.name, (("x", INT),), INT, body, fact=fact)


def render_fact_definition(fact: PlantedFact, language: str) -> str:
    """The definition of ``fact`` as it appears in a ``language`` document (no file header)."""
    dialect = _DIALECTS[SyntheticConfig._canonical("language", language)]
    return dialect.render_defs([_fact_def(fact)]).text()


# ---------------------------------------------------------------------------------------------
# Planning: one abstract program per (seed, program_id)
# ---------------------------------------------------------------------------------------------


def _fast_draws(rng: random.Random):
    """choice/randint built on ``rng.random()``: a few times faster than the stdlib methods,
    which dominate planning time, and just as deterministic for a given seed."""
    rand = rng.random

    def choice(seq: Any) -> Any:
        return seq[int(rand() * len(seq))]

    def randint(lo: int, hi: int) -> int:
        return lo + int(rand() * (hi - lo + 1))

    return choice, randint


class _Planner:
    """Builds one program's statements. Every input a statement needs is always in scope (the
    main function's parameters), so statements can come in any order."""

    def __init__(self, rng: random.Random, taken: set[str]) -> None:
        self.rng = rng
        self.choice, self.randint = _fast_draws(rng)
        self.taken = taken
        self.scope: dict[str, list[str]] = {STR: [], INT: [], FLOAT: [], LIST: [], DICT: []}
        self.body: list[Any] = []
        self.acc = ""

    def fresh(self, *candidates: str) -> str:
        name = self.choice(candidates)
        base, k = name, 2
        while name in self.taken:
            name = f"{base}{k}"
            k += 1
        self.taken.add(name)
        return name

    def pick(self, typ: str) -> str:
        pool = self.scope[typ]
        # Prefer recent values so statements chain into data flow rather than all reading params.
        if len(pool) > 1 and self.rng.random() < 0.5:
            return pool[-1]
        return self.choice(pool)

    @staticmethod
    def root(name: str) -> str:
        return name.split("_")[0]

    def add(self, stmt: Any, name: str | None = None, typ: str | None = None) -> None:
        self.body.append(stmt)
        if name is not None and typ is not None:
            self.scope[typ].append(name)

    def word(self, lo: int, hi: int) -> str:
        return "".join(self.choice(LETTERS) for _ in range(self.randint(lo, hi)))

    def maybe_accumulate(self, name: str) -> None:
        if self.rng.random() < 0.4:
            self.add(Aug(self.acc, self.choice(("+=", "-=")), V(name)))

    # -- free statements ------------------------------------------------------------------

    def op_length(self) -> None:
        s = self.pick(STR)
        r = self.root(s)
        out = self.fresh(f"{r}_len", f"{r}_length", f"{r}_chars")
        self.add(Decl(out, INT, B("length", (V(s),))), out, INT)
        self.maybe_accumulate(out)

    def op_count(self) -> None:
        src = self.pick(DICT) if self.scope[DICT] and self.rng.random() < 0.3 else self.pick(LIST)
        r = self.root(src)
        out = self.fresh(f"n_{r}", f"{r}_count", f"num_{r}")
        self.add(Decl(out, INT, B("count", (V(src),))), out, INT)
        self.maybe_accumulate(out)

    def _case(self, concept: str, stems: tuple[str, ...]) -> None:
        s = self.pick(STR)
        r = self.root(s)
        out = self.fresh(*(stem.format(r) for stem in stems))
        self.add(Decl(out, STR, B(concept, (V(s),))), out, STR)

    def op_upper(self) -> None:
        self._case("upper", ("{}_upper", "loud_{}", "{}_caps"))

    def op_lower(self) -> None:
        self._case("lower", ("{}_lower", "quiet_{}", "{}_small"))

    def op_replace(self) -> None:
        s = self.pick(STR)
        r = self.root(s)
        a, b = self.rng.sample(LETTERS, 2)
        out = self.fresh(f"{r}_fixed", f"{r}_swapped", f"clean_{r}")
        self.add(Decl(out, STR, B("replace", (V(s), Chr(a), Chr(b)))), out, STR)

    def op_find(self) -> None:
        s = self.pick(STR)
        r = self.root(s)
        out = self.fresh(f"{r}_pos", f"{r}_at", f"where_{r}")
        self.add(Decl(out, INT, B("find", (V(s), L(self.word(1, 3))))), out, INT)
        self.maybe_accumulate(out)

    def op_to_int(self) -> None:
        s = self.pick(STR)
        r = self.root(s)
        out = self.fresh(f"{r}_num", f"{r}_value", f"parsed_{r}")
        self.add(Decl(out, INT, B("to_int", (V(s),))), out, INT)
        self.maybe_accumulate(out)

    def op_to_string(self) -> None:
        n = self.pick(INT)
        r = self.root(n)
        out = self.fresh(f"{r}_str", f"{r}_text", f"{r}_repr")
        self.add(Decl(out, STR, B("to_string", (V(n),))), out, STR)

    def op_abs(self) -> None:
        n = self.pick(INT)
        r = self.root(n)
        out = self.fresh(f"{r}_abs", f"{r}_dist", f"gap_{r}")
        self.add(Decl(out, INT, B("abs", (Bin(V(n), "-", L(self.randint(2, 60))),))), out, INT)
        self.maybe_accumulate(out)

    def _extreme(self, concept: str, stems: tuple[str, ...]) -> None:
        a = self.pick(INT)
        other = self.pick(INT)
        b = V(other) if other != a else L(self.randint(1, 99))
        r = self.root(a)
        out = self.fresh(*(stem.format(r) for stem in stems))
        self.add(Decl(out, INT, B(concept, (V(a), b))), out, INT)
        self.maybe_accumulate(out)

    def op_max(self) -> None:
        self._extreme("max", ("hi_{}", "{}_max", "most_{}"))

    def op_min(self) -> None:
        self._extreme("min", ("lo_{}", "{}_min", "least_{}"))

    def op_sqrt(self) -> None:
        n = self.pick(INT)
        r = self.root(n)
        out = self.fresh(f"{r}_root", f"root_{r}", f"{r}_sqrt")
        self.add(Decl(out, FLOAT, B("sqrt", (V(n),))), out, FLOAT)

    def op_pow(self) -> None:
        n = self.pick(INT)
        r = self.root(n)
        e = self.choice((2, 3))
        stem = "sq" if e == 2 else "cube"
        out = self.fresh(f"{r}_{stem}", f"{r}_pow", f"{stem}_{r}")
        self.add(Decl(out, FLOAT, B("pow", (V(n), L(e)))), out, FLOAT)

    def _to_whole(self, concept: str, stems: tuple[str, ...]) -> None:
        if not self.scope[FLOAT]:
            self.choice((self.op_sqrt, self.op_pow))()
        f = self.pick(FLOAT)
        r = self.root(f)
        out = self.fresh(*(stem.format(r) for stem in stems))
        self.add(Decl(out, INT, B(concept, (V(f),))), out, INT)
        self.maybe_accumulate(out)

    def op_floor(self) -> None:
        self._to_whole("floor", ("{}_floor", "{}_down", "whole_{}"))

    def op_round(self) -> None:
        self._to_whole("round", ("{}_round", "{}_near", "rounded_{}"))

    def op_format(self) -> None:
        s, n = self.pick(STR), self.pick(INT)
        r = self.root(s)
        out = self.fresh(f"{r}_label", "summary", f"{r}_tag")
        self.add(Decl(out, STR, B("format", (V(s), V(n)))), out, STR)

    def op_sort(self) -> None:
        self.add(Effect(B("sort", (V(self.pick(LIST)),))))

    def op_reverse(self) -> None:
        self.add(Effect(B("reverse", (V(self.pick(LIST)),))))

    def op_print(self) -> None:
        typ = self.choice((STR, INT))
        self.add(Effect(B("print", (V(self.pick(typ)),))))

    def op_has_key(self) -> None:
        if not self.scope[DICT]:
            self.loop_tally()
        d, s = self.pick(DICT), self.pick(STR)
        then = (Aug(self.acc, "+=", Idx(d, V(s))),)
        orelse = (Put(d, V(s), V(self.pick(INT))),) if self.rng.random() < 0.5 else ()
        self.add(If(B("has_key", (V(d), V(s))), then, orelse))

    FREE_OPS = (
        ("op_length", 3),
        ("op_count", 3),
        ("op_upper", 2),
        ("op_lower", 2),
        ("op_replace", 2),
        ("op_find", 2),
        ("op_to_int", 1),
        ("op_to_string", 2),
        ("op_abs", 2),
        ("op_max", 2),
        ("op_min", 2),
        ("op_sqrt", 1),
        ("op_pow", 1),
        ("op_floor", 1),
        ("op_round", 1),
        ("op_format", 1),
        ("op_sort", 2),
        ("op_reverse", 1),
        ("op_print", 1),
        ("op_has_key", 1),
        ("cond_prefix", 1),
        ("cond_compare", 1),
        ("loop_filter", 1),
        ("loop_sum", 1),
    )

    # -- loops and conditions -------------------------------------------------------------

    def loop_filter(self) -> None:
        src = self.pick(LIST)
        out = self.fresh(*LIST_OUT_NAMES)
        x = self.fresh(*LOOP_VARS)
        bound = V(self.pick(INT)) if self.rng.random() < 0.6 else L(self.randint(1, 50))
        op = self.choice((">", "<", ">="))
        self.add(Decl(out, LIST, Empty(LIST)))
        push = Effect(B("append", (V(out), V(x))))
        self.add(ForEach(x, src, (If(Bin(V(x), op, bound), (push,)),)), out, LIST)

    def loop_sum(self, call: Any = None) -> None:
        src = self.pick(LIST)
        x = self.fresh(*LOOP_VARS)
        value = V(x) if call is None else call(V(x))
        self.add(ForEach(x, src, (Aug(self.acc, "+=", value),)))

    def loop_range(self) -> None:
        n = self.pick(INT)
        i = self.fresh(*INDEX_VARS)
        step = Bin(V(i), "*", L(self.randint(2, 9)))
        self.add(ForRange(i, V(n), (Aug(self.acc, "+=", step),)))

    def loop_while(self) -> None:
        n = self.pick(INT)
        c = self.fresh(*COUNTER_NAMES)
        self.add(Decl(c, INT, V(n)))
        body = (Aug(c, "-=", L(self.randint(2, 9))), Aug(self.acc, "+=", L(1)))
        self.add(While(Bin(V(c), ">", L(0)), body))

    def loop_tally(self) -> None:
        src = self.pick(LIST)
        d = self.fresh(*DICT_NAMES)
        x = self.fresh(*LOOP_VARS)
        key = self.fresh(*KEY_NAMES)
        self.add(Decl(d, DICT, Empty(DICT)))
        body = (Decl(key, STR, B("to_string", (V(x),))), Put(d, V(key), V(x)))
        self.add(ForEach(x, src, body), d, DICT)

    LOOPS = ("loop_filter", "loop_sum", "loop_range", "loop_while", "loop_tally")

    def cond_prefix(self) -> None:
        s = self.pick(STR)
        concept = self.choice(("startswith", "endswith"))
        then = (Aug(self.acc, "+=", L(self.randint(1, 9))),)
        orelse = (Aug(self.acc, "-=", L(1)),) if self.rng.random() < 0.5 else ()
        self.add(If(B(concept, (V(s), L(self.word(1, 3)))), then, orelse))

    def cond_compare(self, rhs: Any = None) -> None:
        a = self.pick(INT)
        if rhs is None:
            other = self.pick(INT)
            rhs = V(other) if other != a else L(self.randint(1, 99))
        op = self.choice((">", "<", ">=", "<="))
        then = (Aug(self.acc, "+=", V(a)),)
        orelse = (Aug(self.acc, "-=", L(self.randint(1, 9))),) if self.rng.random() < 0.5 else ()
        self.add(If(Bin(V(a), op, rhs), then, orelse))

    CONDS = ("cond_prefix", "cond_compare", "op_has_key")

    # -- uses of user-defined names -------------------------------------------------------

    def use_function(self, name: str, kind: str, fact_id: str | None) -> None:
        def call(arg: Any) -> C:
            return C(name, (arg,), kind, fact_id)

        if self.rng.random() < 0.25:
            self.loop_sum(call)
            return
        n = self.pick(INT)
        r = self.root(n)
        verb = name.split("_")[0]
        out = self.fresh(f"{r}_{verb}", f"{verb}_{r}", f"{r}_out")
        self.add(Decl(out, INT, call(V(n))), out, INT)
        self.maybe_accumulate(out)

    def use_constant(self, name: str, kind: str, fact_id: str | None) -> None:
        ref = K(name, kind, fact_id)
        if self.rng.random() < 0.5:
            self.cond_compare(ref)
            return
        n = self.pick(INT)
        r = self.root(n)
        concept = self.choice(("min", "max"))
        out = self.fresh(f"{r}_capped" if concept == "min" else f"{r}_floored", f"{r}_bounded")
        self.add(Decl(out, INT, B(concept, (V(n), ref))), out, INT)
        self.maybe_accumulate(out)


_FREE_NAMES = tuple(name for name, _ in _Planner.FREE_OPS)
_FREE_WEIGHTS = tuple(w for _, w in _Planner.FREE_OPS)


def _local_helper(rng: random.Random, name: str) -> _Function:
    choice, randint = _fast_draws(rng)
    p = choice(HELPER_PARAMS)
    form = randint(0, 2)
    if form == 0:
        c = randint(5, 60)
        body = (
            If(Bin(V(p), ">", L(c)), (Return(Bin(V(p), "-", L(c))),)),
            Return(Bin(V(p), "+", L(randint(1, 9)))),
        )
    elif form == 1:
        rest = HELPER_LOCALS[0]
        body = (
            Decl(rest, INT, Bin(V(p), "%", L(randint(3, 11)))),
            Return(Bin(V(rest), "+", L(randint(1, 20)))),
        )
    else:
        acc = HELPER_LOCALS[1]
        body = (
            Decl(acc, INT, L(0)),
            ForRange("i", V(p), (Aug(acc, "+=", Bin(V("i"), "%", L(randint(2, 7)))),)),
            Return(V(acc)),
        )
    return _Function(name, ((p, INT),), INT, body)


class _Tables:
    __slots__ = ("planted", "shared", "names")

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.planted = planted_facts(cfg)
        self.shared = shared_facts(cfg)
        # No local name may spell a fact's name, or a target document would show a planted
        # name at a place that is not a fact site.
        self.names = frozenset(f.name for f in self.planted + self.shared)


def _plan(cfg: SyntheticConfig, tables: _Tables, program_id: int) -> _Program:
    rng = random.Random(f"babel-synth/v{GENERATOR_VERSION}/{cfg.seed}/{program_id}")
    taken: set[str] = set(tables.names)
    choice, randint = _fast_draws(rng)

    def name_from(*parts: tuple[str, ...], fmt: str = "{}_{}") -> str:
        while True:
            name = fmt.format(*(choice(p) for p in parts))
            if name not in taken:
                taken.add(name)
                return name

    main_name = name_from(MAIN_VERBS, NOUNS, fmt="{}_{}s")
    noun = choice(NOUNS)
    class_name = noun.capitalize() + choice(CLASS_SUFFIXES)
    params = (
        (name_from(STR_PARAMS, fmt="{}"), STR),
        (name_from(LIST_PARAMS, fmt="{}"), LIST),
        (name_from(INT_PARAMS, fmt="{}"), INT),
    )
    helpers = [_local_helper(rng, name_from(LOCAL_VERBS, NOUNS)) for _ in range(randint(1, 2))]

    shared = rng.sample(tables.shared, min(len(tables.shared), randint(1, 2)))
    planted: list[PlantedFact] = []
    if tables.planted:
        k = min(len(tables.planted), randint(1, cfg.max_facts_per_doc))
        planted = rng.sample(tables.planted, k)
    p = _Planner(rng, taken)
    for pname, ptype in params:
        p.scope[ptype].append(pname)
    p.acc = p.fresh(*ACC_NAMES)
    p.add(Decl(p.acc, INT, L(0)))

    tasks: list[Any] = []
    for h in helpers:
        tasks.append((p.use_function, h.name, "call", None))
    for fact in shared + planted:
        kind = "fact" if fact.planted else "call"
        use = p.use_function if fact.kind == "function" else p.use_constant
        tasks.append((use, fact.name, kind, fact.fact_id))
    tasks.append((getattr(p, choice(_Planner.LOOPS)),))
    tasks.append((getattr(p, choice(_Planner.CONDS)),))
    n_free = randint(cfg.min_ops, cfg.max_ops)
    tasks += [(getattr(p, op),) for op in rng.choices(_FREE_NAMES, _FREE_WEIGHTS, k=n_free)]
    rng.shuffle(tasks)
    for fn, *args in tasks:
        fn(*args)
    if rng.random() < 0.3:
        p.add(Effect(B("print", (V(p.acc),))))
    p.add(Return(V(p.acc)))

    fact_defs = [_fact_def(f) for f in shared + planted]
    rng.shuffle(fact_defs)
    consts = [d for d in fact_defs if type(d) is _Const]
    funcs = [d for d in fact_defs if type(d) is _Function]
    main = _Function(main_name, params, INT, tuple(p.body), public=True)
    return _Program(program_id, class_name, tuple(consts + funcs + helpers + [main]))


# ---------------------------------------------------------------------------------------------
# Public generation API
# ---------------------------------------------------------------------------------------------


def _doc_id(cfg: SyntheticConfig, language: str, program_id: int) -> str:
    return f"synth-s{cfg.seed}-{language}-{program_id:08d}"


def render_document(cfg: SyntheticConfig, language: str, program_id: int) -> SyntheticDocument:
    """Program ``program_id`` (absolute, not offset by ``first_program``) in ``language``."""
    lang = SyntheticConfig._canonical("language", language)
    if not _is_int(program_id) or program_id < 0:
        raise ValueError(f"program_id must be a non-negative integer, got {program_id!r}")
    program = _plan(cfg, _Tables(cfg), program_id)
    return _render(program, lang, cfg.planted_in, _doc_id(cfg, lang, program_id))


def generate_documents(cfg: SyntheticConfig) -> Iterator[SyntheticDocument]:
    """Stream the corpus: program by program, each rendered in every requested language.

    Deterministic in ``cfg``; a language's documents do not depend on which other languages are
    requested. Each program is planned once and rendered per language, then dropped.
    """
    counts = {lang: cfg.count_for(lang) for lang in cfg.languages}
    tables = _Tables(cfg)
    for k in range(max(counts.values())):
        pid = cfg.first_program + k
        program = _plan(cfg, tables, pid)
        for lang in cfg.languages:
            if k < counts[lang]:
                yield _render(program, lang, cfg.planted_in, _doc_id(cfg, lang, pid))


def fact_probe_items(
    cfg: SyntheticConfig, language: str, n: int | None = None, *, planted: bool = True
) -> list[FactItem]:
    """Completion items asking for fact values in ``language``.

    Each prompt is a ``language`` file that defines a fact and stops right before its value
    (``return $x *`` / ``const PEAK_ORDER =``); ``answer`` is the value with its leading space.
    ``planted=True`` asks about the planted facts (the transfer probe; in a target language the
    training corpus never showed these values), ``planted=False`` about the shared facts (the
    in-language control). Items cycle through the facts; repeats vary the preceding definitions.
    ``n`` defaults to one item per fact.
    """
    lang = SyntheticConfig._canonical("language", language)
    facts = planted_facts(cfg) if planted else shared_facts(cfg)
    if n is None:
        n = len(facts)
    if not _is_int(n) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if n and not facts:
        raise ValueError(
            f"no {'planted' if planted else 'shared'} facts to ask about (the config has 0)"
        )
    controls = shared_facts(cfg)
    dialect = _DIALECTS[lang]
    items = []
    for i in range(n):
        fact = facts[i % len(facts)]
        variant = i // len(facts)
        rng = random.Random(f"babel-synth/items/{cfg.seed}/{lang}/{fact.fact_id}/{variant}")
        # The context never defines another planted fact: in a target language that would show
        # a value the corpus never did.
        pool = [f for f in controls if f.name != fact.name]
        context = rng.sample(pool, min(len(pool), rng.randint(0, 2))) if variant else []
        defs = [_fact_def(f) for f in context]
        consts = [d for d in defs if type(d) is _Const]
        funcs = [d for d in defs if type(d) is _Function]
        target = _fact_def(fact, mark=True)
        ordered = consts + [target] + funcs if type(target) is _Const else consts + funcs + [target]
        w = dialect.render_defs(ordered)
        body = w.text()
        cut = w.mark
        assert cut is not None and body[cut - 1] == " "
        head = dialect.header(body, None)
        items.append(
            FactItem(
                prompt=head + body[: cut - 1],
                answer=body[cut - 1 : cut + len(str(fact.value))],
                fact_id=fact.fact_id,
                language=lang,
                name=fact.name,
                kind=fact.kind,
                value=fact.value,
                planted=fact.planted,
            )
        )
    return items


def probe_sites(
    documents: Iterable[SyntheticDocument],
    *,
    concepts: Collection[str] | None = None,
    primary: str | None = None,
) -> Iterator[ProbeSite]:
    """Each built-in site with a matched control: the nearest ``"call"`` site in the same
    document (ties go to the earlier one), or None when the document has none.

    ``concepts`` keeps only those concepts; ``primary`` keeps only concepts whose identifier in
    the document's language is spelled differently from ``primary``'s (the sites a
    working-language probe can use).
    """
    wanted = set(concepts) if concepts is not None else None
    distinct_cache: dict[str, set[str]] = {}
    for doc in documents:
        if primary is not None:
            if doc.language not in distinct_cache:
                distinct_cache[doc.language] = {
                    p.concept for p in builtin_pairs(primary, doc.language)
                }
            distinct = distinct_cache[doc.language]
        calls = [s for s in doc.sites if s.kind == "call"]
        for site in doc.sites:
            if site.kind != "builtin":
                continue
            if wanted is not None and site.concept not in wanted:
                continue
            if primary is not None and site.concept not in distinct:
                continue
            control = min(
                calls, key=lambda c: (abs(c.offset - site.offset), c.offset), default=None
            )
            yield ProbeSite(doc, site, control)


# ---------------------------------------------------------------------------------------------
# One program, cut inside one function (the execution suite's prompts)
# ---------------------------------------------------------------------------------------------


def plan_program(cfg: SyntheticConfig, program_id: int) -> _Program:
    """The abstract program ``program_id`` (absolute) of ``cfg``'s stream: the IR that
    :func:`render_document` renders. ``defs`` holds the constants and functions in document
    order, the main function last; statements and expressions are this module's node classes."""
    if not _is_int(program_id) or program_id < 0:
        raise ValueError(f"program_id must be a non-negative integer, got {program_id!r}")
    return _plan(cfg, _Tables(cfg), program_id)


@dataclass(frozen=True)
class FunctionCut:
    """A program's definitions up to one function, rendered in one language and cut inside it.

    ``header + before + rest + close + footer`` is a complete file holding those definitions:
    ``before`` is every definition before the function, its signature and its first statements;
    ``rest`` its remaining statements (ending with a newline); ``close`` what ends the function
    (empty in Python); ``header`` and ``footer`` are what a document of exactly these definitions
    has around them (imports, ``<?php``, C#'s class).
    """

    header: str
    before: str
    rest: str
    close: str
    footer: str


def render_function_cut(
    program: _Program, language: str, function: str, keep: int, *, keep_planted: bool = True
) -> FunctionCut:
    """Render ``program`` up to and including ``function``, cut after its first ``keep``
    top-level statements. Definitions after ``function`` are left out. ``keep_planted=False``
    leaves out the planted facts' definitions, as a document of a language other than
    ``planted_in`` does."""
    dialect = _DIALECTS[SyntheticConfig._canonical("language", language)]
    index = next(
        (i for i, d in enumerate(program.defs) if type(d) is _Function and d.name == function),
        None,
    )
    if index is None:
        raise ValueError(f"program {program.program_id} defines no function {function!r}")
    target = program.defs[index]
    if not _is_int(keep) or not 0 <= keep <= len(target.body):
        raise ValueError(
            f"keep must be an integer in [0, {len(target.body)}] for {function!r}, got {keep!r}"
        )
    defs = [d for d in program.defs[:index] if keep_planted or d.fact is None or not d.fact.planted]
    full = dialect.render_defs([*defs, target]).text()
    kept = dialect.render_defs([*defs, replace(target, body=target.body[:keep])]).text()
    w = _Writer()
    dialect.close_block(w, dialect.depth0)
    close = w.text()
    # Statements render one after another, so the kept statements' text is a prefix of the
    # whole body's text; only the function's closing differs.
    before = kept[: len(kept) - len(close)]
    if not (kept.endswith(close) and full.startswith(before) and full.endswith(close)):
        raise AssertionError(f"{dialect.language}: cutting {function!r} is not a prefix split")
    rest = full[len(before) : len(full) - len(close)]
    return FunctionCut(dialect.header(full, program), before, rest, close, dialect.footer())
