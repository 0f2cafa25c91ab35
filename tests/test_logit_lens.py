"""The working-language analyzer: exactness against a full cache, planted signals, controls,
competence gate, bounded memory, outputs, and the bootstrap helpers it uses."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from babel_interp.analysis.protocol import AnalysisResult
from babel_interp.analysis.stats import (
    bootstrap_ci,
    grouped_bootstrap_ci,
    paired_bootstrap_ci,
    t_cdf,
    t_interval,
    t_prediction_interval,
    t_quantile,
)
from babel_interp.analysis.working_language.logit_lens import (
    WorkingLanguageConfig,
    WorkingLanguageResult,
    aggregate_records,
    analyze_run,
    analyze_working_language,
    collect_last_residuals,
    read_records,
    select_hooks,
    stream_vocab_stats,
    synthetic_world,
    token_sets_for,
)
from babel_interp.analysis.working_language.probes import Probe, build_probes
from babel_interp.analysis.working_language.token_sets import build_token_sets
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts
from babel_interp.model import (
    ModelConfig,
    build_model,
    load_into,
    resid_hook_names,
    save_model,
    tl_major_version,
    unembed_resid,
)
from babel_interp.report.working_language_plots import plot_working_language_run

TINY = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=96)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    cfg = SyntheticConfig(languages=("python", "php"), docs_per_language=40, seed=5)
    texts = [d.text for d in generate_documents(cfg)]
    return train_on_texts(texts, TokenizerConfig(vocab_size=600), tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def probes():
    return build_probes("python", "php", n_per_pair=2, seed=0)


@pytest.fixture(scope="module")
def tiny(tok):
    torch.manual_seed(0)
    return build_model(TINY, tokenizer=tok)


# ------------------------------------------------------------------------------------------------
# Exactness against the naive computation
# ------------------------------------------------------------------------------------------------


def _split(tok, prompt, cont):
    """Tokens of ``prompt + cont`` whose decoded text ends within ``prompt``, and the next one
    (an independent reference for ASCII text: decoded lengths instead of offset mappings)."""
    ids = tok(prompt + cont, add_special_tokens=False)["input_ids"]
    k = 0
    while k < len(ids) and len(tok.decode(ids[: k + 1])) <= len(prompt):
        k += 1
    return ids[:k], (ids[k] if k < len(ids) and cont else None)


def _direct(model, tok, prompt, hooks, sets, n_ctx, cont=""):
    """Full run_with_cache (no names_filter), full softmax: the reference computation."""
    ids, first = _split(tok, prompt, cont)
    ids = [tok.bos_token_id] + ids[-(n_ctx - 1) :]
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([ids]))
        logp = {h: torch.log_softmax(unembed_resid(model, cache[h])[0, -1], -1) for h in hooks}
    final = logp[hooks[-1]]
    out = {}
    for h in hooks:
        lp = logp[h]
        p = lp.exp()
        out[h] = dict(
            p_primary=float(p[list(sets.primary_ids)].sum()),
            p_target=float(p[list(sets.target_ids)].sum()),
            entropy=float(-(p * lp).sum()),
            kl_to_final=float((final.exp() * (final - lp)).sum()),
            top1_id=int(lp.argmax()),
            p_first=float(p[first]) if first is not None else math.nan,
            first=first,
        )
    return out


@pytest.mark.parametrize("include_mid", [False, True])
def test_masses_equal_a_full_cache_computation(tiny, tok, probes, include_mid):
    cfg = WorkingLanguageConfig(
        include_mid=include_mid, batch_size=5, vocab_chunk=37, n_boot=20, prepend="bos"
    )
    res = analyze_working_language(tiny, tok, probes[:8], cfg, progress=False)
    df = res.to_dataframe()
    hooks = select_hooks(TINY.n_layers, cfg)
    assert list(res.layers) == hooks
    report = token_sets_for(tok, probes[:8], cfg)
    n_checked = 0
    n_kept = 0
    for i, p in enumerate(probes[:8]):
        sets = report.get(p.primary, p.target)
        if sets is None:  # a pair this small tokenizer cannot probe
            continue
        n_kept += 1
        for site, prompt, cont in p.sites():
            ref = _direct(tiny, tok, prompt, hooks, sets, TINY.n_ctx, cont)
            rows = df[(df["probe"] == i) & (df["site"] == site)].set_index("layer")
            for h in hooks:
                got = rows.loc[h]
                for key in ("p_primary", "p_target", "entropy", "kl_to_final"):
                    assert got[key] == pytest.approx(ref[h][key], rel=2e-4, abs=1e-6), (key, h)
                assert got["log_ratio"] == pytest.approx(
                    math.log(ref[h]["p_primary"] / ref[h]["p_target"]), abs=1e-4
                )
                assert int(got["top1_id"]) == ref[h]["top1_id"]
                if site == "probe":
                    # The identifier's first token (it may have left the set: "str", "s").
                    assert p.target.startswith(tok.decode([ref[h]["first"]]).lstrip(" "))
                    assert got["p_first"] == pytest.approx(ref[h]["p_first"], rel=2e-4, abs=1e-7)
                else:
                    assert math.isnan(got["p_first"])
                n_checked += 1
    assert n_kept > 0 and n_checked == n_kept * 3 * len(hooks)


def test_batching_and_chunking_do_not_change_results(tiny, tok, probes):
    base = WorkingLanguageConfig(batch_size=1, vocab_chunk=100_000, n_boot=10)
    a = analyze_working_language(tiny, tok, probes[:6], base, progress=False).records
    cfg = WorkingLanguageConfig(batch_size=4, vocab_chunk=13, n_boot=10)
    b = analyze_working_language(tiny, tok, probes[:6], cfg, progress=False).records
    for col in ("p_primary", "p_target", "entropy", "kl_to_final", "log_ratio"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-4, atol=2e-6)
    assert (a["top1_id"] == b["top1_id"]).all()


def test_stream_vocab_stats_matches_softmax():
    torch.manual_seed(1)
    normed = torch.randn(3, 4, 8)
    w, b = torch.randn(8, 50), torch.randn(50)
    vs = stream_vocab_stats(normed, w, b, chunk=7)
    logits = normed @ w + b
    lp = torch.log_softmax(logits, -1)
    torch.testing.assert_close(vs.log_z, torch.logsumexp(logits, -1))
    torch.testing.assert_close(vs.entropy, -(lp.exp() * lp).sum(-1))
    kl = (lp[-1].exp()[None] * (lp[-1][None] - lp)).sum(-1)
    torch.testing.assert_close(vs.kl_to_final, kl.clamp_min(0), atol=1e-5, rtol=1e-4)
    assert torch.equal(vs.top_ids, logits.topk(5, -1).indices)


# ------------------------------------------------------------------------------------------------
# Planted signals: hand-built weights
# ------------------------------------------------------------------------------------------------

PLANT = ModelConfig(n_layers=3, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_ctx=96)


def _unit(i: int, j: int, d: int = 16) -> torch.Tensor:
    # Zero-mean directions pass a LayerNorm's centring unchanged.
    v = torch.zeros(d)
    v[i], v[j] = 1.0, -1.0
    return v / math.sqrt(2)


U_A, U_P, U_T, U_TRIG = _unit(0, 1), _unit(2, 3), _unit(4, 5), _unit(6, 7)


def _planted_model(tok, report, first_ids=(), trigger_ids=()):
    """A 3-layer model whose middle residual points at the primary token sets and whose output
    points at the target sets.

    Attention is off. Without triggers, block 0's MLP bias writes the primary direction and block
    2's cancels it and writes the target direction. With ``trigger_ids``, block 0 writes the
    primary direction only when the last token is a trigger (a gated MLP neuron reading the
    trigger's embedding), so probes ending in a trigger lean primary and controls do not.
    """
    d, h, dh, f, n_ctx = PLANT.d_model, PLANT.n_heads, PLANT.d_head, PLANT.d_mlp, PLANT.n_ctx
    vocab = len(tok)
    z = torch.zeros
    st = {
        "embed.W_E": U_A.repeat(vocab, 1),
        "pos_embed.W_pos": z(n_ctx, d),
        "ln_final.w": torch.ones(d),
        "ln_final.b": z(d),
        "unembed.W_U": z(d, vocab),
        "unembed.b_U": z(vocab),
    }
    for layer in range(PLANT.n_layers):
        p = f"blocks.{layer}."
        for name, shape in (
            ("ln1.w", None), ("ln2.w", None), ("ln1.b", (d,)), ("ln2.b", (d,)),
            ("attn.W_Q", (h, d, dh)), ("attn.W_K", (h, d, dh)), ("attn.W_V", (h, d, dh)),
            ("attn.W_O", (h, dh, d)), ("attn.b_Q", (h, dh)), ("attn.b_K", (h, dh)),
            ("attn.b_V", (h, dh)), ("attn.b_O", (d,)), ("mlp.W_in", (d, f)), ("mlp.b_in", (f,)),
            ("mlp.W_out", (f, d)), ("mlp.b_out", (d,)),
        ):  # fmt: skip
            st[p + name] = torch.ones(d) if shape is None else z(*shape)
    for s in report.pairs.values():
        st["unembed.W_U"][:, list(s.primary_ids)] = 5 * U_P[:, None]
        st["unembed.W_U"][:, list(s.target_ids)] = 5 * U_T[:, None]
    for i in first_ids:
        st["unembed.W_U"][:, i] = 6 * U_T  # the identifier's own first token wins at the output
    if trigger_ids:
        st["embed.W_E"][list(trigger_ids)] += 2 * U_TRIG
        st["blocks.0.mlp.W_in"][:, 0] = 4 * U_TRIG
        st["blocks.0.mlp.W_out"][0] = 0.3 * U_P
        st["blocks.2.mlp.b_out"] = 12 * U_T
    else:
        st["blocks.0.mlp.b_out"] = 3 * U_P
        st["blocks.2.mlp.b_out"] = -3 * U_P + 3 * U_T
    model = build_model(PLANT.with_vocab(vocab), tokenizer=tok)
    if tl_major_version() >= 4:
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        st = convert_tl_checkpoint(st, model.cfg)
    load_into(model, st)
    return model


def _first_ids(tok, probes):
    return {_split(tok, p.prompt, p.target)[1] for p in probes}


def test_planted_middle_layers_favour_primary_and_output_target(tok, probes):
    sub = [p for p in probes if p.pair in {("len", "strlen"), ("upper", "strtoupper")}]
    cfg = WorkingLanguageConfig(n_boot=50, competence_metric="top5", competence_threshold=0.5)
    report = token_sets_for(tok, sub, cfg)
    model = _planted_model(tok, report, first_ids=_first_ids(tok, sub))
    res = analyze_working_language(model, tok, sub, cfg, progress=False)
    agg = res.aggregate().set_index("layer")
    # Layer 0 reads the embedding alone, which points at neither set.
    assert abs(agg.loc["blocks.0.hook_resid_pre", "log_ratio"]) < 2.0
    for layer in ("blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"):
        assert agg.loc[layer, "share_primary"] == 1.0
        assert agg.loc[layer, "log_ratio_lo"] > 5.0
        assert agg.loc[layer, "p_target"] < 1e-3 and agg.loc[layer, "top1_target"] == 0.0
    out = agg.loc["blocks.2.hook_resid_post"]
    assert out["share_primary"] == 0.0 and out["log_ratio_hi"] < -5.0
    # The output's top-1 is the identifier's first token: " str" for strlen, which is Python's
    # str and so in neither set.
    assert out["top1_primary"] == 0.0
    # The context-free model leans the same way at controls: no excess anywhere.
    assert np.allclose(agg["excess_matched"], 0.0, atol=1e-4)
    comp = res.competence().iloc[0]
    assert comp["top5_acc"] == 1.0 and comp["top1_acc"] >= 0.5 and comp["competent"]
    assert agg["competent"].all()


def test_planted_probe_specific_lean_shows_as_excess_over_controls(tok):
    hand = [
        Probe(
            prompt=f"<?php\n$n{i} = ",
            target="strlen",
            primary="len",
            concept="length",
            target_language="php",
            primary_language="python",
            control_prompt=f"<?php\n$m{i} = helper($n{i}) + ",
            control_identifier="helper",
            random_prompt=f"<?php\n$m{i} = helper(",
            random_next=f"$n{i}",
        )
        for i in range(12)
    ]
    triggers = {_split(tok, p.prompt, p.target)[0][-1] for p in hand}
    ends = {_split(tok, p.control_prompt, "helper")[0][-1] for p in hand}
    ends |= {_split(tok, p.random_prompt, p.random_next)[0][-1] for p in hand}
    assert not triggers & ends
    report = token_sets_for(tok, hand, WorkingLanguageConfig())
    model = _planted_model(tok, report, trigger_ids=triggers)
    res = analyze_working_language(
        model, tok, hand, WorkingLanguageConfig(n_boot=200), progress=False
    )
    agg = res.aggregate().set_index("layer")
    for layer in ("blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"):
        assert agg.loc[layer, "excess_matched_lo"] > 1.0
        assert agg.loc[layer, "excess_random_lo"] > 1.0
        # Controls lean as the embedding alone does: the base rate of the two sets' sizes.
        base = agg.loc["blocks.0.hook_resid_pre", "share_primary"]
        assert agg.loc[layer, "matched_share_primary"] == base
    assert agg.loc["blocks.0.hook_resid_pre", "excess_matched"] == pytest.approx(0.0, abs=1e-5)
    assert agg.loc["blocks.2.hook_resid_post", "share_primary"] == 0.0


def test_random_model_fails_the_competence_gate(tiny, tok, probes):
    res = analyze_working_language(
        tiny, tok, probes, WorkingLanguageConfig(n_boot=50), progress=False
    )
    comp = res.competence()
    assert len(comp) == 1 and not comp["competent"].iloc[0]
    assert comp["top1_acc"].iloc[0] < 0.1
    assert not res.aggregate()["competent"].any()
    # Short tokens: their share of each set's mass is reported and lies in [0, 1].
    df = res.to_dataframe()
    assert df["short_share_target"].between(0, 1).all()
    assert set(df["top1_lang"]) <= {"primary", "target", "other"}


# ------------------------------------------------------------------------------------------------
# Any hooked model; bounded memory
# ------------------------------------------------------------------------------------------------


def _user_model(tok):
    if tl_major_version() >= 4:
        cfg = ModelConfig(n_layers=2, d_model=24, n_heads=3, d_head=8, d_mlp=48, n_ctx=64)
        return build_model(cfg, tokenizer=tok)
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=24,
        n_heads=3,
        d_head=8,
        d_mlp=48,
        n_ctx=64,
        d_vocab=len(tok),
        act_fn="gelu_new",
        normalization_type="LNPre",
        seed=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg, tokenizer=tok)


def test_works_on_a_users_hooked_transformer(tmp_path, tok, probes):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path / "user_tok")
    user_tok = AutoTokenizer.from_pretrained(str(tmp_path / "user_tok"))
    model = _user_model(user_tok)
    cfg = WorkingLanguageConfig(n_boot=20, vocab_chunk=50, prepend="bos")
    res = analyze_working_language(model, user_tok, probes[:3], cfg, progress=False)
    hooks = select_hooks(2, cfg)
    df = res.to_dataframe()
    p = probes[0]
    sets = token_sets_for(user_tok, [p], cfg).get(p.primary, p.target)
    ref = _direct(model, user_tok, p.prompt, hooks, sets, 64)
    rows = df[(df["probe"] == 0) & (df["site"] == "probe")].set_index("layer")
    for h in hooks:
        assert rows.loc[h, "p_target"] == pytest.approx(ref[h]["p_target"], rel=2e-4)


def test_capture_keeps_one_position_and_stops_before_the_head(tiny):
    fired = []
    handle_name = "ln_final.hook_normalized"
    hooks = resid_hook_names(2, include_mid=True)
    tokens = torch.randint(0, 100, (3, 20))
    last = torch.tensor([19, 4, 11])
    with tiny.hooks(fwd_hooks=[(handle_name, lambda a, hook: fired.append(a.shape))]):
        out = collect_last_residuals(tiny, tokens, last, hooks)
    assert fired == []  # the forward pass stopped at the last residual hook
    assert out.shape == (len(hooks), 3, TINY.d_model)
    _, cache = tiny.run_with_cache(tokens)
    for j, h in enumerate(hooks):
        torch.testing.assert_close(out[j], cache[h][torch.arange(3), last])
    # The capture hooks are gone: a later forward pass is unaffected and fires the head again.
    with tiny.hooks(fwd_hooks=[(handle_name, lambda a, hook: fired.append(a.shape))]):
        tiny(tokens)
    assert len(fired) == 1


# ------------------------------------------------------------------------------------------------
# Config, outputs, runs and the CLI
# ------------------------------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = WorkingLanguageConfig(layers=["blocks.0.hook_resid_pre"], lens="both", seed=3)
    assert WorkingLanguageConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.lenses == ["logit", "tuned"]
    assert select_hooks(2, cfg) == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
    for kwargs, field in (
        ({"lens": "magic"}, "lens"),
        ({"batch_size": 0}, "batch_size"),
        ({"layers": ["blocks.0.attn.hook_z"]}, "layers"),
        ({"target": "python"}, "target"),
        ({"ci": 1.5}, "ci"),
        ({"competence_threshold": 2.0}, "competence_threshold"),
        ({"prepend": "cls"}, "prepend"),
        ({"control_match": "nearest"}, "control_match"),
        ({"n_random_init": -1}, "n_random_init"),
    ):
        with pytest.raises(ValueError, match=f"WorkingLanguageConfig.{field}"):
            WorkingLanguageConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown field"):
        WorkingLanguageConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="do not exist"):
        select_hooks(2, WorkingLanguageConfig(layers=["blocks.5.hook_resid_pre"]))


def test_bad_inputs_are_clear(tiny, tok, probes):
    with pytest.raises(ValueError, match="no probes"):
        analyze_working_language(tiny, tok, [], progress=False)
    with pytest.raises(ValueError, match="needs a tuned lens"):
        analyze_working_language(tiny, tok, probes[:1], WorkingLanguageConfig(lens="tuned"))
    with pytest.raises(ValueError, match="language pair"):
        analyze_working_language(tiny, tok, probes[:1], WorkingLanguageConfig(target="go"))
    small = build_model(
        ModelConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, d_mlp=8, n_ctx=32, d_vocab=50)
    )
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        sets = build_token_sets(tok, [(probes[0].concept, probes[0].primary, probes[0].target)])
        analyze_working_language(small, tok, probes[:1], token_sets=sets, progress=False)
    collapsed = Probe("$x = ", "printf", "print", target_language="php", primary_language="python")
    with pytest.raises(ValueError, match="every probe's pair was dropped"):
        analyze_working_language(tiny, tok, [collapsed], progress=False)
    # A dropped pair among kept ones is skipped and reported, not fatal.
    res = analyze_working_language(tiny, tok, [collapsed, probes[0]], progress=False)
    assert res.skipped[0]["probe"] == 0 and res.dropped_pairs[0].target == "printf"
    df = res.to_dataframe()
    assert set(df["target"]) == {probes[0].target}
    assert set(df["probe"]) == {1}  # indices refer to the list passed in


def _texts(frame, side):
    return {t[1:] if t.startswith(" ") else t for t in frame.loc[frame["side"] == side, "token"]}


def test_default_sets_hold_no_identifier_of_the_other_language(tiny, tok, probes):
    """With the corpus tokenizer, PHP's strlen set holds no Python built-in (``str``) and no
    Python set a PHP one; the earlier sets stay one flag away."""
    from babel_interp.languages import get_language

    python, php = get_language("python"), get_language("php")
    python_ids = set(python.builtins.values()) | set(python.keywords)
    php_ids = set(php.builtins.values()) | set(php.keywords)
    sub = [
        p
        for p in probes
        if p.pair in {("len", "strlen"), ("len", "count"), ("lower", "strtolower")}
    ]
    cfg = WorkingLanguageConfig(n_boot=10)
    res = analyze_working_language(tiny, tok, sub, cfg, progress=False)
    sets = res.token_sets
    strlen = sets[sets["target"] == "strlen"]
    assert _texts(strlen, "target") and not _texts(strlen, "target") & (python_ids | {"s"})
    for pair, rows in sets.groupby(["primary", "target"]):
        assert not _texts(rows, "target") & python_ids, pair
        assert not _texts(rows, "primary") & php_ids, pair
        assert all(len(t) >= 2 for t in _texts(rows, "target") | _texts(rows, "primary")), pair
    # The dropped table names each removal with its reason.
    dropped = res.dropped_tokens
    row = dropped[(dropped["target"] == "strlen") & (dropped["text"] == "str")].iloc[0]
    assert (row["side"], row["reason"]) == ("target", "other_builtin")
    assert "python built-in str" in row["detail"]
    old = analyze_working_language(
        tiny, tok, sub, cfg.replace(drop_cross_language_tokens=False), progress=False
    )
    assert "str" in _texts(old.token_sets[old.token_sets["target"] == "strlen"], "target")
    assert set(old.dropped_tokens["reason"]) <= {"shared"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_save_and_read_back(tmp_path, tiny, tok, probes, fmt):
    res = analyze_working_language(
        tiny, tok, probes[:4], WorkingLanguageConfig(n_boot=20), progress=False
    )
    # Token strings that a CSV reader would turn into missing values must survive.
    res.records.loc[0, "top1_token"] = "nan"
    res.records.loc[1, "top1_token"] = ""
    paths = res.save(tmp_path, fmt)
    assert isinstance(res, AnalysisResult)
    back = read_records(tmp_path / f"records.{fmt}")
    pd.testing.assert_frame_equal(
        back.reset_index(drop=True), res.records, check_dtype=False, check_exact=False, rtol=1e-9
    )
    names = ("aggregate.csv", "competence.csv", "token_sets.csv", "dropped_pairs.csv")
    for name in names + ("dropped_tokens.csv",):
        assert tmp_path / name in paths and (tmp_path / name).is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    counts = summary["dropped_tokens"]
    assert counts["total"] == len(res.dropped_tokens) > 0
    assert (
        counts["by_reason"]["other_builtin"] > 0
        and sum(counts["by_reason"].values()) == (counts["total"])
    )
    assert tmp_path / f"records.{fmt}" in paths and tmp_path / "summary.json" in paths
    assert all(p.is_file() for p in paths)
    assert not list(tmp_path.glob(".*.tmp"))
    # load reads back what save wrote: the same records, tables, config and notes.
    loaded = WorkingLanguageResult.load(tmp_path)
    pd.testing.assert_frame_equal(
        loaded.to_dataframe(), res.to_dataframe(), check_dtype=False, check_exact=False, rtol=1e-9
    )
    assert loaded.config == res.config
    assert (loaded.skipped, loaded.coverage_issues) == (res.skipped, res.coverage_issues)
    assert loaded.dropped_pairs == res.dropped_pairs
    pd.testing.assert_frame_equal(loaded.token_sets, res.token_sets, check_dtype=False)
    pd.testing.assert_frame_equal(
        loaded.dropped_pairs_frame(), res.dropped_pairs_frame(), check_dtype=False
    )
    pd.testing.assert_frame_equal(loaded.dropped_tokens, res.dropped_tokens, check_dtype=False)
    for table in ("aggregate", "competence"):
        pd.testing.assert_frame_equal(
            getattr(loaded, table)(), getattr(res, table)(), check_dtype=False, rtol=1e-9
        )
    assert loaded.random_init is None
    with pytest.raises(FileNotFoundError, match="no saved working-language result"):
        WorkingLanguageResult.load(tmp_path / "elsewhere")


def test_pair_level_intervals_are_wider(tiny, tok, probes):
    res = analyze_working_language(
        tiny, tok, probes, WorkingLanguageConfig(n_boot=300, ci_unit="probe"), progress=False
    )
    by_probe = res.aggregate()
    by_pair = aggregate_records(res.records, WorkingLanguageConfig(n_boot=300))
    pd.testing.assert_series_equal(by_probe["log_ratio"], by_pair["log_ratio"])
    wide = (by_pair["log_ratio_hi"] - by_pair["log_ratio_lo"]).mean()
    narrow = (by_probe["log_ratio_hi"] - by_probe["log_ratio_lo"]).mean()
    assert wide > narrow


def _make_run(root, steps=(0, 10)):
    """A run directory over a synthetic corpus made by the corpus builder, with one random
    checkpoint per step (using the corpus's tokenizer)."""
    from babel_interp.corpus.build import build_corpus, synthetic_corpus_config
    from babel_interp.corpus.shards import CorpusReader
    from babel_interp.model import prepare_tokenizer
    from babel_interp.runs import checkpoint_dirname

    corpus = root / "corpus"
    build_corpus(
        synthetic_corpus_config(
            corpus, languages=("python", "php"), docs_per_language=12, vocab_size=500,
            progress=False,
        )
    )  # fmt: skip
    tok = prepare_tokenizer(CorpusReader(corpus).tokenizer_dir)
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"corpus": str(corpus)}), encoding="utf-8")
    for k, step in enumerate(steps):
        torch.manual_seed(k)
        cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=96, seed=k)
        model = build_model(cfg, tokenizer=tok)
        d = run / "checkpoints" / checkpoint_dirname(step)
        save_model(model, d, tokenizer=tok)
        state = {"step": step, "tokens_seen": {"php": 100 * step}, "total_tokens": 200 * step}
        (d / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    return run


def test_synthetic_world_is_read_from_either_manifest_form():
    world = SyntheticConfig(languages=("python", "php"), seed=4).to_dict()
    assert synthetic_world({"synthetic": world}, "php") == world
    assert synthetic_world({"synthetic": {"config": world}}, "php") == world
    assert synthetic_world({"synthetic": world}, "go") is None
    built = {
        "build": {
            "config": {"sources": [{"kind": "local"}, {"kind": "synthetic", "options": world}]}
        }
    }
    assert synthetic_world(built, "php") == world
    assert synthetic_world({"build": {"config": {"sources": [{"kind": "local"}]}}}, "php") is None


def test_analyze_run_writes_tables_and_figures_and_resumes(tmp_path, monkeypatch):
    run = _make_run(tmp_path)
    cfg = WorkingLanguageConfig(n_per_pair=2, n_boot=30, batch_size=8)
    res = analyze_run(run, cfg, progress=False)
    assert not (run / "figures").exists()  # the analyzer computes; the report draws
    drawn = plot_working_language_run(res, run / "figures")
    out = run / "analysis" / "working_language"
    for name in (
        "records.csv",
        "aggregate.csv",
        "competence.csv",
        "token_sets.csv",
        "probes.jsonl",
    ):
        assert (out / name).is_file(), name
    assert (res.records["doc_id"].str.startswith("synth-")).all()  # synthetic probes
    agg = pd.read_csv(out / "aggregate.csv")
    assert sorted(agg["step"].unique()) == [0, 10]
    assert set(agg["target_tokens"]) == {0, 1000}
    figs = sorted(p.name for p in (run / "figures").glob("working_language_*.png"))
    assert figs == [
        "working_language_competence.png",
        "working_language_depth_logit.png",
        "working_language_excess_logit.png",
        "working_language_share_logit.png",
    ]
    assert all((run / "figures" / f).read_bytes()[:4] == b"\x89PNG" for f in figs)
    assert sorted(p.name for p in drawn) == figs
    # The saved result draws the same figures.
    again_drawn = plot_working_language_run(out, tmp_path / "from_saved")
    assert sorted(p.name for p in again_drawn) == figs
    # A rerun with the same config reuses every finished checkpoint: no model is loaded.
    import babel_interp.model

    def refuse(*args, **kwargs):
        raise AssertionError("a finished checkpoint was recomputed")

    monkeypatch.setattr(babel_interp.model, "load_model", refuse)
    again = analyze_run(run, cfg, progress=False)
    pd.testing.assert_frame_equal(again.records, res.records, check_dtype=False)
    with pytest.raises(ValueError, match="no checkpoint at step"):
        analyze_run(run, cfg, checkpoints=[5], progress=False)


def test_analyze_run_measures_random_inits_of_the_checkpoint_architecture(tmp_path):
    run = _make_run(tmp_path, steps=(4,))
    cfg = WorkingLanguageConfig(n_per_pair=1, n_boot=20, n_random_init=2)
    res = analyze_run(run, cfg, progress=False)
    out = run / "analysis" / "working_language"
    per_init = pd.read_csv(out / "random_init.csv")
    summary = pd.read_csv(out / "random_init_summary.csv")
    assert sorted(per_init["init_seed"].unique()) == [0, 1] == res.random_init.seeds
    assert list(summary["layer"]) == res.layers and (summary["n_inits"] == 2).all()
    # The checkpoint itself is a seed-0 init of the same architecture: its records and the
    # seed-0 baseline's summaries agree exactly.
    agg = res.aggregate().set_index("layer")
    seed0 = per_init[per_init["init_seed"] == 0].set_index("layer")
    np.testing.assert_allclose(seed0["excess_matched"], agg.loc[seed0.index, "excess_matched"])
    row = summary.iloc[0]
    x = per_init[per_init["layer"] == row["layer"]]["excess_matched"].to_numpy()
    assert row["excess_matched_mean"] == pytest.approx(x.mean())
    assert row["excess_matched_band_hi"] - row["excess_matched_band_lo"] > (
        row["excess_matched_mean_hi"] - row["excess_matched_mean_lo"]
    )
    loaded = WorkingLanguageResult.load(out)
    pd.testing.assert_frame_equal(loaded.random_init.to_dataframe(), per_init)
    pd.testing.assert_frame_equal(loaded.random_init.summary(), summary, check_dtype=False)
    # The baseline does not change what the records depend on: the step cache is reused.
    plain = WorkingLanguageConfig(n_per_pair=1, n_boot=20)
    again = analyze_run(run, plain, progress=False)
    pd.testing.assert_frame_equal(again.records, res.records, check_dtype=False)
    assert again.random_init is None
    # The earlier baseline's tables stay on disk, but they are not part of the new result.
    assert (out / "random_init.csv").is_file()
    assert WorkingLanguageResult.load(out).random_init is None


def test_cli_working_language(tmp_path, capsys):
    from babel_interp.cli import main

    run = _make_run(tmp_path, steps=(3,))
    argv = ["analyze", "working-language", "--run", str(run), "--target", "php"]
    argv += ["--n-per-pair", "1", "--n-boot", "20", "--quiet", "--no-figures"]
    assert main(argv + ["--format", "parquet", "--checkpoints", "3"]) == 0
    printed = capsys.readouterr().out
    assert "analysis written to" in printed and "competent" in printed
    assert (run / "analysis" / "working_language" / "records.parquet").is_file()
    assert main(argv + ["--checkpoints", "7"]) == 1
    assert "no checkpoint at step(s) [7]" in capsys.readouterr().err
    assert main(argv + ["--checkpoints", "x"]) == 1
    # The control rule and the random-init baseline from the command line.
    assert main(argv + ["--control-match", "document", "--random-inits", "2", "--no-resume"]) == 0
    wl = run / "analysis" / "working_language"
    summary = json.loads((wl / "summary.json").read_text())
    assert summary["config"]["drop_cross_language_tokens"] is True
    assert summary["dropped_tokens"]["by_reason"]["other_builtin"] > 0
    # The earlier token sets, one flag away.
    keep = ["--keep-cross-language-tokens", "--control-match", "document", "--checkpoints", "3"]
    assert main(argv + keep) == 0
    summary = json.loads((wl / "summary.json").read_text())
    assert summary["config"]["drop_cross_language_tokens"] is False
    assert set(summary["dropped_tokens"]["by_reason"]) <= {"shared"}
    assert sorted(pd.read_csv(wl / "random_init.csv")["init_seed"].unique()) == [0, 1]
    probes = [json.loads(line) for line in (wl / "probes.jsonl").read_text().splitlines()]
    assert {p["control_match"] for p in probes} == {"document"}
    # Without --no-figures the command draws the figures after the analysis.
    assert not list((run / "figures").glob("working_language_*.png"))
    assert main(argv[:-1] + ["--control-match", "document", "--checkpoints", "3"]) == 0
    assert (run / "figures" / "working_language_competence.png").is_file()


# ------------------------------------------------------------------------------------------------
# Bootstrap helpers
# ------------------------------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_mean_and_handles_nan():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.0, size=400)
    r = bootstrap_ci(np.append(x, np.nan), n_boot=500)
    assert r.n == 400 and r.estimate == pytest.approx(x.mean())
    assert r.low < 2.0 < r.high and r.high - r.low < 0.4
    assert bootstrap_ci(x, n_boot=200, seed=1) == bootstrap_ci(x, n_boot=200, seed=1)
    median = bootstrap_ci(x, stat=np.median, n_boot=200)
    assert median.low < np.median(x) < median.high
    # A statistic without axis= is applied one resample at a time.
    trimmed = bootstrap_ci(x, stat=lambda v: float(np.sort(v)[10:-10].mean()), n_boot=100)
    assert trimmed.low < 2.0 < trimmed.high
    empty = bootstrap_ci([np.nan])
    assert empty.n == 0 and math.isnan(empty.estimate)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(x, n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        bootstrap_ci(x, ci=1.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        bootstrap_ci(np.zeros((2, 2)))


def test_paired_bootstrap_removes_shared_variance():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 5, size=200)
    x, y = base + 0.3 + rng.normal(0, 0.1, 200), base + rng.normal(0, 0.1, 200)
    paired = paired_bootstrap_ci(x, y, n_boot=500)
    assert paired.estimate == pytest.approx(0.3, abs=0.05) and paired.excludes_zero
    y_nan = y.copy()
    y_nan[:50] = np.nan
    assert paired_bootstrap_ci(x, y_nan, n_boot=50).n == 150
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_ci(x, y[:10])


def test_grouped_bootstrap_is_wider_for_clustered_data():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(8), 25)
    values = rng.normal(0, 1, 8)[groups] + rng.normal(0, 0.1, groups.size)
    iid = bootstrap_ci(values, n_boot=500)
    clustered = grouped_bootstrap_ci(values, groups, n_boot=500)
    assert clustered.estimate == pytest.approx(iid.estimate)
    assert clustered.high - clustered.low > 3 * (iid.high - iid.low)
    generic = grouped_bootstrap_ci(values, groups, stat=np.median, n_boot=100)
    assert generic.low <= np.median(values) <= generic.high
    with pytest.raises(ValueError, match="parallel"):
        grouped_bootstrap_ci(values, groups[:5])


def test_t_quantiles_and_intervals_match_tables():
    # Reference values from standard t tables.
    for p, df, ref in (
        (0.975, 1, 12.7062047),
        (0.975, 4, 2.7764451),
        (0.975, 9, 2.2621572),
        (0.995, 29, 2.7563859),
        (0.95, 2, 2.9199856),
        (0.9, 10, 1.3721836),
    ):
        assert t_quantile(p, df) == pytest.approx(ref, rel=1e-7)
        assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764451, rel=1e-7)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, rel=1e-6)
    x = np.array([1.0, 2.0, 4.0, np.nan])
    r = t_interval(x)
    half = 4.3026527 * np.std(x[:3], ddof=1) / math.sqrt(3)
    assert r.n == 3 and r.estimate == pytest.approx(7 / 3)
    assert (r.low, r.high) == pytest.approx((7 / 3 - half, 7 / 3 + half), rel=1e-6)
    band = t_prediction_interval(x)
    assert band.high - band.low == pytest.approx((r.high - r.low) * 2.0)  # sqrt(1 + n), n = 3
    assert math.isnan(t_interval([1.0]).low) and t_interval([]).n == 0
    with pytest.raises(ValueError, match="p must"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df"):
        t_cdf(0.0, 0)


def test_functools_partial_hooks_key_by_requested_name(tiny):
    """On TL 4.x hook.name is canonical; results must be keyed by the name asked for."""
    names = ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post"]
    seen = {}

    def grab(act, hook, name):
        seen[name] = act

    with tiny.hooks(fwd_hooks=[(n, functools.partial(grab, name=n)) for n in names]):
        tiny(torch.randint(0, 50, (1, 5)))
    out = collect_last_residuals(tiny, torch.randint(0, 50, (1, 5)), torch.tensor([4]), names)
    assert set(seen) == set(names) and out.shape[0] == 2


def test_results_of_several_checkpoints_concatenate(tiny, tok, probes):
    cfg = WorkingLanguageConfig(n_boot=20)
    a = analyze_working_language(tiny, tok, probes[:3], cfg, step=0, progress=False)
    b = analyze_working_language(tiny, tok, probes[:3], cfg, step=5, progress=False)
    both = WorkingLanguageResult.concat([a, b])
    assert len(both.records) == len(a.records) + len(b.records)
    assert list(both.competence()["step"]) == [0, 5]
    assert sorted(both.aggregate()["step"].unique()) == [0, 5]
    assert both.lens_comparison().empty  # one lens: nothing to compare
    with pytest.raises(ValueError, match="no results"):
        WorkingLanguageResult.concat([])
