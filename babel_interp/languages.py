"""The language registry: what the rest of the library knows about each programming language.

A :class:`Language` carries what the corpus and the probes need: file extensions (to label source
trees), comment syntax, reserved words, and a map from a shared *concept* vocabulary
(:data:`CONCEPTS`, e.g. ``"length"``) to the identifier that realizes the concept in that
language (PHP ``strlen``, C# ``Length``, C++ ``size``). The working-language probe asks, at a site
where a built-in is due, whether a model's intermediate layers favour the primary language's
identifier or the new language's; :func:`builtin_pairs` lists the concepts where the two spellings
differ, since an identically spelled pair (Go ``len`` vs Python ``len``) cannot tell the
languages apart.

Identifiers are the token a completion would produce next: for a method or a qualified function
it is the last name (``strings.ToUpper`` -> ``ToUpper``, ``Math.Abs`` -> ``Abs``), since the
receiver or package comes before the probe site. A concept a language realizes only with an
operator (Python's ``in``, Lua's ``#``) is left out for that language.

Eleven languages are built in; :func:`register_language` adds more without editing this module.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import PurePath
from types import MappingProxyType

__all__ = [
    "CONCEPTS",
    "PAPER_LANGUAGES",
    "BuiltinPair",
    "Language",
    "LanguageConflictError",
    "UnknownLanguageError",
    "builtin_pairs",
    "get_language",
    "language_for_path",
    "language_index",
    "list_languages",
    "register_language",
    "unregister_language",
]

PAPER_LANGUAGES: tuple[str, ...] = ("python", "php", "csharp", "go", "cpp")

# Ordered: builtin_pairs reports pairs in this order, so probe sets are stable across runs.
CONCEPTS: Mapping[str, str] = MappingProxyType(
    {
        "length": "length of a string",
        "count": "number of elements in a list or map",
        "print": "write a value to standard output",
        "abs": "absolute value of a number",
        "max": "larger of two values",
        "min": "smaller of two values",
        "sort": "sort a list",
        "upper": "string to upper case",
        "lower": "string to lower case",
        "split": "split a string on a separator",
        "join": "join strings with a separator",
        "strip": "strip surrounding whitespace",
        "replace": "replace every occurrence of a substring",
        "find": "position of a substring",
        "startswith": "does a string start with a prefix",
        "endswith": "does a string end with a suffix",
        "to_int": "parse a string as an integer",
        "to_string": "integer to its decimal string",
        "round": "round to the nearest integer",
        "sqrt": "square root",
        "floor": "round down",
        "pow": "raise to a power",
        "append": "add an element at the end of a list",
        "pop": "remove the last element of a list",
        "keys": "keys of a map",
        "contains": "is an element in a list",
        "has_key": "is a key in a map",
        "reverse": "reverse a list",
        "sum": "sum of a list of numbers",
        "range": "sequence of consecutive integers",
        "map": "apply a function to each element",
        "filter": "keep the elements that satisfy a predicate",
        "format": "format values into a string",
        "type": "type of a value",
        "ord": "code point of a character",
        "chr": "character of a code point",
        "random_int": "random integer in a range",
    }
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_IDENT_RE = re.compile(r"^\S+$")


class UnknownLanguageError(ValueError):
    """A language name or alias that the registry does not know."""


class LanguageConflictError(ValueError):
    """Registering a language whose name, alias or extension another language already owns."""


@dataclass(frozen=True)
class BuiltinPair:
    """One concept's identifier in the primary language and in a target language."""

    concept: str
    primary: str
    target: str


