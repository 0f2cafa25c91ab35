"""The evaluation harness: the same model trained on each mixture at an equal token budget.

For every (mixture, seed) one run is trained through :func:`babel_interp.training.train` with the
same model shape, batch, schedule and number of steps, so each run sees the same number of
training tokens. The per-language validation bits per byte of every evaluation are collected and
summarized (:mod:`babel_interp.optimizer.summary`): mean and 95% interval over seeds per language,
macro average, worst language, primary regression, tokens-to-target speedup against the
reference mixture, and the optimizer's overhead as a share of training time. The tables are
written as CSV and Markdown; the result carries what its figures need, and
:func:`babel_interp.report.mixture_plots.plot_harness_result` draws them.

Mixtures are given by name -> spec:

* a method spec (``proportional``, ``temperature:temperature=3``, ``unimax:max_epochs=2``,
  ``babel-tower``, ``babel-tower:evidence=FILE``) computed on the corpus for the budget;
* ``controller`` or ``controller:boost=3,patience=2,share=true``: proportional base weights
  steered online by :class:`~babel_interp.optimizer.controller.StageAwareController`
  (``share=true`` adds the working-language analyzer as a signal);
* a :class:`~babel_interp.mixture.Mixture`, a mixture JSON path or a compact string.

``babel-tower`` without an evidence file runs the evidence phase first, once for all seeds: a
primary-only model, then one continual-pretraining run per new language from it, whose loss
curves (and the stage detector) give the allocation. Its wall time is that method's optimizer
overhead: what the paper's recipe costs before the final training.

Runs live under ``OUT/runs/<mixture>/seed_<s>/``; a completed run is reused and an interrupted
one resumed, so a harness killed at any point loses at most the run in progress since its last
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from babel_interp.config import ConfigBase, check_choice
from babel_interp.corpus.shards import MANIFEST, CorpusReader
from babel_interp.io import write_csv_atomic, write_json_atomic, write_text_atomic
from babel_interp.mixture import Mixture, load_mixture
from babel_interp.optimizer.methods import (
    METHODS,
    MethodSpec,
    allocate,
    parse_params,
    write_mixture_file,
)
from babel_interp.optimizer.summary import (
    RunOutcome,
    markdown_table,
    per_seed_measures,
    summarize,
)
from babel_interp.optimizer.verdicts import method_of, method_verdicts, verdicts_markdown
from babel_interp.profiles import HARNESS_PROFILES, harness_profile
from babel_interp.runs import read_metrics

RUN_RECORD = "harness_run.json"


@dataclass
class HarnessConfig(ConfigBase):
    """What to compare and how.

    ``corpus`` None builds the embedded default (the synthetic five-language corpus, sized by the
    profile) under ``OUT/corpus``. ``token_budget`` is the training tokens of every run (rounded
    up to whole steps of ``batch_size * seq_len``). ``model`` (a ModelConfig dict) overrides
    ``preset``. ``reference`` is the mixture speedups and regressions are measured against.
    ``execution_problems`` > 0 also measures pass@1 (greedy, executed in the sandbox) of every
    run's final model in every corpus language with a runner, on ``execution_suite``
    (``synthetic``: held-out programs of the corpus; ``humaneval``; or a JSONL file).
    ``paper_experiment`` also trains, from scratch, one pass over the corpus the babel-tower
    allocation produced (cut languages keep only their budget), the paper's own experiment,
    compared with the reference at equal steps and at each run's end
    (:mod:`babel_interp.optimizer.paper_experiment`).
    """

    out: str
    corpus: str | None = None
    mixtures: dict[str, Any] = field(default_factory=dict)
    profile: str = "quick"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    token_budget: int = 100_000
    preset: str = "tiny"
    model: dict[str, Any] | None = None
    batch_size: int = 16
    seq_len: int = 128
    eval_every: int = 25
    eval_windows: int = 16
    lr: float = 2e-3
    warmup_steps: int = 20
    primary: str = "python"
    reference: str = "proportional"
    corpus_languages: list[str] = field(default_factory=lambda: ["python", "php"])
    corpus_docs: int | dict[str, int] = 100
    corpus_vocab: int = 1024
    evidence_primary_steps: int = 100
    evidence_steps: int = 100
    evidence_every: int = 10
    evidence_working_language: bool = False
    evidence_probes_per_pair: int = 5
    checkpoint_every: int = 0
    execution_problems: int = 0
    execution_suite: str = "synthetic"
    execution_tokens: int = 128
    paper_experiment: bool = False
    num_threads: int | None = None
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        if not self.out:
            raise ValueError("HarnessConfig.out must be a directory path")
        check_choice("HarnessConfig", "profile", self.profile, HARNESS_PROFILES)
        if not self.mixtures:
            raise ValueError("HarnessConfig.mixtures must name at least one mixture")
        if self.reference not in self.mixtures:
            raise ValueError(
                f"HarnessConfig.reference {self.reference!r} is not one of the mixtures "
                f"{sorted(self.mixtures)}"
            )
        for name in self.mixtures:
            if not name or any(c in name for c in "/\\") or name.startswith("."):
                raise ValueError(f"HarnessConfig.mixtures: {name!r} is not a usable name")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"HarnessConfig.seeds must be distinct and non-empty: {self.seeds}")
        if self.profile in ("cpu", "gpu", "full") and len(self.seeds) < 3:
            raise ValueError(
                f"HarnessConfig.seeds: the {self.profile} profile needs at least 3 seeds"
            )
        if self.paper_experiment and not any(
            method_of(spec) == "babel-tower" for spec in self.mixtures.values()
        ):
            raise ValueError(
                "HarnessConfig.paper_experiment needs a babel-tower mixture: the experiment "
                "trains on the corpus that allocation produces"
            )
        for name in (
            "token_budget",
            "batch_size",
            "seq_len",
            "eval_every",
            "eval_windows",
            "evidence_primary_steps",
            "evidence_steps",
            "evidence_every",
            "evidence_probes_per_pair",
            "execution_tokens",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HarnessConfig.{name} must be a positive int, got {value!r}")
        if isinstance(self.checkpoint_every, bool) or not (
            isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 0
        ):
            raise ValueError(
                f"HarnessConfig.checkpoint_every must be an int >= 0, got {self.checkpoint_every!r}"
            )
        if isinstance(self.execution_problems, bool) or not (
            isinstance(self.execution_problems, int) and self.execution_problems >= 0
        ):
            raise ValueError(
                f"HarnessConfig.execution_problems must be an int >= 0, "
                f"got {self.execution_problems!r}"
            )
        if self.num_threads is not None and (
            not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ValueError(
                f"HarnessConfig.num_threads must be None or an int >= 1, got {self.num_threads!r}"
            )
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"HarnessConfig.lr must be positive, got {self.lr!r}")
        if self.primary not in self.corpus_languages and self.corpus is None:
            raise ValueError(
                f"HarnessConfig.primary {self.primary!r} is not in corpus_languages "
                f"{self.corpus_languages}"
            )

    @property
    def steps(self) -> int:
        """Optimizer steps of every run: the budget in whole batches."""
        return math.ceil(self.token_budget / (self.batch_size * self.seq_len))

    def to_dict(self) -> dict[str, Any]:
        # A mixture spec is written in a form _resolve reads back: a Mixture as its dict, a dict
        # spec as is, any other spec (a MethodSpec, a path) as its string.
        d = super().to_dict()
        d["mixtures"] = {
            k: (v.to_dict() if isinstance(v, Mixture) else str(v) if not isinstance(v, dict) else v)
            for k, v in self.mixtures.items()
        }
        return d

    @classmethod
    def for_profile(
        cls, profile: str, out: str, mixtures: Mapping[str, Any] | None = None, **overrides: Any
    ) -> HarnessConfig:
        """The profile's defaults (:data:`babel_interp.profiles.HARNESS_PROFILES`), with
        ``mixtures`` and any field overridden."""
        d = harness_profile(profile)
        if mixtures:
            d["mixtures"] = dict(mixtures)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(out=str(out), profile=profile, **d)


@dataclass
class HarnessResult:
    """Every run's outcome, the per-seed measures, the table, and where files went.

    ``curves`` holds every evaluation of every run (``mixture, seed, step, tokens, language,
    val_loss, val_bpb``), ``languages`` the corpus languages measured (corpus order),
    ``shares`` each mixture's realized share of training tokens per language (mean over
    seeds), ``verdicts`` each mixture against the best simple baseline
    (:func:`~babel_interp.optimizer.verdicts.method_verdicts`), ``paper`` the paper's
    experiment (:mod:`~babel_interp.optimizer.paper_experiment`; empty unless run), and
    ``calibration_points`` the loss proxy against the measured working-language
    share at each evidence checkpoint (``proxy, measured, language``; empty when not measured):
    what :func:`babel_interp.report.mixture_plots.plot_harness_result` draws.
    """

    outcomes: list[RunOutcome]
    per_seed: pd.DataFrame
    table: pd.DataFrame
    markdown: str
    weights: dict[str, dict[str, float]]
    paths: dict[str, str]
    notes: list[str] = field(default_factory=list)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    languages: list[str] = field(default_factory=list)
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration_points: pd.DataFrame = field(default_factory=pd.DataFrame)
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    paper: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dataframe(self) -> pd.DataFrame:
        """The comparison table: one row per mixture."""
        return self.table


# ------------------------------------------------------------------------------------ corpus
def ensure_corpus(cfg: HarnessConfig) -> Path:
    """The corpus to train on: ``cfg.corpus``, or the embedded default built under OUT/corpus."""
    if cfg.corpus is not None:
        path = Path(cfg.corpus)
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{path} is not a corpus directory ({MANIFEST} is missing)")
        return path
    from babel_interp.corpus.build import build_corpus, synthetic_corpus_config

    path = Path(cfg.out) / "corpus"
    if (path / MANIFEST).is_file():
        return path
    build_corpus(
        synthetic_corpus_config(
            path,
            languages=tuple(cfg.corpus_languages),
            docs_per_language=cfg.corpus_docs,
            vocab_size=cfg.corpus_vocab,
            progress=cfg.progress,
        )
    )
    return path


# ------------------------------------------------------------------------------------ training
def _train_config(
    cfg: HarnessConfig,
    corpus: Path,
    out: Path,
    mixture: Mixture,
    seed: int,
    steps: int,
    eval_every: int,
    ckpt_steps: list[int],
    init_from: str | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Any:
    from babel_interp.model import ModelConfig
    from babel_interp.training import (
        CheckpointConfig,
        CheckpointSchedule,
        LRSchedule,
        OptimConfig,
        TrainConfig,
    )

    model = None
    if cfg.model is not None and init_from is None:
        model = ModelConfig.from_dict(dict(cfg.model))
    warmup = min(cfg.warmup_steps, max(1, steps // 5))
    return TrainConfig(
        corpus=str(corpus),
        out=str(out),
        preset=cfg.preset,
        model=model,
        mixture=mixture,
        steps=steps,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        optim=OptimConfig(schedule=LRSchedule(lr=cfg.lr, warmup_steps=warmup)),
        eval_every=eval_every,
        eval_windows=cfg.eval_windows,
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="steps", steps=ckpt_steps, include_start=False),
            # Resume points only: a killed harness run restarts from the last one.
            resume_every=cfg.checkpoint_every if init_from is None else 0,
            keep_last=1 if init_from is None else None,
        ),
        init_from=init_from,
        resume=resume,
        seed=seed,
        device=cfg.device,
        progress=progress,
    )


def _completed(run_dir: Path) -> bool:
    return (run_dir / RUN_RECORD).is_file()


class HarnessInterrupted(RuntimeError):
    """A run stopped on a signal: the harness stops too, and a rerun resumes that run."""


def _train_run(tcfg: Any, callbacks: list[Any]) -> Any:
    from babel_interp.training import train

    result = train(tcfg, callbacks)
    if result.interrupted:
        # Never record an interrupted run as done: its directory holds a resumable checkpoint.
        raise HarnessInterrupted(
            f"run {tcfg.out} stopped on {result.stop_reason} at step {result.step}; "
            "run the harness again to resume it"
        )
    return result


# ------------------------------------------------------------------------------------ evidence
def run_evidence_phase(cfg: HarnessConfig, corpus: Path) -> tuple[dict[str, Any], float, list]:
    """Primary-only pretraining, then one continual-pretraining run per new language.

    Returns the per-language evidence, the wall time spent (the method's overhead), and the run
    records for the provenance. Completed runs are reused.
    """
    from babel_interp.optimizer.evidence import evidence_from_run
    from babel_interp.optimizer.provenance import run_record

    root = Path(cfg.out) / "evidence"
    reader = CorpusReader(corpus)
    sizes = {
        lang: int(reader.manifest["splits"]["train"]["languages"][lang]["tokens"])
        for lang in reader.languages
    }
    new_langs = [lang for lang in reader.languages if lang != cfg.primary and sizes[lang] > 0]
    record_path = root / "evidence.json"
    if record_path.is_file():
        saved = json.loads(record_path.read_text(encoding="utf-8"))
        from babel_interp.optimizer.babel_tower import LanguageEvidence

        evidence = {k: LanguageEvidence.from_dict(v) for k, v in saved["evidence"].items()}
        return evidence, float(saved["seconds"]), saved["runs"]
    t0 = time.perf_counter()
    primary_dir = root / cfg.primary
    p_steps = cfg.evidence_primary_steps
    if not _completed(primary_dir):
        tcfg = _train_config(
            cfg,
            corpus,
            primary_dir,
            Mixture(weights={cfg.primary: 1.0}),
            seed=0,
            steps=p_steps,
            eval_every=p_steps,
            ckpt_steps=[p_steps],
            resume=primary_dir.exists(),
        )
        _train_run(tcfg, [])
        write_json_atomic(primary_dir / RUN_RECORD, {"completed": True})
    evidence = {}
    runs = []
    every = cfg.evidence_every
    steps = cfg.evidence_steps
    for lang in tqdm(new_langs, desc="evidence runs", disable=not cfg.progress):
        run_dir = root / lang
        if not _completed(run_dir):
            tcfg = _train_config(
                cfg,
                corpus,
                run_dir,
                Mixture(weights={lang: 1.0}),
                seed=0,
                steps=steps,
                eval_every=every,
                ckpt_steps=list(range(0, steps + 1, every)),
                init_from=str(primary_dir),
                resume=run_dir.exists(),
            )
            _train_run(tcfg, [])
            write_json_atomic(run_dir / RUN_RECORD, {"completed": True})
        if cfg.evidence_working_language:
            _working_language(cfg, run_dir, lang)
        ev = evidence_from_run(run_dir, lang, primary=cfg.primary, detect=True)
        evidence[lang] = ev
        runs.append(run_record(run_dir, ev.steps))
    seconds = time.perf_counter() - t0
    write_json_atomic(
        record_path,
        {
            "evidence": {k: v.to_dict() for k, v in evidence.items()},
            "seconds": seconds,
            "runs": runs,
        },
    )
    return evidence, seconds, runs


def _working_language(cfg: HarnessConfig, run_dir: Path, lang: str) -> None:
    """The working-language analyzer over a continual-pretraining run's checkpoints, so the
    loss proxy can be calibrated against the measured share (cached per checkpoint)."""
    from babel_interp.analysis.working_language.logit_lens import WorkingLanguageConfig, analyze_run

    wl_cfg = WorkingLanguageConfig(
        primary=cfg.primary, target=lang, n_per_pair=cfg.evidence_probes_per_pair, n_boot=200
    )
    analyze_run(run_dir, wl_cfg, progress=cfg.progress)


# ------------------------------------------------------------------------------------ mixtures
@dataclass
class _Resolved:
    name: str
    mixture: Mixture
    controller: dict[str, Any] | None = None
    optimizer_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _resolve(
    cfg: HarnessConfig, corpus: Path, name: str, spec: Any, evidence_cache: dict
) -> _Resolved:
    out = Path(cfg.out) / "mixtures"
    if isinstance(spec, Mixture):
        return _Resolved(name, spec)
    if isinstance(spec, Mapping):
        head, params = str(spec.get("method", "")), {k: v for k, v in spec.items() if k != "method"}
    else:
        head, _, rest = str(spec).partition(":")
        params = parse_params(rest, str(spec)) if head.strip() in (*METHODS, "controller") else {}
        head = head.strip()
    if head == "controller":
        base = allocate("proportional", corpus, cfg.token_budget).mixture
        return _Resolved(name, base, controller=params)
    if head in METHODS:
        ms = MethodSpec.parse(spec)
        evidence = None
        runs: list = []
        seconds = 0.0
        if ms.method == "babel-tower" and "evidence" not in ms.params:
            evidence, seconds, runs = _evidence(cfg, corpus, ms, evidence_cache)
        t0 = time.perf_counter()
        result = allocate(ms, corpus, cfg.token_budget, evidence=evidence, runs=runs)
        seconds += time.perf_counter() - t0
        write_mixture_file(out / f"{name}.json", result)
        return _Resolved(
            name,
            result.mixture,
            optimizer_seconds=seconds,
            notes=result.allocation.notes,
            calibration=result.provenance.calibration,
            evidence=dict(evidence or {}),
            params=dict(result.provenance.params) if ms.method == "babel-tower" else {},
        )
    return _Resolved(name, load_mixture(spec))


def _evidence(
    cfg: HarnessConfig, corpus: Path, ms: MethodSpec, cache: dict
) -> tuple[dict[str, Any], float, list]:
    """The evidence phase's result for a babel-tower spec without an evidence file (run once
    per harness, cached in ``cache``), with the spec's primary defaulted to the harness's."""
    if "phase" not in cache:
        cache["phase"] = run_evidence_phase(cfg, corpus)
    ms.params.setdefault("primary", cfg.primary)
    return cache["phase"]


def _controller_callbacks(resolved: _Resolved, cfg: HarnessConfig, corpus: Path) -> list[Any]:
    from babel_interp.optimizer.controller import (
        ControllerConfig,
        StageAwareController,
        WorkingLanguageSignal,
    )
    from babel_interp.training import AnalyzerCallback

    params = dict(resolved.controller or {})
    use_share = bool(params.pop("share", False))
    ccfg = ControllerConfig.from_dict({"primary": cfg.primary, **params})
    callbacks: list[Any] = []
    share_name = None
    if use_share:
        langs = [lang for lang in resolved.mixture.weights if lang != cfg.primary]
        signal = WorkingLanguageSignal(langs, primary=cfg.primary)
        share_name = "working_language_signal"
        callbacks.append(AnalyzerCallback(share_name, signal, when="eval"))
    callbacks.append(StageAwareController(ccfg, share_signal=share_name))
    return callbacks


def _optimizer_seconds(callbacks: list[Any]) -> float:
    total = 0.0
    for cb in callbacks:
        total += float(getattr(cb, "seconds", 0.0))
        fn = getattr(cb, "fn", None)
        total += float(getattr(fn, "seconds", 0.0))
    return total


# ------------------------------------------------------------------------------------ outcomes
def run_curve(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every evaluation of a run: ``tokens``, ``step``, ``language``, ``val_loss``, ``val_bpb``."""
    rows = []
    for r in read_metrics(run_dir):
        if r.get("type") != "eval":
            continue
        for lang, bpb in (r.get("val_bpb") or {}).items():
            if bpb is None:
                continue
            rows.append(
                {
                    "step": int(r["step"]),
                    "tokens": int(r.get("tokens", 0)),
                    "language": lang,
                    "val_loss": (r.get("val_loss") or {}).get(lang),
                    "val_bpb": float(bpb),
                }
            )
    df = pd.DataFrame(rows, columns=["step", "tokens", "language", "val_loss", "val_bpb"])
    return df.drop_duplicates(["step", "language"], keep="last").reset_index(drop=True)


