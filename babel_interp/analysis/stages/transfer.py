"""The knowledge-transfer ratio ``|P ∩ C| / |C|`` at each checkpoint.

``P`` is the set of probe items that need knowledge only the primary language provides; ``C`` the
set of items a checkpoint solves in the target language. The ratio is the share of what the model
can do in the new language that rests on primary-language knowledge; the paper reports it falling
from about 60% to near 0 over continual pretraining.

Two ways to build ``P``:

* the paper's: items the primary-only model solves in the primary language and a model trained
  only on the target language fails in the target language (:func:`primary_only_items`,
  :func:`primary_only_from_models`). Each item has a rendering in both languages, joined by
  ``item_id`` (:func:`language_matched_items`): each model is asked in its own language;
* the synthetic world's: items asking for the value of a fact planted only in primary-language
  documents (:func:`synthetic_transfer_items`). Their controls are the same items for facts
  defined in every language, which need no transfer, so ``C`` mixes both kinds and the ratio is
  meaningful.

Intervals are percentile bootstraps over every item asked (or over groups of them, e.g. facts
asked several times): each draw resamples the items with replacement and recomputes both ``C``
(which drawn items the checkpoint solves) and ``P ∩ C``, so the interval reflects which items
happen to be in ``C`` and not only the share of ``P`` among a fixed ``C``
(:func:`babel_interp.analysis.stats.ratio_bootstrap_ci`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from babel_interp.analysis.performance import (
    CompletionItem,
    CompletionResult,
    as_completion_item,
    completion_accuracy,
    evaluate_checkpoints,
    replace_rows_csv,
    single_target_language,
    synthetic_config_of_run,
)
from babel_interp.analysis.stats import ratio_bootstrap_ci
from babel_interp.corpus.synthetic import SyntheticConfig, fact_probe_items
from babel_interp.devices import resolve_device
from babel_interp.model import load_model
from babel_interp.runs import Run

ANALYZER = "transfer"
TABLE = "transfer.csv"

__all__ = [
    "ANALYZER",
    "TransferRatio",
    "TransferResult",
    "analyze_run",
    "language_matched_items",
    "primary_only_from_models",
    "primary_only_items",
    "synthetic_transfer_items",
    "transfer_ratio",
    "transfer_series",
    "transfer_series_from_results",
]


@dataclass(frozen=True)
class TransferRatio:
    """``ratio = n_pc / n_c`` with a bootstrap interval; ratio and interval are None when the
    checkpoint solves nothing (``n_c == 0``): the ratio is undefined there, not zero."""

    ratio: float | None
    n_c: int
    n_pc: int
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def transfer_ratio(
    P: Collection[Hashable],
    C: Collection[Hashable],
    universe: Collection[Hashable],
    groups: Mapping[Hashable, Hashable] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> TransferRatio:
    """``|P ∩ C| / |C|`` with a percentile-bootstrap interval over the items of ``universe``.

    Each draw resamples ``universe`` (every item the checkpoint was asked) with replacement and
    recomputes ``|C|`` and ``|P ∩ C|`` over the drawn items, so the interval carries the
    uncertainty of which items are in ``C``; draws with no solved item have no ratio and are left
    out. ``universe=C`` gives the narrower interval conditional on ``C`` (the share of ``P``
    among exactly these solved items).

    Args:
        P: items that need primary-only knowledge (a subset of ``universe``).
        C: items the checkpoint solves in the target language (a subset of ``universe``).
        universe: every item the checkpoint was evaluated on.
        groups: optional item -> group map (items of one group are resampled together); every
            item of ``universe`` must have a group.
        n_boot, level, seed: the bootstrap.
    """
    P, C, U = set(P), set(C), set(universe)
    for name, x in (("C", C), ("P", P)):
        outside = sorted(x - U, key=repr)
        if outside:
            raise ValueError(f"{name} holds items outside the universe: {outside[:5]}")
    if not C:
        return TransferRatio(None, 0, 0, None, None)
    # Sorted so the bootstrap draws do not depend on set iteration order.
    items = sorted(U, key=repr)
    in_c = np.array([1.0 if u in C else 0.0 for u in items])
    in_pc = np.array([1.0 if u in C and u in P else 0.0 for u in items])
    labels = None
    if groups is not None:
        missing = [u for u in items if u not in groups]
        if missing:
            raise ValueError(f"groups has no entry for item(s) {missing[:5]}")
        labels = np.array([repr(groups[u]) for u in items])
    ci = ratio_bootstrap_ci(in_pc, in_c, labels, n_boot=n_boot, ci=level, seed=seed)
    return TransferRatio(ci.estimate, len(C), int(in_pc.sum()), ci.low, ci.high)


def _solved_set(x: Collection[Hashable] | Mapping[Hashable, bool], name: str) -> tuple[set, set]:
    """``(solved, universe)`` of a set of solved items or an item -> solved map."""
    if isinstance(x, Mapping):
        for k, v in x.items():
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name}[{k!r}] must be a bool, got {v!r}")
        return {k for k, v in x.items() if v}, set(x)
    s = set(x)
    return s, s


def primary_only_items(
    primary_model_solves: Collection[Hashable] | Mapping[Hashable, bool],
    target_only_model_solves: Collection[Hashable] | Mapping[Hashable, bool],
) -> set[Hashable]:
    """The paper's ``P``: items the primary-only model solves and the target-only model fails.

    Each argument is the set of items a model solves, or a map item -> solved over the items it
    was evaluated on, keyed by an id shared across languages: the primary-only model's outcomes
    are on the primary-language renderings, the target-only model's on the target-language
    renderings of the same items (:func:`language_matched_items`). With two maps, both must cover
    the same items (otherwise "fails" would include "was never asked").
    """
    prim, prim_all = _solved_set(primary_model_solves, "primary_model_solves")
    targ, targ_all = _solved_set(target_only_model_solves, "target_only_model_solves")
    if isinstance(primary_model_solves, Mapping) and isinstance(target_only_model_solves, Mapping):
        if prim_all != targ_all:
            only_p = sorted(prim_all - targ_all, key=repr)[:5]
            only_t = sorted(targ_all - prim_all, key=repr)[:5]
            raise ValueError(
                "the two models were evaluated on different items: only the primary model on "
                f"{only_p}, only the target-only model on {only_t}"
            )
    return prim - targ


def language_matched_items(
    items: Mapping[str, Sequence[Any]], primary: str, target: str
) -> tuple[list[CompletionItem], list[CompletionItem]]:
    """The primary- and target-language renderings of the same items, aligned.

    ``items`` maps a language to its renderings (anything :func:`as_completion_item` reads), each
    with an ``item_id`` naming the item the same way in every language (the synthetic fact items
    have one). Returns ``(primary_items, target_items)``, where element ``i`` of both lists is
    one item, in the order of ``items[target]``. Raises ``ValueError`` naming the item and the
    language when an item lacks a rendering in one of the two languages, or lacks an id.
    """
    if primary == target:
        raise ValueError(f"primary and target are both {primary!r}")
    by_lang: dict[str, dict[str, CompletionItem]] = {}
    for lang in (primary, target):
        if lang not in items:
            raise ValueError(
                f"no {lang!r} renderings: items has languages {sorted(items)}, and the paper's P "
                f"needs each item in {primary!r} (for the primary-only model) and {target!r} "
                "(for the target-only model)"
            )
        seen: dict[str, CompletionItem] = {}
        for k, x in enumerate(items[lang]):
            it = as_completion_item(x)
            if not it.item_id:
                raise ValueError(
                    f"{lang!r} item {k} has no item_id: renderings are joined across languages "
                    "by item_id"
                )
            if it.language is not None and it.language != lang:
                raise ValueError(
                    f"item {it.item_id!r} is listed under {lang!r} but is in {it.language!r}"
                )
            if it.item_id in seen:
                raise ValueError(f"item {it.item_id!r} appears twice in {lang!r}")
            seen[it.item_id] = it
        by_lang[lang] = seen
    for have, lack in ((target, primary), (primary, target)):
        missing = [i for i in by_lang[have] if i not in by_lang[lack]]
        if missing:
            raise ValueError(
                f"item {missing[0]!r} has no rendering in {lack!r} (it has one in {have!r}); "
                f"{len(missing)} item(s) lack one"
            )
    ids = list(by_lang[target])
    return [by_lang[primary][i] for i in ids], [by_lang[target][i] for i in ids]


def synthetic_fact_items(
    cfg: Any,
    language: str,
    n_planted: int | None = None,
    n_shared: int | None = None,
) -> tuple[list[CompletionItem], set[int]]:
    """Planted- then shared-fact items of the synthetic world in ``language`` (any language,
    the primary included) and the indices of the planted ones. The same counts give the same
    ``item_id`` list in every language."""
    if isinstance(cfg, Mapping):
        cfg = SyntheticConfig.from_dict(dict(cfg))
    planted = fact_probe_items(cfg, language, n_planted, planted=True)
    shared = fact_probe_items(cfg, language, n_shared, planted=False)
    items = [as_completion_item(x) for x in planted + shared]
    return items, set(range(len(planted)))


def synthetic_transfer_items(
    cfg: Any,
    language: str,
    n_planted: int | None = None,
    n_shared: int | None = None,
) -> tuple[list[CompletionItem], set[int]]:
    """Fact items of the synthetic world in ``language`` and the indices forming ``P``.

    Planted-fact items (values shown only in ``cfg.planted_in`` documents) form ``P``;
    shared-fact items (values shown in every language) are the in-language control. ``cfg`` is a
    :class:`babel_interp.corpus.synthetic.SyntheticConfig` or its dict; counts default to one
    item per fact. Items are grouped by fact, since repeats of one fact are not independent.
    """
    if isinstance(cfg, Mapping):
        cfg = SyntheticConfig.from_dict(dict(cfg))
    if language == cfg.planted_in:
        raise ValueError(
            f"language {language!r} is where the facts are planted: the transfer ratio is "
            "measured in a target language"
        )
    return synthetic_fact_items(cfg, language, n_planted, n_shared)


def transfer_series_from_results(
    results: Mapping[int, CompletionResult],
    primary_only: Collection[int],
    by: str = "identifier",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The ratio at each checkpoint from completion results already computed on one item list.

    ``primary_only`` holds indices into that list. The interval resamples the whole list (every
    item asked), so ``C`` varies between draws (:func:`transfer_ratio`). Columns: ``step``,
    ``ratio``, ``ci_low``, ``ci_high``, ``n_c``, ``n_pc``, ``n_items``, ``n_p``, ``accuracy_p``
    (share of ``P`` solved) and ``accuracy_not_p`` (share of the other items solved).
    """
    P = set(primary_only)
    rows = []
    for step in sorted(results):
        res = results[step]
        n = res.n
        bad = [i for i in P if not 0 <= i < n]
        if bad:
            raise ValueError(f"primary_only holds indices outside the {n} items: {sorted(bad)[:5]}")
        C = res.solved(by)
        groups = {i: it.group for i, it in enumerate(res.items) if it.group is not None}
        use_groups = len(groups) == n and len(set(groups.values())) < n
        r = transfer_ratio(P, C, range(n), groups if use_groups else None, n_boot, level, seed)
        not_p = n - len(P)
        rows.append(
            {
                "step": step,
                "ratio": math.nan if r.ratio is None else r.ratio,
                "ci_low": math.nan if r.ci_low is None else r.ci_low,
                "ci_high": math.nan if r.ci_high is None else r.ci_high,
                "n_c": r.n_c,
                "n_pc": r.n_pc,
                "n_items": n,
                "n_p": len(P),
                "accuracy_p": r.n_pc / len(P) if P else math.nan,
                "accuracy_not_p": (r.n_c - r.n_pc) / not_p if not_p else math.nan,
            }
        )
    return pd.DataFrame(rows)


