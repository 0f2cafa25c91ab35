"""Activation-contrast scores for every neuron and language pair, with uncertainty.

For a pair (a, b) and every neuron: the difference of mean activations, Cohen's d (difference over
the pooled token-level standard deviation) and the log-odds ratio of firing (activation above the
collection threshold, with a Haldane-Anscombe pseudo-count). Each comes with a percentile bootstrap
interval, and one of them (``statistic``) is tested against a permutation null.

The resampling unit is the *window*, not the token (see
:mod:`babel_interp.analysis.neurons.neuron_stats`:
tokens of one window share context, so they are not independent). The bootstrap resamples each
language's windows with replacement; the null permutes window language labels between a and b
with group sizes kept. Everything is computed from per-window sufficient statistics (count, sum,
sum of squares) by matrix products, so it costs O(replicates x windows x neurons) and never
touches a token again.

Two false-discovery controls are offered:

* ``pooled`` (default; Tusher et al. 2001, "SAM"): the null distribution of |statistic| is pooled
  over all neurons and permutations; at threshold t, FDR(t) = E_null[#{|t_null| >= t}] /
  #{|t_obs| >= t}, made monotone. It resolves FDRs far below 1 / n_permutations, which matters
  when tens of thousands of neurons are tested with a few hundred permutations.
* ``bh``: per-neuron permutation p-values ``(1 + #{|t_null| >= |t_obs|}) / (1 + n_permutations)``
  and Benjamini-Hochberg. Exact, but needs n_permutations >> n_neurons / alpha to reject anything.

A neuron is *specific to a (vs b)* when it is significant at ``alpha``, its statistic is positive
and at least ``min_effect`` in magnitude (significance alone is cheap with many windows: a tiny but
real difference passes). ``k_per_language`` keeps the same number of neurons for both languages.

Memory: the pooled null keeps every permuted |statistic| (``n_permutations x neurons`` float32:
200 x 36,864 GPT-2-small neurons is 30 MB); everything else is chunked over neurons.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import einsum
from jaxtyping import Bool, Float, Int
from torch import Tensor

from babel_interp.analysis.layers import mlp_site
from babel_interp.analysis.neurons.neuron_stats import NeuronStats
from babel_interp.analysis.neurons.nulls import DEFAULT_NULL, DEFAULT_STRATUM_WINDOWS, LabelNull
from babel_interp.config import ConfigBase, check_choice

STATISTICS = ("cohens_d", "mean_diff", "log_odds")
FDR_METHODS = ("pooled", "bh")
# Weighted sums of window records: [replicate, window] weights, [window, stat, neuron] records.
_RESAMPLE = "rep window, window stat neuron -> rep stat neuron"


@dataclass
class ContrastConfig(ConfigBase):
    """Resampling sizes, the tested statistic and the selection rule.

    ``min_effect`` is in the units of ``statistic`` (0.5 is a "medium" Cohen's d). ``sd_floor``
    keeps Cohen's d finite for neurons with no variance (dead neurons).
    """

    statistic: str = "cohens_d"
    n_bootstrap: int = 200
    n_permutations: int = 200
    ci: float = 0.95
    alpha: float = 0.05
    fdr_method: str = "pooled"
    min_effect: float = 0.5
    k_per_language: int | None = None
    smoothing: float = 0.5
    sd_floor: float = 1e-6
    chunk_size: int = 4096
    seed: int = 0

    def validate(self) -> None:
        """Check every field (errors name the field)."""
        check_choice("ContrastConfig", "statistic", self.statistic, STATISTICS)
        check_choice("ContrastConfig", "fdr_method", self.fdr_method, FDR_METHODS)
        for name in ("n_bootstrap", "n_permutations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"ContrastConfig.{name} must be an int >= 0, got {value!r}")
        for name in ("ci", "alpha"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(f"ContrastConfig.{name} must lie in (0, 1), got {value!r}")
        for name in ("min_effect", "smoothing"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ValueError(
                    f"ContrastConfig.{name} must be a finite number >= 0, got {value!r}"
                )
        if not isinstance(self.sd_floor, (int, float)) or not self.sd_floor > 0:
            raise ValueError(f"ContrastConfig.sd_floor must be > 0, got {self.sd_floor!r}")
        if self.k_per_language is not None and (
            not isinstance(self.k_per_language, int) or self.k_per_language <= 0
        ):
            raise ValueError(
                "ContrastConfig.k_per_language must be None or a positive int, "
                f"got {self.k_per_language!r}"
            )
        if not isinstance(self.chunk_size, int) or self.chunk_size <= 0:
            raise ValueError(
                f"ContrastConfig.chunk_size must be a positive int, got {self.chunk_size!r}"
            )
        if not isinstance(self.seed, int):
            raise ValueError(f"ContrastConfig.seed must be an int, got {self.seed!r}")


def effect_sizes(
    n_a: Float[Tensor, "*rep 1"],
    count_a: Float[Tensor, "*rep neuron"],
    sum_a: Float[Tensor, "*rep neuron"],
    sum_sq_a: Float[Tensor, "*rep neuron"],
    n_b: Float[Tensor, "*rep 1"],
    count_b: Float[Tensor, "*rep neuron"],
    sum_b: Float[Tensor, "*rep neuron"],
    sum_sq_b: Float[Tensor, "*rep neuron"],
    smoothing: float = 0.5,
    sd_floor: float = 1e-6,
) -> dict[str, Float[Tensor, "*rep neuron"]]:
    """Mean difference, Cohen's d and firing log-odds (a minus b) from sufficient statistics.

    ``n_*`` are token counts (broadcast over neurons). Cohen's d uses the pooled unbiased
    token-level variance ``(SS_a + SS_b) / (n_a + n_b - 2)``, SS the centred sums of squares.
    """
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    diff = mean_a - mean_b
    centred = (sum_sq_a - sum_a * mean_a).clamp(min=0) + (sum_sq_b - sum_b * mean_b).clamp(min=0)
    pooled_sd = (centred / (n_a + n_b - 2).clamp(min=1)).sqrt()
    d = diff / pooled_sd.clamp(min=sd_floor)
    h = smoothing
    log_odds = torch.log((count_a + h) / (n_a - count_a + h)) - torch.log(
        (count_b + h) / (n_b - count_b + h)
    )
    return {"mean_diff": diff, "cohens_d": d, "log_odds": log_odds}


@dataclass
class ContrastResult:
    """Scores of language ``lang_a`` against ``lang_b`` for every neuron (``[layer, neuron]``).

    ``ci_low/ci_high[stat]`` are bootstrap percentile bounds; ``p_value`` and ``q_value`` are the
    per-neuron permutation p-value and its Benjamini-Hochberg adjustment; ``fdr`` is the pooled
    permutation FDR at the neuron's |statistic|. ``specific_a``/``specific_b`` are the selected
    neurons; ``expected_false`` is the permutation estimate of how many selected neurons are
    false discoveries.
    """

    lang_a: str
    lang_b: str
    layers: list[int]
    config: ContrastConfig
    n_windows_a: int
    n_windows_b: int
    n_tokens_a: int
    n_tokens_b: int
    scores: dict[str, Float[Tensor, "layer neuron"]]
    ci_low: dict[str, Float[Tensor, "layer neuron"]] = field(default_factory=dict)
    ci_high: dict[str, Float[Tensor, "layer neuron"]] = field(default_factory=dict)
    p_value: Float[Tensor, "layer neuron"] | None = None
    q_value: Float[Tensor, "layer neuron"] | None = None
    fdr: Float[Tensor, "layer neuron"] | None = None
    significant: Bool[Tensor, "layer neuron"] | None = None
    specific_a: Bool[Tensor, "layer neuron"] | None = None
    specific_b: Bool[Tensor, "layer neuron"] | None = None
    expected_false: float = float("nan")

    @property
    def statistic(self) -> Float[Tensor, "layer neuron"]:
        """The tested statistic (``config.statistic``)."""
        return self.scores[self.config.statistic]

    def specific(self, language: str) -> Bool[Tensor, "layer neuron"]:
        """Neurons selected as specific to ``language`` (one of the pair)."""
        if language == self.lang_a and self.specific_a is not None:
            return self.specific_a
        if language == self.lang_b and self.specific_b is not None:
            return self.specific_b
        raise KeyError(
            f"no selection for {language!r}: the pair is ({self.lang_a}, {self.lang_b}) "
            "and selection needs n_permutations > 0"
        )

    def to_dataframe(self) -> Any:
        """One row per neuron: scores, intervals, p/q/FDR and the selection."""
        import pandas as pd

        n_layers, n_neurons = self.statistic.shape
        cols: dict[str, Any] = {
            "lang_a": self.lang_a,
            "lang_b": self.lang_b,
            "layer": torch.tensor(self.layers).repeat_interleave(n_neurons).numpy(),
            "layer_name": [mlp_site(layer) for layer in self.layers for _ in range(n_neurons)],
            "neuron": torch.arange(n_neurons).repeat(n_layers).numpy(),
        }
        for name, value in self.scores.items():
            cols[name] = value.flatten().numpy()
            if name in self.ci_low:
                cols[f"{name}_lo"] = self.ci_low[name].flatten().numpy()
                cols[f"{name}_hi"] = self.ci_high[name].flatten().numpy()
        for name in ("p_value", "q_value", "fdr", "specific_a", "specific_b"):
            value = getattr(self, name)
            if value is not None:
                cols[name] = value.flatten().numpy()
        return pd.DataFrame(cols)

    def summary_per_layer(self) -> Any:
        """Per layer: neurons specific to each language and the median |statistic|."""
        import pandas as pd

        rows = []
        for i, layer in enumerate(self.layers):
            stat = self.statistic[i]
            rows.append(
                {
                    "lang_a": self.lang_a,
                    "lang_b": self.lang_b,
                    "layer": layer,
                    "layer_name": mlp_site(layer),
                    "statistic": self.config.statistic,
                    "median_abs": float(stat.abs().median()),
                    "max_abs": float(stat.abs().max()),
                    "n_specific_a": int(self.specific_a[i].sum())
                    if self.specific_a is not None
                    else -1,
                    "n_specific_b": int(self.specific_b[i].sum())
                    if self.specific_b is not None
                    else -1,
                }
            )
        return pd.DataFrame(rows)


def _pair_windows(
    stats: NeuronStats, lang: str
) -> tuple[Float[Tensor, " window"], Float[Tensor, "window stat neuron"]]:
    k = stats.lang_index(lang)
    sel = stats.window_lang == k
    n = stats.window_tokens[sel].double()
    x = torch.stack(
        [
            stats.window_count[sel].flatten(1),
            stats.window_sum[sel].flatten(1),
            stats.window_sum_sq[sel].flatten(1),
        ],
        1,
    ).double()
    return n, x


def _scores_from(
    n_a: Tensor, x_a: Tensor, n_b: Tensor, x_b: Tensor, cfg: ContrastConfig
) -> dict[str, Tensor]:
    # x_*: [..., 3, neuron] summed (count, sum, sum_sq); n_*: [...] tokens.
    return effect_sizes(
        n_a[..., None],
        x_a[..., 0, :],
        x_a[..., 1, :],
        x_a[..., 2, :],
        n_b[..., None],
        x_b[..., 0, :],
        x_b[..., 1, :],
        x_b[..., 2, :],
        smoothing=cfg.smoothing,
        sd_floor=cfg.sd_floor,
    )


def _resample_weights(n: int, reps: int, gen: torch.Generator) -> Tensor:
    # Row r counts how often each window is drawn in bootstrap replicate r.
    draws = torch.randint(n, (reps, n), generator=gen)
    w = torch.zeros(reps, n, dtype=torch.float64)
    w.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return w


def _permutation_masks(n_a: int, n_b: int, reps: int, gen: torch.Generator) -> Tensor:
    # Row r is 1 for the windows labelled "a" in permutation r (group sizes kept).
    keys = torch.rand(reps, n_a + n_b, generator=gen)
    ranks = keys.argsort(1).argsort(1)
    return (ranks < n_a).double()


def contrast_pair(
    stats: NeuronStats,
    lang_a: str,
    lang_b: str,
    cfg: ContrastConfig | None = None,
) -> ContrastResult:
    """Scores of ``lang_a`` vs ``lang_b`` for every neuron, with intervals and a null.

    Scores come from the window records (identical to the totals when the records are complete),
    so estimates, intervals and null share one sample. Needs at least two windows per language.
    """
    cfg = cfg or ContrastConfig()
    if lang_a == lang_b:
        raise ValueError(f"contrast needs two different languages, got {lang_a!r} twice")
    n_a, x_a = _pair_windows(stats, lang_a)
    n_b, x_b = _pair_windows(stats, lang_b)
    for lang, n in ((lang_a, n_a), (lang_b, n_b)):
        if n.numel() < 2:
            raise ValueError(
                f"language {lang!r} has {n.numel()} window record(s); contrast needs at least 2 "
                "per language (collect with NeuronStatsConfig.max_windows_per_language > 1)"
            )
    u_a, u_b = n_a.numel(), n_b.numel()
    n_layers, n_neurons = len(stats.layers), stats.d_mlp
    m = n_layers * n_neurons
    gen = torch.Generator().manual_seed(cfg.seed)
    boot_a = _resample_weights(u_a, cfg.n_bootstrap, gen) if cfg.n_bootstrap else None
    boot_b = _resample_weights(u_b, cfg.n_bootstrap, gen) if cfg.n_bootstrap else None
    perm = _permutation_masks(u_a, u_b, cfg.n_permutations, gen) if cfg.n_permutations else None
    n_all = torch.cat([n_a, n_b])
    tail = (1.0 - cfg.ci) / 2.0
    q_levels = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)

    scores = {s: torch.empty(m, dtype=torch.float64) for s in STATISTICS}
    lo = {s: torch.empty(m, dtype=torch.float64) for s in STATISTICS}
    hi = {s: torch.empty(m, dtype=torch.float64) for s in STATISTICS}
    exceed = torch.zeros(m, dtype=torch.float64)
    null_abs_chunks: list[Tensor] = []
    for c0 in range(0, m, cfg.chunk_size):
        c1 = min(m, c0 + cfg.chunk_size)
        xa, xb = x_a[..., c0:c1], x_b[..., c0:c1]
        tot_a, tot_b = xa.sum(0), xb.sum(0)
        obs = _scores_from(n_a.sum(), tot_a, n_b.sum(), tot_b, cfg)
        for s in STATISTICS:
            scores[s][c0:c1] = obs[s]
        if boot_a is not None and boot_b is not None:
            # Replicate r's sums: each window's (count, sum, sum_sq) times how often r drew it.
            rep_a = einsum(boot_a, xa, _RESAMPLE)
            rep_b = einsum(boot_b, xb, _RESAMPLE)
            boot = _scores_from(boot_a @ n_a, rep_a, boot_b @ n_b, rep_b, cfg)
            for s in STATISTICS:
                bounds = torch.quantile(boot[s], q_levels, dim=0)
                lo[s][c0:c1], hi[s][c0:c1] = bounds[0], bounds[1]
        if perm is not None:
            x_all = torch.cat([xa, xb])
            tot = tot_a + tot_b
            rep_a = einsum(perm, x_all, _RESAMPLE)
            null = _scores_from(perm @ n_all, rep_a, (1 - perm) @ n_all, tot - rep_a, cfg)
            null_abs = null[cfg.statistic].abs()
            exceed[c0:c1] = (null_abs >= obs[cfg.statistic].abs() - 1e-12).sum(0).double()
            null_abs_chunks.append(null_abs.float().flatten())

    def shaped(t: Tensor) -> Tensor:
        return t.view(n_layers, n_neurons)

    result = ContrastResult(
        lang_a=lang_a,
        lang_b=lang_b,
        layers=list(stats.layers),
        config=cfg,
        n_windows_a=u_a,
        n_windows_b=u_b,
        n_tokens_a=int(n_a.sum()),
        n_tokens_b=int(n_b.sum()),
        scores={s: shaped(v) for s, v in scores.items()},
    )
    if cfg.n_bootstrap:
        result.ci_low = {s: shaped(v) for s, v in lo.items()}
        result.ci_high = {s: shaped(v) for s, v in hi.items()}
    if perm is not None:
        stat_abs = scores[cfg.statistic].abs()
        p = (1.0 + exceed) / (1.0 + cfg.n_permutations)
        null_abs = torch.cat(null_abs_chunks).double()
        fdr, null_at = _pooled_fdr(stat_abs, null_abs, cfg.n_permutations)
        q = benjamini_hochberg(p)
        result.p_value, result.q_value, result.fdr = shaped(p), shaped(q), shaped(fdr)
        level = fdr if cfg.fdr_method == "pooled" else q
        big = stat_abs >= cfg.min_effect
        sig = (level <= cfg.alpha) & big
        stat = scores[cfg.statistic]
        spec_a, spec_b = sig & (stat > 0), sig & (stat < 0)
        if cfg.k_per_language is not None:
            k = min(cfg.k_per_language, int(spec_a.sum()), int(spec_b.sum()))
            spec_a = _top_k(stat, spec_a, k)
            spec_b = _top_k(-stat, spec_b, k)
        result.significant = shaped(sig)
        result.specific_a, result.specific_b = shaped(spec_a), shaped(spec_b)
        chosen = spec_a | spec_b
        if chosen.any():
            t_sel = float(stat_abs[chosen].min())
            result.expected_false = float(null_at(t_sel))
        else:
            result.expected_false = 0.0
    return result


def contrast_null_counts(
    stats: NeuronStats,
    lang_a: str,
    lang_b: str,
    cfg: ContrastConfig | None = None,
    n_shuffles: int = 10,
    seed: int = 0,
    kind: str = DEFAULT_NULL,
    stratum_windows: int = DEFAULT_STRATUM_WINDOWS,
) -> dict[str, Int[Tensor, "shuffle layer"]]:
    """Per-layer counts of neurons selected as specific to ``lang_a`` / ``lang_b`` when the window
    labels of the pair are redrawn under a null and the whole selection is rerun.

    ``kind`` (:mod:`~babel_interp.analysis.neurons.nulls`): ``"firing_matched"`` permutes the
    pair's labels within strata of ``stratum_windows`` windows of matched overall firing rate
    (the count reached when a window's language says nothing beyond its firing level);
    ``"label_shuffle"`` over all the pair's windows (the languages made indistinguishable).
    Keys ``"a"`` and ``"b"``; bootstrap intervals are skipped (they do not enter the selection).
    """
    cfg = cfg or ContrastConfig()
    if n_shuffles < 1:
        raise ValueError(f"n_shuffles must be >= 1, got {n_shuffles}")
    if cfg.n_permutations < 1:
        raise ValueError("a contrast null count needs ContrastConfig.n_permutations >= 1")
    ka, kb = stats.lang_index(lang_a), stats.lang_index(lang_b)
    pair = ((stats.window_lang == ka) | (stats.window_lang == kb)).nonzero().flatten()
    null = LabelNull(stats, kind, stratum_windows, seed, subset=pair)
    run_cfg = dataclasses.replace(cfg, n_bootstrap=0)
    n_layers = len(stats.layers)
    out = {key: torch.zeros(n_shuffles, n_layers, dtype=torch.int64) for key in ("a", "b")}
    for i in range(n_shuffles):
        labels = null.draw()
        shuffled = dataclasses.replace(stats, window_lang=labels)
        # A different seed per shuffle: the inner permutation null must not repeat itself.
        res = contrast_pair(shuffled, lang_a, lang_b, dataclasses.replace(run_cfg, seed=seed + i))
        assert res.specific_a is not None and res.specific_b is not None
        out["a"][i] = res.specific_a.sum(-1)
        out["b"][i] = res.specific_b.sum(-1)
    return out


def _top_k(values: Tensor, mask: Tensor, k: int) -> Tensor:
    out = torch.zeros_like(mask)
    if k > 0:
        masked = torch.where(mask, values, -math.inf)
        out[masked.topk(k).indices] = True
    return out


def _pooled_fdr(
    stat_abs: Float[Tensor, " neuron"], null_abs: Float[Tensor, " null"], n_perm: int
) -> tuple[Float[Tensor, " neuron"], Any]:
    """SAM-style FDR at each neuron's |statistic|, and E_null[#{|t| >= x}] as a function of x."""
    null_sorted = torch.sort(null_abs).values

    def null_at(x: float | Tensor) -> Tensor:
        # Null values >= x, per permutation (a tiny tolerance absorbs float32 storage).
        x = torch.as_tensor(x, dtype=torch.float64) - 1e-6
        below = torch.searchsorted(null_sorted, x, side="left")
        return (null_sorted.numel() - below).double() / n_perm

    order = torch.argsort(stat_abs)  # ascending thresholds
    t_sorted = stat_abs[order]
    n_obs = stat_abs.numel() - torch.searchsorted(t_sorted, t_sorted, side="left")
    fdr_sorted = (null_at(t_sorted) / n_obs.double().clamp(min=1)).clamp(max=1.0)
    # A neuron passing threshold t also passes every lower one: take the best such FDR.
    fdr_sorted = torch.cummin(fdr_sorted, 0).values
    fdr = torch.empty_like(fdr_sorted)
    fdr[order] = fdr_sorted
    return fdr, null_at


def benjamini_hochberg(p: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """Benjamini-Hochberg adjusted p-values (q-values), monotone and capped at 1."""
    n = p.numel()
    order = torch.argsort(p)
    ranked = p[order] * n / torch.arange(1, n + 1, dtype=p.dtype)
    ranked = torch.flip(torch.cummin(torch.flip(ranked, [0]), 0).values, [0]).clamp(max=1.0)
    out = torch.empty_like(ranked)
    out[order] = ranked
    return out


def contrast_all_pairs(
    stats: NeuronStats, cfg: ContrastConfig | None = None
) -> dict[tuple[str, str], ContrastResult]:
    """:func:`contrast_pair` for every unordered pair of ``stats.languages`` (in their order)."""
    if len(stats.languages) < 2:
        raise ValueError(f"contrast needs at least two languages, got {stats.languages}")
    return {
        (a, b): contrast_pair(stats, a, b, cfg)
        for a, b in itertools.combinations(stats.languages, 2)
    }
