"""The working-language analyzer: which language do a model's intermediate layers "think" in?

For each probe (a target-language prompt where a built-in is due, see
:mod:`babel_interp.analysis.working_language.probes`), each layer's residual stream at the last
prompt position is
decoded with a lens (the logit lens: the final LayerNorm recomputed on that residual, then the
unembedding; or a tuned lens, :mod:`babel_interp.analysis.working_language.tuned_lens`). The
probability mass on
the primary identifier's token set is compared with the mass on the target identifier's set
(:mod:`babel_interp.analysis.working_language.token_sets`). The same is measured at two controls
from the same
document, because a raw primary-vs-target comparison is mostly a base rate: a random-init model
already "prefers" whichever set has more short, frequent tokens. The *excess* (mean
``log(P_primary / P_target)`` at probes minus at their controls) removes that. Matched controls
end, where the document allows, in the probe's last token (the records say which do), and a
random-init model is judged over several inits (:func:`random_init_baseline`): one fixed random
network has an excess of its own wherever probe and control contexts differ.

A competence gate reports, per checkpoint, how often the model's own output predicts the
identifier (top-1 / top-5 on its first token) and the absolute masses: a probe says little about
a model that cannot yet produce the built-ins.

Memory is bounded by design: hooks keep only the last prompt position of each residual
([layers, batch, d_model]); the forward stops after the last hook (no [batch, pos, vocab]
logits); and the unembedding streams over vocabulary chunks with a running log-sum-exp, so no
[layers, batch, pos, vocab] tensor (nor even a full [batch, vocab] softmax) is ever built.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from babel_interp.analysis.layers import residual_site
from babel_interp.analysis.stats import (
    CI,
    bootstrap_ci,
    paired_bootstrap_ci,
    paired_two_stage_bootstrap_ci,
    t_interval,
    t_prediction_interval,
    two_stage_bootstrap_ci,
)
from babel_interp.analysis.working_language.probes import (
    CONTROL_MATCH,
    Probe,
    build_probes,
    check_coverage,
    probes_from_corpus,
    save_probes_jsonl,
)
from babel_interp.analysis.working_language.regions import REGIONS, decoded_depth, layer_region
from babel_interp.analysis.working_language.token_sets import (
    DROPPED_TOKEN_COLUMNS,
    DroppedPair,
    TokenSetReport,
    TokenVocabulary,
    build_token_sets,
    dropped_token_counts,
)
from babel_interp.analysis.working_language.tuned_lens import load_or_train_tuned_lens
from babel_interp.config import ConfigBase, check_int
from babel_interp.devices import model_device, resolve_device
from babel_interp.io import write_csv_atomic, write_json_atomic, write_table_atomic
from babel_interp.languages import UnknownLanguageError, get_language
from babel_interp.model import (
    MODEL_CONFIG,
    TOKENIZER_SUBDIR,
    HookedModel,
    ModelConfig,
    build_model,
    prepare_tokenizer,
    resid_hook_names,
)
from babel_interp.runs import Run

LENS_KINDS = ("logit", "tuned", "both")
SITES = ("probe", "matched", "random")
PREPEND = ("auto", "bos", "eos", "none")
# What the bootstrap intervals resample: built-in pairs, then probes within each drawn pair
# (default), or probes as if independent.
CI_UNITS = ("pair", "probe")
COMPETENCE_METRICS = ("top1", "top5")
TOP_K = 5
ANALYZER = "working_language"
# The files of a saved result (RUN/analysis/working_language/): records.csv|parquet and these.
RECORDS = "records"
AGGREGATE_CSV = "aggregate.csv"
REGIONS_CSV = "regions.csv"
COMPETENCE_CSV = "competence.csv"
TOKEN_SETS_CSV = "token_sets.csv"
DROPPED_PAIRS_CSV = "dropped_pairs.csv"
DROPPED_TOKENS_CSV = "dropped_tokens.csv"
LENS_COMPARISON_CSV = "lens_comparison.csv"
RANDOM_INIT_CSV = "random_init.csv"
RANDOM_INIT_SUMMARY_CSV = "random_init_summary.csv"
SUMMARY_JSON = "summary.json"
PROBES_JSONL = "probes.jsonl"
_HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|mid|post)$")


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class WorkingLanguageConfig(ConfigBase):
    """What to probe and how.

    ``layers`` lists residual hook names to decode (default: every block's ``hook_resid_pre``,
    plus ``hook_resid_mid`` with ``include_mid``, plus the last block's ``hook_resid_post``, which
    is always added: the competence gate reads the output there). ``vocab_chunk`` bounds the
    [layers, batch, chunk] logits held at once. ``min_token_chars`` drops shorter tokens from the
    identifier sets; ``drop_cross_language_tokens`` (default) also drops one-character tokens and
    tokens that are complete identifiers of the other language (``str`` from PHP's ``strlen``
    set: it is Python's ``str``), listing each in the result's ``dropped_tokens``; ``False``
    gives the sets of earlier versions. ``short_token_chars`` only sets which tokens count as
    "short" in the report.
    ``prepend`` puts the tokenizer's BOS (or EOS, the document separator of this project's corpora)
    before every prompt; ``auto`` uses BOS when the tokenizer has one, else EOS. Prompts longer
    than ``max_prompt_tokens`` (default: the model's context) keep their last tokens.
    ``ci_unit`` is what the confidence intervals resample: ``"pair"`` (default), a two-stage
    cluster bootstrap that draws built-in pairs with replacement and then probes within each
    drawn pair (:func:`babel_interp.analysis.stats.two_stage_bootstrap_ci`; the ~10 prompts of
    one pair share its token sets, so they are not independent), or ``"probe"``, probes as if
    independent (narrower, and too narrow wherever pairs differ). A checkpoint is
    *competent* when its output ``competence_metric`` accuracy on the probes' first identifier
    token reaches ``competence_threshold``. ``control_match`` is how probes built for a run
    (:func:`probes_for_run`) choose their matched control: ``"last_token"`` (default) takes a
    call site whose prompt ends in the probe's last token where the document has one, since a
    network's lean at a position depends mostly on its last token and a random-init model showed
    a spurious "excess" with the older rule, ``"document"`` (the nearest call site); see
    :mod:`babel_interp.analysis.working_language.probes`. ``n_random_init`` > 0 makes
    :func:`analyze_run` also
    measure that many freshly initialized models of the checkpoints' architecture (seeds 0, 1,
    ...) on the same probes (:func:`random_init_baseline`): the interval a trained model's excess
    should be read against.
    """

    primary: str = "python"
    target: str = "php"
    include_mid: bool = False
    layers: tuple[str, ...] | None = None
    batch_size: int = 16
    vocab_chunk: int = 8192
    lens: str = "logit"
    min_token_chars: int = 1
    drop_cross_language_tokens: bool = True
    short_token_chars: int = 2
    n_per_pair: int = 10
    max_prompt_tokens: int | None = None
    prepend: str = "auto"
    n_boot: int = 1000
    ci: float = 0.95
    ci_unit: str = "pair"
    competence_metric: str = "top1"
    competence_threshold: float = 0.10
    control_match: str = "last_token"
    n_random_init: int = 0
    seed: int = 0
    tuned: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check every field; errors name ``WorkingLanguageConfig.<field>``."""
        for name in ("primary", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"WorkingLanguageConfig.{name} must be a language name")
        if _canon(self.primary) == _canon(self.target):
            raise ValueError(
                f"WorkingLanguageConfig.target must differ from primary, both are {self.primary!r}"
            )
        if self.layers is not None:
            if isinstance(self.layers, str) or not all(isinstance(x, str) for x in self.layers):
                raise ValueError(
                    "WorkingLanguageConfig.layers must be a list of hook names, "
                    f"got {self.layers!r}"
                )
            bad = [x for x in self.layers if not _HOOK_RE.match(x)]
            if bad or not self.layers:
                raise ValueError(
                    f"WorkingLanguageConfig.layers must name residual hooks "
                    f"(blocks.L.hook_resid_pre|mid|post), got {bad or self.layers!r}"
                )
            self.layers = tuple(self.layers)
        for name, low in (
            ("batch_size", 1),
            ("vocab_chunk", 1),
            ("min_token_chars", 1),
            ("short_token_chars", 0),
            ("n_per_pair", 1),
            ("n_boot", 1),
            ("n_random_init", 0),
        ):
            check_int("WorkingLanguageConfig", name, getattr(self, name), low)
        if self.max_prompt_tokens is not None and (
            not isinstance(self.max_prompt_tokens, int) or self.max_prompt_tokens < 1
        ):
            raise ValueError(
                f"WorkingLanguageConfig.max_prompt_tokens must be None or an int >= 1, "
                f"got {self.max_prompt_tokens!r}"
            )
        for name, allowed in (
            ("lens", LENS_KINDS),
            ("prepend", PREPEND),
            ("ci_unit", CI_UNITS),
            ("competence_metric", COMPETENCE_METRICS),
            ("control_match", CONTROL_MATCH),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"WorkingLanguageConfig.{name} must be one of {allowed}, "
                    f"got {getattr(self, name)!r}"
                )
        if not 0.0 < self.ci < 1.0:
            raise ValueError(f"WorkingLanguageConfig.ci must lie in (0, 1), got {self.ci!r}")
        if not 0.0 <= self.competence_threshold <= 1.0:
            raise ValueError(
                f"WorkingLanguageConfig.competence_threshold must lie in [0, 1], "
                f"got {self.competence_threshold!r}"
            )
        if not isinstance(self.seed, int):
            raise ValueError(f"WorkingLanguageConfig.seed must be an int, got {self.seed!r}")
        if not isinstance(self.drop_cross_language_tokens, bool):
            raise ValueError(
                "WorkingLanguageConfig.drop_cross_language_tokens must be a bool, "
                f"got {self.drop_cross_language_tokens!r}"
            )
        if not isinstance(self.tuned, dict):
            raise ValueError(
                "WorkingLanguageConfig.tuned must be a dict of TunedLensConfig fields, "
                f"got {type(self.tuned).__name__}"
            )

    @property
    def lenses(self) -> list[str]:
        """The lens names this config computes."""
        return ["logit", "tuned"] if self.lens == "both" else [self.lens]


