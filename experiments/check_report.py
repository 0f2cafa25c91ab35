"""Check a finished study's report: what CI runs after ``make demo``.

Exits non-zero, listing every problem, unless the study directory holds a parseable
``experiment.json`` with at least one finished seed and finite timings, ``report.md`` and
``report.html``, every figure ``report.md`` links to as a real PNG, intervals written as
``m [lo, hi]`` with finite bounds and ``lo <= hi``, and the optimizer's mixtures when
``optimize/`` exists. With ``--browser``, ``report.html`` is also opened in headless Chromium
(:mod:`babel_interp.report.browser_check`: no literal Markdown, no sideways scrolling, every
image loads, the answer on the first screen, page and size limits). A structural check, not a
judgement of the science: the numbers are whatever the study measured.

    python -m babel_interp.experiments.check_report runs/demo --browser --max-pages 12
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from babel_interp.formatting import INTERVAL, parse_number
from babel_interp.runs import Study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_FIGURE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def check_report(study_dir: str | Path) -> tuple[list[str], dict[str, int]]:
    """The problems found in a study's report (empty when it passes) and what was checked."""
    study = Study(Path(study_dir))
    problems: list[str] = []
    counts = {"figures": 0, "intervals": 0, "seeds": 0, "mixtures": 0}
    try:
        meta = json.loads(study.meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{study.meta}: {exc}"], counts
    seeds = meta.get("seeds_done") or []
    counts["seeds"] = len(seeds)
    if not seeds:
        problems.append(f"{study.meta}: no finished seed (seeds_done is empty)")
    for key, value in (meta.get("timings") or {}).items():
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            problems.append(f"{study.meta}: timing {key} = {value!r} is not a duration")
    md, html = study.root / "report.md", study.root / "report.html"
    for path in (md, html):
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"{path} is missing or empty")
    if md.is_file():
        text = md.read_text(encoding="utf-8")
        for rel in _FIGURE.findall(text):
            fig = study.root / rel
            counts["figures"] += 1
            if not fig.is_file():
                problems.append(f"{md} links to {rel}, which does not exist")
            elif fig.read_bytes()[:8] != PNG_MAGIC or fig.stat().st_size < 1000:
                problems.append(f"{fig} is not a complete PNG image")
        for m, lo, hi in INTERVAL.findall(text):
            counts["intervals"] += 1
            vals = [parse_number(m), parse_number(lo), parse_number(hi)]
            if not all(math.isfinite(v) for v in vals) or vals[1] > vals[2]:
                problems.append(f"{md}: interval {m} [{lo}, {hi}] is not an interval")
        if counts["figures"] == 0:
            problems.append(f"{md} shows no figure")
        if counts["intervals"] == 0:
            problems.append(f"{md} gives no interval")
    if study.optimize.is_dir():
        mixtures = sorted(study.optimize.glob("*.json"))
        counts["mixtures"] = len(mixtures)
        for path in mixtures:
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                problems.append(f"{path} is not valid JSON ({exc})")
        if not mixtures:
            problems.append(f"{study.optimize} holds no mixture")
    return problems, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="a study directory (has experiment.json and report.md)")
    parser.add_argument("--browser", action="store_true", help="also check report.html in Chromium")
    parser.add_argument("--max-pages", type=int, default=None, help="most printed pages")
    parser.add_argument("--max-mb", type=float, default=None, help="largest report.html, MB")
    parser.add_argument("--screenshot", default=None, help="save the first screen here (PNG)")
    args = parser.parse_args(argv)
    problems, counts = check_report(args.study)
    if args.browser:
        from babel_interp.report.browser_check import BrowserUnavailable, check_html

        try:
            seen = check_html(
                Study(Path(args.study)).root / "report.html",
                max_pages=args.max_pages,
                max_mb=args.max_mb,
                screenshot=args.screenshot,
            )
        except (BrowserUnavailable, FileNotFoundError) as exc:
            problems.append(f"browser check: {exc}")
        else:
            problems += [f"browser: {p}" for p in seen.problems]
            counts["printed pages"] = seen.pages
            counts["kB of HTML"] = round(seen.size_bytes / 1e3)
    for p in problems:
        print(f"BAD   {p}")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(f"check_report: {'FAILED' if problems else 'ok'} ({summary})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
