"""Per-language performance at each checkpoint: validation loss, bits per byte, completion accuracy.

Three measurements, one per question:

* **Validation loss and bits per byte** per language, as the trainer logged them in
  ``RUN/metrics.jsonl`` (:func:`performance_series` aligns them to the checkpoints), or recomputed
  on a checkpoint from the corpus's validation split (:func:`validation_loss`).
* **Completion accuracy** on held-out probes (:func:`completion_accuracy`): greedy decoding from
  each prompt; exact match of the next identifier, and of the rest of the line. This is the
  closest this project gets to the paper's pass@1 on a small model.

Matching rules (lenient on whitespace only). The *identifier* matches when the continuation,
leading whitespace removed, starts with the answer (stripped) and the next character cannot
extend it (not a letter, digit or ``_``), or decoding ended (EOS) right after it; running out of
``max_new_tokens`` right after the answer is a miss, since the model might have gone on (``len`` vs
``length``). The *line* matches when the continuation up to the first newline equals the expected
rest of the line, surrounding whitespace removed; a line that was not finished (no newline, no
EOS) within the budget is a miss.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from babel_interp.analysis.stats import CI, bootstrap_ci, grouped_bootstrap_ci
from babel_interp.config import ConfigBase
from babel_interp.corpus.shards import MANIFEST, CorpusReader
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.devices import model_device
from babel_interp.io import write_csv_atomic, write_jsonl_atomic
from babel_interp.model import HookedModel
from babel_interp.runs import Run

__all__ = [
    "ANALYZER",
    "Completion",
    "CompletionItem",
    "CompletionResult",
    "PerformanceResult",
    "ValidationLoss",
    "analyze_run",
    "as_completion_item",
    "completion_accuracy",
    "evaluate_checkpoints",
    "greedy_continuations",
    "load_completion_items",
    "performance_series",
    "replace_rows_csv",
    "save_completion_items",
    "single_target_language",
    "site_completion_items",
    "synthetic_completion_items",
    "synthetic_config_of_run",
    "target_languages",
    "validation_loss",
]

_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")


@dataclass(frozen=True)
class CompletionItem(ConfigBase):
    """A held-out completion probe (``to_dict``/``from_dict``: one JSON line of a probes file).

    ``answer`` is the next identifier (or value) the model should write; ``line_answer`` the rest
    of the line from the end of the prompt (None: only the identifier is scored). ``group`` ties
    items that are not independent (same document, same fact) for the cluster bootstrap.
    """

    prompt: str
    answer: str
    line_answer: str | None = None
    language: str | None = None
    kind: str | None = None
    group: str | None = None
    item_id: str | None = None

    def validate(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ValueError(
                f"CompletionItem.prompt must be a non-empty string, got {self.prompt!r}"
            )
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise ValueError(
                f"CompletionItem.answer must be a non-blank string, got {self.answer!r}"
            )
        if self.line_answer is not None and not isinstance(self.line_answer, str):
            raise ValueError(
                f"CompletionItem.line_answer must be None or a string, got {self.line_answer!r}"
            )


def as_completion_item(obj: Any) -> CompletionItem:
    """Read any probe-like object as a :class:`CompletionItem`.

    Accepts a ``CompletionItem``, a mapping, a synthetic ``FactItem`` (``prompt``/``answer``,
    grouped by ``fact_id``) or a working-language ``Probe`` (``prompt``/``target``, grouped by
    ``doc_id``).
    """
    if isinstance(obj, CompletionItem):
        return obj
    if isinstance(obj, dict):
        return CompletionItem.from_dict(obj)
    prompt = getattr(obj, "prompt", None)
    answer = getattr(obj, "answer", None)
    if answer is None:
        answer = getattr(obj, "target", None)
    if prompt is None or answer is None:
        raise ValueError(
            f"a completion item needs a prompt and an answer (or target); "
            f"{type(obj).__name__} lacks one"
        )
    language = getattr(obj, "language", None) or getattr(obj, "target_language", None)
    group = getattr(obj, "fact_id", None) or getattr(obj, "doc_id", None) or None
    kind = getattr(obj, "kind", None)
    if hasattr(obj, "planted"):
        kind = "planted_fact" if obj.planted else "shared_fact"
    return CompletionItem(
        prompt=prompt,
        answer=answer,
        line_answer=getattr(obj, "line_answer", None),
        language=language,
        kind=kind,
        group=group,
        item_id=getattr(obj, "item_id", None),
    )


def save_completion_items(items: Iterable[Any], path: str | os.PathLike) -> Path:
    """Write items as JSON lines, atomically (:func:`babel_interp.io.write_jsonl_atomic`)."""
    return write_jsonl_atomic(path, (as_completion_item(item).to_dict() for item in items))


def load_completion_items(path: str | os.PathLike) -> list[CompletionItem]:
    """Read a JSON-lines file of items (``prompt``, ``answer``, optional ``line_answer``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"completion item file {path} does not exist")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(CompletionItem.from_dict(json.loads(line)))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a completion item: {exc}") from None
    return items


