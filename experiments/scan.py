"""Where does the Babel Tower signature appear? A scan over depth, width and primary tokens.

Each *cell* is one model shape (``n_layers`` x ``d_model``) continued on the new language from
a primary-language model trained on ``m`` times the base number of primary tokens (the study
profile's ``primary_steps``). At each cell, for every seed, the scan measures what the study's
answer (:mod:`babel_interp.report.verdict`) reads: the middle layers' excess toward the primary
over matched controls for the continued model and for a from-scratch model trained on the same
target data, their difference with its interval, the first checkpoint that passes the
competence gate, and pass@1 by execution at that checkpoint where a suite runs (synthetic
corpus). The result is a phase diagram of the signature's strength over depth x primary tokens.

Economies, each exact:

* one primary run per shape and seed, at a constant learning rate after a fixed warmup, with a
  checkpoint at every multiplier's step: sampling is a pure function of ``(seed, step)``, so the
  checkpoint at ``m`` x base steps is the model a shorter run of the same seed would have ended
  with;
* one from-scratch run per shape and seed, shared by that shape's cells (it does not depend on
  the primary);
* only the working-language analyzer (and pass@1 at the verdict's step) runs: the scan asks
  where the signature is, the full study (``--profile quick|cpu|gpu``) asks everything else.

Every unit resumes (training, analysis and execution all reuse finished work), cells already
done are read back, and ``max_minutes`` stops before starting a unit once the budget is spent,
leaving the table and the figure of what was finished. Units run from the cheapest shape to the
most expensive, so a budget cut drops the largest models.

    python -m babel_interp.experiments.scan --grid cpu --out runs/scan --max-minutes 180
    python -m babel_interp.experiments.scan --corpus real --out runs/scan-real \\
        --depths 2,4 --widths 64 --primary-x 0.5,1
    python -m babel_interp.experiments.scan --grid cpu --out runs/scan --table-only
    python -m babel_interp.experiments.scan --combine runs/scan runs/scan-real \\
        --figure phase_diagram.png
    python -m babel_interp.experiments.babel_tower --profile scan --grid cpu  # the same scan
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase
from babel_interp.io import write_csv_atomic, write_json_atomic, write_text_atomic
from babel_interp.runs import Run, Study

from . import study as bt

SCAN_CSV = "scan.csv"
SCAN_MD = "scan.md"
SCAN_JSON = "scan.json"
PHASE_FIGURE = "phase_diagram.png"
PROFILE_OF_CORPUS = {"synthetic": "scan", "real": "scan-real"}


# Named grids (``--grid``). ``cpu`` is what a 2-core machine finishes in about two hours (the
# README's phase diagram: four depths at d_model 64, three at 128, which holds the demo's
# shape); ``gpu`` reaches the scale where the CPU scan cannot go, the GPU
# pilot's 8 layers x 512 and tens of millions of primary tokens (x16 is 13M tokens at batch
# 16 x 128, 52M at the grid's batch of 64), for one H100/H200 with bf16 and torch.compile.
GRIDS: dict[str, dict[str, Any]] = {
    "cpu": dict(
        depths=[2, 4, 6, 8],
        widths=[64],
        extra_shapes=["L2-d128", "L4-d128", "L8-d128"],
        primary_x=[0.25, 1.0, 2.0],
        seeds=[0, 1],
    ),
    "gpu": dict(
        depths=[4, 8],
        widths=[256, 512],
        primary_x=[1.0, 4.0, 16.0],
        seeds=[0, 1, 2],
        study=dict(preset="medium", batch_size=64, dtype="bfloat16", compile=True),
    ),
}


@dataclass
class ScanConfig(ConfigBase):
    """One scan. ``corpus`` is ``synthetic`` or ``real`` (its study profile is ``scan`` or
    ``scan-real``, :data:`babel_interp.profiles.STUDY_PROFILES`). The cells are every shape of
    ``depths`` x ``widths`` (``d_model``) plus ``extra_shapes`` (``"L4-d128"``), each at every
    ``primary_x`` (multiples of the profile's ``primary_steps``). ``max_minutes`` (0: no limit)
    is checked before each unit of work. ``study`` overrides fields of the per-cell
    :class:`~babel_interp.experiments.babel_tower.BabelTowerConfig` (e.g. ``{"lr": 1e-3}``)."""

    out: str = "runs/scan"
    corpus: str = "synthetic"
    target: str = "php"
    depths: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    widths: list[int] = field(default_factory=lambda: [64])
    extra_shapes: list[str] = field(default_factory=list)
    primary_x: list[float] = field(default_factory=lambda: [0.25, 1.0, 2.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    max_minutes: float = 0.0
    execution: bool | None = None
    study: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        if self.corpus not in PROFILE_OF_CORPUS:
            raise ValueError(
                f"ScanConfig.corpus must be one of {sorted(PROFILE_OF_CORPUS)}, got {self.corpus!r}"
            )
        for name in ("depths", "widths", "primary_x", "seeds"):
            if not getattr(self, name) and not (name in ("depths", "widths") and self.extra_shapes):
                raise ValueError(f"ScanConfig.{name} must not be empty")
        if any(int(d) < 1 for d in self.depths) or any(int(w) < 1 for w in self.widths):
            raise ValueError("ScanConfig.depths and widths must be positive")
        if any(not (x > 0 and math.isfinite(x)) for x in self.primary_x):
            raise ValueError(f"ScanConfig.primary_x must be positive, got {self.primary_x}")
        if self.max_minutes < 0:
            raise ValueError(f"ScanConfig.max_minutes must be >= 0, got {self.max_minutes}")
        for shape in self.extra_shapes:
            parse_shape(shape)
        # Every cell's study config is built now, so a bad override fails before any work.
        for shape in self.shapes():
            self.cell_config(shape)

    def shapes(self) -> list[tuple[int, int]]:
        """``(n_layers, d_model)`` of every shape, cheapest first (parameters in the blocks)."""
        grid = {(int(d), int(w)) for d in self.depths for w in self.widths}
        grid |= {parse_shape(s) for s in self.extra_shapes}
        return sorted(grid, key=lambda s: (s[0] * s[1] ** 2, s))

    def cell_config(self, shape: tuple[int, int]) -> bt.BabelTowerConfig:
        """The study config of ``shape``'s cells (its primary run at the largest multiplier)."""
        n_layers, d_model = shape
        d: dict[str, Any] = {
            "profile": PROFILE_OF_CORPUS[self.corpus],
            "out": str(Path(self.out) / shape_id(shape)),
            "targets": [self.target],
            "seeds": list(self.seeds),
            "n_layers": n_layers,
            "d_model": d_model,
            "device": self.device,
            "progress": self.progress,
            **self.study,
        }
        if self.execution is not None:
            d["execution"] = self.execution
        return bt.BabelTowerConfig.from_dict(d)


def parse_shape(text: str) -> tuple[int, int]:
    """``"L4-d128"`` -> ``(4, 128)``."""
    try:
        layers, width = text.split("-")
        if layers[0] != "L" or width[0] != "d":
            raise ValueError
        return int(layers[1:]), int(width[1:])
    except (ValueError, IndexError):
        raise ValueError(
            f"a shape is written like 'L4-d128' (layers, d_model); got {text!r}"
        ) from None


def shape_id(shape: tuple[int, int]) -> str:
    return f"L{shape[0]}-d{shape[1]}"


def x_id(x: float) -> str:
    return f"x{x:g}"


def primary_steps_at(base: int, x: float) -> int:
    """Primary steps of multiplier ``x`` (at least one)."""
    return max(1, round(base * x))


class Budget:
    """Minutes left before the scan stops starting new work (``minutes`` 0: no limit)."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.started = time.time()

    def spent(self) -> bool:
        return self.minutes > 0 and time.time() - self.started > self.minutes * 60

    def elapsed_min(self) -> float:
        return (time.time() - self.started) / 60


def _log(msg: str) -> None:
    print(f"[scan {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def shared_corpus(cfg: ScanConfig) -> Path:
    """The scan's corpus, built once at ``OUT/corpus`` for every shape (the study's builder)."""
    layout = Study(Path(cfg.out))
    first = cfg.cell_config(cfg.shapes()[0]).replace(out=str(cfg.out), corpus=cfg.corpus)
    return bt.build_study_corpus(first, layout)


def train_shape(
    cfg: ScanConfig, shape: tuple[int, int], seed: int, corpus: Path, budget: Budget
) -> bool:
    """One shape and seed: the constant-LR primary run with a checkpoint at every multiplier,
    the shared scratch run and its analysis, then each multiplier's continued run and its
    analysis. Returns False when the budget stopped it before the end."""
    from babel_interp.training import CheckpointSchedule

    scfg = cfg.cell_config(shape).replace(corpus=str(corpus))
    root = Study(Path(scfg.out))
    steps = {x: primary_steps_at(scfg.primary_steps, x) for x in cfg.primary_x}
    # Warmup fixed by the base run, not by the longest one, so every checkpoint is a run's end.
    warmup = max(1, min(50, scfg.primary_steps // 10))
    if budget.spent():
        return False
    bt._train(
        scfg,
        corpus,
        root.primary(seed),
        f"{scfg.primary}=1",
        max(steps.values()),
        seed,
        None,
        CheckpointSchedule(kind="steps", steps=sorted(set(steps.values()))),
        lr_kind="constant",
        warmup_steps=warmup,
    )
    _, cont_sched, scratch_sched = bt.study_schedules(scfg)
    lang = cfg.target
    if budget.spent():
        return False
    bt._train(
        scfg,
        corpus,
        root.scratch(seed, lang),
        f"{lang}=1",
        scfg.scratch_steps,
        seed,
        None,
        scratch_sched,
        schedule_steps=max(scfg.continual_steps, scfg.scratch_steps),
    )
    analyze_run(scfg, root.scratch(seed, lang), seed, random_inits=0)
    for x in cfg.primary_x:
        if budget.spent():
            return False
        cell = Study(root.root / x_id(x))
        init = Run(root.primary(seed)).checkpoint(steps[x]).path
        bt._train(
            scfg,
            corpus,
            cell.continual(seed, lang),
            f"{lang}=1",
            scfg.continual_steps,
            seed,
            init,
            cont_sched,
        )
        analyze_run(scfg, cell.continual(seed, lang), seed, random_inits=scfg.random_inits)
    return True


def analyze_run(scfg: bt.BabelTowerConfig, run: Path, seed: int, random_inits: int) -> None:
    """The working-language analyzer on every checkpoint of ``run`` (resumed when done; a
    run whose saved analysis already covers every checkpoint is not opened again)."""
    from babel_interp.analysis.working_language import logit_lens

    wl_cfg = _wl_config(scfg, seed, random_inits)
    if _analyzed(Path(run), wl_cfg):
        return

    _log(f"analyze: working language, {run}")
    logit_lens.analyze_run(run, wl_cfg, device=scfg.device, progress=scfg.progress)


def _wl_config(scfg: bt.BabelTowerConfig, seed: int, random_inits: int) -> Any:
    """The working-language analyzer's settings for one of the scan's runs."""
    from babel_interp.analysis.working_language import logit_lens

    return logit_lens.WorkingLanguageConfig(
        primary=scfg.primary,
        target=scfg.targets[0],
        n_per_pair=scfg.n_per_pair,
        seed=seed,
        n_random_init=random_inits,
    )


def _analyzed(run: Path, wl_cfg: Any) -> bool:
    """Whether ``run``'s working-language results, made with ``wl_cfg``, cover all its
    checkpoints (and the random-init baseline when one is asked for). Re-entering the analyzer
    would reuse them too, but only after rebuilding its probes and token sets: minutes per run
    on a CPU."""
    import pandas as pd

    wl = run / "analysis" / "working_language"
    if not (wl / "aggregate.csv").is_file() or not (wl / "summary.json").is_file():
        return False
    saved = json.loads((wl / "summary.json").read_text()).get("config", {})
    if saved != json.loads(json.dumps(wl_cfg.to_dict())):
        return False
    if wl_cfg.n_random_init and not (wl / "random_init.csv").is_file():
        return False
    done = set(pd.read_csv(wl / "aggregate.csv", usecols=["step"])["step"].astype(str))
    return {str(c.step) for c in Run(run).checkpoints()} <= done


def cell_verdict(cfg: ScanConfig, shape: tuple[int, int], x: float, seeds: list[int]) -> Any:
    """The study's verdict at one cell over ``seeds`` (the cell's continued runs against the
    shape's shared scratch runs)."""
    import pandas as pd

    from babel_interp.report.study import layer_excess, region_records
    from babel_interp.report.verdict import signature_verdict

    scfg = cfg.cell_config(shape)
    root = Path(scfg.out)
    cell = root / x_id(x)
    lang = cfg.target

    def rows(read: Any, kind: str, where: Path) -> pd.DataFrame:
        df = read(where, seeds, lang)
        return df[df["kind"] == kind] if len(df) else df

    per_seed = pd.concat(
        [rows(layer_excess, "continual", cell), rows(layer_excess, "scratch", root)],
        ignore_index=True,
    )
    regions = pd.concat(
        [rows(region_records, "continual", cell), rows(region_records, "scratch", root)],
        ignore_index=True,
    )
    return signature_verdict(cell, seeds, lang, scfg.primary, per_seed=per_seed, regions=regions)