def evaluate_mixtures(cfg: HarnessConfig) -> HarnessResult:
    """Train every (mixture, seed), then write the comparison table and figure under OUT."""
    import torch

    previous = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _evaluate(cfg)
    finally:
        torch.set_num_threads(previous)


def harness_run_dir(out: str | os.PathLike, mixture: str, seed: int) -> Path:
    """``OUT/runs/<mixture>/seed_<s>/``: the run of one mixture and seed."""
    return Path(out) / "runs" / mixture / f"seed_{seed}"


def train_harness_run(
    cfg: HarnessConfig,
    corpus: Path,
    run_dir: Path,
    name: str,
    seed: int,
    mixture: Mixture,
    steps: int,
    callbacks: Any = None,
    optimizer_seconds: float = 0.0,
) -> tuple[RunOutcome, str]:
    """Train (or reuse, or resume) one run of ``mixture`` for ``steps`` steps; returns its
    outcome and a note when it stopped early. ``callbacks`` is a function making the run's
    callbacks (only called when the run trains); ``optimizer_seconds`` is what deciding the
    mixture cost before training."""
    record_path = run_dir / RUN_RECORD
    if not record_path.is_file():
        cbs = callbacks() if callbacks is not None else []
        tcfg = _train_config(
            cfg,
            corpus,
            run_dir,
            mixture,
            seed=seed,
            steps=steps,
            eval_every=min(cfg.eval_every, steps),
            ckpt_steps=[steps],
            resume=(run_dir / "run_config.json").is_file(),
            progress=cfg.progress,
        )
        result = _train_run(tcfg, cbs)
        online = _optimizer_seconds(cbs)
        record = {
            "mixture": name,
            "seed": seed,
            "stop_reason": result.stop_reason,
            "total_tokens": result.total_tokens,
            "tokens_seen": result.tokens_seen,
            "elapsed_s": result.elapsed_s,
            "final_step": result.step,
            "train_seconds": max(result.elapsed_s - online, 1e-9),
            "optimizer_seconds": online + optimizer_seconds,
        }
        write_json_atomic(record_path, record)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    note = ""
    if record["stop_reason"] != "completed":
        note = (
            f"{name} seed {seed} stopped early ({record['stop_reason']}) after "
            f"{record['total_tokens']} tokens"
        )
    outcome = RunOutcome(
        mixture=name,
        seed=seed,
        curve=run_curve(run_dir),
        train_seconds=float(record["train_seconds"]),
        optimizer_seconds=float(record["optimizer_seconds"]),
        run_dir=str(run_dir),
        extra={
            "total_tokens": record["total_tokens"],
            "stop_reason": record["stop_reason"],
            # Records written before final_step existed: the run's last checkpoint.
            "final_step": int(record.get("final_step") or _last_checkpoint_step(run_dir, steps)),
        },
    )
    return outcome, note


