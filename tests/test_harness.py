"""Resampled corpora and the mixture evaluation harness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from babel_interp.corpus.shards import CorpusReader, ShardWriter, write_manifest
from babel_interp.optimizer.resample import write_resampled_corpus


def _handmade_corpus(root, tokenizer, docs_per_lang=None, seed=0):
    """A corpus written with the real shard writer; document lengths vary from 5 to 40 tokens."""
    docs_per_lang = docs_per_lang or {"python": 30, "php": 60, "go": 10}
    langs = list(docs_per_lang)
    tokenizer.save_pretrained(root / "tokenizer")
    rng = np.random.default_rng(seed)
    eos = tokenizer.eos_token_id
    splits = {}
    for split, scale in (("train", 1.0), ("val", 0.2)):
        w = ShardWriter(root, split, langs, vocab_size=len(tokenizer), eos_id=eos)
        for li, lang in enumerate(langs):
            for _ in range(max(1, int(docs_per_lang[lang] * scale))):
                n = int(rng.integers(5, 41))
                # Token ids encode the language so a test can check labels survived resampling.
                ids = np.full(n, 10 + li)
                w.add(lang, ids, n_bytes=3 * n)
        splits[split] = w.close()
    write_manifest(
        root,
        langs,
        splits,
        {"vocab_size": len(tokenizer), "eos_id": eos, "hash": "test"},
        source="handmade",
    )
    return root


def test_resampled_corpus_follows_the_mixture(tmp_path, small_tokenizer):
    src = _handmade_corpus(tmp_path / "src", small_tokenizer)
    reader = CorpusReader(src)
    sizes = {
        lang: reader.manifest["splits"]["train"]["languages"][lang]["tokens"]
        for lang in reader.languages
    }
    total = 2000
    report = write_resampled_corpus(
        src, {"python": 0.5, "php": 0.2, "go": 0.3}, total, tmp_path / "out", seed=3
    )
    out = CorpusReader(tmp_path / "out")
    assert out.languages == reader.languages
    train = out.split("train")
    for li, lang in enumerate(out.languages):
        got = out.manifest["splits"]["train"]["languages"][lang]["tokens"]
        assert got == report.written[lang]
        # Whole documents, each at most 41 tokens: within one document of the request.
        assert abs(got - report.requested[lang]) <= 41
        lo, hi = train.language_range(lang)
        toks = np.asarray(train.tokens[lo:hi])
        labels = np.asarray(train.lang_ids[lo:hi])
        assert (labels == li).all()
        assert set(np.unique(toks)) <= {10 + li, small_tokenizer.eos_token_id}
    # Go has fewer tokens than its share: it is repeated (more than one epoch).
    assert report.epochs["go"] > 1.0 and sizes["go"] < report.requested["go"]
    # The validation split is the source's, unchanged.
    np.testing.assert_array_equal(out.split("val").tokens, reader.split("val").tokens)
    assert out.manifest["resampled_from"]["total_tokens"] == total
    assert out.manifest["source"] == "handmade"
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "out" / "resample_report.json").read_text())["written"]
    # Same seed, same corpus; the destination is never overwritten by accident.
    with pytest.raises(FileExistsError):
        write_resampled_corpus(src, {"python": 1.0}, 100, tmp_path / "out")
    again = write_resampled_corpus(
        src,
        {"python": 0.5, "php": 0.2, "go": 0.3},
        total,
        tmp_path / "out",
        seed=3,
        overwrite=True,
    )
    assert again.written == report.written


def test_resample_rejects_bad_input_and_leaves_no_debris(tmp_path, small_tokenizer):
    src = _handmade_corpus(tmp_path / "src", small_tokenizer)
    with pytest.raises(ValueError, match="not in corpus"):
        write_resampled_corpus(src, {"rust": 1.0}, 100, tmp_path / "out")
    with pytest.raises(ValueError, match="total_tokens"):
        write_resampled_corpus(src, {"python": 1.0}, 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


# ------------------------------------------------------------------------------------------
# Summary math on explicit curves
# ------------------------------------------------------------------------------------------


def _outcome(mixture, seed, python, php, tokens=(0, 100, 200, 300)):
    import pandas as pd

    from babel_interp.optimizer.summary import RunOutcome

    rows = [
        {"tokens": t, "language": lang, "val_bpb": v}
        for lang, vals in (("python", python), ("php", php))
        for t, v in zip(tokens, vals, strict=True)
    ]
    return RunOutcome(mixture, seed, pd.DataFrame(rows), train_seconds=10.0, optimizer_seconds=1.0)


def test_summary_measures_on_known_curves():
    from babel_interp.optimizer.summary import per_seed_measures, summarize, tokens_to_target

    assert tokens_to_target(np.array([0, 100, 200]), np.array([5.0, 3.0, 2.0]), 4.0) == 50.0
    assert np.isnan(tokens_to_target(np.array([0, 100]), np.array([5.0, 4.5]), 4.0))
    outs = [
        _outcome("proportional", 0, [5, 4, 3, 2], [6, 5, 4, 3]),
        _outcome("proportional", 1, [5, 4, 3, 2.2], [6, 5, 4, 3.2]),
        # Reaches the reference's final python bpb (2.0) at 150 tokens: speedup 300 / 150 = 2.
        _outcome("fast", 0, [5, 3, 1, 1], [6, 5, 4, 3.5]),
        _outcome("fast", 1, [5, 3, 1.2, 1], [6, 5, 4, 3.6]),
    ]
    ps = per_seed_measures(outs, primary="python", reference="proportional")
    fast0 = ps[(ps.mixture == "fast") & (ps.seed == 0)].iloc[0]
    assert fast0["speedup:python"] == pytest.approx(2.0)
    assert np.isnan(fast0["speedup:php"]) and fast0["not_reached"] == 1
    assert fast0["speedup"] == pytest.approx(2.0)
    assert fast0["primary_regression"] == pytest.approx(1.0 - 2.0)  # paired with seed 0
    assert fast0["worst_language"] == "php" and fast0["worst_bpb"] == 3.5
    assert fast0["macro_bpb"] == pytest.approx((1.0 + 3.5) / 2)
    assert fast0["overhead_share"] == pytest.approx(0.1)
    table = summarize(outs, primary="python")
    row = table.set_index("mixture").loc["fast"]
    assert row["seeds"] == 2 and row["not_reached"] == 2
    assert row["bpb:php_mean"] == pytest.approx(3.55)
    assert row["bpb:php_low"] < 3.55 < row["bpb:php_high"]
    with pytest.raises(ValueError, match="reference mixture"):
        per_seed_measures(outs, "python", reference="uniform")


def test_report_draws_a_harness_result(tmp_path):
    """The comparison figure and, when the proxy was calibrated, the calibration figure."""
    from babel_interp.optimizer.harness import HarnessResult
    from babel_interp.optimizer.summary import per_seed_measures, summarize
    from babel_interp.report.mixture_plots import plot_harness_result

    outs = [
        _outcome("proportional", 0, [5, 4, 3, 2], [6, 5, 4, 3]),
        _outcome("proportional", 1, [5, 4, 3, 2.2], [6, 5, 4, 3.2]),
        _outcome("fast", 0, [5, 3, 1, 1], [6, 5, 4, 3.5]),
        _outcome("fast", 1, [5, 3, 1.2, 1], [6, 5, 4, 3.6]),
    ]
    curves = pd.concat([o.curve.assign(mixture=o.mixture, seed=o.seed) for o in outs])
    result = HarnessResult(
        outs,
        per_seed_measures(outs, "python", "proportional"),
        summarize(outs, "python"),
        "",
        {},
        {},
        curves=curves,
        languages=["python", "php"],
        shares={"proportional": {"python": 0.6, "php": 0.4}, "fast": {"python": 0.5, "php": 0.5}},
    )
    assert plot_harness_result(result, tmp_path) == {"figure": tmp_path / "comparison.png"}
    assert (tmp_path / "comparison.png").stat().st_size > 0
    result.calibration_points = pd.DataFrame(
        {"proxy": [0.0, 0.5, 1.0], "measured": [0.9, 0.5, 0.2], "language": ["php"] * 3}
    )
    paths = plot_harness_result(result, tmp_path)
    assert paths["calibration_figure"] == tmp_path / "calibration.png"
    assert paths["calibration_figure"].stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.png", "comparison.png"]


# ------------------------------------------------------------------------------------------
# The harness end to end on the embedded default corpus, quick profile
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick profile's harness, then its figures (drawn by the report, as the command and
    the experiment do after the harness)."""
    from babel_interp.optimizer.harness import HarnessConfig, evaluate_mixtures
    from babel_interp.report.mixture_plots import plot_harness_result

    out = tmp_path_factory.mktemp("harness")
    # The profile's two mixtures, and the paper's Algorithm 1 as published, whose cuts make the
    # paper's experiment train one pass over the optimized corpus.
    mixtures = {
        "proportional": "proportional",
        "babel-tower": "babel-tower",
        "babel-tower-paper": "babel-tower:dependence=assumed",
    }
    cfg = HarnessConfig.for_profile(
        "quick", out=str(out), mixtures=mixtures, progress=False, paper_experiment=True
    )
    result = evaluate_mixtures(cfg)
    assert not (out / "comparison.png").exists()  # computing draws nothing
    figures = plot_harness_result(result, cfg.out)
    assert figures["figure"] == out / "comparison.png"
    result.paths.update({name: str(path) for name, path in figures.items()})
    return cfg, result