def token_sets_for(
    tokenizer: Any,
    probes: Sequence[Probe],
    cfg: WorkingLanguageConfig,
    vocab_size: int | None = None,
) -> TokenSetReport:
    """The token sets of the probes' pairs as ``cfg`` asks for them (minimum length, and the
    other language's identifiers dropped with ``drop_cross_language_tokens``)."""
    return build_token_sets(
        tokenizer,
        [(p.concept, p.primary, p.target) for p in probes],
        cfg.min_token_chars,
        vocab_size=vocab_size,
        drop_cross_language=cfg.drop_cross_language_tokens,
        primary_language=cfg.primary,
        target_language=cfg.target,
    )


def _canon(name: str) -> str:
    """The registry's canonical name of a language, or the lowercased name if unregistered."""
    try:
        return get_language(name).name
    except UnknownLanguageError:
        return name.strip().lower()


# ------------------------------------------------------------------------------------------------
# Lenses and layers
# ------------------------------------------------------------------------------------------------


@runtime_checkable
class Lens(Protocol):
    """Maps a layer's residual to the residual the unembedding should decode."""

    name: str

    def transform(
        self, h: Float[Tensor, "... d_model"], layer: str
    ) -> Float[Tensor, "... d_model"]: ...


class LogitLens:
    """The logit lens: the residual itself (the final LayerNorm and unembedding follow)."""

    name = "logit"

    def transform(
        self, h: Float[Tensor, "... d_model"], layer: str
    ) -> Float[Tensor, "... d_model"]:
        return h


def layer_position(hook_name: str) -> float:
    """Depth of a residual hook: ``blocks.L.hook_resid_pre`` is L, ``_mid`` L + 0.5, ``_post``
    L + 1."""
    m = _HOOK_RE.match(hook_name)
    if m is None:
        raise ValueError(f"{hook_name!r} is not a residual hook name (blocks.L.hook_resid_*)")
    layer, kind = int(m.group(1)), m.group(2)
    return layer + {"pre": 0.0, "mid": 0.5, "post": 1.0}[kind]


def _forward_order(hook_name: str) -> tuple[float, int]:
    # blocks.L.hook_resid_post fires before blocks.(L+1).hook_resid_pre at the same depth.
    return (layer_position(hook_name), 0 if hook_name.endswith("post") else 1)


def select_hooks(n_layers: int, cfg: WorkingLanguageConfig) -> list[str]:
    """The hook names ``cfg`` decodes on an ``n_layers`` model, in forward order, final included."""
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    names = (
        list(cfg.layers) if cfg.layers is not None else resid_hook_names(n_layers, cfg.include_mid)
    )
    bad = [n for n in names if int(_HOOK_RE.match(n).group(1)) >= n_layers]
    if bad:
        raise ValueError(
            f"WorkingLanguageConfig.layers {bad} do not exist: the model has {n_layers} layers"
        )
    if final not in names:
        names.append(final)
    return sorted(dict.fromkeys(names), key=_forward_order)


# ------------------------------------------------------------------------------------------------
# Residual capture and streaming unembedding
# ------------------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by the last capture hook: nothing after it (final norm, unembedding) is needed."""


def collect_last_residuals(
    model: HookedModel,
    tokens: Int[Tensor, "batch pos"],
    last: Int[Tensor, " batch"],
    hook_names: Sequence[str],
) -> Float[Tensor, "layer batch d_model"]:
    """The residual at position ``last[b]`` of row ``b`` at each hook, in ``hook_names`` order.

    Hooks copy out one position per row as the forward pass runs, so memory holds
    [layers, batch, d_model] rather than a cache of [layers, batch, pos, d_model]; the forward
    stops at the last hook. Results are keyed by the names asked for (on TransformerLens 4.x,
    ``hook.name`` inside a callback is the canonical name, not the alias).
    """
    if tokens.ndim != 2 or last.shape != (tokens.shape[0],):
        raise ValueError(
            f"tokens must be [batch, pos] and last [batch], got {tokens.shape}, {last.shape}"
        )
    names = list(hook_names)
    stop = max(names, key=_forward_order)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    store: dict[str, Tensor] = {}

    def capture(act: Tensor, hook: Any, name: str) -> None:
        store[name] = act[rows, last.to(act.device)].detach().clone()
        if name == stop and len(store) == len(names):
            raise _StopForward

    with (
        torch.no_grad(),
        model.hooks(fwd_hooks=[(n, functools.partial(capture, name=n)) for n in names]),
    ):
        try:
            model(tokens, return_type=None)
        except _StopForward:
            pass
    missing = [n for n in names if n not in store]
    if missing:
        raise ValueError(f"the model never ran hook(s) {missing}: are they residual hooks of it?")
    return torch.stack([store[n] for n in names])


def _softcap(model: HookedModel) -> float:
    cap = getattr(model.cfg, "output_logits_soft_cap", 0.0)
    return float(cap) if cap and cap > 0 else 0.0


def _unembed(
    normed: Float[Tensor, "layer batch d_model"],
    w: Float[Tensor, "d_model n"],
    b: Float[Tensor, " n"] | None,
    cap: float,
) -> Float[Tensor, "layer batch n"]:
    logits = normed @ w.float()
    if b is not None:
        logits = logits + b.float()
    if cap:
        logits = cap * torch.tanh(logits / cap)
    return logits


