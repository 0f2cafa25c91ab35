"""Open a report in a real browser (headless Chromium) and check what a reader would see.

Checks, at a 1400 × 900 window:

* no literal Markdown in the rendered text (``**``, backticks, ``](``, a line starting ``#``);
* no horizontal overflow: the page does not scroll sideways, and no table, figure or code
  block reaches past the content column;
* every image loads (complete, non-zero natural size), and every figure shows each of its
  panel columns at least :data:`~babel_interp.report.document.MIN_PANEL_PX` wide;
* the answer (``#answer``) ends within the first screen;
* the file is self-contained: no script, no stylesheet or image fetched from anywhere;
* printed to PDF (A4 portrait, Chromium's defaults), at most ``max_pages`` pages;
* optionally, the HTML file is at most ``max_mb`` megabytes.

Chromium and ChromeDriver come from the distribution (Debian's ``chromium`` and
``chromium-driver``: ``make browser`` installs them); Selenium drives them, offline (no driver
download). A screenshot of the first screen can be saved for the README.

    python -m babel_interp.report.browser_check runs/demo/report.html --max-pages 12
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from babel_interp.report.document import MIN_PANEL_PX

WIDTH, HEIGHT = 1400, 900
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine has no network: no update checks
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_MARKDOWN = re.compile(r"\*\*\S|\S\*\*|`|\]\(|^#{1,6} ", re.MULTILINE)


class BrowserUnavailable(RuntimeError):
    """Chromium, ChromeDriver or Selenium is missing."""


@dataclass
class BrowserReport:
    """What the browser saw: ``problems`` (empty when every check passed) and the figures
    behind them."""

    problems: list[str] = field(default_factory=list)
    pages: int = 0
    images: int = 0
    size_bytes: int = 0
    answer_bottom: float = 0.0
    scroll_width: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def find_browser() -> tuple[str, str]:
    """Paths of Chromium and ChromeDriver (``CHROMIUM``/``CHROMEDRIVER`` override)."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chrome")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        raise BrowserUnavailable(
            "headless Chromium is needed: install Debian's chromium and chromium-driver "
            "(`make browser` as root), or set CHROMIUM and CHROMEDRIVER"
        )
    return chromium, driver


def _driver(chromium: str, driver_path: str):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # a dev dependency
        raise BrowserUnavailable("selenium is not installed: pip install -e '.[dev]'") from exc
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="babel-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    drv = webdriver.Chrome(options=options, service=Service(driver_path))
    # The viewport itself, not the window with its frame.
    drv.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    return drv, profile


_MEASURE = """
const body = document.body, de = document.documentElement;
const col = body.getBoundingClientRect();
const style = getComputedStyle(body);
const right = col.right - parseFloat(style.paddingRight) + 1;
const wide = [];
for (const el of document.querySelectorAll('table, figure img, pre, .callout, nav')) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && r.right > right) wide.push(el.tagName.toLowerCase() + ' ' +
      (el.alt || el.textContent.slice(0, 60)).replace(/\\s+/g, ' ') + ' ends at ' +
      Math.round(r.right) + ' px > ' + Math.round(right));
}
for (const w of document.querySelectorAll('.table-wrap')) {
  if (w.scrollWidth > w.clientWidth + 1) wide.push('table ' +
      w.textContent.slice(0, 60).replace(/\\s+/g, ' ') + ' needs ' + w.scrollWidth +
      ' px in a ' + w.clientWidth + ' px column');
}
const imgs = Array.from(document.images).map(i => ({
  ok: i.complete && i.naturalWidth > 0, width: i.getBoundingClientRect().width,
  cols: parseInt(i.dataset.columns || '1'), alt: i.alt.slice(0, 80),
  src: i.getAttribute('src').slice(0, 5)}));
const answer = document.getElementById('answer');
const external = Array.from(document.querySelectorAll('script[src], link[href], iframe'))
  .map(e => e.outerHTML.slice(0, 80));
// Text of what is shown, closed sections opened: leaked Markdown hides there too.
document.querySelectorAll('details').forEach(d => d.open = true);
const text = body.innerText;
document.querySelectorAll('details').forEach(d => d.open = false);
return {scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, wide: wide, imgs: imgs,
        answerBottom: answer ? answer.getBoundingClientRect().bottom : null,
        innerHeight: window.innerHeight, external: external, text: text};
"""


