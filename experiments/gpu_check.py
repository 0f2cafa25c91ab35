"""One command that checks the project on a GPU and writes what it measured.

    python -m babel_interp.experiments.gpu_check --out runs/gpu_check \\
        [--sources-archive runs/sources.tar.xz]            # on one H100/H200, < 10 minutes
    python -m babel_interp.experiments.gpu_check --out runs/gpu_check_dry --dry-run   # CPU, CI

Four parts, each under its own time cap, each recorded whatever happens to the others (a
failure or a time-out is written with its reason, and the results so far are rewritten after
every part):

1. ``throughput``: the trainer's step against a plain PyTorch GPT compiled the same way, at the
   GPT-2-small shape in bfloat16 with ``torch.compile`` (:mod:`babel_interp.bench.throughput`):
   tokens/s, the ratio and MFU against the device's dense bf16 peak.
2. ``logit_lens``: the working-language logit lens against a full ``run_with_cache``
   (:mod:`babel_interp.bench.logit_lens`): peak memory, probes/s, agreement.
3. ``fsdp_smoke``: a few training steps with ``parallel="fsdp"`` (FSDP2 on a one-rank group)
   and activation checkpointing; the losses, tokens/s and the peak memory beside the
   planner's prediction (:mod:`babel_interp.planner`).
4. ``study``: one seed of the Babel Tower study's ``gpu`` real-code profile at reduced steps,
   from a sources archive made by ``python -m babel_interp.experiments.babel_tower --profile
   gpu --pack-sources ARCHIVE`` (or Debian trees in ``--debian-dir``); skipped, with the
   reason, when neither is given.

Goals (GPU only): the trainer at least 0.9x the plain compiled GPT's tokens/s, and MFU at least
0.33 at GPT-2-small on an H100/H200. ``--dry-run`` runs every part on CPU at tiny sizes (the
study on the synthetic corpus unless real sources are given) in well under a minute, and
writes the same files: ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import math
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase, check_int
from babel_interp.io import write_json_atomic, write_text_atomic

PARTS = ("throughput", "logit_lens", "fsdp_smoke", "study")
GOAL_RATIO = 0.9
GOAL_MFU = 0.33
JSON_NAME = "gpu_check.json"
MD_NAME = "gpu_check.md"
SCHEMA = 1


@dataclass
class GpuCheckConfig(ConfigBase):
    """Where to write, which parts to run, their time caps (seconds) and the study's inputs.

    The caps add up to under 10 minutes: 180 s for the throughput part (two
    ``torch.compile`` runs), 90 s for the logit lens, 60 s for the FSDP smoke test, 240 s for
    the study. ``study_steps`` are the primary, continual and scratch steps of the reduced
    study; ``study_max_source_mb`` caps each language's source text (the corpus build).
    """

    out: str
    dry_run: bool = False
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    caps: dict[str, float] = field(
        default_factory=lambda: {
            "throughput": 180.0,
            "logit_lens": 90.0,
            "fsdp_smoke": 60.0,
            "study": 240.0,
        }
    )
    sources_archive: str | None = None
    debian_dir: str | None = None
    study_steps: list[int] = field(default_factory=lambda: [300, 300, 100])
    study_max_source_mb: float = 20.0
    progress: bool = True

    def validate(self) -> None:
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"GpuCheckConfig.out must be a directory path, got {self.out!r}")
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise ValueError(f"GpuCheckConfig.parts must name some of {list(PARTS)}, got {unknown}")
        for part in PARTS:
            cap = self.caps.get(part)
            if not isinstance(cap, (int, float)) or not cap > 0:
                raise ValueError(f"GpuCheckConfig.caps[{part!r}] must be positive, got {cap!r}")
        if len(self.study_steps) != 3:
            raise ValueError("GpuCheckConfig.study_steps must be [primary, continual, scratch]")
        for s in self.study_steps:
            check_int("GpuCheckConfig", "study_steps", s, 1)
        if self.sources_archive and not Path(self.sources_archive).is_file():
            raise ValueError(f"GpuCheckConfig.sources_archive: no file {self.sources_archive}")


class PartTimeout(Exception):
    """A part ran past its time cap."""


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`PartTimeout` in the main thread after ``seconds`` (SIGALRM; where there is
    none, the cap is not enforced)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def _expire(signum: int, frame: Any) -> None:
        raise PartTimeout(f"ran past its cap of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Skip(Exception):
    """A part that cannot run here; its message is the reason."""


# ------------------------------------------------------------------------------------------------
# The parts
# ------------------------------------------------------------------------------------------------


def _device(cfg: GpuCheckConfig) -> str:
    import torch

    if cfg.dry_run:
        return "cpu"
    if not torch.cuda.is_available():
        raise Skip("no CUDA device (run with --dry-run to exercise the parts on CPU)")
    return "cuda"


def part_throughput(cfg: GpuCheckConfig, work: Path) -> dict[str, Any]:
    """The trainer against plain PyTorch, both compiled, GPT-2-small shape, bf16."""
    from babel_interp.bench.throughput import ThroughputConfig, measure_throughput

    device = _device(cfg)
    if cfg.dry_run:
        tcfg = ThroughputConfig(
            preset="tiny", device="cpu", dtype="fp32", batch_size=4, seq_len=64, vocab=512
        )
        tcfg = tcfg.replace(steps=2, warmup=1)
    else:
        tcfg = ThroughputConfig(
            preset="gpt2-small",
            device=device,
            dtype="bf16",
            compile=True,
            batch_size=8,
            seq_len=1024,
            vocab=50257,
            steps=20,
            warmup=5,
        )
    result = measure_throughput(tcfg, work / "throughput")
    result["config"] = tcfg.to_dict()
    return result


def part_logit_lens(cfg: GpuCheckConfig, work: Path) -> dict[str, Any]:
    """Working-language logit lens vs a full cache: peak memory, probes/s, agreement."""
    from babel_interp.bench.logit_lens import LogitLensConfig, measure_logit_lens_memory

    device = _device(cfg)
    if cfg.dry_run:
        lcfg = LogitLensConfig(
            preset="tiny",
            d_vocab=1024,
            n_probes=4,
            prompt_tokens=32,
            batch_size=4,
            vocab_chunk=512,
            device="cpu",
            spawn=False,
            scaling=False,
            tokenizer_docs=30,
            tokenizer_vocab=512,
        )
    else:
        lcfg = LogitLensConfig(device=device, n_probes=64, spawn=False, scaling=True)
    result = measure_logit_lens_memory(lcfg)
    result.pop("p_target", None)
    result["config"] = lcfg.to_dict()
    return result


def part_fsdp_smoke(cfg: GpuCheckConfig, work: Path) -> dict[str, Any]:
    """A few FSDP training steps (one-rank group) with activation checkpointing."""
    import dataclasses

    import torch

    from babel_interp.bench.memory import peak_tensor_bytes
    from babel_interp.bench.throughput import random_corpus
    from babel_interp.model import get_preset, tl_major_version
    from babel_interp.planner import ModelShape, PlanConfig, peak_memory
    from babel_interp.training import CheckpointConfig, TrainConfig, train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if "parallel" not in names:
        raise Skip("trainer has no FSDP option (TrainConfig.parallel)")
    device = _device(cfg)
    preset, vocab, batch, seq, steps = (
        ("tiny", 512, 4, 64, 4) if cfg.dry_run else ("gpt2-small", 50257, 8, 1024, 20)
    )
    dtype = "float32" if device == "cpu" else "bfloat16"
    model = get_preset(preset).with_vocab(vocab)
    corpus = random_corpus(work / "fsdp_corpus", vocab, max(100_000, 4 * batch * seq * steps))
    extra = {"activation_checkpointing": True} if "activation_checkpointing" in names else {}
    tcfg = TrainConfig(
        corpus=str(corpus),
        out=str(work / "fsdp_run"),
        model=model,
        steps=steps,
        batch_size=batch,
        seq_len=seq,
        device=device,
        dtype=dtype,
        parallel="fsdp",
        eval_every=0,
        progress=False,
        # One (sharded) checkpoint, at the end: the smoke test writes and verifies it once.
        checkpoints=CheckpointConfig(schedule=f"steps:{steps}", fsync=False),
        **extra,
    )
    holder: dict[str, Any] = {}
    peak = peak_tensor_bytes(lambda: None, lambda _: holder.setdefault("r", train(tcfg)), device)
    res = holder["r"]
    losses = _train_losses(Path(res.run_dir))
    plan = PlanConfig(
        model=ModelShape.of(model),
        seq_len=seq,
        gpus=1,
        parallel="fsdp",
        dtype=dtype,
        activation_checkpointing=bool(extra),
        grad_accumulation=False,
        tl_major=tl_major_version(),
    )
    tokens_s = [r for r in _train_records(Path(res.run_dir)) if r.get("tokens_per_s")]
    if device == "cuda":
        torch.cuda.empty_cache()
    return {
        "preset": preset,
        "vocab": vocab,
        "batch": batch,
        "seq_len": seq,
        "dtype": dtype,
        "activation_checkpointing": bool(extra),
        "steps": res.step,
        "stop_reason": res.stop_reason,
        "losses": losses,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "tokens_per_s": tokens_s[-1]["tokens_per_s"] if tokens_s else None,
        "measured_peak_bytes": peak.peak,
        "planned_peak_bytes": peak_memory(plan, batch)[0],
        "checkpoints": [Path(c).name for c in res.checkpoints],
    }


def _train_records(run_dir: Path) -> list[dict[str, Any]]:
    from babel_interp.io import read_jsonl
    from babel_interp.runs import METRICS

    path = run_dir / METRICS
    return [r for r in read_jsonl(path) if r.get("type") == "train"] if path.is_file() else []


def _train_losses(run_dir: Path) -> list[float]:
    return [float(r["loss"]) for r in _train_records(run_dir) if r.get("loss") is not None]


def _study_sources(cfg: GpuCheckConfig) -> tuple[str, dict[str, Any]]:
    """Which corpus the study part uses, and the config fields that select it."""
    if cfg.sources_archive:
        return f"real code from {cfg.sources_archive}", {
            "corpus": "real",
            "sources_archive": cfg.sources_archive,
        }
    if cfg.debian_dir:
        from babel_interp.corpus.debian import read_debian_manifest

        try:
            langs = {p.language for p in read_debian_manifest(cfg.debian_dir).packages if p.files}
        except FileNotFoundError:
            langs = set()
        if {"php", "go"} <= langs:
            return f"real code from {cfg.debian_dir}", {
                "corpus": "real",
                "debian_dir": cfg.debian_dir,
            }
        if not cfg.dry_run:
            raise Skip(
                f"{cfg.debian_dir} holds no Debian trees for php and go (found {sorted(langs)})"
            )
    if cfg.dry_run:
        return "synthetic (dry run: no real sources given)", {"corpus": "synthetic"}
    raise Skip(
        "no real sources: pass --sources-archive ARCHIVE (made with `python -m "
        "babel_interp.experiments.babel_tower --profile gpu --pack-sources ARCHIVE` where the "
        "Debian packages can be fetched) or --debian-dir with php and go trees"
    )


def part_study(cfg: GpuCheckConfig, work: Path) -> dict[str, Any]:
    """One seed of the ``gpu`` real-code profile at reduced steps."""
    from babel_interp.experiments.babel_tower import BabelTowerConfig, run_experiment
    from babel_interp.io import read_json

    device = _device(cfg)
    corpus_label, fields = _study_sources(cfg)
    primary, continual, scratch = cfg.study_steps
    overrides: dict[str, Any] = dict(
        profile="gpu",
        out=str(Path(cfg.out) / "study"),
        seeds=[0],
        primary_steps=primary,
        continual_steps=continual,
        scratch_steps=scratch,
        max_source_mb=cfg.study_max_source_mb,
        device=device,
        progress=cfg.progress,
        **fields,
    )
    if cfg.dry_run:
        # Every stage of the study runs, each at the least size it accepts: one new language,
        # a few steps, two checkpoints, one permutation and one random init.
        overrides.update(
            targets=["php"],
            preset="tiny",
            docs_per_language=60,
            vocab_size=1024,
            seq_len=64,
            batch_size=4,
            primary_steps=4,
            continual_steps=4,
            scratch_steps=2,
            n_checkpoints=2,
            eval_windows=1,
            neuron_tokens=512,
            neuron_permutations=1,
            n_per_pair=2,
            random_inits=1,
            dtype="float32",
            compile=False,
            max_source_mb=0.2,
        )
    study_cfg = BabelTowerConfig.from_dict(overrides)
    summary: dict[str, Any] = {
        "corpus": corpus_label,
        "config": {k: v for k, v in study_cfg.to_dict().items() if k in overrides},
    }
    if cfg.dry_run:
        # The analyzers take about two minutes on two CPU cores even at their least sizes (and
        # have their own tests): the dry run builds the corpus and trains the seed's runs.
        from babel_interp.experiments.babel_tower import build_study_corpus, train_seed
        from babel_interp.runs import Run, Study

        layout = Study(Path(study_cfg.out))
        t0 = time.perf_counter()
        corpus = build_study_corpus(study_cfg, layout)
        t1 = time.perf_counter()
        train_seed(study_cfg, layout, corpus, 0)
        t2 = time.perf_counter()
        runs = [layout.primary(0)] + [
            d(0, lang) for lang in study_cfg.targets for d in (layout.continual, layout.scratch)
        ]
        summary.update(
            seeds_done=[0],
            analysis="skipped in the dry run",
            runs={str(r.relative_to(layout.root)): Run(r).latest().step for r in runs},
            timings={"corpus_s": t1 - t0, "training_s": t2 - t1},
            verdicts={},
            report=None,
        )
        return summary
    report = run_experiment(study_cfg)
    meta = read_json(Path(study_cfg.out) / "experiment.json", "study")
    summary.update(
        seeds_done=meta.get("seeds_done", []),
        analysis="done",
        verdicts=meta.get("verdicts", {}),
        timings=meta.get("timings", {}),
        report=str(report),
    )
    return summary


PART_FUNCTIONS: dict[str, Callable[[GpuCheckConfig, Path], dict[str, Any]]] = {
    "throughput": part_throughput,
    "logit_lens": part_logit_lens,
    "fsdp_smoke": part_fsdp_smoke,
    "study": part_study,
}
PART_TITLES = {
    "throughput": "Training throughput (trainer vs plain PyTorch, compiled)",
    "logit_lens": "Logit-lens memory (project vs full cache)",
    "fsdp_smoke": "FSDP smoke test (one rank, activation checkpointing)",
    "study": "Babel Tower study, gpu profile, one seed, reduced steps",
}


# ------------------------------------------------------------------------------------------------
# Running and recording
# ------------------------------------------------------------------------------------------------


def platform_info(dry_run: bool) -> dict[str, Any]:
    """Device name, versions of Python, torch, CUDA and TransformerLens."""
    import torch

    cuda = torch.cuda.is_available() and not dry_run
    return {
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()})",
        "device_type": "cuda" if cuda else "cpu",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "babel_interp": importlib.metadata.version("babel-interp"),
    }


def run_part(name: str, cfg: GpuCheckConfig, work: Path) -> dict[str, Any]:
    """Run one part under its cap; the record holds its status, time and result or reason."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"status": "ok", "cap_s": cfg.caps[name], "reason": None}
    try:
        with time_cap(cfg.caps[name]):
            record["result"] = PART_FUNCTIONS[name](cfg, work)
    except Skip as exc:
        record.update(status="skipped", reason=str(exc))
    except PartTimeout as exc:
        record.update(status="timeout", reason=str(exc))
    except Exception as exc:  # recorded: the other parts still run
        record.update(
            status="failed",
            reason=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=8),
        )
    record["seconds"] = time.perf_counter() - t0
    _free_device_memory()
    return record


