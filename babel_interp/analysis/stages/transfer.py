"""The knowledge-transfer ratio ``|P ∩ C| / |C|`` at each checkpoint.

``P`` is the set of probe items that need knowledge only the primary language provides; ``C`` the
set of items a checkpoint solves in the target language. The ratio is the share of what the model
can do in the new language that rests on primary-language knowledge; the paper reports it falling
from about 60% to near 0 over continual pretraining.

Two ways to build ``P``:

* the paper's: items the primary-only model solves and a model trained only on the target
  language fails (:func:`primary_only_items`);
* the synthetic world's: items asking for the value of a fact planted only in primary-language
  documents (:func:`synthetic_transfer_items`). Their controls are the same items for facts
  defined in every language, which need no transfer, so ``C`` mixes both kinds and the ratio is
  meaningful.

Intervals are percentile bootstraps over the solved items (or over groups of them, e.g. facts
asked several times), so they reflect how many items the ratio rests on.
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
from babel_interp.analysis.stats import bootstrap_ci, grouped_bootstrap_ci
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
    groups: Mapping[Hashable, Hashable] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> TransferRatio:
    """``|P ∩ C| / |C|`` with a percentile-bootstrap interval over the items of ``C``.

    Args:
        P: items that need primary-only knowledge.
        C: items the checkpoint solves in the target language.
        groups: optional item -> group map (items of one group are resampled together); every
            item of ``C`` must have a group.
        n_boot, level, seed: the bootstrap.
    """
    P, C = set(P), set(C)
    if not C:
        return TransferRatio(None, 0, 0, None, None)
    # Sorted so the bootstrap draws do not depend on set iteration order.
    items = sorted(C, key=repr)
    hits = np.array([1.0 if c in P else 0.0 for c in items])
    if groups is not None:
        missing = [c for c in items if c not in groups]
        if missing:
            raise ValueError(f"groups has no entry for solved item(s) {missing[:5]}")
        labels = np.array([repr(groups[c]) for c in items])
        ci = grouped_bootstrap_ci(hits, labels, n_boot=n_boot, ci=level, seed=seed)
    else:
        ci = bootstrap_ci(hits, n_boot=n_boot, ci=level, seed=seed)
    return TransferRatio(float(hits.mean()), len(items), int(hits.sum()), ci.low, ci.high)


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
    was evaluated on. With two maps, both must cover the same items (otherwise "fails" would
    include "was never asked").
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
    planted = fact_probe_items(cfg, language, n_planted, planted=True)
    shared = fact_probe_items(cfg, language, n_shared, planted=False)
    items = [as_completion_item(x) for x in planted + shared]
    return items, set(range(len(planted)))


def transfer_series_from_results(
    results: Mapping[int, CompletionResult],
    primary_only: Collection[int],
    by: str = "identifier",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The ratio at each checkpoint from completion results already computed on one item list.

    ``primary_only`` holds indices into that list. Columns: ``step``, ``ratio``, ``ci_low``,
    ``ci_high``, ``n_c``, ``n_pc``, ``n_items``, ``n_p``, ``accuracy_p`` (share of ``P`` solved)
    and ``accuracy_not_p`` (share of the other items solved).
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
        r = transfer_ratio(P, C, groups if use_groups else None, n_boot, level, seed)
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


def primary_only_from_models(
    primary_model: str | os.PathLike,
    target_only_model: str | os.PathLike,
    items: Sequence[Any],
    by: str = "identifier",
    device: str | torch.device | None = "auto",
    max_new_tokens: int = 16,
    batch_size: int = 16,
) -> set[int]:
    """The paper's ``P`` over ``items``, from two saved models (checkpoint directories): the
    primary-only model and a model trained only on the target language."""
    solved = []
    for path in (primary_model, target_only_model):
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
        solved.append({i: i in hit for i in range(res.n)})
        del model
    return {int(i) for i in primary_only_items(solved[0], solved[1])}


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
    items: Sequence[Any] | None = None,
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
    definition, evaluated on ``items`` or the synthetic fact items); ``primary_only`` (indices
    into ``items``); or, with neither and no items, the synthetic world's planted facts.
    ``language`` defaults to the run's only target language.
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
        items, planted = synthetic_transfer_items(synth, language, n_planted, n_shared)
        if primary_only is None:
            primary_only, definition = planted, "synthetic: facts planted only in " + primary
    items = [as_completion_item(x) for x in items]
    if primary_model is not None:
        primary_only = primary_only_from_models(
            primary_model, target_only_model, items, by, device, max_new_tokens, batch_size
        )
        definition = "paper: solved by the primary-only model, failed by the target-only model"
    if primary_only is None:
        raise ValueError("no P: give primary_only indices or the two reference models")
    df = transfer_series(
        run,
        items,
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
