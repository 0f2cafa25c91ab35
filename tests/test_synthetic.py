"""The synthetic parallel-program corpus: determinism, sites, parallelism, planted facts."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections import Counter

import pytest

from babel_interp.corpus import synthetic as syn
from babel_interp.corpus.synthetic import (
    SITE_KINDS,
    SUPPORTED_LANGUAGES,
    SYNTHETIC_CONCEPTS,
    FactItem,
    SyntheticConfig,
    SyntheticDocument,
    fact_probe_items,
    generate_documents,
    planted_facts,
    probe_sites,
    render_document,
    render_fact_definition,
    shared_facts,
    vocabulary,
)
from babel_interp.corpus.synthetic.dialect import get_dialect
from babel_interp.languages import PAPER_LANGUAGES, builtin_pairs, get_language, list_languages

TARGETS = tuple(lang for lang in SUPPORTED_LANGUAGES if lang != "python")


def _docs(**kw) -> list[SyntheticDocument]:
    return list(generate_documents(SyntheticConfig(**kw)))


@pytest.fixture(scope="module")
def corpus() -> list[SyntheticDocument]:
    """120 programs in all five languages, shared by the read-only tests."""
    return _docs(docs_per_language=120, seed=3)


def _word(ident: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z0-9_])" + re.escape(ident) + r"(?![A-Za-z0-9_])")


# --- configuration -----------------------------------------------------------------------


def test_config_round_trip_and_alias_canonicalization():
    cfg = SyntheticConfig(
        languages=("py", "PHP", "c#"),
        docs_per_language={"python": 5, "php": 3, "cs": 2},
        seed=7,
        planted_in="Python",
        n_planted_facts=10,
    )
    assert cfg.languages == ("python", "php", "csharp")
    assert cfg.docs_per_language == {"python": 5, "php": 3, "csharp": 2}
    assert cfg.count_for("c#") == 2
    again = SyntheticConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert SyntheticConfig.from_dict(SyntheticConfig().to_dict()) == SyntheticConfig()
    assert SyntheticConfig().languages == ("python", "php", "csharp", "go", "cpp")


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"languages": ("cobol",)}, "languages"),
        ({"languages": ("java",)}, "languages"),
        ({"languages": ()}, "languages"),
        ({"languages": "python"}, "languages"),
        ({"languages": ("python", "py")}, "languages"),
        ({"docs_per_language": 0}, "docs_per_language"),
        ({"docs_per_language": True}, "docs_per_language"),
        ({"docs_per_language": {"python": 3}}, "docs_per_language"),
        ({"languages": ("php",), "docs_per_language": {"php": -1}}, "docs_per_language"),
        ({"planted_in": "ruby"}, "planted_in"),
        ({"n_planted_facts": -1}, "n_planted_facts"),
        ({"n_planted_facts": 10_000}, "n_planted_facts"),
        ({"n_shared_facts": 1.5}, "n_shared_facts"),
        ({"seed": "x"}, "seed"),
        ({"first_program": -3}, "first_program"),
        ({"min_ops": 0}, "min_ops"),
        ({"min_ops": 5, "max_ops": 4}, "max_ops"),
        ({"max_facts_per_doc": 0}, "max_facts_per_doc"),
    ],
)
def test_config_validation_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**kwargs)


def test_unknown_language_error_lists_known_names_and_supported_ones():
    with pytest.raises(ValueError) as info:
        SyntheticConfig(languages=("cobol",))
    assert "python" in str(info.value) and "lua" in str(info.value)
    with pytest.raises(ValueError, match="renders only python, php, csharp, go, cpp"):
        SyntheticConfig(planted_in="rust")


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown field.*'colour'"):
        SyntheticConfig.from_dict({"colour": "red"})


# --- determinism, ordering, streaming -----------------------------------------------------


def test_same_seed_same_stream_other_seed_other_stream():
    a = [d.to_dict() for d in _docs(docs_per_language=15, seed=11)]
    b = [d.to_dict() for d in _docs(docs_per_language=15, seed=11)]
    c = [d.to_dict() for d in _docs(docs_per_language=15, seed=12)]
    assert a == b
    assert [d["text"] for d in a] != [d["text"] for d in c]
    assert not {d["text"] for d in a} & {d["text"] for d in c}


def test_language_stream_independent_of_requested_languages():
    full = _docs(docs_per_language=25, seed=5)
    for lang in SUPPORTED_LANGUAGES:
        alone = _docs(languages=(lang,), docs_per_language=25, seed=5)
        mixed = [d for d in full if d.language == lang]
        assert [d.to_dict() for d in alone] == [d.to_dict() for d in mixed]
    reordered = _docs(languages=("cpp", "php"), docs_per_language=25, seed=5)
    assert [d.text for d in reordered if d.language == "php"] == [
        d.text for d in full if d.language == "php"
    ]


def test_interleaved_order_counts_and_program_ids():
    counts = {"python": 4, "php": 2, "go": 3}
    docs = _docs(languages=("python", "php", "go"), docs_per_language=counts, first_program=100)
    assert Counter(d.language for d in docs) == counts
    assert [(d.program_id, d.language) for d in docs] == [
        (100, "python"),
        (100, "php"),
        (100, "go"),
        (101, "python"),
        (101, "php"),
        (101, "go"),
        (102, "python"),
        (102, "go"),
        (103, "python"),
    ]
    assert len({d.doc_id for d in docs}) == len(docs)
    cfg = SyntheticConfig(languages=("python", "php", "go"), docs_per_language=counts)
    for d in docs:
        assert render_document(cfg, d.language, d.program_id).to_dict() == d.to_dict()


def test_first_program_gives_disjoint_splits():
    train = _docs(languages=("php",), docs_per_language=50)
    val = _docs(languages=("php",), docs_per_language=50, first_program=50)
    assert not {d.text for d in train} & {d.text for d in val}
    assert _docs(languages=("php",), docs_per_language=100)[50:] == val


def test_generation_is_streaming():
    cfg = SyntheticConfig(docs_per_language=10**9)
    stream = generate_documents(cfg)
    assert iter(stream) is stream
    start = time.perf_counter()
    first = list(itertools.islice(stream, 10))
    assert time.perf_counter() - start < 5
    assert [d.program_id for d in first] == [0] * 5 + [1] * 5


def test_distinct_documents_at_scale():
    # 20k documents with no duplicate: had the program space held only 100k programs, about
    # 2,000 collisions would be expected in a sample this size (birthday bound).
    cfg = SyntheticConfig(languages=("php",), docs_per_language=20_000, seed=1)
    digests = {
        hashlib.blake2b(d.text.encode(), digest_size=16).digest() for d in generate_documents(cfg)
    }
    assert len(digests) == 20_000


# --- sites ---------------------------------------------------------------------------------


def test_every_site_offset_is_exact(corpus):
    n_sites = 0
    for doc in corpus:
        lang = get_language(doc.language)
        offsets = [s.offset for s in doc.sites]
        assert offsets == sorted(offsets)
        for site in doc.sites:
            assert doc.text[site.offset :].startswith(site.identifier), (doc.doc_id, site)
            # An identifier site starts and ends on a word boundary.
            before = doc.text[site.offset - 1] if site.offset else " "
            after = doc.text[site.offset + len(site.identifier)]
            assert not (before.isalnum() or before in "_$"), (doc.doc_id, site)
            assert not (after.isalnum() or after == "_"), (doc.doc_id, site)
            assert site.kind in SITE_KINDS
            if site.kind == "builtin":
                assert site.concept in SYNTHETIC_CONCEPTS
                assert lang.builtins[site.concept] == site.identifier
                assert site.fact_id is None
            else:
                assert site.concept is None
            n_sites += 1
    assert n_sites > 8 * len(corpus)


def test_builtins_are_frequent_and_cover_the_concepts(corpus):
    seen: dict[str, Counter] = {lang: Counter() for lang in SUPPORTED_LANGUAGES}
    for doc in corpus:
        builtins = doc.builtin_sites()
        assert len(builtins) >= 4, doc.doc_id
        assert any(s.kind == "call" for s in doc.sites), doc.doc_id
        seen[doc.language].update(s.concept for s in builtins)
    for lang, counter in seen.items():
        realized = {c for c in SYNTHETIC_CONCEPTS if c in get_language(lang).builtins}
        if lang != "python":
            realized.discard("range")  # only Python counts with a range() call
        assert realized <= set(counter), (lang, realized - set(counter))
    # PHP is the probe's main target: its distinct built-ins must be common, not incidental.
    php_pairs = {p.concept for p in builtin_pairs("python", "php")}
    assert sum(n for c, n in seen["php"].items() if c in php_pairs) > 3 * 120


def test_builtin_contexts_are_predictable():
    doc = next(
        d
        for d in generate_documents(SyntheticConfig(languages=("php",), docs_per_language=50))
        if any(s.concept == "length" for s in d.sites)
    )
    site = next(s for s in doc.sites if s.concept == "length")
    line = doc.text[: site.offset].rsplit("\n", 1)[1]
    assert re.fullmatch(r"\s*\$\w+_(len|length|chars) = ", line), line


# --- parallelism ---------------------------------------------------------------------------


def _user_sites(doc):
    return [(s.identifier, s.kind, s.fact_id) for s in doc.sites if s.kind != "builtin"]


def _concepts(doc):
    # Concepts some language realizes without an identifier (or only Python with one).
    skip = {"has_key", "range"}
    return [s.concept for s in doc.sites if s.kind == "builtin" and s.concept not in skip]


def test_same_program_id_is_the_same_program_in_every_language(corpus):
    by_program: dict[int, dict[str, SyntheticDocument]] = {}
    for doc in corpus:
        by_program.setdefault(doc.program_id, {})[doc.language] = doc
    for pid, docs in by_program.items():
        assert set(docs) == set(SUPPORTED_LANGUAGES)
        ref = docs["python"]
        for lang, doc in docs.items():
            assert _user_sites(doc) == _user_sites(ref), (pid, lang)
            assert _concepts(doc) == _concepts(ref), (pid, lang)
            for site in doc.builtin_sites():
                assert site.identifier == get_language(lang).builtins[site.concept]


def test_php_uses_php_builtins_where_python_uses_python_ones(corpus):
    pairs = {p.concept: p for p in builtin_pairs("python", "php")}
    by_key = {(d.program_id, d.language): d for d in corpus}
    skip = {"has_key", "range"}
    checked = 0
    for (pid, lang), doc in by_key.items():
        if lang != "php":
            continue
        py_sites = [s for s in by_key[(pid, "python")].builtin_sites() if s.concept not in skip]
        php_sites = [s for s in doc.builtin_sites() if s.concept not in skip]
        for py_site, php_site in zip(py_sites, php_sites, strict=True):
            assert py_site.concept == php_site.concept
            if py_site.concept in pairs:
                assert php_site.identifier == pairs[py_site.concept].target
                assert py_site.identifier == pairs[py_site.concept].primary
                checked += 1
    assert checked > 3 * 120


# Words that are a built-in of one language and plain syntax of another: `int` is Python's
# to_int built-in, the integer type of C#, Go and C++ and PHP's integer cast.
SYNTAX_COLLISIONS = {"php": {"int"}, "csharp": {"int"}, "go": {"int"}, "cpp": {"int"}}


def test_no_other_languages_distinct_builtins_appear(corpus):
    langs = {name: get_language(name) for name in SUPPORTED_LANGUAGES}
    foreign: dict[str, re.Pattern] = {}
    for lang in langs.values():
        allowed = (
            set(lang.builtins.values()) | lang.keywords | SYNTAX_COLLISIONS.get(lang.name, set())
        )
        idents = {
            other.builtins[c]
            for other in langs.values()
            if other is not lang
            for c in SYNTHETIC_CONCEPTS
            if c in other.builtins
        } - allowed
        assert len(idents) >= 10, lang.name
        alternation = "|".join(sorted(map(re.escape, idents), key=len, reverse=True))
        foreign[lang.name] = re.compile(r"(?<![A-Za-z0-9_])(" + alternation + r")(?![A-Za-z0-9_])")
    for doc in corpus:
        match = foreign[doc.language].search(doc.text)
        assert match is None, (doc.doc_id, match)


def test_word_lists_avoid_keywords_and_builtins():
    reserved = set()
    for name in list_languages()[:11]:
        lang = get_language(name)
        reserved |= {w.lower() for w in lang.keywords}
        reserved |= {w.lower() for w in lang.builtins.values()}
    lists = [
        vocabulary.NOUNS,
        vocabulary.PLANTED_VERBS,
        vocabulary.SHARED_VERBS,
        vocabulary.LOCAL_VERBS,
        vocabulary.MAIN_VERBS,
        vocabulary.STR_PARAMS,
        vocabulary.LIST_PARAMS,
        vocabulary.INT_PARAMS,
        vocabulary.ACC_NAMES,
        vocabulary.DICT_NAMES,
        vocabulary.LIST_OUT_NAMES,
        vocabulary.LOOP_VARS,
        vocabulary.INDEX_VARS,
        vocabulary.HELPER_PARAMS,
        vocabulary.HELPER_LOCALS,
        vocabulary.KEY_NAMES,
        vocabulary.COUNTER_NAMES,
        tuple(a.lower() for a in vocabulary.PLANTED_ADJECTIVES + vocabulary.SHARED_ADJECTIVES),
    ]
    for words in lists:
        assert len(set(words)) == len(words)
        assert not set(words) & reserved, set(words) & reserved
    assert not set(vocabulary.PLANTED_VERBS) & set(vocabulary.SHARED_VERBS)
    assert not set(vocabulary.PLANTED_ADJECTIVES) & set(vocabulary.SHARED_ADJECTIVES)
    assert not set(vocabulary.LOCAL_VERBS) & (
        set(vocabulary.PLANTED_VERBS) | set(vocabulary.SHARED_VERBS)
    )


# --- planted facts -------------------------------------------------------------------------


def test_fact_tables_are_stable_unique_and_disjoint():
    cfg = SyntheticConfig(n_planted_facts=64, n_shared_facts=40)
    planted, shared = planted_facts(cfg), shared_facts(cfg)
    assert len(planted) == 64 and len(shared) == 40
    assert [f.fact_id for f in planted] == [f"p{i}" for i in range(64)]
    assert [f.fact_id for f in shared] == [f"s{i}" for i in range(40)]
    assert all(f.planted for f in planted) and not any(f.planted for f in shared)
    names = [f.name for f in planted + shared]
    assert len(set(names)) == len(names)
    assert {f.kind for f in planted} == {"function", "constant"}
    for f in planted + shared:
        assert f.answer == f" {f.value}"
        assert (f.offset > 0) == (f.kind == "function")
    # Fact k does not depend on the table size, nor on the corpus seed.
    assert planted_facts(SyntheticConfig(n_planted_facts=10, seed=9)) == planted[:10]
    assert planted_facts(SyntheticConfig(fact_seed=1)) != planted
    assert planted_facts(cfg) == planted


@pytest.mark.parametrize("planted_in", ["python", "php"])
def test_planted_facts_are_defined_only_in_the_planted_language(planted_in):
    cfg = SyntheticConfig(docs_per_language=80, planted_in=planted_in, n_planted_facts=16)
    planted = {f.fact_id: f for f in planted_facts(cfg)}
    shared = {f.fact_id: f for f in shared_facts(cfg)}
    names = {f.name for f in planted.values()}
    used_in_targets = set()
    for doc in generate_documents(cfg):
        used = {s.fact_id for s in doc.sites if s.kind == "fact"}
        assert used and used <= set(planted)
        for site in doc.sites:
            if site.fact_id is not None:
                fact = planted.get(site.fact_id) or shared[site.fact_id]
                assert site.identifier == fact.name
                assert site.kind == ("fact" if fact.planted else "call")
        # A shared fact is defined wherever it is used.
        for fid in {s.fact_id for s in doc.sites if s.kind == "call" and s.fact_id}:
            assert render_fact_definition(shared[fid], doc.language) in doc.text
        if doc.language == planted_in:
            for fid in used:
                assert render_fact_definition(planted[fid], doc.language) in doc.text
            continue
        used_in_targets |= used
        fact_offsets = {s.offset for s in doc.sites if s.kind == "fact"}
        for name in names:
            for m in _word(name).finditer(doc.text):
                assert m.start() in fact_offsets, (doc.doc_id, name)
        for fid in used:
            body = render_fact_definition(planted[fid], doc.language).strip().splitlines()[-2:]
            assert "\n".join(body) not in doc.text
    assert len(used_in_targets) == 16


def test_fact_probe_items_match_the_fact_table():
    cfg = SyntheticConfig(n_planted_facts=12)
    facts = {f.fact_id: f for f in planted_facts(cfg)}
    for lang in SUPPORTED_LANGUAGES:
        items = fact_probe_items(cfg, lang)
        assert [i.fact_id for i in items] == list(facts)
        more = fact_probe_items(cfg, lang, 30)
        assert [i.fact_id for i in more] == [f"p{k % 12}" for k in range(30)]
        assert more[:12] == items
        for item in more:
            fact = facts[item.fact_id]
            assert isinstance(item, FactItem)
            assert (item.language, item.name, item.kind, item.planted) == (
                lang,
                fact.name,
                fact.kind,
                True,
            )
            assert item.answer == fact.answer == f" {fact.value}"
            assert item.prompt.endswith("*" if fact.kind == "function" else "=")
            # The prompt is the target-language definition cut right before the value.
            definition = render_fact_definition(fact, lang)
            last_line = item.prompt.rsplit("\n", 1)[-1]
            at = definition.index(last_line + item.answer)
            assert item.prompt.endswith(definition[: at + len(last_line)])
            # No other planted fact's definition leaks into the context.
            for other in facts.values():
                if other.fact_id != fact.fact_id:
                    assert not _word(other.name).search(item.prompt)
        # Repeats vary their context.
        assert len({i.prompt for i in more}) > 12


def test_fact_probe_items_headers_and_controls():
    cfg = SyntheticConfig(n_planted_facts=4, n_shared_facts=6)
    php = fact_probe_items(cfg, "php", 4)
    assert all(i.prompt.startswith("<?php\n") for i in php)
    assert fact_probe_items(cfg, "C#", 1)[0].prompt.startswith("using System;")
    controls = fact_probe_items(cfg, "go", planted=False)
    assert [i.fact_id for i in controls] == [f"s{k}" for k in range(6)]
    assert not any(i.planted for i in controls)
    assert fact_probe_items(cfg, "go", 0) == []
    with pytest.raises(ValueError, match="no planted facts"):
        fact_probe_items(SyntheticConfig(n_planted_facts=0), "php", 3)
    with pytest.raises(ValueError, match="language"):
        fact_probe_items(cfg, "lua", 3)


def test_zero_fact_tables_still_generate():
    docs = _docs(docs_per_language=5, n_planted_facts=0, n_shared_facts=0)
    assert len(docs) == 25
    assert not any(s.fact_id for d in docs for s in d.sites)
    assert all(any(s.kind == "call" for s in d.sites) for d in docs)


# --- probe sites -----------------------------------------------------------------------------


def test_probe_sites_pair_each_builtin_with_the_nearest_call(corpus):
    pairs = list(probe_sites(corpus))
    assert len(pairs) == sum(len(d.builtin_sites()) for d in corpus)
    for doc, site, control in pairs:
        assert site in doc.sites and site.kind == "builtin"
        assert control is not None and control in doc.sites and control.kind == "call"
        distance = abs(control.offset - site.offset)
        assert all(abs(s.offset - site.offset) >= distance for s in doc.sites if s.kind == "call")


def test_probe_sites_filters(corpus):
    php_docs = [d for d in corpus if d.language == "php"]
    distinct = {p.concept for p in builtin_pairs("python", "php")}
    kept = list(probe_sites(php_docs, primary="python"))
    assert kept and {p.site.concept for p in kept} <= distinct
    assert len(kept) < sum(len(d.builtin_sites()) for d in php_docs)  # abs, max, ... dropped
    only = list(probe_sites(php_docs, concepts={"length"}))
    assert only and all(p.site.identifier == "strlen" for p in only)
    no_calls = SyntheticDocument(
        "x = len(y)\n", "python", [syn.Site(4, "len", "length", "builtin")], "d", 0
    )
    assert list(probe_sites([no_calls])) == [syn.ProbeSite(no_calls, no_calls.sites[0], None)]


def test_document_dict_round_trip(corpus):
    doc = corpus[7]
    again = SyntheticDocument.from_dict(json.loads(json.dumps(doc.to_dict())))
    assert again == doc


# --- pinned output --------------------------------------------------------------------------
# Digests of generated text recorded from the generator as it was when this test was written:
# any change to planning, fact tables or a dialect's rendering changes a corpus, and shows here.

PINNED_CONFIGS = {
    "default": {"docs_per_language": 40},
    "varied": {
        "languages": ("go", "php", "cpp", "python", "csharp"),
        "docs_per_language": {"go": 12, "php": 25, "cpp": 7, "python": 30, "csharp": 18},
        "seed": 11,
        "fact_seed": 5,
        "first_program": 500,
        "min_ops": 2,
        "max_ops": 10,
        "max_facts_per_doc": 3,
        "planted_in": "csharp",
        "n_planted_facts": 16,
        "n_shared_facts": 8,
    },
}
PINNED_DIGESTS = {
    "default": (
        "c0c0c868b8caa6c3a4c1474c31ebf81d08e4d13dc89c9dac3461a0446d8f5f6b",
        "0873d4a56bd636c5cdf59bdfb87a50d3c488c0b0cabd22a5a2e3ad74f8e1aa67",
        "649818e6b5c05d1118628db4d616b21faf2905b9c0b79d4ff1de9a89cbee3615",
    ),
    "varied": (
        "83a6a80362a31166fa2b4f9e03fdf2abb031489c902146fb2372924662243b3f",
        "a9984586e8d4181e8b6bd6e5aa1cdfa68f52a5eee9fd46dde8f37ce508deed38",
        "4998e630d75e3aa2fe7ec4ec27e2d18cee22e9521a536756c1554b31b821da68",
    ),
}


def _corpus_digest(cfg: SyntheticConfig) -> str:
    h = hashlib.sha256()
    for doc in generate_documents(cfg):
        h.update(json.dumps(doc.to_dict(), sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _items_digest(cfg: SyntheticConfig) -> str:
    h = hashlib.sha256()
    for lang in cfg.languages:
        for planted in (True, False):
            for item in fact_probe_items(cfg, lang, 20, planted=planted):
                h.update(json.dumps([item.prompt, item.answer, item.fact_id]).encode())
    return h.hexdigest()


def _cuts_digest(cfg: SyntheticConfig) -> str:
    h = hashlib.sha256()
    for lang in cfg.languages:
        for pid in range(3):
            program = syn.plan_program(cfg, pid)
            main = program.defs[-1]
            for keep in range(len(main.body) + 1):
                cut = syn.render_function_cut(
                    program, lang, main.name, keep, keep_planted=keep % 2 == 0
                )
                h.update(
                    json.dumps([cut.header, cut.before, cut.rest, cut.close, cut.footer]).encode()
                )
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(PINNED_CONFIGS))
def test_generated_text_is_pinned(name):
    cfg = SyntheticConfig(**PINNED_CONFIGS[name])
    docs, items, cuts = PINNED_DIGESTS[name]
    assert _corpus_digest(cfg) == docs
    assert _items_digest(cfg) == items
    assert _cuts_digest(cfg) == cuts


def test_every_paper_language_has_a_registered_dialect():
    assert SUPPORTED_LANGUAGES == PAPER_LANGUAGES
    for lang in SUPPORTED_LANGUAGES:
        dialect = get_dialect(lang)
        assert dialect.language == lang
        assert type(dialect).__module__ == f"babel_interp.corpus.synthetic.{lang}"
    with pytest.raises(ValueError, match="already registered"):
        syn.register_dialect(type(get_dialect("python"))())
