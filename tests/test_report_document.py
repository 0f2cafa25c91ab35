"""The report document: Markdown with copied figures, self-contained HTML, no stale copies; the
study summary's bullets say why a finding is missing; a run's report reads what the run saved."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from babel_interp.analysis.stages.efficiency import token_efficiency  # noqa: E402
from babel_interp.io import write_csv_atomic  # noqa: E402
from babel_interp.report.document import ReportDocument  # noqa: E402
from babel_interp.report.report import (  # noqa: E402
    efficiency_table_path,
    experiment_summary,
    write_run_report,
)


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


def _efficiency_analysis(study, seed, lang="php"):
    """What the study does after a seed's runs: the token-efficiency table of the continued run
    against its scratch baseline, saved beside the continued run. Returns the analyzer's error
    where it has none to save."""
    cont, scratch = study / f"seed_{seed}/{lang}/continual", study / f"seed_{seed}/{lang}/scratch"
    try:
        eff = token_efficiency(str(cont), str(scratch), lang)
    except (ValueError, KeyError) as exc:
        return exc
    write_csv_atomic(efficiency_table_path(cont), eff)
    return None


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
    errors = {seed: _efficiency_analysis(tmp_path, seed) for seed in range(4)}
    # The analysis says why it has no table: a run never evaluated, a broken metrics record.
    assert errors[0] is None and errors[3] is None
    assert isinstance(errors[1], ValueError)
    assert str(errors[1]) == f"{tmp_path / 'seed_1/php/scratch'} has no evaluation of 'php'"
    assert isinstance(errors[2], KeyError) and errors[2].args == ("step",)
    meta = {"config": {"targets": ["php"], "seeds": [0, 1, 2, 3]}}
    # The report reads the saved tables only, and says which one is missing.
    bullets = experiment_summary(tmp_path, meta)
    assert len(bullets) == 4
    assert "Token efficiency: the scratch model needs 2.0x the target tokens" in bullets[0]
    for seed in (1, 2):
        assert bullets[seed].endswith(
            f"Token efficiency not reported: seed_{seed}/php/continual/analysis/efficiency/"
            "efficiency.csv was not written (the analysis did not run, or failed)."
        )
        assert str(tmp_path) not in bullets[seed]  # paths relative to the study
    assert bullets[3].endswith(
        "Token efficiency not measured: the scratch model never reached the continued "
        "model's loss at any of its 1 evaluations."
    )


def test_run_report_reads_what_the_run_saved(tmp_path):
    run = tmp_path / "run"
    _eval_log(run, [(0, 8.0), (10, 6.0), (20, 5.0)])
    (run / "run_config.json").write_text(
        json.dumps(
            {
                "corpus": str(tmp_path / "moved-away"),
                "seed": 3,
                "mixture": {"weights": {"php": 1.0}},
                "train": {"steps": 20},
            }
        )
    )
    md = write_run_report(run)
    text = md.read_text()
    assert md == run / "report.md" and (run / "report.html").is_file()
    assert "## Corpus" not in text  # the corpus is gone: no table, no error
    assert "seed 3, from scratch." in text
    assert "![Validation loss per language" in text
    assert (run / "figures" / "training_curves.png").is_file()
