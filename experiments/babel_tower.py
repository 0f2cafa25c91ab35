"""The Babel Tower study: does a new programming language first run on the primary language's
knowledge system, then build its own?

For each seed: train a primary-language (Python) model from scratch; continue pretraining it on
each new language (PHP, C#, Go, C++ by default) with dense-early checkpoints; train the same
target data from scratch as the baseline; then, at every checkpoint of both, run the analyzers:
per-language performance, working language (logit lens with matched controls and a competence
gate), language-transferring neurons (LAPE and contrast scores with permutation and random-init
nulls), the knowledge-transfer ratio on planted facts, token efficiency against the baseline, and
the stage detector. A report gathers it all.

    python -m experiments.babel_tower --profile quick --out runs/demo
    python -m experiments.babel_tower --config my_study.json

Every step is resumable: rerunning the same command reuses finished corpora, runs and analyses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    # Sized for the one-command demo on 2 CPU cores (a few minutes in all).
    "quick": dict(
        targets=["php", "go"],
        seeds=[0],
        docs_per_language=1500,
        vocab_size=2048,
        preset="tiny",
        seq_len=128,
        batch_size=16,
        primary_steps=400,
        continual_steps=400,
        scratch_steps=80,
        n_checkpoints=10,
        eval_windows=16,
        lr=2e-3,
        neuron_tokens=8192,
        neuron_permutations=10,
        ablation=False,
        n_per_pair=10,
        completion_docs=12,
        completion_tokens=16,
    ),
    # The paper's four new languages, three seeds, longer runs: for a workstation or a GPU.
    "full": dict(
        targets=["php", "csharp", "go", "cpp"],
        seeds=[0, 1, 2],
        docs_per_language=20000,
        vocab_size=8192,
        preset="small",
        seq_len=256,
        batch_size=32,
        primary_steps=4000,
        continual_steps=3000,
        scratch_steps=3000,
        n_checkpoints=14,
        eval_windows=64,
        lr=1e-3,
        neuron_tokens=131072,
        neuron_permutations=100,
        ablation=True,
        n_per_pair=20,
        completion_docs=40,
        completion_tokens=32,
    ),
}


@dataclass
class BabelTowerConfig:
    """One study. Fields left unset take the profile's value (see ``PROFILES``)."""

    out: str = "runs/babel_tower"
    profile: str = "quick"
    primary: str = "python"
    targets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    docs_per_language: int = 0
    vocab_size: int = 0
    preset: str = ""
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
    corpus: str | None = None
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(
                f"BabelTowerConfig.profile must be one of {sorted(PROFILES)}, got {self.profile!r}"
            )
        defaults = PROFILES[self.profile]
        for key, value in defaults.items():
            current = getattr(self, key)
            if current in (0, 0.0, "", None, []):
                setattr(self, key, list(value) if isinstance(value, list) else value)
        from babel_interp.languages import get_language

        self.primary = get_language(self.primary).name
        self.targets = [get_language(t).name for t in self.targets]
        if self.primary in self.targets:
            raise ValueError(
                f"BabelTowerConfig.targets must not include the primary {self.primary}"
            )
        if not self.targets:
            raise ValueError("BabelTowerConfig.targets must name at least one new language")
        for name in (
            "docs_per_language",
            "vocab_size",
            "seq_len",
            "batch_size",
            "primary_steps",
            "continual_steps",
            "scratch_steps",
            "n_checkpoints",
            "eval_windows",
        ):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"BabelTowerConfig.{name} must be positive")
        if not 0.0 <= self.replay < 1.0:
            raise ValueError(f"BabelTowerConfig.replay must be in [0, 1), got {self.replay}")
        if not self.seeds:
            raise ValueError("BabelTowerConfig.seeds must list at least one seed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BabelTowerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"BabelTowerConfig: unknown field(s) {unknown}")
        return cls(**d)


@dataclass
class ExperimentLayout:
    """Where everything of a study lives."""

    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    def primary(self, seed: int) -> Path:
        return self.root / f"seed_{seed}" / "primary"

    def continual(self, seed: int, lang: str) -> Path:
        return self.root / f"seed_{seed}" / lang / "continual"

    def scratch(self, seed: int, lang: str) -> Path:
        return self.root / f"seed_{seed}" / lang / "scratch"


def _log(msg: str) -> None:
    print(f"[babel-tower {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_study_corpus(cfg: BabelTowerConfig, layout: ExperimentLayout) -> Path:
    """The synthetic parallel-program corpus of the primary and all target languages."""
    from babel_interp.corpus.build import build_corpus, synthetic_corpus_config
    from babel_interp.corpus.shards import MANIFEST

    if cfg.corpus:
        return Path(cfg.corpus)
    if (layout.corpus / MANIFEST).is_file():
        _log(f"corpus: reusing {layout.corpus}")
        return layout.corpus
    _log(f"corpus: synthesizing {cfg.docs_per_language} documents per language")
    ccfg = synthetic_corpus_config(
        out=str(layout.corpus),
        languages=[cfg.primary, *cfg.targets],
        docs_per_language=cfg.docs_per_language,
        seed=cfg.seeds[0],
        vocab_size=cfg.vocab_size,
    )
    build_corpus(ccfg)
    return layout.corpus


def _train(
    cfg: BabelTowerConfig,
    corpus: Path,
    out: Path,
    mixture: str,
    steps: int,
    seed: int,
    init_from: Path | None,
    n_checkpoints: int,
) -> Path:
    from babel_interp.runs import list_checkpoints
    from babel_interp.training import (
        CheckpointConfig,
        CheckpointSchedule,
        LRSchedule,
        OptimConfig,
        TrainConfig,
        train,
    )

    if out.is_dir() and (out / "checkpoints").is_dir():
        done = [c.step for c in list_checkpoints(out)]
        if steps in done:
            _log(f"train: {out} already complete")
            return out
    warmup = max(1, min(50, steps // 10))
    tcfg = TrainConfig(
        corpus=str(corpus),
        out=str(out),
        preset=cfg.preset,
        mixture=mixture,
        steps=steps,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        optim=OptimConfig(schedule=LRSchedule(lr=cfg.lr, warmup_steps=warmup)),
        eval_every=max(1, steps // 10),
        eval_windows=cfg.eval_windows,
        checkpoints=CheckpointConfig(schedule=CheckpointSchedule(kind="log", n=n_checkpoints)),
        init_from=str(init_from) if init_from else None,
        resume=out.is_dir() and (out / "checkpoints").is_dir(),
        seed=seed,
        device=cfg.device,
        progress=cfg.progress,
    )
    _log(f"train: {out.relative_to(out.parents[2])} ({mixture}, {steps} steps)")
    train(tcfg)
    return out


def train_runs(cfg: BabelTowerConfig, layout: ExperimentLayout, corpus: Path) -> None:
    """Primary model, then continual and from-scratch runs per target language and seed."""
    from babel_interp.runs import list_checkpoints

    for seed in cfg.seeds:
        primary = _train(
            cfg,
            corpus,
            layout.primary(seed),
            f"{cfg.primary}=1",
            cfg.primary_steps,
            seed,
            None,
            n_checkpoints=4,
        )
        primary_final = list_checkpoints(primary)[-1].path
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
                cfg.n_checkpoints,
            )
            # The baseline sees the same target data and schedule; the quick profile keeps
            # only its first steps (where continual pretraining differs most).
            n_scratch = max(3, round(cfg.n_checkpoints * cfg.scratch_steps / cfg.continual_steps))
            _train(
                cfg,
                corpus,
                layout.scratch(seed, lang),
                mix,
                cfg.scratch_steps,
                seed,
                None,
                min(cfg.n_checkpoints, n_scratch),
            )


def analyze_runs(cfg: BabelTowerConfig, layout: ExperimentLayout) -> dict[str, Any]:
    """Every analyzer on every continual and scratch run; returns the stage verdicts."""
    from babel_interp.analysis import logit_lens, performance, stages, transfer, transferring
    from babel_interp.analysis.efficiency import token_efficiency
    from babel_interp.analysis.lape import LapeConfig
    from babel_interp.analysis.neuron_stats import NeuronStatsConfig
    from babel_interp.runs import analysis_dir

    verdicts: dict[str, Any] = {}
    for seed in cfg.seeds:
        for lang in cfg.targets:
            for kind, run in (
                ("continual", layout.continual(seed, lang)),
                ("scratch", layout.scratch(seed, lang)),
            ):
                tag = f"seed {seed} {lang} {kind}"
                _log(f"analyze: performance, {tag}")
                performance.analyze_run(
                    run,
                    languages=[lang],
                    primary=cfg.primary,
                    n_documents=cfg.completion_docs,
                    max_new_tokens=cfg.completion_tokens,
                    progress=cfg.progress,
                )
                _log(f"analyze: working language, {tag}")
                wl_cfg = logit_lens.WorkingLanguageConfig(
                    primary=cfg.primary, target=lang, n_per_pair=cfg.n_per_pair, seed=seed
                )
                logit_lens.analyze_run(run, wl_cfg, progress=cfg.progress)
                _log(f"analyze: neurons, {tag}")
                ncfg = transferring.NeuronAnalysisConfig(
                    primary=cfg.primary,
                    target=lang,
                    stats=NeuronStatsConfig(tokens_per_language=cfg.neuron_tokens),
                    lape=LapeConfig(),
                    n_null_permutations=cfg.neuron_permutations,
                    ablation=transferring.AblationConfig() if cfg.ablation else None,
                )
                transferring.analyze_run(run, ncfg)
                _log(f"analyze: transfer ratio, {tag}")
                transfer.analyze_run(run, language=lang, primary=cfg.primary, progress=cfg.progress)
                result, _series, _paths = stages.analyze_run(
                    run, language=lang, primary=cfg.primary
                )
                verdicts[f"seed_{seed}/{lang}/{kind}"] = result.verdict
            eff = token_efficiency(
                str(layout.continual(seed, lang)), str(layout.scratch(seed, lang)), lang
            )
            eff.to_csv(
                analysis_dir(layout.continual(seed, lang), "efficiency") / "efficiency.csv",
                index=False,
            )
    return verdicts


def run_experiment(cfg: BabelTowerConfig) -> Path:
    """Run (or resume) the whole study and write its report; returns the report's path."""
    from babel_interp.report.report import write_experiment_report

    layout = ExperimentLayout(Path(cfg.out))
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timings: dict[str, float] = {}
    t = time.time()
    corpus = build_study_corpus(cfg, layout)
    timings["corpus_s"] = time.time() - t
    t = time.time()
    train_runs(cfg, layout, corpus)
    timings["training_s"] = time.time() - t
    t = time.time()
    verdicts = analyze_runs(cfg, layout)
    timings["analysis_s"] = time.time() - t
    timings["total_s"] = time.time() - started
    meta = {
        "experiment": "babel_tower",
        "config": cfg.to_dict(),
        "corpus": str(corpus),
        "timings": timings,
        "verdicts": verdicts,
        "platform": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    (layout.root / "experiment.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    md, _html = write_experiment_report(layout.root)
    _log(f"done in {timings['total_s']:.0f}s; report: {md}")
    return md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.babel_tower", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None)
    parser.add_argument("--config", help="JSON file of BabelTowerConfig fields")
    parser.add_argument("--out", help="experiment directory (default runs/babel_tower)")
    parser.add_argument("--targets", help="comma-separated new languages, e.g. php,csharp")
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--corpus", help="use this corpus directory instead of synthesizing one")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    d: dict[str, Any] = {}
    if args.config:
        d.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    if args.profile:
        d["profile"] = args.profile
    if args.out:
        d["out"] = args.out
    if args.targets:
        d["targets"] = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.seeds:
        d["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.corpus:
        d["corpus"] = args.corpus
    if args.device:
        d["device"] = args.device
    if args.no_progress:
        d["progress"] = False
    try:
        cfg = BabelTowerConfig.from_dict(d)
    except ValueError as exc:
        print(f"babel_tower: error: {exc}", file=sys.stderr)
        return 2
    report = run_experiment(cfg)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
