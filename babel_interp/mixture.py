"""Data mixtures: per-language sampling weights, phases over training steps, budgets and caps.

A :class:`Mixture` says how much of each language the trainer draws. ``weights`` lie on the
simplex (they are normalized on construction). ``phases`` change the weights at given steps
(``[(0, {"python": 1}), (1000, {"php": 0.8, "python": 0.2})]``: Python only, then continual
pretraining on PHP with 20% Python replay). ``budgets`` cap the training tokens drawn from a
language and ``epoch_caps`` cap them at a number of passes over that language's training split;
an exhausted language stops being drawn and the remaining weights are renormalized.

Mixtures round-trip through JSON (:meth:`Mixture.to_dict` / :meth:`Mixture.from_dict`) and
through a compact string form, segments separated by ``;``::

    python=0.7,php=0.3                              weights
    0:python=1;1000:php=0.8,python=0.2              phases (step:weights)
    python=0.5,php=0.5;budget:php=2M;epochs:php=2   budgets (k/M/G suffixes) and epoch caps

:func:`load_mixture` accepts either form, a path to a JSON file, or a mapping.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase, check_int, reject_unknown
from babel_interp.io import read_json, write_text_atomic

__all__ = [
    "DataExhausted",
    "Mixture",
    "Phase",
    "load_mixture",
    "parse_token_count",
]

_LANG = re.compile(r"^[A-Za-z0-9_+#.\-]+$")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


class DataExhausted(RuntimeError):
    """Every language with a positive weight has reached its token budget or epoch cap."""


def parse_token_count(text: str) -> int:
    """``"2M"`` -> 2000000, ``"1.5k"`` -> 1500, ``"5e6"`` -> 5000000."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGbB]?)\s*", text)
    if not m:
        raise ValueError(f"cannot read a token count from {text!r} (e.g. 500000, 2M, 1.5k)")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if value != math.floor(value):
        raise ValueError(f"token count {text!r} is not a whole number of tokens")
    return int(value)


