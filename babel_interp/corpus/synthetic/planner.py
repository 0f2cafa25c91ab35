"""Planning: one abstract program per ``(seed, program_id)``, in the IR of :mod:`.ir`.

A program is a few local helpers, the facts it uses (shared and planted) and a main function
whose statements use string, list, map and math built-ins, a loop, a condition and calls of the
helpers and facts, in a random order over the main function's parameters.
"""

from __future__ import annotations

import random
from typing import Any

from babel_interp.corpus.synthetic.config import SyntheticConfig
from babel_interp.corpus.synthetic.facts import (
    GENERATOR_VERSION,
    fact_definition,
    planted_facts,
    shared_facts,
)
from babel_interp.corpus.synthetic.ir import (
    DICT,
    FLOAT,
    INT,
    LIST,
    STR,
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
from babel_interp.corpus.synthetic.records import PlantedFact
from babel_interp.corpus.synthetic.vocabulary import (
    ACC_NAMES,
    CLASS_SUFFIXES,
    COUNTER_NAMES,
    DICT_NAMES,
    HELPER_LOCALS,
    HELPER_PARAMS,
    INDEX_VARS,
    INT_PARAMS,
    KEY_NAMES,
    LETTERS,
    LIST_OUT_NAMES,
    LIST_PARAMS,
    LOCAL_VERBS,
    LOOP_VARS,
    MAIN_VERBS,
    NOUNS,
    STR_PARAMS,
)


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


def _local_helper(rng: random.Random, name: str) -> Function:
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
    return Function(name, ((p, INT),), INT, body)


class FactTables:
    """A config's two fact tables and every name they use, built once per stream."""

    __slots__ = ("planted", "shared", "names")

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.planted = planted_facts(cfg)
        self.shared = shared_facts(cfg)
        # No local name may spell a fact's name, or a target document would show a planted
        # name at a place that is not a fact site.
        self.names = frozenset(f.name for f in self.planted + self.shared)


def plan(cfg: SyntheticConfig, tables: FactTables, program_id: int) -> Program:
    """Program ``program_id`` (absolute) of ``cfg``'s stream, drawn from ``(seed, program_id)``
    alone: the same plan whichever language renders it."""
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

    fact_defs = [fact_definition(f) for f in shared + planted]
    rng.shuffle(fact_defs)
    consts = [d for d in fact_defs if type(d) is Const]
    funcs = [d for d in fact_defs if type(d) is Function]
    main = Function(main_name, params, INT, tuple(p.body), public=True)
    return Program(program_id, class_name, tuple(consts + funcs + helpers + [main]))