def final_norm(model: HookedModel, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
    """The model's final LayerNorm (identity for a model without one), recomputed on ``x``."""
    ln = getattr(model, "ln_final", None)
    return x if ln is None else ln(x)


@dataclass
class VocabStats:
    """Streaming statistics of the lens distribution over the whole vocabulary."""

    log_z: Float[Tensor, "layer batch"]
    entropy: Float[Tensor, "layer batch"]
    kl_to_final: Float[Tensor, "layer batch"]
    top_values: Float[Tensor, "layer batch k"]
    top_ids: Int[Tensor, "layer batch k"]


def stream_vocab_stats(
    normed: Float[Tensor, "layer batch d_model"],
    w_u: Float[Tensor, "d_model d_vocab"],
    b_u: Float[Tensor, " d_vocab"] | None,
    chunk: int,
    softcap: float = 0.0,
    top_k: int = TOP_K,
) -> VocabStats:
    """Log-normalizer, entropy, KL to the last layer's distribution and top-k, one vocabulary
    chunk at a time (online softmax: running max, rescaled sums).

    The last entry along ``layer`` is the reference for ``kl_to_final`` (its own KL is 0).
    """
    n_layer, batch, _ = normed.shape
    d_vocab = w_u.shape[1]
    dev = normed.device
    m = torch.full((n_layer, batch), -math.inf, device=dev)
    s = torch.zeros((n_layer, batch), device=dev)
    t = torch.zeros((n_layer, batch), device=dev)
    cross = torch.zeros((n_layer, batch), device=dev)
    top_v = torch.empty((n_layer, batch, 0), device=dev)
    top_i = torch.empty((n_layer, batch, 0), dtype=torch.long, device=dev)
    for c0 in range(0, d_vocab, chunk):
        c1 = min(d_vocab, c0 + chunk)
        logits = _unembed(normed, w_u[:, c0:c1], None if b_u is None else b_u[c0:c1], softcap)
        new_m = torch.maximum(m, logits.amax(-1))
        scale = torch.exp(m - new_m)
        e = torch.exp(logits - new_m[..., None])
        s = s * scale + e.sum(-1)
        t = t * scale + (e * logits).sum(-1)
        # sum_v exp(l_final_v - m_final) * l_v: the cross term of KL(final || layer).
        cross = cross * scale[-1] + (e[-1][None] * logits).sum(-1)
        m = new_m
        k = min(top_k, c1 - c0)
        v, i = logits.topk(k, dim=-1)
        top_v = torch.cat([top_v, v], dim=-1)
        top_i = torch.cat([top_i, i + c0], dim=-1)
        if top_v.shape[-1] > top_k:
            top_v, sel = top_v.topk(top_k, dim=-1)
            top_i = top_i.gather(-1, sel)
        del logits, e
    log_z = m + torch.log(s)
    mean_logit = t / s
    entropy = log_z - mean_logit
    e_final_logit = cross / s[-1]
    kl = (mean_logit[-1] - log_z[-1])[None] - e_final_logit + log_z
    return VocabStats(log_z, entropy, kl.clamp_min(0.0), top_v, top_i)


def set_log_masses(
    normed: Float[Tensor, "layer batch d_model"],
    w_u: Float[Tensor, "d_model d_vocab"],
    b_u: Float[Tensor, " d_vocab"] | None,
    union_ids: Int[Tensor, " n_union"],
    masks: Mapping[str, Bool[Tensor, "batch n_union"]],
    log_z: Float[Tensor, "layer batch"],
    softcap: float = 0.0,
) -> dict[str, Float[Tensor, "layer batch"]]:
    """``log P(set)`` per row for each named set; a row's set is its mask over ``union_ids``.

    An empty set gives ``-inf`` (mass 0).
    """
    logits = _unembed(normed, w_u[:, union_ids], None if b_u is None else b_u[union_ids], softcap)
    out = {}
    for name, mask in masks.items():
        masked = logits.masked_fill(~mask[None], -math.inf)
        out[name] = torch.logsumexp(masked, dim=-1) - log_z
    return out


# ------------------------------------------------------------------------------------------------
# Result
# ------------------------------------------------------------------------------------------------

RECORD_COLUMNS = [
    "step", "target_tokens", "lens", "site", "probe", "concept", "primary", "target", "doc_id",
    "layer", "layer_pos", "p_primary", "p_target", "log_ratio", "mass_diff", "primary_wins",
    "entropy", "kl_to_final", "top1_id", "top1_token", "top1_lang", "short_share_primary",
    "short_share_target", "p_first", "top1_hit", "top5_hit", "same_last_token",
]  # fmt: skip
_STRING_COLUMNS = (
    "lens",
    "site",
    "concept",
    "primary",
    "target",
    "doc_id",
    "layer",
    "top1_token",
    "top1_lang",
)


@dataclass
class WorkingLanguageResult:
    """Per-probe, per-site, per-layer records of one or more checkpoints, and their summaries.

    ``records`` has one row per (step, lens, site, probe, layer); ``site`` is "probe", "matched"
    (the matched control) or "random" (the random-position control). ``p_first``, ``top1_hit``
    and ``top5_hit`` refer to the first token of the probe's identifier (NaN at controls).
    ``same_last_token`` (controls only) is 1 when the control's input ends in the same token as
    its probe's, under the model's tokenizer.

    The records are the main table (:meth:`to_dataframe`): every summary (:meth:`aggregate`,
    :meth:`regions`, :meth:`competence`, :meth:`lens_comparison`) is computed from them and the
    config, so a result read back with :meth:`load` gives the same summaries.
    """

    records: pd.DataFrame
    config: WorkingLanguageConfig
    token_sets: pd.DataFrame = field(default_factory=pd.DataFrame)
    dropped_pairs: list[DroppedPair] = field(default_factory=list)
    dropped_tokens: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=DROPPED_TOKEN_COLUMNS)
    )
    skipped: list[dict[str, Any]] = field(default_factory=list)
    coverage_issues: list[str] = field(default_factory=list)
    random_init: RandomInitBaseline | None = None

    def to_dataframe(self) -> pd.DataFrame:
        """The main table: the records, one row per (step, lens, site, probe, layer) (a copy)."""
        return self.records.copy()

    @property
    def layers(self) -> list[str]:
        order = self.records.drop_duplicates("layer").sort_values("layer_pos")
        return order["layer"].tolist()

    def aggregate(self) -> pd.DataFrame:
        """Per (step, lens, layer): shares, masses, excess over controls, with bootstrap CIs."""
        return aggregate_records(self.records, self.config)

    def regions(self) -> pd.DataFrame:
        """Per (step, lens, region): middle-layer and output excess, with intervals of the region
        mean (:func:`region_table`)."""
        return region_table(self.records, self.config)

    def competence(self) -> pd.DataFrame:
        """Per step: output-level top-1/top-5 accuracy on the probe identifiers, masses, gate."""
        return competence_table(self.records, self.config)

    def lens_comparison(self) -> pd.DataFrame:
        """Per (step, layer): the logit and tuned lens side by side (empty with one lens)."""
        return lens_comparison(self.records, self.aggregate())

    def dropped_pairs_frame(self) -> pd.DataFrame:
        cols = ["concept", "primary", "target", "reason", "n_shared"]
        rows = [
            dict(
                concept=d.concept,
                primary=d.primary,
                target=d.target,
                reason=d.reason,
                n_shared=len(d.shared_ids),
            )
            for d in self.dropped_pairs
        ]
        return pd.DataFrame(rows, columns=cols)

    @classmethod
    def concat(cls, results: Sequence[WorkingLanguageResult]) -> WorkingLanguageResult:
        """Results of several checkpoints (same config and probes) as one."""
        if not results:
            raise ValueError("no results to concatenate")
        first = results[0]
        skipped = [s for r in results for s in r.skipped]
        return cls(
            records=pd.concat([r.records for r in results], ignore_index=True),
            config=first.config,
            token_sets=first.token_sets,
            dropped_pairs=first.dropped_pairs,
            dropped_tokens=first.dropped_tokens,
            skipped=skipped,
            coverage_issues=first.coverage_issues,
        )

    def save(self, directory: str | os.PathLike, fmt: str = "csv") -> list[Path]:
        """Write every table under ``directory``; returns the paths written.

        ``records`` as CSV or Parquet (``fmt``); ``aggregate``, ``regions``, ``competence``,
        ``token_sets``, ``dropped_pairs`` and ``dropped_tokens`` (every token removed from a set,
        with its reason) as CSV; ``lens_comparison.csv`` with two lenses;
        ``random_init.csv`` and ``random_init_summary.csv`` with a random-init baseline; and
        ``summary.json``: the config, skipped probes, coverage issues, the dropped pairs with
        their shared token ids, the dropped-token counts (in all, per reason, per side), and the
        names of the files this save wrote (so :meth:`load`
        ignores tables an earlier save with other settings left behind). Every file is written
        atomically.
        """
        out = Path(directory)
        paths = [write_table_atomic(out / RECORDS, self.records, fmt)]
        paths.append(write_csv_atomic(out / AGGREGATE_CSV, self.aggregate()))
        paths.append(write_csv_atomic(out / REGIONS_CSV, self.regions()))
        paths.append(write_csv_atomic(out / COMPETENCE_CSV, self.competence()))
        paths.append(write_csv_atomic(out / TOKEN_SETS_CSV, self.token_sets))
        paths.append(write_csv_atomic(out / DROPPED_PAIRS_CSV, self.dropped_pairs_frame()))
        paths.append(write_csv_atomic(out / DROPPED_TOKENS_CSV, self.dropped_tokens))
        comparison = self.lens_comparison()
        if not comparison.empty:
            paths.append(write_csv_atomic(out / LENS_COMPARISON_CSV, comparison))
        if self.random_init is not None:
            paths.append(write_csv_atomic(out / RANDOM_INIT_CSV, self.random_init.to_dataframe()))
            paths.append(
                write_csv_atomic(out / RANDOM_INIT_SUMMARY_CSV, self.random_init.summary())
            )
        meta = dict(
            config=self.config.to_dict(),
            skipped=self.skipped,
            coverage_issues=self.coverage_issues,
            dropped_pairs=[d.to_dict() for d in self.dropped_pairs],
            dropped_tokens=dropped_token_counts(self.dropped_tokens),
            files=[p.name for p in paths],
        )
        paths.append(write_json_atomic(out / SUMMARY_JSON, meta))
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike) -> WorkingLanguageResult:
        """The result :meth:`save` wrote under ``directory`` (the summaries are recomputed from
        its records)."""
        d = Path(directory)
        if not (d / SUMMARY_JSON).is_file():
            raise FileNotFoundError(
                f"{d} holds no saved working-language result ({SUMMARY_JSON} is missing): run "
                "`analyze working-language`"
            )
        meta = json.loads((d / SUMMARY_JSON).read_text(encoding="utf-8"))
        files = meta.get("files")
        if files is None:  # saved without the list: whatever is there
            files = [p.name for p in sorted(d.iterdir(), key=lambda p: p.stat().st_mtime_ns)]
        records = [f for f in files if f in (f"{RECORDS}.csv", f"{RECORDS}.parquet")]
        if not records:
            raise FileNotFoundError(f"{d} holds no records.csv or records.parquet")
        config = dict(meta["config"])
        # Saved before the flag existed: its sets kept the other language's identifiers.
        config.setdefault("drop_cross_language_tokens", False)
        cfg = WorkingLanguageConfig.from_dict(config)
        random_init = None
        if RANDOM_INIT_CSV in files:
            random_init = RandomInitBaseline(_read_csv(d / RANDOM_INIT_CSV), ci=cfg.ci)
        return cls(
            records=read_records(d / records[-1]),
            config=cfg,
            # Token texts such as "nan" or "" stay strings.
            token_sets=_read_csv(d / TOKEN_SETS_CSV, keep_default_na=False),
            dropped_pairs=[DroppedPair.from_dict(x) for x in meta.get("dropped_pairs", [])],
            dropped_tokens=(
                _read_csv(d / DROPPED_TOKENS_CSV, keep_default_na=False)
                if DROPPED_TOKENS_CSV in files
                else pd.DataFrame(columns=DROPPED_TOKEN_COLUMNS)
            ),
            skipped=list(meta.get("skipped", [])),
            coverage_issues=list(meta.get("coverage_issues", [])),
            random_init=random_init,
        )


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """A saved CSV table; an empty frame for a table saved without columns (or missing)."""
    try:
        return pd.read_csv(path, **kwargs)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def read_records(path: str | os.PathLike) -> pd.DataFrame:
    """Read a records table written by :meth:`WorkingLanguageResult.save` (CSV or Parquet)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    # Token strings such as "nan" or "" must stay strings, while empty numeric cells are NaN.
    df = pd.read_csv(
        path,
        keep_default_na=False,
        na_values={c: ["", "nan", "NaN"] for c in RECORD_COLUMNS if c not in _STRING_COLUMNS},
    )
    for c in _STRING_COLUMNS:
        if c in df:
            df[c] = df[c].astype(str)
    for c in ("step", "target_tokens"):
        if c in df:
            df[c] = df[c].astype("Int64")
    return df


# ------------------------------------------------------------------------------------------------
# The analyzer
# ------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    probe: int
    site: int
    ids: list[int]
    first_id: int


def _prepend_id(tokenizer: Any, how: str) -> int | None:
    bos = getattr(tokenizer, "bos_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    if how == "none":
        return None
    if how == "bos":
        if bos is None:
            raise ValueError(
                "WorkingLanguageConfig.prepend='bos' but the tokenizer has no BOS token"
            )
        return int(bos)
    if how == "eos":
        if eos is None:
            raise ValueError(
                "WorkingLanguageConfig.prepend='eos' but the tokenizer has no EOS token"
            )
        return int(eos)
    for tid in (bos, eos):
        if tid is not None:
            return int(tid)
    return None


def encode_prompts(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """Token ids of each ``(prompt, continuation)`` as running text, split at the prompt's end.

    ``prompt + continuation`` is tokenized as one text; the input is every token that ends at or
    before the prompt's last character, and the first token due is the next one (-1 when the
    continuation is empty). So a space that a tokenizer folds into the following word
    (`` strlen``) leaves the input and belongs to the token due, as it would in a real file.
    Tokenizers without offset mappings fall back to tokenizing the prompt on its own.
    """
    if not pairs:
        return []
    texts = [p + c for p, c in pairs]
    try:
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        offsets = None
    out: list[tuple[list[int], int]] = []
    if offsets is not None:
        for (prompt, cont), ids, offs in zip(pairs, enc["input_ids"], offsets, strict=True):
            n = len(prompt)
            k = 0
            while k < len(ids) and offs[k][1] <= n:
                k += 1
            out.append((list(ids[:k]), int(ids[k]) if k < len(ids) and cont else -1))
        return out
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    fulls = tokenizer(texts, add_special_tokens=False)["input_ids"]
    conts = tokenizer([c or " " for _, c in pairs], add_special_tokens=False)["input_ids"]
    for (_, cont), p_ids, f_ids, c_ids in zip(pairs, prompts, fulls, conts, strict=True):
        n = len(p_ids)
        if not cont:
            first = -1
        elif len(f_ids) > n and list(f_ids[:n]) == list(p_ids):
            first = int(f_ids[n])
        else:
            first = int(c_ids[0]) if c_ids else -1
        out.append((list(p_ids), first))
    return out


def _build_items(
    tokenizer: Any, probes: Sequence[Probe], prepend: int | None, max_len: int
) -> tuple[list[_Item], list[dict[str, Any]]]:
    keys: list[tuple[int, int]] = []
    pairs: list[tuple[str, str]] = []
    for i, p in enumerate(probes):
        for site, prompt, cont in p.sites():
            keys.append((i, SITES.index(site)))
            pairs.append((prompt, cont))
    items, skipped = [], []
    keep = max_len - (1 if prepend is not None else 0)
    for (i, site), (ids, first) in zip(keys, encode_prompts(tokenizer, pairs), strict=True):
        ids = ids[-keep:] if keep > 0 else []
        if prepend is not None:
            ids = [prepend] + ids
        if not ids:
            skipped.append(dict(probe=i, site=SITES[site], reason="prompt encodes to no tokens"))
            continue
        items.append(_Item(i, site, ids, first if site == 0 else -1))
    return items, skipped


def analyze_working_language(
    model: HookedModel,
    tokenizer: Any,
    probes: Sequence[Probe],
    cfg: WorkingLanguageConfig | None = None,
    *,
    tuned_lens: Lens | None = None,
    token_sets: TokenSetReport | None = None,
    step: int | None = None,
    target_tokens: int | None = None,
    progress: bool = True,
) -> WorkingLanguageResult:
    """Decode every probe and control at every selected layer; see the module docstring.

    ``tokenizer`` must be the model's (``model.tokenizer`` for this project's checkpoints).
    ``tuned_lens`` is required when ``cfg.lens`` is "tuned" or "both". ``token_sets`` may be
    passed to reuse the sets across checkpoints of one run (they depend only on the tokenizer).
    Probes whose pair was dropped (empty token set) are skipped and listed in the result.
    """
    cfg = cfg or WorkingLanguageConfig()
    if tokenizer is None:
        raise ValueError("a tokenizer is required (pass model.tokenizer for a saved checkpoint)")
    if not probes:
        raise ValueError("no probes given")
    _check_languages(probes, cfg)
    lenses: list[Lens] = []
    for name in cfg.lenses:
        if name == "logit":
            lenses.append(LogitLens())
        elif tuned_lens is None:
            raise ValueError(
                f"WorkingLanguageConfig.lens={cfg.lens!r} needs a tuned lens: train one with "
                "babel_interp.analysis.working_language.tuned_lens.train_tuned_lens and "
                "pass tuned_lens="
            )
        else:
            lenses.append(tuned_lens)
    n_layers = int(model.cfg.n_layers)
    hooks = select_hooks(n_layers, cfg)
    d_vocab = int(model.cfg.d_vocab)
    if token_sets is None:
        token_sets = token_sets_for(tokenizer, probes, cfg, vocab_size=d_vocab)
    # Records keep each probe's index in ``probes``, so they map back to the caller's list.
    kept_index = [i for i, p in enumerate(probes) if token_sets.get(p.primary, p.target)]
    kept = [probes[i] for i in kept_index]
    skipped = [
        dict(probe=i, site="probe", reason=f"pair {p.primary}/{p.target} dropped", doc_id=p.doc_id)
        for i, p in enumerate(probes)
        if token_sets.get(p.primary, p.target) is None
    ]
    if not kept:
        reasons = "; ".join(f"{d.primary}/{d.target}: {d.reason}" for d in token_sets.dropped)
        raise ValueError(f"every probe's pair was dropped by the token-set filter ({reasons})")

    max_len = cfg.max_prompt_tokens or int(model.cfg.n_ctx)
    max_len = min(max_len, int(model.cfg.n_ctx))
    items, bad = _build_items(tokenizer, kept, _prepend_id(tokenizer, cfg.prepend), max_len)
    skipped.extend({**b, "probe": kept_index[b["probe"]]} for b in bad)
    too_big = max((max(it.ids) for it in items), default=-1)
    if too_big >= d_vocab:
        raise ValueError(
            f"the tokenizer produced token id {too_big}, outside the model's vocabulary "
            f"(d_vocab={d_vocab}): is it the model's own tokenizer?"
        )

    # Whether each control's input ends in the probe's last token: a context-driven lean of the
    # network (random-init ones included) cancels in the excess only where it does.
    last_id = np.full((len(SITES), len(kept)), -1, dtype=np.int64)
    for it in items:
        last_id[it.site, it.probe] = it.ids[-1]
    same_last = np.where(
        (last_id >= 0) & (last_id[:1] >= 0), (last_id == last_id[:1]).astype(float), np.nan
    )
    same_last[0] = np.nan

    # Union of every kept pair's ids, with per-pair membership masks over it.
    pair_keys = sorted({p.pair for p in kept})
    pair_index = {k: j for j, k in enumerate(pair_keys)}
    sets = [token_sets.pairs[k] for k in pair_keys]
    union = sorted({i for s in sets for i in s.primary_ids + s.target_ids})
    col = {tid: j for j, tid in enumerate(union)}
    membership = {
        name: torch.zeros((len(sets), len(union)), dtype=torch.bool)
        for name in ("primary", "target", "primary_short", "target_short")
    }
    for j, s in enumerate(sets):
        for name, ids in (
            ("primary", s.primary_ids),
            ("target", s.target_ids),
            ("primary_short", s.short_ids("primary", cfg.short_token_chars)),
            ("target_short", s.short_ids("target", cfg.short_token_chars)),
        ):
            membership[name][j, [col[i] for i in ids]] = True
    primary_sets = [set(s.primary_ids) for s in sets]
    target_sets = [set(s.target_ids) for s in sets]

    device = model_device(model)
    w_u, b_u = model.W_U, getattr(model, "b_U", None)
    union_t = torch.tensor(union, dtype=torch.long, device=w_u.device)
    cap = _softcap(model)
    n_lens, n_probes, n_layer = len(lenses), len(kept), len(hooks)
    shape = (n_lens, len(SITES), n_probes, n_layer)
    arrays = {
        name: np.full(shape, np.nan)
        for name in ("p_primary", "p_target", "log_ratio", "entropy", "kl_to_final",
                     "short_share_primary", "short_share_target", "p_first", "top1_hit", "top5_hit")
    }  # fmt: skip
    top1 = np.full(shape, -1, dtype=np.int64)
    top1_lang = np.full(shape, "", dtype=object)

    order = sorted(range(len(items)), key=lambda k: -len(items[k].ids))
    batches = [order[k : k + cfg.batch_size] for k in range(0, len(order), cfg.batch_size)]
    bar = tqdm(batches, desc="working language", unit="batch", disable=not progress, leave=False)
    with torch.no_grad():
        for batch in bar:
            its = [items[k] for k in batch]
            width = max(len(it.ids) for it in its)
            # Right padding is exact for a causal model: positions before the pad never see it.
            rows = [it.ids + [it.ids[-1]] * (width - len(it.ids)) for it in its]
            tokens = torch.tensor(rows, dtype=torch.long, device=device)
            last = torch.tensor([len(it.ids) - 1 for it in its], dtype=torch.long, device=device)
            resid = collect_last_residuals(model, tokens, last, hooks)
            pj = torch.tensor([pair_index[kept[it.probe].pair] for it in its], dtype=torch.long)
            masks = {k: v[pj].to(w_u.device) for k, v in membership.items()}
            first = torch.tensor(
                [max(it.first_id, 0) for it in its], dtype=torch.long, device=w_u.device
            )
            is_probe = np.array([it.site == 0 and it.first_id >= 0 for it in its])
            pi = np.array([it.probe for it in its])
            si = np.array([it.site for it in its])
            for li, lens in enumerate(lenses):
                h = torch.stack([lens.transform(resid[j], name) for j, name in enumerate(hooks)])
                normed = final_norm(model, h).float().to(w_u.device)
                vs = stream_vocab_stats(normed, w_u, b_u, cfg.vocab_chunk, cap)
                lm = set_log_masses(normed, w_u, b_u, union_t, masks, vs.log_z, cap)
                lp, lt = lm["primary"], lm["target"]
                f_logit = (normed * w_u[:, first].float().T[None]).sum(-1)
                if b_u is not None:
                    f_logit = f_logit + b_u[first].float()[None]
                if cap:
                    f_logit = cap * torch.tanh(f_logit / cap)
                lp_first = f_logit - vs.log_z
                top = vs.top_ids.cpu().numpy()  # [layer, batch, k]
                vals = dict(
                    p_primary=lp.exp(),
                    p_target=lt.exp(),
                    log_ratio=lp - lt,
                    entropy=vs.entropy,
                    kl_to_final=vs.kl_to_final,
                    short_share_primary=(lm["primary_short"] - lp).exp(),
                    short_share_target=(lm["target_short"] - lt).exp(),
                )
                for name, v in vals.items():
                    arrays[name][li, si, pi, :] = v.T.cpu().double().numpy()
                firsts = first.cpu().numpy()
                hit1 = (top[..., 0] == firsts[None]).T.astype(float)
                hit5 = (top == firsts[None, :, None]).any(-1).T.astype(float)
                pf = lp_first.exp().T.cpu().double().numpy()
                for name, v in (("p_first", pf), ("top1_hit", hit1), ("top5_hit", hit5)):
                    v = v.copy()
                    v[~is_probe] = np.nan
                    arrays[name][li, si, pi, :] = v
                top1[li, si, pi, :] = top[..., 0].T
                for b, it in enumerate(its):
                    j = pair_index[kept[it.probe].pair]
                    top1_lang[li, it.site, it.probe, :] = [
                        "primary"
                        if t in primary_sets[j]
                        else "target"
                        if t in target_sets[j]
                        else "other"
                        for t in top[:, b, 0]
                    ]
            del resid
    vocab = token_sets.vocabulary or TokenVocabulary(tokenizer, vocab_size=d_vocab)
    records = _records(
        kept,
        kept_index,
        hooks,
        [lens.name for lens in lenses],
        arrays,
        top1,
        top1_lang,
        same_last,
        vocab,
        step,
        target_tokens,
    )
    return WorkingLanguageResult(
        records=records,
        config=cfg,
        token_sets=token_sets.to_dataframe(),
        dropped_pairs=list(token_sets.dropped),
        dropped_tokens=token_sets.dropped_tokens_frame(),
        skipped=skipped,
        coverage_issues=check_coverage(kept, n_per_pair=cfg.n_per_pair),
    )


def _check_languages(probes: Sequence[Probe], cfg: WorkingLanguageConfig) -> None:
    want = (_canon(cfg.primary), _canon(cfg.target))
    bad = {
        (p.primary_language, p.target_language)
        for p in probes
        if p.primary_language
        and p.target_language
        and (_canon(p.primary_language), _canon(p.target_language)) != want
    }
    if bad:
        raise ValueError(
            f"probes are for language pair(s) {sorted(bad)}, but the config asks for "
            f"primary={cfg.primary!r}, target={cfg.target!r}"
        )


def _records(
    probes: Sequence[Probe],
    probe_index: Sequence[int],
    hooks: Sequence[str],
    lens_names: Sequence[str],
    arrays: dict[str, np.ndarray],
    top1: np.ndarray,
    top1_lang: np.ndarray,
    same_last: np.ndarray,
    vocab: TokenVocabulary,
    step: int | None,
    target_tokens: int | None,
) -> pd.DataFrame:
    n_lens, n_sites, n_probes, n_layer = top1.shape
    grid = np.meshgrid(
        np.arange(n_lens),
        np.arange(n_sites),
        np.arange(n_probes),
        np.arange(n_layer),
        indexing="ij",
    )
    li, si, pi, ki = (a.ravel() for a in grid)
    present = ~np.isnan(arrays["p_primary"].ravel())
    li, si, pi, ki = li[present], si[present], pi[present], ki[present]
    flat = {name: a.ravel()[present] for name, a in arrays.items()}
    ids = top1.ravel()[present]
    texts = {int(t): vocab.text(int(t)) for t in np.unique(ids)}
    df = pd.DataFrame(
        dict(
            step=pd.array([step] * len(pi), dtype="Int64"),
            target_tokens=pd.array([target_tokens] * len(pi), dtype="Int64"),
            lens=np.asarray(lens_names, dtype=object)[li],
            site=np.asarray(SITES, dtype=object)[si],
            probe=np.asarray(probe_index, dtype=np.int64)[pi],
            concept=np.asarray([p.concept for p in probes], dtype=object)[pi],
            primary=np.asarray([p.primary for p in probes], dtype=object)[pi],
            target=np.asarray([p.target for p in probes], dtype=object)[pi],
            doc_id=np.asarray([p.doc_id for p in probes], dtype=object)[pi],
            layer=np.asarray(hooks, dtype=object)[ki],
            layer_pos=np.asarray([layer_position(h) for h in hooks])[ki],
            p_primary=flat["p_primary"],
            p_target=flat["p_target"],
            log_ratio=flat["log_ratio"],
            mass_diff=flat["p_primary"] - flat["p_target"],
            primary_wins=(flat["p_primary"] > flat["p_target"]).astype(float),
            entropy=flat["entropy"],
            kl_to_final=flat["kl_to_final"],
            top1_id=ids,
            top1_token=[texts[int(t)] for t in ids],
            top1_lang=top1_lang.ravel()[present],
            short_share_primary=flat["short_share_primary"],
            short_share_target=flat["short_share_target"],
            p_first=flat["p_first"],
            top1_hit=flat["top1_hit"],
            top5_hit=flat["top5_hit"],
            same_last_token=same_last[si, pi],
        )
    )
    return df[RECORD_COLUMNS]


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------


def _ci_fn(cfg: WorkingLanguageConfig) -> Callable[[np.ndarray, np.ndarray], CI]:
    """The interval of a mean over probes, ``ci(values, groups)`` (``groups``: each probe's
    built-in pair), in ``cfg.ci_unit``."""

    def ci(values: np.ndarray, groups: np.ndarray) -> CI:
        if cfg.ci_unit == "pair":
            return two_stage_bootstrap_ci(
                values, groups, n_boot=cfg.n_boot, ci=cfg.ci, seed=cfg.seed
            )
        return bootstrap_ci(values, n_boot=cfg.n_boot, ci=cfg.ci, seed=cfg.seed)

    return ci


def _paired(cfg: WorkingLanguageConfig, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> CI:
    """The interval of ``mean(x) - mean(y)``, probe ``i`` and its control resampled together,
    in ``cfg.ci_unit``."""
    if cfg.ci_unit == "pair":
        return paired_two_stage_bootstrap_ci(
            x, y, groups, n_boot=cfg.n_boot, ci=cfg.ci, seed=cfg.seed
        )
    return paired_bootstrap_ci(x, y, n_boot=cfg.n_boot, ci=cfg.ci, seed=cfg.seed)


def _pair_labels(probe_rows: pd.DataFrame) -> np.ndarray:
    """Each probe's built-in pair (``primary/target``), the cluster of the pair bootstrap."""
    return (probe_rows["primary"].astype(str) + "/" + probe_rows["target"].astype(str)).to_numpy()


