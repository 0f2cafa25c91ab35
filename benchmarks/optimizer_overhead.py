"""Overhead of the online optimizer on training, against plain training in the same run.

Cases, all the same training run (same corpus, model, batch, steps, seed, evaluation schedule):

* reference: :func:`babel_interp.training.train` with a static proportional mixture;
* controller: the same with :class:`~babel_interp.optimizer.controller.StageAwareController`
  reading the validation loss at every evaluation (the default harness controller);
* controller+share: the same plus :class:`~babel_interp.optimizer.controller.WorkingLanguageSignal`,
  the working-language analyzer run on the live model at every evaluation.

The controller changes the mixture, so the batches differ from the reference's; the model,
batch size and step count do not, so the cost per step is comparable. Cases are interleaved over
``--repeats`` rounds and the median is reported, because on a shared machine the neighbours'
load drifts. Printed per case: wall seconds, process CPU seconds, ratio to the reference, and the
seconds the optimizer itself reported (its own timers) as a share of the rest of the run.
Run: ``python benchmarks/optimizer_overhead.py [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def build_corpus(root: Path, docs: int) -> Path:
    from babel_interp.corpus.build import build_corpus as _build
    from babel_interp.corpus.build import synthetic_corpus_config

    out = root / "corpus"
    _build(
        synthetic_corpus_config(
            out,
            languages=("python", "php", "go"),
            docs_per_language=docs,
            vocab_size=512,
            progress=False,
        )
    )
    return out


def train_config(corpus: Path, out: Path, args: argparse.Namespace):
    from babel_interp.training import (
        CheckpointConfig,
        CheckpointSchedule,
        LRSchedule,
        OptimConfig,
        TrainConfig,
    )

    return TrainConfig(
        corpus=str(corpus),
        out=str(out),
        preset=args.preset,
        mixture=None,  # proportional
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        optim=OptimConfig(schedule=LRSchedule(lr=2e-3, warmup_steps=5)),
        eval_every=args.eval_every,
        eval_windows=4,
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="steps", steps=[args.steps], include_start=False)
        ),
        progress=False,
        seed=0,
    )


def callbacks_for(case: str) -> list:
    from babel_interp.optimizer.controller import (
        ControllerConfig,
        StageAwareController,
        WorkingLanguageSignal,
    )
    from babel_interp.training import AnalyzerCallback

    if case == "reference":
        return []
    if case == "controller":
        return [StageAwareController(ControllerConfig())]
    signal = WorkingLanguageSignal(["php", "go"], n_per_pair=2)
    return [
        AnalyzerCallback("wl", signal, when="eval"),
        StageAwareController(ControllerConfig(), share_signal="wl"),
    ]


def own_seconds(callbacks: list) -> float:
    total = 0.0
    for cb in callbacks:
        total += float(getattr(cb, "seconds", 0.0))
        total += float(getattr(getattr(cb, "fn", None), "seconds", 0.0))
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a short run (a smoke test)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--docs", type=int, default=60, help="synthetic documents per language")
    args = p.parse_args()
    if args.quick:
        args.steps, args.eval_every, args.repeats, args.docs = 24, 6, 1, 20
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from babel_interp.training import train

    cases = ["reference", "controller", "controller+share"]
    wall: dict[str, list[float]] = {c: [] for c in cases}
    cpu: dict[str, list[float]] = {c: [] for c in cases}
    own: dict[str, list[float]] = {c: [] for c in cases}
    root = Path(tempfile.mkdtemp(prefix="bench-optimizer-"))
    try:
        corpus = build_corpus(root, args.docs)
        # Untimed warm-up: the first run pays for lazy imports and allocator growth.
        warm = root / "warmup"
        train(train_config(corpus, warm, args), callbacks_for("controller+share"))
        shutil.rmtree(warm)
        for r in range(args.repeats):
            for case in cases:
                out = root / f"{case}-{r}"
                cbs = callbacks_for(case)
                t0, c0 = time.perf_counter(), time.process_time()
                train(train_config(corpus, out, args), cbs)
                wall[case].append(time.perf_counter() - t0)
                cpu[case].append(time.process_time() - c0)
                own[case].append(own_seconds(cbs))
                shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    evals = args.steps // args.eval_every + 1
    print(
        f"optimizer overhead: preset {args.preset}, {args.steps} steps x {args.batch_size} x "
        f"{args.seq_len} tokens, {evals} evaluations, torch threads {torch.get_num_threads()}, "
        f"median of {args.repeats}"
    )
    ref_wall = statistics.median(wall["reference"])
    ref_cpu = statistics.median(cpu["reference"])
    print(
        f"{'case':>17} {'wall s':>8} {'cpu s':>8} {'wall/ref':>9} {'cpu/ref':>8} "
        f"{'own s':>7} {'own share':>10}"
    )
    for case in cases:
        w, c, o = (statistics.median(x[case]) for x in (wall, cpu, own))
        share = o / (w - o) if w > o else float("nan")
        print(
            f"{case:>17} {w:8.2f} {c:8.2f} {w / ref_wall:9.3f} {c / ref_cpu:8.3f} "
            f"{o:7.3f} {share:10.4f}"
        )


if __name__ == "__main__":
    main()
