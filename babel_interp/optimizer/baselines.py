"""Baseline data mixtures: proportional, uniform, temperature sampling and UniMax.

Every method maps the natural per-language corpus sizes ``n_i`` (train tokens) and a total token
budget ``T`` to sampling weights ``w_i`` on the simplex and per-language budgets ``w_i * T``:

* proportional: ``w_i = n_i / sum n`` (the "original distribution", the paper's only baseline);
* uniform: ``w_i = 1 / k`` over the ``k`` languages that have data;
* temperature: ``w_i ~ n_i ** (1 / tau)`` (tau = 1 is proportional, tau -> inf is uniform);
* UniMax (Chung et al. 2023): the budget is spread uniformly, but no language is given more than
  ``N`` epochs of its data; what a capped language cannot use is spread over the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from babel_interp.config import ConfigBase, check_choice, check_int
from babel_interp.corpus.shards import CorpusReader
from babel_interp.mixture import Mixture

BASELINE_METHODS = ("proportional", "uniform", "temperature", "unimax")


def corpus_language_sizes(corpus_dir: str | os.PathLike, split: str = "train") -> dict[str, int]:
    """Tokens per language of one split of a corpus, in manifest order."""
    reader = CorpusReader(corpus_dir)
    try:
        info = reader.manifest["splits"][split]["languages"]
    except KeyError:
        raise KeyError(f"corpus {corpus_dir} has no split {split!r} in its manifest") from None
    return {lang: int(info[lang]["tokens"]) if lang in info else 0 for lang in reader.languages}


def _check_sizes(sizes: Mapping[str, int]) -> None:
    if not sizes:
        raise ValueError("sizes must name at least one language")
    for lang, n in sizes.items():
        if not isinstance(n, (int, float)) or n < 0 or not math.isfinite(n):
            raise ValueError(f"size of language {lang!r} must be a finite number >= 0, got {n!r}")
    if sum(sizes.values()) <= 0:
        raise ValueError(f"every language has 0 tokens: {dict(sizes)}")


def proportional_weights(sizes: Mapping[str, int]) -> dict[str, float]:
    """``w_i = n_i / sum_j n_j``."""
    _check_sizes(sizes)
    total = float(sum(sizes.values()))
    return {lang: n / total for lang, n in sizes.items()}


def uniform_weights(sizes: Mapping[str, int]) -> dict[str, float]:
    """Equal weight for every language that has data (an empty language cannot be sampled)."""
    _check_sizes(sizes)
    k = sum(1 for n in sizes.values() if n > 0)
    return {lang: (1.0 / k if n > 0 else 0.0) for lang, n in sizes.items()}


def temperature_weights(sizes: Mapping[str, int], tau: float) -> dict[str, float]:
    """Temperature sampling: ``w_i ~ n_i ** (1 / tau)``, tau >= 1 flattens toward uniform."""
    _check_sizes(sizes)
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    # Work in log space: n ** (1/tau) overflows for no realistic size, but underflows for tiny tau.
    logs = {lang: math.log(n) / tau for lang, n in sizes.items() if n > 0}
    top = max(logs.values())
    raw = {lang: (math.exp(logs[lang] - top) if lang in logs else 0.0) for lang in sizes}
    z = sum(raw.values())
    return {lang: v / z for lang, v in raw.items()}


def unimax_budgets(
    sizes: Mapping[str, int], total_tokens: float, max_epochs: float
) -> dict[str, float]:
    """UniMax (Chung et al. 2023, Algorithm 1): uniform budgets capped at ``max_epochs`` epochs.

    Languages are visited from the smallest; each gets the remaining budget divided by the number
    of languages not yet visited, or ``max_epochs * n_i`` if that is less. The leftover of a capped
    language thus flows to the larger ones. If even every language at its cap cannot fill
    ``total_tokens``, the budgets sum to less than the total (the caller is told by the sum).
    """
    _check_sizes(sizes)
    if not (math.isfinite(total_tokens) and total_tokens > 0):
        raise ValueError(f"total_tokens must be positive, got {total_tokens!r}")
    if not (math.isfinite(max_epochs) and max_epochs > 0):
        raise ValueError(f"max_epochs must be positive, got {max_epochs!r}")
    order = sorted(sizes, key=lambda lang: (sizes[lang], lang))
    remaining = float(total_tokens)
    budgets: dict[str, float] = {}
    active = [lang for lang in order if sizes[lang] > 0]
    for i, lang in enumerate(active):
        share = remaining / (len(active) - i)
        budgets[lang] = min(share, max_epochs * sizes[lang])
        remaining -= budgets[lang]
    return {lang: budgets.get(lang, 0.0) for lang in sizes}


def integer_budgets(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Split ``total`` tokens by ``weights`` into integers summing to ``total`` exactly.

    Largest-remainder rounding, ties broken by language name so the result is deterministic.
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    wsum = sum(weights.values())
    if wsum <= 0:
        raise ValueError(f"weights sum to {wsum}; need a positive sum")
    exact = {lang: total * w / wsum for lang, w in weights.items()}
    out = {lang: int(math.floor(v)) for lang, v in exact.items()}
    short = total - sum(out.values())
    by_remainder = sorted(exact, key=lambda lang: (-(exact[lang] - out[lang]), lang))
    for lang in by_remainder[:short]:
        out[lang] += 1
    return out


@dataclass
class Allocation:
    """An optimizer's answer: weights on the simplex, per-language token budgets, and why.

    ``budgets[lang]`` is how many of ``lang``'s tokens a run of ``total_tokens`` tokens sees;
    ``epochs[lang]`` is that budget over the language's natural size (> 1 means repetition).
    """

    method: str
    weights: dict[str, float]
    budgets: dict[str, int]
    sizes: dict[str, int]
    total_tokens: int
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if set(self.weights) != set(self.budgets) or set(self.weights) != set(self.sizes):
            raise ValueError(
                "Allocation.weights, budgets and sizes must name the same languages, got "
                f"{sorted(self.weights)}, {sorted(self.budgets)}, {sorted(self.sizes)}"
            )
        total = sum(self.weights.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"Allocation.weights must sum to 1, got {total}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"Allocation.weights must be >= 0, got {self.weights}")

    @property
    def languages(self) -> list[str]:
        return list(self.weights)

    @property
    def epochs(self) -> dict[str, float]:
        return {lang: (self.budgets[lang] / n if n > 0 else 0.0) for lang, n in self.sizes.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["epochs"] = self.epochs
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Allocation:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def compact(self) -> str:
        """``python=0.7,php=0.3``: the mixture's compact string form (4 decimals)."""
        return ",".join(f"{lang}={w:.4g}" for lang, w in self.weights.items())

    def to_mixture(
        self,
        budget_languages: Sequence[str] | None = None,
        epoch_caps: Mapping[str, float] | None = None,
    ) -> Mixture:
        """The :class:`~babel_interp.mixture.Mixture` the trainer consumes.

        Weights carry the allocation. ``budget_languages`` also get a hard token budget (a cut
        language must not be drawn past its cut even if others run out); ``epoch_caps`` bound
        repetition (UniMax's N). Languages of weight 0 are left out: the trainer cannot draw them.
        """
        live = {lang: w for lang, w in self.weights.items() if w > 0}
        budgets = {
            lang: self.budgets[lang]
            for lang in (budget_languages or [])
            if lang in live and self.budgets[lang] > 0
        }
        caps = {lang: float(c) for lang, c in (epoch_caps or {}).items() if lang in live}
        return Mixture(weights=live, budgets=budgets, epoch_caps=caps)


