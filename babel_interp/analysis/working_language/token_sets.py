"""Tokenizer-aware token sets for working-language probes.

Under the logit lens, "the model thinks ``strlen``" is measured as the probability mass on every
token that could *begin* ``strlen``: a multi-token identifier is emitted one piece at a time, and
whether the first piece is ``s``, ``str`` or `` strlen`` depends on the tokenizer and the context
(Wendler et al. 2024). So the set for an identifier is prefix-closed: every vocabulary token whose
text, with one leading space (or the tokenizer's space marker, ``Ġ`` / ``▁``) removed, is a
non-empty prefix of the identifier. A token whose text runs past the identifier (``len(`` in a
tokenizer that merges punctuation, ``lenient`` for ``len``) is not counted: it begins a different
string.

Tokens in both sets of a pair (``p``/``pr``/``print`` for ``print`` vs ``printf``) cannot say
which language the model uses; they are removed from both and listed. ``min_chars`` drops the
shortest pieces, which a pilot found to carry a spurious base-rate lean (one- and two-character
tokens are frequent everywhere).

By default (``drop_cross_language=True``) a set also loses every token that is a complete
identifier of the *other* language: ``str`` begins PHP's ``strlen`` but is Python's ``str``, so
mass on it partly measures the primary language. The other language's identifiers are its
built-in spellings and keywords in the registry (:mod:`babel_interp.languages`) and the other
side's identifiers of the pairs given. One-character pieces go too (the effective minimum is two
characters): a single letter is a complete identifier in every language (``s``, ``i``, ``x`` are
the commonest variable names), so it is the same defect without a registry entry. Two-character
pieces are kept unless listed as identifiers (``in``, ``as``, ``do``, ``fn``); ``min_chars`` still
drops more. Every removal is listed with its reason (:meth:`TokenSetReport.dropped_tokens_frame`);
a pair whose set becomes empty is dropped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from babel_interp.config import ConfigBase

SPACE_MARKERS = ("Ġ", "▁")
SIDES = ("primary", "target")
# Why a token left a set, in the order a reason is chosen when several apply.
DROP_REASONS = (
    "shared",  # begins both identifiers of the pair (side "both")
    "single_char",  # one character: a complete identifier in any language
    "other_builtin",  # a built-in spelling of the other language
    "other_keyword",  # a keyword of the other language
    "other_pair_identifier",  # an identifier of the other side of the given pairs
)
# With drop_cross_language, tokens shorter than this leave the sets whatever min_chars says.
CROSS_LANGUAGE_MIN_CHARS = 2
DROPPED_TOKEN_COLUMNS = [
    "concept",
    "primary",
    "target",
    "side",
    "token_id",
    "token",
    "text",
    "reason",
    "detail",
]


@dataclass(frozen=True)
class TokenText:
    """One vocabulary token: its decoded surface and its text without the leading space."""

    token_id: int
    surface: str
    text: str
    leading_space: bool


class TokenVocabulary:
    """The decoded vocabulary of a tokenizer, indexed by text for prefix look-ups.

    Built once per tokenizer and reused for every pair and checkpoint (decoding a 50k vocabulary
    takes about a second). Special tokens (EOS, padding) belong to no identifier.
    """

    def __init__(self, tokenizer: Any, vocab_size: int | None = None) -> None:
        if tokenizer is None:
            raise ValueError("a tokenizer is required to build token sets")
        n = len(tokenizer) if vocab_size is None else min(int(vocab_size), len(tokenizer))
        if n <= 0:
            raise ValueError(f"tokenizer has an empty vocabulary (size {n})")
        self.size = n
        ids = list(range(n))
        surfaces = tokenizer.batch_decode(
            [[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        raws = tokenizer.convert_ids_to_tokens(ids)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.entries: list[TokenText] = []
        self._by_text: dict[str, list[int]] = {}
        for i, surface, raw in zip(ids, surfaces, raws, strict=True):
            raw = raw or ""
            if surface.startswith(" "):
                text, space = surface[1:], True
            elif raw[:1] in SPACE_MARKERS:
                # SentencePiece decoders drop the marker of a lone token: the surface is the text.
                text, space = surface.lstrip(" "), True
            else:
                text, space = surface, False
            entry = TokenText(i, surface, text, space)
            self.entries.append(entry)
            if i in special or not text:
                continue
            self._by_text.setdefault(text, []).append(i)

    def text(self, token_id: int) -> str:
        """The decoded surface of ``token_id`` (``""`` outside the tokenizer's vocabulary)."""
        if 0 <= token_id < self.size:
            return self.entries[token_id].surface
        return ""

    def prefix_tokens(self, identifier: str, min_chars: int = 1) -> list[int]:
        """Ids of every token whose text is a prefix of ``identifier`` of ``min_chars`` or more."""
        if not identifier:
            raise ValueError("identifier must be a non-empty string")
        out: list[int] = []
        for k in range(max(1, min_chars), len(identifier) + 1):
            out.extend(self._by_text.get(identifier[:k], ()))
        return sorted(out)


@dataclass(frozen=True)
class PairTokenSets:
    """The token sets of one (primary, target) identifier pair after shared tokens are removed."""

    concept: str
    primary: str
    target: str
    primary_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    shared_ids: tuple[int, ...]
    # Character length of each kept token's text: the short-token mass share is read from it.
    token_chars: dict[int, int] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.primary, self.target)

    def short_ids(self, side: str, max_chars: int) -> tuple[int, ...]:
        """The ``side`` ("primary" | "target") tokens whose text has at most ``max_chars``."""
        if side not in ("primary", "target"):
            raise ValueError(f"side must be 'primary' or 'target', got {side!r}")
        ids = self.primary_ids if side == "primary" else self.target_ids
        return tuple(i for i in ids if self.token_chars.get(i, 0) <= max_chars)