def _step_key(df: pd.DataFrame) -> pd.Series:
    return df["step"].fillna(-1).astype("int64")


def aggregate_records(records: pd.DataFrame, cfg: WorkingLanguageConfig) -> pd.DataFrame:
    """Per (step, lens, layer) summaries of a records table, with bootstrap CIs (resampling
    ``cfg.ci_unit``: built-in pairs then probes within them by default, or probes).

    ``share_primary``: share of probes where the primary set's mass exceeds the target's;
    ``mass_diff``: mean ``P_primary - P_target``; ``log_ratio``: mean ``log(P_primary/P_target)``;
    ``excess_matched`` / ``excess_random``: mean log-ratio at probes minus at their matched /
    random controls (paired by probe; positive = leaning primary beyond the baseline), over
    ``n_matched`` / ``n_random`` probes, of which ``n_matched_same_token`` /
    ``n_random_same_token`` have a control whose input ends in the probe's last token (the
    others can carry a lean that comes from the different last token alone; NaN for records
    written before the column existed).
    """
    if records.empty:
        return pd.DataFrame()
    ci = _ci_fn(cfg)
    df = records.assign(_step=_step_key(records))
    rows = []
    for (step, lens, layer), g in df.groupby(["_step", "lens", "layer"], sort=True):
        probe = g[g["site"] == "probe"].set_index("probe").sort_index()
        if probe.empty:
            continue
        groups = _pair_labels(probe)
        row: dict[str, Any] = dict(
            step=int(step),
            target_tokens=probe["target_tokens"].iloc[0],
            lens=lens,
            layer=layer,
            layer_name=residual_site(layer),
            layer_pos=float(probe["layer_pos"].iloc[0]),
            n_probes=len(probe),
        )
        for name, col in (
            ("share_primary", "primary_wins"),
            ("mass_diff", "mass_diff"),
            ("log_ratio", "log_ratio"),
        ):
            r = ci(probe[col].to_numpy(float), groups)
            row.update({name: r.estimate, f"{name}_lo": r.low, f"{name}_hi": r.high})
        for site in ("matched", "random"):
            ctrl = g[g["site"] == site].set_index("probe").reindex(probe.index)
            x = probe["log_ratio"].to_numpy(float)
            y = ctrl["log_ratio"].to_numpy(float)
            r = _paired(cfg, x, y, groups)
            same = ctrl["same_last_token"].to_numpy(float) if "same_last_token" in ctrl else None
            used = ~(np.isnan(x) | np.isnan(y))
            row.update(
                {
                    f"n_{site}_same_token": (
                        int(np.nansum(same[used])) if same is not None else math.nan
                    ),
                    f"excess_{site}": r.estimate,
                    f"excess_{site}_lo": r.low,
                    f"excess_{site}_hi": r.high,
                    f"n_{site}": r.n,
                    f"{site}_log_ratio": float(np.nanmean(y)) if r.n else math.nan,
                    f"{site}_share_primary": float(np.nanmean(ctrl["primary_wins"].to_numpy(float)))
                    if r.n
                    else math.nan,
                }
            )
        for col in (
            "p_primary",
            "p_target",
            "entropy",
            "kl_to_final",
            "short_share_primary",
            "short_share_target",
            "p_first",
            "top1_hit",
            "top5_hit",
        ):
            row[col] = float(np.nanmean(probe[col].to_numpy(float)))
        for lang in ("primary", "target", "other"):
            row[f"top1_{lang}"] = float((probe["top1_lang"] == lang).mean())
        rows.append(row)
    out = pd.DataFrame(rows).sort_values(["step", "lens", "layer_pos"], kind="stable")
    out = out.reset_index(drop=True)
    comp = competence_table(records, cfg)
    gate = dict(zip(comp["step"].fillna(-1).astype("int64"), comp["competent"], strict=True))
    out["competent"] = [bool(gate.get(int(s), False)) for s in out["step"]]
    out["step"] = _nullable_step(out["step"])
    return out


