"""The GPU check's dry run: every part runs on CPU at tiny sizes and both files are written."""

from __future__ import annotations

import json
import math
import time

import pytest

from babel_interp.experiments import gpu_check
from babel_interp.experiments.gpu_check import (
    JSON_NAME,
    MD_NAME,
    PART_TITLES,
    PARTS,
    GpuCheckConfig,
    PartTimeout,
    Skip,
    main,
    render_markdown,
    run_part,
    time_cap,
)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    t0 = time.perf_counter()
    code = main(["--out", str(out), "--dry-run", "--quiet"])
    return out, code, time.perf_counter() - t0


def test_dry_run_writes_every_part(dry_run):
    out, code, _ = dry_run
    assert code == 0
    results = json.loads((out / JSON_NAME).read_text())
    assert results["dry_run"] is True and results["schema"] == 1
    for key in ("device", "torch", "transformer_lens", "python"):
        assert results["platform"][key]
    assert set(results["parts"]) == set(PARTS)
    for name, rec in results["parts"].items():
        assert rec["status"] == "ok", (name, rec.get("reason"), rec.get("traceback"))
        assert _positive(rec["seconds"]) and rec["seconds"] <= rec["cap_s"]
    assert _positive(results["wall_s"])
    # The goals are stated, and judged only on a GPU.
    for goal in ("trainer_vs_plain_compiled", "mfu"):
        assert results["goals"][goal]["met"] is None and results["goals"][goal]["target"] > 0


def test_dry_run_numbers_are_finite_and_positive(dry_run):
    out, _, _ = dry_run
    parts = json.loads((out / JSON_NAME).read_text())["parts"]
    tp = parts["throughput"]["result"]
    for key in ("trainer_tokens_per_s", "reference_tokens_per_s", "ratio", "flops_per_token"):
        assert _positive(tp[key]), key
    ll = parts["logit_lens"]["result"]
    for key in ("reference_peak_bytes", "project_peak_bytes", "project_probes_per_s"):
        assert _positive(ll[key]), key
    # The full cache keeps every activation: more memory than the project's hooks.
    assert ll["reference_peak_bytes"] > ll["project_peak_bytes"]
    assert ll["max_abs_disagreement"] < 1e-4
    fs = parts["fsdp_smoke"]["result"]
    assert fs["steps"] == len(fs["losses"]) > 0 and all(math.isfinite(x) for x in fs["losses"])
    assert _positive(fs["measured_peak_bytes"]) and _positive(fs["planned_peak_bytes"])
    assert fs["checkpoints"], "the FSDP run wrote its sharded checkpoint"
    st = parts["study"]["result"]
    assert st["seeds_done"] == [0] and st["runs"] and all(s > 0 for s in st["runs"].values())


def test_markdown_renders_every_part(dry_run):
    out, _, _ = dry_run
    md = (out / MD_NAME).read_text()
    assert md.startswith("# GPU check (dry run on CPU)")
    for name in PARTS:
        assert f"| {name} | ok |" in md
        assert f"### {PART_TITLES[name]}" in md
    assert "tokens/s" in md and "peak" in md and "989.4" not in md.split("## Parts")[1]


def test_a_failing_part_is_recorded_and_the_others_kept(tmp_path, monkeypatch):
    def broken(cfg, work):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "logit_lens", broken)
    cfg = GpuCheckConfig(out=str(tmp_path), dry_run=True, parts=["logit_lens"])
    rec = run_part("logit_lens", cfg, tmp_path)
    assert rec["status"] == "failed" and "RuntimeError: disk on fire" in rec["reason"]
    results = {
        "dry_run": True,
        "started": "now",
        "platform": {
            "device": "CPU",
            "device_type": "cpu",
            "torch": "x",
            "transformer_lens": "y",
            "babel_interp": "z",
            "python": "3",
        },
        "parts": {"logit_lens": rec},
    }
    md = render_markdown(results)
    assert "**failed**: RuntimeError: disk on fire" in md


def test_time_cap_stops_a_part():
    with pytest.raises(PartTimeout, match="cap of 0 s"):
        with time_cap(0.2):
            time.sleep(2)


def test_study_without_sources_is_skipped_with_the_reason(tmp_path):
    cfg = GpuCheckConfig(out=str(tmp_path))
    with pytest.raises(Skip, match="no real sources: pass --sources-archive"):
        gpu_check._study_sources(cfg)
    with pytest.raises(ValueError, match="sources_archive: no file"):
        GpuCheckConfig(out=str(tmp_path), sources_archive=str(tmp_path / "missing.tar.xz"))
