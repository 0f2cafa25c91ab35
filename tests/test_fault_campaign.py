"""The fault-injection campaign at CI size: ten runs killed (at random moments, at fault points
of the checkpoint and metrics writers, or with a checkpoint file cut short), each resumed to
the end: every one matches the uninterrupted run bit for bit and none loses data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from babel_interp.experiments.fault_campaign import run_campaign, run_study_campaign
from babel_interp.faults import ENV, FAULT_POINTS


def test_ten_kills_lose_nothing_and_resume_exactly(tmp_path):
    table, summary = run_campaign(tmp_path, trials=10, seed=0, progress=False)
    assert summary["trials"] == 10
    assert set(table["kind"]) == {"time", "point", "damage"}
    assert summary["kills_injected"] >= 6  # the kills (not the damage-only trials) happened
    assert summary["runs_resumed_ok"] == 10
    assert summary["runs_with_data_lost"] == 0, table.to_string()
    assert summary["exact_matches"] == 10, table.to_string()
    assert (tmp_path / "campaign.csv").is_file() and (tmp_path / "fault_campaign.png").is_file()


def test_a_fault_point_kills_its_process_at_the_named_pass():
    code = (
        "from babel_interp.faults import fault_point\n"
        "for i in range(5):\n"
        "    print(i, flush=True)\n"
        "    fault_point('checkpoint.start')\n"
    )
    env = {ENV: "checkpoint.start@3", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == -9 and res.stdout.split() == ["0", "1", "2"]


@pytest.mark.parametrize("spec", ["nowhere@1", "checkpoint.start", "checkpoint.start@0"])
def test_a_bad_fault_spec_is_an_error(spec):
    code = "import babel_interp.faults"
    res = subprocess.run([sys.executable, "-c", code], env={ENV: spec}, capture_output=True)
    assert res.returncode == 1 and b"is not NAME@N with NAME one of" in res.stderr
    assert "checkpoint.start" in FAULT_POINTS


def test_a_study_killed_inside_an_analyzer_reruns_to_the_same_tables(tmp_path):
    table, summary = run_study_campaign(tmp_path, seed=0, phases=("analyze: neurons",))
    assert table["killed"].tolist() == [True], table.to_string()
    assert summary["study_runs_with_equal_tables"] == 1, table.to_string()
    assert summary["tables_compared"] > 40