@dataclass(frozen=True)
class Language:
    """A programming language as the corpus builder and the probes see it.

    Sequences and mappings given as lists, sets or dicts are frozen on construction, so a
    registered language cannot change under the analyses that use it.
    """

    name: str
    display_name: str
    extensions: tuple[str, ...]
    line_comment: str | None = None
    block_comment: tuple[str, str] | None = None
    keywords: frozenset[str] = field(default=frozenset(), repr=False)
    builtins: Mapping[str, str] = field(default_factory=dict, repr=False)
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"Language.name must be a non-empty lowercase identifier ([a-z][a-z0-9_]*), "
                f"got {self.name!r}"
            )
        if not isinstance(self.display_name, str) or not self.display_name.strip():
            raise ValueError(f"Language.display_name must be a non-empty string ({self.name})")

        if isinstance(self.extensions, str):
            raise ValueError(
                f"Language.extensions must be a sequence of strings, not one string "
                f"({self.name}: {self.extensions!r})"
            )
        extensions = tuple(self.extensions)
        for ext in extensions:
            if not isinstance(ext, str) or len(ext) < 2 or not ext.startswith("."):
                raise ValueError(
                    f"Language.extensions entries must start with a dot and name a suffix, "
                    f"e.g. '.php' ({self.name}: {ext!r})"
                )
            if ext != ext.lower() or any(c.isspace() for c in ext):
                raise ValueError(
                    f"Language.extensions entries must be lowercase without spaces "
                    f"({self.name}: {ext!r})"
                )
        if len(set(extensions)) != len(extensions):
            raise ValueError(f"Language.extensions has duplicates ({self.name}: {extensions})")
        object.__setattr__(self, "extensions", extensions)

        if self.line_comment is not None and (
            not isinstance(self.line_comment, str) or not self.line_comment
        ):
            raise ValueError(
                f"Language.line_comment must be None or a non-empty string "
                f"({self.name}: {self.line_comment!r})"
            )
        if self.block_comment is not None:
            bc = tuple(self.block_comment)
            if len(bc) != 2 or not all(isinstance(s, str) and s for s in bc):
                raise ValueError(
                    f"Language.block_comment must be None or an (open, close) pair of non-empty "
                    f"strings ({self.name}: {self.block_comment!r})"
                )
            object.__setattr__(self, "block_comment", bc)

        if isinstance(self.keywords, str):
            raise ValueError(f"Language.keywords must be a collection of strings ({self.name})")
        keywords = frozenset(self.keywords)
        for kw in keywords:
            if not isinstance(kw, str) or not _IDENT_RE.match(kw):
                raise ValueError(
                    f"Language.keywords entries must be non-empty strings without whitespace "
                    f"({self.name}: {kw!r})"
                )
        object.__setattr__(self, "keywords", keywords)

        if not isinstance(self.builtins, Mapping):
            raise ValueError(
                f"Language.builtins must map concept -> identifier ({self.name}: "
                f"{type(self.builtins).__name__})"
            )
        builtins = dict(self.builtins)
        for concept, ident in builtins.items():
            if not isinstance(concept, str) or not concept:
                raise ValueError(
                    f"Language.builtins keys must be non-empty concept names ({self.name}: "
                    f"{concept!r})"
                )
            if not isinstance(ident, str) or not _IDENT_RE.match(ident):
                raise ValueError(
                    f"Language.builtins[{concept!r}] must be a non-empty identifier without "
                    f"whitespace ({self.name}: {ident!r})"
                )
        object.__setattr__(self, "builtins", MappingProxyType(builtins))

        if isinstance(self.aliases, str):
            raise ValueError(
                f"Language.aliases must be a sequence of strings, not one string "
                f"({self.name}: {self.aliases!r})"
            )
        aliases = tuple(self.aliases)
        for alias in aliases:
            if not isinstance(alias, str) or not alias.strip() or alias != alias.lower():
                raise ValueError(
                    f"Language.aliases entries must be non-empty lowercase strings "
                    f"({self.name}: {alias!r})"
                )
            if alias == self.name:
                raise ValueError(f"Language.aliases repeats the name itself ({self.name})")
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"Language.aliases has duplicates ({self.name}: {aliases})")
        object.__setattr__(self, "aliases", aliases)

    # The builtins mapping is unhashable; a language's identity is its name and surface.
    def __hash__(self) -> int:
        return hash((self.name, self.extensions, self.aliases))

    def builtin(self, concept: str) -> str | None:
        """The identifier realizing ``concept`` in this language, or None."""
        return self.builtins.get(concept)


