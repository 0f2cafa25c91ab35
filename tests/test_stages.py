"""The stage detector on synthetic series whose stages are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import babel_interp.report.stage_plots as stage_plots
from babel_interp.analysis.stages.detector import (
    STAGES,
    UNDETERMINED,
    UNINFORMATIVE,
    StageAnalysis,
    StageConfig,
    align_series,
    analyze_run,
    detect_stages,
    estimate_noise,
    mann_kendall,
    max_drawdown,
    smooth,
    stage_series_from_run,
)
from babel_interp.cli import main
from babel_interp.report.stage_plots import plot_stage_analysis, plot_stages

# The trainer checkpoints log-spaced: dense early, sparse late.
STEPS = np.unique(np.geomspace(10, 20_000, 40).astype(int))
N = len(STEPS)
PEAK, BOTTOM = 12, 22


def three_stage(sigma: float, seed: int, depth: float = 0.4, n: int = N) -> np.ndarray:
    """Rise 0 -> 1 until PEAK, fall by ``depth`` until BOTTOM, then level; Gaussian noise."""
    i = np.arange(n)
    y = np.where(
        i <= PEAK,
        i / PEAK,
        np.where(i <= BOTTOM, 1 - depth * (i - PEAK) / (BOTTOM - PEAK), 1 - depth),
    )
    return y + sigma * np.random.default_rng(seed).standard_normal(n)


def index_of(step: int) -> int:
    return int(np.flatnonzero(STEPS == step)[0])


def test_config_round_trip_and_validation():
    cfg = StageConfig(performance="val_loss", performance_direction=-1, smoothing="mean")
    assert StageConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad, field in [
        (dict(performance_direction=0), "performance_direction"),
        (dict(smoothing_window=4), "smoothing_window"),
        (dict(smoothing="loess"), "smoothing"),
        (dict(alpha=0.7), "alpha"),
        (dict(corroborating={"transfer_ratio": 2}), "corroborating"),
        (dict(n_boot=5), "n_boot"),
        (dict(noise_sigma=-1.0), "noise_sigma"),
        (dict(rise_shape="cubic"), "rise_shape"),
        (dict(competence_threshold=float("nan")), "competence_threshold"),
    ]:
        with pytest.raises(ValueError, match=field):
            StageConfig(**bad)
    with pytest.raises(ValueError, match="unknown field"):
        StageConfig.from_dict({"smoothing_windw": 3})


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_three_stages_found_within_one_checkpoint(seed):
    y = three_stage(sigma=0.03, seed=seed)
    res = detect_stages({"performance": pd.Series(y, index=STEPS)})
    assert res.verdict == "three stages"
    assert abs(index_of(res.translation_end) - PEAK) <= 1
    assert abs(index_of(res.transition_end) - BOTTOM) <= 1
    lo, hi = res.translation_end_interval
    assert lo <= res.translation_end <= hi
    lo, hi = res.transition_end_interval
    assert lo <= res.transition_end <= hi
    assert 0.5 <= res.confidence <= 1.0
    assert res.dip_p_value < 0.05
    labels = np.asarray(res.labels)
    assert set(labels) == set(STAGES)
    # Labels are contiguous and in order, and the boundaries are the last step of each stage.
    order = [STAGES.index(x) for x in labels]
    assert order == sorted(order)
    assert STEPS[labels == "translation"][-1] == res.translation_end
    assert STEPS[labels == "transition"][-1] == res.transition_end


def test_loss_series_with_direction_gives_same_boundaries():
    y = three_stage(sigma=0.03, seed=7)
    acc = detect_stages({"performance": (STEPS, y)})
    loss = detect_stages(
        {"val_loss": (STEPS, 5.0 - 2.0 * y)},
        StageConfig(performance="val_loss", performance_direction=-1),
    )
    assert loss.verdict == acc.verdict == "three stages"
    assert loss.boundaries == acc.boundaries


@pytest.mark.parametrize(
    "shape",
    [
        lambda i: 1 - np.exp(-i / 8),
        lambda i: i / 40,
        lambda i: 1 / (1 + np.exp(-(i - 15) / 3)),
        lambda i: np.log1p(i),
        lambda i: 1 - np.exp(-i / 2),
    ],
)
def test_monotone_series_give_no_transition(shape):
    y = shape(np.arange(N).astype(float))
    res = detect_stages({"performance": (STEPS, y)})
    assert res.verdict == "no transition: monotone improvement"
    assert res.boundaries == {}
    assert set(res.labels) == {UNDETERMINED}
    assert res.confidence is None
    # A loss falling monotonically is the same improvement.
    loss = detect_stages({"performance": (STEPS, 8.0 - y)}, StageConfig(performance_direction=-1))
    assert loss.verdict == "no transition: monotone improvement"


def test_noisy_monotone_rarely_invents_stages():
    i = np.arange(N)
    cfg = StageConfig(n_null=400, n_boot=20)
    invented = 0
    for seed in range(30):
        y = 1 - np.exp(-i / 8) + 0.05 * np.random.default_rng(seed).standard_normal(N)
        res = detect_stages({"performance": (STEPS, y)}, cfg)
        invented += res.verdict != "no transition: monotone improvement"
    # The dip test is at 5%; allow sampling error over 30 series.
    assert invented <= 3


def test_flat_series_has_no_stages():
    res = detect_stages({"performance": (STEPS, np.full(N, 0.3))})
    assert res.verdict == "no stages: flat"
    assert res.boundaries == {}
    cfg = StageConfig(n_null=400, n_boot=20)
    staged = 0
    for seed in range(30):
        y = 0.3 + 0.05 * np.random.default_rng(100 + seed).standard_normal(N)
        res = detect_stages({"performance": (STEPS, y)}, cfg)
        staged += bool(res.stages_found)
    assert staged <= 3


def test_dip_smaller_than_the_noise_is_not_a_transition():
    for seed in range(8):
        # A dip of 0.8 noise sd after a clear rise.
        y = three_stage(sigma=0.05, seed=seed, depth=0.04)
        res = detect_stages({"performance": (STEPS, y)})
        assert res.verdict == "no transition: monotone improvement", res.reason
        assert res.stages_found == []
    # 200 checkpoints and a known noise level: the effect-size floor holds whatever the p-value.
    n = 200
    i = np.arange(n)
    y = np.where(i <= 60, i / 60, np.where(i <= 110, 1 - 0.03 * (i - 60) / 50, 0.97))
    y = y + 0.05 * np.random.default_rng(0).standard_normal(n)
    res = detect_stages(
        {"performance": (i * 10, y)},
        StageConfig(noise_sigma=0.05, smoothing="mean", smoothing_window=9, n_boot=20),
    )
    assert res.verdict == "no transition: monotone improvement", res.reason


def test_min_dip_sigma_is_an_effect_size_floor():
    y = three_stage(sigma=0.05, seed=1, depth=0.2)  # a 4 sd dip
    assert detect_stages({"performance": (STEPS, y)}).verdict == "three stages"
    res = detect_stages({"performance": (STEPS, y)}, StageConfig(min_dip_sigma=6.0))
    assert res.dip_p_value < 0.05
    assert res.verdict == "no transition: monotone improvement"
    assert "below 6 noise sd" in res.reason


def test_still_falling_at_the_end_has_no_stabilization():
    i = np.arange(N)
    y = np.where(i <= 15, i / 15, 1 - 0.6 * (i - 15) / (N - 1 - 15))
    y = y + 0.02 * np.random.default_rng(3).standard_normal(N)
    res = detect_stages({"performance": (STEPS, y)})
    assert res.verdict == "two stages: translation and transition (no stabilization yet)"
    assert res.transition_end is None
    assert abs(index_of(res.translation_end) - 15) <= 1
    assert "stabilization" not in res.labels


def test_decline_then_level_has_no_translation():
    i = np.arange(N)
    y = np.where(i <= 14, 1 - 0.5 * i / 14, 0.5) + 0.02 * np.random.default_rng(4).standard_normal(
        N
    )
    res = detect_stages({"performance": (STEPS, y)})
    assert res.verdict == "two stages: transition and stabilization (no translation rise observed)"
    assert res.translation_end is None
    assert abs(index_of(res.transition_end) - 14) <= 1
    assert "translation" not in res.labels


def test_competence_gate_marks_checkpoints_uninformative():
    y = three_stage(sigma=0.03, seed=11)
    n_gate = 8
    # Garbage before the model is competent: a spike that alone would look like a peak and a dip.
    y_gated = np.concatenate([[0.0, 2.0, 2.0, -1.0, 2.0, -1.0, 0.5, 0.1], y])
    steps = np.concatenate([np.arange(1, n_gate + 1), STEPS + 100])
    competence = np.concatenate([np.linspace(0.0, 0.09, n_gate), np.full(N, 0.5)])
    res = detect_stages(
        {"performance": (steps, y_gated), "competence": (steps, competence)},
        StageConfig(competence_threshold=0.1),
    )
    assert res.labels[:n_gate] == [UNINFORMATIVE] * n_gate
    assert UNINFORMATIVE not in res.labels[n_gate:]
    assert not res.informative[:n_gate].any()
    alone = detect_stages({"performance": (STEPS + 100, y)})
    assert res.verdict == alone.verdict == "three stages"
    assert res.boundaries == alone.boundaries
    d = res.to_dict()
    assert d["uninformative_steps"] == list(range(1, n_gate + 1))
    assert d["n_informative"] == N
    assert any("competence" in note for note in res.notes)
    df = res.to_dataframe()
    assert df["performance_fitted"].iloc[:n_gate].isna().all()
    # A checkpoint with no competence measurement is not interpreted either.
    competence[n_gate + 30] = np.nan
    res = detect_stages({"performance": (steps, y_gated), "competence": (steps, competence)})
    assert res.labels[n_gate + 30] == UNINFORMATIVE


def test_everything_gated_is_insufficient_data():
    y = three_stage(sigma=0.03, seed=0)
    res = detect_stages({"performance": (STEPS, y), "competence": (STEPS, np.zeros(N))})
    assert res.verdict == "insufficient data"
    assert set(res.labels) == {UNINFORMATIVE}


def test_corroboration_reports_agreement():
    y = three_stage(sigma=0.03, seed=2)
    i = np.arange(N)
    rng = np.random.default_rng(9)
    # Share of probes leaning Python: high in Translation, falls during Transition.
    share = np.where(i <= PEAK, 0.8, np.where(i <= BOTTOM, 0.8 - 0.6 * (i - PEAK) / 10, 0.2))
    share = share + 0.02 * rng.standard_normal(N)
    neurons = 300 + 400 * (i > PEAK) + 5 * rng.standard_normal(N)  # rises: against expectation
    flat_ratio = 0.5 + 0.02 * rng.standard_normal(N)
    res = detect_stages(
        {
            "performance": (STEPS, y),
            "working_language_share": (STEPS, share),
            "transferring_neurons": (STEPS, neurons),
            "transfer_ratio": (STEPS[::2], flat_ratio[::2]),  # measured at every other checkpoint
        }
    )
    by = {c["series"]: c for c in res.corroboration}
    assert by["working_language_share"]["verdict"] == "agrees"
    assert by["working_language_share"]["change_in_transition"]
    assert res.translation_end <= by["working_language_share"]["change_step"]
    assert by["transferring_neurons"]["verdict"] == "disagrees"
    assert by["transfer_ratio"]["verdict"] == "inconclusive"
    assert by["transfer_ratio"]["n"] == len(STEPS[::2])
    assert res.agreement == pytest.approx(1 / 3)
    assert res.missing_series == ["working_language_excess"]
    # The boundaries come from performance alone.
    alone = detect_stages({"performance": (STEPS, y)})
    assert alone.boundaries == res.boundaries
    assert sorted(alone.missing_series) == sorted(StageConfig().corroborating)


def test_short_series_is_insufficient_data():
    res = detect_stages({"performance": [0.1, 0.5, 0.3, 0.3]})
    assert res.verdict == "insufficient data"
    assert res.boundaries == {}


def test_result_serializes():
    res = detect_stages(
        {"performance": (STEPS, three_stage(0.03, 1)), "transfer_ratio": (STEPS, np.ones(N))}
    )
    d = json.loads(json.dumps(res.to_dict()))
    assert d["verdict"] == "three stages"
    assert d["boundaries"]["translation_end"] == res.translation_end
    assert d["config"]["performance"] == "performance"
    df = res.to_dataframe()
    assert list(df["step"]) == list(STEPS)
    assert {"stage", "performance", "performance_smoothed", "transfer_ratio"} <= set(df.columns)


def test_bad_input_is_named():
    with pytest.raises(KeyError, match="performance"):
        detect_stages({"accuracy": [1, 2, 3]})
    with pytest.raises(ValueError, match="duplicate steps"):
        detect_stages({"performance": ([1, 1, 2], [0.1, 0.2, 0.3])})
    with pytest.raises(ValueError, match="3 steps but 2 values"):
        detect_stages({"performance": ([1, 2, 3], [0.1, 0.2])})
    with pytest.raises(ValueError, match="'transfer_ratio' must be indexed by training step"):
        detect_stages({"performance": [0.0] * 9, "transfer_ratio": pd.Series([1.0], index=["a"])})
    with pytest.raises(ValueError, match="no finite values"):
        detect_stages({"performance": [np.nan, np.nan]})


def test_align_series_matches_steps_exactly():
    steps, values = align_series(
        {"performance": {10: 1.0, 20: np.nan, 30: 2.0}, "x": {30: 5.0, 40: 6.0}}, on="performance"
    )
    assert list(steps) == [10, 30]
    assert np.isnan(values["x"][0]) and values["x"][1] == 5.0


def test_helpers():
    depth, start, end = max_drawdown(np.array([0.0, 2.0, 1.0, 3.0, 0.5, 1.0]))
    assert (float(depth), int(start), int(end)) == (2.5, 3, 4)
    z, p = mann_kendall(np.arange(20.0))
    assert z > 5 and p < 1e-6
    assert mann_kendall(np.ones(10)) == (0.0, 1.0)
    y = np.array([0.0, 5.0, 1.0, 2.0, 3.0])
    assert list(smooth(y, "median", 3)) == [0.0, 1.0, 2.0, 2.0, 3.0]
    assert list(smooth(y, "none")) == list(y)
    noise = np.random.default_rng(0).standard_normal(5000) * 0.2
    trend = np.linspace(0, 10, 5000) ** 1.5 / 10
    assert estimate_noise(trend + noise) == pytest.approx(0.2, rel=0.05)
    batch = estimate_noise(np.stack([noise, 2 * noise]))
    assert batch.shape == (2,) and batch[1] == pytest.approx(2 * batch[0])


# ---------------------------------------------------------------------------------------------
# The run-level analysis and its command


def _fake_run(tmp_path, loss, wl_share=None, neurons=None, ratio=None, competence=None):
    """A run directory holding what the trainer and the other analyzers write, in their formats:
    checkpoints (trainer state only: the stage detector loads no model), eval records, and the
    working-language, neuron and transfer tables."""
    run = tmp_path / "run"
    for step in STEPS:
        d = run / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        state = {"step": int(step), "tokens_seen": {"python": 0, "php": int(step) * 512}}
        (d / "trainer_state.json").write_text(json.dumps(state))
    (run / "run_config.json").write_text(json.dumps({"corpus": str(tmp_path / "corpus")}))
    records = []
    for step, v in zip(STEPS, loss, strict=True):
        records.append({"type": "train", "step": int(step), "loss": float(v)})
        records.append(
            {
                "type": "eval",
                "step": int(step),
                "val_loss": {"php": float(v), "python": 3.0},
                "val_bpb": {"php": float(v) / 2, "python": None},
            }
        )
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    analysis = run / "analysis"
    if wl_share is not None:
        wl = analysis / "working_language"
        wl.mkdir(parents=True)
        rows = []
        for step, v in zip(STEPS, wl_share, strict=True):
            for layer, pos in (
                ("blocks.0.hook_resid_pre", 0.0),
                ("blocks.1.hook_resid_pre", 0.5),
                ("ln_final.hook_normalized", 1.0),
            ):
                # Only the middle layer carries the signal; the others would hide it.
                share = v if layer == "blocks.1.hook_resid_pre" else 0.9
                rows.append(
                    dict(
                        step=int(step),
                        lens="logit",
                        layer=layer,
                        layer_pos=pos,
                        share_primary=share,
                        excess_matched=share - 0.5,
                        competent=True,
                    )
                )
        pd.DataFrame(rows).to_csv(wl / "aggregate.csv", index=False)
        comp = competence if competence is not None else np.full(N, 0.5)
        pd.DataFrame(
            dict(step=STEPS, top1_acc=comp, top5_acc=comp, metric="top1", threshold=0.1)
        ).to_csv(wl / "competence.csv", index=False)
        (wl / "summary.json").write_text(json.dumps({"config": {"target": "php"}}))
    if neurons is not None:
        nd = analysis / "neurons"
        nd.mkdir(parents=True)
        rows = [
            dict(step=int(s), definition="lape_shared", count=int(c))
            for s, c in zip(STEPS, neurons, strict=True)
        ]
        rows += [dict(step=int(s), definition="target_specific", count=5) for s in STEPS]
        rows += [dict(step="random_init", definition="lape_shared", count=7)]
        pd.DataFrame(rows).to_csv(nd / "counts_total.csv", index=False)
        (nd / "config.json").write_text(json.dumps({"primary": "python", "target": "php"}))
    if ratio is not None:
        tr = analysis / "transfer"
        tr.mkdir(parents=True)
        pd.DataFrame(dict(language="php", step=STEPS, ratio=ratio)).to_csv(
            tr / "transfer.csv", index=False
        )
    return run


def test_stages_command_reads_every_analyzer(tmp_path, capsys):
    y = three_stage(sigma=0.02, seed=5)
    i = np.arange(N)
    share = np.where(i <= PEAK, 0.8, np.where(i <= BOTTOM, 0.8 - 0.06 * (i - PEAK), 0.2))
    n_gate = 3
    competence = np.where(i < n_gate, 0.02, 0.6)
    run = _fake_run(
        tmp_path,
        loss=4.0 - y,
        wl_share=share,
        neurons=np.where(i <= PEAK + 3, 400, 150),
        ratio=np.where(i <= PEAK, 0.6, 0.05),
        competence=competence,
    )
    assert main(["analyze", "stages", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "php: three stages" in out
    df = pd.read_csv(run / "analysis" / "stages" / "stages.csv")
    assert len(df) == N and set(df["language"]) == {"php"}
    assert list(df["stage"].iloc[:n_gate]) == ["uninformative"] * n_gate
    assert {"val_loss", "working_language_share", "transferring_neurons", "transfer_ratio"} <= set(
        df.columns
    )
    verdict = json.loads((run / "analysis" / "stages" / "stages.json").read_text())["php"]
    assert verdict["verdict"] == "three stages"
    assert abs(index_of(verdict["boundaries"]["translation_end"]) - PEAK) <= 1
    assert abs(index_of(verdict["boundaries"]["transition_end"]) - BOTTOM) <= 1
    assert verdict["config"]["performance"] == "val_loss"
    assert verdict["config"]["performance_direction"] == -1
    assert verdict["config"]["competence_threshold"] == 0.1  # the analyzer's own gate
    assert verdict["missing_inputs"] == {}
    assert "mean over resid_pre 1" in verdict["sources"]["working_language_share"]
    assert verdict["sites"]["working_language_share"] == "mean over resid_pre 1"
    by = {c["series"]: c["verdict"] for c in verdict["corroboration"]}
    assert by == {
        "working_language_share": "agrees",
        "working_language_excess": "agrees",
        "transferring_neurons": "agrees",
        "transfer_ratio": "agrees",
    }
    png = run / "figures" / "stages_php.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stages_command_with_metrics_alone_says_what_is_missing(tmp_path, capsys):
    # Loss falling monotonically, as in the CPU pilot: no transition.
    loss = 7.9 - 4.6 * (1 - np.exp(-np.arange(N) / 6))
    run = _fake_run(tmp_path, loss=loss)
    assert main(["analyze", "stages", "--run", str(run), "--performance", "bpb"]) == 0
    out = capsys.readouterr().out
    assert "no transition: monotone improvement" in out
    assert "series missing" in out and "run `analyze neurons`" in out
    verdict = json.loads((run / "analysis" / "stages" / "stages.json").read_text())["php"]
    assert verdict["boundaries"]["translation_end"] is None
    assert set(verdict["missing_inputs"]) == {
        "working_language_share",
        "working_language_excess",
        "competence",
        "transferring_neurons",
        "transfer_ratio",
    }
    assert verdict["config"]["performance"] == "val_bpb"
    # Asking for accuracy that was never measured is a clear error, not a traceback.
    assert main(["analyze", "stages", "--run", str(run), "--performance", "accuracy"]) == 1
    assert "analyze performance" in capsys.readouterr().err
    assert main(["analyze", "stages", "--run", str(run), "--language", "go"]) == 1
    assert "no val_loss for 'go'" in capsys.readouterr().err


def test_tables_of_another_target_are_not_used(tmp_path):
    run = _fake_run(tmp_path, loss=np.linspace(5, 3, N), wl_share=np.linspace(0.8, 0.2, N))
    (run / "analysis" / "working_language" / "summary.json").write_text(
        json.dumps({"config": {"target": "csharp"}})
    )
    rs = stage_series_from_run(run, "php")
    assert "working_language_share" not in rs.series
    assert "csharp" in rs.missing["working_language_share"]
    assert rs.performance == "val_loss" and rs.performance_direction == -1


def test_figure_for_every_kind_of_result(tmp_path):
    steps = np.concatenate([[0], STEPS[:-1]])  # step 0 needs a symmetric-log axis
    comp = np.where(np.arange(N) < 4, 0.0, 1.0)
    res = detect_stages(
        {
            "performance": (steps, three_stage(0.03, 2)),
            "competence": (steps, comp),
            "transfer_ratio": (steps, np.linspace(0.6, 0.0, N)),
        }
    )
    assert res.labels[0] == UNINFORMATIVE
    for name, r in {
        "staged": res,
        "monotone": detect_stages({"performance": (STEPS, np.log1p(np.arange(N)))}),
        "short": detect_stages({"performance": [0.1, 0.2]}),
    }.items():
        path = plot_stages(r, tmp_path / f"{name}.png", title=name)
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp*"))


def test_pass_at_1_is_the_performance_when_execution_was_measured(tmp_path):
    run = _fake_run(tmp_path, loss=np.linspace(5, 3, N))
    rs = stage_series_from_run(run, "php")
    assert rs.performance == "val_loss"
    # The paper's shape in pass@1: a rise, a dip, a plateau (loss keeps falling meanwhile).
    perf = three_stage(sigma=0.03, seed=0) / 2
    ex = run / "analysis" / "execution"
    ex.mkdir(parents=True)
    rows = [
        dict(step=int(s), language="php", k=1, pass_at_k=float(v))
        for s, v in zip(STEPS, perf, strict=True)
    ]
    rows += [dict(step=int(s), language="go", k=1, pass_at_k=0.0) for s in STEPS]
    rows += [dict(step=int(s), language="php", k=5, pass_at_k=1.0) for s in STEPS]
    pd.DataFrame(rows).to_csv(ex / "pass_at_k.csv", index=False)
    rs = stage_series_from_run(run, "php")
    assert rs.performance == "pass_at_1" and rs.performance_direction == 1
    np.testing.assert_allclose(rs.series["pass_at_1"].to_numpy(), perf)
    assert stage_series_from_run(run, "php", performance="loss").performance == "val_loss"
    with pytest.raises(FileNotFoundError, match="babel-interp evaluate"):
        stage_series_from_run(run, "csharp", performance="pass_at_1")
    analysis = analyze_run(run, language="php")
    assert analysis.language == "php" and analysis.detection.verdict == "three stages"
    assert analysis.sources["pass_at_1"] == str(ex / "pass_at_k.csv")
    assert not (run / "figures").exists()  # computing never draws


def test_stage_analysis_saves_and_loads_back(tmp_path):
    i = np.arange(N)
    run = _fake_run(
        tmp_path,
        loss=4.0 - three_stage(sigma=0.02, seed=5),
        wl_share=np.where(i <= PEAK, 0.8, 0.2),
        ratio=np.where(i <= PEAK, 0.6, 0.05),
    )
    analysis = analyze_run(run, language="php", cfg=StageConfig(n_boot=50))
    saved = run / "analysis" / "stages"
    loaded = StageAnalysis.load(saved)
    assert loaded.language == "php"
    pd.testing.assert_frame_equal(loaded.to_dataframe(), analysis.to_dataframe())
    assert loaded.to_dict() == analysis.to_dict()
    assert list(loaded.detection.series) == list(analysis.detection.series)
    # What was saved is what analyze_run wrote: saving the loaded result changes no byte.
    again = tmp_path / "again"
    loaded.save(again)
    for name in ("stages.csv", "stages.json"):
        assert (again / name).read_bytes() == (saved / name).read_bytes()

    # A second language joins the same tables with other series; each reads back on its own.
    go = StageAnalysis(
        "go",
        detect_stages({"performance": (STEPS, three_stage(0.03, 1))}, StageConfig(n_boot=20)),
        sources={"performance": "test"},
        missing={},
    )
    go.save(saved)
    with pytest.raises(ValueError, match="name a language"):
        StageAnalysis.load(saved)
    with pytest.raises(ValueError, match="no stages of 'csharp'"):
        StageAnalysis.load(saved, "csharp")
    for original in (analysis, go):
        back = StageAnalysis.load(saved, original.language)
        pd.testing.assert_frame_equal(back.to_dataframe(), original.to_dataframe())
        assert back.to_dict() == original.to_dict()
    assert set(pd.read_csv(saved / "stages.csv")["language"]) == {"php", "go"}

    # The figure from the saved tables is the figure from the result in memory.
    from_memory = plot_stage_analysis(analysis, tmp_path / "memory")
    from_disk = plot_stage_analysis(saved, tmp_path / "disk", language="php")
    assert from_disk.name == from_memory.name == "stages_php.png"
    assert from_disk.read_bytes() == from_memory.read_bytes()


def test_figure_says_why_a_statistic_is_missing(tmp_path, monkeypatch):
    figures = []

    def keep(fig, path, dpi):
        figures.append(fig)
        return path

    # The figure object is what carries the text; the PNG's pixels cannot be read back as text.
    monkeypatch.setattr(stage_plots, "save_figure", keep)
    # The demo's situation: most checkpoints are below the competence gate.
    steps = STEPS[:7]
    gated = detect_stages(
        {
            "performance": (steps, three_stage(0.03, 0, n=7)),
            "competence": (steps, np.array([0.0, 0.0, 0.0, 0.05, 0.05, 0.5, 0.5])),
        }
    )
    assert gated.verdict == "insufficient data" and np.isnan(gated.noise_sigma)
    text = stage_plots.statistics_text(gated)
    assert text == (
        "noise sd and largest drawdown not estimated: 2 informative checkpoints, 7 needed "
        "(5 of 7 below the competence gate: competence < 0.1)"
    )
    short = detect_stages({"performance": [0.1, 0.2]}, StageConfig(min_segment=1))
    assert stage_plots.statistics_text(short) == (
        "noise sd and largest drawdown not estimated: 2 informative checkpoints, 5 needed"
    )
    staged = detect_stages({"performance": (STEPS, three_stage(0.03, 2))})
    assert stage_plots.statistics_text(staged) == (
        f"noise sd {staged.noise_sigma:.3g}, largest drawdown {staged.dip_depth:.3g} "
        f"(p = {staged.dip_p_value:.3g})"
    )
    for r in (gated, short, staged):
        stage_plots.plot_stages(r, tmp_path / "stages.png")
        drawn = [t.get_text() for t in figures[-1].axes[0].texts]
        assert stage_plots.statistics_text(r) in drawn
        assert not any("nan" in t for t in drawn)