def _free_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The two throughput goals, met or not (None where not measured or not applicable)."""
    tp = results["parts"].get("throughput", {})
    r = tp.get("result") or {}
    gpu = results["platform"]["device_type"] == "cuda"
    ratio = r.get("ratio")
    mfu = r.get("trainer_mfu")
    return {
        "trainer_vs_plain_compiled": {
            "target": GOAL_RATIO,
            "value": ratio,
            "met": (ratio >= GOAL_RATIO) if (gpu and ratio is not None) else None,
        },
        "mfu": {
            "target": GOAL_MFU,
            "value": mfu,
            "met": (mfu >= GOAL_MFU) if (gpu and mfu is not None) else None,
            "peak_source": r.get("peak_source"),
        },
    }


def write_results(results: dict[str, Any], out: Path) -> None:
    """``gpu_check.json`` and ``gpu_check.md``, rewritten whole (atomically)."""
    results["goals"] = goals(results)
    write_json_atomic(out / JSON_NAME, _plain(results))
    write_text_atomic(out / MD_NAME, render_markdown(results))


def _plain(x: Any) -> Any:
    # NaN and infinities are not JSON: written as null.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def run_gpu_check(cfg: GpuCheckConfig) -> dict[str, Any]:
    """Run the parts in order, writing both files after each; returns the results."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "dry_run": cfg.dry_run,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform_info(cfg.dry_run),
        "goal_definitions": {
            "trainer_vs_plain_compiled": f"trainer tokens/s >= {GOAL_RATIO}x the plain PyTorch "
            "GPT's, both bf16 and torch.compile, GPT-2-small shape",
            "mfu": f"trainer MFU >= {GOAL_MFU} at GPT-2-small on an H100/H200 (dense bf16 peak "
            "989.4 TFLOP/s, NVIDIA H100 SXM and H200 datasheets)",
        },
        "parts": {},
        "wall_s": 0.0,
    }
    write_results(results, out)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        parts = [p for p in PARTS if p in cfg.parts]
        bar = _progress(parts, cfg.progress)
        for name in bar:
            if hasattr(bar, "set_description"):
                bar.set_description(name)
            work = Path(tmp) / name
            work.mkdir()
            results["parts"][name] = run_part(name, cfg, work)
            results["wall_s"] = time.perf_counter() - started
            write_results(results, out)
    return results