# ---------------------------------------------------------------------------------------------
# Built-in languages
# ---------------------------------------------------------------------------------------------

_PYTHON_KEYWORDS = """
False None True and as assert async await break class continue def del elif else except finally
for from global if import in is lambda nonlocal not or pass raise return try while with yield
"""
_PHP_KEYWORDS = """
__halt_compiler abstract and array as break callable case catch class clone const continue
declare default die do echo else elseif empty enddeclare endfor endforeach endif endswitch
endwhile enum eval exit extends final finally fn for foreach function global goto if implements
include include_once instanceof insteadof interface isset list match namespace new or print
private protected public readonly require require_once return static switch throw trait try
unset use var while xor yield
"""
_CSHARP_KEYWORDS = """
abstract as base bool break byte case catch char checked class const continue decimal default
delegate do double else enum event explicit extern false finally fixed float for foreach goto if
implicit in int interface internal is lock long namespace new null object operator out override
params private protected public readonly ref return sbyte sealed short sizeof stackalloc static
string struct switch this throw true try typeof uint ulong unchecked unsafe ushort using virtual
void volatile while
"""
_GO_KEYWORDS = """
break case chan const continue default defer else fallthrough for func go goto if import
interface map package range return select struct switch type var
"""
_CPP_KEYWORDS = """
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
co_return co_yield decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq
nullptr operator or or_eq private protected public register reinterpret_cast requires return
short signed sizeof static static_assert static_cast struct switch template this thread_local
throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t while
xor xor_eq
"""
_JAVA_KEYWORDS = """
abstract assert boolean break byte case catch char class const continue default do double else
enum extends final finally float for goto if implements import instanceof int interface long
native new package private protected public return short static strictfp super switch
synchronized this throw throws transient try void volatile while true false null
"""
_JS_KEYWORDS = """
await break case catch class const continue debugger default delete do else enum export extends
false finally for function if implements import in instanceof interface let new null package
private protected public return static super switch this throw true try typeof var void while
with yield
"""
# TypeScript adds type-level words to JavaScript's reserved set.
_TS_EXTRA_KEYWORDS = """
abstract any as asserts bigint boolean declare readonly infer is keyof module namespace never
number object override satisfies string symbol type undefined unique unknown
"""
_RUST_KEYWORDS = """
as async await break const continue crate dyn else enum extern false fn for if impl in let loop
match mod move mut pub ref return self Self static struct super trait true type unsafe use where
while abstract become box do final macro override priv try typeof unsized virtual yield
"""
_RUBY_KEYWORDS = """
__ENCODING__ __LINE__ __FILE__ BEGIN END alias and begin break case class def defined? do else
elsif end ensure false for if in module next nil not or redo rescue retry return self super then
true undef unless until when while yield
"""
_LUA_KEYWORDS = """
and break do else elseif end false for function goto if in local nil not or repeat return then
true until while
"""


