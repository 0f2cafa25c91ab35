"""The report check CI runs after ``make demo``: passes a whole report, names each defect."""

from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

from babel_interp.experiments.check_report import check_report, main


@pytest.fixture
def study(tmp_path):
    (tmp_path / "figures").mkdir()
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "figures" / "01_a.png")
    meta = {"seeds_done": [0], "timings": {"training_s": 12.5, "total_s": 20.0}}
    (tmp_path / "experiment.json").write_text(json.dumps(meta), encoding="utf-8")
    (tmp_path / "report.md").write_text(
        "# Study\n\nexcess -1.33 [-1.63, -1.06] and +0.31 [+0.03, +0.57]\n\n"
        "![a](figures/01_a.png)\n",
        encoding="utf-8",
    )
    (tmp_path / "report.html").write_text("<html></html>", encoding="utf-8")
    return tmp_path


def test_a_whole_report_passes(study, capsys):
    problems, counts = check_report(study)
    assert problems == [] and counts == {"figures": 1, "intervals": 2, "seeds": 1, "mixtures": 0}
    assert main([str(study)]) == 0
    assert "check_report: ok" in capsys.readouterr().out


def test_each_defect_is_named(study, capsys):
    (study / "figures" / "01_a.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # cut short
    md = study / "report.md"
    md.write_text(
        md.read_text(encoding="utf-8") + "![b](figures/missing.png)\nx 0.5 [0.9, 0.1]\n",
        encoding="utf-8",
    )
    (study / "report.html").unlink()
    meta = {"seeds_done": [], "timings": {"training_s": -1}}
    (study / "experiment.json").write_text(json.dumps(meta), encoding="utf-8")
    (study / "optimize").mkdir()
    problems, _ = check_report(study)
    text = "\n".join(problems)
    for expected in (
        "no finished seed",
        "timing training_s = -1 is not a duration",
        "report.html is missing or empty",
        "01_a.png is not a complete PNG image",
        "links to figures/missing.png, which does not exist",
        "interval 0.5 [0.9, 0.1] is not an interval",
        "holds no mixture",
    ):
        assert expected in text, expected
    assert len(problems) == 7
    assert main([str(study)]) == 1
    (study / "experiment.json").write_text("{", encoding="utf-8")
    assert "experiment.json" in check_report(study)[0][0]
