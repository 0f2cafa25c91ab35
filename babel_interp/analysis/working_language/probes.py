"""Working-language probes: completion prompts where a target-language built-in is due next.

A :class:`Probe` is a prefix of a target-language document that ends right before a built-in
identifier with a primary-language counterpart (PHP ``strlen`` / Python ``len``). It may carry two
controls from the same document, scored later with the same pair's token sets:

* a *matched* control: the prefix up to a site where some other called identifier is due, so the
  probe's lean can be measured against what the same model does at an ordinary call site;
* a *random* control: the prefix up to a random token-like position that is not a built-in site.

Prompt convention (probes and controls alike): a prompt is the exact text of the document up to
the identifier, trailing whitespace included, and the probe also keeps the text that follows
(the identifier; for a random control a short piece of what follows). Where the model's input
ends is the tokenizer's business: the analyzer tokenizes prompt and continuation together and
cuts at the last token boundary at or before the prompt's end, so the model reads the prompt as
it would appear in running text. With GPT-2-style tokenizers the space before ``strlen`` belongs
to the token `` strlen``, so that space is left out of the input and `` strlen`` is the token due;
a tokenizer that keeps whitespace runs whole keeps the indentation in the input instead.

How the matched control is chosen (``control_match``) matters. A network's output at a position
is a deterministic function of its context, above all of the last token: even a random-init
network leans toward one token set or the other depending on whether the prompt ends in `` =``,
``(`` or a newline, and at the embedding layer its reading depends on nothing but the last token
and the position. Probes and ordinary call sites are not preceded by the same tokens (in the
synthetic PHP, probes follow `` =``, `` (`` or an indented newline, other calls `` =``, `` +=``
or ``,``; 45 of 140 nearest call sites ended in the probe's token). So by default
(``"last_token"``) the control is the nearest call site whose last prompt token is the probe's,
and only where the document has none is it the nearest call site of any kind (``"document"``,
the older rule); :attr:`Probe.control_match` records which rule chose each control. Over 30
random inits of the ``tiny`` model this cut the spread of the embedding layer's excess by a
third (standard deviation over inits 0.115 to 0.079) and raised token-matched controls to 90 of
140; deeper layers read more of the context, which still differs, so a single random model keeps
an excess of its own and the random-init control is taken over several inits
(:class:`babel_interp.analysis.working_language.logit_lens.RandomInitBaseline`). With a tokenizer
the last token
is the tokenizer's own; without one it is the last piece of :data:`PRETOKENIZE_PATTERN`, the
split of this project's tokenizers (equal pieces give equal last tokens there). The analyzer
reports how many controls really end in the probe's token under the model's tokenizer.

Probes come from three places: the synthetic generator's annotated sites
(:func:`build_probes`), real code in a corpus's validation split (:func:`probes_from_corpus`, a
regex over decoded documents, which cannot tell code from comments or strings), or a user's JSONL
file (:func:`load_probes_jsonl`).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from babel_interp.config import ConfigBase, reject_unknown
from babel_interp.corpus import synthetic
from babel_interp.corpus.shards import CorpusReader
from babel_interp.corpus.tokenizer import PRETOKENIZE_PATTERN
from babel_interp.io import write_jsonl_atomic
from babel_interp.languages import builtin_pairs, get_language
from babel_interp.model import prepare_tokenizer

MAX_PROMPT_CHARS = 4000
# Enough text after a random control's position to find the token boundary there.
RANDOM_NEXT_CHARS = 16
# Identifiers followed by "(" that are syntax rather than calls: never a matched control.
_CONTROL_STOPWORDS = frozenset(
    "if elif else for foreach while switch catch match function fn def return sizeof typeof "
    "isset unset empty array list print echo new await yield and or not in is lambda assert "
    "del exec with".split()
)
_IDENT_RE = re.compile(r"(?<![\w$])([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(")
# Starts of token-like pieces (a word, a number, or one punctuation character): the candidate
# positions of a random control.
_PIECE_RE = re.compile(r"[A-Za-z_$][\w]*|\d+|[^\w\s]")
_PRETOKEN_RE = re.compile(PRETOKENIZE_PATTERN)
# How a matched control is chosen: see the module docstring.
CONTROL_MATCH = ("last_token", "document")


@dataclass(frozen=True)
class Probe(ConfigBase):
    """One completion prompt where ``target`` (a ``target_language`` built-in) is due next.

    ``primary`` is the ``primary_language`` identifier for the same ``concept``. The optional
    controls are prefixes of the same document; ``random_next`` is the text that follows the
    random control's prompt (see the module docstring for how prompts meet the tokenizer).
    ``control_match`` says how the matched control was chosen: ``"last_token"`` (its prompt ends
    in the probe's last token), ``"document"`` (the nearest call site, whatever precedes it), or
    None (unknown: a user's probe, or no matched control).
    """

    prompt: str
    target: str
    primary: str
    concept: str = ""
    target_language: str = ""
    primary_language: str = ""
    source: str = "user"
    doc_id: str = ""
    control_prompt: str | None = None
    control_identifier: str | None = None
    control_match: str | None = None
    random_prompt: str | None = None
    random_next: str | None = None

    def validate(self) -> None:
        """Check the fields (errors name ``Probe.<field>``); an empty ``concept`` becomes the
        target identifier."""
        for name in ("prompt", "target", "primary"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Probe.{name} must be a non-empty string, got {value!r}")
        if any(c.isspace() for c in self.target + self.primary):
            raise ValueError(
                f"Probe.target and Probe.primary must be identifiers without whitespace, got "
                f"{self.target!r} / {self.primary!r}"
            )
        for name in ("control_prompt", "random_prompt", "control_identifier", "random_next"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"Probe.{name} must be None or a non-empty string")
        if self.control_match is not None and self.control_match not in CONTROL_MATCH:
            raise ValueError(
                f"Probe.control_match must be None or one of {CONTROL_MATCH}, "
                f"got {self.control_match!r}"
            )
        if self.control_match is not None and self.control_prompt is None:
            raise ValueError("Probe.control_match is set but the probe has no control_prompt")
        if not self.concept:
            object.__setattr__(self, "concept", self.target)

    @property
    def pair(self) -> tuple[str, str]:
        """``(primary identifier, target identifier)``: the key of the pair's token sets."""
        return (self.primary, self.target)

    def sites(self) -> list[tuple[str, str, str]]:
        """``(site, prompt, continuation)`` for the probe and each control it has."""
        out = [("probe", self.prompt, self.target)]
        if self.control_prompt is not None:
            out.append(("matched", self.control_prompt, self.control_identifier or ""))
        if self.random_prompt is not None:
            out.append(("random", self.random_prompt, self.random_next or ""))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Probe:
        """Inverse of ``to_dict``. Probe files are written by hand, so a missing required field
        is a ``ValueError`` that names it (not the ``TypeError`` of the constructor)."""
        reject_unknown(cls, d)
        missing = [k for k in ("prompt", "target", "primary") if k not in d]
        if missing:
            raise ValueError(f"Probe: missing required field(s) {missing}")
        return super().from_dict(d)


def truncate_prompt(text: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Keep the last ``max_chars`` characters, starting at a line boundary when one exists.

    The analyzer keeps only the model's context window of tokens anyway; this bounds the size of
    probe files.
    """
    if len(text) <= max_chars:
        return text
    tail = text[-max_chars:]
    nl = tail.find("\n")
    return tail[nl + 1 :] if 0 <= nl < len(tail) - 1 else tail


def _prefix(text: str, offset: int, max_chars: int) -> str | None:
    prompt = truncate_prompt(text[:offset], max_chars)
    return prompt if prompt.strip() else None


# ------------------------------------------------------------------------------------------------
# JSONL files
# ------------------------------------------------------------------------------------------------


def save_probes_jsonl(probes: Iterable[Probe], path: str | os.PathLike) -> Path:
    """Write probes as JSON lines, atomically (:func:`load_probes_jsonl` reads them back)."""
    return write_jsonl_atomic(path, (p.to_dict() for p in probes))


def load_probes_jsonl(
    path: str | os.PathLike,
    primary_language: str | None = None,
    target_language: str | None = None,
) -> list[Probe]:
    """Read probes from JSON lines: each object has at least ``prompt``, ``target``, ``primary``.

    Missing ``primary_language`` / ``target_language`` fields are filled from the arguments.
    Prompts are used verbatim (see the module docstring). Errors name the file and line: a probe
    file is user input, so unlike :func:`babel_interp.io.read_jsonl` a line that does not parse
    is an error wherever it is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probe file {path} does not exist")
    probes: list[Probe] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(d, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(d).__name__}")
            if primary_language is not None:
                d.setdefault("primary_language", primary_language)
            if target_language is not None:
                d.setdefault("target_language", target_language)
            d.setdefault("source", "jsonl")
            try:
                probes.append(Probe.from_dict(d))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    if not probes:
        raise ValueError(f"probe file {path} holds no probes")
    return probes


def probe_coverage(probes: Sequence[Probe]) -> pd.DataFrame:
    """Probes per (primary, target) identifier pair, with the counts of each control kind.

    Concepts spelled the same way in both languages share a pair (C++ ``size`` stands for both
    Python ``len`` concepts), so they are counted together and listed in ``concept``.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for p in probes:
        r = rows.setdefault(
            p.pair,
            dict(concept=[], primary=p.primary, target=p.target, n=0, matched=0, random=0),
        )
        if p.concept not in r["concept"]:
            r["concept"].append(p.concept)
        r["n"] += 1
        r["matched"] += p.control_prompt is not None
        r["random"] += p.random_prompt is not None
    for r in rows.values():
        r["concept"] = "/".join(r["concept"])
    cols = ["concept", "primary", "target", "n", "matched", "random"]
    return pd.DataFrame(list(rows.values()), columns=cols)


def check_coverage(probes: Sequence[Probe], min_pairs: int = 5, n_per_pair: int = 10) -> list[str]:
    """Shortfalls against the paper's design (``min_pairs`` pairs of ``n_per_pair`` prompts)."""
    cov = probe_coverage(probes)
    issues = []
    short = cov[cov["n"] < n_per_pair]
    for r in short.itertuples():
        issues.append(f"pair {r.primary}/{r.target} has {r.n} probe(s), fewer than {n_per_pair}")
    full = int((cov["n"] >= n_per_pair).sum())
    if full < min_pairs:
        issues.append(
            f"only {full} pair(s) have {n_per_pair} or more probes; the design asks for "
            f"at least {min_pairs}"
        )
    return issues


# ------------------------------------------------------------------------------------------------
# Site selection shared by both builders
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    doc_id: str
    offset: int
    concept: str
    primary: str
    target: str


def _random_offset(
    text: str, exclude: set[int], rng: random.Random, min_offset: int = 1
) -> int | None:
    starts = [m.start() for m in _PIECE_RE.finditer(text) if m.start() >= min_offset]
    starts = [s for s in starts if s not in exclude and text[:s].strip()]
    return rng.choice(starts) if starts else None


def _nearest(offsets: Sequence[int], target: int) -> int | None:
    best = None
    for o in offsets:
        if o == target:
            continue
        if best is None or abs(o - target) < abs(best - target):
            best = o
    return best


LastTokenKey = Callable[[int], Hashable]


def last_token_keys(text: str, tokenizer: Any = None) -> LastTokenKey:
    """A function ``key(offset)``: what identifies the last token of ``text[:offset]`` as it
    would be read from running text (None when no token ends by ``offset``).

    With ``tokenizer`` (a Hugging Face fast tokenizer) ``text`` is tokenized once with offset
    mappings and the key is the id of the last token ending at or before ``offset``, the same
    cut the analyzer makes
    (:func:`babel_interp.analysis.working_language.logit_lens.encode_prompts`): a space that
    belongs to the next word (`` strlen``) is not part of the prompt's last token. Without one,
    or with a tokenizer that gives no offsets, the key is the text of the last piece of
    :data:`PRETOKENIZE_PATTERN` ending by ``offset``, the split this project's tokenizers use.
    """
    ends: list[int]
    keys: list[Hashable]
    enc = None
    if tokenizer is not None:
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ends = [int(e) for _, e in enc["offset_mapping"]]
            keys = [int(i) for i in enc["input_ids"]]
        except (NotImplementedError, ValueError, TypeError, KeyError):
            enc = None
    if enc is None:
        pieces = list(_PRETOKEN_RE.finditer(text))
        ends = [m.end() for m in pieces]
        keys = [m.group() for m in pieces]
    # Offsets mappings are non-decreasing in their ends, so the last token ending by ``offset``
    # is found by bisection.

    def key(offset: int) -> Hashable:
        i = bisect.bisect_right(ends, offset) - 1
        return keys[i] if i >= 0 else None

    return key


def _matched_control(
    call_sites: Sequence[tuple[int, str]],
    offset: int,
    control_match: str,
    key: LastTokenKey | None,
) -> tuple[int, str] | None:
    """``(offset, rule)`` of the matched control for a probe at ``offset``: the nearest call site
    ending in the probe's last token when ``control_match="last_token"`` and one exists, else the
    nearest call site (rule ``"document"``)."""
    offsets = [o for o, _ in call_sites if o != offset]
    if control_match == "last_token" and key is not None:
        want = key(offset)
        near = _nearest([o for o in offsets if key(o) == want], offset)
        if near is not None:
            return near, "last_token"
    near = _nearest(offsets, offset)
    return (near, "document") if near is not None else None


def _check_control_match(control_match: str) -> None:
    if control_match not in CONTROL_MATCH:
        raise ValueError(f"control_match must be one of {CONTROL_MATCH}, got {control_match!r}")


def _choose(
    sites: Sequence[_Site], n_per_pair: int, rng: random.Random
) -> dict[tuple[str, str], list[_Site]]:
    """Up to ``n_per_pair`` sites per pair, spread over as many documents as possible."""
    by_pair: dict[tuple[str, str], list[_Site]] = defaultdict(list)
    for s in sites:
        by_pair[(s.primary, s.target)].append(s)
    chosen: dict[tuple[str, str], list[_Site]] = {}
    for key, items in by_pair.items():
        by_doc: dict[str, list[_Site]] = defaultdict(list)
        for s in items:
            by_doc[s.doc_id].append(s)
        docs = sorted(by_doc)
        rng.shuffle(docs)
        for d in docs:
            rng.shuffle(by_doc[d])
        picked: list[_Site] = []
        # Round-robin over documents: one site from each before a second from any.
        while len(picked) < n_per_pair and any(by_doc[d] for d in docs):
            for d in docs:
                if by_doc[d] and len(picked) < n_per_pair:
                    picked.append(by_doc[d].pop())
        chosen[key] = picked
    return chosen


def _make_probe(
    text: str,
    site: _Site,
    call_sites: Sequence[tuple[int, str]],
    builtin_offsets: set[int],
    primary_language: str,
    target_language: str,
    source: str,
    rng: random.Random,
    max_chars: int,
    control_match: str = "last_token",
    key: LastTokenKey | None = None,
) -> Probe | None:
    prompt = _prefix(text, site.offset, max_chars)
    if prompt is None:
        return None
    control = control_ident = how = None
    chosen = _matched_control(call_sites, site.offset, control_match, key)
    if chosen is not None:
        near, rule = chosen
        control = _prefix(text, near, max_chars)
        if control is not None:
            control_ident, how = dict(call_sites)[near], rule
    random_prompt = random_next = None
    r_off = _random_offset(text, builtin_offsets | {site.offset}, rng)
    if r_off is not None:
        random_prompt = _prefix(text, r_off, max_chars)
        random_next = text[r_off : r_off + RANDOM_NEXT_CHARS] if random_prompt else None
    return Probe(
        prompt=prompt,
        target=site.target,
        primary=site.primary,
        concept=site.concept,
        target_language=target_language,
        primary_language=primary_language,
        source=source,
        doc_id=site.doc_id,
        control_prompt=control,
        control_identifier=control_ident,
        control_match=how,
        random_prompt=random_prompt,
        random_next=random_next,
    )


class _KeyCache:
    """One :func:`last_token_keys` per document (several probes share a document)."""

    def __init__(self, tokenizer: Any, control_match: str) -> None:
        self.tokenizer = tokenizer
        self.active = control_match == "last_token"
        self.keys: dict[str, LastTokenKey] = {}

    def __call__(self, doc_id: str, text: str) -> LastTokenKey | None:
        if not self.active:
            return None
        if doc_id not in self.keys:
            self.keys[doc_id] = last_token_keys(text, self.tokenizer)
        return self.keys[doc_id]


def _warn_short(chosen: dict[tuple[str, str], list[_Site]], n_per_pair: int, where: str) -> None:
    short = {f"{p}/{t}": len(v) for (p, t), v in chosen.items() if len(v) < n_per_pair}
    if short:
        warnings.warn(
            f"{where}: fewer than {n_per_pair} probe sites for pair(s) {short}",
            stacklevel=3,
        )


# ------------------------------------------------------------------------------------------------
# Synthetic generator
# ------------------------------------------------------------------------------------------------


def build_probes(
    primary: str,
    target: str,
    n_per_pair: int = 10,
    seed: int = 0,
    synthetic_config: Any = None,
    max_documents: int = 5000,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
    tokenizer: Any = None,
    control_match: str = "last_token",
) -> list[Probe]:
    """Probes from the synthetic generator's annotated sites.

    Documents of ``target`` are generated with the world of ``synthetic_config`` (a
    :class:`babel_interp.corpus.synthetic.SyntheticConfig` or its dict, e.g. the one a synthetic
    corpus was built with; default: the default world) but from program ids far past any training
    range, until every built-in pair of (``primary``, ``target``) has plenty of sites of kind
    "builtin" or ``max_documents`` were read. ``n_per_pair`` sites per pair are then drawn,
    spread over documents. The matched control is a site of kind "call" in the same document,
    chosen by ``control_match`` (see the module docstring; pass the model's ``tokenizer`` so
    "last token" means its tokens).
    """
    if n_per_pair < 1:
        raise ValueError(f"n_per_pair must be >= 1, got {n_per_pair}")
    _check_control_match(control_match)
    p_lang, t_lang = get_language(primary), get_language(target)
    pairs = {bp.concept: bp for bp in builtin_pairs(p_lang, t_lang)}
    if not pairs:
        raise ValueError(f"{p_lang.name} and {t_lang.name} share no differently spelled built-ins")
    cfg = _synthetic_config(synthetic, synthetic_config, t_lang.name, seed, max_documents)
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    doc_sites: dict[str, tuple[list[_Site], list[tuple[int, str]], set[int]]] = {}
    counts: dict[str, int] = defaultdict(int)
    last_new = 0
    for i, doc in enumerate(synthetic.generate_documents(cfg)):
        # The generator uses only some concepts: stop once every concept seen has three times
        # the sites needed and no new one has turned up for a while.
        enough = all(n >= 3 * n_per_pair for n in counts.values())
        if i >= max_documents or (counts and enough and i - last_new >= 200):
            break
        if doc.language != t_lang.name:
            continue
        doc_id = str(getattr(doc, "doc_id", i))
        probe_sites, calls, builtin_offsets = [], [], set()
        for s in doc.sites:
            if s.kind == "builtin":
                builtin_offsets.add(s.offset)
                bp = pairs.get(s.concept)
                if bp is not None and s.identifier == bp.target:
                    probe_sites.append(_Site(doc_id, s.offset, s.concept, bp.primary, bp.target))
                    if s.concept not in counts:
                        last_new = i
                    counts[s.concept] += 1
            elif s.kind == "call":
                calls.append((s.offset, s.identifier))
        if probe_sites:
            texts[doc_id] = doc.text
            doc_sites[doc_id] = (probe_sites, calls, builtin_offsets)
    all_sites = [s for sites, _, _ in doc_sites.values() for s in sites]
    chosen = _choose(all_sites, n_per_pair, rng)
    _warn_short(chosen, n_per_pair, "synthetic generator")
    probes = []
    keys = _KeyCache(tokenizer, control_match)
    for key in sorted(chosen):
        for site in chosen[key]:
            _, calls, builtin_offsets = doc_sites[site.doc_id]
            p = _make_probe(
                texts[site.doc_id],
                site,
                calls,
                builtin_offsets,
                p_lang.name,
                t_lang.name,
                "synthetic",
                rng,
                max_prompt_chars,
                control_match,
                keys(site.doc_id, texts[site.doc_id]),
            )
            if p is not None:
                probes.append(p)
    return probes


# Probe documents are programs far beyond any training range, so no probe prompt was trained on.
PROBE_PROGRAM_OFFSET = 50_000_000


def _synthetic_config(module: Any, cfg: Any, language: str, seed: int, n_docs: int) -> Any:
    cls = module.SyntheticConfig
    if cfg is None:
        cfg = cls()
    elif isinstance(cfg, dict):
        cfg = cls.from_dict(cfg)
    elif not isinstance(cfg, cls):
        raise ValueError(
            f"synthetic_config must be a SyntheticConfig or a dict, got {type(cfg).__name__}"
        )
    d = cfg.to_dict()
    # One language only: a language's documents do not depend on the others requested.
    d.update(
        languages=[language],
        docs_per_language=n_docs,
        first_program=PROBE_PROGRAM_OFFSET + 1_000_000 * seed,
    )
    return cls.from_dict(d)


# ------------------------------------------------------------------------------------------------
# Real code from a corpus split
# ------------------------------------------------------------------------------------------------


def find_builtin_sites(
    text: str, identifiers: Iterable[str], call_only: bool = True
) -> list[tuple[int, str]]:
    """``(offset, identifier)`` of each whole-word occurrence of ``identifiers`` in ``text``.

    With ``call_only`` an occurrence must be followed by ``(`` (after optional spaces); a receiver
    or namespace before it is allowed (``$s->strlen(`` would count, ``$strlen(`` would not), since
    the identifier is the token due at that point either way.
    """
    idents = sorted(set(identifiers), key=len, reverse=True)
    if not idents:
        return []
    alt = "|".join(re.escape(i) for i in idents)
    tail = r"(?=[ \t]*\()" if call_only else r"(?![\w?!])"
    pattern = re.compile(rf"(?<![\w$])({alt}){tail}")
    return [(m.start(), m.group(1)) for m in pattern.finditer(text)]


def find_call_sites(text: str, exclude: Iterable[str] = ()) -> list[tuple[int, str]]:
    """``(offset, identifier)`` of each ``name(`` call whose name is not in ``exclude`` and is
    not syntax (``if (``, ``function (``, ...): the candidates for a matched control."""
    skip = set(exclude) | _CONTROL_STOPWORDS
    return [(m.start(1), m.group(1)) for m in _IDENT_RE.finditer(text) if m.group(1) not in skip]


def probes_from_texts(
    documents: Iterable[tuple[str, str]],
    primary: str,
    target: str,
    n_per_pair: int = 10,
    seed: int = 0,
    source: str = "text",
    max_prompt_chars: int = MAX_PROMPT_CHARS,
    tokenizer: Any = None,
    control_match: str = "last_token",
) -> list[Probe]:
    """Probes mined from ``(doc_id, text)`` documents of the ``target`` language.

    A site is a call of a target built-in that has a primary counterpart; an identifier that is
    never called in the documents (C#'s ``Length`` property, PHP's ``echo``) falls back to its
    whole-word occurrences. The matched control is another call in the same document, chosen by
    ``control_match`` (see the module docstring; pass the model's ``tokenizer`` so "last token"
    means its tokens).
    """
    if n_per_pair < 1:
        raise ValueError(f"n_per_pair must be >= 1, got {n_per_pair}")
    _check_control_match(control_match)
    p_lang, t_lang = get_language(primary), get_language(target)
    bps = builtin_pairs(p_lang, t_lang)
    if not bps:
        raise ValueError(f"{p_lang.name} and {t_lang.name} share no differently spelled built-ins")
    by_target: dict[str, list[Any]] = defaultdict(list)
    for bp in bps:
        by_target[bp.target].append(bp)
    all_builtins = set(t_lang.builtins.values())
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    calls_found: dict[str, list[tuple[int, str]]] = {}
    words_found: dict[str, list[tuple[int, str]]] = {}
    for doc_id, text in documents:
        words = find_builtin_sites(text, by_target, call_only=False)
        if not words:
            continue  # only documents that mention a built-in are kept in memory
        texts[doc_id] = text
        words_found[doc_id] = words
        calls_found[doc_id] = find_builtin_sites(text, by_target)
    called = {ident for occ in calls_found.values() for _, ident in occ}
    uncalled = {t for t in by_target if t not in called}
    found = {
        d: sorted(calls_found[d] + [(o, i) for o, i in words_found[d] if i in uncalled])
        for d in texts
    }
    sites: list[_Site] = []
    for doc_id, occ in found.items():
        for offset, ident in occ:
            for bp in by_target[ident]:
                sites.append(_Site(doc_id, offset, bp.concept, bp.primary, bp.target))
    chosen = _choose(sites, n_per_pair, rng)
    _warn_short(chosen, n_per_pair, f"{source} documents")
    probes = []
    keys = _KeyCache(tokenizer, control_match)
    for key in sorted(chosen):
        for site in chosen[key]:
            text = texts[site.doc_id]
            builtin_offsets = {o for o, _ in find_builtin_sites(text, all_builtins, False)}
            calls = find_call_sites(text, exclude=all_builtins)
            p = _make_probe(
                text,
                site,
                calls,
                builtin_offsets,
                p_lang.name,
                t_lang.name,
                source,
                rng,
                max_prompt_chars,
                control_match,
                keys(site.doc_id, text),
            )
            if p is not None:
                probes.append(p)
    return probes


def probes_from_corpus(
    corpus: Any,
    primary: str,
    target: str,
    n_per_pair: int = 10,
    seed: int = 0,
    split: str = "val",
    max_documents: int | None = 20000,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
    control_match: str = "last_token",
) -> list[Probe]:
    """Probes mined from the ``target`` documents of a corpus split (decoded with its tokenizer).

    ``corpus`` is a corpus directory or a :class:`babel_interp.corpus.shards.CorpusReader`.
    Matched controls are chosen with the corpus's tokenizer (see ``control_match`` in the module
    docstring).
    """
    _check_control_match(control_match)
    reader = corpus if isinstance(corpus, CorpusReader) else CorpusReader(corpus)
    t_lang = get_language(target)
    if t_lang.name not in reader.languages:
        raise ValueError(
            f"corpus {reader.dir} has no {t_lang.name!r} documents; it has {reader.languages}"
        )
    tok = prepare_tokenizer(reader.tokenizer_dir)
    shard = reader.split(split)
    eos = reader.eos_id

    def docs() -> Iterable[tuple[str, str]]:
        for i, (start, end) in enumerate(shard.documents(t_lang.name)):
            if max_documents is not None and i >= max_documents:
                break
            ids, _ = shard.window(start, end - start)
            if ids.size and ids[-1] == eos:
                ids = ids[:-1]
            yield f"{split}:{start}", tok.decode(ids.tolist())

    return probes_from_texts(
        docs(),
        primary,
        target,
        n_per_pair,
        seed,
        f"corpus:{split}",
        max_prompt_chars,
        tokenizer=tok,
        control_match=control_match,
    )
