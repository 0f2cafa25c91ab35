"""Streaming neuron statistics: exact against a full activation cache, budgets, merging."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _neuron_fixtures import planted_neuron_model, token_languages
from beartype import beartype
from jaxtyping import TypeCheckError, jaxtyped

from babel_interp.analysis.neurons.neuron_stats import (
    IGNORE_LABEL,
    NeuronStats,
    NeuronStatsCollector,
    NeuronStatsConfig,
    collect_from_corpus,
    collect_neuron_stats,
    map_lang_ids,
    sample_language_windows,
)
from babel_interp.corpus.shards import CorpusReader, ShardWriter, write_manifest
from babel_interp.model import ModelConfig, build_model

LANGS = ["python", "php", "go"]
CFG = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=48, n_ctx=24, d_vocab=97)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from intra-op threads, and on a loaded machine idle OpenMP
    # threads spinning at every barrier make each small op ~100x slower. Restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(CFG)
    m.eval()
    return m


def _cache(model, tokens):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
    return {layer: cache[f"blocks.{layer}.mlp.hook_post"].double() for layer in range(2)}


def _direct(model, tokens, labels, threshold=0.0):
    """Per-language statistics computed the obvious way from a full cache."""
    acts = _cache(model, tokens)
    out = {}
    for k in range(len(LANGS)):
        sel = labels == k
        per_layer = [acts[layer][sel] for layer in range(2)]
        out[k] = {
            "tokens": int(sel.sum()),
            "count": torch.stack([(a > threshold).sum(0) for a in per_layer]),
            "sum": torch.stack([a.sum(0) for a in per_layer]),
            "sum_sq": torch.stack([(a * a).sum(0) for a in per_layer]),
        }
    return out


def _assert_matches(stats: NeuronStats, direct) -> None:
    for k, d in direct.items():
        assert int(stats.tokens[k]) == d["tokens"]
        assert torch.equal(stats.count[k], d["count"])
        torch.testing.assert_close(stats.sum[k], d["sum"], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(stats.sum_sq[k], d["sum_sq"], atol=1e-4, rtol=1e-5)


def test_mixed_labels_match_a_full_cache(model):
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 97, (5, 24), generator=gen)
    labels = torch.randint(IGNORE_LABEL, 3, (5, 24), generator=gen)
    cfg = NeuronStatsConfig(tokens_per_language=None, threshold=0.05)
    collector = NeuronStatsCollector(model, LANGS, cfg)
    counted = collector.update(tokens, labels)
    stats = collector.result()
    assert counted == int((labels >= 0).sum())
    _assert_matches(stats, _direct(model, tokens, labels, threshold=0.05))
    # Every (row, language) segment is one window record; together they are the totals.
    assert stats.windows_complete
    segments = {(b, int(labels[b, p])) for b, p in (labels >= 0).nonzero().tolist()}
    assert stats.n_windows == len(segments)
    for name in ("count", "sum", "sum_sq"):
        per_lang = torch.zeros_like(getattr(stats, name), dtype=torch.float64)
        per_lang.index_add_(0, stats.window_lang, getattr(stats, f"window_{name}").double())
        torch.testing.assert_close(per_lang, getattr(stats, name).double(), atol=1e-3, rtol=1e-5)


def test_pure_windows_match_a_full_cache(model):
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 97, (6, 24), generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 1])[:, None].expand(6, 24).contiguous()
    collector = NeuronStatsCollector(model, LANGS, NeuronStatsConfig(tokens_per_language=None))
    collector.update(tokens, labels)
    stats = collector.result()
    _assert_matches(stats, _direct(model, tokens, labels))
    assert stats.window_lang.tolist() == [0, 1, 2, 0, 1, 1]
    assert stats.window_tokens.tolist() == [24] * 6


def test_budget_stops_each_language_exactly_in_reading_order(model):
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 97, (4, 24), generator=gen)
    labels = torch.randint(0, 3, (4, 24), generator=gen)
    collector = NeuronStatsCollector(model, LANGS, NeuronStatsConfig(tokens_per_language=10))
    collector.update(tokens[:2], labels[:2])
    collector.update(tokens[2:], labels[2:])
    stats = collector.result()
    assert stats.tokens.tolist() == [10, 10, 10]
    assert collector.done
    assert collector.update(tokens, labels) == 0  # nothing left to count: the model is not run
    # The same statistics from the cache, keeping each language's first 10 tokens.
    kept = torch.full_like(labels, IGNORE_LABEL)
    flat, out = labels.flatten(), kept.view(-1)
    for k in range(3):
        idx = (flat == k).nonzero().flatten()[:10]
        out[idx] = k
    _assert_matches(stats, _direct(model, tokens, kept))


def test_merge_equals_one_pass_and_all_reduce_is_a_noop_alone(model):
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 97, (6, 24), generator=gen)
    labels = torch.randint(0, 3, (6, 24), generator=gen)
    cfg = NeuronStatsConfig(tokens_per_language=None)
    parts = []
    for sl in (slice(0, 2), slice(2, 6)):
        c = NeuronStatsCollector(model, LANGS, cfg)
        c.update(tokens[sl], labels[sl])
        parts.append(c.result())
    whole = NeuronStatsCollector(model, LANGS, cfg)
    whole.update(tokens, labels)
    merged = parts[0].merge(parts[1])
    one = whole.result()
    assert torch.equal(merged.tokens, one.tokens) and torch.equal(merged.count, one.count)
    torch.testing.assert_close(merged.sum, one.sum)
    torch.testing.assert_close(merged.sum_sq, one.sum_sq)
    assert merged.n_windows == one.n_windows
    assert merged.all_reduce() is merged  # torch.distributed not initialized
    other = NeuronStats.empty(["python", "php"], [0, 1], CFG.d_mlp)
    with pytest.raises(ValueError, match="different languages"):
        merged.merge(other)


def _all_reduce_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        stats = _rank_stats(rank)
        stats.all_reduce()
        stats.save(f"{out_dir}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def _rank_stats(rank: int) -> NeuronStats:
    gen = torch.Generator().manual_seed(100 + rank)
    n_win = 2 + rank  # ranks hold different numbers of windows: the gather must pad and trim
    s = NeuronStats.empty(["a", "b"], [0, 3], 5)
    s.tokens = torch.randint(1, 100, (2,), generator=gen)
    s.count = torch.randint(0, 50, (2, 2, 5), generator=gen)
    s.sum = torch.randn(2, 2, 5, generator=gen, dtype=torch.float64)
    s.sum_sq = torch.rand(2, 2, 5, generator=gen, dtype=torch.float64)
    s.window_lang = torch.arange(n_win) % 2
    s.window_tokens = torch.randint(1, 9, (n_win,), generator=gen)
    for name in ("window_count", "window_sum", "window_sum_sq"):
        setattr(s, name, torch.randn(n_win, 2, 5, generator=gen))
    return s


def test_all_reduce_across_two_processes_equals_merge(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(
        _all_reduce_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    expected = _rank_stats(0).merge(_rank_stats(1))
    for rank in range(2):
        got = NeuronStats.load(tmp_path / f"rank{rank}.safetensors")
        for name in ("tokens", "count", "window_lang", "window_tokens"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), name
        for name in ("sum", "sum_sq", "window_count", "window_sum", "window_sum_sq"):
            torch.testing.assert_close(getattr(got, name), getattr(expected, name))


def test_save_load_round_trip_is_atomic_and_rejects_other_files(model, tmp_path):
    gen = torch.Generator().manual_seed(5)
    c = NeuronStatsCollector(model, LANGS, NeuronStatsConfig(tokens_per_language=None))
    c.update(torch.randint(0, 97, (3, 24), generator=gen), torch.randint(0, 3, (3, 24)))
    stats = c.result()
    path = stats.save(tmp_path / "sub" / "stats.safetensors")
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.safetensors"]
    back = NeuronStats.load(path)
    assert back.languages == LANGS and back.layers == [0, 1] and back.d_mlp == CFG.d_mlp
    assert back.threshold == 0.0 and back.metadata["hook"] == "blocks.{layer}.mlp.hook_post"
    for name in ("tokens", "count", "sum", "sum_sq", "window_lang", "window_sum_sq"):
        assert torch.equal(getattr(back, name), getattr(stats, name)), name
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a neuron statistics file"):
        NeuronStats.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        NeuronStats.load(tmp_path / "missing.safetensors")


def test_derived_quantities(model):
    s = NeuronStats.empty(["a", "b"], [0], 2)
    s.tokens = torch.tensor([4, 2])
    s.count = torch.tensor([[[4, 1]], [[0, 2]]])
    s.sum = torch.tensor([[[8.0, 2.0]], [[0.0, 6.0]]], dtype=torch.float64)
    s.sum_sq = torch.tensor([[[20.0, 4.0]], [[0.0, 18.0]]], dtype=torch.float64)
    p = s.activation_probability()
    assert p.shape == (1, 2, 2)
    assert p[0, 0].tolist() == [1.0, 0.0] and p[0, 1].tolist() == [0.25, 1.0]
    assert s.mean()[0, 0].tolist() == [2.0, 0.5]
    # Sample variance of {x: sum 8, sum_sq 20, n 4} = (20 - 16) / 3.
    assert math.isclose(float(s.variance()[0, 0, 0]), 4 / 3)
    assert s.pooled_mean()[0].tolist() == [8 / 6, 8 / 6]
    empty = NeuronStats.empty(["a", "b"], [0], 2)
    with pytest.raises(ValueError, match="no tokens for language"):
        empty.activation_probability()
    sub = s.select_languages(["b"])
    assert sub.languages == ["b"] and sub.tokens.tolist() == [2]
    df = s.to_dataframe()
    assert set(df["language"]) == {"a", "b"} and len(df) == 2


def test_shape_validation_names_the_field():
    s = NeuronStats.empty(["a"], [0], 3)
    with pytest.raises(ValueError, match="NeuronStats.count has shape"):
        NeuronStats(**{**s.__dict__, "count": torch.zeros(1, 1, 4, dtype=torch.int64)})
    with pytest.raises(ValueError, match="duplicates"):
        NeuronStats.empty(["a", "a"], [0], 3)


def test_config_validation_and_round_trip():
    cfg = NeuronStatsConfig(threshold=0.5, layers=[3, 1], tokens_per_language=None)
    assert cfg.layers == [1, 3]
    assert NeuronStatsConfig.from_dict(cfg.to_dict()) == cfg
    bad = {
        "threshold": float("nan"),
        "tokens_per_language": 0,
        "window_len": 0,
        "batch_size": -1,
        "max_windows_per_language": -1,
        "layers": [1, 1],
        "seed": 1.5,
    }
    for name, value in bad.items():
        with pytest.raises(ValueError, match=f"NeuronStatsConfig.{name}"):
            NeuronStatsConfig(**{name: value})
    with pytest.raises(ValueError, match="unknown field"):
        NeuronStatsConfig.from_dict({"treshold": 0.0})


def test_update_rejects_bad_input(model):
    c = NeuronStatsCollector(model, LANGS, NeuronStatsConfig())
    with pytest.raises(ValueError, match="same shape"):
        c.update(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="lang_ids must lie in"):
        c.update(torch.zeros(1, 5, dtype=torch.long), torch.full((1, 5), 3))
    with pytest.raises(ValueError, match="n_ctx"):
        c.update(torch.zeros(1, 30, dtype=torch.long), torch.zeros(1, 30, dtype=torch.long))
    with pytest.raises(ValueError, match="do not exist"):
        NeuronStatsCollector(model, LANGS, NeuronStatsConfig(layers=[5]))
    with pytest.raises(ValueError, match="distinct"):
        NeuronStatsCollector(model, ["a", "a"])


def test_jaxtyping_shapes_are_checked(model):
    checked = jaxtyped(typechecker=beartype)(map_lang_ids)
    ids = checked(torch.tensor([[0, 1, 2]]), ["go", "php", "python"], ["python", "php"])
    assert ids.tolist() == [[IGNORE_LABEL, 1, 0]]
    with pytest.raises((TypeCheckError, Exception)):
        checked(torch.tensor([0, 1, 2]), ["go", "php", "python"], ["python"])
    langs = jaxtyped(typechecker=beartype)(token_languages)(12, 3)
    assert langs.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def _corpus(tmp_path, sizes=(40, 25)):
    rng = np.random.default_rng(0)
    langs = ["python", "php"]
    entries = {}
    for split in ("train", "val"):
        w = ShardWriter(tmp_path, split, langs, 97, eos_id=0)
        for k, lang in enumerate(langs):
            for _ in range(sizes[k]):
                w.add(lang, rng.integers(1 + 48 * k, 48 * (k + 1), size=30), 90)
        entries[split] = w.close()
    write_manifest(tmp_path, langs, entries, {"vocab_size": 97, "eos_id": 0, "hash": "h"})
    return CorpusReader(tmp_path)


def test_windows_are_pure_deterministic_and_balanced(model, tmp_path):
    reader = _corpus(tmp_path)
    val = reader.split("val")
    w1 = sample_language_windows(val, "php", 100, 16, seed=3)
    w2 = sample_language_windows(val, "php", 100, 16, seed=3)
    assert torch.equal(w1, w2) and w1.shape == (7, 16)
    lo, hi = val.language_range("php")
    php_tokens = set(np.asarray(val.tokens[lo:hi]).tolist())
    assert set(w1.flatten().tolist()) <= php_tokens
    with pytest.raises(ValueError, match="fewer than one window"):
        sample_language_windows(val, "php", 10, 10_000)
    cfg = NeuronStatsConfig(tokens_per_language=None, window_len=16, batch_size=4)
    stats = collect_from_corpus(model, reader, ["python", "php"], cfg, progress=False)
    # Balanced: both languages stop at the smaller language's token count.
    php_available = ((hi - lo) // 16) * 16
    assert stats.tokens.tolist() == [php_available, php_available]
    with pytest.raises(KeyError, match="not in corpus"):
        collect_from_corpus(model, reader, ["python", "rust"], cfg, progress=False)


def test_collect_caps_tokens_and_counts_window_records(model):
    gen = torch.Generator().manual_seed(6)
    windows = {
        "python": torch.randint(0, 97, (9, 20), generator=gen),
        "php": torch.randint(0, 97, (5, 20), generator=gen),
    }
    cfg = NeuronStatsConfig(tokens_per_language=70, batch_size=2, max_windows_per_language=3)
    stats = collect_neuron_stats(model, windows, cfg, progress=False)
    assert stats.tokens.tolist() == [70, 70]
    assert torch.bincount(stats.window_lang).tolist() == [3, 3]
    assert not stats.windows_complete
    assert stats.metadata["window_len"] == 20
    with pytest.raises(ValueError, match="non-empty"):
        collect_neuron_stats(model, {"python": torch.zeros(0, 4, dtype=torch.long)})


def test_planted_model_validates_its_inputs():
    cfg = ModelConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=16, n_ctx=8, d_vocab=30)
    with pytest.raises(ValueError, match="divisible"):
        planted_neuron_model(cfg, 4, {0: [(0, 1)]})
    with pytest.raises(ValueError, match="does not exist"):
        planted_neuron_model(cfg, 2, {0: [(1, 0)]})
    with pytest.raises(ValueError, match="outside"):
        planted_neuron_model(cfg, 2, {2: [(0, 0)]})


def test_config_json_is_serializable():
    cfg = NeuronStatsConfig(layers=[0])
    assert json.loads(json.dumps(cfg.to_dict()))["layers"] == [0]
