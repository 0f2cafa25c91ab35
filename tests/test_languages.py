"""The language registry: completeness, lookups, built-in pairs, user registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from babel_interp.languages import (
    CONCEPTS,
    PAPER_LANGUAGES,
    BuiltinPair,
    Language,
    LanguageConflictError,
    UnknownLanguageError,
    builtin_pairs,
    get_language,
    language_for_path,
    list_languages,
    register_language,
    unregister_language,
)

ALL = (
    "python",
    "php",
    "csharp",
    "go",
    "cpp",
    "java",
    "javascript",
    "typescript",
    "rust",
    "ruby",
    "lua",
)


@pytest.fixture
def scratch_language():
    """Registers nothing itself; unregisters whatever name the test registers under."""
    names: list[str] = []
    yield names
    for name in names:
        if name in list_languages():
            unregister_language(name)


def _toy(name: str = "toylang", **kw) -> Language:
    base = dict(
        name=name,
        display_name="Toy",
        extensions=(".toy",),
        line_comment=";",
        keywords={"let", "fn"},
        builtins={"length": "size_of", "print": "say"},
        aliases=("toy",),
    )
    base.update(kw)
    return Language(**base)


def test_all_builtin_languages_registered():
    assert set(ALL) <= set(list_languages())
    assert list_languages()[: len(ALL)] == list(ALL)
    assert PAPER_LANGUAGES == ("python", "php", "csharp", "go", "cpp")
    for name in ALL:
        lang = get_language(name)
        assert lang.name == name
        assert lang.extensions and all(e.startswith(".") for e in lang.extensions)
        assert lang.keywords, name
        assert set(lang.builtins) <= set(CONCEPTS), set(lang.builtins) - set(CONCEPTS)


@pytest.mark.parametrize("name", [n for n in ALL if n != "python"])
def test_every_language_has_five_distinct_pairs_against_python(name):
    pairs = builtin_pairs("python", name)
    assert len(pairs) >= 5, (name, pairs)
    for pair in pairs:
        assert isinstance(pair, BuiltinPair)
        assert pair.primary == get_language("python").builtins[pair.concept]
        assert pair.target == get_language(name).builtins[pair.concept]
        assert pair.primary != pair.target


def test_paper_languages_have_rich_pair_sets():
    # The working-language probe needs several pairs per new language to average over.
    for name in PAPER_LANGUAGES[1:]:
        assert len(builtin_pairs("python", name)) >= 8, name


def test_known_php_facts():
    php = get_language("php")
    expected = {
        "length": "strlen",
        "count": "count",
        "upper": "strtoupper",
        "lower": "strtolower",
        "replace": "str_replace",
        "split": "explode",
        "join": "implode",
        "strip": "trim",
        "append": "array_push",
        "keys": "array_keys",
        "contains": "in_array",
        "to_int": "intval",
        "to_string": "strval",
    }
    for concept, ident in expected.items():
        assert php.builtins[concept] == ident
    concepts = {p.concept: p for p in builtin_pairs("python", "php")}
    assert concepts["length"] == BuiltinPair("length", "len", "strlen")
    # abs, max, sort, round, floor are spelled the same in both: useless to a probe.
    for same in ("abs", "max", "min", "sort", "round", "floor", "sqrt"):
        assert same not in concepts
    # Python realizes membership with the `in` operator, so there is no pair for it.
    assert "contains" not in concepts


def test_identically_spelled_pairs_are_dropped():
    go_pairs = {p.concept for p in builtin_pairs("python", "go")}
    assert "length" not in go_pairs  # len / len
    assert "append" not in go_pairs  # append / append
    assert "upper" in go_pairs  # upper / ToUpper


def test_pairs_follow_concept_order_and_are_symmetric():
    order = list(CONCEPTS)
    pairs = builtin_pairs("python", "csharp")
    assert [order.index(p.concept) for p in pairs] == sorted(order.index(p.concept) for p in pairs)
    back = builtin_pairs("csharp", "python")
    assert [(p.concept, p.primary, p.target) for p in back] == [
        (p.concept, p.target, p.primary) for p in pairs
    ]
    assert builtin_pairs("php", "php") == []


@pytest.mark.parametrize(
    "alias,name",
    [
        ("C#", "csharp"),
        ("cs", "csharp"),
        ("c++", "cpp"),
        ("CXX", "cpp"),
        ("golang", "go"),
        ("js", "javascript"),
        ("TS", "typescript"),
        ("py", "python"),
        ("rb", "ruby"),
        ("  PHP ", "php"),
        ("Python", "python"),
    ],
)
def test_aliases_and_case_insensitive_lookup(alias, name):
    assert get_language(alias).name == name


def test_get_language_passes_language_objects_through():
    lang = get_language("go")
    assert get_language(lang) is lang


def test_unknown_language_message_lists_known_names():
    with pytest.raises(UnknownLanguageError) as info:
        get_language("cobol")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "cobol" in message
    for name in ALL:
        assert name in message


@pytest.mark.parametrize(
    "path,name",
    [
        ("src/app/Controller.php", "php"),
        ("lib/os.py", "python"),
        ("Program.CS", "csharp"),
        ("main.go", "go"),
        ("x/y/z.cc", "cpp"),
        ("a.hpp", "cpp"),
        ("Main.java", "java"),
        ("index.mjs", "javascript"),
        ("types.d.ts", "typescript"),
        ("lib.rs", "rust"),
        ("Rakefile.rake", "ruby"),
        ("init.lua", "lua"),
    ],
)
def test_language_for_path(path, name):
    assert language_for_path(path).name == name
    assert language_for_path(Path(path)).name == name


def test_language_for_path_unknown_or_missing_suffix():
    assert language_for_path("README") is None
    assert language_for_path("notes.txt") is None
    assert language_for_path("archive.tar.gz") is None


def test_language_is_frozen_and_normalized():
    lang = _toy(extensions=[".toy", ".ty"], keywords=["let"], aliases=["toy"])
    assert lang.extensions == (".toy", ".ty")
    assert lang.keywords == frozenset({"let"})
    assert lang.aliases == ("toy",)
    assert lang.builtin("length") == "size_of"
    assert lang.builtin("sort") is None
    with pytest.raises(TypeError):
        lang.builtins["sort"] = "order"  # type: ignore[index]
    with pytest.raises(AttributeError):
        lang.name = "other"  # type: ignore[misc]
    assert hash(lang) == hash(_toy(extensions=(".toy", ".ty"), aliases=("toy",)))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"name": ""}, "name"),
        ({"name": "Toy"}, "name"),
        ({"name": "toy lang"}, "name"),
        ({"display_name": " "}, "display_name"),
        ({"extensions": ("toy",)}, "extensions"),
        ({"extensions": (".",)}, "extensions"),
        ({"extensions": (".TOY",)}, "extensions"),
        ({"extensions": ".toy"}, "extensions"),
        ({"extensions": (".toy", ".toy")}, "extensions"),
        ({"line_comment": ""}, "line_comment"),
        ({"block_comment": ("/*",)}, "block_comment"),
        ({"keywords": {"a b"}}, "keywords"),
        ({"builtins": {"length": ""}}, "builtins"),
        ({"builtins": {"": "len"}}, "builtins"),
        ({"aliases": ("Toy",)}, "aliases"),
        ({"aliases": ("toylang",)}, "aliases"),
    ],
)
def test_validation_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        _toy(**kwargs)


def test_user_registration_round_trip(scratch_language):
    scratch_language.append("toylang")
    register_language(_toy())
    assert "toylang" in list_languages()
    assert get_language("TOY").name == "toylang"
    assert language_for_path("game.toy").name == "toylang"
    pairs = builtin_pairs("python", "toylang")
    assert pairs == [BuiltinPair("length", "len", "size_of"), BuiltinPair("print", "print", "say")]
    removed = unregister_language("toy")
    assert removed.name == "toylang"
    assert "toylang" not in list_languages()
    assert language_for_path("game.toy") is None
    with pytest.raises(UnknownLanguageError):
        get_language("toy")


def test_registration_conflicts_are_explained(scratch_language):
    scratch_language.append("toylang")
    register_language(_toy())
    with pytest.raises(LanguageConflictError, match="already registered.*overwrite=True"):
        register_language(_toy())
    with pytest.raises(LanguageConflictError, match=r"extension '\.php'.*'php'"):
        register_language(_toy("other", extensions=(".php",), aliases=()))
    with pytest.raises(LanguageConflictError, match=r"alias 'js'.*'javascript'"):
        register_language(_toy("other", extensions=(".oth",), aliases=("js",)))
    with pytest.raises(LanguageConflictError, match=r"name 'golang'.*alias.*'go'"):
        register_language(_toy("golang", extensions=(".gol",), aliases=()))
    # An alias that is another language's canonical name would hide it: refused even on overwrite.
    with pytest.raises(LanguageConflictError, match=r"alias 'python' is the name"):
        register_language(_toy("other", extensions=(".oth",), aliases=("python",)), overwrite=True)
    assert "other" not in list_languages()
    # Nothing of a refused registration leaks into the indexes.
    assert language_for_path("x.php").name == "php"
    assert get_language("js").name == "javascript"


def test_overwrite_replaces_and_moves_keys(scratch_language):
    scratch_language.append("toylang")
    register_language(_toy())
    register_language(_toy(extensions=(".toy2",), aliases=("tl",)), overwrite=True)
    assert get_language("tl").name == "toylang"
    assert language_for_path("a.toy2").name == "toylang"
    assert language_for_path("a.toy") is None  # the old extension left with the old definition
    with pytest.raises(UnknownLanguageError):
        get_language("toy")

    scratch_language.append("hacklang")
    register_language(_toy("hacklang", extensions=(".toy2",), aliases=("tl",)), overwrite=True)
    assert language_for_path("a.toy2").name == "hacklang"
    assert get_language("tl").name == "hacklang"
    assert get_language("toylang").extensions == (".toy2",)  # its object is untouched


def test_register_rejects_non_language():
    with pytest.raises(TypeError):
        register_language({"name": "x"})  # type: ignore[arg-type]
