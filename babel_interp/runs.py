"""The run directory layout shared by the trainer, the analyzers and the reports.

::

    RUN/run_config.json                 # what was trained: corpus, model, mixture, seed
    RUN/metrics.jsonl                   # one JSON object per logged step / eval
    RUN/checkpoints/step_00000100/      # one complete checkpoint per directory
        model.safetensors, model_config.json, tokenizer/   (babel_interp.model.save_model)
        trainer_state.json              # step, tokens_seen per language, total_tokens, ...
        checkpoint_manifest.json        # every file's size and SHA-256, written last
    RUN/analysis/<analyzer>/...         # tables written by analyzers
    RUN/figures/...                     # figures

A study (:class:`Study`) is a directory of runs::

    STUDY/experiment.json               # the study's config, timings and verdicts
    STUDY/corpus/                       # the study's corpus (when it built one)
    STUDY/sources/                      # the real-code sources it was built from
    STUDY/optimize/                     # mixtures computed from the study's runs
    STUDY/seed_<s>/primary/             # the primary-language run of seed s
    STUDY/seed_<s>/<lang>/continual/    # continued from the primary run on <lang>
    STUDY/seed_<s>/<lang>/scratch/      # trained from scratch on the same <lang> data

:class:`Run` and :class:`Study` are the only places that format these paths; analyzers,
reports, the optimizer's evidence and the experiments ask them.

Paths recorded on disk travel with the directory that records them. ``run_config.json`` names
the corpus relative to the run directory when the corpus lies inside the run or beneath one of
its :data:`CORPUS_RELATIVE_LEVELS` nearest ancestors (a study's ``STUDY/corpus`` seen from
``STUDY/seed_<s>/<lang>/<kind>`` is ``../../../corpus``), else absolute; ``corpus_absolute``
keeps where it was at training time, the fallback when only the run moved. ``experiment.json``
names the study's corpus by its absolute path and, when it lies beneath the study, by
``corpus_relative`` too. Read them through :func:`run_corpus_dir` (:attr:`Run.corpus_dir`) and
:func:`study_corpus_dir` (:meth:`Study.corpus_dir`): a relative path is relative to the run or
study directory, never to the working directory.

A checkpoint directory is written under a temporary name and renamed when complete, so any
``step_*`` directory that exists is whole.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.io import read_json, read_jsonl

CHECKPOINTS = "checkpoints"
RUN_CONFIG = "run_config.json"
METRICS = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"
STEP_DIR = re.compile(r"^step_(\d{8})$")


def checkpoint_dirname(step: int) -> str:
    """``step_00000100`` for step 100: sorts lexically in step order."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return f"step_{step:08d}"


@dataclass
class Checkpoint:
    """One complete checkpoint of a run."""

    step: int
    path: Path
    tokens_seen: dict[str, int] = field(default_factory=dict)
    total_tokens: int = 0

    @property
    def name(self) -> str:
        return self.path.name


def list_checkpoints(run_dir: str | os.PathLike) -> list[Checkpoint]:
    """Every complete checkpoint of ``run_dir``, in step order."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINTS}/ directory: is it a run?")
    out = []
    for d in sorted(root.iterdir()):
        m = STEP_DIR.match(d.name)
        state_path = d / TRAINER_STATE
        if not (m and d.is_dir() and state_path.is_file()):
            continue
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{state_path} is not valid JSON ({exc}); `babel-interp verify {run_dir}` lists "
                "every damaged checkpoint, and `train --resume` skips them"
            ) from None
        out.append(
            Checkpoint(
                step=int(m.group(1)),
                path=d,
                tokens_seen={k: int(v) for k, v in state.get("tokens_seen", {}).items()},
                total_tokens=int(state.get("total_tokens", 0)),
            )
        )
    return out


def select_checkpoints(
    run_dir: str | os.PathLike, steps: list[int] | None = None
) -> list[Checkpoint]:
    """The checkpoints at ``steps`` (all when None); an unknown step is an error naming it."""
    ckpts = list_checkpoints(run_dir)
    if steps is None:
        return ckpts
    by_step = {c.step: c for c in ckpts}
    missing = [s for s in steps if s not in by_step]
    if missing:
        raise ValueError(
            f"run {run_dir} has no checkpoint at step(s) {missing}; it has {sorted(by_step)}"
        )
    return [by_step[s] for s in steps]


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The run's ``run_config.json``."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {run_dir} is not a training run")
    return read_json(path, "run configuration")


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All records of ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    return read_jsonl(Path(run_dir) / METRICS)


def analysis_dir(run_dir: str | os.PathLike, analyzer: str) -> Path:
    """``RUN/analysis/<analyzer>/``, created."""
    d = Path(run_dir) / "analysis" / analyzer
    d.mkdir(parents=True, exist_ok=True)
    return d


def figures_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/figures/``, created."""
    d = Path(run_dir) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


