"""Drawing training sequences from language-labelled shards by a mixture.

Sampling is a pure function of ``(seed, step)`` and the tokens seen so far (which decide which
languages are exhausted), so a resumed run draws exactly the batches the uninterrupted run drew,
and ``N`` data-parallel ranks draw the same global batch as one process: :meth:`plan` lays out
the whole global batch cheaply (offsets only), and each rank then reads only its own rows.

Two sequence modes:

* ``pure`` (default): each row is one window of ``seq_len + 1`` tokens inside one language's
  contiguous range (documents of a language are contiguous in a split, so windows may cross
  document boundaries of that language only).
* ``mixed``: each row is packed from segments, each a random offset of a language drawn by the
  mixture up to the end of its document, so one sequence mixes languages in proportion.

Tokens seen per language count the predicted positions (``seq_len`` per row) by their label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from babel_interp.corpus.shards import SplitShard
from babel_interp.mixture import DataExhausted

__all__ = ["BatchPlan", "EvalWindows", "MixtureSampler", "Segment", "eval_windows"]


@dataclass(frozen=True)
class Segment:
    """``length`` tokens of one language from split offset ``start``, at row position ``at``."""

    language: int
    start: int
    length: int
    at: int


@dataclass
class BatchPlan:
    """The global batch of one step: the segments of every row and the tokens per language."""

    step: int
    rows: list[list[Segment]]
    tokens: dict[str, int]
    weights: dict[str, float]

    @property
    def n_rows(self) -> int:
        return len(self.rows)


class MixtureSampler:
    """Plans and loads batches of ``seq_len + 1``-token rows from one split."""

    def __init__(
        self,
        split: SplitShard,
        languages: Sequence[str],
        seq_len: int,
        seed: int,
        mode: str = "pure",
    ) -> None:
        if mode not in ("pure", "mixed"):
            raise ValueError(f"sequence mode must be 'pure' or 'mixed', got {mode!r}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.split = split
        self.languages = list(languages)
        self.seq_len = int(seq_len)
        self.seed = int(seed)
        self.mode = mode
        self.ranges = {lang: split.language_range(lang) for lang in self.languages}
        self._doc_starts = np.asarray(split.doc_starts, dtype=np.int64)

    def language_tokens(self) -> dict[str, int]:
        """Training tokens per language in this split (the size epoch caps refer to)."""
        return {lang: hi - lo for lang, (lo, hi) in self.ranges.items()}

    def _check_size(self, lang: str) -> None:
        lo, hi = self.ranges[lang]
        need = self.seq_len + 1 if self.mode == "pure" else 2
        if hi - lo < need:
            raise ValueError(
                f"language {lang!r} has {hi - lo} tokens in split {self.split.name!r}, fewer than "
                f"the {need} a {self.mode} sequence needs (lower seq_len or add data)"
            )

    def plan(
        self,
        step: int,
        n_rows: int,
        weights: Mapping[str, float],
        tokens_seen: Mapping[str, int],
        limits: Mapping[str, int | None],
    ) -> BatchPlan:
        """Lay out the global batch of ``step``: ``n_rows`` rows drawn by ``weights``.

        A language is drawn for a row only while its tokens seen (this batch's earlier rows
        included) are below its limit. Raises :class:`DataExhausted` when every language is
        exhausted before the batch is full: that step is not taken.
        """
        unknown = sorted(set(weights) - set(self.languages))
        if unknown:
            raise ValueError(f"mixture names language(s) {unknown} not in corpus {self.languages}")
        for lang, w in weights.items():
            if w > 0:
                self._check_size(lang)
        rng = np.random.default_rng([self.seed, int(step)])
        seen = {lang: int(tokens_seen.get(lang, 0)) for lang in self.languages}
        batch_tokens = dict.fromkeys(self.languages, 0)
        # Languages in corpus order so the draw does not depend on dict order.
        order = [lang for lang in self.languages if weights.get(lang, 0.0) > 0]

        def live() -> tuple[list[str], np.ndarray]:
            names = [
                lang for lang in order if limits.get(lang) is None or seen[lang] < limits[lang]
            ]
            if not names:
                raise DataExhausted(
                    f"step {step}: every language of the mixture reached its token limit "
                    f"(seen {seen}, limits { {k: limits.get(k) for k in order} })"
                )
            w = np.array([weights[lang] for lang in names], dtype=np.float64)
            return names, np.cumsum(w / w.sum())

        rows: list[list[Segment]] = []
        for _ in range(n_rows):
            names, cdf = live()
            if self.mode == "pure":
                lang = names[_draw(rng, cdf)]
                lo, hi = self.ranges[lang]
                start = lo + int(rng.integers(0, hi - lo - self.seq_len))
                row = [Segment(self.languages.index(lang), start, self.seq_len + 1, 0)]
                counted = {lang: self.seq_len}
            else:
                row, counted = self._mixed_row(rng, names, cdf)
            for lang, n in counted.items():
                seen[lang] += n
                batch_tokens[lang] += n
            rows.append(row)
        used = {lang: n for lang, n in batch_tokens.items() if n > 0}
        return BatchPlan(step=int(step), rows=rows, tokens=used, weights=dict(weights))

    def _mixed_row(
        self, rng: np.random.Generator, names: list[str], cdf: np.ndarray
    ) -> tuple[list[Segment], dict[str, int]]:
        row: list[Segment] = []
        counted: dict[str, int] = {}
        filled = 0
        total = self.seq_len + 1
        while filled < total:
            lang = names[_draw(rng, cdf)]
            lo, hi = self.ranges[lang]
            start = lo + int(rng.integers(0, hi - lo))
            # Up to the end of the document holding `start`, so a segment never spans two
            # documents of different provenance mid-row without their EOS between them.
            doc_end = int(self._doc_starts[np.searchsorted(self._doc_starts, start, "right")])
            length = min(doc_end - start, hi - start, total - filled)
            row.append(Segment(self.languages.index(lang), start, length, filled))
            # Predicted positions are row positions 1..seq_len.
            n_pred = min(filled + length, total) - max(filled, 1)
            if n_pred > 0:
                counted[lang] = counted.get(lang, 0) + n_pred
            filled += length
        return row, counted

    def load(
        self, plan: BatchPlan, rows: slice | None = None
    ) -> tuple[Int[Tensor, "rows seq_plus_1"], Int[Tensor, "rows seq_plus_1"]]:
        """Read the planned rows (all, or a ``slice`` of them) as token and language-id tensors."""
        selected = plan.rows if rows is None else plan.rows[rows]
        total = self.seq_len + 1
        tokens = np.empty((len(selected), total), dtype=np.int64)
        langs = np.empty((len(selected), total), dtype=np.int64)
        for i, row in enumerate(selected):
            for seg in row:
                tok, lab = self.split.window(seg.start, seg.length)
                tokens[i, seg.at : seg.at + seg.length] = tok
                langs[i, seg.at : seg.at + seg.length] = lab
        return torch.from_numpy(tokens), torch.from_numpy(langs)


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    # searchsorted on the cumulative weights: one uniform draw per row, stable across numpy
    # versions (unlike Generator.choice's internal algorithm choices).
    return min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)


@dataclass
class EvalWindows:
    """Fixed validation windows of one language: the same at every evaluation."""

    language: str
    starts: list[int]
    length: int

    def tokens(self, split: SplitShard, n: int | None = None) -> np.ndarray:
        """The first ``n`` (default all) windows read from ``split``: ``[n, length]`` int64
        (each window carries one token beyond the model input: the last target)."""
        starts = self.starts if n is None else self.starts[:n]
        if not starts:
            return np.zeros((0, self.length), dtype=np.int64)
        return np.stack([split.window(s, self.length)[0] for s in starts])


def eval_windows(
    split: SplitShard, languages: Sequence[str], seq_len: int, n_windows: int
) -> list[EvalWindows]:
    """Deterministic validation windows per language, spread evenly over its range.

    ``n_windows=0`` takes every non-overlapping window. A language with fewer than
    ``seq_len + 1`` validation tokens gets one shorter window; one with fewer than 2 gets none.
    """
    out = []
    for lang in languages:
        lo, hi = split.language_range(lang)
        size = hi - lo
        if size < 2:
            continue
        length = min(seq_len + 1, size)
        max_windows = size // length
        n = max_windows if n_windows == 0 else min(n_windows, max_windows)
        if n <= 1:
            starts = [lo]
        else:
            # Evenly spaced over the whole range, so the set covers the split, not its head.
            span = size - length
            starts = [lo + int(math.floor(i * span / (n - 1))) for i in range(n)]
        out.append(EvalWindows(lang, starts, length))
    return out
