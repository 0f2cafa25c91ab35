"""The knowledge-transfer ratio |P ∩ C| / |C| and its series over checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from babel_interp.analysis.performance import CompletionItem, save_completion_items
from babel_interp.analysis.stages import transfer as transfer_module
from babel_interp.analysis.stages.transfer import (
    TransferResult,
    analyze_run,
    language_matched_items,
    primary_only_from_models,
    primary_only_items,
    synthetic_fact_items,
    synthetic_transfer_items,
    transfer_ratio,
    transfer_series,
)
from babel_interp.analysis.stats import bootstrap_ci
from babel_interp.cli import main
from babel_interp.corpus.build import build_corpus, synthetic_corpus_config
from babel_interp.corpus.synthetic import SyntheticConfig, planted_facts
from babel_interp.model import ModelConfig, build_model, prepare_tokenizer, save_model
from babel_interp.runs import checkpoint_dirname

TINY = ModelConfig(n_layers=1, d_model=64, n_heads=4, d_head=16, d_mlp=128, n_ctx=64, seed=0)
TEXT = "def count(items):\n    return len(items)\n"


def test_ratio_counts_and_interval():
    U = range(10)
    r = transfer_ratio(P={1, 2, 3}, C={2, 3, 4, 5}, universe=U)
    assert (r.ratio, r.n_c, r.n_pc) == (0.5, 4, 2)
    assert 0.0 <= r.ci_low <= 0.5 <= r.ci_high <= 1.0
    all_p = transfer_ratio(P={1, 2, 3}, C={1, 2}, universe=U)
    assert (all_p.ratio, all_p.ci_low, all_p.ci_high) == (1.0, 1.0, 1.0)
    none = transfer_ratio(P={1}, C=set(), universe=U)
    assert none.ratio is None and none.n_c == 0 and none.ci_low is None
    assert transfer_ratio(P=set(), C={"a", "b"}, universe={"a", "b", "c"}).ratio == 0.0
    # Deterministic whatever the set order, and wider with fewer items.
    big = transfer_ratio(P=set(range(50)), C=set(range(25, 125)), universe=range(200))
    small = transfer_ratio(P={0, 1}, C={1, 2, 3, 4}, universe=range(8))
    assert big.ci_high - big.ci_low < small.ci_high - small.ci_low
    assert transfer_ratio(set(range(50)), set(range(124, 24, -1)), range(199, -1, -1)) == big
    assert json.loads(json.dumps(big.to_dict()))["n_c"] == 100
    with pytest.raises(ValueError, match="C holds items outside the universe"):
        transfer_ratio(P={1}, C={1, 11}, universe=U)
    with pytest.raises(ValueError, match="P holds items outside the universe"):
        transfer_ratio(P={12}, C={1}, universe=U)


def test_grouped_interval_needs_every_group():
    P, C = {"a1", "a2"}, {"a1", "a2", "b1", "b2"}
    groups = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}
    r = transfer_ratio(P, C, C, groups=groups)
    assert r.ratio == 0.5
    # Two groups only: resampling whole groups gives 0, 0.5 or 1.
    assert r.ci_low == 0.0 and r.ci_high == 1.0
    with pytest.raises(ValueError, match="no entry"):
        transfer_ratio(P, C, C, groups={"a1": "a", "a2": "a", "b1": "b"})
    # Every item asked needs a group, solved or not.
    with pytest.raises(ValueError, match="no entry"):
        transfer_ratio(P, C, C | {"c1"}, groups=groups)


def test_interval_resamples_which_items_are_in_c():
    # A small C among many items asked: how many items land in C varies between draws, so the
    # interval is wider than the one conditional on exactly these solved items.
    P, C = {0, 1}, {1, 2, 3, 4}
    fixed = bootstrap_ci([1.0 if c in P else 0.0 for c in sorted(C)], n_boot=2000)
    r = transfer_ratio(P, C, range(40), n_boot=2000)
    assert r.ratio == fixed.estimate == 0.25
    assert r.ci_high - r.ci_low > fixed.high - fixed.low
    # universe=C is that conditional interval.
    cond = transfer_ratio(P & C, C, C, n_boot=2000)
    assert (cond.ratio, cond.ci_low, cond.ci_high) == (fixed.estimate, fixed.low, fixed.high)


def test_interval_covers_the_true_ratio_at_the_nominal_rate():
    # Items drawn at random: each solved with probability 0.1 and needing primary-only
    # knowledge with probability 0.4 (independently), so the true share of P in C is 0.4.
    # 300 simulated item sets of 100 items (about 10 in C each).
    rng = np.random.default_rng(0)
    n_items, truth = 100, 0.4
    covered = {"resampled": 0, "fixed": 0}
    width = {"resampled": 0.0, "fixed": 0.0}
    n_sets = 0
    for k in range(300):
        in_c, in_p = rng.random(n_items) < 0.1, rng.random(n_items) < truth
        C = {i for i in range(n_items) if in_c[i]}
        P = {i for i in range(n_items) if in_p[i]}
        if not C:
            continue
        n_sets += 1
        r = transfer_ratio(P, C, range(n_items), seed=k)
        old = bootstrap_ci([1.0 if i in P else 0.0 for i in sorted(C)], seed=k)
        for name, lo, hi in (("resampled", r.ci_low, r.ci_high), ("fixed", old.low, old.high)):
            covered[name] += lo <= truth <= hi
            width[name] += hi - lo
    assert n_sets >= 290
    coverage = {k: v / n_sets for k, v in covered.items()}
    # Nominal 0.95: measured 0.947 resampling C, 0.927 with C fixed (about 10% narrower).
    assert 0.92 <= coverage["resampled"] <= 0.98
    assert coverage["resampled"] >= coverage["fixed"]
    assert width["resampled"] > 1.05 * width["fixed"]


def test_primary_only_items_follows_the_paper_definition():
    assert primary_only_items({1, 2, 3}, {3, 4}) == {1, 2}
    prim = {"q1": True, "q2": True, "q3": False}
    targ = {"q1": False, "q2": True, "q3": False}
    assert primary_only_items(prim, targ) == {"q1"}
    with pytest.raises(ValueError, match="different items"):
        primary_only_items(prim, {"q1": False})
    with pytest.raises(ValueError, match="must be a bool"):
        primary_only_items({"q1": 1}, {"q1": False})


def test_language_matched_items_join_renderings_by_id():
    py = [CompletionItem("a = ", "1", item_id="x"), CompletionItem("b = ", "2", item_id="y")]
    php = [CompletionItem("$b = ", "2", item_id="y"), CompletionItem("$a = ", "1", item_id="x")]
    prim, targ = language_matched_items({"python": py, "php": php}, "python", "php")
    # Aligned by id, in the target language's order.
    assert [i.item_id for i in prim] == [i.item_id for i in targ] == ["y", "x"]
    assert [i.prompt for i in prim] == ["b = ", "a = "]
    with pytest.raises(ValueError, match="item 'y' has no rendering in 'python'"):
        language_matched_items({"python": py[:1], "php": php}, "python", "php")
    with pytest.raises(ValueError, match="item 'x' has no rendering in 'php'"):
        language_matched_items({"python": py, "php": php[:1]}, "python", "php")
    with pytest.raises(ValueError, match="no 'python' renderings"):
        language_matched_items({"php": php}, "python", "php")
    with pytest.raises(ValueError, match="'php' item 0 has no item_id"):
        language_matched_items({"python": py, "php": [CompletionItem("$a", "1")]}, "python", "php")
    with pytest.raises(ValueError, match="appears twice"):
        language_matched_items({"python": py + py[:1], "php": php}, "python", "php")
    wrong = [CompletionItem("$a = ", "1", language="go", item_id="x")]
    with pytest.raises(ValueError, match="listed under 'php' but is in 'go'"):
        language_matched_items({"python": py[:1], "php": wrong}, "python", "php")


def test_synthetic_fact_items_have_one_id_in_every_language():
    cfg = SyntheticConfig(languages=("python", "php"), n_planted_facts=3, n_shared_facts=2)
    py, planted_py = synthetic_fact_items(cfg, "python", n_planted=5)
    php, planted_php = synthetic_transfer_items(cfg, "php", n_planted=5)
    assert planted_py == planted_php == set(range(5))
    assert [i.item_id for i in py] == [i.item_id for i in php]
    assert len({i.item_id for i in php}) == 7 and php[3].item_id == "p0/1"
    assert {i.language for i in py} == {"python"} and {i.language for i in php} == {"php"}
    prim, targ = language_matched_items({"python": py, "php": php}, "python", "php")
    assert [i.prompt for i in prim] == [i.prompt for i in py]


def test_synthetic_items_put_planted_facts_in_p():
    cfg = SyntheticConfig(languages=("python", "php"), n_planted_facts=6, n_shared_facts=4)
    items, P = synthetic_transfer_items(cfg, "php")
    assert len(items) == 10 and P == set(range(6))
    planted_names = {f.name for f in planted_facts(cfg)}
    for i, it in enumerate(items):
        assert it.language == "php"
        assert (i in P) == (it.kind == "planted_fact")
        assert any(name in it.prompt for name in planted_names) == (i in P)
        assert it.answer.strip().lstrip("-").isdigit()
    items, P = synthetic_transfer_items(cfg.to_dict(), "php", n_planted=12, n_shared=2)
    assert len(items) == 14 and len(P) == 12
    with pytest.raises(ValueError, match="where the facts are planted"):
        synthetic_transfer_items(cfg, "python")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_tokenizer):
    """A run with a random-init checkpoint (step 0) and one that memorized TEXT (step 100)."""
    torch.manual_seed(0)
    untrained = build_model(TINY, tokenizer=small_tokenizer)
    model = build_model(TINY, tokenizer=small_tokenizer)
    doc = [small_tokenizer.eos_token_id] + small_tokenizer(TEXT, add_special_tokens=False)[
        "input_ids"
    ]
    stream = torch.tensor(doc * 12)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        starts = torch.randint(0, len(stream) - 25, (8,)).tolist()
        batch = torch.stack([stream[s : s + 25] for s in starts])
        logits = model(batch[:, :-1], return_type="logits")
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3
    run = tmp_path_factory.mktemp("transfer") / "run"
    for step, m in ((0, untrained), (100, model)):
        d = run / "checkpoints" / checkpoint_dirname(step)
        save_model(m, d, tokenizer=small_tokenizer)
        (d / "trainer_state.json").write_text(json.dumps({"step": step, "tokens_seen": {}}))
    return run


def test_series_over_checkpoints(run_dir):
    items = [
        # "P": what this model knows from its (Python) text.
        CompletionItem("def count(items):\n    return", " len", group="f1"),
        CompletionItem("def count(", "items", group="f2"),
        # Not in P: the model never saw it.
        CompletionItem("function count($items) {\n    return", " strlen", group="f3"),
        CompletionItem("def count(items):\n    return len(", "items", group="f4"),
    ]
    df = transfer_series(run_dir, items, primary_only={0, 1, 2}, n_boot=200, progress=False)
    assert list(df["step"]) == [0, 100]
    first, last = df.iloc[0], df.iloc[1]
    assert first["n_c"] == 0 and math.isnan(first["ratio"])
    # Step 100 solves items 0, 1 (in P) and 3 (not in P).
    assert (last["n_c"], last["n_pc"]) == (3, 2)
    assert last["ratio"] == pytest.approx(2 / 3)
    assert last["accuracy_p"] == pytest.approx(2 / 3) and last["accuracy_not_p"] == 1.0
    assert last["ci_low"] <= last["ratio"] <= last["ci_high"]
    only = transfer_series(run_dir, items, {0}, steps=[100], n_boot=50, progress=False)
    assert list(only["step"]) == [100] and only.iloc[0]["ratio"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="outside the 4 items"):
        transfer_series(run_dir, items, {7}, steps=[100], n_boot=50, progress=False)


# One item, rendered in Python and in PHP: the model trained on TEXT (Python) solves the first
# item's Python rendering, not its PHP one; the second item's "PHP" rendering is a prompt it
# solves, its Python one a prompt it fails.
MATCHED = {
    "python": [
        CompletionItem("def count(items):\n    return", " len", item_id="len"),
        CompletionItem("def size(values):\n    return", " sum", item_id="sum"),
    ],
    "php": [
        CompletionItem("function count($items) {\n    return", " count", item_id="len"),
        CompletionItem("def count(", "items", item_id="sum"),
    ],
}


def test_reference_models_are_asked_in_their_own_language(run_dir, monkeypatch):
    primary = run_dir / "checkpoints" / checkpoint_dirname(100)  # knows TEXT
    target_only = run_dir / "checkpoints" / checkpoint_dirname(0)  # knows nothing
    asked = []
    real = transfer_module.completion_accuracy

    def recording(model, tokenizer, items, **kw):
        asked.append([it.prompt for it in items])
        return real(model, tokenizer, items, **kw)

    monkeypatch.setattr(transfer_module, "completion_accuracy", recording)
    P = primary_only_from_models(
        primary, target_only, MATCHED, target="php", primary="python", max_new_tokens=4
    )
    # The primary-only model got the Python renderings, the target-only model the PHP ones.
    assert asked == [
        [it.prompt for it in MATCHED["python"]],
        [it.prompt for it in MATCHED["php"]],
    ]
    # "len": solved in Python by the primary model, failed in PHP by the target-only model.
    # "sum": the primary model fails its Python rendering (it would solve the PHP one).
    assert P == {0}
    with pytest.raises(ValueError, match="item 'sum' has no rendering in 'python'"):
        primary_only_from_models(
            primary, target_only, {"python": MATCHED["python"][:1], "php": MATCHED["php"]}, "php"
        )


def test_analyze_run_with_reference_models_needs_both_renderings(run_dir):
    primary = run_dir / "checkpoints" / checkpoint_dirname(100)
    target_only = run_dir / "checkpoints" / checkpoint_dirname(0)
    kw = dict(primary_model=primary, target_only_model=target_only, n_boot=50, progress=False)
    result = analyze_run(run_dir, language="php", items=MATCHED, max_new_tokens=4, **kw)
    df = result.to_dataframe()
    assert list(df["n_p"]) == [1, 1] and list(df["n_items"]) == [2, 2]
    assert df["definition"].iloc[0] == (
        "paper: solved by the primary-only model in python, failed by the target-only model in php"
    )
    # Step 100 solves the PHP list's "def count(" (item "sum"), which is not in P.
    assert (df.iloc[1]["n_c"], df.iloc[1]["n_pc"]) == (1, 0)
    with pytest.raises(ValueError, match="pass items as a map language"):
        analyze_run(run_dir, language="php", items=MATCHED["php"], **kw)


def test_analyze_run_saves_a_result_that_loads_back(run_dir, tmp_path):
    items = [
        CompletionItem("def count(items):\n    return", " len", group="f1"),
        CompletionItem("function count($items) {\n    return", " strlen", group="f2"),
    ]
    result = analyze_run(
        run_dir, language="php", items=items, primary_only={0}, n_boot=50, progress=False
    )
    df = result.to_dataframe()
    assert list(df["step"]) == [0, 100] and set(df["language"]) == {"php"}
    assert set(df["definition"]) == {"given"} and set(df["solved_by"]) == {"identifier"}
    saved = run_dir / "analysis" / "transfer"
    loaded = TransferResult.load(saved)
    pd.testing.assert_frame_equal(loaded.to_dataframe(), df, check_dtype=False)
    loaded.save(tmp_path)
    assert (tmp_path / "transfer.csv").read_bytes() == (saved / "transfer.csv").read_bytes()
    # Another language's rows are kept when this one is saved again.
    TransferResult(df.assign(language="go")).save(saved)
    result.save(saved)
    both = TransferResult.load(saved).to_dataframe()
    assert sorted(both["language"]) == ["go", "go", "php", "php"]
    with pytest.raises(FileNotFoundError, match="analyze transfer"):
        TransferResult.load(tmp_path / "nothing")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A run on a small synthetic Python+PHP corpus with two (untrained) checkpoints and the
    trainer's eval records: the commands' plumbing, end to end, without training."""
    root = tmp_path_factory.mktemp("synthetic")
    cfg = synthetic_corpus_config(
        root / "corpus", languages=("python", "php"), docs_per_language=20, vocab_size=600
    )
    cfg.progress = False
    build_corpus(cfg)
    tok = prepare_tokenizer(root / "corpus" / "tokenizer")
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"corpus": str(root / "corpus")}))
    records = []
    for step in (0, 50):
        model = build_model(TINY, tokenizer=tok)
        d = run / "checkpoints" / checkpoint_dirname(step)
        save_model(model, d, tokenizer=tok)
        state = {"step": step, "tokens_seen": {"python": 0, "php": 100 * step}}
        (d / "trainer_state.json").write_text(json.dumps(state))
        records.append({"type": "eval", "step": step, "val_loss": {"php": 6.0 - step / 100}})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def test_commands_on_a_synthetic_run(synthetic_run, capsys):
    run = str(synthetic_run)
    fast = ["--max-new-tokens", "4", "--n-boot", "50", "--quiet"]
    assert main(["analyze", "performance", "--run", run, "--n-documents", "2", *fast]) == 0
    comp = pd.read_csv(synthetic_run / "analysis" / "performance" / "completion.csv")
    assert list(comp["step"]) == [0, 50] and set(comp["language"]) == {"php"}
    items = pd.read_csv(synthetic_run / "analysis" / "performance" / "completion_items.csv")
    assert set(items["kind"]) <= {"builtin", "call"} and len(items) == 2 * comp["n"].iloc[0]
    val = pd.read_csv(synthetic_run / "analysis" / "performance" / "val_series.csv")
    assert list(val["val_loss"]) == [6.0, 5.5]

    args = ["analyze", "transfer", "--run", run, "--n-planted", "4", "--n-shared", "3", *fast]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "facts planted only in python (4 of 7)" in out
    tr = pd.read_csv(synthetic_run / "analysis" / "transfer" / "transfer.csv")
    assert list(tr["step"]) == [0, 50] and set(tr["language"]) == {"php"}
    assert list(tr["n_p"]) == [4, 4] and list(tr["tokens_seen"]) == [0, 5000]
    # Rerunning replaces this language's rows instead of appending.
    assert main(args) == 0
    assert len(pd.read_csv(synthetic_run / "analysis" / "transfer" / "transfer.csv")) == 2

    # The probes file path needs the reference models that define P.
    items_path = synthetic_run / "items.jsonl"
    cfg = {"languages": ["python", "php"], "n_planted_facts": 3, "n_shared_facts": 2}
    its, _ = synthetic_transfer_items(cfg, "php")
    save_completion_items(its, items_path)
    # Only the PHP renderings: the primary-only model has nothing to be asked.
    ckpt = str(synthetic_run / "checkpoints" / checkpoint_dirname(0))
    refs = ["--primary-model", ckpt, "--target-only-model", ckpt]
    assert main(["analyze", "transfer", "--run", run, "--probes", str(items_path), *refs]) == 1
    assert "no 'python' renderings" in capsys.readouterr().err
    save_completion_items(synthetic_fact_items(cfg, "python")[0] + its, items_path)
    assert main(["analyze", "transfer", "--run", run, "--probes", str(items_path)]) == 1
    assert "--primary-model" in capsys.readouterr().err
    args = ["analyze", "transfer", "--run", run, "--probes", str(items_path), *refs, *fast]
    assert main(args) == 0
    tr = pd.read_csv(synthetic_run / "analysis" / "transfer" / "transfer.csv")
    # The same model on both sides: nothing is primary-only.
    assert list(tr["n_p"]) == [0, 0] and tr["definition"].iloc[0].startswith("paper")

    # Two checkpoints are too few for stages; the command still writes its verdict.
    assert main(["analyze", "stages", "--run", run, "--no-figures"]) == 0
    assert "insufficient data" in capsys.readouterr().out
