"""Saving report figures: one place for how every plot module writes its PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from babel_interp.io import atomic_path


def save_figure(
    fig: Figure, out_path: str | os.PathLike, dpi: int = 120, tight: bool = True
) -> Path:
    """Write ``fig`` to ``out_path`` (parents created); returns the path.

    Saved atomically (:func:`babel_interp.io.atomic_path`), so a crash never leaves half an
    image under the name. ``tight`` crops to the drawn content (``bbox_inches="tight"``).
    A PNG records its number of panel columns in a ``Columns`` text chunk
    (:func:`panel_columns`), which the HTML report reads to show every panel wide enough.
    Closing a pyplot figure stays with the caller (most plot modules build ``Figure`` objects
    directly).
    """
    out = Path(out_path)
    # The temporary name does not end in the image suffix: the format is named explicitly.
    fmt = out.suffix.lstrip(".") or "png"
    with atomic_path(out) as tmp:
        extra: dict = {"bbox_inches": "tight"} if tight else {}
        if fmt == "png":
            extra["metadata"] = {"Columns": str(panel_columns(fig))}
        fig.savefig(tmp, dpi=dpi, format=fmt, **extra)
    return out


def panel_grid(
    fig: Figure,
    n: int,
    ncols: int = 2,
    panel_size: tuple[float, float] = (5.0, 3.4),
    **subplots: Any,
) -> list:
    """``n`` panels on ``fig``, at most ``ncols`` side by side (so each is wide enough to read
    in the report), the figure sized to fit; returns the ``n`` axes in reading order (the
    first of each row is ``axes[::ncols]``). ``subplots`` go to ``Figure.subplots`` (e.g.
    ``sharey=True``)."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig.set_size_inches(panel_size[0] * ncols, panel_size[1] * nrows)
    grid = fig.subplots(nrows, ncols, squeeze=False, **subplots)
    axes = [ax for line in grid for ax in line]
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def panel_columns(fig: Figure) -> int:
    """How many panels ``fig`` has side by side (the widest grid among its subplots; colour
    bars and other free axes do not count)."""
    cols = [1]
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None:
            cols.append(spec.get_gridspec().ncols)
    return max(cols)