# How many directories above a run its corpus may lie and still be recorded relative to it:
# three reach a study's root from its deepest runs (STUDY/seed_<s>/<lang>/<kind>) and the
# harness's output from its runs (OUT/runs/<mixture>/seed_<s>).
CORPUS_RELATIVE_LEVELS = 3


def portable_path(path: str | os.PathLike, base: str | os.PathLike, levels: int = 0) -> str:
    """``path`` as ``base`` should record it: relative to ``base`` (POSIX separators) when
    ``path`` lies inside ``base`` or beneath one of its ``levels`` nearest ancestors, else
    absolute. Both are resolved first; the filesystem root never counts as a shared ancestor
    (a path reachable from ``base`` only through ``/`` stays absolute)."""
    target, base = Path(path).resolve(), Path(base).resolve()
    for anc in [base, *base.parents][: levels + 1]:
        if anc == Path(anc.anchor):
            break
        if target == anc or anc in target.parents:
            return Path(os.path.relpath(target, base)).as_posix()
    return str(target)


def recorded_corpus_path(corpus: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """How ``run_config.json`` of ``run_dir`` records ``corpus``: relative to the run when the
    corpus lies inside it or beneath one of its :data:`CORPUS_RELATIVE_LEVELS` nearest
    ancestors (so a study or harness directory moved as a whole keeps its corpus), else
    absolute."""
    return portable_path(corpus, run_dir, CORPUS_RELATIVE_LEVELS)


def resolve_recorded_path(
    base: str | os.PathLike, recorded: str | os.PathLike, fallback: str | os.PathLike | None = None
) -> Path:
    """A path that the directory ``base`` recorded: an absolute one as is, a relative one
    relative to ``base`` (never the working directory). When it does not exist and
    ``fallback`` (an absolute path recorded beside it) does, the fallback."""
    path = Path(recorded)
    if not path.is_absolute():
        path = (Path(base) / path).resolve()
    if not path.exists() and fallback and Path(fallback).is_absolute() and Path(fallback).exists():
        return Path(fallback)
    return path


def run_corpus_dir(run_dir: str | os.PathLike) -> Path:
    """The corpus directory a run was trained on (``run_config.json``'s ``corpus``).

    A relative path is relative to the run directory (what the trainer records when the
    corpus lies near the run: :func:`recorded_corpus_path`), so a study moved as a whole keeps
    its runs' corpora; when it is not there, ``corpus_absolute`` (where the corpus was at
    training time) is tried, so a run moved on its own keeps it too. An absolute path (older
    runs record only that) is taken as is.
    """
    conf = read_run_config(run_dir)
    corpus = conf.get("corpus")
    if not corpus:
        raise ValueError(f"{Path(run_dir) / RUN_CONFIG} names no corpus")
    path = resolve_recorded_path(run_dir, corpus, conf.get("corpus_absolute"))
    if not path.exists():
        raise FileNotFoundError(f"the corpus of run {run_dir} ({corpus}) does not exist")
    return path


class Run:
    """One training run's directory: its config, corpus, checkpoints and analysis tables.

    Cheap to construct (nothing is read until asked); every accessor raises an error that names
    the run and what is missing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def of(cls, run: Run | str | os.PathLike) -> Run:
        """``run`` as a :class:`Run` (a path is wrapped, a Run returned as is)."""
        return run if isinstance(run, Run) else cls(run)

    # -- what was trained ------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """``run_config.json``."""
        return read_run_config(self.path)

    @property
    def train_config(self) -> dict[str, Any]:
        """The ``train`` section of the run config (``{}`` when absent), its ``corpus``
        resolved as :func:`run_corpus_dir` resolves the run's (a usable
        :class:`~babel_interp.training.TrainConfig` from any working directory)."""
        conf = self.config
        train = dict(conf.get("train", {}))
        if train.get("corpus"):
            train["corpus"] = str(
                resolve_recorded_path(self.path, train["corpus"], conf.get("corpus_absolute"))
            )
        return train

    @property
    def corpus_dir(self) -> Path:
        """The corpus the run was trained on (see :func:`run_corpus_dir`)."""
        return run_corpus_dir(self.path)

    def corpus(self) -> Any:
        """A :class:`~babel_interp.corpus.shards.CorpusReader` of the run's corpus."""
        from babel_interp.corpus.shards import CorpusReader

        return CorpusReader(self.corpus_dir)

    def target_languages(self) -> list[str]:
        """Languages the run trained on with weight > 0 (the run config's mixture), else the
        corpus's languages."""
        conf = self.config
        mixture = conf.get("mixture") or conf.get("train", {}).get("mixture") or {}
        weights = mixture.get("weights") if isinstance(mixture, dict) else None
        if weights:
            return [lang for lang, w in weights.items() if float(w) > 0]
        return list(self.corpus().languages)

    def metrics(self) -> list[dict]:
        """Every record of ``metrics.jsonl``."""
        return read_metrics(self.path)

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoints(self, steps: Sequence[int] | None = None) -> list[Checkpoint]:
        """The complete checkpoints at ``steps`` (all when None), in step order."""
        return select_checkpoints(self.path, None if steps is None else list(steps))

    def checkpoint(self, step: int) -> Checkpoint:
        """The checkpoint at ``step``."""
        return self.checkpoints([step])[0]

    def latest(self) -> Checkpoint:
        """The newest complete checkpoint."""
        ckpts = self.checkpoints()
        if not ckpts:
            raise FileNotFoundError(f"run {self.path} has no complete checkpoint")
        return ckpts[-1]

    def load_model(
        self, checkpoint: Checkpoint | int | None = None, device: Any = "auto", **kwargs: Any
    ) -> tuple[Any, Any]:
        """``(model, ModelConfig)`` of a checkpoint (a Checkpoint, a step, or the latest), on
        ``device`` (see :func:`babel_interp.devices.resolve_device`)."""
        from babel_interp.devices import resolve_device
        from babel_interp.model import load_model

        if checkpoint is None:
            checkpoint = self.latest()
        elif isinstance(checkpoint, int):
            checkpoint = self.checkpoint(checkpoint)
        return load_model(checkpoint.path, device=resolve_device(device), **kwargs)

    def iter_models(
        self, steps: Sequence[int] | None = None, device: Any = "auto", **kwargs: Any
    ) -> Iterator[tuple[Checkpoint, Any, Any]]:
        """``(checkpoint, model, ModelConfig)`` for each selected checkpoint, one model in
        memory at a time."""
        for ckpt in self.checkpoints(steps):
            model, mcfg = self.load_model(ckpt, device=device, **kwargs)
            yield ckpt, model, mcfg
            del model

    def validation_windows(
        self, language: str, n_windows: int, seq_len: int, n_ctx: int | None = None
    ) -> Any:
        """``[n, min(seq_len, n_ctx)]`` validation windows of ``language``, evenly spread over
        the corpus's validation split (inputs only)."""
        return validation_windows(self.corpus(), language, n_windows, seq_len, n_ctx)

    # -- outputs ---------------------------------------------------------------------------
    def analysis_dir(self, analyzer: str) -> Path:
        """``RUN/analysis/<analyzer>/``, created."""
        return analysis_dir(self.path, analyzer)

    def figures_dir(self) -> Path:
        """``RUN/figures/``, created."""
        return figures_dir(self.path)


