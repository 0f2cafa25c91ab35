"""A report document: headings, paragraphs, tables and figures collected once and written two
ways, as Markdown (figures copied beside it) and as one self-contained HTML file (figures
embedded), so the two never disagree.

Text is Markdown; the HTML is rendered from it by markdown-it (CommonMark, raw HTML off, so
``<T>`` in a sentence is text, not a tag), never by hand-escaped strings. Table cells holding an
estimate with its interval (:data:`babel_interp.formatting.INTERVAL`) are set as the value
with a smaller interval after it, on one line. Figures are re-encoded as palette PNGs (a third
of matplotlib's size, no visible change on plots) and shown no narrower than
:data:`MIN_PANEL_PX` per panel: the number of panel columns is read from the PNG's ``Columns``
text chunk, which :func:`babel_interp.report.figures.save_figure` writes.

Structure beyond flat blocks: :meth:`ReportDocument.callout` (the boxed answer at the top),
:meth:`ReportDocument.toc` (a table of contents of the second-level headings), and
:meth:`ReportDocument.collapsed` (a ``<details>`` section, closed by default; GitHub renders the
same element in the Markdown).
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt

from babel_interp.formatting import INTERVAL
from babel_interp.io import write_text_atomic

_NUMBERED = re.compile(r"^\d{2,}_")  # the prefix write() gives copied figures
_MD = MarkdownIt("commonmark", {"html": False}).enable("table")
_NUMERIC = re.compile(r"^[+\-\u2212]?[\d.,]+(e[+\-]?\d+)?%?x?$")

MIN_PANEL_PX = 500
"""Narrowest a figure's panel is shown in the HTML (the content column is 1100 px wide, so a
figure has at most two panel columns)."""
PANEL_PX = 560
"""Width of one panel column in the HTML, up to the content column's width."""


@dataclass
class _Block:
    kind: str  # heading | text | table | figure | code | callout | open | close | toc
    content: object
    level: int = 2
    caption: str = ""
    anchor: str = ""
    link: str = ""