@dataclass(frozen=True)
class DroppedPair(ConfigBase):
    """A pair that cannot be probed with this tokenizer, and why (``to_dict`` / ``from_dict``
    round-trip it through JSON)."""

    concept: str
    primary: str
    target: str
    reason: str
    shared_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class DroppedToken:
    """One token removed from a pair's set: ``side`` "primary", "target" or "both" (shared),
    ``reason`` one of :data:`DROP_REASONS`, ``detail`` what it matched (``python built-in str``)."""

    concept: str
    primary: str
    target: str
    side: str
    token_id: int
    text: str
    reason: str
    detail: str = ""


@dataclass
class TokenSetReport:
    """Token sets of every kept pair, the dropped pairs, and every token that was removed."""

    pairs: dict[tuple[str, str], PairTokenSets]
    dropped: list[DroppedPair]
    min_chars: int
    vocabulary: TokenVocabulary | None = field(default=None, repr=False, compare=False)
    dropped_tokens: list[DroppedToken] = field(default_factory=list)
    drop_cross_language: bool = False

    def get(self, primary: str, target: str) -> PairTokenSets | None:
        """The sets of pair (``primary``, ``target``), or None when it was dropped or unknown."""
        return self.pairs.get((primary, target))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (pair, side, token), sides "primary", "target" and "shared" (removed),
        plus one row per dropped pair (side "dropped", with the reason)."""
        rows: list[dict[str, Any]] = []
        text = self.vocabulary.text if self.vocabulary is not None else (lambda i: "")
        for s in self.pairs.values():
            for side, ids in (
                ("primary", s.primary_ids),
                ("target", s.target_ids),
                ("shared", s.shared_ids),
            ):
                for i in ids:
                    rows.append(
                        dict(
                            concept=s.concept,
                            primary=s.primary,
                            target=s.target,
                            side=side,
                            token_id=i,
                            token=text(i),
                            reason="",
                        )
                    )
        for d in self.dropped:
            rows.append(
                dict(
                    concept=d.concept,
                    primary=d.primary,
                    target=d.target,
                    side="dropped",
                    token_id=-1,
                    token="",
                    reason=d.reason,
                )
            )
        cols = ["concept", "primary", "target", "side", "token_id", "token", "reason"]
        return pd.DataFrame(rows, columns=cols)

    def dropped_tokens_frame(self) -> pd.DataFrame:
        """One row per removed (pair, side, token): its decoded ``token``, its ``text`` without
        the leading space, the ``reason`` (:data:`DROP_REASONS`) and a ``detail``; the tokens of
        dropped pairs included."""
        text = self.vocabulary.text if self.vocabulary is not None else (lambda i: "")
        rows = [
            dict(
                concept=d.concept,
                primary=d.primary,
                target=d.target,
                side=d.side,
                token_id=d.token_id,
                token=text(d.token_id),
                text=d.text,
                reason=d.reason,
                detail=d.detail,
            )
            for d in self.dropped_tokens
        ]
        return pd.DataFrame(rows, columns=DROPPED_TOKEN_COLUMNS)


def dropped_token_counts(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts of a :meth:`TokenSetReport.dropped_tokens_frame` table: in all, per reason and per
    side (the numbers a result's summary carries)."""
    if frame is None or frame.empty or "reason" not in frame:
        return dict(total=0, by_reason={}, by_side={})
    return dict(
        total=int(len(frame)),
        by_reason={str(k): int(v) for k, v in frame["reason"].value_counts().sort_index().items()},
        by_side={str(k): int(v) for k, v in frame["side"].value_counts().sort_index().items()},
    )