# Built-in identifiers, as ``concept=identifier`` words; a bare ``concept`` is spelled as the
# concept itself (Python ``abs``). TypeScript shares JavaScript's.
_PYTHON_BUILTINS = """
length=len count=len print abs max min sort upper lower split join strip replace find startswith
endswith to_int=int to_string=str round sqrt floor pow append pop keys reverse sum range map filter
format type ord chr random_int=randint
"""
_PHP_BUILTINS = """
length=strlen count print=echo abs max min sort upper=strtoupper lower=strtolower split=explode
join=implode strip=trim replace=str_replace find=strpos startswith=str_starts_with
endswith=str_ends_with to_int=intval to_string=strval round sqrt floor pow append=array_push
pop=array_pop keys=array_keys contains=in_array has_key=array_key_exists reverse=array_reverse
sum=array_sum range map=array_map filter=array_filter format=sprintf type=gettype ord chr random_int
"""
_CSHARP_BUILTINS = """
length=Length count=Count print=WriteLine abs=Abs max=Max min=Min sort=Sort upper=ToUpper
lower=ToLower split=Split join=Join strip=Trim replace=Replace find=IndexOf startswith=StartsWith
endswith=EndsWith to_int=Parse to_string=ToString round=Round sqrt=Sqrt floor=Floor pow=Pow
append=Add keys=Keys contains=Contains has_key=ContainsKey reverse=Reverse sum=Sum range=Range
map=Select filter=Where format=Format type=GetType random_int=Next
"""
_GO_BUILTINS = """
length=len count=len print=Println abs=Abs max min sort=Sort upper=ToUpper lower=ToLower split=Split
join=Join strip=TrimSpace replace=ReplaceAll find=Index startswith=HasPrefix endswith=HasSuffix
to_int=Atoi to_string=Itoa round=Round sqrt=Sqrt floor=Floor pow=Pow append keys=Keys
contains=Contains reverse=Reverse format=Sprintf type=TypeOf random_int=Intn
"""
_CPP_BUILTINS = """
length=size count=size print=cout abs max min sort upper=toupper lower=tolower replace find
startswith=starts_with endswith=ends_with to_int=stoi to_string round sqrt floor pow
append=push_back pop=pop_back has_key=contains reverse sum=accumulate map=transform filter=copy_if
format type=typeid
"""
_JAVA_BUILTINS = """
length count=size print=println abs max min sort upper=toUpperCase lower=toLowerCase split join
strip=trim replace find=indexOf startswith=startsWith endswith=endsWith to_int=parseInt
to_string=valueOf round sqrt floor pow append=add pop=removeLast keys=keySet contains
has_key=containsKey reverse sum range map filter format type=getClass random_int=nextInt
"""
_JS_BUILTINS = """
length count=length print=log abs max min sort upper=toUpperCase lower=toLowerCase split join
strip=trim replace=replaceAll find=indexOf startswith=startsWith endswith=endsWith to_int=parseInt
to_string=String round sqrt floor pow append=push pop keys contains=includes has_key=has reverse map
filter ord=charCodeAt chr=fromCharCode
"""
_RUST_BUILTINS = """
length=len count=len print=println abs max min sort upper=to_uppercase lower=to_lowercase split join
strip=trim replace find startswith=starts_with endswith=ends_with to_int=parse to_string round sqrt
floor pow append=push pop keys contains has_key=contains_key reverse sum map filter format
type=type_name
"""
_RUBY_BUILTINS = """
length count=size print=puts abs max min sort upper=upcase lower=downcase split join strip
replace=gsub find=index startswith=start_with? endswith=end_with? to_int=to_i to_string=to_s round
sqrt floor pow append=push pop keys contains=include? has_key=key? reverse sum map filter=select
format type=class ord chr random_int=rand
"""
_LUA_BUILTINS = """
length=len print abs max min sort upper lower join=concat replace=gsub find to_int=tonumber
to_string=tostring sqrt floor append=insert pop=remove format type ord=byte chr=char
random_int=random
"""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _builtins(text: str) -> dict[str, str]:
    """The concept -> identifier map of a ``concept=identifier`` word list."""
    out = {}
    for word in text.split():
        concept, _, ident = word.partition("=")
        out[concept] = ident or concept
    return out