def slug(text: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to
    hyphens."""
    t = re.sub(r"[^\w\- ]", "", text.lower().replace("`", ""))
    return t.strip().replace(" ", "-")


@dataclass
class ReportDocument:
    """Collects blocks in order; :meth:`write` renders Markdown and HTML."""

    title: str
    blocks: list[_Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> ReportDocument:
        taken = {b.anchor for b in self.blocks if b.kind == "heading"}
        anchor, n = slug(text), 1
        while anchor in taken:
            n += 1
            anchor = f"{slug(text)}-{n}"
        self.blocks.append(_Block("heading", text, level=level, anchor=anchor))
        return self

    def text(self, text: str) -> ReportDocument:
        """A paragraph, list or anything else in Markdown."""
        self.blocks.append(_Block("text", text.strip()))
        return self

    def bullets(self, items: list[str]) -> ReportDocument:
        return self.text("\n".join(f"- {item}" for item in items))

    def callout(self, text: str, anchor: str = "answer") -> ReportDocument:
        """A boxed block of Markdown with an anchor (the report's answer)."""
        self.blocks.append(_Block("callout", text.strip(), anchor=anchor))
        return self

    def toc(self) -> ReportDocument:
        """A table of contents of the second-level headings that follow."""
        self.blocks.append(_Block("toc", None))
        return self

    @contextmanager
    def collapsed(self, summary: str) -> Iterator[ReportDocument]:
        """Blocks added inside the ``with`` go in a section closed by default."""
        self.blocks.append(_Block("open", summary))
        try:
            yield self
        finally:
            self.blocks.append(_Block("close", None))

    def table(
        self,
        df: pd.DataFrame,
        caption: str = "",
        float_format: str = "{:.4g}",
        link: str = "",
    ) -> ReportDocument:
        """A table; ``link`` (a path relative to the report) names the CSV it was read from."""
        shown = df.copy()
        for col in shown.columns:
            if pd.api.types.is_float_dtype(shown[col]):
                shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else float_format.format(v))
        self.blocks.append(_Block("table", shown, caption=caption, link=link))
        return self

    def figure(self, path: str | os.PathLike | None, caption: str) -> ReportDocument:
        """A PNG figure; a missing figure is reported in the text rather than silently dropped."""
        if path is None or not Path(path).is_file():
            return self.text(f"*Figure not available: {caption}*")
        self.blocks.append(_Block("figure", Path(path), caption=caption))
        return self

    def code(self, text: str) -> ReportDocument:
        self.blocks.append(_Block("code", text))
        return self

    # ------------------------------------------------------------------------------ writing

    def write(self, out_dir: str | os.PathLike, stem: str = "report") -> tuple[Path, Path]:
        """Write ``stem.md`` (figures copied into ``figures/``) and ``stem.html``."""
        out = Path(out_dir)
        fig_dir = out / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        md = [f"# {self.title}", ""]
        body = [f"<h1>{_inline(self.title)}</h1>"]
        n_fig = 0
        written: set[str] = set()
        for i, block in enumerate(self.blocks):
            if block.kind == "heading":
                md += ["#" * block.level + f" {block.content}", ""]
                h = f"h{block.level}"
                body.append(f'<{h} id="{block.anchor}">{_inline(str(block.content))}</{h}>')
            elif block.kind == "text":
                md += [str(block.content), ""]
                body.append(_MD.render(str(block.content)))
            elif block.kind == "callout":
                md += [str(block.content), ""]
                body.append(
                    f'<section class="callout" id="{block.anchor}">'
                    f"{_MD.render(str(block.content))}</section>"
                )
            elif block.kind == "toc":
                entries = [b for b in self.blocks[i + 1 :] if b.kind == "heading" and b.level == 2]
                md += [f"- [{b.content}](#{b.anchor})" for b in entries] + [""]
                items = "".join(
                    f'<li><a href="#{b.anchor}">{_inline(str(b.content))}</a></li>' for b in entries
                )
                body.append(f'<nav class="toc"><b>Contents</b><ol>{items}</ol></nav>')
            elif block.kind == "open":
                md += [f"<details><summary>{html.escape(str(block.content))}</summary>", ""]
                body.append(f"<details><summary>{_inline(str(block.content))}</summary>")
            elif block.kind == "close":
                md += ["</details>", ""]
                body.append("</details>")
            elif block.kind == "code":
                md += ["```", str(block.content), "```", ""]
                body.append(f"<pre>{html.escape(str(block.content))}</pre>")
            elif block.kind == "table":
                df = block.content
                assert isinstance(df, pd.DataFrame)
                caption = block.caption
                if block.link:
                    caption += f" ([CSV]({block.link}))"
                if caption:
                    md += [f"*{caption.strip()}*", ""]
                md += [_markdown_table(df), ""]
                body.append(_table_html(df, caption))
            elif block.kind == "figure":
                src = Path(str(block.content))
                # Runs share figure names (training_curves.png, ...): number them apart.
                n_fig += 1
                dest = fig_dir / f"{n_fig:02d}_{src.name}"
                png, columns = compressed_png(src)
                if src.resolve() != dest.resolve():
                    dest.write_bytes(png)
                written.add(dest.name)
                md += [f"![{block.caption}](figures/{dest.name})", "", f"*{block.caption}*", ""]
                data = base64.b64encode(png).decode("ascii")
                width = f"min(100%, {PANEL_PX * columns}px)"
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" data-columns="{columns}" '
                    f'style="width: {width}" alt="{html.escape(block.caption)}"/>'
                    f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
                )
        # Numbered copies left by an earlier write of this report (whose figure list differed)
        # would otherwise pile up beside the current ones.
        for old in fig_dir.glob("[0-9][0-9]*_*.png"):
            if _NUMBERED.match(old.name) and old.name not in written:
                old.unlink()
        md_path = write_text_atomic(out / f"{stem}.md", "\n".join(md))
        html_path = write_text_atomic(
            out / f"{stem}.html",
            # The window title is plain text: Markdown rendered, then its tags dropped.
            _HTML.format(title=re.sub(r"<[^>]+>", "", _inline(self.title)), body="\n".join(body)),
        )
        return md_path, html_path


