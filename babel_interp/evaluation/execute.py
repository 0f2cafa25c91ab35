"""Execute candidate programs: compile once, run once, classify, in parallel across cores.

Each (problem, completion) pair becomes the program ``prompt + completion + "\\n" + tests``
(:func:`babel_interp.evaluation.problems.assemble_program`), written into a fresh sandbox
directory, compiled once when the language is compiled, and run once (the tests are inside the
program). The outcome is one of

* ``passed``: exit status 0;
* ``wrong_answer``: exit status 3, the tests' signal for a failed check;
* ``compile_error``: the compiler failed (or ran out of its limits);
* ``timeout``: the wall-clock limit or the CPU limit was hit;
* ``runtime_error``: anything else (an exception, a signal, a memory or file-size limit), with
  the reason recorded.

Candidates run on a thread pool, one sandbox slot per thread: the work happens in child
processes, so threads are enough to keep every core busy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from babel_interp.evaluation.problems import WRONG_ANSWER_EXIT, Problem, assemble_program
from babel_interp.evaluation.runners import check_toolchains, get_runner
from babel_interp.evaluation.sandbox import Sandbox, SandboxLimits, SandboxResult

__all__ = ["STATUSES", "ExecutionResult", "execute", "execute_one"]

STATUSES = ("passed", "wrong_answer", "runtime_error", "compile_error", "timeout")
_TAIL = 2000


@dataclass
class ExecutionResult:
    """The outcome of one candidate program."""

    task_id: str
    language: str
    status: str
    reason: str
    compile_s: float
    run_s: float
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def _stderr_reason(text: str) -> str:
    """The most telling line of an error output (the last non-empty one)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _first_error(text: str) -> str:
    """The first line that names an error (compilers print context after it), else the last."""
    for ln in text.splitlines():
        if "error" in ln.lower():
            return ln.strip()[:300]
    return _stderr_reason(text)


# Interpreted languages report a program that does not parse at run time; it is still a
# compile error (the candidate is not a program), not a runtime error.
_PARSE_ERRORS = {
    "python": ("SyntaxError", "IndentationError", "TabError"),
    "php": ("PHP Parse error", "Parse error:"),
}


def _classify_run(r: SandboxResult, language: str) -> tuple[str, str]:
    if r.timed_out:
        return "timeout", r.describe()
    if r.signal == "SIGXCPU":
        return "timeout", r.describe()
    if r.returncode == 0:
        return "passed", "all checks passed"
    if r.returncode == WRONG_ANSWER_EXIT:
        detail = _stderr_reason(r.stderr) or _stderr_reason(r.stdout)
        return "wrong_answer", "a check failed" + (f": {detail}" if detail else "")
    detail = _stderr_reason(r.stderr)
    parse = _PARSE_ERRORS.get(language, ())
    if any(marker in r.stderr for marker in parse):
        lines = [ln for ln in r.stderr.splitlines() if any(m in ln for m in parse)]
        return "compile_error", (lines[-1].strip()[:300] if lines else detail)
    return "runtime_error", r.describe() + (f": {detail}" if detail else "")


def execute_one(
    sandbox: Sandbox, problem: Problem, completion: str, limits: SandboxLimits
) -> ExecutionResult:
    """Compile (once) and run one candidate in a fresh sandbox directory."""
    runner = get_runner(problem.language)
    source = assemble_program(problem, completion)
    compile_s = run_s = 0.0
    with sandbox.slot() as box:
        box.write(runner.source_name, source)
        env = dict(runner.env)
        if runner.cache_env:
            env[runner.cache_env] = str(box.cache_dir(runner.language))
        if runner.compile is not None:
            t = time.perf_counter()
            c = box.run(runner.resolved(runner.compile), runner.limits_for(limits, "compile"), env)
            compile_s = time.perf_counter() - t
            if not c.ok:
                why = c.describe() if (c.timed_out or c.signal) else ""
                detail = _first_error(c.stderr) or _first_error(c.stdout)
                reason = "; ".join(x for x in (why, detail) if x) or c.describe()
                return ExecutionResult(
                    problem.task_id,
                    problem.language,
                    "compile_error",
                    reason,
                    compile_s,
                    0.0,
                    c.stdout[-_TAIL:],
                    c.stderr[-_TAIL:],
                )
        t = time.perf_counter()
        r = box.run(runner.resolved(runner.run), runner.limits_for(limits, "run"), env)
        run_s = time.perf_counter() - t
    status, reason = _classify_run(r, problem.language)
    return ExecutionResult(
        problem.task_id,
        problem.language,
        status,
        reason,
        compile_s,
        run_s,
        r.stdout[-_TAIL:],
        r.stderr[-_TAIL:],
    )


def execute(
    pairs: Sequence[tuple[Problem, str]],
    workers: int | None = None,
    limits: SandboxLimits | None = None,
    progress: bool = False,
    sandbox: Sandbox | None = None,
) -> list[ExecutionResult]:
    """Run every (problem, completion) pair; results come back in input order.

    ``workers`` defaults to the number of CPU cores. Toolchains are checked up front, so a
    missing compiler is one clear error, not a column of compile errors.
    """
    pairs = list(pairs)
    if not pairs:
        return []
    check_toolchains(sorted({p.language for p, _ in pairs}))
    workers = max(1, workers or os.cpu_count() or 1)
    limits = limits or SandboxLimits()
    own = sandbox is None
    box = sandbox or Sandbox(slots=workers)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(execute_one, box, p, c, limits) for p, c in pairs]
            bar = tqdm(total=len(futures), desc="executing", unit="prog", disable=not progress)
            results = []
            for f in futures:
                results.append(f.result())
                bar.update(1)
            bar.close()
    finally:
        if own:
            box.close()
    return results