_BUILTIN_LANGUAGES: tuple[Language, ...] = (
    Language(
        name="python",
        display_name="Python",
        extensions=(".py", ".pyi"),
        line_comment="#",
        keywords=_words(_PYTHON_KEYWORDS),
        builtins=_builtins(_PYTHON_BUILTINS),
        aliases=("py", "python3"),
    ),
    Language(
        name="php",
        display_name="PHP",
        extensions=(".php", ".phtml"),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_PHP_KEYWORDS),
        builtins=_builtins(_PHP_BUILTINS),
    ),
    Language(
        name="csharp",
        display_name="C#",
        extensions=(".cs",),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_CSHARP_KEYWORDS),
        builtins=_builtins(_CSHARP_BUILTINS),
        aliases=("c#", "cs", "c-sharp", "c_sharp"),
    ),
    Language(
        name="go",
        display_name="Go",
        extensions=(".go",),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_GO_KEYWORDS),
        builtins=_builtins(_GO_BUILTINS),
        aliases=("golang",),
    ),
    Language(
        name="cpp",
        display_name="C++",
        extensions=(".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx"),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_CPP_KEYWORDS),
        builtins=_builtins(_CPP_BUILTINS),
        aliases=("c++", "cxx", "cplusplus"),
    ),
    Language(
        name="java",
        display_name="Java",
        extensions=(".java",),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_JAVA_KEYWORDS),
        builtins=_builtins(_JAVA_BUILTINS),
    ),
    Language(
        name="javascript",
        display_name="JavaScript",
        extensions=(".js", ".mjs", ".cjs", ".jsx"),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_JS_KEYWORDS),
        builtins=_builtins(_JS_BUILTINS),
        aliases=("js", "node", "ecmascript"),
    ),
    Language(
        name="typescript",
        display_name="TypeScript",
        extensions=(".ts", ".tsx", ".mts", ".cts"),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_JS_KEYWORDS) | _words(_TS_EXTRA_KEYWORDS),
        builtins=_builtins(_JS_BUILTINS),
        aliases=("ts",),
    ),
    Language(
        name="rust",
        display_name="Rust",
        extensions=(".rs",),
        line_comment="//",
        block_comment=("/*", "*/"),
        keywords=_words(_RUST_KEYWORDS),
        builtins=_builtins(_RUST_BUILTINS),
        aliases=("rs",),
    ),
    Language(
        name="ruby",
        display_name="Ruby",
        extensions=(".rb", ".rake", ".gemspec"),
        line_comment="#",
        block_comment=("=begin", "=end"),
        keywords=_words(_RUBY_KEYWORDS),
        builtins=_builtins(_RUBY_BUILTINS),
        aliases=("rb",),
    ),
    Language(
        name="lua",
        display_name="Lua",
        extensions=(".lua",),
        line_comment="--",
        block_comment=("--[[", "]]"),
        keywords=_words(_LUA_KEYWORDS),
        builtins=_builtins(_LUA_BUILTINS),
    ),
)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_lock = threading.RLock()
_by_name: dict[str, Language] = {}
_alias_index: dict[str, str] = {}  # lowercase alias -> canonical name
_ext_index: dict[str, str] = {}  # extension -> canonical name


def _owner(key: str) -> str | None:
    """The language that a lookup of ``key`` (name or alias) resolves to now."""
    return key if key in _by_name else _alias_index.get(key)


def _conflicts(lang: Language) -> tuple[list[str], list[str]]:
    """(conflicts overwrite may resolve, conflicts it may not) with other languages."""
    movable, fixed = [], []
    for alias in lang.aliases:
        if alias in _by_name and alias != lang.name:
            fixed.append(f"alias {alias!r} is the name of language {alias!r}")
        elif _alias_index.get(alias, lang.name) != lang.name:
            movable.append(f"alias {alias!r} is already used by language {_alias_index[alias]!r}")
    if _alias_index.get(lang.name, lang.name) != lang.name:
        movable.append(
            f"name {lang.name!r} is already an alias of language {_alias_index[lang.name]!r}"
        )
    for ext in lang.extensions:
        if _ext_index.get(ext, lang.name) != lang.name:
            movable.append(f"extension {ext!r} is already used by language {_ext_index[ext]!r}")
    return movable, fixed


def _drop_indexes(name: str) -> None:
    for index in (_alias_index, _ext_index):
        for key in [k for k, v in index.items() if v == name]:
            del index[key]