def test_quick_profile_runs_end_to_end(quick):
    cfg, res = quick
    assert set(cfg.mixtures) == {"proportional", "babel-tower", "babel-tower-paper"}
    assert cfg.seeds == [0, 1]
    out = Path(cfg.out)
    for key in ("table_csv", "per_seed_csv", "curves_csv", "table_md", "figure"):
        assert Path(res.paths[key]).is_file(), key
    assert (out / "corpus" / "manifest.json").is_file()  # the embedded default, built here
    # Equal budgets: every run trained the same number of tokens.
    assert set(res.per_seed["total_tokens"]) == {cfg.steps * cfg.batch_size * cfg.seq_len}
    table = res.table.set_index("mixture")
    assert list(table.index) == ["proportional", "babel-tower", "babel-tower-paper"]
    assert table.loc["proportional", "speedup_mean"] == pytest.approx(1.0)
    assert table.loc["proportional", "primary_regression_mean"] == pytest.approx(0.0)
    for lang in ("python", "php", "go"):
        assert np.isfinite(table[f"bpb:{lang}_mean"]).all()
        assert (table[f"bpb:{lang}_low"] <= table[f"bpb:{lang}_mean"]).all()
    # The paper's allocation pays for its evidence runs: a real overhead, recorded.
    assert table.loc["babel-tower", "overhead_share_mean"] > 0.1
    assert table.loc["proportional", "overhead_share_mean"] < 0.05
    prov = json.loads((out / "mixtures" / "babel-tower.provenance.json").read_text())
    decisions = {d["language"]: d for d in prov["provenance"]["decisions"]}
    assert decisions["python"]["action"] == "keep"
    assert {decisions["php"]["action"], decisions["go"]["action"]} <= {"keep", "cut"}
    assert all(r["metrics_digest"] for r in prov["provenance"]["runs"])
    assert "| babel-tower | 2 |" in res.markdown
    assert Path(res.paths["table_md"]).read_text() == res.markdown
    # pass@1 by execution of every run's final model, in every language, beside bits/byte.
    passk = pd.read_csv(res.paths["pass_at_1_csv"])
    assert len(passk) == 3 * 2 * 3 and set(passk["language"]) == {"python", "php", "go"}
    assert passk["n_problems"].eq(cfg.execution_problems).all()
    assert passk["pass_at_1"].between(0, 1).all()
    assert "pass@1 by execution" in res.markdown and "macro − proportional" in res.markdown
    for run in (out / "runs").glob("*/seed_*"):
        assert (run / "analysis" / "execution" / "samples.csv").is_file()
    # A verdict per mixture against the best simple baseline (the only one here: proportional).
    verdicts = res.verdicts.set_index("mixture")
    assert verdicts.loc["proportional", "kind"] == "simple baseline"
    assert "best simple baseline" in verdicts.loc["proportional", "verdict"]
    assert verdicts.loc["babel-tower", "verdict"].split(" than ")[0] in (
        "better",
        "worse",
        "no better",
    )
    assert "Verdicts against the best simple baseline" in res.markdown
    assert Path(res.paths["verdicts_figure"]).stat().st_size > 1000
    # The paper's experiment ran, or says why it had nothing to train.
    assert "The paper's experiment: one pass over the optimized corpus" in res.markdown
    paper = res.paper.set_index(["mixture", "measure"])
    assert set(paper.index.get_level_values("mixture")) <= {"babel-tower", "babel-tower-paper"}
    # Algorithm 1 as published cuts every new language: one pass over a smaller corpus, which
    # ends when its data does, evaluated (bits/byte and pass@1) at its own last step.
    row = paper.loc[("babel-tower-paper", "macro pass@1")]
    assert row["n_seeds"] == 2 and row["comparison"].startswith("each run's end")
    one_pass = out / "runs" / "babel-tower-paper-one-pass"
    manifest = json.loads((out / "corpus" / "manifest.json").read_text())
    sizes = {k: v["tokens"] for k, v in manifest["splits"]["train"]["languages"].items()}
    for seed in (0, 1):
        record = json.loads((one_pass / f"seed_{seed}" / "harness_run.json").read_text())
        seen = record["tokens_seen"]
        # One pass over each language (the cap stops drawing once it is reached, so the last
        # window may pass it by less than a window), and the new languages cut short of theirs.
        assert all(seen[lang] <= sizes[lang] + cfg.seq_len for lang in seen)
        assert all(seen[lang] < sizes[lang] for lang in ("php", "go"))
    if "babel-tower" not in set(paper.index.get_level_values("mixture")):
        assert any("(babel-tower): the allocation cut nothing" in n for n in res.notes)