def compressed_png(path: str | os.PathLike) -> tuple[bytes, int]:
    """A figure's PNG re-encoded with a 256-colour palette (no dithering: plots have few
    colours, and dither would speckle them), and its number of panel columns (the ``Columns``
    text chunk, 1 when absent). An image that does not shrink is kept as it was."""
    from PIL import Image, PngImagePlugin

    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as im:
        columns = int(im.info.get("Columns", 1) or 1)
        info = PngImagePlugin.PngInfo()
        info.add_text("Columns", str(columns))
        q = im.convert("RGB").quantize(
            colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        buf = io.BytesIO()
        q.save(buf, "PNG", optimize=True, pnginfo=info)
    small = buf.getvalue()
    return (small if len(small) < len(raw) else raw), columns


def _inline(text: str) -> str:
    return _MD.renderInline(text)


def _cell_html(value: object) -> str:
    text = "" if value is None else str(value)
    m = INTERVAL.fullmatch(text.strip())
    if m:
        est, lo, hi = m.groups()
        return f'<span class="est">{est}</span> <span class="ci">[{lo}, {hi}]</span>'
    return _inline(text)


def _table_html(df: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{_inline(str(c))}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            text = "" if v is None else str(v)
            numeric = bool(_NUMERIC.match(text.strip())) or bool(INTERVAL.fullmatch(text.strip()))
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{_cell_html(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{_inline(caption.strip())}</caption>" if caption else ""
    return (
        f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _markdown_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 1.2em auto; padding: 0 1em; line-height: 1.45; color: #1f2328; }}
h1 {{ font-size: 1.7em; margin: 0.2em 0 0.4em; }}
h2 {{ border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.6em; }}
code {{ background: #f3f4f6; padding: 0 0.25em; border-radius: 3px; font-size: 0.92em; }}
.callout {{ border: 1px solid #d0d7de; border-left: 5px solid #0969da; background: #f6f8fa;
           padding: 0.4em 1em; margin: 0.6em 0 1em; }}
.callout ul {{ padding-left: 1.2em; margin: 0.4em 0; }} .callout p {{ margin: 0.4em 0; }}
nav.toc {{ font-size: 0.92em; columns: 2; margin: 1em 0; }}
nav.toc ol {{ margin: 0.3em 0; }}
.table-wrap {{ max-width: 100%; overflow-x: auto; margin: 0.8em 0; }}
table {{ border-collapse: collapse; font-size: 0.86em; }}
th, td {{ border-bottom: 1px solid #d8dee4; padding: 3px 9px; text-align: left;
          vertical-align: top; }}
th {{ background: #f6f8fa; }}
td.num {{ text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }}
.ci {{ font-size: 0.82em; color: #59636e; }}
caption {{ caption-side: top; text-align: left; font-style: italic; color: #444;
           padding-bottom: 0.3em; }}
figure {{ margin: 1.2em 0; break-inside: avoid; }} img {{ max-width: 100%; height: auto; }}
figcaption {{ font-style: italic; color: #555; font-size: 0.92em; }}
details {{ margin: 0.6em 0; border: 1px solid #e1e4e8; border-radius: 4px; padding: 0.3em 0.8em; }}
summary {{ cursor: pointer; font-weight: 600; }}
pre {{ background: #f6f8fa; padding: 0.8em; overflow-x: auto; }}
@media print {{ body {{ max-width: none; font-size: 10pt; }} nav.toc {{ display: none; }} }}
</style></head><body>
{body}
</body></html>
"""
