"""Controls, baselines and the competence gate.

* Neurons: two-language LAPE is flagged (a warning and a note in ``counts_total.csv``); a third
  language is accepted on the command line; firing-rate distributions are written; every LAPE and
  contrast count sits beside its (firing-rate-matched) null.
* Working language: a random-init model's excess over matched controls is zero within its
  confidence interval at every layer, the interval taken over independently seeded inits (one
  fixed random network has a genuine, init-specific excess wherever probe and control contexts
  differ; see :class:`babel_interp.analysis.working_language.logit_lens.RandomInitBaseline`);
  matched controls
  that end in the probe's last token cancel the embedding layer's lean exactly.
* Positive control: the synthetic corpus lets the ``tiny`` model reach high probe accuracy.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _neuron_fixtures import planted_neuron_model

from babel_interp.analysis.neurons.neuron_stats import NeuronStats, NeuronStatsConfig
from babel_interp.analysis.neurons.transferring import (
    CONTRAST_DEFINITIONS,
    DEFINITIONS,
    TWO_LANGUAGE_NOTE,
    NeuronAnalysisConfig,
    analyze_run,
)
from babel_interp.cli import main
from babel_interp.corpus.shards import ShardWriter, write_manifest
from babel_interp.model import ModelConfig, save_model

LANGS = ["python", "php", "go"]
V = 240  # divisible by the three languages of the planted model
CFG = ModelConfig(n_layers=2, d_model=64, n_heads=2, d_head=32, d_mlp=128, n_ctx=32, d_vocab=V)
PLANTED = {0: [(0, 1), (0, 2), (1, 3)], 1: [(0, 10), (1, 11), (1, 12)], 2: [(0, 20), (1, 21)]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from intra-op threads; on a loaded machine they slow down.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _planted_run(root):
    corpus = root / "corpus"
    rng = np.random.default_rng(0)
    per = V // len(LANGS)
    entries = {}
    for split in ("train", "val"):
        w = ShardWriter(corpus, split, LANGS, V, eos_id=0)
        for k, lang in enumerate(LANGS):
            for _ in range(30):
                w.add(lang, rng.integers(max(1, per * k), per * (k + 1), size=60), 200)
        entries[split] = w.close()
    write_manifest(corpus, LANGS, entries, {"vocab_size": V, "eos_id": 0, "hash": "h"})
    run = root / "run"
    d = run / "checkpoints" / "step_00000000"
    d.parent.mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"corpus": "../corpus"}))
    save_model(planted_neuron_model(CFG, len(LANGS), PLANTED, seed=0), d, CFG)
    state = {"step": 0, "tokens_seen": {"python": 500}, "total_tokens": 500}
    (d / "trainer_state.json").write_text(json.dumps(state))
    return run


FAST = [
    "--tokens-per-language", "1024", "--window-len", "32", "--batch-size", "8",
    "--top-rate", "0.03125", "--null-permutations", "6", "--n-bootstrap", "10",
    "--n-permutations", "100", "--no-ablation",
]  # fmt: skip


@pytest.fixture(scope="module")
def three_language_run(tmp_path_factory):
    run = _planted_run(tmp_path_factory.mktemp("controls"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a third language: no degeneracy warning
        rc = main(
            ["analyze", "neurons", "--run", str(run), "--target", "php", "--languages", *LANGS]
            + FAST
        )
    assert rc == 0
    return run


def test_a_third_language_is_used_by_lape_and_lifts_the_note(three_language_run):
    out = three_language_run / "analysis" / "neurons"
    config = json.loads((out / "config.json").read_text())
    assert config["languages"] == LANGS
    stats = NeuronStats.load(out / "step_00000000" / "stats.safetensors")
    assert stats.languages == LANGS
    lape = pd.read_csv(out / "step_00000000" / "lape.csv")
    assert any("go" in c for c in lape.columns)
    total = pd.read_csv(out / "counts_total.csv", keep_default_na=False)
    assert (total["notes"] == "").all()


def test_every_lape_and_contrast_count_has_a_null(three_language_run):
    total = pd.read_csv(three_language_run / "analysis" / "neurons" / "counts_total.csv")
    assert set(DEFINITIONS) | set(CONTRAST_DEFINITIONS) <= set(total["definition"])
    assert total[["null_mean", "null_lo", "null_hi"]].notna().all().all()
    con = total[total["definition"].isin(CONTRAST_DEFINITIONS)].set_index("definition")
    assert set(total["null_kind"]) == {"firing_matched"}
    # The planted python / php neurons are found, far above what relabeled windows select.
    assert con.loc["contrast_primary", "count"] >= len(PLANTED[0])
    assert con.loc["contrast_target", "count"] >= len(PLANTED[1])
    assert (con["count"] > con["null_hi"]).all()
    assert con["random_init_count"].notna().all()


def test_firing_rates_table_and_figure(three_language_run):
    run = three_language_run
    out = run / "analysis" / "neurons"
    firing = pd.read_csv(out / "firing_rates.csv")
    assert set(firing["step"].astype(str)) == {"0", "random_init"}
    hist = [c for c in firing.columns if c.startswith("hist_")]
    assert len(hist) == 10
    assert (firing[hist].sum(axis=1) == firing["n_neurons"]).all()
    stats = NeuronStats.load(out / "step_00000000" / "stats.safetensors")
    p = stats.count.sum(0).double() / stats.tokens.sum()
    ckpt = firing[firing["step"].astype(str) == "0"].set_index("layer")
    for i, layer in enumerate(stats.layers):
        assert ckpt.loc[layer, "n_over_half"] == int((p[i] > 0.5).sum())
        assert ckpt.loc[layer, "n_dead"] == int((p[i] == 0).sum())
    assert (run / "figures" / "neurons_firing_rates.png").stat().st_size > 1000


def test_two_language_lape_warns_and_notes_it(tmp_path):
    run = _planted_run(tmp_path)
    cfg = NeuronAnalysisConfig(
        stats=NeuronStatsConfig(tokens_per_language=1024, window_len=32, batch_size=8),
        n_null_permutations=2,
        n_contrast_null=0,
        ablation=None,
        random_init=False,
    )
    assert cfg.notes == [TWO_LANGUAGE_NOTE]
    with pytest.warns(UserWarning, match="only two languages"):
        result = analyze_run(run, cfg)
    assert result.notes == [TWO_LANGUAGE_NOTE]
    total = pd.read_csv(result.out_dir / "counts_total.csv", keep_default_na=False)
    lape_rows = total[total["definition"].isin(DEFINITIONS)]
    assert (lape_rows["notes"] == TWO_LANGUAGE_NOTE).all()
    with pytest.raises(ValueError, match="n_contrast_null"):
        NeuronAnalysisConfig(n_contrast_null=-1)


# ------------------------------------------------------------------------------------------------
# Working language: random-init baseline and the positive control
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_corpus(tmp_path_factory):
    from babel_interp.corpus.build import build_corpus, synthetic_corpus_config

    out = tmp_path_factory.mktemp("synth") / "corpus"
    build_corpus(
        synthetic_corpus_config(
            out=str(out), languages=["python", "php"], docs_per_language=600, vocab_size=2048
        )
    )
    return out


def _corpus_tokenizer(corpus):
    from babel_interp.corpus.shards import CorpusReader
    from babel_interp.model import prepare_tokenizer

    return prepare_tokenizer(CorpusReader(corpus).tokenizer_dir)


def _synthetic_probes(corpus, cfg, tokenizer=None, control_match="last_token"):
    from babel_interp.analysis.working_language.logit_lens import synthetic_world
    from babel_interp.analysis.working_language.probes import build_probes
    from babel_interp.corpus.shards import CorpusReader

    world = synthetic_world(CorpusReader(corpus).manifest, "php")
    assert world is not None
    return build_probes(
        "python",
        "php",
        cfg.n_per_pair,
        cfg.seed,
        synthetic_config=world,
        tokenizer=tokenizer,
        control_match=control_match,
    )


def _matched_differences(records, layer):
    """Per probe: log-ratio at the probe minus at its matched control, and whether the control's
    input ends in the probe's last token."""
    at = records[records["layer"] == layer]
    probe = at[at["site"] == "probe"].set_index("probe")["log_ratio"]
    ctrl = at[at["site"] == "matched"].set_index("probe")
    return probe.reindex(ctrl.index) - ctrl["log_ratio"], ctrl["same_last_token"]


