"""The real-code Babel Tower profiles end to end at a tiny size on CPU.

* ``cpu``: sources gathered from a Python tree and Debian-style package trees, one seed.
* ``gpu``: the path a GPU lease takes (sources packed into an archive, unpacked and tokenized
  on the other machine, bf16 autocast, torch.compile, two seeds run one after another) with a
  seed cut short to check that finished seeds keep their results.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from _real_fixtures import debian_dir, python_tree

from babel_interp.experiments import babel_tower, study
from babel_interp.runs import list_checkpoints, read_metrics

TINY = dict(
    targets=["php"],
    vocab_size=512,
    preset="tiny",
    seq_len=64,
    batch_size=8,
    primary_steps=16,
    continual_steps=16,
    scratch_steps=8,
    n_checkpoints=4,
    eval_windows=4,
    neuron_tokens=1024,
    neuron_permutations=2,
    n_per_pair=3,
    device="cpu",
    progress=False,
)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trees")
    return python_tree(root / "py"), debian_dir(root / "debian", docs=120)


@pytest.fixture(scope="module")
def cpu_study(trees, tmp_path_factory):
    py, deb = trees
    out = tmp_path_factory.mktemp("cpu")
    cfg = babel_tower.BabelTowerConfig.from_dict(
        {
            **TINY,
            "profile": "cpu",
            "out": str(out),
            "debian_dir": str(deb),
            "python_trees": [str(py)],
        }
    )
    return cfg, babel_tower.run_experiment(cfg)


def test_profiles_and_real_corpus_validation(tmp_path):
    cpu = babel_tower.BabelTowerConfig(profile="cpu")
    assert cpu.corpus == "real" and cpu.preset == "pilot" and cpu.targets == ["php"]
    assert cpu.neuron_languages == ["go"]  # a third language so LAPE is not degenerate
    gpu = babel_tower.BabelTowerConfig(profile="gpu")
    assert gpu.preset == "medium" and gpu.dtype == "bfloat16" and gpu.compile is True
    assert len(gpu.seeds) >= 3 and {"php", "go"} <= set(gpu.targets)
    tokens = gpu.batch_size * gpu.seq_len
    assert 25e6 < gpu.primary_steps * tokens < 35e6 and 25e6 < gpu.continual_steps * tokens < 35e6
    # A user's explicit False is kept, not replaced by the profile's True.
    assert babel_tower.BabelTowerConfig(profile="gpu", compile=False).compile is False
    with pytest.raises(ValueError, match="C# is not available from Debian"):
        babel_tower.BabelTowerConfig(profile="cpu", targets=["c#"])
    with pytest.raises(ValueError, match="corpus must be one of"):
        babel_tower.BabelTowerConfig(corpus=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="dtype"):
        babel_tower.BabelTowerConfig(dtype="float16")
    assert babel_tower.main(["--profile", "quick", "--pack-sources", str(tmp_path / "x")]) == 2


def test_cpu_profile_on_real_sources(cpu_study):
    cfg, report = cpu_study
    root = report.parent
    meta = json.loads((root / "experiment.json").read_text())
    assert meta["seeds_done"] == [0]
    assert "transfer_ratio" in meta["notes"]  # no planted facts in real code
    sources = json.loads((root / "sources" / "sources.json").read_text())
    assert sources["languages"] == ["python", "php", "go"]
    assert {p["language"] for p in sources["debian_packages"]} == {"php", "go"}
    cont = root / "seed_0" / "php" / "continual"
    counts = pd.read_csv(cont / "analysis" / "neurons" / "counts_total.csv")
    assert {"null_mean", "random_init_count"} <= set(counts.columns)
    assert "tokens_go" in counts.columns  # Go activations joined LAPE's statistics
    text = report.read_text()
    for needle in (
        "php: continued vs. from scratch (1 seed)",
        "php: insufficient data",
        "over built-in pairs and the probes within them (one seed)",
        "Debian packages of the new languages",
        "C# is not in this study",
        "Transfer ratio: not measured",
        "count (firing-rate-matched null: mean [2.5%, 97.5%] of its draws; random-init count)",
    ):
        assert needle in text, needle
    assert set(counts["null_kind"].dropna()) == {"firing_matched"}


def test_scratch_baseline_is_the_first_part_of_the_continual_schedule(cpu_study):
    cfg, report = cpu_study
    root = report.parent
    cont, scratch = root / "seed_0" / "php" / "continual", root / "seed_0" / "php" / "scratch"
    cont_steps = [c.step for c in list_checkpoints(cont)]
    scratch_steps = [c.step for c in list_checkpoints(scratch)]
    assert scratch_steps[-1] == cfg.scratch_steps
    assert set(scratch_steps) - {cfg.scratch_steps} <= set(cont_steps)
    assert len(set(scratch_steps) & set(cont_steps)) >= 3

    def lrs(run):
        return {r["step"]: r["lr"] for r in read_metrics(run) if r.get("type") == "train"}

    a, b = lrs(cont), lrs(scratch)
    assert sorted(b) == list(range(1, cfg.scratch_steps + 1))
    assert all(b[s] == pytest.approx(a[s]) for s in b)  # same schedule, cut short


def test_gpu_profile_path_at_tiny_size(cpu_study, tmp_path, monkeypatch):
    cfg_cpu, report = cpu_study
    archive = tmp_path / "sources.tar.xz"
    info = babel_tower.pack_study_sources(cfg_cpu, archive)
    assert info["bytes"] == archive.stat().st_size and info["ratio"] > 3
    out = tmp_path / "gpu"
    d = {
        **TINY,
        "profile": "gpu",
        "out": str(out),
        "seeds": [0, 1],
        "sources_archive": str(archive),
    }
    cfg = babel_tower.BabelTowerConfig.from_dict(d)
    assert cfg.dtype == "bfloat16" and cfg.compile is True
    # The second seed's analyses fail: the first seed's results and report are already written.
    # run_experiment (in the study module) calls analyze_seed there.
    real_analyze = study.analyze_seed

    def cut_short(c, layout, seed):
        if seed == 1:
            raise KeyboardInterrupt("lease over")
        return real_analyze(c, layout, seed)

    monkeypatch.setattr(study, "analyze_seed", cut_short)
    with pytest.raises(KeyboardInterrupt):
        babel_tower.run_experiment(cfg)
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["seeds_done"] == [0]
    assert "(1 seed)" in (out / "report.md").read_text()
    monkeypatch.setattr(study, "analyze_seed", real_analyze)
    primary = out / "seed_0" / "primary" / "checkpoints"
    before = {p.name: p.stat().st_mtime_ns for p in primary.iterdir()}
    md = babel_tower.run_experiment(cfg)
    assert {p.name: p.stat().st_mtime_ns for p in primary.iterdir()} == before  # reused
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["seeds_done"] == [0, 1]
    assert len(meta["timings_history"]) == 2  # the cut-short call's timings are kept
    run_cfg = json.loads((out / "seed_1" / "php" / "continual" / "run_config.json").read_text())
    assert run_cfg["train"]["dtype"] == "bfloat16" and run_cfg["train"]["compile"] is True
    sources = json.loads((out / "sources" / "sources.json").read_text())
    assert sources == json.loads((report.parent / "sources" / "sources.json").read_text())
    text = md.read_text()
    assert "(2 seeds)" in text and "across seeds (Student t)" in text
    assert (out / "figures" / "php_region_excess.png").is_file()
    from babel_interp.report.study import random_init_band, random_init_region_band

    # Three random-init models per seed, pooled over both seeds.
    assert set(random_init_band(out, [0, 1], "php")["n_models"]) == {6}
    band = random_init_region_band(out, [0, 1], "php")
    assert set(band) == {"middle", "output"} and all(lo < hi for lo, hi in band.values())
    assert (out / "figures" / "php_layer_profiles.png").is_file()
