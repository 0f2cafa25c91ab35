"""Write an optimized corpus as resampled shards.

A trainer can consume a mixture directly (sampling windows per language by weight); this module
instead materializes one: a new corpus directory whose train split holds, per language, the
number of tokens the mixture gives it out of ``total_tokens``. Whole documents are sampled (a
document is never cut, so labels and EOS boundaries stay intact): full epochs of the language's
documents in shuffled order, then documents without replacement until the remainder is filled.
The validation split is copied unchanged, so a resampled corpus is evaluated on the same data.

The new corpus is built in a temporary sibling directory and renamed into place at the end: a
crash leaves the destination untouched (no half-written corpus under its name).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from babel_interp.corpus.shards import TOKENIZER_DIR, CorpusReader, ShardWriter, write_manifest
from babel_interp.io import write_json_atomic
from babel_interp.mixture import Mixture
from babel_interp.optimizer.baselines import integer_budgets


@dataclass
class ResampleReport:
    """Per-language outcome of a resampling: what was asked for and what was written."""

    out_dir: str
    requested: dict[str, int]
    written: dict[str, int]
    epochs: dict[str, float]
    docs: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weights_and_caps(
    mixture: Any,
) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Weights, epoch caps and token budgets of a Mixture, an Allocation or a weight mapping.

    A Mixture with phases is materialized with its base weights: a static corpus has no steps.
    """
    if isinstance(mixture, Mapping):
        return {k: float(v) for k, v in mixture.items()}, {}, {}
    weights = getattr(mixture, "weights", None)
    if weights is None:
        raise TypeError(f"cannot read weights from {type(mixture).__name__}")
    caps = getattr(mixture, "epoch_caps", None) or {}
    # An Allocation's budgets are its expected tokens, not caps; a Mixture's are caps.
    budgets = getattr(mixture, "budgets", None) if isinstance(mixture, Mixture) else None
    return (
        {k: float(v) for k, v in dict(weights).items()},
        {k: float(v) for k, v in dict(caps).items() if v is not None},
        {k: int(v) for k, v in dict(budgets or {}).items()},
    )


def _pick_documents(
    docs: list[tuple[int, int]], budget: int, cap: float | None, rng: np.random.Generator
) -> tuple[list[tuple[int, int]], list[str]]:
    notes: list[str] = []
    natural = sum(e - s for s, e in docs)
    if natural == 0 or budget <= 0:
        return [], notes
    if cap is not None and budget > cap * natural:
        notes.append(f"budget {budget} capped at {cap} epochs ({int(cap * natural)} tokens)")
        budget = int(cap * natural)
    picked: list[tuple[int, int]] = []
    full = budget // natural
    for _ in range(full):
        picked.extend(docs[i] for i in rng.permutation(len(docs)))
    remainder = budget - full * natural
    filled = 0
    for i in rng.permutation(len(docs)):
        if filled >= remainder:
            break
        s, e = docs[i]
        # Take a document if it brings the count closer to the remainder than stopping would.
        if filled + (e - s) - remainder > remainder - filled:
            continue
        picked.append(docs[i])
        filled += e - s
    return picked, notes


def write_resampled_corpus(
    src_dir: str | os.PathLike,
    mixture: Any,
    total_tokens: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> ResampleReport:
    """Materialize ``mixture`` over ``src_dir`` as a new corpus of ``total_tokens`` train tokens.

    ``mixture`` is a :class:`~babel_interp.mixture.Mixture`, an
    :class:`~babel_interp.optimizer.baselines.Allocation` or a ``{language: weight}`` mapping;
    epoch caps and token budgets of a Mixture are honoured. Languages absent from the mixture get
    no tokens but stay in the manifest (their ids do not shift, so language labels mean the same
    in both corpora).
    """
    src = CorpusReader(src_dir)
    out = Path(out_dir)
    if total_tokens <= 0:
        raise ValueError(f"total_tokens must be positive, got {total_tokens}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True to replace it)")
    weights, caps, budget_caps = _weights_and_caps(mixture)
    unknown = sorted(set(weights) - set(src.languages))
    if unknown:
        raise ValueError(f"mixture names language(s) {unknown} not in corpus {src.languages}")
    if sum(weights.values()) <= 0:
        raise ValueError("mixture weights sum to 0")
    requested = integer_budgets(weights, int(total_tokens))
    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        train = src.split("train")
        writer = ShardWriter(tmp, "train", src.languages, src.vocab_size, src.eos_id)
        written: dict[str, int] = {}
        n_docs: dict[str, int] = {}
        epochs: dict[str, float] = {}
        notes: list[str] = []
        for lang in src.languages:
            budget = requested.get(lang, 0)
            if lang in budget_caps and budget > budget_caps[lang]:
                notes.append(f"{lang}: {budget} tokens capped at its budget {budget_caps[lang]}")
                budget = budget_caps[lang]
            docs = list(train.documents(lang)) if budget > 0 else []
            picked, lang_notes = _pick_documents(docs, budget, caps.get(lang), rng)
            notes.extend(f"{lang}: {n}" for n in lang_notes)
            if budget > 0 and not docs:
                notes.append(f"{lang}: requested {budget} tokens but the corpus has none")
            bpt = src.bytes_per_token(lang, "train") if docs else 0.0
            count = 0
            for s, e in tqdm(picked, desc=f"resample {lang}", leave=False, disable=None):
                ids = train.tokens[s : e - 1]  # the writer appends the EOS itself
                writer.add(lang, ids, n_bytes=int(round(bpt * (e - s))))
                count += e - s
            written[lang] = count
            n_docs[lang] = len(picked)
            natural = sum(e - s for s, e in docs)
            epochs[lang] = count / natural if natural else 0.0
        splits = {"train": writer.close()}
        if "val" in src.manifest["splits"]:
            shutil.copytree(src.dir / "val", tmp / "val")
            splits["val"] = src.manifest["splits"]["val"]
        shutil.copytree(src.tokenizer_dir, tmp / TOKENIZER_DIR)
        tok_info = {k: v for k, v in src.manifest["tokenizer"].items() if k != "dir"}
        report = ResampleReport(str(out), requested, written, epochs, n_docs, notes)
        own = {"format_version", "languages", "dtype", "tokenizer", "splits", "per_language"}
        extra = {k: v for k, v in src.manifest.items() if k not in own}
        extra["resampled_from"] = {
            "corpus": str(Path(src_dir).resolve()),
            "weights": weights,
            "total_tokens": int(total_tokens),
            "seed": seed,
            "report": report.to_dict(),
            "provenance": dict(provenance) if provenance else None,
        }
        write_manifest(
            tmp,
            src.languages,
            splits,
            tok_info,
            per_language=_per_language(splits["train"]),
            **extra,
        )
        if out.exists():
            trash = out.with_name(f".{out.name}.old")
            if trash.exists():
                shutil.rmtree(trash)
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(out / "resample_report.json", report.to_dict())
    return report


def _per_language(train_entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for lang, info in train_entry["languages"].items():
        tokens = int(info["tokens"])
        out[lang] = {
            "documents": int(info["docs"]),
            "tokens": tokens,
            "bytes": int(info["bytes"]),
            "bytes_per_token": info["bytes"] / tokens if tokens else None,
        }
    return out