def _last_checkpoint_step(run_dir: Path, default: int) -> int:
    from babel_interp.runs import list_checkpoints

    ckpts = list_checkpoints(run_dir)
    return ckpts[-1].step if ckpts else default


def _evaluate(cfg: HarnessConfig) -> HarnessResult:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "harness_config.json", cfg.to_dict())
    corpus = ensure_corpus(cfg)
    reader = CorpusReader(corpus)
    if cfg.primary not in reader.languages:
        raise ValueError(f"primary {cfg.primary!r} is not in corpus {reader.languages}")
    evidence_cache: dict[str, Any] = {}
    resolved = {
        name: _resolve(cfg, corpus, name, spec, evidence_cache)
        for name, spec in cfg.mixtures.items()
    }
    steps = cfg.steps
    outcomes: list[RunOutcome] = []
    notes: list[str] = []
    paths: dict[str, str] = {}
    jobs = [(name, seed) for name in resolved for seed in cfg.seeds]
    for name, seed in tqdm(jobs, desc="harness runs", disable=not cfg.progress):
        r = resolved[name]
        run_dir = harness_run_dir(out, name, seed)
        outcome, note = train_harness_run(
            cfg,
            corpus,
            run_dir,
            name,
            seed,
            r.mixture,
            steps,
            callbacks=lambda r=r: (
                _controller_callbacks(r, cfg, corpus) if r.controller is not None else []
            ),
            optimizer_seconds=r.optimizer_seconds,
        )
        outcomes.append(outcome)
        if note:
            notes.append(note)
    per_seed = per_seed_measures(outcomes, cfg.primary, cfg.reference)
    per_seed["total_tokens"] = [o.extra["total_tokens"] for o in outcomes]
    passk_md = ""
    passk = None
    if cfg.execution_problems > 0:
        passk = _pass_at_1(cfg, outcomes, reader.languages, steps)
        paths["pass_at_1_csv"] = str(write_csv_atomic(out / "pass_at_1.csv", passk))
        passk_md = pass_at_1_markdown(passk, cfg.reference)
    verdicts = method_verdicts(per_seed, cfg.mixtures, passk)
    if not verdicts.empty:
        paths["verdicts_csv"] = str(write_csv_atomic(out / "verdicts.csv", verdicts))
    paper = pd.DataFrame()
    paper_md = ""
    if cfg.paper_experiment:
        paper, paper_md = _paper_experiment(cfg, corpus, evidence_cache, outcomes, passk, notes)
        if not paper.empty:
            paths["paper_csv"] = str(write_csv_atomic(out / "paper_experiment.csv", paper))
    table = summarize(outcomes, cfg.primary, cfg.reference)
    languages = [lang for lang in reader.languages if f"bpb:{lang}" in per_seed.columns]
    md = markdown_table(table, languages)
    weights = {name: dict(r.mixture.weights) for name, r in resolved.items()}
    shares = _realized_shares(outcomes, out)
    bpb_cols = [c for c in per_seed.columns if c.startswith("bpb:")]
    by_mix = {m: g.sort_values("seed")[bpb_cols].to_numpy() for m, g in per_seed.groupby("mixture")}
    names = list(resolved)
    for i, a in enumerate(names):
        for b in names[:i]:
            if by_mix[a].shape == by_mix[b].shape and np.array_equal(by_mix[a], by_mix[b]):
                notes.append(
                    f"{a} trained exactly as {b} (same weights at this budget, e.g. no UniMax cap "
                    "binds): identical results"
                )
    curves = pd.concat(
        [o.curve.assign(mixture=o.mixture, seed=o.seed) for o in outcomes], ignore_index=True
    )
    paths.update(
        {
            "table_csv": str(write_csv_atomic(out / "comparison.csv", table)),
            "per_seed_csv": str(write_csv_atomic(out / "per_seed.csv", per_seed)),
            "curves_csv": str(write_csv_atomic(out / "curves.csv", curves)),
        }
    )
    header = (
        f"# Mixture comparison ({cfg.profile} profile)\n\n"
        f"Equal budget: {steps} steps x {cfg.batch_size} x {cfg.seq_len} = "
        f"{steps * cfg.batch_size * cfg.seq_len} tokens per run; seeds {cfg.seeds}; "
        f"reference {cfg.reference!r}. Values: mean ± 95% CI half-width over seeds "
        f"(validation bits per byte; lower is better). primary_regression: the primary "
        f"language's bpb minus the reference's, paired by seed (positive = worse). speedup: "
        f"reference tokens / this mixture's tokens to reach the reference's final bpb, "
        f"geometric mean over the languages that reached it (> 1 is faster). overhead_share: "
        f"optimizer seconds (evidence runs, analyzers, controller) / training seconds.\n\n"
    )
    notes_md = "".join(f"- {n}\n" for n in notes)
    md_full = (
        header
        + md
        + passk_md
        + verdicts_markdown(verdicts)
        + paper_md
        + ("\nNotes:\n" + notes_md if notes else "")
    )
    calibration_md, points = _calibration_outputs(resolved, out, paths)
    md_full += calibration_md
    paths["table_md"] = str(write_text_atomic(out / "comparison.md", md_full))
    return HarnessResult(
        outcomes,
        per_seed,
        table,
        md_full,
        weights,
        paths,
        notes,
        curves=curves,
        languages=languages,
        shares=shares,
        calibration_points=points,
        verdicts=verdicts,
        paper=paper,
    )


