"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from babel_interp.model import ModelConfig, build_model

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r} in README"
    return match.group(1)


def test_custom_hook_example_runs():
    code = _python_block_after("## Custom hooks")
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=50)
    model = build_model(cfg)
    tokens = torch.randint(0, 50, (2, 12))
    namespace = {"model": model, "tokens": tokens}
    from babel_interp.hooks.registry import _REGISTRY

    _REGISTRY.pop("max-mlp", None)  # the example registers itself; allow re-running the test
    exec(compile(code, "README.md", "exec"), namespace)
    hook = namespace["hook"]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
    assert set(hook.summary()["max"]) == {0, 1}
    for layer in range(2):
        expected = float(cache[f"blocks.{layer}.mlp.hook_post"].max())
        assert abs(hook.summary()["max"][layer] - expected) < 1e-6


def test_library_example_runs(tmp_path, monkeypatch):
    """The README's library quick start, with its sizes shrunk to test scale."""
    code = _python_block_after("## Use it as a library")
    for big, small in (
        ("docs_per_language=500", "docs_per_language=60"),
        ("steps=300", "steps=4, batch_size=4, seq_len=32, progress=False"),
        ("steps=200", "steps=3, batch_size=4, seq_len=32, progress=False"),
        (
            'WorkingLanguageConfig(target="php")',
            'WorkingLanguageConfig(target="php", n_per_pair=1)',
        ),
    ):
        assert big in code, big
        code = code.replace(big, small)
    code = code.replace('analyze_run("runs/php",', 'analyze_run("runs/php", progress=False, cfg=')
    assert "max_problems=8))" in code
    code = code.replace("max_problems=8))", "max_problems=2, max_new_tokens=8), progress=False)")
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    df = namespace["result"].to_dataframe()
    assert len(df) > 0 and {"p_primary", "p_target"} <= set(df.columns)
    assert (tmp_path / "runs" / "php" / "analysis" / "working_language" / "aggregate.csv").is_file()
    passk = namespace["passk"].pass_at_k()
    assert set(passk["language"]) == {"php"} and passk["n_problems"].eq(2).all()
    assert (tmp_path / "runs" / "php" / "analysis" / "execution" / "samples.csv").is_file()