def other_language_identifiers(
    pairs: Sequence[tuple[str, str, str]],
    primary_language: Any = None,
    target_language: Any = None,
) -> dict[str, dict[str, tuple[str, str]]]:
    """Per side, the complete identifiers of the *other* language that its set must not hold:
    ``{"primary": {text: (reason, detail)}, "target": {...}}``.

    The primary set avoids the target language's identifiers and vice versa: the registry's
    built-in spellings and keywords of that language (when it is given and registered) and the
    other side's identifiers of ``pairs`` (which cover pairs of an unregistered language).
    """
    from babel_interp.languages import UnknownLanguageError, get_language

    out: dict[str, dict[str, tuple[str, str]]] = {}
    for side, other_lang, other_index in (
        ("primary", target_language, 2),
        ("target", primary_language, 1),
    ):
        found: dict[str, tuple[str, str]] = {}
        lang = None
        if other_lang is not None:
            try:
                lang = get_language(other_lang)
            except UnknownLanguageError:
                lang = None
        if lang is not None:
            for concept, ident in sorted(lang.builtins.items()):
                found.setdefault(
                    ident, ("other_builtin", f"{lang.name} built-in {ident} ({concept})")
                )
            for kw in sorted(lang.keywords):
                found.setdefault(kw, ("other_keyword", f"{lang.name} keyword {kw}"))
        other_side = SIDES[1] if side == "primary" else SIDES[0]
        for pair in pairs:
            ident = pair[other_index]
            found.setdefault(
                ident,
                ("other_pair_identifier", f"{other_side} identifier {ident} ({pair[0]})"),
            )
        out[side] = found
    return out


