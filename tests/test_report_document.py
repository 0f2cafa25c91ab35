"""The report document: Markdown with copied figures, self-contained HTML, no stale copies; the
study summary's bullets say why a finding is missing."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from babel_interp.report.document import ReportDocument  # noqa: E402
from babel_interp.report.report import experiment_summary  # noqa: E402


def _png(path):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(path)
    plt.close(fig)
    return path


def test_write_copies_figures_and_removes_stale_copies(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    out = tmp_path / "out"
    doc = ReportDocument("T").heading("H").text("x").table(pd.DataFrame({"k": [1]}), "cap")
    doc.figure(a, "first").figure(b, "second").figure(tmp_path / "missing.png", "gone")
    md, html = doc.write(out)
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == ["01_a.png", "02_b.png"]
    text = md.read_text()
    assert "![first](figures/01_a.png)" in text and "*Figure not available: gone*" in text
    assert html.read_text().count("data:image/png;base64") == 2
    # Rewritten with one figure: the earlier numbered copies do not linger.
    (out / "figures" / "keep.png").write_bytes(b"user file")
    ReportDocument("T").figure(b, "second").write(out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["01_b.png", "keep.png"]


def _eval_log(run, curve, drop=None):
    """``metrics.jsonl`` with one php evaluation per ``(step, loss)`` (none when ``curve`` is
    empty); ``drop`` removes a field from every record."""
    run.mkdir(parents=True)
    recs = [
        {"type": "eval", "step": s, "tokens_seen": {"php": s * 100}, "val_loss": {"php": loss}}
        for s, loss in curve
    ]
    for r in recs:
        r.pop(drop, None)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    # An execution table without rows: the pass@1 sentence reads its columns even when empty.
    (run / "analysis" / "execution").mkdir(parents=True)
    (run / "analysis" / "execution" / "pass_at_k.csv").write_text("step,language,k,pass_at_k\n")


def test_summary_says_why_the_token_efficiency_finding_is_missing(tmp_path):
    ahead = [(0, 8.0), (10, 7.0), (20, 5.0)]  # the scratch curve below needs 2x the tokens
    behind = [(0, 9.0), (10, 8.0), (20, 7.0), (40, 5.0)]
    # seed 0 measured; seed 1 scratch run not evaluated; seed 2 a record without its step;
    # seed 3 a scratch run that never gets down to the continued loss.
    _eval_log(tmp_path / "seed_0/php/continual", ahead)
    _eval_log(tmp_path / "seed_0/php/scratch", behind)
    _eval_log(tmp_path / "seed_1/php/continual", ahead)
    _eval_log(tmp_path / "seed_1/php/scratch", [])
    _eval_log(tmp_path / "seed_2/php/continual", ahead, drop="step")
    _eval_log(tmp_path / "seed_2/php/scratch", behind)
    _eval_log(tmp_path / "seed_3/php/continual", [(0, 4.0), (10, 3.0)])
    _eval_log(tmp_path / "seed_3/php/scratch", behind)
    meta = {"config": {"targets": ["php"], "seeds": [0, 1, 2, 3]}}
    bullets = experiment_summary(tmp_path, meta)
    assert len(bullets) == 4
    assert "Token efficiency: the scratch model needs 2.0x the target tokens" in bullets[0]
    assert bullets[1].endswith(
        "Token efficiency not reported: seed_1/php/scratch has no evaluation of 'php'."
    )
    assert str(tmp_path) not in bullets[1]  # paths relative to the study
    assert bullets[2].endswith("Token efficiency not reported: a metrics record lacks 'step'.")
    assert bullets[3].endswith(
        "Token efficiency not measured: the scratch model never reached the continued "
        "model's loss at any of its 1 evaluations."
    )