def transfer_series(
    run: Run | str | os.PathLike,
    items: Sequence[Any],
    primary_only: Collection[int],
    steps: Sequence[int] | None = None,
    by: str = "identifier",
    device: str | torch.device | None = "auto",
    max_new_tokens: int = 16,
    batch_size: int = 16,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """The knowledge-transfer ratio at each checkpoint of a run (or those at ``steps``).

    Every checkpoint decodes the same ``items`` greedily (:func:`completion_accuracy`); ``C`` is
    the set it solves (``by="identifier"``: the next identifier or value matches; ``"line"``:
    the rest of the line), ``P`` the indices in ``primary_only``. See
    :func:`transfer_series_from_results` for the columns.
    """
    _, results = evaluate_checkpoints(
        run,
        items,
        steps=steps,
        device=device,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        n_boot=n_boot,
        level=level,
        seed=seed,
        progress=progress,
    )
    return transfer_series_from_results(results, primary_only, by, n_boot, level, seed)


def _solved_by_id(
    path: str | os.PathLike,
    items: Sequence[CompletionItem],
    by: str,
    device: str | torch.device | None,
    max_new_tokens: int,
    batch_size: int,
) -> dict[str, bool]:
    """item_id -> solved, for the saved model at ``path`` decoding ``items`` greedily."""
    model, _ = load_model(path, device=resolve_device(device))
    res = completion_accuracy(
        model,
        model.tokenizer,
        items,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        n_boot=1,
        progress=False,
    )
    hit = res.solved(by)
    del model
    return {str(it.item_id): i in hit for i, it in enumerate(items)}


def primary_only_from_models(
    primary_model: str | os.PathLike,
    target_only_model: str | os.PathLike,
    items: Mapping[str, Sequence[Any]],
    target: str,
    primary: str = "python",
    by: str = "identifier",
    device: str | torch.device | None = "auto",
    max_new_tokens: int = 16,
    batch_size: int = 16,
) -> set[int]:
    """The paper's ``P`` from two saved models (checkpoint directories), language-matched.

    The primary-only model is asked the ``primary``-language rendering of each item, the model
    trained only on ``target`` the ``target``-language rendering of the same item; ``items`` maps
    each language to its renderings, joined by ``item_id`` (:func:`language_matched_items`).
    Returns indices into the aligned item list, i.e. the order of ``items[target]``.
    """
    prim_items, targ_items = language_matched_items(items, primary, target)
    kw = dict(by=by, device=device, max_new_tokens=max_new_tokens, batch_size=batch_size)
    prim = _solved_by_id(primary_model, prim_items, **kw)
    targ = _solved_by_id(target_only_model, targ_items, **kw)
    P = primary_only_items(prim, targ)
    return {i for i, it in enumerate(targ_items) if it.item_id in P}


@dataclass
class TransferResult:
    """The transfer ratio of one run per (language, checkpoint): the columns of
    :func:`transfer_series_from_results` after ``language``, then ``tokens_seen`` (of that
    language), ``definition`` (how ``P`` was built) and ``solved_by``."""

    table: pd.DataFrame

    def to_dataframe(self) -> pd.DataFrame:
        """The table, one row per (language, checkpoint)."""
        return self.table.copy()

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``transfer.csv`` under ``directory``, keeping rows of other languages already
        there (each rerun replaces its own language's rows)."""
        langs = sorted(set(self.table["language"]))
        return [replace_rows_csv(self.table, Path(directory) / TABLE, "language", langs)]

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TransferResult:
        """The table :meth:`save` wrote under ``directory``."""
        path = Path(directory) / TABLE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `analyze transfer`")
        return cls(pd.read_csv(path))


def analyze_run(
    run: Run | str | os.PathLike,
    language: str | None = None,
    primary: str = "python",
    items: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None,
    primary_only: Collection[int] | None = None,
    primary_model: str | os.PathLike | None = None,
    target_only_model: str | os.PathLike | None = None,
    n_planted: int | None = None,
    n_shared: int | None = None,
    steps: Sequence[int] | None = None,
    by: str = "identifier",
    device: str | torch.device | None = "auto",
    max_new_tokens: int = 16,
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> TransferResult:
    """The transfer ratio of one target language over a run, saved to
    ``RUN/analysis/transfer/transfer.csv`` (rows of other languages are kept).

    ``P`` comes from, in order: ``primary_model`` and ``target_only_model`` (the paper's
    definition: the primary-only model on the ``primary`` renderings, the target-only model on
    the ``language`` renderings of the same items); ``primary_only`` (indices into the
    target-language items); or, with neither and no items, the synthetic world's planted facts.
    ``items`` is either the target-language items or a map language -> renderings joined by
    ``item_id`` (:func:`language_matched_items`); the reference models need the map, and
    without items a synthetic run's fact items are rendered in both languages. The checkpoints
    are evaluated on the target-language renderings. ``language`` defaults to the run's only
    target language.
    """
    run = Run.of(run)
    language = single_target_language(run, language, primary)
    if (primary_model is None) != (target_only_model is None):
        raise ValueError("the paper's P needs both a primary-only and a target-only model")
    definition = "given"
    if items is None:
        synth = synthetic_config_of_run(run)
        if synth is None:
            raise ValueError(
                f"run {run.path} was not trained on the synthetic corpus: pass items and P "
                "(--probes with --primary-model/--target-only-model)"
            )
        target_items, planted = synthetic_transfer_items(synth, language, n_planted, n_shared)
        items = target_items
        if primary_model is not None:
            prim_items, _ = synthetic_fact_items(synth, primary, n_planted, n_shared)
            items = {primary: prim_items, language: target_items}
        elif primary_only is None:
            primary_only, definition = planted, "synthetic: facts planted only in " + primary
    if isinstance(items, Mapping):
        _, target_items = language_matched_items(items, primary, language)
    else:
        if primary_model is not None:
            raise ValueError(
                "the paper's P asks the primary-only model in the primary language and the "
                "target-only model in the target language: pass items as a map language -> "
                f"renderings with both {primary!r} and {language!r}"
            )
        target_items = [as_completion_item(x) for x in items]
    if primary_model is not None:
        primary_only = primary_only_from_models(
            primary_model,
            target_only_model,
            items,
            target=language,
            primary=primary,
            by=by,
            device=device,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        definition = (
            f"paper: solved by the primary-only model in {primary}, "
            f"failed by the target-only model in {language}"
        )
    if primary_only is None:
        raise ValueError("no P: give primary_only indices or the two reference models")
    df = transfer_series(
        run,
        target_items,
        primary_only,
        steps=steps,
        by=by,
        device=device,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        n_boot=n_boot,
        seed=seed,
        progress=progress,
    )
    tokens = {c.step: c.tokens_seen.get(language, math.nan) for c in run.checkpoints()}
    df.insert(0, "language", language)
    df["tokens_seen"] = [tokens.get(int(s), math.nan) for s in df["step"]]
    df["definition"] = definition
    df["solved_by"] = by
    result = TransferResult(df)
    result.save(run.analysis_dir(ANALYZER))
    return result