def _nullable_step(steps: pd.Series) -> pd.Series:
    # -1 stands for "no checkpoint step" (a model analyzed on its own) while grouping.
    return steps.astype("Int64").mask(steps < 0)


def competence_table(records: pd.DataFrame, cfg: WorkingLanguageConfig) -> pd.DataFrame:
    """Per step, at the output (the last block's ``hook_resid_post``, where every lens is the
    identity): top-1 / top-5 accuracy on the first token of the probe identifier, the share of
    probes whose top-1 token begins the target identifier, the absolute masses, and whether the
    checkpoint passes the gate (``competence_metric >= competence_threshold``). The accuracy
    intervals resample ``cfg.ci_unit`` like :func:`aggregate_records`'s."""
    if records.empty:
        return pd.DataFrame()
    df = records[records["site"] == "probe"].assign(_step=_step_key(records))
    final_pos = df["layer_pos"].max()
    df = df[(df["layer_pos"] == final_pos) & (df["lens"] == df["lens"].iloc[0])]
    ci = _ci_fn(cfg)
    rows = []
    for step, g in df.groupby("_step", sort=True):
        groups = _pair_labels(g)
        r1 = ci(g["top1_hit"].to_numpy(float), groups)
        r5 = ci(g["top5_hit"].to_numpy(float), groups)
        metric = r1.estimate if cfg.competence_metric == "top1" else r5.estimate
        rows.append(
            dict(
                step=int(step),
                target_tokens=g["target_tokens"].iloc[0],
                n_probes=len(g),
                top1_acc=r1.estimate,
                top1_acc_lo=r1.low,
                top1_acc_hi=r1.high,
                top5_acc=r5.estimate,
                top5_acc_lo=r5.low,
                top5_acc_hi=r5.high,
                top1_in_target_set=float((g["top1_lang"] == "target").mean()),
                p_target=float(g["p_target"].mean()),
                p_primary=float(g["p_primary"].mean()),
                p_first=float(g["p_first"].mean()),
                metric=cfg.competence_metric,
                threshold=cfg.competence_threshold,
                competent=bool(metric >= cfg.competence_threshold),
            )
        )
    out = pd.DataFrame(rows)
    out["step"] = _nullable_step(out["step"])
    return out