# ---------------------------------------------------------------------------------------------
# Held-out items from documents


def site_completion_items(
    documents: Iterable[Any],
    kinds: Sequence[str] = ("builtin",),
    max_per_document: int | None = 3,
    seed: int = 0,
) -> list[CompletionItem]:
    """Completion items at annotated identifier sites of documents.

    ``documents`` are synthetic documents (``text``, ``language``, ``doc_id``, ``sites`` with
    ``offset``, ``identifier``, ``kind``). The prompt is the exact text before the site (as in
    :mod:`babel_interp.analysis.working_language.probes`), the answer the identifier, the line
    answer the rest of
    that line. At most ``max_per_document`` sites per document are
    kept (drawn with ``seed``), since sites of one document are not independent.
    """
    rng = random.Random(seed)
    wanted = set(kinds)
    items = []
    for doc in documents:
        sites = [s for s in doc.sites if s.kind in wanted and doc.text[: s.offset].strip()]
        if max_per_document is not None and len(sites) > max_per_document:
            sites = sorted(rng.sample(sites, max_per_document), key=lambda s: s.offset)
        for s in sites:
            end = doc.text.find("\n", s.offset)
            end = len(doc.text) if end < 0 else end
            items.append(
                CompletionItem(
                    prompt=doc.text[: s.offset],
                    answer=s.identifier,
                    line_answer=doc.text[s.offset : end],
                    language=doc.language,
                    kind=s.kind,
                    group=doc.doc_id,
                    item_id=f"{doc.doc_id}@{s.offset}",
                )
            )
    return items


def synthetic_completion_items(
    cfg: Any,
    language: str,
    n_documents: int = 50,
    kinds: Sequence[str] = ("builtin", "call"),
    max_per_document: int | None = 3,
    seed: int = 0,
) -> list[CompletionItem]:
    """Held-out completion items from the synthetic world of ``cfg`` (a ``SyntheticConfig``).

    The documents come from their own seed stream (``cfg.seed + 2_000_003 + seed``), so they are
    not training documents; the fact tables (``fact_seed``) and the renderers are the same world.
    """
    if isinstance(cfg, dict):
        cfg = SyntheticConfig.from_dict(cfg)
    if n_documents < 1:
        raise ValueError(f"n_documents must be >= 1, got {n_documents}")
    held_out = replace(
        cfg,
        languages=(language,),
        docs_per_language=n_documents,
        seed=int(cfg.seed) + 2_000_003 + seed,
    )
    return site_completion_items(generate_documents(held_out), kinds, max_per_document, seed)


# ---------------------------------------------------------------------------------------------
# Greedy decoding


