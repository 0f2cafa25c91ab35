"""Hooks from hooks/ run at a run's checkpoints (``analyze hooks``) and inside training."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest
import torch
from _corpus_fixtures import make_corpus
from safetensors.torch import load_file

from babel_interp.analysis.neurons.hook_runner import HookRunResult, analyze_run
from babel_interp.analysis.neurons.neuron_stats import NeuronStatsCollector, NeuronStatsConfig
from babel_interp.analysis.protocol import AnalysisResult
from babel_interp.cli import main
from babel_interp.hooks import get_hook, run_hooks
from babel_interp.model import load_model
from babel_interp.runs import Run, list_checkpoints, validation_windows
from babel_interp.training import CheckpointConfig, CheckpointSchedule, TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hookrun")
    corpus = make_corpus(root / "corpus", docs=60)
    out = root / "run"
    cfg = TrainConfig(
        corpus=str(corpus),
        out=str(out),
        steps=4,
        batch_size=4,
        seq_len=32,
        progress=False,
        hooks=["activation-norms"],
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="steps", steps=[2, 4]), fsync=False
        ),
    )
    train(cfg)
    return out


def test_training_runs_hooks_at_checkpoints(run):
    for step in (2, 4):
        for lang in ("python", "php"):
            path = run / "analysis" / "hooks" / f"step_{step:08d}" / lang / "activation-norms.json"
            summary = json.loads(path.read_text())
            assert summary["positions"] and all(v > 0 for v in summary["mean_norm"].values())


def test_neuron_stats_hook_matches_a_full_cache(run):
    ckpt = list_checkpoints(run)[-1]
    model, cfg = load_model(ckpt.path, with_tokenizer=False)
    tokens = validation_windows(Run(run).corpus(), "php", 4, 16)
    hook = get_hook("neuron-stats")
    with torch.no_grad():
        run_hooks(model, tokens, [hook])
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
    for layer in range(cfg.n_layers):
        acts = cache[f"blocks.{layer}.mlp.hook_post"].reshape(-1, cfg.d_mlp).double()
        torch.testing.assert_close(hook.firing_rate()[layer], (acts > 0).float().mean(0))
        torch.testing.assert_close(hook.count[layer], (acts > 0).double().sum(0))
        # Sums are reduced per window in float32 (as the analyzer does), then added in float64.
        torch.testing.assert_close(hook.sum[layer], acts.sum(0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(hook.sum_sq[layer], (acts * acts).sum(0), rtol=1e-5, atol=1e-5)
    assert hook.tokens == tokens.numel()
    # The hook is the analyzer's accumulator, label-free: the same totals as collecting the
    # windows as one language.
    collector = NeuronStatsCollector(model, ["php"], NeuronStatsConfig(tokens_per_language=None))
    collector.update(tokens, torch.zeros_like(tokens))
    stats, mine = collector.result(), hook.stats()
    assert torch.equal(mine.count, stats.count) and torch.equal(mine.tokens, stats.tokens)
    torch.testing.assert_close(mine.sum, stats.sum)
    hook.reset()
    assert hook.tokens == 0 and hook.count == {} and hook.stats() is None


def test_analyze_hooks_cli_with_a_user_hook_file(run, tmp_path, capsys):
    user = tmp_path / "my_hooks.py"
    user.write_text(
        textwrap.dedent(
            """
            class CountTokens:
                name = "count-tokens"

                def __init__(self):
                    self.n = 0

                def reset(self):
                    self.n = 0

                def _hook(self, act, hook):
                    self.n += act.shape[0] * act.shape[1]

                def fwd_hooks(self, model):
                    return [("hook_embed", self._hook)]

                def summary(self):
                    return {"tokens": self.n}
            """
        )
    )
    code = main(
        [
            "analyze",
            "hooks",
            "--run",
            str(run),
            "--hook",
            f"{user}:CountTokens",
            "--hook",
            "neuron-stats",
            "--checkpoints",
            "4",
            "--windows",
            "3",
            "--languages",
            "php",
        ]
    )
    assert code == 0
    out = run / "analysis" / "hooks" / "step_00000004" / "php"
    n_ctx = load_model(list_checkpoints(run)[-1].path, with_tokenizer=False)[1].n_ctx
    # Three full windows of n_ctx tokens: the corpus has enough php validation tokens for them,
    # so both hooks must have fired on every one of these tokens, no fewer (a hook that never
    # fired would report 0) and no more (a window counted twice).
    assert validation_windows(Run(run).corpus(), "php", 3, n_ctx).shape == (3, n_ctx)
    assert json.loads((out / "count-tokens.json").read_text())["tokens"] == 3 * n_ctx
    assert json.loads((out / "neuron-stats.json").read_text())["tokens"] == 3 * n_ctx
    stats = load_file(out / "neuron-stats.safetensors")
    assert set(stats) >= {"count.0", "sum.0", "sum_sq.0"}
    assert 0 < float(stats["count.0"].max()) <= 3 * n_ctx  # firing counts are per token
    assert "result files" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no checkpoint at step"):
        analyze_run(run, ["neuron-stats"], checkpoints=[3])


def test_analyze_run_returns_the_files_it_wrote(run, tmp_path):
    result = analyze_run(
        run, ["activation-norms"], checkpoints=[2, 4], languages=["python"], n_windows=2
    )
    assert isinstance(result, AnalysisResult)
    df = result.to_dataframe()
    assert df.to_dict("records") == [
        {"step": 2, "language": "python", "file": "step_00000002/python/activation-norms.json"},
        {"step": 4, "language": "python", "file": "step_00000004/python/activation-norms.json"},
    ]
    assert all(p.is_file() for p in result.paths())
    # The listing is saved beside the files; a save elsewhere copies the files with it.
    pd.testing.assert_frame_equal(HookRunResult.load(result.out_dir).to_dataframe(), df)
    written = result.save(tmp_path / "copy")
    back = HookRunResult.load(tmp_path / "copy")
    pd.testing.assert_frame_equal(back.to_dataframe(), df)
    assert {p.name for p in written} == {"activation-norms.json", "files.csv"}
    for a, b in zip(result.paths(), back.paths(), strict=True):
        assert a.read_bytes() == b.read_bytes()
    with pytest.raises(FileNotFoundError, match="files.csv"):
        HookRunResult.load(tmp_path / "nowhere")
