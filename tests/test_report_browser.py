"""The report as a reader sees it, in headless Chromium: the browser check passes on a real
study's report and catches each defect it is meant to catch on a page that has it.

Needs Debian's chromium and chromium-driver (``make browser``). Without them these tests skip,
unless BABEL_INTERP_REQUIRE_BROWSER=1 (set by ``.ci/run``), where a missing browser fails.
"""

from __future__ import annotations

import base64
import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from babel_interp.report.browser_check import (  # noqa: E402
    BrowserUnavailable,
    check_html,
    count_pdf_pages,
    find_browser,
)
from babel_interp.report.document import ReportDocument  # noqa: E402
from babel_interp.report.figures import save_figure  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    try:
        return find_browser()
    except BrowserUnavailable as exc:
        if os.environ.get("BABEL_INTERP_REQUIRE_BROWSER") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _figure(path, columns=1):
    fig, axes = plt.subplots(1, columns, figsize=(5 * columns, 3), squeeze=False)
    for ax in axes[0]:
        ax.plot([0, 1], [1, 0])
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def _good(tmp_path):
    doc = ReportDocument("A report")
    doc.callout("**php: no signature** at step 54: `excess` −0.66 [−2.44, +1.34].")
    doc.figure(_figure(tmp_path / "two.png", 2), "two panels")
    doc.toc()
    doc.heading("Tables")
    doc.table(pd.DataFrame({"step": [1, 2], "excess": ["−2.40 [−3.55, −1.33]", "+0.10"]}), "cap")
    with doc.collapsed("details"):
        doc.text("Inside, **bold** and `code`.")
        doc.figure(_figure(tmp_path / "one.png"), "one panel")
    return doc


def test_a_well_formed_report_passes(browser, tmp_path):
    _, html = _good(tmp_path).write(tmp_path / "out")
    shot = tmp_path / "first.png"
    rep = check_html(html, max_pages=3, max_mb=1.0, screenshot=shot)
    assert rep.ok, rep.problems
    assert rep.images == 2 and rep.pages >= 1 and 0 < rep.answer_bottom < 900
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_each_defect_is_caught(browser, tmp_path):
    """One page with every defect the check exists for: each is named."""
    wide = pd.DataFrame({f"column {i}": ["a long cell value that will not wrap"] for i in range(9)})
    buf = io.BytesIO()
    fig, axes = plt.subplots(1, 3, figsize=(9, 2))
    fig.savefig(buf, format="png", metadata={"Columns": "3"})
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()
    table = (
        "<table><tr>"
        + "".join(f"<td style='white-space:nowrap'>{c}</td>" for c in wide.iloc[0])
        + "</tr></table>"
    )
    page = f"""<!doctype html><html><body style="max-width:1100px;margin:auto">
    <p>**php** leaked with `backticks`</p>{table}
    <img src="data:image/png;base64,{png}" data-columns="3" style="width:900px" alt="three">
    <img src="missing.png" alt="broken">
    <div style="height:1200px"></div><section id="answer">late</section>
    <script src="https://example.org/x.js"></script></body></html>"""
    html = tmp_path / "bad.html"
    html.write_text(page)
    rep = check_html(html, max_pages=0, max_mb=0.001)
    text = "\n".join(rep.problems)
    for needle in (
        "literal Markdown '**",
        "literal Markdown '`'",
        "too wide: table",
        "3 panel column(s) in 900 px",
        "image does not load: 'broken'",
        "is not embedded",
        "below the first screen",
        "fetches an outside resource",
        "prints to",
        "MB (> 0.001 MB)",
    ):
        assert needle in text, (needle, rep.problems)


def test_pdf_page_count():
    pdf = (
        b"%PDF-1.4\n1 0 obj <</Type /Pages /Count 2>>\n2 0 obj <</Type /Page>>\n"
        b"3 0 obj <</Type/Page /Parent 1 0 R>>"
    )
    assert count_pdf_pages(pdf) == 2
    with pytest.raises(ValueError):
        count_pdf_pages(b"<html>")