@torch.inference_mode()
def _next_tokens(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], lengths: Int[Tensor, " batch"]
) -> Int[Tensor, " batch"]:
    """Greedy next token of each row at its own last real position.

    Rows are right-padded: with causal attention, pad tokens after a row's end cannot change
    the logits at or before it, so one forward serves rows of different lengths.
    """
    logits: Float[Tensor, "batch pos vocab"] = model(tokens, return_type="logits")
    last = logits[torch.arange(tokens.shape[0], device=tokens.device), lengths - 1]
    return last.argmax(dim=-1)


def _identifier_complete(text: str) -> bool:
    s = text.lstrip()
    if not s:
        return False
    m = re.match(r"[A-Za-z0-9_]+", s)
    return m is None or m.end() < len(s)


def greedy_continuations(
    model: HookedModel,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    stop_at_newline: bool = True,
    prepend_eos: bool = True,
    progress: bool = False,
) -> list[tuple[str, bool]]:
    """Greedy continuation of each prompt: ``(text, ended)`` where ``ended`` is True when the
    model emitted EOS.

    Decoding stops at EOS, at the first newline (``stop_at_newline``) or once an identifier is
    complete (otherwise), or after ``max_new_tokens``. With ``prepend_eos`` the prompt follows an
    EOS token, the document separator the model saw in training. Trailing spaces and tabs of a
    prompt are left for the model to write (they belong to the next token under byte-level BPE).
    Prompts longer than the context keep their last ``n_ctx - max_new_tokens`` tokens.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tokenizer is None:
        raise ValueError("greedy decoding needs a tokenizer (load_model gives model.tokenizer)")
    n_ctx = int(model.cfg.n_ctx)
    keep = n_ctx - max_new_tokens
    if keep < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room in n_ctx={n_ctx}")
    eos = getattr(tokenizer, "eos_token_id", None)
    pad = int(eos) if eos is not None else 0
    # Trailing blanks leave the input: byte-level BPE writes the space before a word as part of
    # the word's token (`` strlen``), so a prompt ending in a lone space token is text the model
    # never saw. The model writes the blanks itself, and matching ignores surrounding whitespace.
    inputs = [p.rstrip(" \t") for p in prompts]
    encoded = tokenizer(inputs, add_special_tokens=False)["input_ids"] if inputs else []
    ids = []
    for n, e in enumerate(encoded):
        e = ([int(eos)] if prepend_eos and eos is not None else []) + list(e)
        if not e:
            raise ValueError(f"prompt {n} is blank and there is no EOS token to start from")
        ids.append(e[-keep:])
    device = model_device(model)
    was_training = getattr(model, "training", False)
    model.eval()
    out: list[tuple[str, bool]] = [("", False)] * len(ids)
    # Similar lengths share a batch, so little of each forward is padding.
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        for batch in tqdm(batches, desc="greedy decoding", leave=False, disable=not progress):
            rows = [ids[i] for i in batch]
            lengths = torch.tensor([len(r) for r in rows], device=device)
            width = int(lengths.max()) + max_new_tokens
            buf = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
            for j, r in enumerate(rows):
                buf[j, : len(r)] = torch.tensor(r, dtype=torch.long)
            generated: list[list[int]] = [[] for _ in rows]
            done = [False] * len(rows)
            ended = [False] * len(rows)
            for _ in range(max_new_tokens):
                cur = int(lengths.max())
                nxt = _next_tokens(model, buf[:, :cur], lengths).tolist()
                for j, tok in enumerate(nxt):
                    if done[j]:
                        continue
                    if eos is not None and tok == eos:
                        done[j] = ended[j] = True
                        continue
                    buf[j, lengths[j]] = tok
                    lengths[j] += 1
                    generated[j].append(tok)
                    text = tokenizer.decode(generated[j])
                    if ("\n" in text) if stop_at_newline else _identifier_complete(text):
                        done[j] = True
                if all(done):
                    break
            for j, i in enumerate(batch):
                out[i] = (tokenizer.decode(generated[j]), ended[j])
    finally:
        if was_training:
            model.train()
    return out


# ---------------------------------------------------------------------------------------------
# Completion accuracy


@dataclass(frozen=True)
class Completion:
    """One item's greedy continuation and whether it matched."""

    index: int
    generated: str
    ended: bool
    identifier_match: bool
    line_match: bool | None


