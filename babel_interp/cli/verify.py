"""``babel-interp verify PATH``: check a corpus, a run or a study on disk; non-zero on a problem."""

from __future__ import annotations

import argparse

from babel_interp.training.verify import verify_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check a corpus, a run's checkpoints (sizes, SHA-256) or a whole study",
        description=(
            "Check every checkpoint of a run against its manifest (file sizes and SHA-256), "
            "its trainer state and the corpus it was trained on (file sizes, document offsets, "
            "language labels, token ids below the vocabulary); or a corpus alone; or every run "
            "of a study. Exits 1 when anything is wrong, naming the file."
        ),
    )
    parser.add_argument("path", help="a corpus, run or study directory")
    parser.add_argument("--quiet", action="store_true", help="print only the problems")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    checks = verify_path(args.path)
    bad = [c for c in checks if not c.ok]
    for c in checks:
        if c.ok and not args.quiet:
            print(f"ok    {c.directory} ({c.checked_files} files, {c.checked_bytes:,} bytes)")
        for problem in c.problems:
            print(f"BAD   {problem}")
    print(f"verify: {len(checks) - len(bad)} of {len(checks)} directories ok")
    return 1 if bad else 0
