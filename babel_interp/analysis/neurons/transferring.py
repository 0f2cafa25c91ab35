"""Language-transferring neurons across a run's checkpoints, each count next to its nulls.

For a (primary, target) pair, e.g. (python, php), four neuron sets per checkpoint:

* ``lape_shared``: neurons LAPE assigns to both languages (the paper's most plausible reading of
  "language-transferring neurons").
* ``primary_active``: neurons LAPE assigns to the primary language that are also *active* on
  target input: their target activation probability exceeds the ``active_quantile`` quantile of
  all activation probabilities of that checkpoint (a quantile, not a fixed rate, so checkpoints
  with different overall firing rates stay comparable).
* ``primary_specific`` / ``target_specific``: assigned to that language only (context for the two
  above).

Counts per layer and checkpoint; the Jaccard overlap of each set between checkpoints; and, as the
controls the pilot showed are needed (with two languages LAPE always fills its quota, and early
counts swing in a from-scratch model too), next to every count: a *permutation null* and the
count of a *random-init model* of the same shape on the same windows. The null
(``NeuronAnalysisConfig.null_kind``, :mod:`~babel_interp.analysis.neurons.nulls`) is by default
*firing-rate-matched*: window language labels are permuted only among windows of matched overall
firing rate and LAPE rerun, the count expected when a window's language says nothing about its
neurons beyond how much the network fires on it. The older *label shuffle* over all windows
(``null_kind="label_shuffle"``) stays available; it makes the languages indistinguishable, which
fills LAPE's quota with high-firing neurons assigned to every language, so its shared count is
an inflated reference, not a chance level of sharing. Every count row names its ``null_kind``.

:func:`analyze_run` ties it together with activation-contrast scores
(:mod:`~babel_interp.analysis.neurons.contrast`) and the causal check
(:mod:`~babel_interp.analysis.neurons.ablation`), writing tables under ``RUN/analysis/neurons/``
and returning them as a :class:`NeuronAnalysisResult`; its figures are drawn by
:func:`babel_interp.report.neuron_plots.plot_neuron_analysis`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from babel_interp.analysis.layers import mlp_site
from babel_interp.analysis.neurons.ablation import AblationConfig, causal_check
from babel_interp.analysis.neurons.contrast import (
    ContrastConfig,
    contrast_null_counts,
    contrast_pair,
)
from babel_interp.analysis.neurons.lape import (
    LapeConfig,
    LapeResult,
    _kth_smallest,
    lape,
    lape_from_probs,
)
from babel_interp.analysis.neurons.neuron_stats import (
    NeuronStats,
    NeuronStatsConfig,
    collect_neuron_stats,
    corpus_windows,
)
from babel_interp.analysis.neurons.nulls import (
    DEFAULT_NULL,
    DEFAULT_STRATUM_WINDOWS,
    LabelNull,
    check_null_kind,
)
from babel_interp.config import ConfigBase
from babel_interp.devices import resolve_device
from babel_interp.io import write_csv_atomic, write_json_atomic
from babel_interp.model import HookedModel, ModelConfig, build_model, weights_file
from babel_interp.runs import Checkpoint, Run, checkpoint_dirname

DEFINITIONS = ("lape_shared", "primary_active", "primary_specific", "target_specific")
ANALYZER = "neurons"
STATS_FILE = "stats.safetensors"
# Activation-contrast selections counted beside the LAPE sets (specific to primary / target).
CONTRAST_DEFINITIONS = ("contrast_primary", "contrast_target")
FIRING_BINS = 10
TWO_LANGUAGE_NOTE = (
    "LAPE ran on only two languages: it is semi-degenerate there (the lowest-entropy quota is "
    "always filled, so a count says little by itself); read counts against their null and the "
    "random-init model, or add a third language (NeuronAnalysisConfig.languages, --languages)"
)
CONFIG_FILE = "config.json"
# The tables of a NeuronAnalysisResult: attribute -> file under RUN/analysis/neurons/.
TABLES = {
    "counts": "counts.csv",
    "counts_total": "counts_total.csv",
    "jaccard": "jaccard.csv",
    "contrast_summary": "contrast_summary.csv",
    "ablation": "ablation.csv",
    "firing_rates": "firing_rates.csv",
}


@dataclass
class TransferConfig(ConfigBase):
    """``active_quantile``: the quantile of all activation probabilities above which a neuron
    counts as active on target input (``primary_active``)."""

    active_quantile: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.active_quantile = float(self.active_quantile)

    def validate(self) -> None:
        """``active_quantile`` lies in (0, 1]."""
        q = self.active_quantile
        if not isinstance(q, (int, float)) or not 0.0 < q <= 1.0:
            raise ValueError(f"TransferConfig.active_quantile must lie in (0, 1], got {q!r}")


def transferring_sets(
    result: LapeResult,
    primary: str,
    target: str,
    cfg: TransferConfig | None = None,
) -> dict[str, Bool[Tensor, "layer neuron"]]:
    """The four neuron sets of the module docstring, as ``[layer, neuron]`` masks."""
    cfg = cfg or TransferConfig()
    if primary == target:
        raise ValueError(f"primary and target must differ, got {primary!r} twice")
    t = result.lang_index(target)
    active_bar = _kth_smallest(result.probs, cfg.active_quantile)
    return {
        "lape_shared": result.shared_mask(primary, target),
        "primary_active": result.mask(primary) & (result.probs[..., t] > active_bar),
        "primary_specific": result.only_mask(primary),
        "target_specific": result.only_mask(target),
    }


def counts_per_layer(mask: Bool[Tensor, "layer neuron"]) -> Int[Tensor, " layer"]:
    """Neurons of ``mask`` in each layer."""
    return mask.sum(-1)


def jaccard(a: Bool[Tensor, "layer neuron"], b: Bool[Tensor, "layer neuron"]) -> float:
    """|a ∩ b| / |a ∪ b|; NaN when both sets are empty (overlap is undefined, not perfect)."""
    if a.shape != b.shape:
        raise ValueError(
            f"sets must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    union = int((a | b).sum())
    return float("nan") if union == 0 else int((a & b).sum()) / union


def permutation_null_counts(
    stats: NeuronStats,
    primary: str,
    target: str,
    lape_cfg: LapeConfig | None = None,
    transfer_cfg: TransferConfig | None = None,
    n_permutations: int = 50,
    seed: int = 0,
    kind: str = DEFAULT_NULL,
    stratum_windows: int = DEFAULT_STRATUM_WINDOWS,
) -> dict[str, Int[Tensor, "perm layer"]]:
    """Per-layer counts of each set when window language labels are redrawn under a null.

    ``kind`` (:mod:`~babel_interp.analysis.neurons.nulls`): ``"firing_matched"`` permutes labels
    within strata of ``stratum_windows`` windows of matched overall firing rate (what the counts
    look like when a window's language says nothing beyond its firing level);
    ``"label_shuffle"`` permutes them over all windows (the languages made indistinguishable; it
    fills LAPE's quota with high-firing neurons assigned to every language, so its shared count
    is not a chance level of sharing). Activation probabilities are recomputed from the records
    and LAPE rerun. Needs window records (see :class:`NeuronStatsConfig`).
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    k = len(stats.languages)
    per_lang = torch.bincount(stats.window_lang, minlength=k)
    if int(per_lang.min()) < 1:
        raise ValueError(
            "the permutation null needs window records for every language; got "
            f"{dict(zip(stats.languages, per_lang.tolist(), strict=True))}"
        )
    null = LabelNull(stats, kind, stratum_windows, seed)
    counts = stats.window_count.flatten(1).double()
    n_tok = stats.window_tokens.double()
    n_layers, d = len(stats.layers), stats.d_mlp
    out = {name: torch.zeros(n_permutations, n_layers, dtype=torch.int64) for name in DEFINITIONS}
    for p in range(n_permutations):
        labels = null.draw()
        onehot = torch.zeros(k, stats.n_windows, dtype=torch.float64)
        onehot[labels, torch.arange(stats.n_windows)] = 1.0
        probs = (onehot @ counts) / (onehot @ n_tok)[:, None]
        probs = probs.view(k, n_layers, d).permute(1, 2, 0).clamp(0.0, 1.0)
        res = lape_from_probs(probs, stats.languages, lape_cfg, stats.layers)
        for name, mask in transferring_sets(res, primary, target, transfer_cfg).items():
            out[name][p] = counts_per_layer(mask)
    return out


@dataclass
class NeuronAnalysisConfig(ConfigBase):
    """Everything :func:`analyze_run` does, in one serializable place.

    ``languages`` adds languages to LAPE beside the pair (``None``: just primary and target, the
    paper's two-language setting). ``ablation=None`` skips the causal check; ``ablate_sets``
    names the sets it ablates. ``random_init_seed`` seeds the random-init baseline model.
    ``null_kind`` names the null beside every count (:mod:`~babel_interp.analysis.neurons.nulls`):
    ``"firing_matched"`` (default; window labels permuted within strata of
    ``null_stratum_windows`` windows of matched overall firing rate) or ``"label_shuffle"``
    (labels permuted over all windows: the languages made indistinguishable, which inflates
    LAPE's shared count). ``n_null_permutations`` draws are behind the LAPE nulls and
    ``n_contrast_null`` behind the activation-contrast nulls (each reruns the contrast
    selection; 0 skips them). ``device``: see
    :func:`babel_interp.devices.resolve_device` (``"auto"``: CUDA when available).
    """

    primary: str = "python"
    target: str = "php"
    languages: list[str] | None = None
    split: str = "val"
    stats: NeuronStatsConfig = field(default_factory=NeuronStatsConfig)
    lape: LapeConfig = field(default_factory=LapeConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    ablation: AblationConfig | None = field(default_factory=AblationConfig)
    ablate_sets: list[str] = field(default_factory=lambda: ["lape_shared", "primary_active"])
    null_kind: str = DEFAULT_NULL
    null_stratum_windows: int = DEFAULT_STRATUM_WINDOWS
    n_null_permutations: int = 50
    n_contrast_null: int = 10
    random_init: bool = True
    random_init_seed: int = 1234
    device: str = "auto"
    reuse_stats: bool = True
    progress: bool = True

    def validate(self) -> None:
        """Check every field (errors name the field)."""
        for name in ("primary", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"NeuronAnalysisConfig.{name} must be a language name, got {value!r}"
                )
        if self.primary == self.target:
            raise ValueError(
                f"NeuronAnalysisConfig.primary and .target must differ, both are {self.primary!r}"
            )
        if self.languages is not None and (
            not isinstance(self.languages, (list, tuple))
            or any(not isinstance(x, str) for x in self.languages)
        ):
            raise ValueError(
                f"NeuronAnalysisConfig.languages must be None or a list of names, "
                f"got {self.languages!r}"
            )
        if self.split not in ("train", "val"):
            raise ValueError(
                f"NeuronAnalysisConfig.split must be 'train' or 'val', got {self.split!r}"
            )
        bad = [s for s in self.ablate_sets if s not in DEFINITIONS]
        if bad:
            raise ValueError(
                f"NeuronAnalysisConfig.ablate_sets has unknown set(s) {bad}; known: {DEFINITIONS}"
            )
        try:
            check_null_kind(self.null_kind, self.null_stratum_windows)
        except ValueError as err:
            raise ValueError(
                f"NeuronAnalysisConfig.null_kind / .null_stratum_windows: {err}"
            ) from None
        if not isinstance(self.n_null_permutations, int) or self.n_null_permutations < 0:
            raise ValueError(
                "NeuronAnalysisConfig.n_null_permutations must be an int >= 0, "
                f"got {self.n_null_permutations!r}"
            )
        if not isinstance(self.n_contrast_null, int) or self.n_contrast_null < 0:
            raise ValueError(
                "NeuronAnalysisConfig.n_contrast_null must be an int >= 0, "
                f"got {self.n_contrast_null!r}"
            )
        if not isinstance(self.random_init_seed, int):
            raise ValueError(
                "NeuronAnalysisConfig.random_init_seed must be an int, "
                f"got {self.random_init_seed!r}"
            )
        if self.stats.max_windows_per_language < 2:
            raise ValueError(
                "NeuronAnalysisConfig.stats.max_windows_per_language must be >= 2: contrast "
                "intervals and the permutation nulls resample window records"
            )

    @property
    def notes(self) -> list[str]:
        """Caveats of this configuration that belong beside its results."""
        return _notes(self.all_languages)

    @property
    def all_languages(self) -> list[str]:
        """Primary, target, then the extra languages (no repeats)."""
        return _all_languages(self.primary, self.target, self.languages)


def _all_languages(primary: str, target: str, languages: Sequence[str] | None) -> list[str]:
    extra = [x for x in (languages or []) if x not in (primary, target)]
    return [primary, target, *extra]


def _notes(languages: Sequence[str]) -> list[str]:
    return [TWO_LANGUAGE_NOTE] if len(languages) < 3 else []


@dataclass
class NeuronAnalysisResult:
    """The tables of :func:`analyze_run` (see :data:`TABLES`), the configuration that produced
    them (``config``, as a dict) and where they live (``out_dir``, holding the per-checkpoint
    ``step_XXXXXXXX/`` directories too)."""

    out_dir: Path
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    counts_total: pd.DataFrame = field(default_factory=pd.DataFrame)
    jaccard: pd.DataFrame = field(default_factory=pd.DataFrame)
    contrast_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation: pd.DataFrame = field(default_factory=pd.DataFrame)
    firing_rates: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        """The primary language of the analysis."""
        return str(self.config.get("primary", "primary"))

    @property
    def target(self) -> str:
        """The target language of the analysis."""
        return str(self.config.get("target", "target"))

    def to_dataframe(self) -> pd.DataFrame:
        """Each set's total count per checkpoint beside its nulls (``counts_total``)."""
        return self.counts_total

    def effect_sizes(
        self, steps: Sequence[int] | None = None, max_per_layer: int = 2000
    ) -> pd.DataFrame:
        """Per-neuron contrast scores of the checkpoints under :attr:`out_dir` (see
        :func:`effect_size_table`)."""
        return _effect_sizes(self.out_dir, steps, max_per_layer)

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write every table (and ``config.json``) under ``directory``; the paths written."""
        d = Path(directory)
        paths = [write_csv_atomic(d / name, getattr(self, attr)) for attr, name in TABLES.items()]
        if self.config:
            paths.append(write_json_atomic(d / CONFIG_FILE, self.config))
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike) -> NeuronAnalysisResult:
        """The result :meth:`save` (or :func:`analyze_run`) wrote under ``directory``."""
        d = Path(directory)
        if not (d / TABLES["counts_total"]).is_file():
            raise FileNotFoundError(f"{d} holds no neuron analysis ({TABLES['counts_total']})")
        config_path = d / CONFIG_FILE
        config = (
            json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        )
        tables = {attr: _read_table(d / name) for attr, name in TABLES.items()}
        notes = []
        if "primary" in config and "target" in config:
            notes = _notes(
                _all_languages(config["primary"], config["target"], config.get("languages"))
            )
        return cls(out_dir=d, notes=notes, config=config, **tables)


def _read_table(path: Path) -> pd.DataFrame:
    # The inverse of write_csv_atomic for these tables: an empty table was written as one empty
    # line, notes of non-LAPE rows as empty strings, and a step column holds checkpoint numbers
    # beside "random_init".
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return pd.DataFrame()
    df = pd.read_csv(path)
    if "notes" in df.columns:
        df["notes"] = df["notes"].fillna("").astype(str)
    if "step" in df.columns and not pd.api.types.is_numeric_dtype(df["step"]):
        df["step"] = pd.Series(
            [int(s) if str(s).isdigit() else s for s in df["step"]], index=df.index, dtype=object
        )
    return df


def _collection_key(cfg: NeuronAnalysisConfig, window_len: int) -> str:
    # What determines the statistics: reuse a saved file only when all of it matches.
    payload = {
        "stats": cfg.stats.to_dict(),
        "languages": cfg.all_languages,
        "split": cfg.split,
        "window_len": window_len,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _stats_for(
    model: HookedModel,
    windows: Mapping[str, Tensor],
    cfg: NeuronAnalysisConfig,
    path: Path,
    key: str,
    desc: str,
) -> NeuronStats:
    if cfg.reuse_stats and path.is_file():
        try:
            saved = NeuronStats.load(path)
        except (ValueError, OSError):
            saved = None  # unreadable (e.g. an older format): recompute and overwrite
        if saved is not None and saved.metadata.get("collection_key") == key:
            return saved
    stats = collect_neuron_stats(model, windows, cfg.stats, progress=cfg.progress, desc=desc)
    stats.metadata["collection_key"] = key
    stats.save(path)
    return stats


def _null_summary(null: Tensor, observed: int) -> dict[str, float]:
    x = null.double()
    return {
        "null_mean": float(x.mean()),
        "null_lo": float(torch.quantile(x, 0.025)),
        "null_hi": float(torch.quantile(x, 0.975)),
        # Share of null counts at least / at most as large as the observed one (one-sided
        # permutation p-values without the +1: "more than the null" / "fewer than the null").
        "null_frac_ge": float((x >= observed).double().mean()),
        "null_frac_le": float((x <= observed).double().mean()),
    }


def _count_rows(
    step: int | str,
    ckpt: Checkpoint | None,
    layers: Sequence[int],
    sets: Mapping[str, Tensor],
    null: Mapping[str, Tensor] | None,
    languages: Sequence[str],
    null_kind: str | None = None,
) -> tuple[list[dict], list[dict]]:
    base: dict[str, Any] = {"step": step}
    if ckpt is not None:
        base["total_tokens"] = ckpt.total_tokens
        for lang in languages:
            base[f"tokens_{lang}"] = ckpt.tokens_seen.get(lang, 0)
    per_layer, total = [], []
    for name, mask in sets.items():
        counts = counts_per_layer(mask)
        for i, layer in enumerate(layers):
            row = {
                **base,
                "definition": name,
                "layer": layer,
                "layer_name": mlp_site(layer),
                "count": int(counts[i]),
            }
            if null is not None:
                row |= {"null_kind": null_kind, **_null_summary(null[name][:, i], int(counts[i]))}
            per_layer.append(row)
        row = {**base, "definition": name, "count": int(counts.sum())}
        if null is not None:
            row |= {"null_kind": null_kind, **_null_summary(null[name].sum(1), int(counts.sum()))}
        total.append(row)
    return per_layer, total


def firing_rate_rows(stats: NeuronStats, step: int | str, bins: int = FIRING_BINS) -> list[dict]:
    """Per layer: how often each neuron fires over *all* tokens (every language pooled).

    ``n_over_half`` counts neurons that fire on more than half of all tokens (the pilot found
    many: they make LAPE's probabilities uninformative); ``n_dead`` those that never fire;
    ``hist_<lo>_<hi>`` is the histogram of the pooled activation probabilities over ``bins``
    equal bins of [0, 1] (the last bin includes 1).
    """
    if int(stats.tokens.sum()) == 0:
        raise ValueError("firing rates need statistics of at least one token")
    p = stats.count.sum(0).double() / float(stats.tokens.sum())  # [layer, neuron]
    rows = []
    for i, layer in enumerate(stats.layers):
        pl = p[i]
        hist = torch.histc(pl, bins=bins, min=0.0, max=1.0).long().tolist()
        row: dict[str, Any] = {
            "step": step,
            "layer": layer,
            "layer_name": mlp_site(layer),
            "n_neurons": stats.d_mlp,
            "n_over_half": int((pl > 0.5).sum()),
            "share_over_half": float((pl > 0.5).double().mean()),
            "n_dead": int((pl == 0).sum()),
            "median_p": float(pl.median()),
        }
        for b, c in enumerate(hist):
            row[f"hist_{b / bins:.2f}_{(b + 1) / bins:.2f}"] = int(c)
        rows.append(row)
    return rows


def _sets_json(sets: Mapping[str, Tensor], layers: Sequence[int]) -> dict[str, list[list[int]]]:
    return {
        name: [[layers[i], j] for i, j in mask.nonzero().tolist()] for name, mask in sets.items()
    }


def analyze_run(
    run_dir: Run | str | os.PathLike,
    cfg: NeuronAnalysisConfig | None = None,
    checkpoints: Sequence[int] | None = None,
) -> NeuronAnalysisResult:
    """Language-transferring neurons at every selected checkpoint of a run, with controls.

    Writes under ``RUN/analysis/neurons/``: ``counts.csv`` (per layer) and ``counts_total.csv``
    (each set's count beside its permutation null and the random-init model's count),
    ``jaccard.csv`` (overlap of each set between checkpoints), ``contrast_summary.csv``,
    ``ablation.csv``, ``firing_rates.csv``, ``config.json``, and per checkpoint
    ``step_XXXXXXXX/`` with the statistics (``stats.safetensors``, reused when the collection
    settings match), ``lape.csv``, ``contrast.csv`` and ``sets.json``. Summary tables are
    rewritten after every checkpoint, so an interrupted run keeps what it finished.
    """
    cfg = cfg or NeuronAnalysisConfig()
    run = Run.of(run_dir)
    ckpts = run.checkpoints(checkpoints)
    if not ckpts:
        raise ValueError(f"run {run.path} has no checkpoints to analyze")
    reader = run.corpus()
    languages = cfg.all_languages
    for lang in languages:
        reader.lang_id(lang)
    out = run.analysis_dir(ANALYZER)
    write_json_atomic(out / CONFIG_FILE, cfg.to_dict())
    for note in cfg.notes:
        warnings.warn(note, UserWarning, stacklevel=2)

    windows: dict[str, Tensor] | None = None
    eval_windows: dict[str, Tensor] | None = None
    key = ""
    rows: dict[str, list[dict]] = {
        "counts": [],
        "counts_total": [],
        "contrast": [],
        "ablation": [],
        "firing_rates": [],
    }
    all_sets: dict[int, dict[str, Tensor]] = {}
    layers: list[int] = []
    model_cfg: ModelConfig | None = None
    result = NeuronAnalysisResult(out, notes=cfg.notes, config=cfg.to_dict())

    for ckpt in tqdm(ckpts, desc="checkpoints", unit="ckpt", disable=not cfg.progress):
        model, mcfg = run.load_model(ckpt, device=cfg.device, with_tokenizer=False)
        model.eval()
        if model_cfg is None:
            model_cfg = mcfg
        window_len = min(cfg.stats.window_len, mcfg.n_ctx)
        if windows is None:
            windows = corpus_windows(reader, languages, cfg.stats, cfg.split, window_len)
            key = _collection_key(cfg, window_len)
            if cfg.ablation is not None:
                ab = cfg.ablation
                ab_cfg = cfg.stats.replace(tokens_per_language=ab.tokens_per_language, seed=ab.seed)
                eval_windows = corpus_windows(
                    reader, languages, ab_cfg, cfg.split, min(ab.window_len, mcfg.n_ctx)
                )
        step_dir = out / checkpoint_dirname(ckpt.step)
        step_dir.mkdir(parents=True, exist_ok=True)
        # The weights' size and mtime join the key: a rewritten checkpoint is recollected.
        weights = weights_file(ckpt.path).stat()
        ckpt_key = f"{key}-{weights.st_size}-{weights.st_mtime_ns}"
        stats = _stats_for(
            model, windows, cfg, step_dir / STATS_FILE, ckpt_key, f"stats step {ckpt.step}"
        )
        layers = stats.layers
        res = lape(stats, cfg.lape)
        write_csv_atomic(step_dir / "lape.csv", res.to_dataframe())
        sets = transferring_sets(res, cfg.primary, cfg.target, cfg.transfer)
        all_sets[ckpt.step] = sets
        write_json_atomic(step_dir / "sets.json", _sets_json(sets, layers))
        null = None
        if cfg.n_null_permutations:
            null = permutation_null_counts(
                stats,
                cfg.primary,
                cfg.target,
                cfg.lape,
                cfg.transfer,
                cfg.n_null_permutations,
                seed=cfg.stats.seed,
                kind=cfg.null_kind,
                stratum_windows=cfg.null_stratum_windows,
            )
        per_layer, total = _count_rows(
            ckpt.step, ckpt, layers, sets, null, languages, cfg.null_kind
        )
        for row in total:
            row["lape_filter_value"] = res.filter_value
            row["lape_bar_value"] = res.bar_value
            row["n_selected_filtered"] = res.n_selected_filtered
        rows["counts"] += per_layer
        rows["counts_total"] += total
        rows["firing_rates"] += firing_rate_rows(stats, ckpt.step)

        con = contrast_pair(stats, cfg.primary, cfg.target, cfg.contrast)
        per_layer, total = _contrast_count_rows(stats, con, cfg, ckpt.step, ckpt, languages)
        rows["counts"] += per_layer
        rows["counts_total"] += total
        write_csv_atomic(step_dir / "contrast.csv", con.to_dataframe())
        summary = con.summary_per_layer()
        summary.insert(0, "step", ckpt.step)
        summary["expected_false"] = con.expected_false
        for name in ("lape_shared", "primary_active"):
            mask = sets[name]
            d = con.scores["cohens_d"]
            summary[f"median_d_{name}"] = [
                float(d[i][mask[i]].median()) if bool(mask[i].any()) else float("nan")
                for i in range(len(layers))
            ]
        rows["contrast"] += summary.to_dict("records")

        if cfg.ablation is not None and eval_windows is not None:
            means = stats.pooled_mean()
            for name in cfg.ablate_sets:
                ab_res = causal_check(
                    model,
                    sets[name],
                    layers,
                    eval_windows,
                    cfg.ablation,
                    means,
                    progress=cfg.progress,
                )
                df = ab_res.to_dataframe()
                df.insert(0, "set", name)
                df.insert(0, "step", ckpt.step)
                rows["ablation"] += df.to_dict("records")
        del model
        result = _write_tables(out, cfg, rows, all_sets, layers)

    if cfg.random_init and model_cfg is not None and windows is not None:
        rand_cfg = dataclasses.replace(model_cfg, seed=cfg.random_init_seed)
        model = build_model(rand_cfg, device=resolve_device(cfg.device))
        model.eval()
        rand_dir = out / "random_init"
        rand_dir.mkdir(parents=True, exist_ok=True)
        shape = json.dumps(rand_cfg.to_dict(), sort_keys=True).encode()
        rand_key = f"{key}-{hashlib.sha256(shape).hexdigest()[:12]}"
        stats = _stats_for(
            model, windows, cfg, rand_dir / STATS_FILE, rand_key, "stats random init"
        )
        res = lape(stats, cfg.lape)
        sets = transferring_sets(res, cfg.primary, cfg.target, cfg.transfer)
        write_json_atomic(rand_dir / "sets.json", _sets_json(sets, stats.layers))
        per_layer, total = _count_rows("random_init", None, stats.layers, sets, None, languages)
        con = contrast_pair(stats, cfg.primary, cfg.target, cfg.contrast)
        if con.specific_a is not None and con.specific_b is not None:
            c_sets = dict(zip(CONTRAST_DEFINITIONS, (con.specific_a, con.specific_b), strict=True))
            c_layer, c_total = _count_rows("random_init", None, stats.layers, c_sets, None, [])
            per_layer, total = per_layer + c_layer, total + c_total
        rows["random_init_counts"] = per_layer
        rows["random_init_total"] = total
        rows["random_init_firing_rates"] = firing_rate_rows(stats, "random_init")
        result = _write_tables(out, cfg, rows, all_sets, layers)
    return result


def _contrast_count_rows(
    stats: NeuronStats,
    con: Any,
    cfg: NeuronAnalysisConfig,
    step: int,
    ckpt: Checkpoint,
    languages: Sequence[str],
) -> tuple[list[dict], list[dict]]:
    # The contrast selections as counts, each beside its null (of cfg.null_kind, as LAPE's are).
    if con.specific_a is None or con.specific_b is None:
        return [], []  # no permutation test was run, so nothing was selected
    sets = dict(zip(CONTRAST_DEFINITIONS, (con.specific_a, con.specific_b), strict=True))
    null = None
    if cfg.n_contrast_null:
        raw = contrast_null_counts(
            stats,
            cfg.primary,
            cfg.target,
            cfg.contrast,
            cfg.n_contrast_null,
            cfg.stats.seed,
            kind=cfg.null_kind,
            stratum_windows=cfg.null_stratum_windows,
        )
        null = {CONTRAST_DEFINITIONS[0]: raw["a"], CONTRAST_DEFINITIONS[1]: raw["b"]}
    per_layer, total = _count_rows(step, ckpt, stats.layers, sets, null, languages, cfg.null_kind)
    for row in total:
        row["expected_false"] = con.expected_false
    return per_layer, total


def _attach_random_init(df: pd.DataFrame, rand: list[dict], by: list[str]) -> pd.DataFrame:
    if df.empty:
        return df
    if not rand:
        df["random_init_count"] = float("nan")
        return df
    r = pd.DataFrame(rand)[[*by, "count"]].rename(columns={"count": "random_init_count"})
    return df.merge(r, on=by, how="left")


def _write_tables(
    out: Path,
    cfg: NeuronAnalysisConfig,
    rows: Mapping[str, list[dict]],
    all_sets: Mapping[int, Mapping[str, Tensor]],
    layers: Sequence[int],
) -> NeuronAnalysisResult:
    counts = _attach_random_init(
        pd.DataFrame(rows["counts"]), rows.get("random_init_counts", []), ["definition", "layer"]
    )
    counts_total = _attach_random_init(
        pd.DataFrame(rows["counts_total"]), rows.get("random_init_total", []), ["definition"]
    )
    steps = sorted(all_sets)
    jac_rows = []
    for name in DEFINITIONS:
        for i, a in enumerate(steps):
            for b in steps[i + 1 :]:
                sa, sb = all_sets[a][name], all_sets[b][name]
                jac_rows.append(
                    {
                        "definition": name,
                        "step_a": a,
                        "step_b": b,
                        "consecutive": steps.index(b) == i + 1,
                        "size_a": int(sa.sum()),
                        "size_b": int(sb.sum()),
                        "intersection": int((sa & sb).sum()),
                        "jaccard": jaccard(sa, sb),
                    }
                )
    jac = pd.DataFrame(jac_rows)
    contrast = pd.DataFrame(rows["contrast"])
    ablation = pd.DataFrame(rows["ablation"])
    firing = pd.DataFrame(
        [*rows.get("firing_rates", []), *rows.get("random_init_firing_rates", [])]
    )
    notes = cfg.notes
    if not counts_total.empty:
        # The caveat travels with the table it qualifies (LAPE rows only).
        lape_rows = counts_total["definition"].isin(DEFINITIONS)
        counts_total["notes"] = ""
        counts_total.loc[lape_rows, "notes"] = " | ".join(notes)
    result = NeuronAnalysisResult(
        out,
        counts=counts,
        counts_total=counts_total,
        jaccard=jac,
        contrast_summary=contrast,
        ablation=ablation,
        firing_rates=firing,
        notes=notes,
        config=cfg.to_dict(),
    )
    result.save(out)
    return result


def effect_size_table(
    run_dir: Run | str | os.PathLike,
    steps: Sequence[int] | None = None,
    max_per_layer: int = 2000,
) -> pd.DataFrame:
    """Per-neuron contrast scores (Cohen's d, ...) of a run's written ``contrast.csv`` files,
    for plotting.

    At most ``max_per_layer`` neurons per layer and checkpoint (a fixed, evenly spaced subset)
    keep the table small for wide models.
    """
    return _effect_sizes(Run.of(run_dir).analysis_dir(ANALYZER), steps, max_per_layer)


def _effect_sizes(out: Path, steps: Sequence[int] | None, max_per_layer: int) -> pd.DataFrame:
    frames = []
    for d in sorted(out.glob("step_*")):
        step = int(d.name.split("_")[1])
        if steps is not None and step not in steps:
            continue
        path = d / "contrast.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path)
        pos = df.groupby("layer").cumcount()
        stride = (df.groupby("layer")["layer"].transform("size") // max_per_layer).clip(lower=1)
        frames.append(df[pos % stride == 0].assign(step=step))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize_counts(result: NeuronAnalysisResult) -> pd.DataFrame:
    """The total count of each set per checkpoint beside its nulls (a compact print-out)."""
    df = result.counts_total
    if df.empty:
        return df
    cols = [
        c
        for c in (
            "step",
            "definition",
            "count",
            "null_kind",
            "null_mean",
            "null_lo",
            "null_hi",
            "null_frac_ge",
            "null_frac_le",
            "random_init_count",
        )
        if c in df.columns
    ]
    return df[cols]
