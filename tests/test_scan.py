"""The scale scan at a micro size: cells, shared runs, budget stop, resume, table and figure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from babel_interp.experiments import babel_tower, scan
from babel_interp.runs import Run, Study

# Two shapes x two multipliers, one seed, a few steps each: every path of the scan in seconds.
MICRO_STUDY = dict(
    docs_per_language=120,
    vocab_size=512,
    seq_len=64,
    batch_size=8,
    primary_steps=16,
    continual_steps=12,
    scratch_steps=12,
    n_checkpoints=3,
    eval_windows=2,
    n_per_pair=2,
    random_inits=1,
    execution_problems=2,
    execution_tokens=16,
)


def micro(tmp_path, **kw):
    d = dict(
        out=str(tmp_path / "scan"),
        depths=[2],
        widths=[32],
        extra_shapes=["L1-d32"],
        primary_x=[0.5, 1.0],
        seeds=[0],
        study=dict(MICRO_STUDY),
        progress=False,
    )
    d.update(kw)
    return scan.ScanConfig.from_dict(d)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cfg = micro(tmp_path_factory.mktemp("scan"))
    return cfg, scan.run_scan(cfg)


def test_shapes_run_cheapest_first_and_parse():
    cfg = scan.ScanConfig(depths=[8, 2], widths=[128, 64], extra_shapes=["L4-d256"])
    shapes = cfg.shapes()
    assert shapes[0] == (2, 64) and shapes[-1] == (4, 256)
    assert scan.parse_shape("L6-d96") == (6, 96)
    with pytest.raises(ValueError, match="like 'L4-d128'"):
        scan.parse_shape("4x128")


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(corpus="latin"), "ScanConfig.corpus"),
        (dict(primary_x=[0.0]), "primary_x"),
        (dict(seeds=[]), "seeds"),
        (dict(max_minutes=-1), "max_minutes"),
        (dict(widths=[48]), r"d_model \(48\) must be a multiple"),
        (dict(study={"bogus": 1}), "bogus"),
    ],
)
def test_bad_scans_are_refused_before_any_work(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        micro(tmp_path, **bad)
    assert not (tmp_path / "scan").exists()


def test_study_model_changes_depth_and_width_only():
    cfg = babel_tower.BabelTowerConfig(
        profile="quick", out="x", preset="tiny", n_layers=6, d_model=64
    )
    m = babel_tower.study_model(cfg)
    assert (m.n_layers, m.d_model, m.n_heads, m.d_head, m.d_mlp) == (6, 64, 2, 32, 256)
    plain = babel_tower.study_model(babel_tower.BabelTowerConfig(profile="quick", out="x"))
    assert plain == babel_tower.study_model(
        babel_tower.BabelTowerConfig(profile="quick", out="x", preset="tiny")
    )


def test_every_cell_has_a_row_with_its_verdict(finished):
    cfg, csv = finished
    df = pd.read_csv(csv)
    assert sorted(df["cell"]) == ["L1-d32-x0.5", "L1-d32-x1", "L2-d32-x0.5", "L2-d32-x1"]
    assert set(df["verdict"]) <= {"signature", "no signature", "insufficient data"}
    assert (df["primary_tokens"] == [8 * 64 * s for s in (8, 16, 8, 16)]).all()
    # A one-layer model has no middle region: the verdict says why instead of inventing one.
    one = df[df["n_layers"] == 1]
    assert (one["verdict"] == "insufficient data").all()
    # Where a verdict was reached, its numbers are the study's and the interval brackets them.
    judged = df[df["verdict"] != "insufficient data"]
    for _, r in judged.iterrows():
        assert r["difference_lo"] <= r["difference"] <= r["difference_hi"]
        assert r["difference"] == pytest.approx(r["continued"] - r["scratch"], abs=1e-9)
        assert 0.0 <= r["pass@1_continual"] <= 1.0
    assert (tmp := csv.parent / scan.PHASE_FIGURE).is_file() and tmp.stat().st_size > 5000


def test_one_primary_run_serves_every_multiplier(finished):
    cfg, _ = finished
    root = Study(Path(cfg.cell_config((2, 32)).out))
    primary = Run(root.primary(0))
    # Checkpoints at each multiplier's step, under a constant learning rate after warmup.
    assert [c.step for c in primary.checkpoints()] == [0, 8, 16]
    warmup = 1  # min(50, primary_steps // 10) for the 16-step base run
    lrs = [r["lr"] for r in primary.metrics() if r["type"] == "train" and r["step"] > warmup]
    assert max(lrs) == pytest.approx(min(lrs))
    # Each cell continues from its own checkpoint of that run, and shares the scratch run.
    for x, step in ((0.5, 8), (1.0, 16)):
        cont = Run(Study(root.root / scan.x_id(x)).continual(0, "php"))
        init = cont.train_config["init_from"]
        assert Path(init) == root.primary(0) / "checkpoints" / f"step_{step:08d}"
    assert not (root.root / "x0.5" / "seed_0" / "php" / "scratch").exists()
    assert (root.scratch(0, "php") / "analysis" / "working_language").is_dir()


def test_a_spent_budget_stops_cleanly_and_a_rerun_resumes(tmp_path, finished):
    cfg, csv = finished
    stopped = micro(tmp_path, max_minutes=1e-9)
    scan.run_scan(stopped)
    state = json.loads((tmp_path / "scan" / scan.SCAN_JSON).read_text())
    assert state["stopped_by_budget"] is True and state["done"] == {}
    df = pd.read_csv(tmp_path / "scan" / scan.SCAN_CSV)
    assert (df["verdict"] == "not run").all()
    # The finished scan, run again, trains nothing and gives the same table.
    before = pd.read_csv(csv)
    scan.run_scan(cfg)
    after = pd.read_csv(csv)
    pd.testing.assert_frame_equal(before, after)


def test_the_study_cli_runs_the_scan_profile(tmp_path, capsys):
    code = babel_tower.main(["--profile", "scan", "--out", str(tmp_path / "s"), "--seeds", "x"])
    assert code == 2 and "seeds" in capsys.readouterr().err


def test_named_grids_are_valid_scans():
    gpu = scan.ScanConfig.from_dict(dict(scan.GRIDS["gpu"], out="unused"))
    assert gpu.shapes() == [(4, 256), (8, 256), (4, 512), (8, 512)]
    cell = gpu.cell_config((8, 512))
    model = babel_tower.study_model(cell)
    assert (model.n_heads, model.d_head, cell.dtype, cell.compile) == (8, 64, "bfloat16", True)
    cpu = scan.ScanConfig.from_dict(dict(scan.GRIDS["cpu"]))
    assert len(cpu.shapes()) * len(cpu.primary_x) == 21 and (2, 128) in cpu.shapes()


def test_the_markdown_table_has_one_line_per_cell(finished):
    cfg, csv = finished
    text = (csv.parent / scan.SCAN_MD).read_text()
    rows = pd.read_csv(csv)
    assert len(text.strip().splitlines()) == 2 + len(rows)
    judged = rows[rows["verdict"] != "insufficient data"]
    for _, r in judged.iterrows():
        assert f"| {r['verdict']} | {int(r['step'])} |" in text


def test_a_signal_stops_the_scan_and_the_rerun_finishes_it(tmp_path):
    """SIGTERM mid-scan: the trainer checkpoints, the scan stops (nothing half-trained is
    analyzed or continued from) and exits 143; the same command then finishes the scan."""
    study = dict(MICRO_STUDY, primary_steps=300)  # long enough for the signal to land in it
    cfg = micro(tmp_path, depths=[], extra_shapes=["L1-d32"], primary_x=[1.0], study=study)
    config = tmp_path / "scan.json"
    config.write_text(json.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "babel_interp.experiments.scan", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = tmp_path / "scan" / "L1-d32" / "seed_0" / "primary" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and '"type": "train"' not in _read(metrics):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert "run the same command again to resume" in err.decode()
    assert not (tmp_path / "scan" / "L1-d32" / "seed_0" / "php").exists()
    stopped = max(c.step for c in Run(metrics.parent).checkpoints())
    assert 0 < stopped < 300
    assert scan.main(["--config", str(config)]) == 0
    assert Run(metrics.parent).latest().step == 300
    assert len(pd.read_csv(tmp_path / "scan" / scan.SCAN_CSV)) == 1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_combine_draws_one_diagram_of_several_scans(finished, tmp_path, capsys):
    cfg, csv = finished
    figure = tmp_path / "phase.png"
    assert scan.main(["--combine", str(csv.parent), str(csv.parent), "--figure", str(figure)]) == 0
    assert figure.stat().st_size > 5000
    assert scan.main(["--combine", str(tmp_path / "nothing"), "--figure", str(figure)]) == 2
    assert "is not a finished scan" in capsys.readouterr().err


def test_the_demo_answer_carries_the_scans_note_only_at_the_demos_scale():
    from babel_interp.profiles import SCALE_NOTES
    from babel_interp.report.report import scale_note

    quick = babel_tower.BabelTowerConfig(profile="quick", out="x").to_dict()
    assert SCALE_NOTES["quick"] and scale_note(quick) == SCALE_NOTES["quick"]
    assert "phase diagram" in SCALE_NOTES["quick"] and "gpu" in SCALE_NOTES["quick"]
    # A study that changed the model or the primary training is not what the scan measured.
    for change in (dict(preset="pilot"), dict(n_layers=4), dict(primary_steps=800)):
        assert scale_note({**quick, **change}) == ""
    assert scale_note(babel_tower.BabelTowerConfig(profile="cpu", out="x").to_dict()) == ""