def _paper_experiment(
    cfg: HarnessConfig,
    corpus: Path,
    evidence_cache: dict,
    outcomes: list[RunOutcome],
    passk: pd.DataFrame | None,
    notes: list[str],
) -> tuple[pd.DataFrame, str]:
    """For every babel-tower mixture whose allocation cuts anything: train one pass over its
    corpus per seed and compare it with the reference
    (:mod:`babel_interp.optimizer.paper_experiment`), whose pass@1 is read from ``passk`` (the
    equal-budget runs' table; None when execution is off). The table has a ``mixture``
    column."""
    from babel_interp.optimizer.paper_experiment import (
        arm_name,
        compare_one_pass,
        one_pass_markdown,
        one_pass_mixture,
    )

    reader = CorpusReader(corpus)
    ref = [o for o in outcomes if o.mixture == cfg.reference]
    tables, sections = [], []
    for name, spec in cfg.mixtures.items():
        if method_of(spec) != "babel-tower":
            continue
        ms = MethodSpec.parse(spec)
        evidence, runs = None, None
        if "evidence" not in ms.params:
            evidence, _, runs = _evidence(cfg, corpus, ms, evidence_cache)
        # At the allocation's own total: the optimized corpus, not rescaled to the budget.
        one = one_pass_mixture(allocate(ms, corpus, None, evidence=evidence, runs=runs).allocation)
        if not one.cut:
            notes.append(
                f"the paper's experiment ({name}): the allocation cut nothing, so its optimized "
                "corpus is the original one and one pass over it is the reference's run"
            )
            sections.append(one_pass_markdown(pd.DataFrame(), one, cfg.reference, name))
            continue
        arm = arm_name(name)
        steps = math.ceil(one.total_tokens / (cfg.batch_size * cfg.seq_len))
        mine = []
        for seed in tqdm(cfg.seeds, desc=f"{arm} runs", disable=not cfg.progress):
            o, note = train_harness_run(
                cfg, corpus, harness_run_dir(cfg.out, arm, seed), arm, seed, one.mixture, steps
            )
            mine.append(o)
            if note and o.extra["stop_reason"] != "exhausted":  # one pass ends with its data
                notes.append(note)
        both = None
        if passk is not None:
            mine_passk = _pass_at_1(cfg, mine, reader.languages, steps)
            both = pd.concat([mine_passk, passk], ignore_index=True)
        table = compare_one_pass(mine, ref, both, cfg.reference, arm=arm)
        tables.append(table.assign(mixture=name))
        sections.append(one_pass_markdown(table, one, cfg.reference, name))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return table, "".join(sections)