def _progress(items: list[str], enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="gpu check", unit="part")


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------


def _num(x: Any, fmt: str = "{:,.0f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return fmt.format(x)


def _mb(x: Any) -> str:
    return _num(x / 1e6 if isinstance(x, (int, float)) else None, "{:,.1f} MB")


def _met(m: Any) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[m]


def render_markdown(results: dict[str, Any]) -> str:
    """The summary page: device and versions, goals, one section per part."""
    p = results["platform"]
    lines = [
        "# GPU check" + (" (dry run on CPU)" if results.get("dry_run") else ""),
        "",
        f"- device: {p['device']}",
        f"- torch {p['torch']}"
        + (f" (CUDA {p['cuda']})" if p.get("cuda") else "")
        + f", transformer-lens {p['transformer_lens']}, babel-interp {p['babel_interp']}, "
        f"Python {p['python']}",
        f"- started {results['started']}, {results.get('wall_s', 0.0):.0f} s so far",
        "",
        "## Goals",
        "",
        "| goal | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    g = results.get("goals") or goals(results)
    ratio, mfu = g["trainer_vs_plain_compiled"], g["mfu"]
    lines.append(
        f"| trainer / plain compiled tokens/s | >= {ratio['target']} | "
        f"{_num(ratio['value'], '{:.3f}')} | {_met(ratio['met'])} |"
    )
    lines.append(
        f"| MFU (GPT-2-small, bf16) | >= {mfu['target']} | {_num(mfu['value'], '{:.3f}')} | "
        f"{_met(mfu['met'])} |"
    )
    lines.append("")
    lines.append(
        "Peak: "
        + (mfu.get("peak_source") or "none known for this device (MFU not computed)")
        + ". Verdicts apply to a GPU run only."
    )
    lines += ["", "## Parts", "", "| part | status | seconds | cap |", "|---|---|---|---|"]
    for name in PARTS:
        rec = results["parts"].get(name)
        if rec is None:
            lines.append(f"| {name} | not run | | |")
            continue
        lines.append(f"| {name} | {rec['status']} | {rec['seconds']:.1f} | {rec['cap_s']:.0f} |")
    for name in PARTS:
        rec = results["parts"].get(name)
        if rec is None:
            continue
        lines += ["", f"### {PART_TITLES[name]}", ""]
        if rec["status"] != "ok":
            lines.append(f"**{rec['status']}**: {rec['reason']}")
            continue
        lines += _RENDERERS[name](rec["result"])
    return "\n".join(lines) + "\n"


def _md_throughput(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['preset']} shape ({r['params'] / 1e6:.1f}M parameters), batch {r['batch']} x "
        f"{r['seq_len']}, {r['device']} {r['dtype']}{', compiled' if r['compile'] else ''}, "
        f"TL {r['tl_major']}.x; best of {len(r['trainer_step_s'])} steps each.",
        "",
        "| model | tokens/s | TFLOP/s | MFU |",
        "|---|---|---|---|",
        f"| trainer | {_num(r['trainer_tokens_per_s'])} | {_num(r['trainer_tflops'], '{:.2f}')} "
        f"| {_num(r['trainer_mfu'], '{:.3f}')} |",
        f"| plain PyTorch | {_num(r['reference_tokens_per_s'])} | "
        f"{_num(r['reference_tflops'], '{:.2f}')} | {_num(r['reference_mfu'], '{:.3f}')} |",
        "",
        f"Ratio {r['ratio']:.3f} (of median step times {r['ratio_median']:.3f}); "
        f"{r['flops_per_token'] / 1e9:.2f} GFLOP per token.",
    ]


def _md_logit_lens(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r['preset']} shape, vocabulary {r['d_vocab']:,}, {r['n_layers']} layers, "
        f"{r['dtype']} on {r['device']}; {r['n_probes']} probes x 3 sites.",
        "",
        "| method | probes/s | peak |",
        "|---|---|---|",
        f"| full cache (reference) | {_num(r['reference_probes_per_s'], '{:.2f}')} | "
        f"{_mb(r['reference_peak_bytes'])} |",
        f"| project | {_num(r['project_probes_per_s'], '{:.2f}')} | "
        f"{_mb(r['project_peak_bytes'])} |",
        "",
        f"Peak memory {r['peak_ratio']:.1f}x lower, {r['throughput_ratio']:.2f}x the probes/s; "
        f"largest disagreement of p(target) {r['max_abs_disagreement']:.1e}.",
    ]
    for row in r.get("scaling") or []:
        lines.append(f"- {row['label']}: {_mb(row['peak'])}, {row['probes_per_s']:.2f} probes/s")
    return lines