REGION_COLUMNS = [
    "step",
    "target_tokens",
    "lens",
    "region",
    "n_layers",
    "n_probes",
    "n_pairs",
    "log_ratio",
    "log_ratio_lo",
    "log_ratio_hi",
    "excess_matched",
    "excess_matched_lo",
    "excess_matched_hi",
    "n_matched",
    "excess_random",
    "excess_random_lo",
    "excess_random_hi",
    "n_random",
    "ci_unit",
]


def region_table(records: pd.DataFrame, cfg: WorkingLanguageConfig) -> pd.DataFrame:
    """Per (step, lens, region): the middle layers' and the output's log-ratio and excess over
    controls, each with an interval of the region mean itself.

    Regions are :func:`~babel_interp.analysis.working_language.regions.layer_region` of the
    decoded depth (layer position over the deepest one in ``records``): ``middle`` (strictly
    between embedding and output) and ``output``. Each probe's region value is its mean over the
    region's layers (for the excess: of probe minus control log-ratio, layer by layer), and the
    interval resamples those per-probe region means in ``cfg.ci_unit`` (by default pairs, then
    probes within pairs). The estimate equals the mean of :func:`aggregate_records`'s per-layer
    estimates over the region; its interval is not the mean of their bounds, which is no interval
    of the region mean. ``ci_unit`` records what was resampled.
    """
    if records.empty:
        return pd.DataFrame(columns=REGION_COLUMNS)
    ci = _ci_fn(cfg)
    df = records.assign(
        _step=_step_key(records), region=layer_region(decoded_depth(records["layer_pos"]))
    )
    df = df[df["region"].isin(REGIONS)]
    rows = []
    keys = ["_step", "lens", "region"]
    controls = {site: df[df["site"] == site] for site in ("matched", "random")}
    for (step, lens, region), g in df[df["site"] == "probe"].groupby(keys, sort=True):
        g = g.assign(_pair=_pair_labels(g))
        per_probe = g.groupby("probe", sort=True).agg(
            log_ratio=("log_ratio", "mean"), pair=("_pair", "first")
        )
        groups = per_probe["pair"].to_numpy()
        r = ci(per_probe["log_ratio"].to_numpy(float), groups)
        row: dict[str, Any] = dict(
            step=int(step),
            target_tokens=g["target_tokens"].iloc[0],
            lens=lens,
            region=region,
            n_layers=int(g["layer"].nunique()),
            n_probes=len(per_probe),
            n_pairs=int(np.unique(groups).size),
            log_ratio=r.estimate,
            log_ratio_lo=r.low,
            log_ratio_hi=r.high,
        )
        for site, ctrl in controls.items():
            c = ctrl[(ctrl["_step"] == step) & (ctrl["lens"] == lens) & (ctrl["region"] == region)]
            both = g[["layer", "probe", "log_ratio"]].merge(
                c[["layer", "probe", "log_ratio"]],
                on=["layer", "probe"],
                how="left",
                suffixes=("", "_ctrl"),
            )
            diff = (both["log_ratio"] - both["log_ratio_ctrl"]).groupby(both["probe"]).mean()
            r = ci(diff.reindex(per_probe.index).to_numpy(float), groups)
            row.update(
                {
                    f"excess_{site}": r.estimate,
                    f"excess_{site}_lo": r.low,
                    f"excess_{site}_hi": r.high,
                    f"n_{site}": r.n,
                }
            )
        row["ci_unit"] = cfg.ci_unit
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=REGION_COLUMNS)
    out = pd.DataFrame(rows, columns=REGION_COLUMNS)
    out["step"] = _nullable_step(out["step"])
    return out