def build_token_sets(
    tokenizer_or_vocab: Any,
    pairs: Iterable[tuple[str, str, str]],
    min_chars: int = 1,
    vocab_size: int | None = None,
    *,
    drop_cross_language: bool = True,
    primary_language: Any = None,
    target_language: Any = None,
) -> TokenSetReport:
    """Prefix-closed token sets for each ``(concept, primary_identifier, target_identifier)``.

    Tokens that begin both identifiers are removed from both sets and listed as shared. With
    ``drop_cross_language`` (the default), one-character tokens and tokens that are complete
    identifiers of the other language (:func:`other_language_identifiers`; give the languages,
    e.g. ``"python"`` and ``"php"``, to use the registry's built-ins and keywords) are removed
    too; every removal is listed in ``dropped_tokens``. A pair whose primary or target set is
    then empty (or was empty to begin with) is dropped with the reason. ``vocab_size`` limits ids
    to the model's vocabulary when it is smaller than the tokenizer's.
    """
    if not isinstance(min_chars, int) or min_chars < 1:
        raise ValueError(f"min_chars must be an int >= 1, got {min_chars!r}")
    pairs = list(pairs)
    others = (
        other_language_identifiers(pairs, primary_language, target_language)
        if drop_cross_language
        else {}
    )
    vocab = (
        tokenizer_or_vocab
        if isinstance(tokenizer_or_vocab, TokenVocabulary)
        else TokenVocabulary(tokenizer_or_vocab, vocab_size=vocab_size)
    )
    kept: dict[tuple[str, str], PairTokenSets] = {}
    dropped: list[DroppedPair] = []
    removed: list[DroppedToken] = []
    seen: set[tuple[str, str]] = set()
    for concept, primary, target in pairs:
        if (primary, target) in seen:
            continue
        seen.add((primary, target))
        if primary == target:
            dropped.append(
                DroppedPair(concept, primary, target, "primary and target identifiers are equal")
            )
            continue
        p_all = set(vocab.prefix_tokens(primary, min_chars))
        t_all = set(vocab.prefix_tokens(target, min_chars))
        shared = tuple(sorted(p_all & t_all))
        removed.extend(
            DroppedToken(
                concept,
                primary,
                target,
                "both",
                i,
                vocab.entries[i].text,
                "shared",
                f"begins both {primary} and {target}",
            )
            for i in shared
        )
        kept_ids: dict[str, tuple[int, ...]] = {}
        n_cross: dict[str, int] = {}
        for side, own, other in (("primary", p_all, t_all), ("target", t_all, p_all)):
            ids = []
            for i in sorted(own - other):
                why = _cross_reason(vocab.entries[i].text, others.get(side))
                if why is None:
                    ids.append(i)
                else:
                    removed.append(
                        DroppedToken(concept, primary, target, side, i, vocab.entries[i].text, *why)
                    )
            kept_ids[side] = tuple(ids)
            n_cross[side] = len(own - other) - len(ids)
        p_ids, t_ids = kept_ids["primary"], kept_ids["target"]
        reason = _empty_reason(
            primary, target, p_all, t_all, p_ids, t_ids, shared, min_chars, n_cross
        )
        if reason:
            dropped.append(DroppedPair(concept, primary, target, reason, shared))
            continue
        chars = {i: len(vocab.entries[i].text) for i in p_ids + t_ids}
        kept[(primary, target)] = PairTokenSets(
            concept, primary, target, p_ids, t_ids, shared, chars
        )
    return TokenSetReport(kept, dropped, min_chars, vocab, removed, drop_cross_language)


def _cross_reason(
    text: str, other_identifiers: dict[str, tuple[str, str]] | None
) -> tuple[str, str] | None:
    """Why a token of text ``text`` leaves a set under ``drop_cross_language`` (None: it stays;
    ``other_identifiers`` None: the rule is off)."""
    if other_identifiers is None:
        return None
    if len(text) < CROSS_LANGUAGE_MIN_CHARS:
        return ("single_char", f"shorter than {CROSS_LANGUAGE_MIN_CHARS} characters")
    return other_identifiers.get(text)


def _empty_reason(
    primary: str,
    target: str,
    p_all: set[int],
    t_all: set[int],
    p_ids: Sequence[int],
    t_ids: Sequence[int],
    shared: Sequence[int],
    min_chars: int,
    n_cross: dict[str, int],
) -> str:
    for side, ident, full, kept in (
        ("primary", primary, p_all, p_ids),
        ("target", target, t_all, t_ids),
    ):
        if not full:
            return (
                f"no vocabulary token begins {side} identifier {ident!r} "
                f"with at least {min_chars} character(s)"
            )
        if not kept:
            parts = [f"{len(shared)} token(s) shared with the other identifier"] if shared else []
            if n_cross.get(side):
                parts.append(
                    f"{n_cross[side]} single-character or other-language identifier token(s) "
                    "(see the dropped tokens)"
                )
            return f"{side} set of {ident!r} is empty after removing " + " and ".join(parts)
    return ""