def check_html(
    html_path: str | os.PathLike,
    max_pages: int | None = None,
    max_mb: float | None = None,
    screenshot: str | os.PathLike | None = None,
    pdf_path: str | os.PathLike | None = None,
    answer: bool = True,
) -> BrowserReport:
    """Open ``html_path`` in headless Chromium and run the checks (module docstring);
    ``answer=False`` for a page without an answer section (a run's own report)."""
    path = Path(html_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no report at {path}")
    chromium, driver_path = find_browser()
    rep = BrowserReport(size_bytes=path.stat().st_size)
    if max_mb is not None and rep.size_bytes > max_mb * 1e6:
        rep.problems.append(f"{path.name} is {rep.size_bytes / 1e6:.2f} MB (> {max_mb} MB)")
    drv, profile = _driver(chromium, driver_path)
    try:
        drv.get(path.as_uri())
        m = drv.execute_script(_MEASURE)
        rep.scroll_width = int(m["scrollWidth"])
        if m["scrollWidth"] > m["clientWidth"]:
            rep.problems.append(
                f"the page scrolls sideways: {m['scrollWidth']} px wide in a "
                f"{m['clientWidth']} px window"
            )
        rep.problems += [f"too wide: {w}" for w in m["wide"]]
        rep.images = len(m["imgs"])
        for img in m["imgs"]:
            if not img["ok"]:
                rep.problems.append(f"image does not load: {img['alt']!r}")
            elif img["width"] / max(img["cols"], 1) < MIN_PANEL_PX - 0.5:
                rep.problems.append(
                    f"figure {img['alt']!r}: {img['cols']} panel column(s) in "
                    f"{img['width']:.0f} px (< {MIN_PANEL_PX} px each)"
                )
            if img["src"] != "data:":
                rep.problems.append(f"image {img['alt']!r} is not embedded in the file")
        rep.problems += [f"fetches an outside resource: {e}" for e in m["external"]]
        for hit in sorted({x.group(0) for x in _MARKDOWN.finditer(m["text"])}):
            at = m["text"].find(hit)
            context = m["text"][max(at - 40, 0) : at + 40].replace("\n", " ")
            rep.problems.append(f"literal Markdown {hit!r} in the text: ...{context}...")
        if not answer:
            pass
        elif m["answerBottom"] is None:
            rep.problems.append("no #answer section")
        else:
            rep.answer_bottom = float(m["answerBottom"])
            if rep.answer_bottom > m["innerHeight"]:
                rep.problems.append(
                    f"the answer ends at {rep.answer_bottom:.0f} px, below the first screen "
                    f"({m['innerHeight']} px)"
                )
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            drv.save_screenshot(str(screenshot))
        pdf = _print_pdf(drv)
        if pdf_path is not None:
            Path(pdf_path).write_bytes(pdf)
        rep.pages = count_pdf_pages(pdf)
        if max_pages is not None and rep.pages > max_pages:
            rep.problems.append(f"prints to {rep.pages} pages (> {max_pages})")
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return rep


def _print_pdf(drv) -> bytes:
    from selenium.webdriver.common.print_page_options import PrintOptions

    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7  # A4, cm
    return base64.b64decode(drv.print_page(options))


def count_pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF as Chromium writes it (each page object is ``/Type /Page``)."""
    if not pdf.startswith(b"%PDF"):
        raise ValueError("not a PDF")
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", help="a report.html")
    parser.add_argument("--max-pages", type=int, default=None, help="most pages printed")
    parser.add_argument("--max-mb", type=float, default=None, help="largest file, MB")
    parser.add_argument("--screenshot", default=None, help="save the first screen as PNG")
    parser.add_argument("--pdf", default=None, help="save the printed PDF")
    parser.add_argument(
        "--no-answer", action="store_true", help="the page has no answer section (a run report)"
    )
    args = parser.parse_args(argv)
    try:
        rep = check_html(
            args.html, args.max_pages, args.max_mb, args.screenshot, args.pdf, not args.no_answer
        )
    except BrowserUnavailable as exc:
        print(f"browser check: {exc}", file=sys.stderr)
        return 2
    print(
        f"browser check of {args.html}: {rep.size_bytes / 1e6:.2f} MB, {rep.pages} printed "
        f"pages, {rep.images} images, answer ends at {rep.answer_bottom:.0f} px of {HEIGHT}"
    )
    for p in rep.problems:
        print(f"  problem: {p}")
    print("ok" if rep.ok else f"{len(rep.problems)} problem(s)")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
