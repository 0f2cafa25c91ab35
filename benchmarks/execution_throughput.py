"""Executions per second of the sandboxed executor against two references, in the same run.

Programs: canonical solutions of the synthetic execution suite (one compile and one run each),
in every language with a toolchain here. Measured:

* project: :func:`babel_interp.evaluation.execute.execute` with one worker per core;
* sequential reference: the same executor with one worker (one subprocess at a time, the same
  sandbox), so the ratio is what parallelism buys;
* bare reference: a plain loop of ``subprocess.run`` (compile, then run) in a temporary
  directory, no sandbox: the ratio to it is what the sandbox costs.

Every run must pass (the benchmark checks it). Usage::

    python benchmarks/execution_throughput.py                 # 4 problems x 5 languages
    python benchmarks/execution_throughput.py --n-problems 10 --languages php,go
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from babel_interp.corpus.synthetic import SyntheticConfig
from babel_interp.evaluation.execute import execute
from babel_interp.evaluation.runners import EXECUTION_LANGUAGES, get_runner
from babel_interp.evaluation.synthetic_suite import SyntheticSuiteConfig, synthetic_problems


def bare_loop(pairs) -> float:
    """Compile and run each program with plain subprocess calls, one after another."""
    t = time.perf_counter()
    for problem, completion in pairs:
        runner = get_runner(problem.language)
        with tempfile.TemporaryDirectory() as d:
            Path(d, runner.source_name).write_text(problem.program(completion))
            env = {**os.environ, **dict(runner.env)}
            if runner.cache_env:
                env[runner.cache_env] = str(Path(tempfile.gettempdir()) / "bench-gocache")
            if runner.compile is not None:
                subprocess.run(runner.resolved(runner.compile), cwd=d, env=env, check=True)
            r = subprocess.run(runner.resolved(runner.run), cwd=d, env=env, capture_output=True)
            assert r.returncode == 0, (problem.task_id, r.stderr[-300:])
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-problems", type=int, default=4, help="per language")
    parser.add_argument("--languages", default=",".join(EXECUTION_LANGUAGES))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    langs = tuple(x for x in args.languages.split(",") if x)
    problems = synthetic_problems(
        SyntheticSuiteConfig(languages=langs, n_problems=args.n_problems), SyntheticConfig()
    )
    pairs = [(p, p.canonical_solution) for p in problems]
    # Warm the toolchains' caches (Go's build cache) so no measurement pays for them.
    execute(pairs[: len(langs)], workers=1)

    t = time.perf_counter()
    par = execute(pairs, workers=args.workers)
    t_par = time.perf_counter() - t
    t = time.perf_counter()
    seq = execute(pairs, workers=1)
    t_seq = time.perf_counter() - t
    t_bare = bare_loop(pairs)
    for name, res in (("parallel", par), ("sequential", seq)):
        bad = [(r.task_id, r.language, r.status, r.reason) for r in res if not r.passed]
        assert not bad, f"{name}: canonical programs failed: {bad[:3]}"

    n = len(pairs)
    print(
        f"{n} programs ({args.n_problems} per language: {', '.join(langs)}), {args.workers} workers"
    )
    print(f"project (parallel sandbox): {n / t_par:7.2f} programs/s ({t_par:.1f} s)")
    print(f"sequential sandbox:        {n / t_seq:7.2f} programs/s ({t_seq:.1f} s)")
    print(f"bare subprocess loop:      {n / t_bare:7.2f} programs/s ({t_bare:.1f} s)")
    print(f"ratio parallel / sequential: {t_seq / t_par:.2f}x")
    print(f"ratio parallel / bare loop:  {t_bare / t_par:.2f}x")
    print(f"sandbox overhead (sequential sandbox / bare): {t_seq / t_bare:.2f}x time")


if __name__ == "__main__":
    main()