def cell_competence(
    cfg: ScanConfig, shape: tuple[int, int], x: float, seeds: list[int]
) -> dict[str, Any]:
    """How close the cell's continued models came to the competence gate: the best probe
    top-1 over checkpoints (mean over seeds, each seed's best) and the first step each seed
    passed (-1: never)."""
    from babel_interp.report.study import layer_excess

    cell = Path(cfg.cell_config(shape).out) / x_id(x)
    df = layer_excess(cell, seeds, cfg.target)
    df = df[df["kind"] == "continual"] if len(df) else df
    if df.empty:
        return {}
    best = df.groupby("seed")["top1_acc"].max()
    first = []
    for seed in seeds:
        ok = df[(df["seed"] == seed) & df["competent"].astype(bool)]["step"]
        first.append(str(int(ok.min())) if len(ok) else "-1")
    return {"best_top1": float(best.mean()), "first_competent": " ".join(first)}


def cell_pass_at_1(
    cfg: ScanConfig, shape: tuple[int, int], x: float, seeds: list[int], step: int
) -> dict[str, float]:
    """Mean pass@1 over ``seeds`` of the continued and scratch models at ``step`` (executed
    in the sandbox, resumed when done); empty when the profile runs no execution."""
    scfg = cfg.cell_config(shape)
    if not scfg.execution:
        return {}
    root = Study(Path(scfg.out))
    cell = Study(root.root / x_id(x))
    lang = cfg.target
    out: dict[str, list[float]] = {"continual": [], "scratch": []}
    for seed in seeds:
        for kind, run in (
            ("continual", cell.continual(seed, lang)),
            ("scratch", root.scratch(seed, lang)),
        ):
            result = bt._evaluate(scfg, run, lang, seed, scfg.device, steps=[step])
            table = result.pass_at_k()
            at = table[(table["step"] == step) & (table["language"] == lang) & (table["k"] == 1)]
            if len(at):
                out[kind].append(float(at["pass_at_k"].iloc[0]))
    return {k: sum(v) / len(v) for k, v in out.items() if v}


