"""Fault-injection campaign: kill training at random moments, resume, and count what was lost.

Every trial starts ``babel-interp train`` in a child process and kills it with SIGKILL, either
at a random moment of the run (``time``) or at a named fault point of the writers
(``point``: between a checkpoint's files, before its manifest, before and after its directory
rename, while an old checkpoint is discarded, half-way through a ``metrics.jsonl`` line; see
:mod:`babel_interp.faults`), or at a random moment after which one file of the newest
checkpoint is cut to half its size, as a full disk or a copy cut short leaves it
(``damage``: resume must fall back to the checkpoint before). Then the same command with
``--resume`` runs until the run completes (each resume is a fresh process), and the trial
is compared with an uninterrupted reference run of the same configuration:

* **exact**: the resumed run logged bit for bit the reference's training and evaluation
  records (CPU, one thread: what exact resume promises);
* **lost**: anything missing or damaged: a step without its record, a scheduled checkpoint
  missing, a checkpoint or the corpus failing ``babel-interp verify``, a resume that failed.

Writes ``OUT/campaign.csv`` (one row per trial), ``OUT/summary.json`` and
``OUT/fault_campaign.png``, and prints the summary::

    python -m babel_interp.experiments.fault_campaign --out runs/faults --trials 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from babel_interp.faults import ENV, FAULT_POINTS
from babel_interp.integrity import Verification
from babel_interp.io import write_csv_atomic, write_json_atomic
from babel_interp.runs import list_checkpoints, read_metrics
from babel_interp.training.verify import verify_run

STEPS = 60
# Checkpoints at the log schedule and every 10 steps; only the 2 newest unscheduled ones are
# kept, so old checkpoints are discarded while the run goes (the discard is a fault point).
TRAIN_ARGS = (
    "--steps", str(STEPS), "--batch-size", "8", "--seq-len", "64", "--lr", "3e-3",
    "--warmup", "5", "--mixture", "0:python=1;30:php=0.8,python=0.2", "--eval-every", "15",
    "--eval-windows", "4", "--checkpoints", "log", "--resume-every", "10", "--keep-last", "2",
    "--threads", "1", "--no-progress",
)  # fmt: skip
MAX_RESUMES = 5
KINDS = ("time", "point", "damage")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "babel_interp.cli", *args]


def _env(faults: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if faults:
        env[ENV] = faults
    return env


def comparable(run: Path) -> list[tuple]:
    """The records that must equal the reference's: every train, eval and mixture record."""
    out = []
    for r in read_metrics(run):
        if r["type"] == "train":
            out.append(("train", r["step"], r["loss"], r["loss_per_language"], r["tokens_seen"],
                        r["lr"], r["grad_norm"]))  # fmt: skip
        elif r["type"] == "eval":
            out.append(("eval", r["step"], r["val_loss"], r["val_bpb"]))
        elif r["type"] == "mixture":
            out.append(("mixture", r["step"], r["reason"], r["weights"]))
    return out


@dataclass
class Trial:
    """One kill and what the resumes made of it."""

    trial: int
    kind: str  # "time", "point" or "damage"
    point: str
    hit: int
    kill_after_s: float
    killed: bool
    resumes: int
    resumed_ok: bool
    exact: bool
    steps_logged: int
    missing_steps: int
    missing_checkpoints: int
    verify_problems: int
    lost: bool
    corrupt_kept_aside: int
    seconds: float
    note: str


def _train(corpus: Path, run: Path, resume: bool, faults: str | None = None):
    args = ["train", "--corpus", str(corpus), "--out", str(run), *TRAIN_ARGS]
    return _cli(*args, *(["--resume"] if resume else [])), _env(faults)