def validation_windows(
    reader: Any, language: str, n_windows: int, seq_len: int, n_ctx: int | None = None
) -> Any:
    """``n_windows`` evenly spread ``[n, L]`` validation windows of one language of a corpus
    reader, ``L = min(seq_len, n_ctx)`` (a window never exceeds the model's context)."""
    import torch

    from babel_interp.training.sampler import eval_windows

    if n_ctx is not None:
        seq_len = min(int(seq_len), int(n_ctx))
    split = reader.split("val")
    windows = eval_windows(split, [language], seq_len, n_windows)
    if not windows or not windows[0].starts:
        raise ValueError(f"corpus {reader.dir} has no validation tokens of {language!r}")
    # Evaluation windows carry one extra token (the last target); hooks need model inputs only.
    return torch.from_numpy(windows[0].tokens(split))[:, :seq_len]


STUDY_KINDS = ("continual", "scratch")


@dataclass(frozen=True)
class Study:
    """A study directory: per seed a primary run, and per target language a run continued from
    it and a run trained from scratch on the same data (see the module doc)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def corpus(self) -> Path:
        """``STUDY/corpus/``: where a study builds its own corpus (:meth:`corpus_dir` is the
        one it used, which may have been given)."""
        return self.root / "corpus"

    def corpus_dir(self, meta: dict[str, Any] | None = None) -> Path:
        """The corpus the study used, as its ``experiment.json`` records it (``meta``: that
        file's content, read when not given): see :func:`study_corpus_dir`."""
        if meta is None:
            meta = read_json(self.meta, "study") if self.meta.is_file() else {}
            if not isinstance(meta, dict):
                raise ValueError(f"study file {self.meta} does not hold a JSON object")
        return study_corpus_dir(self.root, meta)

    @property
    def figures(self) -> Path:
        """``STUDY/figures/``."""
        return self.root / "figures"

    @property
    def meta(self) -> Path:
        """``STUDY/experiment.json``: the study's config, timings and verdicts."""
        return self.root / "experiment.json"

    @property
    def sources(self) -> Path:
        """``STUDY/sources/``: the real-code sources of its corpus."""
        return self.root / "sources"

    @property
    def optimize(self) -> Path:
        """``STUDY/optimize/``: mixtures computed from its runs."""
        return self.root / "optimize"

    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed_{seed}"

    def primary(self, seed: int) -> Path:
        """The primary-language run of ``seed``."""
        return self.seed_dir(seed) / "primary"

    def run_dir(self, seed: int, language: str, kind: str) -> Path:
        """The ``kind`` (``continual`` or ``scratch``) run of ``language`` under ``seed``."""
        if kind not in STUDY_KINDS:
            raise ValueError(f"study run kind must be one of {STUDY_KINDS}, got {kind!r}")
        return self.seed_dir(seed) / language / kind

    def continual(self, seed: int, language: str) -> Path:
        return self.run_dir(seed, language, "continual")

    def scratch(self, seed: int, language: str) -> Path:
        return self.run_dir(seed, language, "scratch")

    def run(self, seed: int, language: str, kind: str) -> Run:
        """The :class:`Run` of ``run_dir(seed, language, kind)``."""
        return Run(self.run_dir(seed, language, kind))

    @staticmethod
    def key(seed: int, language: str, kind: str) -> str:
        """``seed_<s>/<lang>/<kind>``: how study metadata names a run."""
        return f"seed_{seed}/{language}/{kind}"

    def seeds(self) -> list[int]:
        """The seeds with a directory, in order."""
        out = []
        for d in self.root.glob("seed_*"):
            m = re.fullmatch(r"seed_(\d+)", d.name)
            if m and d.is_dir():
                out.append(int(m.group(1)))
        return sorted(out)

    def languages(self, seed: int) -> list[str]:
        """The target languages with a run directory under ``seed``."""
        d = self.seed_dir(seed)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if any((p / k).is_dir() for k in STUDY_KINDS))

    def runs(self, kind: str | None = None) -> Iterator[tuple[int, str, str, Run]]:
        """``(seed, language, kind, Run)`` for every existing run (one kind when given)."""
        kinds = STUDY_KINDS if kind is None else (kind,)
        for seed in self.seeds():
            for lang in self.languages(seed):
                for k in kinds:
                    if self.run_dir(seed, lang, k).is_dir():
                        yield seed, lang, k, self.run(seed, lang, k)


