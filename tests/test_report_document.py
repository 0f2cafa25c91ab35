"""The report document: Markdown with copied figures, self-contained HTML, no stale copies; the
study summary's bullets say why a finding is missing; a run's report reads what the run saved."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

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


def test_html_is_rendered_from_markdown_not_escaped_by_hand(tmp_path):
    doc = ReportDocument("T `x`")
    doc.callout("**php: no signature** with `quick` and <T>")
    doc.toc().heading("A section").text("- one **bold**\n- two")
    doc.table(pd.DataFrame({"step": [54], "excess": ["−2.40 [−3.55, −1.33]"]}), "a `cap`")
    with doc.collapsed("closed"):
        doc.text("inside")
    md, html = doc.write(tmp_path)
    page = html.read_text()
    assert "**" not in page and "`" not in page
    assert "<strong>php: no signature</strong>" in page and "<code>quick</code>" in page
    assert "&lt;T&gt;" in page  # text, not a tag
    assert '<section class="callout" id="answer">' in page
    assert '<a href="#a-section">A section</a>' in page and '<h2 id="a-section">' in page
    assert '<span class="est">−2.40</span> <span class="ci">[−3.55, −1.33]</span>' in page
    assert "<details><summary>closed</summary>" in page and page.count("</details>") == 1
    text = md.read_text()  # the Markdown keeps its syntax, and GitHub renders <details>
    assert "**php: no signature**" in text and "- [A section](#a-section)" in text
    assert "<details><summary>closed</summary>" in text


def test_figures_are_compressed_and_carry_their_panel_columns(tmp_path):
    from PIL import Image

    from babel_interp.report.document import compressed_png
    from babel_interp.report.figures import save_figure

    fig, axes = plt.subplots(2, 2, figsize=(8, 6))
    for ax in axes.flat:
        ax.imshow([[0, 1], [1, 0]])
        ax.plot([0, 1], [0, 1])
    path = save_figure(fig, tmp_path / "grid.png")
    plt.close(fig)
    assert Image.open(path).info["Columns"] == "2"
    small, columns = compressed_png(path)
    assert columns == 2 and len(small) < path.stat().st_size
    assert Image.open(io.BytesIO(small)).info["Columns"] == "2"


def test_numbers_are_written_once_and_read_back():
    from babel_interp.formatting import INTERVAL, fmt_count, fmt_interval, parse_number

    assert fmt_interval(-1.333, -1.63, -1.06) == "−1.33 [−1.63, −1.06]"
    assert fmt_interval(0.3, -0.1, 0.5, signed=True) == "+0.30 [−0.10, +0.50]"
    assert fmt_interval(-0.001, float("nan"), 1) == "0.00"
    assert fmt_interval(float("nan")) == "n/a"
    assert fmt_count(123456) == "123k" and fmt_count(1.5e6) == "1.5M"
    m, lo, hi = INTERVAL.fullmatch("−1.33 [−1.63, −1.06]").groups()
    assert [parse_number(x) for x in (m, lo, hi)] == [-1.33, -1.63, -1.06]
    assert parse_number("98k") == 98000


def _per_seed(cont_mid, scratch_mid, seeds=(0,), competent_from=2, spread=0.0):
    """Layer-level records of a 3-layer model (depths 0, 0.5, 1) at steps 1, 2, 3: the middle
    layer's excess is ``cont_mid`` / ``scratch_mid`` (plus ``spread`` per seed)."""
    rows = []
    for i, seed in enumerate(seeds):
        # Seeds differ, and differently for the two kinds: the paired differences vary too.
        for kind, mid, k in (("continual", cont_mid, 1.0), ("scratch", scratch_mid, -0.5)):
            for step in (1, 2, 3):
                for depth in (0.0, 0.5, 1.0):
                    x = (mid + k * spread * (i - (len(seeds) - 1) / 2)) if depth == 0.5 else -1.0
                    rows.append(
                        {"seed": seed, "kind": kind, "step": step, "layer": f"L{depth}",
                         "depth": depth, "excess": x, "lo": x - 0.3, "hi": x + 0.3,
                         "competent": kind == "continual" and step >= competent_from,
                         "top1_acc": 0.5, "interval": "pairs"}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def _regions(per_seed):
    from babel_interp.analysis.working_language.regions import layer_region

    df = per_seed.assign(region=layer_region(per_seed["depth"]))
    return df[df["region"] != "emb"][
        ["seed", "kind", "step", "region", "excess", "lo", "hi", "interval"]
    ]


@pytest.mark.parametrize(
    ("cont", "scratch", "seeds", "competent_from", "expected"),
    [
        (1.0, -1.0, (0,), 2, "signature"),  # leans to the primary, and more than scratch
        (1.0, 0.9, (0,), 2, "no signature"),  # leans to the primary, but so does scratch
        (-1.0, -3.0, (0,), 2, "no signature"),  # closer to the primary, yet leans to the target
        (1.0, -1.0, (0,), 9, "insufficient data"),  # never competent
        (1.0, -1.0, (0, 1, 2), 2, "signature"),
    ],
)
def test_the_signature_rule(tmp_path, cont, scratch, seeds, competent_from, expected):
    from babel_interp.report.verdict import signature_verdict

    per_seed = _per_seed(cont, scratch, seeds, competent_from, spread=0.1)
    v = signature_verdict(tmp_path, list(seeds), "php", "python", per_seed, _regions(per_seed))
    assert v.verdict == expected
    sentence = v.sentence()
    assert sentence.startswith(f"**php: {expected}**")
    if expected != "insufficient data":
        assert v.step == 2  # the first step where every seed's continued model is competent
        assert abs(v.difference.value - (cont - scratch)) < 1e-9
        assert v.difference.low < v.difference.value < v.difference.high
        how = "Student t over 3 seeds" if len(seeds) == 3 else "in quadrature"
        assert how in v.interval


def test_setup_line_counts_every_invocation_and_names_the_platform():
    from babel_interp.report.report import platform_text, timing_text

    one = {"corpus_s": 2.0, "training_s": 140.0, "analysis_s": 200.0, "total_s": 342.0}
    resumed = {"corpus_s": 0.0, "training_s": 0.0, "analysis_s": 30.0, "total_s": 30.0}
    text = timing_text({"timings": resumed, "timings_history": [one, resumed]})
    # The last invocation alone would say "training 0 s".
    assert "training 140 s" in text and "analyses 230 s" in text and "372 s in all" in text
    assert "over 2 invocations" in text
    assert timing_text({"timings": one}) == (
        "corpus 2 s, training 140 s, analyses 200 s; 342 s in all"
    )
    platform = {"python": "3.11.7", "machine": "x86_64", "cpus": 2, "torch": "2.13.0+cpu"}
    assert platform_text(platform) == "Python 3.11.7, torch 2.13.0+cpu, x86_64 2 CPUs"
    assert "{" not in platform_text({"python": "3.11", "extra": "x"})