def scan_table(cfg: ScanConfig, done: dict[str, list[int]]) -> list[dict[str, Any]]:
    """One row per cell: the verdict, its numbers and intervals, the first competent step and
    pass@1 there, over the seeds each shape finished (``done``: shape id -> seeds)."""
    rows = []
    for shape in cfg.shapes():
        scfg = cfg.cell_config(shape)
        seeds = done.get(shape_id(shape), [])
        for x in cfg.primary_x:
            row: dict[str, Any] = {
                "corpus": cfg.corpus,
                "cell": f"{shape_id(shape)}-{x_id(x)}",
                "n_layers": shape[0],
                "d_model": shape[1],
                "primary_x": x,
                "primary_tokens": primary_steps_at(scfg.primary_steps, x)
                * scfg.batch_size
                * scfg.seq_len,
                "target_tokens": scfg.continual_steps * scfg.batch_size * scfg.seq_len,
                "seeds": " ".join(map(str, seeds)),
                "n_seeds": len(seeds),
            }
            if not seeds:
                rows.append({**row, "verdict": "not run"})
                continue
            v = cell_verdict(cfg, shape, x, seeds)
            row.update(verdict=v.verdict, reason=v.reason, step=v.step, interval=v.interval)
            row.update(cell_competence(cfg, shape, x, seeds))
            for name in ("difference", "continued", "scratch", "continued_output"):
                est = getattr(v, name)
                if est is not None:
                    row[name] = est.value
                    row[f"{name}_lo"] = est.low
                    row[f"{name}_hi"] = est.high
            if v.step is not None:
                row.update({f"pass@1_{k}": p for k, p in _pass(cfg, shape, x, seeds, v.step)})
            rows.append(row)
    return rows