def test_completed_runs_are_reused_and_a_new_mixture_is_added(quick):
    from babel_interp.optimizer.controller import read_decisions
    from babel_interp.optimizer.harness import HarnessConfig, evaluate_mixtures

    cfg, res = quick
    metrics = Path(cfg.out) / "runs" / "proportional" / "seed_0" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns
    d = cfg.to_dict()
    d["mixtures"] = {"proportional": "proportional", "controller": "controller:patience=1"}
    d["seeds"] = [0]
    d["paper_experiment"] = False  # it needs a babel-tower mixture
    again = evaluate_mixtures(HarnessConfig.from_dict(d))
    assert metrics.stat().st_mtime_ns == before  # reused, not retrained
    old = res.per_seed.set_index(["mixture", "seed"]).loc[("proportional", 0), "bpb:php"]
    new = again.per_seed.set_index(["mixture", "seed"]).loc[("proportional", 0), "bpb:php"]
    assert old == new
    log = read_decisions(Path(cfg.out) / "runs" / "controller" / "seed_0" / "controller.jsonl")
    assert log[0]["action"] == "start" and len(log) > 1


def test_evaluate_mixtures_cli_reads_the_existing_runs(quick, capsys):
    from babel_interp.cli import main

    cfg, _ = quick
    rc = main(
        [
            "evaluate-mixtures",
            "--profile",
            "quick",
            "--out",
            cfg.out,
            "--corpus",
            str(Path(cfg.out) / "corpus"),
            "--mixture",
            "proportional=proportional",
            "--mixture",
            "babel-tower=babel-tower",
            "--quiet",
        ]
    )
    assert rc == 0
    assert "| proportional | 2 |" in capsys.readouterr().out


