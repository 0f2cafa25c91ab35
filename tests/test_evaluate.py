"""The per-checkpoint evaluation: settings, tables, suites, resume, the problem-route transfer
ratio and the figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from babel_interp.evaluation.evaluate import (
    EvaluationResult,
    ExecutionConfig,
    load_execution,
    load_suite,
    pass_at_k_table,
    problem_table,
)
from babel_interp.evaluation.problems import Problem, load_problems, save_problems
from babel_interp.evaluation.transfer import problem_transfer_series, solved_tasks
from babel_interp.report.execution_plots import plot_pass_at_k


def _samples(rows):
    return pd.DataFrame(
        rows, columns=["step", "language", "task_id", "sample", "status", "reason"]
    ).assign(reason="", compile_s=0.0, run_s=0.0, completion="", tokens_seen=0)


def test_config_validation_names_the_field():
    for bad, field in [
        (dict(k=(0,)), "k"),
        (dict(k=(1, 5), n_samples=2), "n_samples"),
        (dict(n_samples=4, k=(1,)), "temperature is 0"),
        (dict(languages=("rust",)), "no runner"),
        (dict(max_problems=0), "max_problems"),
        (dict(temperature=-1.0), "temperature"),
    ]:
        with pytest.raises(ValueError, match=field):
            ExecutionConfig(**bad)
    cfg = ExecutionConfig(languages=("PHP", "go"), k=(1, 2), n_samples=4, temperature=0.8)
    assert cfg.languages == ("php", "go")
    assert ExecutionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown field.*suit"):
        ExecutionConfig.from_dict({"suit": "synthetic"})
    # Workers change speed, not results: the same fingerprint.
    assert cfg.fingerprint() == ExecutionConfig(**{**cfg.to_dict(), "workers": 7}).fingerprint()
    assert cfg.fingerprint() != ExecutionConfig(**{**cfg.to_dict(), "seed": 1}).fingerprint()


def test_tables_count_samples_per_problem_and_estimate_pass_at_k():
    rows = []
    # step 10: task a passes 2 of 4, task b 0 of 4; step 20: both pass all.
    for s, status in enumerate(["passed", "passed", "wrong_answer", "timeout"]):
        rows.append((10, "php", "a", s, status, ""))
    for s in range(4):
        rows.append((10, "php", "b", s, "compile_error", ""))
        rows.append((20, "php", "a", s, "passed", ""))
        rows.append((20, "php", "b", s, "passed", ""))
    samples = _samples(rows)
    probs = problem_table(samples)
    assert probs[probs["step"] == 10].set_index("task_id")[["n", "c"]].to_dict("index") == {
        "a": {"n": 4, "c": 2},
        "b": {"n": 4, "c": 0},
    }
    table = pass_at_k_table(samples, k=(1, 2))
    at10 = table[table["step"] == 10].set_index("k")
    assert at10.loc[1, "pass_at_k"] == pytest.approx((0.5 + 0.0) / 2)
    assert at10.loc[2, "pass_at_k"] == pytest.approx((1 - 1 / 6 + 0.0) / 2)
    assert at10.loc[1, "share_compile_error"] == pytest.approx(0.5)
    assert table[table["step"] == 20]["pass_at_k"].eq(1.0).all()
    for r in table.itertuples():
        assert r.ci_low <= r.pass_at_k <= r.ci_high


def test_result_round_trips_through_its_directory(tmp_path):
    samples = _samples([(0, "go", "t1", 0, "passed", ""), (0, "go", "t2", 0, "timeout", "")])
    res = EvaluationResult(samples, ExecutionConfig(languages=("go",)), [{"task_id": "x"}])
    res.save(tmp_path)
    for name in ("samples.csv", "problems.csv", "pass_at_k.csv", "config.json"):
        assert (tmp_path / name).is_file()
    back = load_execution(tmp_path)
    assert back.config == res.config and back.skipped == res.skipped
    pd.testing.assert_frame_equal(back.pass_at_k(), res.pass_at_k())
    with pytest.raises(FileNotFoundError, match="samples.csv"):
        load_execution(tmp_path / "nowhere")


def test_jsonl_suite_is_filtered_and_capped(tmp_path):
    problems = [
        Problem(f"t{i}", lang, "p", "tests", "f") for i in range(5) for lang in ("php", "go")
    ]
    path = save_problems(problems, tmp_path / "suite.jsonl")
    got, skipped = load_suite(str(path), ["php"], max_problems=3)
    assert [p.task_id for p in got] == ["t0", "t1", "t2"] and not skipped
    assert all(p.language == "php" for p in got)
    with pytest.raises(ValueError, match="no problems"):
        load_problems(path, ["cpp"])
    with pytest.raises(FileNotFoundError, match="neither"):
        load_suite(str(tmp_path / "missing.jsonl"), ["php"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "language": "php"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_problems(bad)


def test_problem_route_transfer_ratio():
    # Primary solves a, b, c in Python; scratch solves c in PHP: P = {a, b}.
    primary = _samples(
        [(5, "python", t, 0, "passed", "") for t in "abc"]
        + [(5, "python", "d", 0, "wrong_answer", "")]
    )
    scratch = _samples(
        [(9, "php", "c", 0, "passed", "")] + [(9, "php", t, 0, "wrong_answer", "") for t in "abd"]
    )
    cont = _samples(
        [(0, "php", t, 0, "wrong_answer", "") for t in "abcd"]
        + [(10, "php", "a", 0, "passed", ""), (10, "php", "c", 0, "passed", "")]
        + [(10, "php", t, 0, "wrong_answer", "") for t in "bd"]
        + [(20, "php", t, 0, "passed", "") for t in "cd"]
        + [(20, "php", t, 0, "wrong_answer", "") for t in "ab"]
    )
    assert solved_tasks(primary, "python") == {"a": True, "b": True, "c": True, "d": False}
    df = problem_transfer_series(primary, scratch, cont, "php").set_index("step")
    assert df.loc[0, "n_c"] == 0 and np.isnan(df.loc[0, "ratio"])
    assert df.loc[10, "ratio"] == pytest.approx(0.5) and df.loc[10, "n_pc"] == 1
    assert df.loc[20, "ratio"] == 0.0
    assert (df["n_p"] == 2).all()


def test_pass_at_k_figure(tmp_path):
    t = pd.DataFrame(
        dict(
            step=[0, 10, 100, 0, 10, 100],
            language=["php"] * 3 + ["go"] * 3,
            k=1,
            pass_at_k=[0.0, 0.2, 0.5, 0.0, 0.1, 0.3],
            ci_low=[0.0, 0.1, 0.3, 0.0, 0.0, 0.1],
            ci_high=[0.0, 0.3, 0.7, 0.0, 0.2, 0.5],
        )
    )
    path = plot_pass_at_k({"continued": t, "scratch": t.assign(pass_at_k=0.1)}, tmp_path / "f.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="pass@5"):
        plot_pass_at_k(t, tmp_path / "g.png", k=5)
