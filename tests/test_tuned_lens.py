"""The tuned lens: identity at init, lower KL to the output after training, saved beside the
checkpoint, and compared with the logit lens in the working-language output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from babel_interp.analysis.working_language.logit_lens import (
    WorkingLanguageConfig,
    analyze_run,
    analyze_working_language,
)
from babel_interp.analysis.working_language.probes import build_probes
from babel_interp.analysis.working_language.tuned_lens import (
    TUNED_LENS_FILE,
    TunedLens,
    TunedLensConfig,
    lens_kl,
    load_or_train_tuned_lens,
    sample_windows,
    train_tuned_lens,
)
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts
from babel_interp.model import ModelConfig, build_model, resid_hook_names, save_model
from babel_interp.report.working_language_plots import plot_working_language_run
from babel_interp.runs import checkpoint_dirname

CFG = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=64)
FINAL = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tokenizer, a synthetic corpus directory (val split included) and a tiny model."""
    from babel_interp.corpus.shards import ShardWriter, write_manifest

    root = tmp_path_factory.mktemp("world")
    syn = SyntheticConfig(languages=("python", "php"), docs_per_language=12, seed=9)
    docs = list(generate_documents(syn))
    tok = train_on_texts([d.text for d in docs], TokenizerConfig(vocab_size=500), root / "tok")
    corpus = root / "corpus"
    tok.save_pretrained(corpus / "tokenizer")
    splits = {}
    for split in ("train", "val"):
        w = ShardWriter(corpus, split, ["python", "php"], len(tok), tok.eos_token_id)
        for d in docs:
            w.add(d.language, np.asarray(tok(d.text)["input_ids"]), len(d.text.encode()))
        splits[split] = w.close()
    info = {"vocab_size": len(tok), "eos_id": tok.eos_token_id, "hash": "test"}
    write_manifest(corpus, ["python", "php"], splits, info, synthetic=syn.to_dict())
    torch.manual_seed(0)
    model = build_model(CFG, tokenizer=tok)
    return tok, corpus, model


def test_untrained_lens_is_the_logit_lens(world):
    tok, _, model = world
    probes = build_probes("python", "php", n_per_pair=1, seed=0)[:4]
    lens = TunedLens(resid_hook_names(2, include_mid=True), CFG.d_model, FINAL)
    cfg = WorkingLanguageConfig(lens="both", include_mid=True, n_boot=20)
    res = analyze_working_language(model, tok, probes, cfg, tuned_lens=lens, progress=False)
    df = res.to_dataframe()
    logit = df[df["lens"] == "logit"].reset_index(drop=True)
    tuned = df[df["lens"] == "tuned"].reset_index(drop=True)
    for col in ("p_primary", "p_target", "entropy", "kl_to_final"):
        np.testing.assert_allclose(logit[col], tuned[col], rtol=1e-5, atol=1e-7)
    comp = res.lens_comparison()
    assert {"share_primary_logit", "share_primary_tuned", "top1_agreement"} <= set(comp)
    assert (comp["top1_agreement"] == 1.0).all()