def _pass_at_1(
    cfg: HarnessConfig, outcomes: Sequence[RunOutcome], languages: Sequence[str], step: int
) -> pd.DataFrame:
    """pass@1 of every run's final checkpoint in every corpus language with a runner: one row
    per (mixture, seed, language). Evaluations already written are reused."""
    from babel_interp.evaluation.evaluate import ExecutionConfig, evaluate_run
    from babel_interp.evaluation.runners import EXECUTION_LANGUAGES

    langs = tuple(x for x in languages if x in EXECUTION_LANGUAGES)
    rows = []
    for o in tqdm(outcomes, desc="pass@1", disable=not cfg.progress):
        ecfg = ExecutionConfig(
            suite=cfg.execution_suite,
            languages=langs,
            max_problems=cfg.execution_problems,
            max_new_tokens=cfg.execution_tokens,
            seed=o.seed,
        )
        # A run that ran out of data (one pass over a corpus) ends before its planned step.
        last = int(o.extra.get("final_step", step))
        res = evaluate_run(o.run_dir, ecfg, steps=[last], device=cfg.device, progress=False)
        for r in res.pass_at_k().itertuples():
            rows.append(
                {
                    "mixture": o.mixture,
                    "seed": o.seed,
                    "language": r.language,
                    "pass_at_1": r.pass_at_k,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "n_problems": r.n_problems,
                }
            )
    return pd.DataFrame(rows)


