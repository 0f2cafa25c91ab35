"""Saving report figures: one place for how every plot module writes its PNG."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure


def save_figure(
    fig: Figure, out_path: str | os.PathLike, dpi: int = 120, tight: bool = True
) -> Path:
    """Write ``fig`` to ``out_path`` (parents created); returns the path.

    Saved through a hidden temporary file and renamed, so a crash never leaves half an image
    under the name. ``tight`` crops to the drawn content (``bbox_inches="tight"``). Closing a
    pyplot figure stays with the caller (most plot modules build ``Figure`` objects directly).
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
