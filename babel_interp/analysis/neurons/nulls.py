"""Window-label nulls for neuron counts: which window relabelings the null draws from.

Every count of the neuron analysis (LAPE sets, contrast selections) sits beside a null: the window
language labels of the per-window records (:class:`NeuronStats`) are redrawn, per-language
statistics recomputed from the records, and the selection rerun. Two kinds:

``"label_shuffle"``
    Labels permuted over all windows (per-language window counts kept). The null of
    *indistinguishable languages*: it erases every difference between the languages, including
    the plain one that one language's windows make the whole network fire more. For LAPE's
    shared count that is not the chance level of sharing: once the languages are
    indistinguishable every neuron's activation probability is about equal on every language,
    its entropy near the maximum, and the neurons that pass LAPE's filter (``p`` above the
    ``filter_rate`` quantile of all probabilities) are the high-firing ones; the lowest-entropy
    quota is filled with them, and, being above the ``activation_bar_ratio`` quantile on every
    language, each is assigned to all of them. The null shared count is then about the whole
    quota, and any data where the languages differ at all, even only in overall firing level,
    lie far below it. "0 shared against a label-shuffled null of 22" is evidence that the
    languages differ, not that neurons are shared less than chance.

``"firing_matched"`` (the default)
    Labels permuted only *within strata of windows of matched overall firing rate*. A window's
    firing level is the share of its (token, neuron) pairs that fire, over every recorded layer
    (:func:`window_firing_levels`); windows are ranked by it and cut into consecutive strata of
    ``stratum_windows`` windows (:func:`firing_strata`). A relabeling keeps, per stratum, how many
    windows each language has, so each language keeps its distribution of window firing levels
    and every neuron keeps, on each language, the part of its firing rate that follows the
    window's overall level (a neuron's pooled rate is kept exactly, as under any relabeling). It
    erases only what a neuron does on one language *beyond* the window's overall firing level.
    Its null hypothesis: given a window's overall firing level, its language tells nothing more
    about which neurons fire. A count below this null says LAPE's selection depends on
    neuron-specific language differences, not on one language making the network fire more.

Why strata of firing level and not a permutation of whole language blocks: with one block per
language, permuting blocks only renames the languages; every count symmetric in the pair (LAPE
shared) is then constant, and the window records carry no document or position to form smaller
blocks from. The firing level is computed from the records without their labels, so under the
hypothesis above the observed labeling is one draw from the same within-stratum permutations and
the null is exact up to the spread of levels inside a stratum: where that spread differs between
languages it is erased, pulling the null towards the label shuffle, so strata are small
(``stratum_windows`` = 4 by default). In the synthetic check of
``tests/test_neuron_null_calibration.py`` (languages that differ only in overall firing level),
4-window strata put the lower-tail false-positive rate of the shared count at 0.044-0.057 for
alpha = 0.05 over 1000 data sets, 8-window strata at 0.054-0.065 (two data seeds), and the label
shuffle at 0.84. Where windows are fully exchangeable between languages both kinds are exact
(0.049-0.058 in the same check): the label shuffle fails only when the languages differ, and
then it says that they differ, not that neurons are shared less than chance. Strata where all
windows are of one language are left as they are: where the firing level alone separates the
languages the null keeps that separation, and the test has no power there, rightly.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from babel_interp.analysis.neurons.neuron_stats import NeuronStats

NULL_KINDS = ("firing_matched", "label_shuffle")
DEFAULT_NULL = "firing_matched"
DEFAULT_STRATUM_WINDOWS = 4
# How reports name each kind.
NULL_LABELS = {
    "firing_matched": "firing-rate-matched null",
    "label_shuffle": "label-shuffled null",
}


def check_null_kind(kind: str, stratum_windows: int = DEFAULT_STRATUM_WINDOWS) -> None:
    """``kind`` is one of :data:`NULL_KINDS` and ``stratum_windows`` an int >= 2."""
    if kind not in NULL_KINDS:
        raise ValueError(f"null kind must be one of {NULL_KINDS}, got {kind!r}")
    if not isinstance(stratum_windows, int) or isinstance(stratum_windows, bool):
        raise ValueError(f"stratum_windows must be an int >= 2, got {stratum_windows!r}")
    if stratum_windows < 2:
        raise ValueError(f"stratum_windows must be an int >= 2, got {stratum_windows!r}")


def null_label(kind: str | None) -> str:
    """How a report names a null kind (a table without ``null_kind`` was label-shuffled)."""
    if kind is None or kind != kind or kind == "":  # missing or NaN: a table from before
        kind = "label_shuffle"
    return NULL_LABELS.get(str(kind), f"{kind} null")


def window_firing_levels(stats: NeuronStats) -> Tensor:
    """Per window record: the share of its (token, neuron) pairs that fire, all layers pooled."""
    n_units = len(stats.layers) * stats.d_mlp
    fired = stats.window_count.double().flatten(1).sum(1)
    return fired / (stats.window_tokens.double() * n_units).clamp(min=1.0)


def firing_strata(
    levels: Tensor, stratum_windows: int, gen: torch.Generator
) -> Int[Tensor, " window"]:
    """Stratum of each window: ranked by firing level, consecutive runs of ``stratum_windows``.

    Equal levels are ranked in random order (records are stored language by language, so ranking
    ties by position would put one language first). The last stratum takes the remainder, and
    a remainder below two windows joins the stratum before it.
    """
    n = levels.numel()
    perm = torch.randperm(n, generator=gen)
    order = perm[torch.sort(levels[perm], stable=True).indices]
    rank_stratum = torch.arange(n) // stratum_windows
    n_strata = max(1, n // stratum_windows)
    rank_stratum = rank_stratum.clamp(max=n_strata - 1)
    strata = torch.empty(n, dtype=torch.int64)
    strata[order] = rank_stratum
    return strata


def permute_within(labels: Tensor, strata: Int[Tensor, " window"], gen: torch.Generator) -> Tensor:
    """``labels`` permuted at random within each stratum (per-stratum label counts kept)."""
    grouped = torch.sort(strata, stable=True).indices
    noise = torch.rand(strata.numel(), generator=gen, dtype=torch.float64)
    shuffled = torch.argsort(strata.double() + noise)  # same groups, random order within
    out = torch.empty_like(labels)
    out[grouped] = labels[shuffled]
    return out


class LabelNull:
    """Draws relabelings of ``stats``' windows (or of the windows ``subset``) of one null kind."""

    def __init__(
        self,
        stats: NeuronStats,
        kind: str = DEFAULT_NULL,
        stratum_windows: int = DEFAULT_STRATUM_WINDOWS,
        seed: int = 0,
        subset: Tensor | None = None,
    ) -> None:
        check_null_kind(kind, stratum_windows)
        self.kind = kind
        self.labels = stats.window_lang
        self.subset = torch.arange(stats.n_windows) if subset is None else subset
        self.gen = torch.Generator().manual_seed(seed)
        self.strata: Tensor | None = None
        if kind == "firing_matched":
            levels = window_firing_levels(stats)[self.subset]
            self.strata = firing_strata(levels, stratum_windows, self.gen)

    def draw(self) -> Tensor:
        """One relabeling of every window (windows outside ``subset`` keep their label)."""
        out = self.labels.clone()
        sub = self.labels[self.subset]
        if self.strata is None:
            out[self.subset] = sub[torch.randperm(sub.numel(), generator=self.gen)]
        else:
            out[self.subset] = permute_within(sub, self.strata, self.gen)
        return out