def pass_at_1_markdown(passk: pd.DataFrame, reference: str) -> str:
    """pass@1 per mixture and language (mean over seeds with a Student-t interval), the macro
    average, the paired difference against ``reference``, and which mixture is best where."""
    from babel_interp.analysis.stats import t_interval

    if passk.empty:
        return ""
    langs = sorted(passk["language"].unique())
    wide = passk.pivot_table(index=["mixture", "seed"], columns="language", values="pass_at_1")
    wide["macro"] = wide[langs].mean(axis=1)
    cols = [*langs, "macro"]

    def cell(values: np.ndarray) -> str:
        values = values[np.isfinite(values)]
        if len(values) < 2:
            return f"{values.mean():.3f}" if len(values) else "—"
        ci = t_interval(values)
        return f"{values.mean():.3f} [{ci.low:.3f}, {ci.high:.3f}]"

    lines = ["| mixture | " + " | ".join(cols) + f" | macro − {reference} (paired) |"]
    lines.append("|---" * (len(cols) + 2) + "|")
    ref = wide.xs(reference, level="mixture")["macro"] if reference in wide.index else None
    for mix, g in wide.groupby(level="mixture"):
        cells = [cell(g[c].to_numpy(dtype=float)) for c in cols]
        diff = "—"
        if ref is not None and mix != reference:
            d = g.droplevel("mixture")["macro"] - ref
            diff = cell(d.dropna().to_numpy(dtype=float))
        lines.append(f"| {mix} | " + " | ".join(cells) + f" | {diff} |")
    means = wide.groupby(level="mixture")[cols].mean()
    best = ", ".join(f"{c}: {means[c].idxmax()}" for c in cols if means[c].max() > 0)
    return (
        "\n## pass@1 by execution (greedy, held-out problems)\n\n"
        "Mean over seeds [95% Student-t interval over seeds]; the last column is the macro "
        "pass@1 minus the reference's, paired by seed.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + (f"Highest mean pass@1 — {best}.\n" if best else "No mixture solves any problem.\n")
    )


