"""Execution problems: the one schema every suite (HumanEval, its translations, synthetic, a user's
JSONL) is written in, and how a completion becomes a program.

A :class:`Problem` is one task in one language. The model continues ``prompt``; its completion is
cut at the first of ``stop_sequences``; the program that runs is

    prompt + completion + "\\n" + tests

``tests`` holds the checks and, for compiled languages, the entry point of the program (Go's
``func main``, C#'s ``Main``, C++'s ``int main``). A test program says "wrong answer" by exiting
with status :data:`WRONG_ANSWER_EXIT` (3); exit 0 means every check passed; any other status is a
runtime error. The convention lets the executor tell a wrong answer from a crash in every
language without parsing output.

The JSONL form is one problem per line with the dataclass's field names, which is also the form of
a user's own suite (``babel-interp evaluate --suite FILE``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.io import atomic_open
from babel_interp.languages import get_language

__all__ = [
    "WRONG_ANSWER_EXIT",
    "Problem",
    "assemble_program",
    "load_problems",
    "save_problems",
    "truncate_at_stop",
]

#: Exit status with which a test program reports a failed check (a wrong answer).
WRONG_ANSWER_EXIT = 3


@dataclass(frozen=True)
class Problem:
    """One execution task in one language.

    ``task_id`` names the task across languages (``"HumanEval/0"`` is the same task in every
    language), so per-task results of two languages can be joined. ``canonical_solution`` is a
    completion known to pass, when the suite has one (it is what validates a translation).
    ``suite`` names the suite the problem comes from; ``meta`` carries suite-specific data
    (plain JSON values only).
    """

    task_id: str
    language: str
    prompt: str
    tests: str
    entry_point: str
    stop_sequences: tuple[str, ...] = ()
    canonical_solution: str | None = None
    suite: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("task_id", "prompt", "tests", "entry_point"):
            value = getattr(self, name)
            if not isinstance(value, str) or (name != "prompt" and not value.strip()):
                raise ValueError(f"Problem.{name} must be a non-empty string, got {value!r}")
        try:
            lang = get_language(self.language).name
        except ValueError as e:
            raise ValueError(f"Problem {self.task_id!r}: {e}") from None
        object.__setattr__(self, "language", lang)
        stops = self.stop_sequences
        if isinstance(stops, str):
            raise ValueError(
                f"Problem {self.task_id!r}: stop_sequences must be a sequence of strings, "
                f"not one string"
            )
        stops = tuple(stops)
        if any(not isinstance(s, str) or not s for s in stops):
            raise ValueError(f"Problem {self.task_id!r}: every stop sequence must be non-empty")
        object.__setattr__(self, "stop_sequences", stops)
        if self.canonical_solution is not None and not isinstance(self.canonical_solution, str):
            raise ValueError(f"Problem {self.task_id!r}: canonical_solution must be a string")
        object.__setattr__(self, "meta", dict(self.meta))

    def program(self, completion: str) -> str:
        """The source that runs for ``completion`` (cut at the stop sequences first)."""
        return assemble_program(self, completion)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop_sequences"] = list(self.stop_sequences)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Problem.from_dict: unknown fields {unknown}")
        missing = sorted(
            n for n in ("task_id", "language", "prompt", "tests", "entry_point") if n not in d
        )
        if missing:
            raise ValueError(f"Problem.from_dict: missing fields {missing}")
        kwargs = dict(d)
        kwargs["stop_sequences"] = tuple(kwargs.get("stop_sequences") or ())
        return cls(**kwargs)


def truncate_at_stop(text: str, stop_sequences: Iterable[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop sequence."""
    cut = len(text)
    for stop in stop_sequences:
        i = text.find(stop)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def assemble_program(problem: Problem, completion: str) -> str:
    """``prompt + completion + "\\n" + tests``, with the completion cut at the stop sequences."""
    body = truncate_at_stop(completion, problem.stop_sequences)
    return problem.prompt + body + "\n" + problem.tests


def save_problems(problems: Iterable[Problem], path: str | os.PathLike) -> Path:
    """Write problems as JSONL (atomically: a reader never sees half a file)."""
    path = Path(path)
    # Not write_jsonl_atomic: prompts keep their non-ASCII characters as they are.
    with atomic_open(path) as f:
        for p in problems:
            f.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    return path


def load_problems(path: str | os.PathLike, languages: Iterable[str] | None = None) -> list[Problem]:
    """Read a JSONL suite; errors name the file and the line. ``languages`` filters."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file {path} does not exist")
    wanted = None if languages is None else {get_language(x).name for x in languages}
    out: list[Problem] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                problem = Problem.from_dict(json.loads(line))
            except (json.JSONDecodeError, ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: not a valid problem: {e}") from None
            if wanted is None or problem.language in wanted:
                out.append(problem)
    if not out:
        raise ValueError(
            f"{path} holds no problems"
            + ("" if wanted is None else f" in the languages {sorted(wanted)}")
        )
    return out