def _identifier_match(generated: str, answer: str, ended: bool) -> bool:
    s, a = generated.lstrip(), answer.strip()
    if not s.startswith(a):
        return False
    if len(s) == len(a):
        return ended
    return _IDENT_CHAR.match(s[len(a)]) is None


def _line_match(generated: str, line_answer: str, ended: bool) -> bool:
    nl = generated.find("\n")
    if nl < 0 and not ended:
        return False  # the line was not finished within the budget
    line = generated if nl < 0 else generated[:nl]
    return line.strip() == line_answer.strip()


@dataclass
class CompletionResult:
    """Exact-match rates over a set of items, with bootstrap intervals.

    Intervals resample item groups (documents, facts) when the items carry groups, else items.
    ``line_accuracy`` is None when no item has a line answer.
    """

    items: list[CompletionItem]
    outcomes: list[Completion]
    identifier_accuracy: CI
    line_accuracy: CI | None

    @property
    def n(self) -> int:
        return len(self.items)

    def solved(self, by: str = "identifier") -> set[int]:
        """Indices of the items solved (``by="identifier"`` or ``"line"``)."""
        if by not in ("identifier", "line"):
            raise ValueError(f"by must be 'identifier' or 'line', got {by!r}")
        key = "identifier_match" if by == "identifier" else "line_match"
        return {o.index for o in self.outcomes if getattr(o, key)}

    def to_dataframe(self) -> pd.DataFrame:
        """One row per item: its fields, the continuation and both match flags."""
        rows = []
        for item, o in zip(self.items, self.outcomes, strict=True):
            rows.append(
                {
                    "index": o.index,
                    **item.to_dict(),
                    "generated": o.generated,
                    "ended": o.ended,
                    "identifier_match": o.identifier_match,
                    "line_match": o.line_match,
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """Accuracies and intervals as a flat dict (one table row)."""
        d: dict[str, Any] = {
            "n": self.n,
            "identifier_accuracy": self.identifier_accuracy.estimate,
            "identifier_ci_low": self.identifier_accuracy.low,
            "identifier_ci_high": self.identifier_accuracy.high,
        }
        la = self.line_accuracy
        d["n_line"] = 0 if la is None else la.n
        d["line_accuracy"] = math.nan if la is None else la.estimate
        d["line_ci_low"] = math.nan if la is None else la.low
        d["line_ci_high"] = math.nan if la is None else la.high
        return d


def _rate_ci(
    values: np.ndarray, groups: list[str | None], n_boot: int, level: float, seed: int
) -> CI:
    if values.size == 0:
        return CI(math.nan, math.nan, math.nan, 0)
    if all(g is not None for g in groups) and len(set(groups)) < len(groups):
        return grouped_bootstrap_ci(values, np.asarray(groups), n_boot=n_boot, ci=level, seed=seed)
    return bootstrap_ci(values, n_boot=n_boot, ci=level, seed=seed)


def completion_accuracy(
    model: HookedModel,
    tokenizer: Any,
    items: Sequence[Any],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    prepend_eos: bool = True,
    progress: bool = True,
) -> CompletionResult:
    """Greedy-decode every item and score exact matches of the identifier and of the line.

    Args:
        model: any hooked model (TL 3 ``HookedTransformer`` or TL 4 ``TransformerBridge``).
        tokenizer: its tokenizer (``model.tokenizer`` after :func:`babel_interp.model.load_model`).
        items: objects with ``prompt`` and ``answer`` (and optionally ``line_answer``): see
            :func:`as_completion_item`.
        max_new_tokens: decoding budget per item; lines longer than this count as misses.
        n_boot, level, seed: the bootstrap of the intervals.
        prepend_eos: start each prompt after an EOS document separator.
    """
    items_ = [as_completion_item(x) for x in items]
    if not items_:
        raise ValueError("completion_accuracy needs at least one item")
    with_lines = any(it.line_answer is not None for it in items_)
    conts = greedy_continuations(
        model,
        tokenizer,
        [it.prompt for it in items_],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stop_at_newline=with_lines,
        prepend_eos=prepend_eos,
        progress=progress,
    )
    outcomes = []
    for i, (it, (text, ended)) in enumerate(zip(items_, conts, strict=True)):
        line = None if it.line_answer is None else _line_match(text, it.line_answer, ended)
        outcomes.append(Completion(i, text, ended, _identifier_match(text, it.answer, ended), line))
    return _summarize(items_, outcomes, n_boot, level, seed)


def _summarize(
    items: list[CompletionItem],
    outcomes: list[Completion],
    n_boot: int,
    level: float,
    seed: int,
) -> CompletionResult:
    ident = np.array([o.identifier_match for o in outcomes], dtype=float)
    groups = [it.group for it in items]
    id_ci = _rate_ci(ident, groups, n_boot, level, seed)
    line_ci = None
    keep = [i for i, o in enumerate(outcomes) if o.line_match is not None]
    if keep:
        line_vals = np.array([float(outcomes[i].line_match) for i in keep])
        line_ci = _rate_ci(line_vals, [groups[i] for i in keep], n_boot, level, seed)
    return CompletionResult(items, outcomes, id_ci, line_ci)


# ---------------------------------------------------------------------------------------------
# Validation loss from the corpus


@dataclass(frozen=True)
class ValidationLoss:
    """Mean next-token loss of one language's validation tokens, in nats and bits per byte."""

    language: str
    loss: float
    bpb: float
    n_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.inference_mode()
def validation_loss(
    model: HookedModel,
    corpus: Any,
    language: str,
    seq_len: int | None = None,
    max_tokens: int = 200_000,
    batch_size: int = 8,
    progress: bool = False,
) -> ValidationLoss:
    """Loss of ``model`` on the first ``max_tokens`` of ``language`` in the validation split.

    ``corpus`` is a corpus directory or a :class:`babel_interp.corpus.shards.CorpusReader`.
    Consecutive non-overlapping windows of ``seq_len`` (default: the model's context) are scored;
    every target token counts, EOS included, as in ``bytes_per_token``, so ``bpb = loss / ln 2 /
    bytes_per_token``. The windows are fixed, so two checkpoints are compared on the same text.
    """
    reader = corpus if isinstance(corpus, CorpusReader) else CorpusReader(corpus)
    split = reader.split("val")
    lo, hi = split.language_range(language)
    seq_len = int(seq_len or model.cfg.n_ctx)
    if not 1 <= seq_len <= int(model.cfg.n_ctx):
        raise ValueError(f"seq_len must lie in [1, n_ctx={model.cfg.n_ctx}], got {seq_len}")
    hi = min(hi, lo + max_tokens + 1)
    n_windows = (hi - lo - 1) // seq_len
    if n_windows < 1:
        raise ValueError(
            f"language {language!r} has {hi - lo} validation tokens: fewer than one window of "
            f"{seq_len} + 1"
        )
    device = model_device(model)
    was_training = getattr(model, "training", False)
    model.eval()
    total, count = 0.0, 0
    starts = [lo + k * seq_len for k in range(n_windows)]
    batches = [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]
    try:
        for batch in tqdm(batches, desc=f"val loss {language}", leave=False, disable=not progress):
            windows = np.stack([split.window(s, seq_len + 1)[0] for s in batch])
            tokens = torch.from_numpy(windows).to(device)
            logits = model(tokens[:, :-1], return_type="logits").float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += tokens[:, 1:].numel()
    finally:
        if was_training:
            model.train()
    mean = total / count
    return ValidationLoss(
        language=language,
        loss=mean,
        bpb=mean / math.log(2) / reader.bytes_per_token(language, "val"),
        n_tokens=count,
    )


# ---------------------------------------------------------------------------------------------
# Series over a run


def _num(v: Any) -> float:
    # The metrics log writes NaN and inf as null.
    return math.nan if v is None else float(v)


def _eval_rows(records: list[dict]) -> list[dict]:
    """Per-language evaluation rows from metrics records.

    Reads records of type ``eval`` (the ``type`` field; ``kind`` is accepted too) or any record
    carrying ``val_loss``, whose ``val_loss`` / ``val_bpb`` map languages to values.
    """
    rows = []
    for r in records:
        is_eval = r.get("type") == "eval" or r.get("kind") == "eval" or "val_loss" in r
        if "step" not in r or not is_eval:
            continue
        losses = r.get("val_loss") or {}
        bpbs = r.get("val_bpb") or {}
        if not isinstance(losses, dict) or not isinstance(bpbs, dict):
            continue
        for lang in sorted(set(losses) | set(bpbs)):
            rows.append(
                {
                    "step": int(r["step"]),
                    "language": lang,
                    "val_loss": _num(losses.get(lang)),
                    "val_bpb": _num(bpbs.get(lang)),
                }
            )
    return rows


def performance_series(
    run: Run | str | os.PathLike, languages: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-language validation loss and bits per byte at each checkpoint of a run.

    One row per (checkpoint, language) with ``step``, ``language``, ``val_loss`` (nats/token),
    ``val_bpb``, ``eval_step`` (the evaluation used: the one at the checkpoint's step, else the
    latest before it; NaN values when none), ``tokens_seen`` (of that language) and
    ``total_tokens``. A run without checkpoints gives its evaluations as logged.
    """
    run = Run.of(run)
    rows = _eval_rows(run.metrics())
    if languages is not None:
        rows = [r for r in rows if r["language"] in set(languages)]
    cols = ["step", "language", "val_loss", "val_bpb", "eval_step", "tokens_seen", "total_tokens"]
    evals = pd.DataFrame(rows, columns=["step", "language", "val_loss", "val_bpb"])
    # A resumed run may log a step twice: the later record wins.
    evals = evals.drop_duplicates(["step", "language"], keep="last").sort_values("step")
    try:
        ckpts = run.checkpoints()
    except FileNotFoundError:
        ckpts = []
    if not ckpts:
        out = evals.assign(eval_step=evals["step"], tokens_seen=np.nan, total_tokens=np.nan)
        return out[cols].reset_index(drop=True)
    langs = list(languages) if languages is not None else sorted(evals["language"].unique())
    out = []
    for c in ckpts:
        for lang in langs:
            e = evals[(evals["language"] == lang) & (evals["step"] <= c.step)]
            row = {
                "step": c.step,
                "language": lang,
                "val_loss": math.nan,
                "val_bpb": math.nan,
                "eval_step": math.nan,
                "tokens_seen": c.tokens_seen.get(lang, math.nan),
                "total_tokens": c.total_tokens,
            }
            if len(e):
                last = e.iloc[-1]
                row.update(
                    val_loss=last["val_loss"], val_bpb=last["val_bpb"], eval_step=last["step"]
                )
            out.append(row)
    return pd.DataFrame(out, columns=cols)


def evaluate_checkpoints(
    run: Run | str | os.PathLike,
    items: Sequence[Any],
    steps: Sequence[int] | None = None,
    device: str | torch.device | None = "auto",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[int, CompletionResult]]:
    """Completion accuracy of every checkpoint (or those at ``steps``) on the same items.

    Returns a table with one row per (step, language) of the items (``"all"`` pools every item
    when there are several languages, and stands for items without one) and
    the per-checkpoint :class:`CompletionResult` for item-level use (e.g. the transfer ratio).
    ``device``: see :func:`babel_interp.devices.resolve_device`.
    """
    run = Run.of(run)
    items_ = [as_completion_item(x) for x in items]
    if not items_:
        raise ValueError("evaluate_checkpoints needs at least one item")
    ckpts = run.checkpoints(steps)
    if not ckpts:
        raise FileNotFoundError(f"run {run.path} has no complete checkpoint")
    rows = []
    results: dict[int, CompletionResult] = {}
    for c in tqdm(ckpts, desc="checkpoints", disable=not progress):
        model, _ = run.load_model(c, device=device)
        res = completion_accuracy(
            model,
            model.tokenizer,
            items_,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            n_boot=n_boot,
            level=level,
            seed=seed,
            progress=False,
        )
        results[c.step] = res
        by_lang: dict[str, list[int]] = {}
        for i, it in enumerate(items_):
            by_lang.setdefault(it.language or "all", []).append(i)
        if len(by_lang) > 1:
            rows.append({"step": c.step, "language": "all", **res.summary()})
        for lang, idx in sorted(by_lang.items()):
            sub = _summarize(
                [items_[i] for i in idx], [res.outcomes[i] for i in idx], n_boot, level, seed
            )
            rows.append({"step": c.step, "language": lang, **sub.summary()})
        del model
    return pd.DataFrame(rows), results


# ---------------------------------------------------------------------------------------------
# Run-level analysis (what ``babel-interp analyze performance`` runs)

ANALYZER = "performance"
VAL_SERIES = "val_series.csv"
COMPLETION = "completion.csv"
COMPLETION_ITEMS = "completion_items.csv"


def replace_rows_csv(
    df: pd.DataFrame, path: str | os.PathLike, column: str, values: Iterable[Any]
) -> Path:
    """Rewrite a CSV table keeping its rows whose ``column`` is not in ``values`` and adding
    ``df``: one table can collect several languages' analyses, each rerun replacing its own."""
    path = Path(path)
    drop = set(values)
    if path.is_file():
        old = pd.read_csv(path)
        if column in old.columns:
            old = old[~old[column].isin(drop)]
            df = pd.concat([old, df], ignore_index=True) if len(old) else df
    return write_csv_atomic(path, df)


def synthetic_config_of_run(run: Run | str | os.PathLike) -> SyntheticConfig | None:
    """The ``SyntheticConfig`` the run's corpus was generated from, or None (not synthetic).

    Read from the corpus manifest (``build.config.sources``) of the run's corpus
    (:attr:`babel_interp.runs.Run.corpus_dir`); a run whose corpus is gone is not synthetic
    as far as the analyzers can tell.
    """
    run = Run.of(run)
    if not run.config.get("corpus"):
        return None
    try:
        manifest_path = run.corpus_dir / MANIFEST
    except FileNotFoundError:
        return None
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    sources = manifest.get("build", {}).get("config", {}).get("sources", [])
    for src in sources:
        if isinstance(src, dict) and src.get("kind") == "synthetic":
            return SyntheticConfig.from_dict(src.get("options", {}))
    return None


def target_languages(run: Run | str | os.PathLike, primary: str = "python") -> list[str]:
    """Languages other than ``primary`` that the run's last checkpoint has trained on."""
    seen = Run.of(run).latest().tokens_seen
    return sorted(lang for lang, n in seen.items() if n > 0 and lang != primary)


def single_target_language(run: Run, language: str | None, primary: str = "python") -> str:
    """``language``, or when None the run's one target language (:func:`target_languages`).

    The per-language analyzers analyze one target at a time: a run trained on several asks
    the caller to name one.
    """
    if language is not None:
        return language
    langs = target_languages(run, primary)
    if len(langs) != 1:
        raise ValueError(
            f"run {run.path} trained on target languages {langs}: name one with --language"
        )
    return langs[0]


@dataclass
class PerformanceResult:
    """What :func:`analyze_run` measured on a run.

    ``val_series``: validation loss and bits per byte per (checkpoint, language), from the
    trainer's eval records (:func:`performance_series`). ``completion`` (accuracy per step and
    language, with intervals) and ``completion_items`` (every item's continuation per step) are
    None when completion accuracy was not measured.
    """

    val_series: pd.DataFrame
    completion: pd.DataFrame | None = None
    completion_items: pd.DataFrame | None = None

    def to_dataframe(self) -> pd.DataFrame:
        """The validation series: one row per (checkpoint, language)."""
        return self.val_series.copy()

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``val_series.csv`` and, when measured, ``completion.csv`` and
        ``completion_items.csv`` under ``directory``; rows of other languages already in the
        completion tables are kept (each rerun replaces its own languages)."""
        out = Path(directory)
        paths = [write_csv_atomic(out / VAL_SERIES, self.val_series)]
        if self.completion is not None:
            langs = sorted(set(self.completion["language"]))
            paths.append(replace_rows_csv(self.completion, out / COMPLETION, "language", langs))
            if self.completion_items is not None:
                paths.append(
                    replace_rows_csv(
                        self.completion_items, out / COMPLETION_ITEMS, "language", langs
                    )
                )
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike) -> PerformanceResult:
        """The tables :meth:`save` wrote under ``directory`` (the completion tables when there)."""
        d = Path(directory)
        if not (d / VAL_SERIES).is_file():
            raise FileNotFoundError(f"{d / VAL_SERIES} is missing: run `analyze performance`")

        def table(name: str) -> pd.DataFrame | None:
            return pd.read_csv(d / name) if (d / name).is_file() else None

        return cls(pd.read_csv(d / VAL_SERIES), table(COMPLETION), table(COMPLETION_ITEMS))


def _held_out_items(
    run: Run,
    items: Sequence[Any] | None,
    languages: Sequence[str] | None,
    primary: str,
    n_documents: int,
    seed: int,
) -> list[CompletionItem]:
    """``items``, or held-out synthetic items of ``languages`` (default: the run's targets)."""
    if items is not None:
        return [as_completion_item(x) for x in items]
    synth = synthetic_config_of_run(run)
    if synth is None:
        raise ValueError(
            f"run {run.path} was not trained on the synthetic corpus: pass completion items "
            "(--probes FILE) or skip completion accuracy (--no-completion)"
        )
    langs = list(languages) if languages else target_languages(run, primary)
    if not langs:
        raise ValueError(f"run {run.path} has trained on no language besides {primary!r}")
    out: list[CompletionItem] = []
    for lang in langs:
        out += synthetic_completion_items(synth, lang, n_documents, seed=seed)
    return out


def analyze_run(
    run: Run | str | os.PathLike,
    items: Sequence[Any] | None = None,
    languages: Sequence[str] | None = None,
    primary: str = "python",
    n_documents: int = 40,
    steps: Sequence[int] | None = None,
    device: str | torch.device | None = "auto",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    completion: bool = True,
    progress: bool = True,
) -> PerformanceResult:
    """Per-checkpoint performance of a run, saved under ``RUN/analysis/performance/``.

    The validation series always (from the trainer's eval records). With ``completion``: the
    completion accuracy of every checkpoint (or those at ``steps``) on ``items``, or, when none
    are given and the run's corpus is synthetic, on held-out synthetic items for ``languages``
    (default: the run's target languages). See :class:`PerformanceResult` for the tables.
    """
    run = Run.of(run)
    val = performance_series(run)
    result = PerformanceResult(val)
    if completion:
        items_ = _held_out_items(run, items, languages, primary, n_documents, seed)
        summary, results = evaluate_checkpoints(
            run,
            items_,
            steps=steps,
            device=device,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            n_boot=n_boot,
            seed=seed,
            progress=progress,
        )
        per_item = pd.concat(
            [results[s].to_dataframe().assign(step=s) for s in sorted(results)], ignore_index=True
        )
        per_item["language"] = per_item["language"].fillna("all")
        result = PerformanceResult(val, summary, per_item)
    result.save(run.analysis_dir(ANALYZER))
    return result