def _calibration_outputs(
    resolved: Mapping[str, _Resolved], out: Path, paths: dict[str, str]
) -> tuple[str, pd.DataFrame]:
    """The loss proxy's calibration (when measured): the CSV, a Markdown section, and the
    points (``proxy, measured, language``) its figure shows."""
    from babel_interp.optimizer.babel_tower import BabelTowerAllocationConfig

    points = pd.DataFrame(columns=["proxy", "measured", "language"])
    reports = [c for r in resolved.values() for c in r.calibration]
    if not reports:
        return "", points
    rows = []
    for c in reports:
        rows.append(
            {
                "label": c["label"],
                "n": c["n"],
                "pearson_r": c["pearson"]["r"],
                "pearson_low": c["pearson"]["low"],
                "pearson_high": c["pearson"]["high"],
                "spearman_rho": c["spearman"]["r"],
                "spearman_low": c["spearman"]["low"],
                "spearman_high": c["spearman"]["high"],
                "rmse": c["rmse"],
                "mae": c["mae"],
                "rmse_complement": c["rmse_complement"],
                "mae_complement": c["mae_complement"],
                "orientation": c["orientation"],
            }
        )
    df = pd.DataFrame(rows).drop_duplicates()
    paths["calibration_csv"] = str(write_csv_atomic(out / "calibration.csv", df))
    xs, ys, labels = [], [], []
    seen: set[int] = set()  # mixtures sharing one evidence phase: its points once
    for r in resolved.values():
        bt_cfg = BabelTowerAllocationConfig.from_dict(r.params)
        for lang, ev in r.evidence.items():
            if ev.measured_share is None or id(ev) in seen:
                continue
            seen.add(id(ev))
            try:
                proxy = bt_cfg.fit(ev).share(ev.losses)
            except ValueError:
                continue  # the allocation recorded why this curve gives no proxy
            xs.extend(list(proxy))
            ys.extend(ev.measured_share)
            labels.extend([lang] * len(ev.steps))
    if xs:
        points = pd.DataFrame({"proxy": xs, "measured": ys, "language": labels})
    lines = [
        "\n## Loss proxy against the measured working-language share\n",
        "P(l) = (alpha - l) / (alpha - beta) per continual-pretraining run, against the share of "
        "probes whose middle layers favour the primary identifier (logit lens), at the same "
        "checkpoints. The paper used the proxy without this check.\n",
        "| run | n | Pearson r [95% CI] | Spearman rho [95% CI] | RMSE | RMSE of 1 - P | "
        "orientation |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in df.to_dict("records"):
        lines.append(
            f"| {row['label']} | {row['n']} | {row['pearson_r']:.3f} "
            f"[{row['pearson_low']:.3f}, {row['pearson_high']:.3f}] | {row['spearman_rho']:.3f} "
            f"[{row['spearman_low']:.3f}, {row['spearman_high']:.3f}] | {row['rmse']:.3f} | "
            f"{row['rmse_complement']:.3f} | {row['orientation']} |"
        )
    return "\n".join(lines) + "\n", points


def _realized_shares(outcomes: list[RunOutcome], out: Path) -> dict[str, dict[str, float]]:
    """Per mixture, each language's share of the tokens actually trained (mean over seeds):
    what the controller and budget exhaustion did, not only the starting weights."""
    acc: dict[str, list[dict[str, float]]] = {}
    for o in outcomes:
        rec = json.loads((Path(o.run_dir) / RUN_RECORD).read_text(encoding="utf-8"))
        seen = rec.get("tokens_seen") or {}
        total = sum(seen.values())
        if total > 0:
            acc.setdefault(o.mixture, []).append({k: v / total for k, v in seen.items()})
    return {
        m: {lang: float(np.mean([r.get(lang, 0.0) for r in rows])) for lang in rows[0]}
        for m, rows in acc.items()
    }