def test_last_token_controls_cancel_the_embedding_layer(synth_corpus):
    """``blocks.0.hook_resid_pre`` is the embedding of the last input token plus its position, so
    at equal positions a control ending in the probe's token reads exactly like the probe, and
    one ending in another token does not, whatever the (random) weights."""
    from babel_interp.analysis.working_language.logit_lens import (
        WorkingLanguageConfig,
        analyze_working_language,
        encode_prompts,
    )
    from babel_interp.model import build_model, get_preset

    tok = _corpus_tokenizer(synth_corpus)
    # Every probe and matched prompt is longer than this, so all inputs end at one position.
    cfg = WorkingLanguageConfig(n_per_pair=10, n_boot=20, max_prompt_tokens=48)
    model = build_model(get_preset("tiny"), tokenizer=tok)
    same_counts = {}
    for rule in ("document", "last_token"):
        probes = _synthetic_probes(synth_corpus, cfg, tok, rule)
        pairs = [(p.prompt, p.target) for p in probes]
        pairs += [(p.control_prompt, p.control_identifier) for p in probes if p.control_prompt]
        assert min(len(ids) for ids, _ in encode_prompts(tok, pairs)) >= 47
        res = analyze_working_language(model, tok, probes, cfg, progress=False)
        diff, same = _matched_differences(res.records, "blocks.0.hook_resid_pre")
        assert len(diff) > 100
        assert np.abs(diff[same == 1]).max() < 1e-5
        assert (np.abs(diff[same == 0]) > 1e-3).mean() > 0.9
        rules = np.array([probes[i].control_match for i in diff.index])
        same_counts[rule] = int(same.sum())
        if rule == "document":
            assert set(rules) == {"document"}
        else:
            # The builder's choice, made with the same tokenizer, is what the analyzer measures.
            assert set(rules) == {"last_token", "document"}
            assert ((rules == "last_token") == (same == 1)).all()
        agg = res.aggregate().set_index("layer")
        assert (agg["n_matched_same_token"] == same_counts[rule]).all()
    # Measured on this corpus: 73 vs 35 of 120 probes (the rest follow "(" or an indented
    # newline, which no ordinary call in these documents does).
    assert same_counts["last_token"] > 1.5 * same_counts["document"]