def lens_comparison(records: pd.DataFrame, aggregate: pd.DataFrame) -> pd.DataFrame:
    """Logit vs tuned lens per (step, layer): shares, excess, KL to the output, top-1 agreement.

    ``kl_to_final`` measures how faithfully each lens reads a layer (lower is closer to what the
    model finally outputs); ``top1_agreement`` is the share of probes whose top-1 token is the
    same under both lenses.
    """
    lenses = sorted(records["lens"].unique()) if not records.empty else []
    if len(lenses) < 2 or aggregate.empty:
        return pd.DataFrame()
    metrics = [
        "share_primary",
        "excess_matched",
        "excess_random",
        "log_ratio",
        "kl_to_final",
        "top1_target",
    ]
    agg = aggregate.assign(_step=aggregate["step"].fillna(-1).astype("int64"))
    wide = agg.pivot_table(index=["_step", "layer", "layer_pos"], columns="lens", values=metrics)
    wide.columns = [f"{m}_{lens}" for m, lens in wide.columns]
    wide = wide.reset_index()
    probe = records[records["site"] == "probe"].assign(_step=_step_key(records))
    top = probe.pivot_table(index=["_step", "layer", "probe"], columns="lens", values="top1_id")
    a, b = lenses[0], lenses[1]
    agree = (top[a] == top[b]).groupby(level=["_step", "layer"]).mean().rename("top1_agreement")
    out = wide.merge(agree.reset_index(), on=["_step", "layer"], how="left")
    out = out.rename(columns={"_step": "step"}).sort_values(["step", "layer_pos"])
    out["step"] = _nullable_step(out["step"])
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Random-init baseline
# ------------------------------------------------------------------------------------------------


@dataclass
class RandomInitBaseline:
    """The working-language summaries of freshly initialized models on one probe set.

    Why a baseline needs several inits: a fixed random network's lean at a position is a
    deterministic function of the context, so wherever probe and control contexts differ (their
    last tokens, positions, neighbours) one network has a genuine nonzero "excess". Its sign and
    size change from init to init and average to zero (the unembedding columns are independent of
    the normalized residual and identically distributed, so every context has the same expected
    log-ratio), but the bootstrap over probes of one model cannot see that. Measured on the
    synthetic corpus (python / php, ``tiny``, 120 probes, 30 inits, TransformerLens 3.9): single
    inits' 95% intervals of the matched excess excluded zero at 36 of 90 (init, layer) cells with
    the nearest call site as control and 30 of 90 with last-token-matched controls, where chance
    gives 4.5, while the mean over the 30 inits stayed within about one standard error of zero;
    one init's excess reproduced on an independent probe set (correlation 0.67-0.88 over inits,
    per layer). So the random-init control is the distribution over inits: ``summary`` gives, per
    (lens, layer), the mean excess over inits with its t-interval (zero should lie in it) and the
    prediction band for a single init (a trained model's excess means something only outside
    it), beside how many inits' own intervals exclude zero and how many chance alone would give.

    ``per_init`` holds one :func:`aggregate_records` row per (init seed, lens, layer), with the
    seed in ``init_seed``.
    """

    per_init: pd.DataFrame
    ci: float = 0.95

    def to_dataframe(self) -> pd.DataFrame:
        """The per-init aggregate rows (a copy)."""
        return self.per_init.copy()

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.per_init["init_seed"].unique())

    def summary(self, ci: float | None = None) -> pd.DataFrame:
        """Per (lens, layer), for ``excess_matched`` and ``excess_random``: ``*_mean``,
        ``*_sd`` (over inits), ``*_mean_lo`` / ``*_mean_hi`` (t-interval of the mean over inits),
        ``*_band_lo`` / ``*_band_hi`` (t prediction interval for one more init),
        ``*_n_excluding`` (inits whose own bootstrap interval excludes zero) and
        ``*_expected_excluding`` (what chance gives: inits x (1 - ci))."""
        ci = self.ci if ci is None else ci
        if self.per_init.empty:
            return pd.DataFrame()
        rows = []
        keys = ["lens", "layer"]
        for (lens, layer), g in self.per_init.groupby(keys, sort=False):
            row: dict[str, Any] = dict(
                lens=lens,
                layer=layer,
                layer_pos=float(g["layer_pos"].iloc[0]),
                n_inits=int(g["init_seed"].nunique()),
            )
            for name in ("excess_matched", "excess_random"):
                x = g[name].to_numpy(float)
                mean = t_interval(x, ci)
                band = t_prediction_interval(x, ci)
                finite = x[~np.isnan(x)]
                excl = (g[f"{name}_lo"] > 0) | (g[f"{name}_hi"] < 0)
                row.update(
                    {
                        f"{name}_mean": mean.estimate,
                        f"{name}_sd": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                        f"{name}_mean_lo": mean.low,
                        f"{name}_mean_hi": mean.high,
                        f"{name}_band_lo": band.low,
                        f"{name}_band_hi": band.high,
                        f"{name}_n_excluding": int(excl.sum()),
                        f"{name}_expected_excluding": float(mean.n * (1.0 - self.ci)),
                    }
                )
            rows.append(row)
        out = pd.DataFrame(rows).sort_values(["lens", "layer_pos"], kind="stable")
        return out.reset_index(drop=True)


