"""pass@k of a model, and of every checkpoint of a run: sample, execute, score.

:func:`evaluate_model` samples ``n`` completions per problem from a hooked model, runs each in the
sandbox and returns one row per sample. :func:`evaluate_run` does that at every checkpoint (or
the chosen ones) of a run and writes ``RUN/analysis/execution/``:

* ``samples.csv``: one row per (checkpoint, problem, sample): status, reason, compile and run
  seconds, the completion;
* ``problems.csv``: one row per (checkpoint, problem): samples ``n`` and passing samples ``c``;
* ``pass_at_k.csv``: one row per (checkpoint, language, k): pass@k with a bootstrap interval over
  problems, and the share of samples per status;
* ``config.json``: the evaluation's settings, the suite's coverage and the toolchains used.

Checkpoints already evaluated with the same settings are reused, and the tables are rewritten
after each checkpoint, so an interrupted evaluation resumes where it stopped. Computing never
draws: the pass@k figure is :func:`babel_interp.report.execution_plots.plot_pass_at_k`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from babel_interp.analysis.performance import synthetic_config_of_run
from babel_interp.config import ConfigBase
from babel_interp.devices import resolve_device
from babel_interp.evaluation.execute import STATUSES, execute
from babel_interp.evaluation.humaneval import humaneval_problems
from babel_interp.evaluation.passk import pass_at_k_summary
from babel_interp.evaluation.problems import Problem, load_problems
from babel_interp.evaluation.runners import EXECUTION_LANGUAGES, check_toolchains, toolchain_report
from babel_interp.evaluation.sampling import SamplingConfig, sample
from babel_interp.evaluation.sandbox import SandboxLimits
from babel_interp.evaluation.synthetic_suite import (
    SyntheticSuiteConfig,
    assert_held_out,
    synthetic_problems,
)
from babel_interp.io import read_json, write_csv_atomic, write_json_atomic
from babel_interp.languages import get_language
from babel_interp.model import load_model
from babel_interp.runs import analysis_dir, run_corpus_dir, select_checkpoints

__all__ = [
    "ANALYZER",
    "ExecutionConfig",
    "EvaluationResult",
    "evaluate_model",
    "evaluate_run",
    "load_execution",
    "load_suite",
    "pass_at_k_table",
]

ANALYZER = "execution"
SUITES = ("synthetic", "humaneval")
_COMPLETION_CHARS = 2000


@dataclass
class ExecutionConfig(ConfigBase):
    """What to evaluate and how.

    ``suite``: ``synthetic`` (held-out programs of the run's synthetic corpus), ``humaneval``
    (HumanEval and its translations) or a JSONL file of problems. ``languages``: the languages
    to evaluate (default: the run's trained languages that have a runner). ``k``: the pass@k
    values to report; ``n_samples`` must be at least the largest. ``temperature`` 0 is greedy
    (then ``n_samples`` must be 1). ``max_problems`` caps the problems per language (the first
    ones, in suite order). ``workers``: parallel executions (default: CPU cores).
    """

    suite: str = "synthetic"
    languages: tuple[str, ...] | None = None
    k: tuple[int, ...] = (1,)
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int = 128
    batch_size: int = 16
    max_problems: int | None = None
    seed: int = 0
    workers: int | None = None
    timeout_s: float = 10.0
    n_boot: int = 2000

    def validate(self) -> None:
        """Check every field; languages become canonical names and ``k`` a tuple of ints."""
        if not isinstance(self.suite, str) or not self.suite:
            raise ValueError(f"ExecutionConfig.suite must be a name or a path, got {self.suite!r}")
        if self.languages is not None:
            if isinstance(self.languages, str):
                self.languages = tuple(x for x in self.languages.split(",") if x)
            langs = tuple(get_language(x).name for x in self.languages)
            bad = [x for x in langs if x not in EXECUTION_LANGUAGES]
            if bad:
                raise ValueError(
                    f"ExecutionConfig.languages: no runner for {bad}; "
                    f"supported: {', '.join(EXECUTION_LANGUAGES)}"
                )
            self.languages = langs
        self.k = tuple(int(x) for x in self.k)
        if not self.k or min(self.k) < 1:
            raise ValueError(f"ExecutionConfig.k must be positive integers, got {self.k}")
        if self.n_samples < max(self.k):
            raise ValueError(
                f"ExecutionConfig.n_samples ({self.n_samples}) must be >= the largest k "
                f"({max(self.k)})"
            )
        if self.temperature < 0:
            raise ValueError(f"ExecutionConfig.temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.n_samples != 1:
            raise ValueError(
                "ExecutionConfig.n_samples must be 1 when temperature is 0 (greedy decoding "
                "gives n identical samples); set --temperature for pass@k with k > 1"
            )
        for name in ("max_new_tokens", "batch_size", "n_boot"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ExecutionConfig.{name} must be >= 1")
        if self.max_problems is not None and self.max_problems < 1:
            raise ValueError("ExecutionConfig.max_problems must be >= 1 or None")
        if self.timeout_s <= 0:
            raise ValueError("ExecutionConfig.timeout_s must be > 0")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(
            n=self.n_samples,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            seed=self.seed,
        )

    def limits(self) -> SandboxLimits:
        return SandboxLimits(timeout_s=self.timeout_s, cpu_s=max(1, math.ceil(self.timeout_s)))

    def fingerprint(self) -> str:
        """What makes two evaluations comparable (``workers`` does not change results)."""
        d = self.to_dict()
        d.pop("workers")
        d.pop("n_boot")
        d.pop("k")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EvaluationResult:
    """Per-sample rows of an evaluation, with the pass@k table derived from them."""

    samples: pd.DataFrame
    config: ExecutionConfig
    skipped: list[dict] = field(default_factory=list)

    def problems(self) -> pd.DataFrame:
        """One row per (step, language, task): samples ``n`` and passing ``c``."""
        return problem_table(self.samples)

    def pass_at_k(self) -> pd.DataFrame:
        return pass_at_k_table(self.samples, self.config.k, self.config.n_boot, self.config.seed)

    def to_dataframe(self) -> pd.DataFrame:
        return self.pass_at_k()

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write the three tables and ``config.json`` (each atomically); returns their paths."""
        out = Path(directory)
        paths = [
            write_csv_atomic(out / "samples.csv", self.samples),
            write_csv_atomic(out / "problems.csv", self.problems()),
            write_csv_atomic(out / "pass_at_k.csv", self.pass_at_k()),
        ]
        meta = {
            "config": self.config.to_dict(),
            "fingerprint": self.config.fingerprint(),
            "skipped": self.skipped,
            "toolchains": toolchain_report(
                sorted(set(self.samples["language"])) if len(self.samples) else []
            ),
        }
        paths.append(write_json_atomic(out / "config.json", meta))
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EvaluationResult:
        return load_execution(directory)


def load_execution(directory: str | os.PathLike) -> EvaluationResult:
    """Read what :meth:`EvaluationResult.save` wrote; errors name the missing file."""
    d = Path(directory)
    for name in ("samples.csv", "config.json"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name} does not exist: no execution results in {d}")
    meta = read_json(d / "config.json", "execution results configuration")
    samples = pd.read_csv(d / "samples.csv", keep_default_na=False, na_values=[""])
    for col in ("reason", "completion"):
        if col in samples.columns:  # an empty completion is text, not a missing value
            samples[col] = samples[col].astype(object).fillna("").astype(str)
    return EvaluationResult(samples, ExecutionConfig.from_dict(meta["config"]), meta["skipped"])


# ---------------------------------------------------------------------------------------------
# Tables


def problem_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, language, task_id): ``n`` samples and ``c`` passing."""
    cols = ["step", "language", "task_id", "n", "c"]
    if not len(samples):
        return pd.DataFrame(columns=cols)
    g = samples.assign(ok=samples["status"] == "passed").groupby(
        ["step", "language", "task_id"], sort=True
    )
    return g["ok"].agg(n="size", c="sum").reset_index()[cols]


def pass_at_k_table(
    samples: pd.DataFrame, k: Sequence[int] = (1,), n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """pass@k per (step, language, k) with a bootstrap interval over problems, and the share
    of samples in each status."""
    rows = []
    probs = problem_table(samples)
    for (step, lang), grp in probs.groupby(["step", "language"], sort=True):
        here = samples[(samples["step"] == step) & (samples["language"] == lang)]
        status = here["status"]
        shares = {f"share_{s}": float((status == s).mean()) for s in STATUSES}
        if "prompt_truncated" in here.columns:
            shares["share_prompt_truncated"] = float(here["prompt_truncated"].astype(bool).mean())
        for kk in k:
            if grp["n"].min() < kk:
                continue
            s = pass_at_k_summary(grp["n"], grp["c"], kk, n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "step": step,
                    "language": lang,
                    "k": kk,
                    "pass_at_k": s.value,
                    "ci_low": s.ci_low,
                    "ci_high": s.ci_high,
                    "n_problems": s.n_problems,
                    "n_samples": s.n_samples,
                    **shares,
                }
            )
    cols = ["step", "language", "k", "pass_at_k", "ci_low", "ci_high", "n_problems", "n_samples"]
    shares = [f"share_{s}" for s in STATUSES] + ["share_prompt_truncated"]
    return pd.DataFrame(rows, columns=cols + shares)


# ---------------------------------------------------------------------------------------------
# Suites


def load_suite(
    suite: str,
    languages: Sequence[str],
    run_dir: str | os.PathLike | None = None,
    max_problems: int | None = None,
) -> tuple[list[Problem], list[dict]]:
    """The problems of ``suite`` in ``languages``, and the problems left out with the reason.

    ``synthetic`` needs the run whose corpus the held-out programs must come from (its corpus
    manifest names the synthetic settings; the suite asserts it shares no program with it).
    """
    langs = [get_language(x).name for x in languages]
    skipped: list[dict] = []
    if suite == "synthetic":
        if run_dir is None:
            raise ValueError("the synthetic suite needs the run whose corpus it is held out from")
        synth = synthetic_config_of_run(run_dir)
        if synth is None:
            raise ValueError(
                f"run {run_dir} was not trained on the synthetic corpus: use --suite humaneval "
                "or a JSONL file of problems"
            )
        kw: dict[str, Any] = {"languages": tuple(langs)}
        if max_problems is not None:
            kw["n_problems"] = max_problems
        problems = synthetic_problems(SyntheticSuiteConfig(**kw), synth)
        assert_held_out(problems, run_corpus_dir(run_dir))
    elif suite == "humaneval":
        problems, skips = humaneval_problems(langs)
        skipped = [
            {"task_id": s.task_id, "language": s.language, "reason": s.reason} for s in skips
        ]
    else:
        path = Path(suite)
        if not path.is_file():
            raise FileNotFoundError(
                f"suite {suite!r} is neither {' nor '.join(SUITES)} nor an existing JSONL file"
            )
        problems = load_problems(path, langs)
    problems = [p for p in problems if p.language in langs]
    if max_problems is not None:
        kept: list[Problem] = []
        count: dict[str, int] = {}
        for p in problems:
            if count.get(p.language, 0) < max_problems:
                kept.append(p)
                count[p.language] = count.get(p.language, 0) + 1
        problems = kept
    missing = [x for x in langs if not any(p.language == x for p in problems)]
    if missing:
        raise ValueError(f"suite {suite!r} has no problems in {missing}")
    return problems, skipped


def _trained_languages(run_dir: str | os.PathLike) -> list[str]:
    ckpts = select_checkpoints(run_dir)
    if not ckpts:
        raise FileNotFoundError(f"run {run_dir} has no complete checkpoint")
    seen = ckpts[-1].tokens_seen
    return [x for x in EXECUTION_LANGUAGES if seen.get(x, 0) > 0]


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate_model(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    config: ExecutionConfig,
    progress: bool = False,
) -> pd.DataFrame:
    """Sample ``config.n_samples`` completions per problem, execute them, one row per sample.

    ``prompt_truncated`` marks problems whose prompt was longer than the model's context minus
    ``max_new_tokens`` (the model saw the prompt's end only)."""
    sampled = sample(model, tokenizer, problems, config.sampling(), progress)
    completions = sampled.completions
    truncated = sampled.truncated
    pairs = [(p, c) for p, cs in zip(problems, completions, strict=True) for c in cs]
    results = execute(pairs, workers=config.workers, limits=config.limits(), progress=progress)
    rows = []
    i = 0
    for p_index, (p, cs) in enumerate(zip(problems, completions, strict=True)):
        for j, c in enumerate(cs):
            r = results[i]
            i += 1
            rows.append(
                {
                    "language": p.language,
                    "task_id": p.task_id,
                    "sample": j,
                    "status": r.status,
                    "reason": r.reason,
                    "compile_s": round(r.compile_s, 4),
                    "run_s": round(r.run_s, 4),
                    "prompt_truncated": truncated[p_index],
                    "completion": c[:_COMPLETION_CHARS],
                }
            )
    return pd.DataFrame(rows)


def evaluate_run(
    run_dir: str | os.PathLike,
    config: ExecutionConfig | None = None,
    steps: Sequence[int] | None = None,
    device: str | None = "auto",
    progress: bool = True,
    out_dir: str | os.PathLike | None = None,
) -> EvaluationResult:
    """pass@k at every checkpoint of a run (or those at ``steps``); see the module docstring.

    Results go to ``out_dir`` (default ``RUN/analysis/execution``); checkpoints evaluated
    before with the same settings are reused. ``device``: see
    :func:`babel_interp.devices.resolve_device` (``None`` and ``"auto"``: CUDA when available).
    """
    config = config or ExecutionConfig()
    langs = list(config.languages or _trained_languages(run_dir))
    if not langs:
        raise ValueError(f"run {run_dir} trained on no language that has an execution runner")
    config = ExecutionConfig.from_dict({**config.to_dict(), "languages": langs})
    check_toolchains(langs)
    problems, skipped = load_suite(config.suite, langs, run_dir, config.max_problems)
    out = Path(out_dir) if out_dir is not None else analysis_dir(run_dir, ANALYZER)
    previous = _previous_samples(out, config)
    ckpts = select_checkpoints(run_dir, list(steps) if steps is not None else None)
    if not ckpts:
        raise FileNotFoundError(f"run {run_dir} has no complete checkpoint")
    dev = resolve_device(device)
    frames = [previous] if len(previous) else []
    done = set(previous["step"]) if len(previous) else set()
    todo = [c for c in ckpts if c.step not in done]
    for c in tqdm(todo, desc="execution", unit="ckpt", disable=not progress):
        model, _ = load_model(c.path, device=dev)
        df = evaluate_model(model, model.tokenizer, problems, config, progress=False)
        df.insert(0, "step", c.step)
        df.insert(1, "tokens_seen", [c.tokens_seen.get(x, 0) for x in df["language"]])
        frames.append(df)
        del model
        EvaluationResult(_concat(frames), config, skipped).save(out)
    result = EvaluationResult(_concat(frames), config, skipped)
    result.save(out)
    return result


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(df):
        df = df.sort_values(["step", "language", "task_id", "sample"], kind="stable")
    return df.reset_index(drop=True)


def _previous_samples(out: Path, config: ExecutionConfig) -> pd.DataFrame:
    """Rows of an earlier evaluation with the same settings (nothing when they differ)."""
    try:
        old = load_execution(out)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
        return pd.DataFrame()
    if old.config.fingerprint() != config.fingerprint():
        return pd.DataFrame()
    return old.samples
