"""The fact tables: planted facts (defined only in the planted language) and shared ones.

Both tables are drawn from ``fact_seed`` alone, one random stream per table, so fact ``k`` is
the same whatever the table sizes and whatever the other table holds.
"""

from __future__ import annotations

import random

from babel_interp.corpus.synthetic.config import SyntheticConfig
from babel_interp.corpus.synthetic.ir import INT, Answer, Bin, Const, Function, L, Return, V
from babel_interp.corpus.synthetic.records import PlantedFact
from babel_interp.corpus.synthetic.vocabulary import (
    NOUNS,
    PLANTED_ADJECTIVES,
    PLANTED_VERBS,
    SHARED_ADJECTIVES,
    SHARED_VERBS,
)

#: Version of the generator's random streams (facts and programs); part of every stream's seed.
GENERATOR_VERSION = 1


def make_facts(fact_seed: int, n: int, planted: bool) -> list[PlantedFact]:
    """Fact table of ``n`` facts (planted or shared) drawn from ``fact_seed``: even ids are
    functions, odd ids constants."""
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
    return make_facts(cfg.fact_seed, cfg.n_planted_facts, planted=True)


def shared_facts(cfg: SyntheticConfig) -> list[PlantedFact]:
    """The control facts, defined in every language that uses them (ids ``s0``, ``s1``, ...)."""
    return make_facts(cfg.fact_seed, cfg.n_shared_facts, planted=False)


def fact_definition(fact: PlantedFact, mark: bool = False) -> Const | Function:
    """The IR definition of ``fact``; ``mark`` makes its value an :class:`Answer`, whose offset
    the writer records (a fact probe cuts the text there)."""
    value = Answer(fact.value) if mark else L(fact.value)
    if fact.kind == "constant":
        return Const(fact.name, value, fact)
    body = (Return(Bin(Bin(V("x"), "*", value), "+", L(fact.offset))),)
    return Function(fact.name, (("x", INT),), INT, body, fact=fact)
