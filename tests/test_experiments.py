"""The experiment modules end to end, at a micro size: study, optimizer mixtures, reports,
and the analyzers on a user's own saved hooked model."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from babel_interp.experiments import analyze_pretrained, babel_tower, optimize_corpus
from babel_interp.runs import Study

MICRO = dict(
    profile="quick",
    targets=["php"],
    seeds=[0],
    docs_per_language=120,
    vocab_size=512,
    preset="tiny",
    seq_len=64,
    batch_size=8,
    primary_steps=24,
    continual_steps=12,
    scratch_steps=6,
    n_checkpoints=3,
    eval_windows=4,
    neuron_tokens=1024,
    neuron_permutations=3,
    n_per_pair=2,
    completion_docs=3,
    completion_tokens=8,
    execution_problems=3,
    execution_tokens=24,
    progress=False,
)


# What a progress bar writes: its rate (``12.3it/s``, ``?doc/s``), its bar (``45%|###``) and
# the descriptions of the corpus stage's bars.
PROGRESS_MARKS = ("it/s", "doc/s", "tok/s", "step/s", "%|", "reading sources", "tokenizing")

# The micro study's stderr (progress off), captured while the module's study fixture ran it.
STUDY_STDERR: dict[str, str] = {}


def progress_marks(text: str) -> list[str]:
    return [m for m in PROGRESS_MARKS if m in text]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("study")
    cfg = babel_tower.BabelTowerConfig.from_dict({**MICRO, "out": str(out)})
    # tqdm writes to the sys.stderr of the moment a bar is made: every bar of every stage
    # (corpus, training, analyzers, execution) lands here unless it is disabled.
    with contextlib.redirect_stderr(io.StringIO()) as err:
        report = babel_tower.run_experiment(cfg)
    STUDY_STDERR["text"] = err.getvalue()
    return out, report


@pytest.mark.parametrize("progress", [False, True])
def test_the_corpus_stage_shows_progress_only_when_asked(tmp_path, capfd, progress):
    """The study's corpus stage (synthesize, train the tokenizer, tokenize) with progress off
    writes no progress bar; with it on, the bars appear (so the check can fail)."""
    cfg = babel_tower.BabelTowerConfig.from_dict(
        {**MICRO, "docs_per_language": 20, "out": str(tmp_path), "progress": progress}
    )
    capfd.readouterr()
    corpus = babel_tower.build_study_corpus(cfg, Study(tmp_path))
    assert (corpus / "manifest.json").is_file()
    err = capfd.readouterr().err
    if progress:
        assert {"reading sources", "tokenizing", "%|"} <= set(progress_marks(err)), err
    else:
        assert progress_marks(err) == [], err


def test_no_progress_and_quiet_are_one_flag(monkeypatch, tmp_path):
    seen = []

    def fake_run(cfg):
        seen.append(cfg.progress)
        return Path(cfg.out) / "report.md"

    monkeypatch.setattr(babel_tower, "run_experiment", fake_run)
    for flags, progress in (([], True), (["--no-progress"], False), (["--quiet"], False)):
        assert babel_tower.main(["--out", str(tmp_path), "--targets", "php", *flags]) == 0
        assert seen.pop() is progress


def test_no_progress_silences_every_stage_of_the_study(study):
    assert progress_marks(STUDY_STDERR["text"]) == [], STUDY_STDERR["text"][-2000:]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="profile"):
        babel_tower.BabelTowerConfig(profile="huge")
    with pytest.raises(ValueError, match="targets must not include the primary"):
        babel_tower.BabelTowerConfig(targets=["python"])
    with pytest.raises(ValueError, match="unknown field"):
        babel_tower.BabelTowerConfig.from_dict({"target": ["php"]})
    with pytest.raises(ValueError, match="Unknown language|unknown language|known"):
        babel_tower.BabelTowerConfig(targets=["klingon"])
    full = babel_tower.BabelTowerConfig(profile="full")
    assert full.targets == ["php", "csharp", "go", "cpp"] and len(full.seeds) >= 3


def test_study_runs_every_stage_and_writes_the_report(study):
    out, report = study
    meta = json.loads((out / "experiment.json").read_text())
    assert set(meta["timings"]) >= {"corpus_s", "training_s", "analysis_s", "total_s"}
    assert set(meta["verdicts"]) == {"seed_0/php/continual", "seed_0/php/scratch"}
    cont = out / "seed_0" / "php" / "continual"
    for table in (
        "performance/val_series.csv",
        "working_language/aggregate.csv",
        "working_language/competence.csv",
        "neurons/counts_total.csv",
        "transfer/transfer.csv",
        "stages/stages.json",
        "efficiency/efficiency.csv",
        "execution/samples.csv",
        "execution/pass_at_k.csv",
        "execution/transfer.csv",
    ):
        assert (cont / "analysis" / table).is_file(), table
    # pass@1 by execution at every checkpoint of both runs, and the primary model's last one.
    for run in (cont, out / "seed_0" / "php" / "scratch"):
        steps = {p.name for p in (run / "checkpoints").iterdir()}
        samples = pd.read_csv(run / "analysis" / "execution" / "samples.csv")
        assert samples["step"].nunique() == len(steps)
        assert set(samples["language"]) == {"php"}
        assert samples.groupby("step")["task_id"].nunique().eq(3).all()
        assert set(samples["status"]) <= {
            "passed",
            "wrong_answer",
            "runtime_error",
            "compile_error",
            "timeout",
        }
    prim = pd.read_csv(out / "seed_0" / "primary" / "analysis" / "execution" / "samples.csv")
    assert set(prim["language"]) == {"python"} and prim["step"].nunique() == 1
    # The stage detector read pass@1 as performance (the paper's definition).
    stages = json.loads((cont / "analysis" / "stages" / "stages.json").read_text())
    assert "pass_at_1" in stages["php"]["sources"]
    # The continued run starts from the primary model's last checkpoint.
    run_cfg = json.loads((cont / "run_config.json").read_text())
    assert "primary" in json.dumps(run_cfg["init_from"])
    # The corpus is recorded relative to the run and to the study: both move with the study.
    assert run_cfg["corpus"] == "../../../corpus"
    assert meta["corpus_relative"] == "corpus" and meta["corpus"] == str((out / "corpus").resolve())
    assert Study(out).corpus_dir(meta) == (out / "corpus").resolve()
    text = report.read_text()
    for section in (
        "Does a new language first run on python's knowledge system?",
        "php: continued vs. from scratch (1 seed)",
        "## Setup",
        "Corpus: documents, bytes and tokens per language",
        "## Limits",
        "## Appendix: each seed's runs",
        "**php, seed 0**: stage detector:",
    ):
        assert section in text, section
    # The answer names a verdict for the language.
    assert re.search(r"\*\*php: (signature|no signature|insufficient data)\*\*", text)
    assert "pass@1 at equal steps" in text
    figures = list((out / "figures").glob("*.png"))
    assert len(figures) >= 4
    assert (out / "report.html").read_text().count("data:image/png;base64") == len(
        [line for line in text.splitlines() if line.startswith("![")]
    )


def test_the_study_report_reads_well_in_a_browser(study):
    """The micro study's report in headless Chromium (tests/test_report_browser.py says when
    this runs): no leaked Markdown, nothing wider than the page, every figure loads and is
    wide enough, the answer on the first screen."""
    from babel_interp.report.browser_check import BrowserUnavailable, check_html

    out, _ = study
    try:
        rep = check_html(out / "report.html", max_mb=1.5)
    except BrowserUnavailable as exc:
        if os.environ.get("BABEL_INTERP_REQUIRE_BROWSER") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    assert rep.ok, rep.problems
    assert rep.images >= 3


def test_rerun_reuses_finished_work(study):
    out, _ = study
    ckpt = out / "seed_0" / "primary" / "checkpoints"
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    cfg = babel_tower.BabelTowerConfig.from_dict({**MICRO, "out": str(out)})
    babel_tower.train_runs(cfg, Study(out), out / "corpus")
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before


def test_optimizer_mixtures_from_the_study(study):
    out, _ = study
    table = optimize_corpus.mixtures_from_experiment(out)
    assert set(table["method"]) == {
        "proportional",
        "uniform",
        "temperature",
        "unimax",
        "babel-tower",
    }
    for _, g in table.groupby("method"):
        assert g["weight"].sum() == pytest.approx(1.0)
    for name in ("babel-tower", "proportional"):
        mix = json.loads((out / "optimize" / f"{name}.json").read_text())
        assert set(mix["weights"]) <= {"python", "php"}
    assert (out / "optimize" / "babel_tower_decisions.csv").is_file()
    sens = pd.read_csv(out / "optimize" / "babel_tower_sensitivity.csv")
    assert set(sens["target_share"]) == {0.3, 0.4, 0.5, 0.6, 0.7}
    assert set(sens["run_fraction"]) == {0.5, 0.75, 1.0}
    from babel_interp.report.report import write_experiment_report

    md, _ = write_experiment_report(out)
    text = md.read_text()
    assert "Corpus optimizer" in text
    assert "Tokens at which the loss proxy reaches each target share" in text


def test_analyze_pretrained_on_a_saved_model(study, tmp_path, capsys):
    out, _ = study
    ckpt = sorted((out / "seed_0" / "primary" / "checkpoints").iterdir())[-1]
    code = analyze_pretrained.main(
        [
            "--model",
            str(ckpt),
            "--target",
            "php",
            "--out",
            str(tmp_path / "pre"),
            "--tokens-per-language",
            "512",
            "--no-progress",
        ]
    )
    assert code == 0
    agg = pd.read_csv(tmp_path / "pre" / "working_language_aggregate.csv")
    assert len(agg) == 3  # two blocks' resid_pre and the final resid_post
    counts = pd.read_csv(tmp_path / "pre" / "neuron_counts.csv")
    assert list(counts["layer"]) == [0, 1] and "lape_shared" in counts.columns
    assert "report" in capsys.readouterr().out
    assert analyze_pretrained.main(["--model", str(tmp_path), "--out", str(tmp_path / "x")]) == 2


def test_analyze_pretrained_on_a_users_own_hooked_transformer(study, tmp_path):
    """A model the user built with TransformerLens directly, with their own tokenizer."""
    from babel_interp.corpus.tokenizer import load_tokenizer
    from babel_interp.model import tl_major_version

    out, _ = study
    tok = load_tokenizer(out / "corpus" / "tokenizer")
    if tl_major_version() >= 4:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        cfg = TransformerBridgeConfig(
            n_layers=3,
            d_model=48,
            n_heads=3,
            d_head=16,
            d_mlp=96,
            n_ctx=64,
            d_vocab=len(tok),
            act_fn="relu",
            seed=3,
        )
        model = TransformerBridge.boot_native(cfg)
    else:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig(
            n_layers=3,
            d_model=48,
            n_heads=3,
            d_head=16,
            d_mlp=96,
            n_ctx=64,
            d_vocab=len(tok),
            act_fn="relu",
            seed=3,
        )
        model = HookedTransformer(cfg)
    pcfg = analyze_pretrained.PretrainedAnalysisConfig(
        out=str(tmp_path / "own"),
        target="php",
        n_per_pair=2,
        tokens_per_language=512,
        window=32,
        progress=False,
    )
    md = analyze_pretrained.analyze_pretrained(model, tok, pcfg)
    assert md.is_file()
    counts = pd.read_csv(tmp_path / "own" / "neuron_counts.csv")
    assert list(counts["layer"]) == [0, 1, 2]
    comp = pd.read_csv(tmp_path / "own" / "working_language_competence.csv")
    assert not bool(comp["competent"].iloc[0])  # a random model cannot pass the gate