def test_harness_config_validation(tmp_path):
    from babel_interp.optimizer.harness import HarnessConfig

    with pytest.raises(ValueError, match="HarnessConfig.reference"):
        HarnessConfig(out=str(tmp_path), mixtures={"uniform": "uniform"})
    with pytest.raises(ValueError, match="at least 3 seeds"):
        HarnessConfig.for_profile("full", out=str(tmp_path), seeds=[0, 1])
    with pytest.raises(ValueError, match="HarnessConfig.token_budget"):
        HarnessConfig.for_profile("quick", out=str(tmp_path), token_budget=0)
    with pytest.raises(ValueError, match="HarnessConfig.profile"):
        HarnessConfig(out=str(tmp_path), profile="huge", mixtures={"proportional": "p"})
    with pytest.raises(ValueError, match="unknown field"):
        HarnessConfig.from_dict({"out": str(tmp_path), "budget": 3})
    cfg = HarnessConfig.for_profile("full", out=str(tmp_path))
    assert len(cfg.seeds) >= 3 and "babel-tower" in cfg.mixtures
    assert HarnessConfig.from_dict(cfg.to_dict()) == cfg


def test_verdicts_read_the_paired_interval():
    """Planted per-seed results: one optimizer clearly better than the best baseline, one
    indistinguishable, one worse; the best baseline is the lower of two."""
    from babel_interp.optimizer.verdicts import method_verdicts

    rng = np.random.default_rng(0)
    base = {"proportional": 1.00, "uniform": 1.10, "better": 0.90, "same": 1.00, "worse": 1.20}
    rows = []
    for seed in range(5):
        shared = rng.normal(0, 0.05)  # seed effect, shared by all mixtures: pairing removes it
        for mix, level in base.items():
            # "same" differs from proportional by offsets averaging exactly 0.
            noise = rng.normal(0, 0.005) if mix != "same" else [0.03, -0.03, 0.02, -0.02, 0][seed]
            v = level + shared + noise
            if mix == "same":
                v = next(r["macro_bpb"] for r in rows if r["seed"] == seed) + noise
            rows.append({"mixture": mix, "seed": seed, "macro_bpb": v, "worst_bpb": v + 0.5})
    specs = {"proportional": "proportional", "uniform": "uniform", "better": "babel-tower",
             "same": "controller", "worse": "temperature:temperature=3"}  # fmt: skip
    v = method_verdicts(pd.DataFrame(rows), specs).set_index("mixture")
    assert "best simple baseline" in v.loc["proportional", "verdict"]
    assert v.loc["better", "verdict"].startswith("better than proportional")
    assert v.loc["same", "verdict"].startswith("no better than proportional")
    assert v.loc["worse", "verdict"].startswith("worse than proportional")
    assert v.loc["uniform", "kind"] == "simple baseline" and v.loc["better", "kind"] == "optimizer"
    assert v.loc["better", "macro_bpb_diff"].startswith("\u22120.1")


