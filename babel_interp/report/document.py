"""A small report document: headings, paragraphs, tables and figures, written as Markdown
(figures beside it) and as one self-contained HTML file (figures embedded), from one structure.
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from babel_interp.io import write_text_atomic

_NUMBERED = re.compile(r"^\d{2,}_")  # the prefix write() gives copied figures


@dataclass
class _Block:
    kind: str  # heading | text | table | figure | code
    content: object
    level: int = 2
    caption: str = ""


@dataclass
class ReportDocument:
    """Collects blocks in order; :meth:`write` renders Markdown and HTML."""

    title: str
    blocks: list[_Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> ReportDocument:
        self.blocks.append(_Block("heading", text, level=level))
        return self

    def text(self, text: str) -> ReportDocument:
        """A paragraph (Markdown inline syntax is kept as-is in the .md output)."""
        self.blocks.append(_Block("text", text.strip()))
        return self

    def bullets(self, items: list[str]) -> ReportDocument:
        return self.text("\n".join(f"- {item}" for item in items))

    def table(
        self, df: pd.DataFrame, caption: str = "", float_format: str = "{:.4g}"
    ) -> ReportDocument:
        shown = df.copy()
        for col in shown.columns:
            if pd.api.types.is_float_dtype(shown[col]):
                shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else float_format.format(v))
        self.blocks.append(_Block("table", shown, caption=caption))
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

    def write(self, out_dir: str | os.PathLike, stem: str = "report") -> tuple[Path, Path]:
        """Write ``stem.md`` (figures copied into ``figures/``) and ``stem.html``."""
        out = Path(out_dir)
        fig_dir = out / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        md = [f"# {self.title}", ""]
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        n_fig = 0
        written: set[str] = set()
        for block in self.blocks:
            if block.kind == "heading":
                md += ["#" * block.level + f" {block.content}", ""]
                body.append(f"<h{block.level}>{html.escape(str(block.content))}</h{block.level}>")
            elif block.kind == "text":
                md += [str(block.content), ""]
                body.append(_text_html(str(block.content)))
            elif block.kind == "code":
                md += ["```", str(block.content), "```", ""]
                body.append(f"<pre>{html.escape(str(block.content))}</pre>")
            elif block.kind == "table":
                df = block.content
                assert isinstance(df, pd.DataFrame)
                if block.caption:
                    md += [f"*{block.caption}*", ""]
                md += [_markdown_table(df), ""]
                cap = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
                body.append(
                    df.to_html(index=False, border=0, escape=True).replace(
                        "<thead>", f"{cap}<thead>", 1
                    )
                )
            elif block.kind == "figure":
                src = Path(str(block.content))
                # Runs share figure names (training_curves.png, ...): number them apart.
                n_fig += 1
                dest = fig_dir / f"{n_fig:02d}_{src.name}"
                if src.resolve() != dest.resolve():
                    shutil.copyfile(src, dest)
                written.add(dest.name)
                md += [f"![{block.caption}](figures/{dest.name})", "", f"*{block.caption}*", ""]
                data = base64.b64encode(src.read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(block.caption)}"/>'
                    f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
                )
        # Numbered copies left by an earlier write of this report (whose figure list differed)
        # would otherwise pile up beside the current ones.
        for old in fig_dir.glob("[0-9][0-9]*_*.png"):
            if _NUMBERED.match(old.name) and old.name not in written:
                old.unlink()
        md_path = write_text_atomic(out / f"{stem}.md", "\n".join(md))
        html_path = write_text_atomic(
            out / f"{stem}.html",
            _HTML.format(title=html.escape(self.title), body="\n".join(body)),
        )
        return md_path, html_path


def _markdown_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _text_html(text: str) -> str:
    lines = text.splitlines()
    if lines and all(line.startswith("- ") for line in lines):
        items = "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines)
        return f"<ul>{items}</ul>"
    return f"<p>{html.escape(text)}</p>"


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
caption {{ caption-side: top; text-align: left; font-style: italic; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
figcaption {{ font-style: italic; color: #555; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; }}
</style></head><body>
{body}
</body></html>
"""
