"""The Babel Tower study's command line (the study itself: :mod:`.study`).

    python -m babel_interp.experiments.babel_tower --profile quick --out runs/demo
    python -m babel_interp.experiments.babel_tower --profile cpu --out runs/real_cpu  # real code
    python -m babel_interp.experiments.babel_tower --profile gpu \\
        --pack-sources runs/sources.tar.xz
    python -m babel_interp.experiments.babel_tower --profile gpu \\
        --sources-archive runs/sources.tar.xz --out runs/real_gpu  # on the GPU
    python -m babel_interp.experiments.babel_tower --config my_study.json
    python -m babel_interp.experiments.babel_tower --profile scan --out runs/scan  # scale scan

The study's API is re-exported here (``babel_tower.run_experiment``,
``babel_tower.BabelTowerConfig``, ...), so ``from babel_interp.experiments import babel_tower``
gives both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from babel_interp.profiles import STUDY_PROFILES

from .study import (
    CORPUS_KINDS,
    BabelTowerConfig,
    StudyInterrupted,
    analyze_runs,
    analyze_seed,
    build_study_corpus,
    corpus_languages,
    pack_study_sources,
    run_experiment,
    sources_config,
    study_model,
    study_schedules,
    study_sources,
    train_runs,
    train_seed,
)

__all__ = [
    "CORPUS_KINDS",
    "BabelTowerConfig",
    "StudyInterrupted",
    "analyze_runs",
    "analyze_seed",
    "build_study_corpus",
    "corpus_languages",
    "main",
    "pack_study_sources",
    "run_experiment",
    "sources_config",
    "study_model",
    "study_schedules",
    "study_sources",
    "train_runs",
    "train_seed",
]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ``--profile scan`` is the scale scan, a grid of small studies with its own options.
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--profile")
    known, rest = probe.parse_known_args(argv)
    if known.profile == "scan":
        from babel_interp.experiments import scan

        return scan.main(rest)
    parser = argparse.ArgumentParser(
        prog="python -m babel_interp.experiments.babel_tower",
        description="The Babel Tower study: does a new programming language first run on the "
        "primary language's knowledge system, then build its own?",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(STUDY_PROFILES),
        default=None,
        help="the study's sizes; 'scan' runs the scale scan "
        "(python -m babel_interp.experiments.scan --help)",
    )
    parser.add_argument("--config", help="JSON file of BabelTowerConfig fields")
    parser.add_argument("--out", help="experiment directory (default runs/babel_tower)")
    parser.add_argument("--targets", help="comma-separated new languages, e.g. php,go")
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument(
        "--corpus",
        help="synthetic (generated parallel programs), real (Python's own sources and Debian "
        "packages) or the directory of a corpus built beforehand (default: the profile's)",
    )
    parser.add_argument(
        "--debian-dir", help="unpacked Debian trees (real corpus; default OUT/debian)"
    )
    parser.add_argument(
        "--sources-archive",
        help="real corpus: use the sources in this archive (made by --pack-sources) instead "
        "of this interpreter's and Debian's",
    )
    parser.add_argument(
        "--pack-sources",
        metavar="ARCHIVE",
        help="real corpus: gather the sources, write them to ARCHIVE (.tar.xz) and stop",
    )
    parser.add_argument("--max-source-mb", type=float, help="cap each language's source text")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda")
    parser.add_argument(
        "--no-progress",
        "--quiet",
        dest="no_progress",
        action="store_true",
        help="no progress bars in any stage (corpus, training, analyzers, execution); the "
        "stage log lines stay",
    )
    parser.add_argument(
        "--execution",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pass@1 by executing sampled programs at every checkpoint (default: the profile's)",
    )
    parser.add_argument("--execution-suite", help="synthetic | humaneval | a JSONL file")
    parser.add_argument("--execution-problems", type=int, help="problems per language")
    args = parser.parse_args(argv)
    d: dict[str, Any] = {}
    if args.config:
        d.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    for key in ("profile", "out", "corpus", "debian_dir", "sources_archive", "device"):
        if getattr(args, key):
            d[key] = getattr(args, key)
    if args.max_source_mb is not None:
        d["max_source_mb"] = args.max_source_mb
    if args.targets:
        d["targets"] = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.seeds:
        d["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.no_progress:
        d["progress"] = False
    if args.execution is not None:
        d["execution"] = args.execution
    if args.execution_suite:
        d["execution_suite"] = args.execution_suite
    if args.execution_problems:
        d["execution_problems"] = args.execution_problems
    try:
        cfg = BabelTowerConfig.from_dict(d)
        if args.pack_sources:
            if cfg.corpus != "real":
                raise ValueError("--pack-sources needs a real-code study (--corpus real)")
            pack_study_sources(cfg, args.pack_sources)
            return 0
    except ValueError as exc:
        print(f"babel_tower: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = run_experiment(cfg)
    except StudyInterrupted as exc:
        print(f"babel_tower: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