def _pass(
    cfg: ScanConfig, shape: tuple[int, int], x: float, seeds: list[int], step: int
) -> list[tuple[str, float]]:
    from babel_interp.evaluation.runners import ToolchainMissingError

    try:
        return list(cell_pass_at_1(cfg, shape, x, seeds, step).items())
    except ToolchainMissingError as exc:  # a missing interpreter must not lose the scan
        _log(f"pass@1 not measured at {shape_id(shape)} {x_id(x)}: {exc}")
        return []


def scan_markdown(rows: list[dict[str, Any]]) -> str:
    """The scan's table in Markdown: one line per cell, the difference with its interval."""
    from babel_interp.formatting import fmt_count, fmt_interval, fmt_number

    def est(r: dict[str, Any], name: str) -> str:
        if not isinstance(r.get(name), float) or not math.isfinite(r[name]):
            return "—"
        return fmt_interval(r[name], r[f"{name}_lo"], r[f"{name}_hi"], signed=True)

    lines = [
        "| layers | d_model | primary tokens | seeds | gate passed at (best top-1) | verdict "
        "| step | continued | scratch | continued − scratch | pass@1 continued / scratch |",
        "|---:|---:|---:|---:|---|---|---:|---|---|---|---|",
    ]
    for r in rows:
        step = r.get("step")
        has_step = isinstance(step, (int, float)) and math.isfinite(float(step))
        passes = (
            f"{fmt_number(r['pass@1_continual'])} / {fmt_number(r['pass@1_scratch'])}"
            if "pass@1_continual" in r and "pass@1_scratch" in r
            else "—"
        )
        gate = "—"
        first = r.get("first_competent")
        if first is not None and not (isinstance(first, float) and math.isnan(first)):
            # One seed's step reads back from the CSV as a number.
            firsts = ["never" if f == "-1" else f for f in str(first).split()]
            gate = f"{', '.join(firsts)} ({fmt_number(r['best_top1'], 0, percent=True)})"
        lines.append(
            f"| {r['n_layers']} | {r['d_model']} | {fmt_count(r['primary_tokens'])} "
            f"| {r['n_seeds']} | {gate} | {r['verdict']} | {int(step) if has_step else '—'} "
            f"| {est(r, 'continued')} | {est(r, 'scratch')} | {est(r, 'difference')} "
            f"| {passes} |"
        )
    return "\n".join(lines) + "\n"