def _check_weights(where: str, weights: Mapping[str, Any]) -> dict[str, float]:
    """Validate and normalize one weight mapping; ``where`` names it in errors."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"{where} must be a non-empty mapping language -> weight, got {weights!r}")
    out: dict[str, float] = {}
    for lang, w in weights.items():
        if not isinstance(lang, str) or not _LANG.match(lang):
            raise ValueError(f"{where}: {lang!r} is not a language name")
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise ValueError(f"{where}[{lang!r}] must be a number, got {w!r}")
        w = float(w)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"{where}[{lang!r}] must be finite and >= 0, got {w!r}")
        out[lang] = w
    total = math.fsum(out.values())
    if total <= 0:
        raise ValueError(f"{where} sum to 0: at least one language needs a positive weight")
    return {lang: w / total for lang, w in out.items()}


@dataclass
class Phase(ConfigBase):
    """Weights in effect from training step ``start`` (inclusive) until the next phase."""

    start: int
    weights: dict[str, float]

    def __post_init__(self) -> None:
        check_int("Phase", "start", self.start, 0)
        self.weights = _check_weights(f"Phase(start={self.start}).weights", self.weights)


@dataclass
class Mixture(ConfigBase):
    """Per-language sampling weights, optional phases, token budgets and epoch caps.

    ``weights`` apply before the first phase (when ``phases`` is given without ``weights``, the
    first phase must start at step 0 and its weights become ``weights``). ``budgets[lang]`` is
    the most training tokens drawn from ``lang``; ``epoch_caps[lang]`` the most passes over its
    training split. Both are optional per language.
    """

    weights: dict[str, float] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    budgets: dict[str, int] = field(default_factory=dict)
    epoch_caps: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        phases = []
        for i, p in enumerate(self.phases):
            if isinstance(p, Phase):
                phases.append(p)
            elif isinstance(p, Mapping):
                phases.append(Phase(int(p["start"]), dict(p["weights"])))
            elif isinstance(p, Sequence) and len(p) == 2:
                phases.append(Phase(p[0], dict(p[1])))
            else:
                raise ValueError(
                    f"Mixture.phases[{i}] must be a Phase, (start, weights) or "
                    f"{{'start', 'weights'}}, got {p!r}"
                )
        starts = [p.start for p in phases]
        if starts != sorted(set(starts)):
            raise ValueError(
                f"Mixture.phases must start at strictly increasing steps, got {starts}"
            )
        self.phases = phases
        if not self.weights:
            if not phases or phases[0].start != 0:
                raise ValueError(
                    "Mixture.weights is empty: give weights, or phases whose first starts at 0"
                )
            self.weights = dict(phases[0].weights)
        elif phases and phases[0].start == 0:
            # A phase from step 0 overrides the base weights at every step: keep one truth.
            _check_weights("Mixture.weights", self.weights)
            self.weights = dict(phases[0].weights)
        else:
            self.weights = _check_weights("Mixture.weights", self.weights)
        budgets: dict[str, int] = {}
        for lang, b in dict(self.budgets).items():
            if isinstance(b, str):
                b = parse_token_count(b)
            if isinstance(b, float) and b.is_integer():
                b = int(b)
            if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
                raise ValueError(f"Mixture.budgets[{lang!r}] must be a positive int, got {b!r}")
            budgets[lang] = b
        self.budgets = budgets
        caps: dict[str, float] = {}
        for lang, c in dict(self.epoch_caps).items():
            if isinstance(c, bool) or not isinstance(c, (int, float)):
                raise ValueError(f"Mixture.epoch_caps[{lang!r}] must be a number, got {c!r}")
            if not math.isfinite(c) or c <= 0:
                raise ValueError(f"Mixture.epoch_caps[{lang!r}] must be finite and > 0, got {c!r}")
            caps[lang] = float(c)
        self.epoch_caps = caps
        unknown = sorted((set(budgets) | set(caps)) - set(self.all_languages()))
        if unknown:
            raise ValueError(
                f"Mixture budgets/epoch_caps name language(s) {unknown} that no weight mentions"
            )

    # ----------------------------------------------------------------- queries
    def all_languages(self) -> list[str]:
        """Every language named by ``weights`` or a phase, in first-mention order."""
        out: list[str] = []
        for w in [self.weights] + [p.weights for p in self.phases]:
            out.extend(lang for lang in w if lang not in out)
        return out

    def weights_at(self, step: int) -> dict[str, float]:
        """The scheduled weights at training step ``step`` (before budgets are applied)."""
        current = self.weights
        for p in self.phases:
            if p.start <= step:
                current = p.weights
            else:
                break
        return dict(current)

    def token_limits(self, train_tokens: Mapping[str, int]) -> dict[str, int | None]:
        """Most training tokens each language may contribute: min(budget, cap * split size).

        ``train_tokens[lang]`` is the size of ``lang``'s training split; ``None`` means no limit.
        """
        out: dict[str, int | None] = {}
        for lang in self.all_languages():
            limit: int | None = self.budgets.get(lang)
            cap = self.epoch_caps.get(lang)
            if cap is not None:
                by_cap = int(math.floor(cap * int(train_tokens.get(lang, 0))))
                limit = by_cap if limit is None else min(limit, by_cap)
            out[lang] = limit
        return out

    def available_weights(
        self,
        step: int,
        tokens_seen: Mapping[str, int],
        limits: Mapping[str, int | None],
    ) -> dict[str, float]:
        """Weights at ``step`` with exhausted languages removed and the rest renormalized.

        Raises :class:`DataExhausted` when no language with a positive weight is left.
        """
        scheduled = self.weights_at(step)
        live = {
            lang: w
            for lang, w in scheduled.items()
            if w > 0 and (limits.get(lang) is None or tokens_seen.get(lang, 0) < limits[lang])
        }
        if not live:
            spent = {
                lang: f"{tokens_seen.get(lang, 0)}/{limits.get(lang)}"
                for lang, w in scheduled.items()
                if w > 0
            }
            raise DataExhausted(
                f"every language of the mixture at step {step} is exhausted "
                f"(tokens seen/limit: {spent}); raise budgets or epoch caps to train longer"
            )
        total = math.fsum(live.values())
        return {lang: w / total for lang, w in live.items()}

    # ----------------------------------------------------------- serialization
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mixture:
        """Inverse of :meth:`to_dict`; a bare ``{language: weight}`` mapping is accepted too."""
        # Kept apart from ConfigBase.from_dict: mixture files may be a bare weight mapping, and
        # null or missing sections mean empty ones.
        if not isinstance(d, Mapping):
            raise ValueError(f"a mixture must be a JSON object, got {type(d).__name__}")
        if d and not (set(d) & {f.name for f in fields(cls)}):
            return cls(weights=dict(d))
        reject_unknown(cls, dict(d))
        return cls(
            weights=dict(d.get("weights") or {}),
            phases=list(d.get("phases") or []),
            budgets=dict(d.get("budgets") or {}),
            epoch_caps=dict(d.get("epoch_caps") or {}),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Mixture:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the mixture as JSON."""
        return write_text_atomic(path, self.to_json() + "\n")

    def to_spec(self) -> str:
        """The compact string form; :meth:`parse` reads it back to an equal mixture."""
        segments = []
        if not self.phases or self.phases[0].start != 0:
            segments.append(_format_weights(self.weights))
        segments += [f"{p.start}:{_format_weights(p.weights)}" for p in self.phases]
        if self.budgets:
            segments.append("budget:" + ",".join(f"{k}={v}" for k, v in self.budgets.items()))
        if self.epoch_caps:
            segments.append("epochs:" + ",".join(f"{k}={v!r}" for k, v in self.epoch_caps.items()))
        return ";".join(segments)

    def __str__(self) -> str:
        return self.to_spec()

    @classmethod
    def parse(cls, spec: str) -> Mixture:
        """Read the compact string form (see the module docstring)."""
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError("mixture spec is empty; e.g. 'python=0.7,php=0.3'")
        weights: dict[str, float] = {}
        phases: list[Phase] = []
        budgets: dict[str, int] = {}
        caps: dict[str, float] = {}
        for raw in spec.split(";"):
            seg = raw.strip()
            if not seg:
                continue
            head, sep, rest = seg.partition(":")
            if sep and head.strip().lower() in ("budget", "budgets"):
                for lang, v in _pairs(rest, seg):
                    budgets[lang] = parse_token_count(v)
            elif sep and head.strip().lower() in ("epochs", "epoch", "epoch_caps"):
                for lang, v in _pairs(rest, seg):
                    caps[lang] = _number(v, seg)
            elif sep and head.strip().isdigit():
                phases.append(
                    Phase(int(head), {lang: _number(v, seg) for lang, v in _pairs(rest, seg)})
                )
            elif not sep:
                if weights:
                    raise ValueError(f"mixture spec {spec!r} has two weight segments")
                weights = {lang: _number(v, seg) for lang, v in _pairs(seg, seg)}
            else:
                raise ValueError(
                    f"mixture spec segment {seg!r}: expected 'lang=w,...', 'STEP:lang=w,...', "
                    "'budget:lang=N,...' or 'epochs:lang=x,...'"
                )
        return cls(weights=weights, phases=phases, budgets=budgets, epoch_caps=caps)

    # ------------------------------------------------------------ constructors
    @classmethod
    def uniform(cls, languages: Sequence[str]) -> Mixture:
        """Equal weight on every language."""
        return cls(weights={lang: 1.0 for lang in languages})

    @classmethod
    def proportional(cls, sizes: Mapping[str, int]) -> Mixture:
        """Weights proportional to each language's size (its natural share of the corpus)."""
        return cls(weights={lang: float(n) for lang, n in sizes.items()})


def _format_weights(weights: Mapping[str, float]) -> str:
    # repr() of a float reads back to the same float, so the spec round-trips exactly.
    return ",".join(f"{k}={v!r}" for k, v in weights.items())


def _pairs(text: str, seg: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        lang, eq, value = item.partition("=")
        if not eq or not lang.strip() or not value.strip():
            raise ValueError(f"mixture spec segment {seg!r}: {item!r} is not 'language=value'")
        out.append((lang.strip(), value.strip()))
    if not out:
        raise ValueError(f"mixture spec segment {seg!r} names no language")
    return out


def _number(text: str, seg: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"mixture spec segment {seg!r}: {text!r} is not a number") from None


def load_mixture(spec: str | os.PathLike | Mapping[str, Any] | Mixture) -> Mixture:
    """A mixture from a :class:`Mixture`, a mapping, a JSON file path or a compact spec string."""
    if isinstance(spec, Mixture):
        return spec
    if isinstance(spec, Mapping):
        return Mixture.from_dict(spec)
    path = Path(spec)
    if str(spec).endswith(".json") or (path.suffix and path.is_file()):
        return Mixture.from_dict(read_json(path, "mixture"))
    return Mixture.parse(str(spec))
