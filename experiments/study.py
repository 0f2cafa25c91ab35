"""The Babel Tower study: does a new programming language first run on the primary language's
knowledge system, then build its own?

For each seed: train a primary-language (Python) model from scratch; continue pretraining it on
each new language (PHP, C#, Go, C++ by default) with dense-early checkpoints; train the same
target data from scratch as the baseline; then, at every checkpoint of both, run the analyzers:
per-language performance, working language (logit lens with matched controls and a competence
gate), language-transferring neurons (LAPE and contrast scores with permutation and random-init
nulls), the knowledge-transfer ratio on planted facts, token efficiency against the baseline, and
the stage detector. A report gathers it all.

    python -m babel_interp.experiments.babel_tower --profile quick --out runs/demo
    python -m babel_interp.experiments.babel_tower --profile cpu --out runs/real_cpu  # real code
    python -m babel_interp.experiments.babel_tower --profile gpu \\
        --pack-sources runs/sources.tar.xz
    python -m babel_interp.experiments.babel_tower --profile gpu \\
        --sources-archive runs/sources.tar.xz --out runs/real_gpu  # on the GPU
    python -m babel_interp.experiments.babel_tower --config my_study.json
    python -m babel_interp.experiments.babel_tower --profile scan --out runs/scan  # scale scan

Every step is resumable: rerunning the same command reuses finished corpora, runs and analyses.
This module is the study's machinery (its config, training, analyses and report); the command
line above is :mod:`babel_interp.experiments.babel_tower`, and the scale scan
(:mod:`babel_interp.experiments.scan`) runs the same machinery over a grid of shapes.
"""

from __future__ import annotations

import os
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase
from babel_interp.corpus.build import build_corpus, synthetic_corpus_config
from babel_interp.corpus.real import (
    SOURCES_JSON,
    UNAVAILABLE,
    RealSourcesConfig,
    gather_sources,
    pack_sources,
    real_corpus_config,
    unpack_sources,
)
from babel_interp.corpus.shards import MANIFEST
from babel_interp.io import read_json, write_csv_atomic, write_json_atomic
from babel_interp.languages import get_language
from babel_interp.profiles import STUDY_PROFILES, study_profile
from babel_interp.runs import Run, Study, run_corpus_dir, study_corpus_fields

# The trainer, the analyzers, the evaluation and the report import torch or matplotlib: they
# are imported where they are used, so `--help` and a config error answer at once.

CORPUS_KINDS = ("synthetic", "real")