def register_language(lang: Language, *, overwrite: bool = False) -> None:
    """Add ``lang`` to the registry, so every component can look it up by name or extension.

    Without ``overwrite``, reusing a registered name, or an alias or extension another language
    owns, raises :class:`LanguageConflictError`. With ``overwrite=True`` a language of the same
    name is replaced and aliases or extensions owned by other languages move to ``lang`` (those
    languages keep their objects but lookups through the moved keys now find ``lang``). An alias
    equal to another language's canonical name is refused either way: it would hide that language.
    """
    if not isinstance(lang, Language):
        raise TypeError(f"register_language expects a Language, got {type(lang).__name__}")
    with _lock:
        movable, fixed = _conflicts(lang)
        if not overwrite and lang.name in _by_name:
            movable.insert(0, f"a language named {lang.name!r} is already registered")
        if fixed or (movable and not overwrite):
            hint = " (pass overwrite=True to replace)" if movable and not fixed else ""
            raise LanguageConflictError(
                f"cannot register language {lang.name!r}: " + "; ".join(fixed + movable) + hint
            )
        _drop_indexes(lang.name)
        _alias_index.pop(lang.name, None)
        _by_name[lang.name] = lang
        for alias in lang.aliases:
            _alias_index[alias] = lang.name
        for ext in lang.extensions:
            _ext_index[ext] = lang.name


def unregister_language(name: str) -> Language:
    """Remove a language (by name or alias) from the registry and return it."""
    with _lock:
        lang = get_language(name)
        del _by_name[lang.name]
        _drop_indexes(lang.name)
        return lang


def get_language(name: str | Language) -> Language:
    """Look up a language by canonical name or alias, case-insensitively.

    Raises :class:`UnknownLanguageError` (a ``ValueError``) naming the known languages.
    """
    if isinstance(name, Language):
        return name
    if not isinstance(name, str):
        raise UnknownLanguageError(f"language name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    with _lock:
        owner = _owner(key)
        lang = _by_name.get(owner) if owner is not None else None
        if lang is None:
            raise UnknownLanguageError(
                f"unknown language {name!r}; known languages: {', '.join(list_languages())}"
            )
        return lang


def list_languages() -> list[str]:
    """Canonical names of all registered languages, in registration order."""
    with _lock:
        return list(_by_name)


def language_index(languages: Sequence[str], language: str, missing: str) -> int:
    """Position of ``language`` in ``languages`` (the order of a corpus, statistics or result);
    a language that is not there is a ``KeyError`` with the message ``missing``."""
    try:
        return languages.index(language)
    except ValueError:
        raise KeyError(missing) from None


def language_for_path(path: str | PathLike[str]) -> Language | None:
    """The language whose extensions include the file's suffix (case-insensitive), or None."""
    suffix = PurePath(path).suffix.lower()
    if not suffix:
        return None
    with _lock:
        name = _ext_index.get(suffix)
        return _by_name[name] if name is not None else None


def builtin_pairs(primary: str | Language, target: str | Language) -> list[BuiltinPair]:
    """Concepts both languages realize with differently spelled identifiers.

    Pairs spelled identically are left out: a probe cannot tell which language such an
    identifier came from. Order follows :data:`CONCEPTS`, then any user concepts alphabetically.
    """
    p, t = get_language(primary), get_language(target)
    shared = set(p.builtins) & set(t.builtins)
    order = {c: i for i, c in enumerate(CONCEPTS)}
    concepts = sorted(shared, key=lambda c: (order.get(c, len(order)), c))
    return [
        BuiltinPair(concept=c, primary=p.builtins[c], target=t.builtins[c])
        for c in concepts
        if p.builtins[c] != t.builtins[c]
    ]


def _register_all(languages: Iterable[Language]) -> None:
    for lang in languages:
        register_language(lang)


_register_all(_BUILTIN_LANGUAGES)
