"""``babel-interp report``: write the Markdown + HTML report of a run or of an experiment."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write a report (Markdown with figures, and self-contained HTML)"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="a training run directory")
    target.add_argument("--experiment", help="an experiment directory (has experiment.json)")
    parser.add_argument("--out", help="where to write (default: inside the run/experiment)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from babel_interp.report.report import write_experiment_report, write_run_report

    if args.run:
        md = write_run_report(args.run, args.out)
    else:
        if args.out:
            raise ValueError("--out is only supported with --run")
        md, _ = write_experiment_report(args.experiment)
    print(f"report: {md}")
    print(f"html:   {Path(md).with_suffix('.html')}")
    return 0