class StudyInterrupted(RuntimeError):
    """A signal stopped one of the study's runs after its resumable checkpoint; ``exit_code``
    is the shell's for that signal (128 + its number)."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(getattr(signal, signal_name, signal.SIGTERM))


@dataclass
class BabelTowerConfig(ConfigBase):
    """One study. Fields left unset take the profile's value
    (:data:`babel_interp.profiles.STUDY_PROFILES`).

    ``corpus`` is ``synthetic`` (the parallel-program generator), ``real`` (Python from this
    interpreter's ``python_trees``, new languages from Debian packages unpacked in
    ``debian_dir``, default ``OUT/debian``; or the sources in ``sources_archive``, a file made by
    ``--pack-sources``, on a machine without the package registry) or the path of a corpus built
    beforehand. ``max_source_mb`` caps each language's source text (0: all of it).
    ``random_inits`` freshly initialized models of the same architecture are scored by the
    working-language analyzer beside each continued run (one random network's excess is not
    zero, only the mean over inits is; their spread is the band a trained model is read against).
    ``neuron_languages`` are extra corpus languages, not trained on, whose activations join
    LAPE's statistics (two-language LAPE is degenerate).
    ``dtype`` and ``compile`` are the trainer's (``bfloat16`` autocast, ``torch.compile``).
    ``n_layers`` and ``d_model`` override the preset's depth and width (0: the preset's); the
    heads keep the preset's ``d_head`` (``n_heads = d_model / d_head``) and the MLP its ratio
    to ``d_model`` (see :func:`study_model`).
    ``execution`` measures pass@1 (greedy) at every checkpoint by executing sampled programs in
    the sandbox: ``execution_problems`` problems per language of ``execution_suite``
    (``synthetic``: held-out programs of the study's corpus, the default on the synthetic
    corpus; ``humaneval`` on real code), completions of at most ``execution_tokens`` tokens.
    The stage detector then reads pass@1 as performance, and the transfer ratio gains the
    paper's problem route.
    """

    out: str = "runs/babel_tower"
    profile: str = "quick"
    primary: str = "python"
    targets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    docs_per_language: int = 0
    vocab_size: int = 0
    preset: str = ""
    n_layers: int = 0
    d_model: int = 0
    seq_len: int = 0
    batch_size: int = 0
    primary_steps: int = 0
    continual_steps: int = 0
    scratch_steps: int = 0
    n_checkpoints: int = 0
    eval_windows: int = 0
    lr: float = 0.0
    replay: float = 0.0
    neuron_tokens: int = 0
    neuron_permutations: int = 0
    ablation: bool | None = None
    n_per_pair: int = 0
    completion_docs: int = 0
    completion_tokens: int = 0
    execution: bool | None = None
    execution_problems: int = 0
    execution_suite: str = ""
    execution_tokens: int = 0
    corpus: str = ""
    python_trees: list[str] = field(default_factory=list)
    max_source_mb: float = 0.0
    debian_dir: str | None = None
    debian_cache: str | None = None
    sources_archive: str | None = None
    neuron_languages: list[str] = field(default_factory=list)
    random_inits: int = 0
    dtype: str = ""
    compile: bool | None = None
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        # Resolve the profile first: the checks read the fields it fills in.
        if self.profile not in STUDY_PROFILES:
            raise ValueError(
                f"BabelTowerConfig.profile must be one of {sorted(STUDY_PROFILES)}, "
                f"got {self.profile!r}"
            )
        defaults = {"corpus": "synthetic", "dtype": "auto", "compile": False}
        defaults.update(study_profile(self.profile))
        for key, value in defaults.items():
            current = getattr(self, key)
            unset = current is None or (
                not isinstance(current, bool) and current in (0, 0.0, "", [])
            )
            if unset:
                setattr(self, key, value)
        if not self.python_trees:
            self.python_trees = ["stdlib"]
        if not self.execution_suite:
            self.execution_suite = "synthetic" if self.corpus == "synthetic" else "humaneval"
        # Language names are normalized ("c#" -> "csharp") before they are checked.
        self.primary = get_language(self.primary).name
        self.targets = [get_language(t).name for t in self.targets]
        self.neuron_languages = [
            get_language(t).name
            for t in self.neuron_languages
            if get_language(t).name not in (self.primary, *self.targets)
        ]
        self.validate()

    def validate(self) -> None:
        if self.corpus not in CORPUS_KINDS and not Path(self.corpus).is_dir():
            raise ValueError(
                f"BabelTowerConfig.corpus must be one of {CORPUS_KINDS} or a corpus directory; "
                f"{self.corpus!r} is neither"
            )
        if self.max_source_mb < 0:
            raise ValueError(
                f"BabelTowerConfig.max_source_mb must be >= 0, got {self.max_source_mb}"
            )
        from babel_interp.training.config import DTYPES  # torch

        if self.dtype not in DTYPES:
            raise ValueError(f"BabelTowerConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.corpus == "real":
            for lang in self.targets:
                if lang in UNAVAILABLE:
                    raise ValueError(f"BabelTowerConfig.targets: {UNAVAILABLE[lang]}")
        if self.primary in self.targets:
            raise ValueError(
                f"BabelTowerConfig.targets must not include the primary {self.primary}"
            )
        if not self.targets:
            raise ValueError("BabelTowerConfig.targets must name at least one new language")
        for name in (
            *(("docs_per_language",) if self.corpus == "synthetic" else ()),
            "vocab_size",
            "seq_len",
            "batch_size",
            "primary_steps",
            "continual_steps",
            "scratch_steps",
            "n_checkpoints",
            "eval_windows",
            "random_inits",
            *(("execution_problems", "execution_tokens") if self.execution else ()),
        ):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"BabelTowerConfig.{name} must be positive")
        if not 0.0 <= self.replay < 1.0:
            raise ValueError(f"BabelTowerConfig.replay must be in [0, 1), got {self.replay}")
        if not self.seeds:
            raise ValueError("BabelTowerConfig.seeds must list at least one seed")
        if self.n_layers < 0 or self.d_model < 0:
            raise ValueError(
                "BabelTowerConfig.n_layers and d_model must be >= 0 (0: the preset's), got "
                f"{self.n_layers} and {self.d_model}"
            )
        study_model(self)  # a width the heads cannot divide is an error now, not mid-run


def study_model(cfg: BabelTowerConfig) -> Any:
    """The study's model shape: the preset, with ``n_layers`` and ``d_model`` when set.

    A new width keeps the preset's head size and MLP ratio, so depth and width are the only
    things a scan over them changes."""
    from babel_interp.model import get_preset

    base = get_preset(cfg.preset)
    if not cfg.n_layers and not cfg.d_model:
        return base
    d_model = cfg.d_model or base.d_model
    if d_model % base.d_head:
        raise ValueError(
            f"BabelTowerConfig.d_model ({d_model}) must be a multiple of the preset "
            f"{cfg.preset!r}'s d_head ({base.d_head})"
        )
    return base.replace(
        n_layers=cfg.n_layers or base.n_layers,
        d_model=d_model,
        n_heads=d_model // base.d_head,
        d_mlp=d_model * base.d_mlp // base.d_model,
    )


def _log(msg: str) -> None:
    print(f"[babel-tower {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_study_corpus(cfg: BabelTowerConfig, layout: Study) -> Path:
    """The study's corpus: synthesized, built from real sources, or the one given."""
    if cfg.corpus not in CORPUS_KINDS:
        return Path(cfg.corpus)
    if (layout.corpus / MANIFEST).is_file():
        _log(f"corpus: reusing {layout.corpus}")
        return layout.corpus
    if cfg.corpus == "real":
        sources = study_sources(cfg, layout)
        _log(f"corpus: tokenizing the real sources in {sources}")
        build_corpus(
            real_corpus_config(
                sources,
                layout.corpus,
                vocab_size=cfg.vocab_size,
                seed=cfg.seeds[0],
                progress=cfg.progress,
            )
        )
        return layout.corpus
    _log(f"corpus: synthesizing {cfg.docs_per_language} documents per language")
    ccfg = synthetic_corpus_config(
        out=str(layout.corpus),
        languages=corpus_languages(cfg),
        docs_per_language=cfg.docs_per_language,
        seed=cfg.seeds[0],
        vocab_size=cfg.vocab_size,
        progress=cfg.progress,
    )
    build_corpus(ccfg)
    return layout.corpus