def random_init_baseline(
    model_cfg: Any,
    tokenizer: Any,
    probes: Sequence[Probe],
    cfg: WorkingLanguageConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    token_sets: TokenSetReport | None = None,
    device: str | torch.device | None = "auto",
    progress: bool = True,
) -> RandomInitBaseline:
    """Run the working-language analyzer on a freshly initialized model per seed in ``seeds``.

    ``model_cfg`` is the architecture (a :class:`babel_interp.model.ModelConfig`, e.g. a
    checkpoint's; its ``seed`` is replaced by each of ``seeds``), ``tokenizer`` the model's. A
    random model has no tuned lens, so only the logit lens is measured whatever ``cfg.lens``
    says. The caller's torch random state is left as it was. See :class:`RandomInitBaseline`
    for why one init is not enough. ``device`` as in
    :func:`babel_interp.devices.resolve_device`.
    """
    cfg = cfg or WorkingLanguageConfig()
    if not isinstance(model_cfg, ModelConfig):
        raise ValueError(
            f"model_cfg must be a babel_interp.model.ModelConfig, got {type(model_cfg).__name__}"
        )
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    run_cfg = replace(cfg, lens="logit") if cfg.lens != "logit" else cfg
    if token_sets is None:
        vocab = model_cfg.d_vocab if model_cfg.d_vocab > 0 else None
        token_sets = token_sets_for(tokenizer, probes, cfg, vocab_size=vocab)
    dev = resolve_device(device)
    rows = []
    for seed in tqdm(seeds, desc="random inits", unit="init", disable=not progress):
        with torch.random.fork_rng(devices=[]):
            model = build_model(replace(model_cfg, seed=seed), tokenizer=tokenizer, device=dev)
        res = analyze_working_language(
            model, tokenizer, probes, run_cfg, token_sets=token_sets, progress=False
        )
        agg = res.aggregate()
        agg.insert(0, "init_seed", seed)
        rows.append(agg)
        del model
    return RandomInitBaseline(pd.concat(rows, ignore_index=True), ci=cfg.ci)


# ------------------------------------------------------------------------------------------------
# Whole runs
# ------------------------------------------------------------------------------------------------


def probes_for_run(run: Run | str | os.PathLike, cfg: WorkingLanguageConfig) -> list[Probe]:
    """Probes for a training run: from the synthetic generator when the run's corpus drew the
    target language from it (see :func:`synthetic_world`), else mined from its validation split."""
    reader = Run.of(run).corpus()
    world = synthetic_world(reader.manifest, _canon(cfg.target))
    if world is not None:
        return build_probes(
            cfg.primary,
            cfg.target,
            cfg.n_per_pair,
            cfg.seed,
            synthetic_config=world,
            # The corpus tokenizer is the one the run's checkpoints read with.
            tokenizer=prepare_tokenizer(reader.tokenizer_dir),
            control_match=cfg.control_match,
        )
    return probes_from_corpus(
        reader,
        cfg.primary,
        cfg.target,
        cfg.n_per_pair,
        cfg.seed,
        control_match=cfg.control_match,
    )


def synthetic_world(manifest: Mapping[str, Any], language: str) -> dict[str, Any] | None:
    """The synthetic generator config a corpus drew ``language`` from, or None.

    Read from a ``synthetic`` manifest entry (the config, or ``{"config": ...}``), or from the
    corpus builder's record of its sources (``build.config.sources``, kind ``synthetic``).
    """
    entry = manifest.get("synthetic")
    if isinstance(entry, Mapping) and entry:
        world = dict(entry.get("config", entry))
        if language in world.get("languages", [language]):
            return world
    build = manifest.get("build")
    config = build.get("config") if isinstance(build, Mapping) else None
    sources = config.get("sources", []) if isinstance(config, Mapping) else []
    for src in sources:
        if isinstance(src, Mapping) and src.get("kind") == "synthetic":
            world = dict(src.get("options") or {})
            if language in world.get("languages", [language]):
                return world
    return None


def _checkpoint_model_config(ckpt_dir: Path) -> ModelConfig:
    """A checkpoint's architecture, read without loading its weights."""
    meta = json.loads((Path(ckpt_dir) / MODEL_CONFIG).read_text(encoding="utf-8"))
    return ModelConfig.from_dict(meta["model"])


def _token_sets_of_checkpoint(
    ckpt_dir: Path, probes: Sequence[Probe], cfg: WorkingLanguageConfig
) -> TokenSetReport:
    """Token sets from a checkpoint's tokenizer, without loading its weights."""
    tok_dir = Path(ckpt_dir) / TOKENIZER_SUBDIR
    if not tok_dir.is_dir():
        raise ValueError(f"checkpoint {ckpt_dir} has no {TOKENIZER_SUBDIR}/ directory")
    meta = json.loads((Path(ckpt_dir) / MODEL_CONFIG).read_text(encoding="utf-8"))
    d_vocab = int(meta["model"]["d_vocab"])
    return token_sets_for(
        prepare_tokenizer(tok_dir), probes, cfg, vocab_size=d_vocab if d_vocab > 0 else None
    )


def _fingerprint(cfg: WorkingLanguageConfig, probes: Sequence[Probe]) -> str:
    # What changes the records; the bootstrap settings only change summaries.
    d = cfg.to_dict()
    for k in (
        "n_boot",
        "ci",
        "ci_unit",
        "competence_metric",
        "competence_threshold",
        "n_random_init",
    ):
        d.pop(k)
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
    for p in probes:
        h.update(json.dumps(p.to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def analyze_run(
    run: Run | str | os.PathLike,
    cfg: WorkingLanguageConfig | None = None,
    checkpoints: Sequence[int] | None = None,
    probes: Sequence[Probe] | None = None,
    fmt: str = "csv",
    device: str | torch.device | None = "auto",
    resume: bool = True,
    progress: bool = True,
) -> WorkingLanguageResult:
    """Analyze the checkpoints of a run and save the result under it.

    The result is saved to ``RUN/analysis/working_language/`` (see
    :meth:`WorkingLanguageResult.save`), beside ``probes.jsonl``, the probes it scored. Its
    figures are drawn by the report
    (:func:`babel_interp.report.working_language_plots.plot_working_language_run`).
    Each checkpoint's records are also kept in ``steps/`` as soon as it is done; with ``resume``
    a rerun with the same config and probes reuses them, so an interrupted analysis loses at
    most one checkpoint.
    With a tuned lens, each checkpoint's lens is loaded from ``<ckpt>/tuned_lens.safetensors``
    or trained on the corpus's validation tokens and saved there. ``device`` as in
    :func:`babel_interp.devices.resolve_device` (``"auto"``: CUDA when available).
    """
    run = Run.of(run)
    cfg = cfg or WorkingLanguageConfig()
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    ckpts = run.checkpoints(checkpoints)
    if not ckpts:
        raise ValueError(f"run {run.path} has no complete checkpoint")
    out = run.analysis_dir(ANALYZER)
    probes = list(probes) if probes is not None else probes_for_run(run, cfg)
    if not probes:
        raise ValueError(
            f"no probes could be built for {cfg.primary}/{cfg.target} in run {run.path}"
        )
    save_probes_jsonl(probes, out / PROBES_JSONL)
    fp = _fingerprint(cfg, probes)
    steps_dir = out / "steps"
    steps_dir.mkdir(exist_ok=True)
    token_sets = _token_sets_of_checkpoint(ckpts[0].path, probes, cfg)
    kept = [p for p in probes if token_sets.get(p.primary, p.target) is not None]
    results: list[WorkingLanguageResult] = []
    target = _canon(cfg.target)
    for ckpt in tqdm(ckpts, desc="checkpoints", unit="ckpt", disable=not progress):
        cached = steps_dir / f"{ckpt.name}.{fp}.parquet"
        if resume and cached.is_file():
            res = WorkingLanguageResult(
                records=pd.read_parquet(cached),
                config=cfg,
                token_sets=token_sets.to_dataframe(),
                dropped_pairs=list(token_sets.dropped),
                dropped_tokens=token_sets.dropped_tokens_frame(),
                coverage_issues=check_coverage(kept, n_per_pair=cfg.n_per_pair),
            )
        else:
            model, _ = run.load_model(ckpt, device=device)
            if model.tokenizer is None:
                raise ValueError(f"checkpoint {ckpt.path} has no tokenizer/ directory")
            tuned = None
            if "tuned" in cfg.lenses:
                tuned = load_or_train_tuned_lens(
                    model, ckpt.path, run.corpus_dir, cfg, progress=progress
                )
            res = analyze_working_language(
                model,
                model.tokenizer,
                probes,
                cfg,
                tuned_lens=tuned,
                token_sets=token_sets,
                step=ckpt.step,
                target_tokens=ckpt.tokens_seen.get(target),
                progress=progress,
            )
            write_table_atomic(cached, res.records, "parquet")
            del model, tuned
        results.append(res)
    result = WorkingLanguageResult.concat(results)
    if cfg.n_random_init > 0:
        result.random_init = random_init_baseline(
            _checkpoint_model_config(ckpts[0].path),
            prepare_tokenizer(Path(ckpts[0].path) / TOKENIZER_SUBDIR),
            probes,
            cfg,
            seeds=range(cfg.n_random_init),
            token_sets=token_sets,
            device=device,
            progress=progress,
        )
    result.save(out, fmt)
    return result
