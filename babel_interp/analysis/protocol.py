"""The protocol every analyzer follows: compute, return a result, never draw.

An analyzer module exposes ``analyze(run_or_model, config) -> Result`` (``analyze_run`` for
the run form where both exist). A result

* ``to_dataframe()``: its main table, one row per (checkpoint, ...) measurement;
* ``save(directory)``: writes every table it holds under ``directory`` (atomic writes, see
  :mod:`babel_interp.io`) and returns the paths written;
* ``load(directory)`` (a classmethod): reads back what ``save`` wrote, equal in its tables.

Figures are drawn by :mod:`babel_interp.report` from saved or in-memory results; nothing under
:mod:`babel_interp.analysis` imports the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import pandas as pd

from babel_interp.runs import Run

R = TypeVar("R", bound="AnalysisResult")


@runtime_checkable
class AnalysisResult(Protocol):
    """What an analyzer returns (see the module doc)."""

    def to_dataframe(self) -> pd.DataFrame: ...

    def save(self, directory: str | os.PathLike) -> list[Path]: ...

    @classmethod
    def load(cls: type[R], directory: str | os.PathLike) -> R: ...


@runtime_checkable
class Analyzer(Protocol):
    """An analyzer's entry point: a run (or its path) and a config in, a result out."""

    def __call__(self, run: Run | str | os.PathLike, config: Any = None) -> AnalysisResult: ...