def sources_config(cfg: BabelTowerConfig, layout: Study) -> Any:
    """The :class:`~babel_interp.corpus.real.RealSourcesConfig` of a real-code study."""
    cap = int(cfg.max_source_mb * 1e6) if cfg.max_source_mb else None
    return RealSourcesConfig(
        languages=corpus_languages(cfg)[1:],
        primary=cfg.primary,
        debian_dir=cfg.debian_dir or str(layout.root / "debian"),
        debian_cache=cfg.debian_cache,
        python_trees=list(cfg.python_trees),
        max_bytes=cap,
        progress=cfg.progress,
    )


def study_sources(cfg: BabelTowerConfig, layout: Study) -> Path:
    """``OUT/sources``: unpacked from ``sources_archive``, else gathered from this interpreter
    and Debian (fetching the packages when ``debian_dir`` lacks them)."""
    dest = layout.sources
    if (dest / SOURCES_JSON).is_file():
        return dest
    if cfg.sources_archive:
        _log(f"sources: unpacking {cfg.sources_archive}")
        meta = unpack_sources(cfg.sources_archive, dest)
    else:
        _log(f"sources: Python {cfg.python_trees}, {', '.join(cfg.targets)} from Debian")
        meta = gather_sources(sources_config(cfg, layout), dest)
    missing = [lang for lang in corpus_languages(cfg) if lang not in meta["languages"]]
    if missing:
        raise ValueError(
            f"the sources in {dest} lack {missing} (they hold {meta['languages']}); "
            "pack them again with these targets"
        )
    for lang, info in meta["per_language"].items():
        _log(f"sources: {lang}: {info['files']} files, {info['bytes'] / 1e6:.1f} MB")
    return dest


