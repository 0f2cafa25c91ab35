"""The report document: Markdown with copied figures, self-contained HTML, no stale copies."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from babel_interp.report.document import ReportDocument  # noqa: E402


def _png(path):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(path)
    plt.close(fig)
    return path


def test_write_copies_figures_and_removes_stale_copies(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    out = tmp_path / "out"
    doc = ReportDocument("T").heading("H").text("x").table(pd.DataFrame({"k": [1]}), "cap")
    doc.figure(a, "first").figure(b, "second").figure(tmp_path / "missing.png", "gone")
    md, html = doc.write(out)
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == ["01_a.png", "02_b.png"]
    text = md.read_text()
    assert "![first](figures/01_a.png)" in text and "*Figure not available: gone*" in text
    assert html.read_text().count("data:image/png;base64") == 2
    # Rewritten with one figure: the earlier numbered copies do not linger.
    (out / "figures" / "keep.png").write_bytes(b"user file")
    ReportDocument("T").figure(b, "second").write(out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["01_b.png", "keep.png"]
