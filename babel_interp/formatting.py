"""How the reports write numbers: one formatter for an estimate with its interval, one pattern
that reads it back.

An interval is written ``−1.33 [−1.63, −1.06]`` everywhere (Markdown, HTML, sentences and table
cells), with a true minus sign (U+2212) so a negative value does not break across lines or read
as a hyphen. The HTML renderer finds the same pattern in table cells and sets the interval in a
smaller type after the estimate, on one line; ``check_report`` parses it to check ``lo <= hi``.
"""

from __future__ import annotations

import math
import re

MINUS = "\u2212"
_NUM = rf"[+\-{MINUS}]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+\-]?\d+)?[%kMG]?"
INTERVAL = re.compile(rf"({_NUM}) \[({_NUM}), ({_NUM})\]")
"""An estimate and its interval as written by :func:`fmt_interval` (groups: m, lo, hi)."""


def _finite(x: object) -> bool:
    try:
        return math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def fmt_number(x: object, digits: int = 2, signed: bool = False, percent: bool = False) -> str:
    """``x`` with ``digits`` decimals (a percentage when ``percent``), a true minus sign, a
    leading ``+`` when ``signed``; "n/a" for a missing or non-finite value."""
    if not _finite(x):
        return "n/a"
    v = float(x)  # type: ignore[arg-type]
    if percent:
        text = f"{v * 100:.{max(digits - 2, 0)}f}%"
    else:
        text = f"{v:.{digits}f}"
    if float(text.rstrip("%")) == 0:  # -0.00 is 0.00, and 0 takes no sign
        return text.lstrip("-")
    if text.startswith("-"):
        return MINUS + text[1:]
    return ("+" if signed else "") + text


def fmt_interval(
    m: object,
    lo: object = math.nan,
    hi: object = math.nan,
    digits: int = 2,
    signed: bool = False,
    percent: bool = False,
) -> str:
    """``m [lo, hi]``, or ``m`` alone when the bounds are missing, or "n/a"."""
    if not _finite(m):
        return "n/a"
    head = fmt_number(m, digits, signed, percent)
    if not (_finite(lo) and _finite(hi)):
        return head
    return (
        f"{head} [{fmt_number(lo, digits, signed, percent)}, "
        f"{fmt_number(hi, digits, signed, percent)}]"
    )


_SCALE = {"%": 1e-2, "k": 1e3, "M": 1e6, "G": 1e9}


def fmt_count(x: object) -> str:
    """A large count in three significant digits with a k/M/G suffix (``128k``, ``1.5M``)."""
    if not _finite(x):
        return "n/a"
    v = float(x)  # type: ignore[arg-type]
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}".replace("-", MINUS)
    return f"{v:.3g}".replace("-", MINUS)


def parse_number(text: str) -> float:
    """A number as :func:`fmt_number` or :func:`fmt_count` writes it (true minus, ``+``,
    ``%``, ``k``/``M``/``G``) back to a float."""
    t = text.replace(MINUS, "-")
    if t and t[-1] in _SCALE:
        return float(t[:-1]) * _SCALE[t[-1]]
    return float(t)