def pack_study_sources(cfg: BabelTowerConfig, archive: str | os.PathLike) -> dict[str, Any]:
    """Gather the study's real sources here and compress them into ``archive`` (to carry to a
    machine without the package registry; pass it back with ``--sources-archive``)."""
    layout = Study(Path(cfg.out))
    sources = study_sources(cfg, layout)
    info = pack_sources(sources, archive)
    _log(
        f"sources: {info['source_bytes'] / 1e6:.1f} MB packed into {archive} "
        f"({info['bytes'] / 2**20:.1f} MiB, {info['ratio']:.1f}x, {info['seconds']:.0f}s)"
    )
    return info


def _train(
    cfg: BabelTowerConfig,
    corpus: Path,
    out: Path,
    mixture: str,
    steps: int,
    seed: int,
    init_from: Path | None,
    schedule: Any,
    schedule_steps: int | None = None,
    lr_kind: str = "cosine",
    warmup_steps: int | None = None,
) -> Path:
    """Train (or resume, or reuse when complete) one run of the study; ``lr_kind`` is the
    learning-rate schedule's (``constant``, with ``warmup_steps`` fixed, makes every checkpoint
    the end of a shorter run of the same seed)."""
    from babel_interp.training import (
        CheckpointConfig,
        LRSchedule,
        OptimConfig,
        TrainConfig,
        train,
    )

    if out.is_dir() and (out / "checkpoints").is_dir():
        done = [c.step for c in Run(out).checkpoints()]
        if steps in done:
            _log(f"train: {out} already complete")
            return out
    warmup = warmup_steps if warmup_steps is not None else max(1, min(50, steps // 10))
    tcfg = TrainConfig(
        corpus=str(corpus),
        out=str(out),
        preset=cfg.preset,
        model=None if init_from else study_model(cfg),  # a continued run keeps its shape
        mixture=mixture,
        steps=steps,
        schedule_steps=schedule_steps,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        optim=OptimConfig(schedule=LRSchedule(kind=lr_kind, lr=cfg.lr, warmup_steps=warmup)),
        eval_every=max(1, steps // 10),
        eval_windows=cfg.eval_windows,
        checkpoints=CheckpointConfig(schedule=schedule),
        init_from=str(init_from) if init_from else None,
        resume=out.is_dir() and (out / "checkpoints").is_dir(),
        seed=seed,
        device=cfg.device,
        dtype=cfg.dtype,
        compile=bool(cfg.compile),
        progress=cfg.progress,
    )
    _log(f"train: {out.relative_to(out.parents[2])} ({mixture}, {steps} steps)")
    result = train(tcfg)
    if result.interrupted:
        # The run saved a resumable checkpoint and stopped; going on to the next run (or to
        # analyzing this one) would treat a half-trained model as finished.
        name = result.stop_reason.removeprefix("signal:")
        raise StudyInterrupted(
            f"training of {out} stopped by {name} at step {result.step}; run the same "
            "command again to resume",
            name,
        )
    return out


def study_schedules(cfg: BabelTowerConfig) -> tuple[Any, Any, Any]:
    """Checkpoint schedules of the primary, continual and scratch runs.

    The scratch baseline is the first ``scratch_steps`` of the continual run's own schedule
    (same learning-rate horizon, same checkpoint steps), so the two are compared at equal steps.
    """
    from babel_interp.training import CheckpointSchedule

    cont = CheckpointSchedule(kind="log", n=cfg.n_checkpoints)
    steps = [s for s in cont.steps_for(cfg.continual_steps) if s <= cfg.scratch_steps]
    scratch = CheckpointSchedule(kind="steps", steps=sorted({*steps, cfg.scratch_steps}))
    return CheckpointSchedule(kind="log", n=4), cont, scratch


def train_seed(cfg: BabelTowerConfig, layout: Study, corpus: Path, seed: int) -> None:
    """One seed's primary model, then a continual and a from-scratch run per target language."""
    primary_sched, cont_sched, scratch_sched = study_schedules(cfg)
    primary = _train(
        cfg,
        corpus,
        layout.primary(seed),
        f"{cfg.primary}=1",
        cfg.primary_steps,
        seed,
        None,
        primary_sched,
    )
    primary_final = Run(primary).latest().path
    for lang in cfg.targets:
        mix = (
            f"{lang}=1"
            if cfg.replay == 0
            else (f"{lang}={1 - cfg.replay:g},{cfg.primary}={cfg.replay:g}")
        )
        _train(
            cfg,
            corpus,
            layout.continual(seed, lang),
            mix,
            cfg.continual_steps,
            seed,
            primary_final,
            cont_sched,
        )
        # The baseline sees the same target data and schedule; it may stop early (where
        # continual pretraining differs most), as the first part of the same schedule.
        _train(
            cfg,
            corpus,
            layout.scratch(seed, lang),
            mix,
            cfg.scratch_steps,
            seed,
            None,
            scratch_sched,
            schedule_steps=max(cfg.continual_steps, cfg.scratch_steps),
        )


def train_runs(cfg: BabelTowerConfig, layout: Study, corpus: Path) -> None:
    """:func:`train_seed` for every seed."""
    for seed in cfg.seeds:
        train_seed(cfg, layout, corpus, seed)


def corpus_languages(cfg: BabelTowerConfig) -> list[str]:
    """Languages of the study's corpus: the primary, the targets, then ``neuron_languages``."""
    return list(dict.fromkeys([cfg.primary, *cfg.targets, *cfg.neuron_languages]))


def analyze_seed(cfg: BabelTowerConfig, layout: Study, seed: int) -> dict[str, Any]:
    """Every analyzer on one seed's continual and scratch runs; returns the stage verdicts and
    notes on analyzers that do not apply (the transfer ratio needs planted facts)."""
    from babel_interp.analysis import performance
    from babel_interp.analysis.neurons import transferring
    from babel_interp.analysis.neurons.lape import LapeConfig
    from babel_interp.analysis.neurons.neuron_stats import NeuronStatsConfig
    from babel_interp.analysis.stages import detector as stages
    from babel_interp.analysis.stages import transfer
    from babel_interp.analysis.stages.efficiency import token_efficiency
    from babel_interp.analysis.working_language import logit_lens
    from babel_interp.corpus.shards import CorpusReader
    from babel_interp.devices import resolve_device
    from babel_interp.report.neuron_plots import plot_neuron_analysis
    from babel_interp.report.stage_plots import plot_stage_analysis
    from babel_interp.report.working_language_plots import plot_working_language_run

    verdicts: dict[str, Any] = {}
    notes: dict[str, str] = {}
    # The analyzers run where the training ran (``auto``: CUDA when available).
    device = str(resolve_device(cfg.device))
    # Every corpus language joins LAPE's statistics (two-language LAPE is degenerate).
    neuron_langs = CorpusReader(run_corpus_dir(layout.primary(seed))).languages
    for lang in cfg.targets:
        for kind, run in (
            ("continual", layout.continual(seed, lang)),
            ("scratch", layout.scratch(seed, lang)),
        ):
            tag = f"seed {seed} {lang} {kind}"
            synthetic = performance.synthetic_config_of_run(run) is not None
            _log(f"analyze: performance, {tag}")
            performance.analyze_run(
                run,
                languages=[lang],
                primary=cfg.primary,
                n_documents=cfg.completion_docs,
                max_new_tokens=cfg.completion_tokens,
                completion=synthetic and cfg.completion_docs > 0,
                device=device,
                progress=cfg.progress,
            )
            _log(f"analyze: working language, {tag}")
            # The random-init baseline depends on architecture, tokenizer and probes only, so
            # it is scored once per seed and language, beside the continued run.
            wl_cfg = logit_lens.WorkingLanguageConfig(
                primary=cfg.primary,
                target=lang,
                n_per_pair=cfg.n_per_pair,
                seed=seed,
                n_random_init=cfg.random_inits if kind == "continual" else 0,
            )
            wl = logit_lens.analyze_run(run, wl_cfg, device=device, progress=cfg.progress)
            plot_working_language_run(wl, Run(run).figures_dir())
            _log(f"analyze: neurons, {tag}")
            ncfg = transferring.NeuronAnalysisConfig(
                primary=cfg.primary,
                target=lang,
                languages=neuron_langs if len(neuron_langs) > 2 else None,
                stats=NeuronStatsConfig(tokens_per_language=cfg.neuron_tokens),
                lape=LapeConfig(),
                n_null_permutations=cfg.neuron_permutations,
                ablation=transferring.AblationConfig() if cfg.ablation else None,
                device=device,
                progress=cfg.progress,
            )
            neurons = transferring.analyze_run(run, ncfg)
            plot_neuron_analysis(neurons, Run(run).figures_dir())
            if cfg.execution:
                _log(f"evaluate: pass@1 by execution, {tag}")
                _evaluate(cfg, run, lang, seed, device)
            if synthetic:
                _log(f"analyze: transfer ratio, {tag}")
                transfer.analyze_run(
                    run, language=lang, primary=cfg.primary, device=device, progress=cfg.progress
                )
            else:
                notes["transfer_ratio"] = (
                    "not measured: real code has no planted facts, and the paper's P needs a "
                    "problem set solved by a Python-only model (a code benchmark, not available "
                    "offline)"
                )
            staged = stages.analyze_run(run, language=lang, primary=cfg.primary)
            plot_stage_analysis(staged, Run(run).figures_dir())
            verdicts[Study.key(seed, lang, kind)] = staged.detection.verdict
        if cfg.execution:
            _log(f"evaluate: problem-route transfer ratio, seed {seed} {lang}")
            _problem_transfer(cfg, layout, seed, lang, device)
        eff = token_efficiency(
            str(layout.continual(seed, lang)), str(layout.scratch(seed, lang)), lang
        )
        write_csv_atomic(
            layout.run(seed, lang, "continual").analysis_dir("efficiency") / "efficiency.csv", eff
        )
    return {"verdicts": verdicts, "notes": notes}


def _execution_config(cfg: BabelTowerConfig, lang: str, seed: int) -> Any:
    from babel_interp.evaluation.evaluate import ExecutionConfig

    return ExecutionConfig(
        suite=cfg.execution_suite,
        languages=(lang,),
        max_problems=cfg.execution_problems,
        max_new_tokens=cfg.execution_tokens,
        seed=seed,
    )


def _evaluate(
    cfg: BabelTowerConfig, run: Path, lang: str, seed: int, device: str, steps: Any = None
) -> Any:
    """pass@1 of every checkpoint of ``run`` in ``lang`` (tables, then the figure)."""
    from babel_interp.evaluation.evaluate import evaluate_run
    from babel_interp.report.execution_plots import plot_pass_at_k

    result = evaluate_run(
        run, _execution_config(cfg, lang, seed), steps=steps, device=device, progress=cfg.progress
    )
    figure = Run(run).figures_dir() / f"pass_at_k_{lang}.png"
    plot_pass_at_k(result.pass_at_k(), figure, title=lang)
    return result


def _problem_transfer(
    cfg: BabelTowerConfig, layout: Study, seed: int, lang: str, device: str
) -> None:
    """The paper's knowledge-transfer ratio from solved problems: the primary-only model's
    last checkpoint is evaluated in the primary language, then P and C are read from the
    execution tables; written to ``continual/analysis/execution/transfer.csv``."""
    from babel_interp.evaluation.evaluate import load_execution
    from babel_interp.evaluation.transfer import problem_transfer_series

    primary = layout.primary(seed)
    last = Run(primary).latest().step
    prim = _evaluate(cfg, primary, cfg.primary, seed, device, steps=[last])
    scratch = load_execution(layout.run(seed, lang, "scratch").analysis_dir("execution"))
    cont_dir = layout.run(seed, lang, "continual").analysis_dir("execution")
    cont = load_execution(cont_dir)
    df = problem_transfer_series(
        prim.samples, scratch.samples, cont.samples, lang, cfg.primary, seed=seed
    )
    write_csv_atomic(cont_dir / "transfer.csv", df)


def analyze_runs(cfg: BabelTowerConfig, layout: Study) -> dict[str, Any]:
    """:func:`analyze_seed` for every seed; returns the stage verdicts."""
    verdicts: dict[str, Any] = {}
    for seed in cfg.seeds:
        verdicts.update(analyze_seed(cfg, layout, seed)["verdicts"])
    return verdicts


def _write_meta(cfg: BabelTowerConfig, layout: Study, meta: dict[str, Any]) -> None:
    write_json_atomic(layout.meta, meta)


def run_experiment(cfg: BabelTowerConfig) -> Path:
    """Run (or resume) the whole study and write its report; returns the report's path.

    Seeds run one after another; after each, ``experiment.json`` and the report are rewritten
    with the seeds finished so far, so a run cut short keeps every finished seed's results.
    """
    from babel_interp.report.report import write_experiment_report

    layout = Study(Path(cfg.out))
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings: dict[str, float] = {"corpus_s": 0.0, "training_s": 0.0, "analysis_s": 0.0}
    t = time.time()
    corpus = build_study_corpus(cfg, layout)
    timings["corpus_s"] = time.time() - t
    meta: dict[str, Any] = {
        "experiment": "babel_tower",
        "config": cfg.to_dict(),
        # Absolute, and relative to the study when beneath it (read with Study.corpus_dir).
        **study_corpus_fields(layout.root, corpus),
        "seeds_done": [],
        "timings": timings,
        "verdicts": {},
        "notes": {},
        "platform": _platform(cfg),
    }
    # A resumed study keeps the timings of its earlier invocations (this one only times what
    # it did itself, which is little when everything was already done).
    # A damaged experiment.json is an error, not a fresh start: it holds the earlier timings.
    previous = read_json(layout.meta, "study") if layout.meta.is_file() else {}
    history = list(previous.get("timings_history", []))
    if not history and previous.get("timings"):
        history = [previous["timings"]]
    meta["timings_history"] = [*history, timings]
    md = layout.root / "report.md"
    for seed in cfg.seeds:
        t = time.time()
        train_seed(cfg, layout, corpus, seed)
        timings["training_s"] += time.time() - t
        t = time.time()
        result = analyze_seed(cfg, layout, seed)
        timings["analysis_s"] += time.time() - t
        meta["verdicts"].update(result["verdicts"])
        meta["notes"].update(result["notes"])
        meta["seeds_done"].append(seed)
        timings["total_s"] = time.time() - started
        _write_meta(cfg, layout, meta)
        md, _html = write_experiment_report(layout.root)
        _log(f"seed {seed} done ({timings['total_s']:.0f}s so far); report: {md}")
    return md


def _platform(cfg: BabelTowerConfig) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available() and cfg.device != "cpu":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