def run_trial(
    i: int, kind: str, corpus: Path, work: Path, reference: dict[str, Any], rng: random.Random
) -> Trial:
    """Kill one run (``kind``: ``time``, ``point`` or ``damage``), resume it to the end,
    compare with the reference."""
    run = work / f"trial_{i:03d}"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    point, hit, after = "", 0, 0.0
    faults = None
    if kind == "point":
        point = rng.choice(FAULT_POINTS)
        hit = rng.randint(1, max(1, reference["hits"].get(point, 1)))
        faults = f"{point}@{hit}"
    else:
        after = rng.uniform(0.1, 0.95 if kind == "time" else 1.2) * reference["seconds"]
    cmd, env = _train(corpus, run, resume=False, faults=faults)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kind != "point":
        try:
            proc.wait(timeout=after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    killed = proc.returncode == -signal.SIGKILL
    note = "" if killed or proc.returncode == 0 else err.decode()[-300:]
    if kind == "damage" and (run / "checkpoints").is_dir() and list_checkpoints(run):
        newest = list_checkpoints(run)[-1].path
        victim = rng.choice(sorted(p for p in newest.rglob("*") if p.is_file()))
        with open(victim, "r+b") as f:
            f.truncate(victim.stat().st_size // 2)
        point = f"truncated {victim.relative_to(newest)}"
        proc.returncode = proc.returncode or 1  # damaged: resume even a completed run
    resumes, ok = 0, proc.returncode == 0
    while not ok and resumes < MAX_RESUMES:
        resumes += 1
        cmd, env = _train(corpus, run, resume=True)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        ok = res.returncode == 0
        if not ok:
            note = res.stderr[-300:]
    records = comparable(run) if (run / "metrics.jsonl").is_file() else []
    steps = {r[1] for r in records if r[0] == "train"}
    missing_steps = len(set(range(1, STEPS + 1)) - steps)
    have = {c.step for c in list_checkpoints(run)} if (run / "checkpoints").is_dir() else set()
    missing_ckpts = len(set(reference["checkpoints"]) - have)
    checks: list[Verification] = verify_run(run) if ok else []
    problems = sum(len(c.problems) for c in checks)
    corrupt = len(list((run / "checkpoints").glob("*.corrupt-*"))) if have else 0
    lost = (not ok) or missing_steps > 0 or missing_ckpts > 0 or problems > 0
    return Trial(
        trial=i,
        kind=kind,
        point=point,
        hit=hit,
        kill_after_s=round(after, 3),
        killed=killed,
        resumes=resumes,
        resumed_ok=ok,
        exact=ok and records == reference["records"],
        steps_logged=len(steps),
        missing_steps=missing_steps,
        missing_checkpoints=missing_ckpts,
        verify_problems=problems,
        lost=lost,
        corrupt_kept_aside=corrupt,
        seconds=round(time.perf_counter() - t0, 2),
        note=note.strip().replace("\n", " | "),
    )


def _reference(corpus: Path, work: Path) -> dict[str, Any]:
    run = work / "reference"
    shutil.rmtree(run, ignore_errors=True)
    cmd, env = _train(corpus, run, resume=False)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    ckpts = [c.step for c in list_checkpoints(run)]
    n_written = sum(1 for r in read_metrics(run) if r["type"] == "checkpoint")
    # How often each fault point is passed in a whole run: the range a trial draws its hit from.
    hits = {p: n_written for p in FAULT_POINTS if p.startswith("checkpoint.")}
    hits["checkpoint.discard"] = max(1, n_written - len(ckpts))
    hits["metrics.torn_write"] = len(read_metrics(run))
    return {"records": comparable(run), "checkpoints": ckpts, "seconds": seconds, "hits": hits}


def summarize(trials: pd.DataFrame) -> dict[str, Any]:
    """Kills injected, resumes that succeeded, exact matches and runs that lost data."""
    return {
        "trials": len(trials),
        "kills_injected": int(trials["killed"].sum()),
        "kills_by_kind": {k: int(g["killed"].sum()) for k, g in trials.groupby("kind")},
        "kills_at_points": {
            p: int(g["killed"].sum()) for p, g in trials[trials["kind"] == "point"].groupby("point")
        },
        "resumes": int(trials["resumes"].sum()),
        "runs_resumed_ok": int(trials["resumed_ok"].sum()),
        "exact_matches": int(trials["exact"].sum()),
        "runs_with_data_lost": int(trials["lost"].sum()),
        "damaged_checkpoints_set_aside": int(trials["corrupt_kept_aside"].sum()),
    }


def plot(trials: pd.DataFrame, out: Path) -> Path:
    """Outcome of every trial by where it was killed."""
    killed = trials[trials["killed"] | (trials["kind"] == "damage")].copy()
    killed["where"] = killed.apply(
        lambda r: {"point": r["point"], "damage": "checkpoint file truncated"}.get(
            r["kind"], "random moment"
        ),
        axis=1,
    )
    table = killed.groupby("where").agg(
        killed=("killed", "sum"), exact=("exact", "sum"), lost=("lost", "sum")
    )
    fig = Figure(figsize=(7, 0.5 + 0.35 * max(1, len(table))), layout="constrained")
    ax = fig.subplots()
    y = range(len(table))
    ax.barh(y, table["killed"], color="0.8", label="killed")
    ax.barh(y, table["exact"], color="tab:green", height=0.5, label="resumed, bit-exact")
    ax.barh(y, table["lost"], color="tab:red", height=0.3, label="data lost")
    ax.set_yticks(list(y), table.index)
    ax.set_xlabel("trials")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("SIGKILL during training, then --resume", fontsize=10)
    path = out / "fault_campaign.png"
    fig.savefig(path, dpi=120)
    return path


def run_campaign(out: str | os.PathLike, trials: int, seed: int = 0, progress: bool = True):
    """Build a small corpus, train a reference, then ``trials`` kill-and-resume trials,
    rotating random-moment kills, fault-point kills and damaged checkpoints. Returns (trials
    table, summary)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus"
    if not (corpus / "manifest.json").is_file():
        subprocess.run(
            _cli(
                "corpus",
                "synth",
                "--out",
                str(corpus),
                "--languages",
                "python,php",
                "--docs",
                "120",
                "--vocab-size",
                "512",
                "--quiet",
            ),  # fmt: skip
            check=True,
            env=_env(None),
            capture_output=True,
        )
    work = out / "runs"
    reference = _reference(corpus, work)
    rng = random.Random(seed)
    rows = []
    for i in tqdm(range(trials), desc="kill and resume", unit="trial", disable=not progress):
        trial = run_trial(i, KINDS[i % len(KINDS)], corpus, work, reference, rng)
        rows.append(asdict(trial))
        if not trial.lost:
            shutil.rmtree(work / f"trial_{i:03d}", ignore_errors=True)  # keep only failures
    table = pd.DataFrame(rows)
    summary = {**summarize(table), "seed": seed, "steps": STEPS, "train_args": list(TRAIN_ARGS)}
    write_csv_atomic(out / "campaign.csv", table)
    write_json_atomic(out / "summary.json", summary)
    plot(table, out)
    return table, summary


# --------------------------------------------------------------------------- the study
# A micro study (one seed, PHP, seconds per phase); what the tests of the study use.
MICRO_STUDY = {
    "profile": "quick", "targets": ["php"], "seeds": [0], "docs_per_language": 120,
    "vocab_size": 512, "preset": "tiny", "seq_len": 64, "batch_size": 8, "primary_steps": 24,
    "continual_steps": 12, "scratch_steps": 6, "n_checkpoints": 3, "eval_windows": 4,
    "neuron_tokens": 1024, "neuron_permutations": 3, "n_per_pair": 2, "completion_docs": 3,
    "completion_tokens": 8, "execution_problems": 3, "execution_tokens": 24, "progress": False,
}  # fmt: skip
# Where a study is killed: the first log line of each phase (training, then every analyzer).
STUDY_PHASES = (
    "train: seed_0/php/continual",
    "analyze: performance",
    "analyze: working language",
    "analyze: neurons",
    "evaluate: pass@1 by execution",
    "analyze: transfer ratio",
    "evaluate: problem-route transfer ratio",
)
# Columns that legitimately differ between two runs of one study: wall-clock seconds, and
# sandbox error text that names the temporary directory a program ran in.
VOLATILE_COLUMNS = ("compile_s", "run_s", "reason", "seconds")


def _study_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "babel_interp.experiments.babel_tower", "--config",
            str(config), "--out", str(out), "--no-progress"]  # fmt: skip


def study_tables(study: Path) -> dict[str, pd.DataFrame]:
    """Every CSV table of a study, keyed by its path, without the volatile columns."""
    out = {}
    for path in sorted(study.rglob("*.csv")):
        rel = path.relative_to(study).as_posix()
        if rel.startswith("corpus/"):
            continue
        try:
            df = pd.read_csv(path, keep_default_na=False)
        except pd.errors.EmptyDataError:  # a table with no rows and no header
            df = pd.DataFrame()
        out[rel] = df.drop(columns=[c for c in VOLATILE_COLUMNS if c in df.columns])
    return out


def _diff(ref: dict[str, pd.DataFrame], got: dict[str, pd.DataFrame]) -> list[str]:
    diffs = [f"{k}: missing" for k in sorted(set(ref) - set(got))]
    diffs += [f"{k}: not in the reference" for k in sorted(set(got) - set(ref))]
    for k in sorted(set(ref) & set(got)):
        if not ref[k].equals(got[k]):
            diffs.append(f"{k}: differs")
    return diffs


def run_study_campaign(
    out: str | os.PathLike,
    seed: int = 0,
    phases: tuple[str, ...] = STUDY_PHASES,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Kill ``experiments.babel_tower`` once in each phase (a random moment up to 2 s after the
    phase's first log line), rerun the same command to the end, and compare every table with
    an uninterrupted study's. Returns (one row per kill, summary)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "micro_study.json"
    write_json_atomic(config, MICRO_STUDY)
    env = _env(None) | {"OMP_NUM_THREADS": "1"}
    ref_dir = out / "study_reference"
    shutil.rmtree(ref_dir, ignore_errors=True)
    subprocess.run(_study_cmd(config, ref_dir), env=env, check=True, capture_output=True)
    reference = study_tables(ref_dir)
    rng = random.Random(seed)
    rows = []
    for phase in tqdm(phases, desc="kill the study", unit="phase", disable=not progress):
        study = out / f"study_{phase.split(':')[0]}_{len(rows)}"
        shutil.rmtree(study, ignore_errors=True)
        proc = subprocess.Popen(
            _study_cmd(config, study), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        reached = False
        for line in proc.stdout:  # type: ignore[union-attr]
            if phase in line:
                reached = True
                time.sleep(rng.uniform(0.0, 2.0))
                proc.send_signal(signal.SIGKILL)
                break
        proc.kill()
        proc.wait()
        killed = proc.returncode == -signal.SIGKILL and reached
        rerun = subprocess.run(_study_cmd(config, study), env=env, capture_output=True, text=True)
        diffs = _diff(reference, study_tables(study)) if rerun.returncode == 0 else []
        rows.append(
            {
                "phase": phase,
                "killed": killed,
                "rerun_ok": rerun.returncode == 0,
                "tables": len(reference),
                "tables_equal": rerun.returncode == 0 and not diffs,
                "differences": "; ".join(diffs)
                if rerun.returncode == 0
                else rerun.stderr[-300:].replace("\n", " | "),
            }
        )
        if rows[-1]["tables_equal"]:
            shutil.rmtree(study, ignore_errors=True)
    table = pd.DataFrame(rows)
    summary = {
        "study_kills": int(table["killed"].sum()),
        "study_reruns_ok": int(table["rerun_ok"].sum()),
        "study_runs_with_equal_tables": int(table["tables_equal"].sum()),
        "tables_compared": len(reference),
        "volatile_columns_ignored": list(VOLATILE_COLUMNS),
    }
    write_csv_atomic(out / "study_campaign.csv", table)
    write_json_atomic(out / "study_summary.json", summary)
    return table, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for the corpus, runs and tables")
    parser.add_argument("--trials", type=int, default=50, help="kill-and-resume trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and points")
    parser.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bar"
    )
    parser.add_argument(
        "--study",
        action="store_true",
        help="instead: kill a micro study once in each phase (training, every analyzer), "
        "rerun it and compare every table with an uninterrupted study's",
    )
    args = parser.parse_args(argv)
    if args.study:
        table, summary = run_study_campaign(args.out, args.seed, progress=not args.no_progress)
        print(table.to_string(index=False))
        print(json.dumps(summary, indent=2))
        return 0 if summary["study_runs_with_equal_tables"] == len(table) else 1
    if args.trials < 1:
        parser.error("--trials must be >= 1")
    _, summary = run_campaign(args.out, args.trials, args.seed, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "train_args"}, indent=2))
    return 0 if summary["runs_with_data_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