def study_corpus_fields(root: str | os.PathLike, corpus: str | os.PathLike) -> dict[str, str]:
    """How ``experiment.json`` of the study at ``root`` records its corpus: ``corpus``, the
    absolute path, and, when the corpus lies beneath the study, ``corpus_relative`` (relative to
    ``root``), which travels with a study moved as a whole. Read back with
    :func:`study_corpus_dir`."""
    fields = {"corpus": str(Path(corpus).resolve())}
    rel = portable_path(corpus, root)
    if not Path(rel).is_absolute():
        fields["corpus_relative"] = rel
    return fields


def study_corpus_dir(root: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """The corpus of the study at ``root`` from its ``experiment.json`` content ``meta``.

    The first that exists of: ``corpus_relative`` (relative to ``root``), ``corpus``
    (absolute; a relative one is taken relative to ``root``, never the working directory) and
    ``STUDY/corpus``, where a study builds its own (older studies recorded ``corpus`` relative
    to the working directory they ran in, e.g. ``runs/demo/corpus``). When none exists, the
    first recorded one (a study whose corpus is gone; callers check).
    """
    root = Path(root)
    candidates = [
        resolve_recorded_path(root, meta[key])
        for key in ("corpus_relative", "corpus")
        if meta.get(key)
    ]
    for path in [*candidates, Study(root).corpus]:
        if path.exists():
            return path
    return candidates[0] if candidates else Study(root).corpus