def finished(cfg: ScanConfig) -> dict[str, list[int]]:
    """Shape id -> the seeds whose runs and analyses of every cell are complete on disk (what
    the table reads; another process may have finished some)."""
    out: dict[str, list[int]] = {}
    for shape in cfg.shapes():
        scfg = cfg.cell_config(shape)
        root = Study(Path(scfg.out))
        for seed in cfg.seeds:
            runs = [(root.scratch(seed, cfg.target), scfg.scratch_steps, 0)]
            runs += [
                (
                    Study(root.root / x_id(x)).continual(seed, cfg.target),
                    scfg.continual_steps,
                    scfg.random_inits,
                )
                for x in cfg.primary_x
            ]
            if all(_complete(run, steps, scfg, seed, inits) for run, steps, inits in runs):
                out.setdefault(shape_id(shape), []).append(seed)
    return out


def _complete(run: Path, steps: int, scfg: bt.BabelTowerConfig, seed: int, inits: int) -> bool:
    if not (run / "checkpoints").is_dir():
        return False
    if steps not in {c.step for c in Run(run).checkpoints()}:
        return False
    return _analyzed(run, _wl_config(scfg, seed, inits))


def _record(state_path: Path, cfg: ScanConfig, **fields: Any) -> None:
    """Merge ``fields`` into ``scan.json`` (re-read first: per-unit minutes of other
    invocations are kept)."""
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    minutes = {**state.get("minutes", {}), **fields.pop("minutes", {})}
    write_json_atomic(state_path, {**state, "config": cfg.to_dict(), "minutes": minutes, **fields})


def run_scan(cfg: ScanConfig, train: bool = True) -> Path:
    """Run (or resume) the scan, then write ``scan.csv``, ``scan.md``, ``scan.json`` and the
    phase diagram of every finished cell; returns the CSV's path. ``train=False`` only reads
    what is finished (``--table-only``)."""
    from babel_interp.report.scan_plots import plot_phase_diagram

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(cfg.max_minutes)
    state_path = out / SCAN_JSON
    stopped = False
    corpus = shared_corpus(cfg) if train else None
    for shape in cfg.shapes() if train else []:
        sid = shape_id(shape)
        for seed in cfg.seeds:
            # Finished shapes are visited again: every unit resumes, so this costs seconds and
            # picks up multipliers added since.
            if budget.spent():
                stopped = True
                break
            t = time.time()
            _log(f"{sid} seed {seed}: {budget.elapsed_min():.0f} min spent")
            assert corpus is not None
            if not train_shape(cfg, shape, seed, corpus, budget):
                stopped = True
                break
            _record(
                state_path, cfg, minutes={f"{sid}/seed_{seed}": round((time.time() - t) / 60, 2)}
            )
        if stopped:
            _log(f"budget of {cfg.max_minutes:g} min spent: stopping before {sid}")
            break
    import pandas as pd

    done = finished(cfg)
    rows = scan_table(cfg, done)
    csv = out / SCAN_CSV
    write_csv_atomic(csv, pd.DataFrame(rows))
    write_text_atomic(out / SCAN_MD, scan_markdown(rows))
    _record(state_path, cfg, done=done, stopped_by_budget=stopped)
    plot_phase_diagram(rows, out / PHASE_FIGURE, target=cfg.target)
    _log(f"table: {csv}; figure: {out / PHASE_FIGURE}")
    return csv


