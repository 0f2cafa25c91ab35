"""The console script is installed, and its command groups run real commands end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from babel_interp.cli import main
from babel_interp.corpus.shards import CorpusReader


def _console(*args, timeout=300):
    """Run the installed ``babel-interp`` executable (not ``main``): the entry point itself."""
    exe = shutil.which("babel-interp") or f"{sys.prefix}/bin/babel-interp"
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_console_script_builds_a_corpus_and_reads_it_back(tmp_path):
    corpus = tmp_path / "corpus"
    built = _console(
        "corpus", "synth", "--out", corpus, "--languages", "python,php", "--docs", "20",
        "--vocab-size", "300", "--quiet",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert f"corpus written to {corpus}" in built.stdout
    info = _console("corpus", "info", "--json", corpus)
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert [lang["language"] for lang in summary["languages"]] == ["python", "php"]
    assert all(lang["documents"] == 20 for lang in summary["languages"])
    assert summary["vocab_size"] == 300
    # What the command wrote is a corpus the library reads, with the tokens it reported.
    reader = CorpusReader(corpus)
    assert reader.languages == ["python", "php"]
    for lang in summary["languages"]:
        lo, hi = reader.split("train").language_range(lang["language"])
        assert hi - lo == lang["train_tokens"] > 0
    # Bad input: exit status 1 and one line naming the path, no traceback.
    missing = _console("corpus", "info", tmp_path / "nothing")
    assert missing.returncode == 1
    (line,) = missing.stderr.strip().splitlines()
    assert line.startswith(f"babel-interp: error: {tmp_path / 'nothing'} is not a corpus")


def _metrics_only_run(root, n=8):
    """A run with checkpoints and a falling php validation loss, nothing analyzed yet."""
    run = root / "run"
    steps = [2**k for k in range(n)]
    for step in steps:
        d = run / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        state = {"step": step, "tokens_seen": {"python": 0, "php": step * 512}}
        (d / "trainer_state.json").write_text(json.dumps(state))
    (run / "run_config.json").write_text(json.dumps({"corpus": str(root / "corpus")}))
    loss = 6.0 - 3.0 * (1 - np.exp(-np.arange(n) / 2))
    records = [
        {"type": "eval", "step": s, "val_loss": {"php": float(v), "python": 3.0}}
        for s, v in zip(steps, loss, strict=True)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run, steps


def test_analyze_group_runs_an_analyzer_on_a_run(tmp_path, capsys):
    run, steps = _metrics_only_run(tmp_path)
    argv = ["analyze", "stages", "--run", str(run), "--no-figures", "--n-boot", "20"]
    assert main(argv) == 0
    assert "php: no transition: monotone improvement" in capsys.readouterr().out
    verdict = json.loads((run / "analysis" / "stages" / "stages.json").read_text())["php"]
    assert verdict["verdict"] == "no transition: monotone improvement"
    assert verdict["n_checkpoints"] == len(steps)
    assert verdict["config"]["performance"] == "val_loss"
    assert not (run / "figures" / "stages_php.png").exists()  # --no-figures was honoured
    # An analyzer's bad input is one line on stderr and exit status 1.
    assert main([*argv, "--language", "go"]) == 1
    assert "no val_loss for 'go'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: babel-interp" in capsys.readouterr().out


def test_help_lists_the_command_groups(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(group in out for group in ("analyze", "corpus", "train", "report"))