@dataclass
class BaselineConfig(ConfigBase):
    """Which baseline, and its parameters.

    ``total_tokens`` is the training budget the mixture is for (None: the corpus's natural total);
    ``temperature`` is tau of temperature sampling; ``max_epochs`` is UniMax's epoch cap N.
    ``languages`` restricts the mixture to a subset of the corpus's languages.
    """

    method: str = "proportional"
    total_tokens: int | None = None
    temperature: float = 3.0
    max_epochs: float = 4.0
    languages: list[str] | None = None

    def validate(self) -> None:
        check_choice("BaselineConfig", "method", self.method, BASELINE_METHODS)
        if self.total_tokens is not None:
            check_int("BaselineConfig", "total_tokens", self.total_tokens, minimum=1)
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(
                f"BaselineConfig.temperature must be positive, got {self.temperature!r}"
            )
        if not (isinstance(self.max_epochs, (int, float)) and self.max_epochs > 0):
            raise ValueError(f"BaselineConfig.max_epochs must be positive, got {self.max_epochs!r}")
        if self.languages is not None and len(self.languages) == 0:
            raise ValueError("BaselineConfig.languages must be None or non-empty")


def _restrict(sizes: Mapping[str, int], languages: Sequence[str] | None) -> dict[str, int]:
    if languages is None:
        return dict(sizes)
    missing = [lang for lang in languages if lang not in sizes]
    if missing:
        raise ValueError(f"language(s) {missing} are not in the corpus; it has {list(sizes)}")
    return {lang: sizes[lang] for lang in languages}


def baseline_allocation(cfg: BaselineConfig, sizes: Mapping[str, int]) -> Allocation:
    """The allocation of baseline ``cfg.method`` for a corpus with per-language ``sizes``."""
    sizes = _restrict(sizes, cfg.languages)
    _check_sizes(sizes)
    natural = int(sum(sizes.values()))
    total = int(cfg.total_tokens) if cfg.total_tokens is not None else natural
    notes: list[str] = []
    params: dict[str, Any] = {"total_tokens": total}
    if cfg.method == "proportional":
        weights = proportional_weights(sizes)
    elif cfg.method == "uniform":
        weights = uniform_weights(sizes)
    elif cfg.method == "temperature":
        weights = temperature_weights(sizes, cfg.temperature)
        params["temperature"] = cfg.temperature
    else:
        raw = unimax_budgets(sizes, total, cfg.max_epochs)
        params["max_epochs"] = cfg.max_epochs
        used = sum(raw.values())
        if used < total * (1 - 1e-9):
            notes.append(
                f"every language is at its cap of {cfg.max_epochs} epochs and only "
                f"{int(used)} of the {total} budgeted tokens can be used; the budget is reduced"
            )
            total = int(math.floor(used))
            params["total_tokens"] = total
        weights = {lang: b / used for lang, b in raw.items()}
    empty = [lang for lang, n in sizes.items() if n == 0]
    if empty:
        notes.append(f"language(s) {empty} have no train tokens and get weight 0")
    budgets = integer_budgets(weights, total)
    alloc = Allocation(
        method=cfg.method,
        weights=weights,
        budgets=budgets,
        sizes={k: int(v) for k, v in sizes.items()},
        total_tokens=total,
        params=params,
        notes=notes,
    )
    over = {lang: round(e, 3) for lang, e in alloc.epochs.items() if e > 1.0}
    if over:
        alloc.notes.append(f"repeated data (epochs > 1): {over}")
    return alloc