def combine_scans(scans: list[str], figure: str | Path) -> Path:
    """One phase diagram of several finished scans (e.g. the synthetic and the real-code one,
    side by side) from their tables; returns the figure's path."""
    import pandas as pd

    from babel_interp.report.scan_plots import plot_phase_diagram

    rows: list[dict[str, Any]] = []
    targets = set()
    for d in scans:
        csv = Path(d) / SCAN_CSV
        if not csv.is_file():
            raise FileNotFoundError(f"{csv} is missing: {d} is not a finished scan")
        rows += pd.read_csv(csv).to_dict("records")
        state = Path(d) / SCAN_JSON
        if state.is_file():
            targets.add(json.loads(state.read_text())["config"]["target"])
    return plot_phase_diagram(rows, figure, target="/".join(sorted(targets)) or "php")


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m babel_interp.experiments.scan", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--grid",
        choices=sorted(GRIDS),
        help="a named grid (cpu: the README's phase diagram; gpu: the sizes past a CPU); "
        "the options below override it",
    )
    parser.add_argument("--config", help="JSON file of ScanConfig fields")
    parser.add_argument("--out", help="scan directory (default runs/scan)")
    parser.add_argument("--corpus", choices=sorted(PROFILE_OF_CORPUS), help="default synthetic")
    parser.add_argument("--target", help="the new language (default php)")
    parser.add_argument("--depths", help="comma-separated layer counts (default 2,4,6,8)")
    parser.add_argument("--widths", help="comma-separated d_model values (default 64)")
    parser.add_argument("--shapes", help="extra shapes, e.g. L4-d128,L2-d256")
    parser.add_argument(
        "--primary-x", help="multiples of the profile's primary steps (default 0.25,1,2)"
    )
    parser.add_argument("--seeds", help="comma-separated seeds (default 0,1)")
    parser.add_argument(
        "--max-minutes", type=float, help="stop before starting work past this budget"
    )
    parser.add_argument(
        "--execution",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pass@1 by execution at each cell's verdict step (default: the profile's)",
    )
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true")
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="SCAN",
        help="draw one phase diagram of these finished scans (to --figure) and stop",
    )
    parser.add_argument("--figure", help="where --combine writes its figure")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="train nothing: write the table and the diagram of the cells already finished",
    )
    args = parser.parse_args(argv)
    if args.combine:
        if not args.figure:
            parser.error("--combine needs --figure PATH")
        try:
            print(f"scan: {combine_scans(args.combine, args.figure)}")
        except FileNotFoundError as exc:
            print(f"scan: error: {exc}", file=sys.stderr)
            return 2
        return 0
    d: dict[str, Any] = dict(GRIDS[args.grid]) if args.grid else {}
    if args.config:
        d.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    for key in ("out", "corpus", "target", "device"):
        if getattr(args, key):
            d[key] = getattr(args, key)
    lists = {
        "depths": (args.depths, _ints),
        "widths": (args.widths, _ints),
        "primary_x": (args.primary_x, _floats),
        "seeds": (args.seeds, _ints),
    }
    try:
        for key, (text, parse) in lists.items():
            if text:
                try:
                    d[key] = parse(text)
                except ValueError:
                    raise ValueError(
                        f"--{key.replace('_', '-')} takes comma-separated numbers, got {text!r}"
                    ) from None
        if args.shapes:
            d["extra_shapes"] = [s.strip() for s in args.shapes.split(",") if s.strip()]
        if args.max_minutes is not None:
            d["max_minutes"] = args.max_minutes
        if args.execution is not None:
            d["execution"] = args.execution
        if args.no_progress:
            d["progress"] = False
        cfg = ScanConfig.from_dict(d)
    except ValueError as exc:
        print(f"scan: error: {exc}", file=sys.stderr)
        return 2
    try:
        csv = run_scan(cfg, train=not args.table_only)
    except bt.StudyInterrupted as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"scan: {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
