"""``babel-interp analyze neurons`` and ``analyze_run`` on a run of planted-neuron checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from _neuron_fixtures import planted_neuron_model
from safetensors import SafetensorError

from babel_interp.analysis.neurons.ablation import AblationConfig
from babel_interp.analysis.neurons.contrast import ContrastConfig
from babel_interp.analysis.neurons.lape import LapeConfig
from babel_interp.analysis.neurons.neuron_stats import NeuronStats, NeuronStatsConfig
from babel_interp.analysis.neurons.transferring import (
    TABLES,
    NeuronAnalysisConfig,
    NeuronAnalysisResult,
    analyze_run,
)
from babel_interp.analysis.protocol import AnalysisResult
from babel_interp.cli import main
from babel_interp.corpus.shards import ShardWriter, write_manifest
from babel_interp.model import ModelConfig, save_model
from babel_interp.report.neuron_plots import plot_neuron_analysis

V = 256
CFG = ModelConfig(n_layers=2, d_model=64, n_heads=2, d_head=32, d_mlp=128, n_ctx=32, d_vocab=V)
# Two checkpoints whose planted neurons differ by one per language: Jaccard 3/5 between them.
PLANTED = {
    0: {0: [(0, 1), (0, 2), (1, 3), (1, 4)], 1: [(0, 10), (0, 11), (1, 12), (1, 13)]},
    20: {0: [(0, 1), (0, 2), (1, 3), (1, 5)], 1: [(0, 10), (0, 11), (1, 12), (1, 14)]},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a loaded machine idle OpenMP
    # threads spinning at every barrier make each small op ~100x slower. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _make_run(root, planted=PLANTED):
    corpus = root / "corpus"
    rng = np.random.default_rng(0)
    langs = ["python", "php", "go"]
    entries = {}
    for split in ("train", "val"):
        w = ShardWriter(corpus, split, langs, V, eos_id=0)
        for k, lang in enumerate(langs[:2]):
            for _ in range(30):
                w.add(lang, rng.integers(1 + 128 * k, 128 * (k + 1), size=60), 200)
        entries[split] = w.close()
    write_manifest(corpus, langs, entries, {"vocab_size": V, "eos_id": 0, "hash": "h"})
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"corpus": "../corpus"}))
    for step, sets in planted.items():
        d = run / "checkpoints" / f"step_{step:08d}"
        save_model(planted_neuron_model(CFG, 2, sets, seed=0), d, CFG)
        state = {"step": step, "tokens_seen": {"python": 500, "php": 10 * step}}
        state["total_tokens"] = 500 + 10 * step
        (d / "trainer_state.json").write_text(json.dumps(state))
    return run


FAST = [
    "--tokens-per-language", "1024", "--window-len", "32", "--batch-size", "8",
    "--top-rate", "0.03125", "--null-permutations", "6", "--n-bootstrap", "20",
    "--n-permutations", "100", "--n-random-sets", "3", "--ablation-tokens", "256",
    "--ablation-mode", "zero",
]  # fmt: skip


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("neurons")
    run = _make_run(root)
    rc = main(["analyze", "neurons", "--run", str(run), "--target", "php", *FAST])
    return run, rc


def test_cli_writes_tables_with_nulls_and_figures(analyzed, capsys):
    run, rc = analyzed
    assert rc == 0
    out = run / "analysis" / "neurons"
    for name in ("counts", "counts_total", "jaccard", "contrast_summary", "ablation"):
        assert (out / f"{name}.csv").is_file(), name
    for step in (0, 20):
        d = out / f"step_{step:08d}"
        assert {p.name for p in d.iterdir()} == {
            "stats.safetensors",
            "lape.csv",
            "contrast.csv",
            "sets.json",
        }
    assert (out / "random_init" / "stats.safetensors").is_file()
    assert not list(out.rglob("*.tmp"))
    for fig in ("counts_heatmap", "counts_null", "effect_sizes", "ablation"):
        assert (run / "figures" / f"neurons_{fig}.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["primary"] == "python" and config["lape"]["top_rate"] == 0.03125


def test_counts_recover_the_planted_sets_next_to_their_nulls(analyzed):
    run, _ = analyzed
    out = run / "analysis" / "neurons"
    total = pd.read_csv(out / "counts_total.csv")
    assert {
        "null_kind",
        "null_mean",
        "null_lo",
        "null_hi",
        "null_frac_ge",
        "null_frac_le",
        "random_init_count",
    } <= set(total.columns)
    assert set(total["null_kind"]) == {"firing_matched"}
    spec = total[total["definition"] == "primary_specific"].set_index("step")
    # 8 planted = 3.125% of 256 neurons: LAPE's quota is exactly the planted neurons.
    assert spec["count"].tolist() == [4, 4]
    # Under the (firing-rate-matched) null LAPE still fills its quota and still assigns some
    # neurons to one language only (those straddling the bar): the null is not zero, but lower.
    assert (spec["null_mean"] < spec["count"]).all()
    assert ((spec["null_frac_ge"] >= 0) & (spec["null_frac_ge"] < 0.5)).all()
    assert spec["tokens_php"].tolist() == [0, 200]
    for step, sets in PLANTED.items():
        saved = json.loads((out / f"step_{step:08d}" / "sets.json").read_text())
        assert {tuple(x) for x in saved["primary_specific"]} == set(sets[0])
        assert {tuple(x) for x in saved["target_specific"]} == set(sets[1])
    per_layer = pd.read_csv(out / "counts.csv")
    assert set(per_layer["layer"]) == {0, 1}
    jac = pd.read_csv(out / "jaccard.csv").set_index("definition")
    assert jac.loc["primary_specific", "jaccard"] == pytest.approx(3 / 5)
    assert bool(jac.loc["primary_specific", "consecutive"])
    contrast = pd.read_csv(out / "contrast_summary.csv")
    assert contrast.groupby("step")["n_specific_a"].sum().tolist() == [4, 4]
    ablation = pd.read_csv(out / "ablation.csv")
    assert set(ablation["set"]) == {"lape_shared", "primary_active"}


def test_rerun_reuses_statistics_and_checkpoint_selection(analyzed, capsys):
    run, _ = analyzed
    stats_path = run / "analysis" / "neurons" / "step_00000020" / "stats.safetensors"
    before = stats_path.stat().st_mtime_ns
    argv = ["analyze", "neurons", "--run", str(run), "--target", "php", *FAST]
    rc = main(
        [*argv, "--checkpoints", "20", "--no-ablation", "--no-figures", "--threads", "1", "--quiet"]
    )
    assert rc == 0
    assert stats_path.stat().st_mtime_ns == before  # same collection settings: reused
    captured = capsys.readouterr()
    assert "checkpoints:" not in captured.err  # --quiet: no progress bars
    printed = captured.out
    assert "primary_specific" in printed and "null_mean" in printed
    total = pd.read_csv(run / "analysis" / "neurons" / "counts_total.csv")
    assert total["step"].astype(str).unique().tolist() == ["20"]
    assert NeuronStats.load(stats_path).tokens.tolist() == [1024, 1024]
    # A rewritten checkpoint (new weights file) is never matched with its old statistics.
    weights = run / "checkpoints" / "step_00000020" / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert main([*argv, "--checkpoints", "20", "--no-ablation", "--no-figures"]) == 0
    assert stats_path.stat().st_mtime_ns != before


def test_cli_reports_bad_input_in_one_line(analyzed, capsys):
    run, _ = analyzed
    rc = main(["analyze", "neurons", "--run", str(run), "--target", "rust", "--no-figures"])
    assert rc == 1
    assert "rust" in capsys.readouterr().err
    rc = main(["analyze", "neurons", "--run", str(run), "--target", "php", "--checkpoints", "7"])
    assert rc == 1
    assert "no checkpoint at step(s) [7]" in capsys.readouterr().err
    rc = main(["analyze", "neurons", "--run", str(run), "--target", "python"])
    assert rc == 1
    assert "must differ" in capsys.readouterr().err


def test_interrupted_analysis_keeps_finished_checkpoints(tmp_path):
    run = _make_run(tmp_path)
    # The second checkpoint is corrupt: the analysis fails there, after writing the first.
    (run / "checkpoints" / "step_00000020" / "model.safetensors").write_bytes(b"not a model")
    cfg = NeuronAnalysisConfig(
        stats=NeuronStatsConfig(tokens_per_language=512, window_len=32),
        lape=LapeConfig(top_rate=0.03125),
        contrast=ContrastConfig(n_bootstrap=0, n_permutations=20),
        ablation=None,
        n_null_permutations=2,
        random_init=False,
    )
    # The checkpoint's weights fail to parse: the loader's own error comes through unchanged,
    # not another failure that happened to occur after the first checkpoint was written.
    with pytest.raises(SafetensorError, match="deserializing header"):
        analyze_run(run, cfg)
    total = pd.read_csv(run / "analysis" / "neurons" / "counts_total.csv")
    assert total["step"].unique().tolist() == [0]


def test_result_round_trips_and_draws_from_its_directory(tmp_path):
    run = _make_run(tmp_path)
    cfg = NeuronAnalysisConfig(
        stats=NeuronStatsConfig(tokens_per_language=512, window_len=32),
        lape=LapeConfig(top_rate=0.03125),
        contrast=ContrastConfig(n_bootstrap=0, n_permutations=20),
        ablation=None,
        n_null_permutations=2,
        n_contrast_null=0,
        progress=False,
    )
    with pytest.warns(UserWarning, match="only two languages"):
        result = analyze_run(run, cfg)
    assert isinstance(result, AnalysisResult)
    assert result.to_dataframe() is result.counts_total and not result.counts_total.empty
    # Analysis draws nothing: figures appear only when the report is asked for them.
    assert not (run / "figures").exists()
    loaded = NeuronAnalysisResult.load(result.out_dir)
    copy = tmp_path / "copy"
    written = result.save(copy)
    assert sorted(p.name for p in written) == sorted([*TABLES.values(), "config.json"])
    again = NeuronAnalysisResult.load(copy)
    for attr, name in TABLES.items():
        # Equal values; text columns may come back as pandas' string dtype.
        for back in (loaded, again):
            pd.testing.assert_frame_equal(
                getattr(back, attr), getattr(result, attr), check_dtype=False
            )
        assert (copy / name).read_bytes() == (result.out_dir / name).read_bytes(), name
    assert loaded.notes == result.notes == cfg.notes
    assert loaded.config == result.config == cfg.to_dict()
    assert (loaded.primary, loaded.target) == ("python", "php")
    # The report draws the same figures from the saved directory as from the result.
    from_dir = plot_neuron_analysis(result.out_dir, tmp_path / "from_dir")
    from_result = plot_neuron_analysis(result, tmp_path / "from_result")
    assert [p.name for p in from_dir] == [p.name for p in from_result]
    assert {p.name for p in from_dir} >= {"neurons_counts_heatmap.png", "neurons_firing_rates.png"}
    with pytest.raises(FileNotFoundError, match="no neuron analysis"):
        NeuronAnalysisResult.load(tmp_path / "nowhere")


def test_config_round_trip_and_validation():
    cfg = NeuronAnalysisConfig(
        target="go",
        languages=["php"],
        ablation=AblationConfig(mode="zero"),
        contrast=ContrastConfig(k_per_language=5),
    )
    back = NeuronAnalysisConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.all_languages == ["python", "go", "php"]
    assert NeuronAnalysisConfig.from_dict({**cfg.to_dict(), "ablation": None}).ablation is None
    with pytest.raises(ValueError, match="NeuronAnalysisConfig.primary and .target must differ"):
        NeuronAnalysisConfig(primary="php", target="php")
    with pytest.raises(ValueError, match="ablate_sets"):
        NeuronAnalysisConfig(ablate_sets=["everything"])
    with pytest.raises(ValueError, match="max_windows_per_language"):
        NeuronAnalysisConfig(stats=NeuronStatsConfig(max_windows_per_language=0))
    with pytest.raises(ValueError, match="NeuronAnalysisConfig.split"):
        NeuronAnalysisConfig(split="test")
    with pytest.raises(ValueError, match="unknown field"):
        NeuronAnalysisConfig.from_dict({"primery": "python"})


def test_help_lists_the_neurons_analyzer(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "neurons", "--help"])
    assert "--checkpoints" in capsys.readouterr().out
    torch.manual_seed(0)
