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

Layout. :mod:`.ir` is the program IR, :mod:`.planner` draws programs, :mod:`.facts` the fact
tables, :mod:`.dialect` renders the IR and keeps the registry of dialects, :mod:`.generator`
holds the operations above. Each language is one module (``python.py``, ``php.py``,
``csharp.py``, ``go.py``, ``cpp.py``) holding a :class:`~.dialect.Dialect` subclass that
registers itself on import; every module of this package is imported here, so a new language
is one new module (its built-in identifiers must be those of :mod:`babel_interp.languages`).
"""

from __future__ import annotations

import importlib
import pkgutil

from babel_interp.corpus.synthetic.config import SyntheticConfig
from babel_interp.corpus.synthetic.dialect import (
    Dialect,
    register_dialect,
    supported_languages,
    synthetic_concepts,
)
from babel_interp.corpus.synthetic.facts import GENERATOR_VERSION, planted_facts, shared_facts
from babel_interp.corpus.synthetic.generator import (
    FunctionCut,
    fact_probe_items,
    generate_documents,
    plan_program,
    probe_sites,
    render_document,
    render_fact_definition,
    render_function_cut,
)
from babel_interp.corpus.synthetic.ir import (
    Answer,
    Aug,
    B,
    Bin,
    C,
    Chr,
    Const,
    Decl,
    Effect,
    Empty,
    ForEach,
    ForRange,
    Function,
    Idx,
    If,
    K,
    L,
    Program,
    Put,
    Return,
    V,
    While,
)
from babel_interp.corpus.synthetic.records import (
    SITE_KINDS,
    FactItem,
    PlantedFact,
    ProbeSite,
    Site,
    SyntheticDocument,
)
from babel_interp.corpus.synthetic.vocabulary import MAX_FACTS

# A dialect module registers its language when imported; importing every module of the package
# registers them all without a list to keep in step.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
del _module

#: Languages the generator renders, in the language registry's order.
SUPPORTED_LANGUAGES: tuple[str, ...] = supported_languages()

#: Built-in concepts the generator emits (in registry order); a language lacking an identifier
#: for one (Python and Go for ``has_key``) realizes it with syntax and records no site.
SYNTHETIC_CONCEPTS: tuple[str, ...] = synthetic_concepts()

__all__ = [
    "GENERATOR_VERSION",
    "MAX_FACTS",
    "SITE_KINDS",
    "SUPPORTED_LANGUAGES",
    "SYNTHETIC_CONCEPTS",
    "Answer",
    "Aug",
    "B",
    "Bin",
    "C",
    "Chr",
    "Const",
    "Decl",
    "Dialect",
    "Effect",
    "Empty",
    "FactItem",
    "ForEach",
    "ForRange",
    "Function",
    "FunctionCut",
    "Idx",
    "If",
    "K",
    "L",
    "PlantedFact",
    "ProbeSite",
    "Program",
    "Put",
    "Return",
    "Site",
    "SyntheticConfig",
    "SyntheticDocument",
    "V",
    "While",
    "fact_probe_items",
    "generate_documents",
    "plan_program",
    "planted_facts",
    "probe_sites",
    "register_dialect",
    "render_document",
    "render_fact_definition",
    "render_function_cut",
    "shared_facts",
]