def test_one_pass_mixture_and_its_comparison():
    from babel_interp.optimizer.baselines import Allocation
    from babel_interp.optimizer.paper_experiment import compare_one_pass, one_pass_mixture
    from babel_interp.optimizer.summary import RunOutcome

    alloc = Allocation(
        method="babel-tower",
        weights={"python": 0.5, "php": 0.5},
        budgets={"python": 1000, "php": 400},
        sizes={"python": 1000, "php": 1000},
        total_tokens=1400,
    )
    one = one_pass_mixture(alloc)
    assert one.total_tokens == 1400 and one.cut == {"php": (400, 1000)}
    assert one.mixture.budgets == {"php": 400} and one.mixture.epoch_caps == {
        "python": 1.0,
        "php": 1.0,
    }
    assert one.mixture.weights["python"] == pytest.approx(1000 / 1400)

    def outcome(mix, seed, end, level):
        tokens = np.linspace(0, end, 5)
        rows = [{"tokens": t, "language": lang, "val_bpb": level + 2 - t / end}
                for t in tokens for lang in ("python", "php")]  # fmt: skip
        return RunOutcome(mix, seed, pd.DataFrame(rows))

    # The one-pass runs end at 1400 tokens at 2.0 bpb; the reference runs 2000 tokens to 2.0,
    # so at 1400 tokens it is at 2.3: the optimized corpus is 0.3 better at equal steps and
    # equal at the ends.
    mine = [outcome("babel-tower-one-pass", s, 1400, 1.0 + 0.001 * s) for s in range(3)]
    ref = [outcome("proportional", s, 2000, 1.0) for s in range(3)]
    t = compare_one_pass(mine, ref).set_index(["comparison", "measure"])
    eq = [c for c in t.index.get_level_values(0) if c.startswith("equal steps")][0]
    end = [c for c in t.index.get_level_values(0) if c.startswith("each run's end")][0]
    assert t.loc[(eq, "macro bits/byte"), "reference"] == pytest.approx(2.3)
    assert t.loc[(eq, "macro bits/byte"), "difference"].startswith("\u22120.299")
    assert t.loc[(end, "macro bits/byte"), "difference"].startswith("+0.001")