# Chosen before any test run: the first five seeds. Chance alone fails the test below at most 5%
# of the time (Bonferroni over its intervals).
RANDOM_INIT_SEEDS = (0, 1, 2, 3, 4)


def test_random_init_excess_is_zero_within_its_interval_over_inits(synth_corpus):
    """A random-init model's excess over matched (and random) controls is zero within its
    interval at every layer.

    The interval is over independently seeded inits. A single fixed random network leans by its
    context, so wherever probe and control contexts differ (last token, position, neighbours) it
    has a real excess of its own; its bootstrap interval over probes is right about that network
    and excluded zero at 30 of 90 (init, layer) cells in a 30-init measurement (4.5 expected by
    chance), and the excess of one init reproduced on an independent probe set. Over inits the
    expected excess is exactly zero (each unembedding column is independent of the residual and
    identically distributed), which is what the random-init control is for.
    """
    from babel_interp.analysis.working_language.logit_lens import (
        WorkingLanguageConfig,
        random_init_baseline,
    )
    from babel_interp.model import get_preset

    tok = _corpus_tokenizer(synth_corpus)
    cfg = WorkingLanguageConfig(n_per_pair=10, n_boot=200)
    probes = _synthetic_probes(synth_corpus, cfg, tok)
    base = random_init_baseline(
        get_preset("tiny"), tok, probes, cfg, seeds=RANDOM_INIT_SEEDS, progress=False
    )
    per_init = base.to_dataframe()
    assert base.seeds == list(RANDOM_INIT_SEEDS)
    n_layers = per_init["layer"].nunique()
    assert n_layers == get_preset("tiny").n_layers + 1
    assert (per_init["n_matched"] >= 100).all() and (per_init["n_random"] >= 100).all()
    assert (per_init["n_matched_same_token"] > per_init["n_matched"] / 2).all()
    level = 1.0 - 0.05 / (2 * n_layers)
    summary = base.summary(ci=level).set_index("layer")
    assert (summary["n_inits"] == len(RANDOM_INIT_SEEDS)).all()
    for site in ("matched", "random"):
        lo, hi = summary[f"excess_{site}_mean_lo"], summary[f"excess_{site}_mean_hi"]
        assert (lo < 0).all() and (hi > 0).all(), summary[[lo.name, hi.name]]