def _md_fsdp(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['preset']} shape, batch {r['batch']} x {r['seq_len']}, {r['dtype']}, activation "
        f"checkpointing {'on' if r['activation_checkpointing'] else 'off'}: {r['steps']} steps "
        f"({r['stop_reason']}).",
        "",
        f"- loss {_num(r['loss_first'], '{:.3f}')} -> {_num(r['loss_last'], '{:.3f}')}; "
        f"{_num(r['tokens_per_s'])} tokens/s at the last step",
        f"- peak memory {_mb(r['measured_peak_bytes'])}, planned "
        f"{_mb(r['planned_peak_bytes'])} (`babel-interp plan`)",
        f"- checkpoints: {', '.join(r['checkpoints']) or 'none'}",
    ]


def _md_study(r: dict[str, Any]) -> list[str]:
    lines = [f"Corpus: {r['corpus']}; seeds done: {r['seeds_done']}.", ""]
    t = r.get("timings") or {}
    lines.append(
        "Time: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in t.items() if v is not None)
    )
    for run, step in (r.get("runs") or {}).items():
        lines.append(f"- run {run}: trained to step {step}")
    for key, verdict in (r.get("verdicts") or {}).items():
        text = verdict.get("verdict", verdict) if isinstance(verdict, dict) else verdict
        lines.append(f"- {key}: {text}")
    lines.append(f"- analysis: {r.get('analysis')}")
    if r.get("report"):
        lines.append(f"- report: `{r['report']}`")
    return lines


_RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "throughput": _md_throughput,
    "logit_lens": _md_logit_lens,
    "fsdp_smoke": _md_fsdp,
    "study": _md_study,
}


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m babel_interp.experiments.gpu_check",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, help="directory for gpu_check.json and .md")
    parser.add_argument(
        "--dry-run", action="store_true", help="every part on CPU at tiny sizes (CI)"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument(
        "--sources-archive", help="the study's real sources (made with babel_tower --pack-sources)"
    )
    parser.add_argument("--debian-dir", help="the study's Debian trees (php and go)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        cfg = GpuCheckConfig(
            out=args.out,
            dry_run=args.dry_run,
            parts=[p.strip() for p in args.parts.split(",") if p.strip()],
            sources_archive=args.sources_archive,
            debian_dir=args.debian_dir,
            progress=not args.quiet,
        )
    except ValueError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    results = run_gpu_check(cfg)
    print(Path(cfg.out) / MD_NAME)
    statuses = {name: rec["status"] for name, rec in results["parts"].items()}
    print(", ".join(f"{k}: {v}" for k, v in statuses.items()))
    return 1 if any(s in ("failed", "timeout") for s in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
