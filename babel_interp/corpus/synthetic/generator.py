"""The generator's public operations: documents, fact probe items, probe sites, function cuts."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace

from babel_interp.corpus.synthetic.config import SyntheticConfig, canonical_language, is_int
from babel_interp.corpus.synthetic.dialect import Writer, get_dialect
from babel_interp.corpus.synthetic.facts import fact_definition, planted_facts, shared_facts
from babel_interp.corpus.synthetic.ir import Const, Function, Program
from babel_interp.corpus.synthetic.planner import FactTables, plan
from babel_interp.corpus.synthetic.records import (
    FactItem,
    PlantedFact,
    ProbeSite,
    SyntheticDocument,
)
from babel_interp.languages import builtin_pairs


def _render(program: Program, language: str, planted_in: str, doc_id: str) -> SyntheticDocument:
    dialect = get_dialect(language)
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


def render_fact_definition(fact: PlantedFact, language: str) -> str:
    """The definition of ``fact`` as it appears in a ``language`` document (no file header)."""
    dialect = get_dialect(canonical_language("language", language))
    return dialect.render_defs([fact_definition(fact)]).text()


def _doc_id(cfg: SyntheticConfig, language: str, program_id: int) -> str:
    return f"synth-s{cfg.seed}-{language}-{program_id:08d}"


def render_document(cfg: SyntheticConfig, language: str, program_id: int) -> SyntheticDocument:
    """Program ``program_id`` (absolute, not offset by ``first_program``) in ``language``."""
    lang = canonical_language("language", language)
    if not is_int(program_id) or program_id < 0:
        raise ValueError(f"program_id must be a non-negative integer, got {program_id!r}")
    program = plan(cfg, FactTables(cfg), program_id)
    return _render(program, lang, cfg.planted_in, _doc_id(cfg, lang, program_id))


def generate_documents(cfg: SyntheticConfig) -> Iterator[SyntheticDocument]:
    """Stream the corpus: program by program, each rendered in every requested language.

    Deterministic in ``cfg``; a language's documents do not depend on which other languages are
    requested. Each program is planned once and rendered per language, then dropped.
    """
    counts = {lang: cfg.count_for(lang) for lang in cfg.languages}
    tables = FactTables(cfg)
    for k in range(max(counts.values())):
        pid = cfg.first_program + k
        program = plan(cfg, tables, pid)
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
    ``n`` defaults to one item per fact. Item ``i`` has the same ``item_id`` (fact and repeat) in
    every language: the renderings of one item are joined by it.
    """
    lang = canonical_language("language", language)
    facts = planted_facts(cfg) if planted else shared_facts(cfg)
    if n is None:
        n = len(facts)
    if not is_int(n) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if n and not facts:
        raise ValueError(
            f"no {'planted' if planted else 'shared'} facts to ask about (the config has 0)"
        )
    controls = shared_facts(cfg)
    dialect = get_dialect(lang)
    items = []
    for i in range(n):
        fact = facts[i % len(facts)]
        variant = i // len(facts)
        rng = random.Random(f"babel-synth/items/{cfg.seed}/{lang}/{fact.fact_id}/{variant}")
        # The context never defines another planted fact: in a target language that would show
        # a value the corpus never did.
        pool = [f for f in controls if f.name != fact.name]
        context = rng.sample(pool, min(len(pool), rng.randint(0, 2))) if variant else []
        defs = [fact_definition(f) for f in context]
        consts = [d for d in defs if type(d) is Const]
        funcs = [d for d in defs if type(d) is Function]
        target = fact_definition(fact, mark=True)
        ordered = consts + [target] + funcs if type(target) is Const else consts + funcs + [target]
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
                variant=variant,
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


def plan_program(cfg: SyntheticConfig, program_id: int) -> Program:
    """The abstract program ``program_id`` (absolute) of ``cfg``'s stream: the IR that
    :func:`render_document` renders. ``defs`` holds the constants and functions in document
    order, the main function last; statements and expressions are this module's node classes."""
    if not is_int(program_id) or program_id < 0:
        raise ValueError(f"program_id must be a non-negative integer, got {program_id!r}")
    return plan(cfg, FactTables(cfg), program_id)


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
    program: Program, language: str, function: str, keep: int, *, keep_planted: bool = True
) -> FunctionCut:
    """Render ``program`` up to and including ``function``, cut after its first ``keep``
    top-level statements. Definitions after ``function`` are left out. ``keep_planted=False``
    leaves out the planted facts' definitions, as a document of a language other than
    ``planted_in`` does."""
    dialect = get_dialect(canonical_language("language", language))
    index = next(
        (i for i, d in enumerate(program.defs) if type(d) is Function and d.name == function),
        None,
    )
    if index is None:
        raise ValueError(f"program {program.program_id} defines no function {function!r}")
    target = program.defs[index]
    if not is_int(keep) or not 0 <= keep <= len(target.body):
        raise ValueError(
            f"keep must be an integer in [0, {len(target.body)}] for {function!r}, got {keep!r}"
        )
    defs = [d for d in program.defs[:index] if keep_planted or d.fact is None or not d.fact.planted]
    full = dialect.render_defs([*defs, target]).text()
    kept = dialect.render_defs([*defs, replace(target, body=target.body[:keep])]).text()
    w = Writer()
    dialect.close_block(w, dialect.depth0)
    close = w.text()
    # Statements render one after another, so the kept statements' text is a prefix of the
    # whole body's text; only the function's closing differs.
    before = kept[: len(kept) - len(close)]
    if not (kept.endswith(close) and full.startswith(before) and full.endswith(close)):
        raise AssertionError(f"{dialect.language}: cutting {function!r} is not a prefix split")
    rest = full[len(before) : len(full) - len(close)]
    return FunctionCut(dialect.header(full, program), before, rest, close, dialect.footer())
