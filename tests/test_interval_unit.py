"""The unit the working-language intervals resample: built-in pairs (then probes within them), not
probes as if independent; and a region's interval is an interval of the region mean."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from babel_interp.analysis.stats import (
    expanded_alpha,
    paired_two_stage_bootstrap_ci,
    two_stage_bootstrap_ci,
)
from babel_interp.analysis.working_language.logit_lens import (
    CI_UNITS,
    RECORD_COLUMNS,
    REGIONS_CSV,
    WorkingLanguageConfig,
    WorkingLanguageResult,
    _ci_fn,
    _paired,
    aggregate_records,
    region_table,
)
from babel_interp.analysis.working_language.regions import decoded_depth, layer_region
from babel_interp.report.study import (
    comparison_table,
    layer_excess,
    region_excess,
    region_records,
    run_regions,
)

N_PAIRS, N_PER_PAIR = 12, 10


# ------------------------------------------------------------------------------------------------
# Coverage on clustered data
# ------------------------------------------------------------------------------------------------


def test_default_interval_covers_a_clustered_mean_and_the_probe_bootstrap_does_not():
    """12 pairs x 10 probes, a random effect per pair (sd 1) plus probe noise (sd 0.5), 300
    simulated data sets: the probe bootstrap's nominal 95% interval covers the true mean far less
    often; the analyzer's default interval (the two-stage pair bootstrap) within 5 points of 95%,
    for a mean and for a paired (probe minus control) difference."""
    rng = np.random.default_rng(20240611)
    n_draws, true = 300, 0.5
    default = WorkingLanguageConfig(n_boot=400)
    by_probe = WorkingLanguageConfig(n_boot=400, ci_unit="probe")
    groups = np.repeat(np.arange(N_PAIRS), N_PER_PAIR)
    hits = dict(probe=0, pair=0, paired_probe=0, paired_pair=0)
    for d in range(n_draws):
        pair_effect = rng.normal(0.0, 1.0, N_PAIRS)[groups]
        x = true + pair_effect + rng.normal(0.0, 0.5, groups.size)
        # A control sharing part of the pair's lean: the excess keeps a pair effect of its own.
        y = 0.4 * pair_effect + rng.normal(0.0, 0.5, groups.size)
        for name, cfg in (("probe", by_probe), ("pair", default)):
            cfg = replace(cfg, seed=d)
            ci = _ci_fn(cfg)(x, groups)
            hits[name] += ci.low <= true <= ci.high
            ci = _paired(cfg, x, y, groups)
            hits[f"paired_{name}"] += ci.low <= true <= ci.high
    coverage = {k: v / n_draws for k, v in hits.items()}
    assert coverage["probe"] < 0.75, coverage
    assert coverage["paired_probe"] < 0.80, coverage
    assert abs(coverage["pair"] - 0.95) <= 0.05, coverage
    assert abs(coverage["paired_pair"] - 0.95) <= 0.05, coverage
    # The default is the two-stage bootstrap itself.
    assert _ci_fn(default)(x, groups) == two_stage_bootstrap_ci(x, groups, n_boot=400)


def test_two_stage_bootstrap_basics():
    values = np.arange(12.0)
    groups = np.repeat(["a", "b", "c"], 4)
    ci = two_stage_bootstrap_ci(values, groups, n_boot=200)
    assert ci.estimate == pytest.approx(values.mean()) and ci.n == 12
    assert ci.low < ci.estimate < ci.high
    # Seeded, and NaN entries drop out.
    assert two_stage_bootstrap_ci(values, groups, n_boot=200) == ci
    with_nan = np.append(values, np.nan)
    assert two_stage_bootstrap_ci(with_nan, np.append(groups, "d"), n_boot=200).n == 12
    # A generic statistic agrees in spirit; unequal groups are handled.
    med = two_stage_bootstrap_ci(values[:-1], groups[:-1], stat=np.median, n_boot=100)
    assert med.low <= np.median(values[:-1]) <= med.high
    # One group: a plain bootstrap inside it (no expansion).
    one = two_stage_bootstrap_ci(values, np.zeros(12), n_boot=300)
    assert one.low > values.min() and one.high < values.max()
    assert expanded_alpha(0.95, 1) == pytest.approx(0.025)
    assert 0.0 < expanded_alpha(0.95, 12) < expanded_alpha(0.95, 100) < 0.025
    with pytest.raises(ValueError, match="parallel"):
        two_stage_bootstrap_ci(values, groups[:3])
    with pytest.raises(ValueError, match="same length"):
        paired_two_stage_bootstrap_ci(values, values[:3], groups)
    assert np.isnan(two_stage_bootstrap_ci([np.nan], ["a"]).estimate)


# ------------------------------------------------------------------------------------------------
# The analyzer's default unit
# ------------------------------------------------------------------------------------------------

# Decoded layers: the embedding, six middle layers and the output (depths 0, 1/6 .. 5/6, 1).
LAYERS = [f"blocks.{i}.hook_resid_pre" for i in range(6)] + ["blocks.5.hook_resid_post"]


def _records(seed: int = 0, steps=(0, 10)) -> pd.DataFrame:
    """A records table with a lean per built-in pair and independent noise per layer."""
    rng = np.random.default_rng(seed)
    rows = []
    probe_pair = np.repeat(np.arange(N_PAIRS), 4)
    for step in steps:
        pair_lean = rng.normal(0.3, 0.8, N_PAIRS)
        for site in ("probe", "matched", "random"):
            for probe, pair in enumerate(probe_pair):
                for li, layer in enumerate(LAYERS):
                    lean = pair_lean[pair] if site == "probe" else 0.0
                    lr = lean + rng.normal(0.0, 2.0)
                    p_t = 0.01
                    p_p = p_t * float(np.exp(lr))
                    rows.append(
                        dict(
                            step=step,
                            target_tokens=step * 100,
                            lens="logit",
                            site=site,
                            probe=probe,
                            concept=f"c{pair}",
                            primary=f"py{pair}",
                            target=f"php{pair}",
                            doc_id=f"d{probe}",
                            layer=layer,
                            layer_pos=float(li if li < 6 else 6),
                            p_primary=p_p,
                            p_target=p_t,
                            log_ratio=lr,
                            mass_diff=p_p - p_t,
                            primary_wins=float(lr > 0),
                            entropy=1.0,
                            kl_to_final=0.1,
                            top1_id=1,
                            top1_token="x",
                            top1_lang="other",
                            short_share_primary=0.0,
                            short_share_target=0.0,
                            p_first=0.1 if site == "probe" else np.nan,
                            top1_hit=float(rng.random() < 0.5) if site == "probe" else np.nan,
                            top5_hit=1.0 if site == "probe" else np.nan,
                            same_last_token=1.0 if site != "probe" else np.nan,
                        )
                    )
    df = pd.DataFrame(rows)[RECORD_COLUMNS]
    df["step"] = df["step"].astype("Int64")
    df["target_tokens"] = df["target_tokens"].astype("Int64")
    return df


def test_default_ci_unit_is_the_pair_bootstrap():
    cfg = WorkingLanguageConfig()
    assert cfg.ci_unit == "pair" and set(CI_UNITS) == {"pair", "probe"}
    from babel_interp.cli import build_parser

    argv = ["analyze", "working-language", "--run", "r", "--target", "php"]
    args = build_parser().parse_args(argv)
    assert args.ci_unit == "pair"
    # The default config's per-layer excess interval is the paired two-stage pair bootstrap.
    records = _records()
    cfg = WorkingLanguageConfig(n_boot=200)
    agg = aggregate_records(records, cfg)
    layer = LAYERS[3]
    probe = records[(records["step"] == 10) & (records["layer"] == layer)]
    x = probe[probe["site"] == "probe"].set_index("probe")["log_ratio"].sort_index()
    y = probe[probe["site"] == "matched"].set_index("probe")["log_ratio"].reindex(x.index)
    groups = np.repeat([f"py{p}/php{p}" for p in range(N_PAIRS)], 4)
    want = paired_two_stage_bootstrap_ci(x.to_numpy(), y.to_numpy(), groups, n_boot=200)
    row = agg[(agg["step"] == 10) & (agg["layer"] == layer)].iloc[0]
    assert (row["excess_matched_lo"], row["excess_matched_hi"]) == pytest.approx(
        (want.low, want.high)
    )
    by_probe = aggregate_records(records, WorkingLanguageConfig(n_boot=200, ci_unit="probe"))
    width = (agg["excess_matched_hi"] - agg["excess_matched_lo"]).mean()
    assert width > (by_probe["excess_matched_hi"] - by_probe["excess_matched_lo"]).mean()


# ------------------------------------------------------------------------------------------------
# Region intervals
# ------------------------------------------------------------------------------------------------


def _direct_region_ci(records: pd.DataFrame, step: int, region: str, n_boot: int):
    """Per-probe mean over the region's layers of probe minus matched log-ratio, bootstrapped
    over pairs then probes."""
    df = records[records["step"] == step]
    df = df.assign(region=layer_region(decoded_depth(records["layer_pos"]))[df.index])
    df = df[df["region"] == region]
    wide = df.pivot_table(index=["probe", "layer"], columns="site", values="log_ratio")
    per_probe = (wide["probe"] - wide["matched"]).groupby(level="probe").mean().sort_index()
    groups = np.repeat([f"py{p}/php{p}" for p in range(N_PAIRS)], 4)
    return two_stage_bootstrap_ci(per_probe.to_numpy(), groups, n_boot=n_boot)


def test_region_table_bootstraps_the_region_mean():
    records = _records()
    cfg = WorkingLanguageConfig(n_boot=300)
    reg = region_table(records, cfg)
    assert set(reg["region"]) == {"middle", "output"}
    agg = aggregate_records(records, cfg)
    for step in (0, 10):
        mid_layers = agg[(agg["step"] == step) & (agg["layer"].isin(LAYERS[1:6]))]
        row = reg[(reg["step"] == step) & (reg["region"] == "middle")].iloc[0]
        assert row["n_layers"] == 5 and row["n_pairs"] == N_PAIRS and row["ci_unit"] == "pair"
        # The estimate is the mean of the per-layer estimates ...
        assert row["excess_matched"] == pytest.approx(mid_layers["excess_matched"].mean())
        # ... its interval a bootstrap of per-probe region means ...
        want = _direct_region_ci(records, step, "middle", 300)
        assert (row["excess_matched_lo"], row["excess_matched_hi"]) == pytest.approx(
            (want.low, want.high)
        )
        # ... which, with independent noise per layer, is far narrower than the mean of bounds.
        mean_of_bounds = (mid_layers["excess_matched_hi"] - mid_layers["excess_matched_lo"]).mean()
        assert row["excess_matched_hi"] - row["excess_matched_lo"] < 0.75 * mean_of_bounds


def _save_study(root, records_by_kind, cfg, with_regions=True):
    for kind, records in records_by_kind.items():
        out = root / "seed_0" / "php" / kind / "analysis" / "working_language"
        WorkingLanguageResult(records=records, config=cfg).save(out)
        if not with_regions:
            (out / REGIONS_CSV).unlink()


@pytest.mark.parametrize("with_regions", [True, False])
def test_one_seed_region_excess_is_an_interval_of_the_region_mean(tmp_path, with_regions):
    cfg = WorkingLanguageConfig(n_boot=300)
    records = {"continual": _records(seed=1), "scratch": _records(seed=2)}
    # A result saved before the region table existed has it recomputed from its records.
    _save_study(tmp_path, records, cfg, with_regions=with_regions)
    wl = tmp_path / "seed_0" / "php" / "continual" / "analysis" / "working_language"
    assert (wl / REGIONS_CSV).is_file() == with_regions
    assert len(run_regions(wl)) == 4
    per_seed = layer_excess(tmp_path, [0], "php")
    reg = region_excess(per_seed, region_records(tmp_path, [0], "php"))
    assert set(reg["interval"]) == {"pairs"}
    for kind, recs in records.items():
        for region in ("middle", "output"):
            row = reg[(reg["kind"] == kind) & (reg["step"] == 10) & (reg["region"] == region)]
            want = _direct_region_ci(recs, 10, region, 300)
            assert tuple(row[["excess", "lo", "hi"]].iloc[0]) == pytest.approx(
                (want.estimate, want.low, want.high)
            )
    # The middle interval is not the mean of the per-layer bounds.
    mid = per_seed[(per_seed["kind"] == "continual") & (per_seed["step"] == 10)]
    mid = mid[(mid["depth"] > 0) & (mid["depth"] < 1)]
    row = reg[(reg["kind"] == "continual") & (reg["step"] == 10) & (reg["region"] == "middle")]
    assert row["hi"].iloc[0] - row["lo"].iloc[0] < 0.75 * (mid["hi"] - mid["lo"]).mean()
    # Without the region table, no interval is made up from per-layer bounds.
    bare = region_excess(per_seed)
    assert bare["lo"].isna().all() and set(bare["interval"]) == {"none"}
    # The comparison table prints the region interval.
    table = comparison_table(tmp_path, [0], "php")
    cont = reg[(reg["kind"] == "continual") & (reg["step"] == 10) & (reg["region"] == "middle")]
    m, lo, hi = cont[["excess", "lo", "hi"]].iloc[0]
    cell = table.loc[table["step"] == 10, "cont_middle"].iloc[0]
    assert cell == f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def test_regions_are_saved_and_read_back(tmp_path):
    res = WorkingLanguageResult(records=_records(), config=WorkingLanguageConfig(n_boot=100))
    paths = res.save(tmp_path)
    assert tmp_path / REGIONS_CSV in paths
    loaded = WorkingLanguageResult.load(tmp_path)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / REGIONS_CSV), loaded.regions(), check_dtype=False, rtol=1e-9
    )