def test_control_rules_are_recorded_and_validated(synth_corpus, tmp_path):
    from babel_interp.analysis.working_language.probes import (
        CONTROL_MATCH,
        Probe,
        last_token_keys,
        load_probes_jsonl,
        save_probes_jsonl,
    )
    from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents

    tok = _corpus_tokenizer(synth_corpus)
    # Without a tokenizer the key is the last piece of the project's pre-tokenizer split; on
    # this project's tokenizers, at the start of every identifier (where a control can be), one
    # piece always goes with one last token.
    from babel_interp.analysis.working_language.logit_lens import WorkingLanguageConfig

    docs = SyntheticConfig(languages=("php",), docs_per_language=3, seed=11)
    groups = {}
    for doc in generate_documents(docs):
        by_token, by_piece = last_token_keys(doc.text, tok), last_token_keys(doc.text)
        for m in re.finditer(r"(?<![\w$])[A-Za-z_]", doc.text):
            groups.setdefault(by_piece(m.start()), set()).add(by_token(m.start()))
    assert len(groups) > 5 and all(len(v) == 1 for v in groups.values())
    assert last_token_keys("$x = strlen", tok)(0) is None
    with pytest.raises(ValueError, match="Probe.control_match"):
        Probe(prompt="$n = ", target="strlen", primary="len", control_match="nearest")
    with pytest.raises(ValueError, match="no control_prompt"):
        Probe(prompt="$n = ", target="strlen", primary="len", control_match="last_token")
    probes = _synthetic_probes(synth_corpus, WorkingLanguageConfig(n_per_pair=2), tok)
    assert {p.control_match for p in probes} <= set(CONTROL_MATCH)
    path = save_probes_jsonl(probes, tmp_path / "probes.jsonl")
    assert load_probes_jsonl(path) == probes
    # Probe files written before the field existed still load (rule unknown: None).
    old = tmp_path / "old.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    old.write_text(
        "".join(
            json.dumps({k: v for k, v in r.items() if k != "control_match"}) + "\n" for r in rows
        )
    )
    assert all(p.control_match is None for p in load_probes_jsonl(old))
    with pytest.raises(ValueError, match="control_match must be one of"):
        _synthetic_probes(synth_corpus, WorkingLanguageConfig(n_per_pair=2), tok, "nearest")


def test_positive_control_tiny_model_learns_the_php_builtins(synth_corpus, tmp_path):
    from babel_interp.analysis.working_language import logit_lens
    from babel_interp.model import load_model
    from babel_interp.runs import list_checkpoints
    from babel_interp.training import (
        CheckpointConfig,
        CheckpointSchedule,
        LRSchedule,
        OptimConfig,
        TrainConfig,
        train,
    )

    def phase(out, mixture, steps, init):
        train(
            TrainConfig(
                corpus=str(synth_corpus),
                out=str(out),
                preset="tiny",
                mixture=mixture,
                steps=steps,
                batch_size=16,
                seq_len=128,
                optim=OptimConfig(schedule=LRSchedule(lr=2e-3, warmup_steps=20)),
                eval_every=steps,
                eval_windows=4,
                checkpoints=CheckpointConfig(schedule=CheckpointSchedule(kind="log", n=2)),
                init_from=str(init) if init else None,
                device="cpu",
                progress=False,
            )
        )

    phase(tmp_path / "py", "python=1", 200, None)
    phase(tmp_path / "php", "php=1", 150, list_checkpoints(tmp_path / "py")[-1].path)
    cfg = logit_lens.WorkingLanguageConfig(primary="python", target="php", n_per_pair=5, n_boot=100)
    last = list_checkpoints(tmp_path / "php")[-1]
    model, _ = load_model(last.path)
    res = logit_lens.analyze_working_language(
        model,
        model.tokenizer,
        _synthetic_probes(synth_corpus, cfg),
        cfg,
        step=last.step,
        progress=False,
    )
    comp = res.competence()
    # Measured (this corpus, seed 0): top-5 0.45, top-1 0.117 on 60 PHP probes; a random-init
    # model scores ~0. Thresholds sit well below the measured values.
    assert comp["top5_acc"].iloc[-1] > 0.3
    assert comp["top1_acc"].iloc[-1] > 0.05