def test_training_lowers_the_held_out_kl(world):
    _, corpus, model = world
    tokens = sample_windows(corpus, 48, 32, seed=1)
    assert tokens.shape == (48, 32)
    flags = [p.requires_grad for p in model.parameters()]
    cfg = TunedLensConfig(steps=40, lr=5e-3, batch_size=8, seq_len=32, n_windows=48, holdout=8)
    lens = train_tuned_lens(model, tokens, cfg, progress=False)
    assert [p.requires_grad for p in model.parameters()] == flags  # model untouched
    before, after = lens.meta["holdout_kl_logit"], lens.meta["holdout_kl_tuned"]
    assert set(before) == set(after) == {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"}
    for name in before:
        assert after[name] < before[name]
    assert lens.meta["train_kl_last"] < lens.meta["train_kl_first"]
    held = tokens[-8:]
    assert lens_kl(model, lens, held) == pytest.approx(after, rel=1e-5)


def test_save_load_round_trip_and_errors(tmp_path, world):
    lens = TunedLens(resid_hook_names(2), CFG.d_model, FINAL)
    with torch.no_grad():
        lens.weight.normal_()
        lens.bias.normal_()
    lens.meta = {"note": "x"}
    path = lens.save(tmp_path / TUNED_LENS_FILE)
    back = TunedLens.load(path)
    h = torch.randn(3, CFG.d_model)
    for name in lens.hook_names:
        torch.testing.assert_close(back.transform(h, name), lens.transform(h, name))
    assert torch.equal(back.transform(h, FINAL), h)
    assert back.meta == {"note": "x"}
    with pytest.raises(KeyError, match="include_mid"):
        back.transform(h, "blocks.0.hook_resid_mid")
    with pytest.raises(FileNotFoundError):
        TunedLens.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a tuned lens"):
        TunedLens.load(tmp_path / "other.safetensors")


def test_load_or_train_saves_beside_the_checkpoint(tmp_path, world, monkeypatch):
    _, corpus, model = world
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    cfg = WorkingLanguageConfig(tuned={"steps": 3, "n_windows": 16, "holdout": 4, "seq_len": 32})
    lens = load_or_train_tuned_lens(model, ckpt, corpus, cfg, progress=False)
    assert (ckpt / TUNED_LENS_FILE).is_file()
    assert lens.meta["config"]["steps"] == 3
    import babel_interp.analysis.working_language.tuned_lens as tl

    def refuse(*a, **k):
        raise AssertionError("retrained although a lens was saved")

    monkeypatch.setattr(tl, "train_tuned_lens", refuse)
    again = load_or_train_tuned_lens(model, ckpt, corpus, cfg, progress=False)
    torch.testing.assert_close(again.weight, lens.weight)
    # A lens that lacks the layers asked for (hook_resid_mid) is retrained, not misused.
    with pytest.raises(AssertionError, match="retrained"):
        load_or_train_tuned_lens(model, ckpt, corpus, {"include_mid": True}, progress=False)


def test_config_validation():
    assert TunedLensConfig.from_dict(TunedLensConfig(steps=5).to_dict()) == TunedLensConfig(steps=5)
    for kwargs, name in (
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"holdout": 600}, "holdout"),
        ({"seq_len": 0}, "seq_len"),
    ):
        with pytest.raises(ValueError, match=f"TunedLensConfig.{name}"):
            TunedLensConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown field"):
        TunedLensConfig.from_dict({"epochs": 3})


def test_run_with_both_lenses_writes_a_comparison(tmp_path, world):
    tok, corpus, model = world
    run = tmp_path / "run"
    d = run / "checkpoints" / checkpoint_dirname(4)
    save_model(model, d, tokenizer=tok)
    state = {"step": 4, "tokens_seen": {"php": 400}, "total_tokens": 800}
    (d / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    (run / "run_config.json").write_text(json.dumps({"corpus": str(corpus)}), encoding="utf-8")
    tuned = {"steps": 5, "n_windows": 16, "holdout": 4, "seq_len": 32}
    cfg = WorkingLanguageConfig(lens="both", n_per_pair=1, n_boot=20, tuned=tuned)
    res = analyze_run(run, cfg, progress=False)
    plot_working_language_run(res, run / "figures")
    assert (d / TUNED_LENS_FILE).is_file()
    out = run / "analysis" / "working_language"
    comp = pd.read_csv(out / "lens_comparison.csv")
    assert len(comp) == 3 and {"kl_to_final_logit", "kl_to_final_tuned"} <= set(comp)
    assert set(res.records["lens"]) == {"logit", "tuned"}
    figs = {p.name for p in (run / "figures").glob("*.png")}
    assert {"working_language_share_tuned.png", "working_language_share_logit.png"} <= figs
