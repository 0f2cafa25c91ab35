"""What a layer number names: a residual-stream position or an MLP, never left implicit.

The two analyzers count layers differently, and a bare "layer 2" would mislead:

* the logit lens reads the residual stream: ``resid_pre L`` is the stream *entering* block L
  (``blocks.L.hook_resid_pre``, the sum of the embedding and blocks 0..L-1); ``output`` is
  the stream after the final block, through ``ln_final``;
* the neuron analysis reads MLP activations: ``mlp L`` is block L's MLP
  (``blocks.L.mlp.hook_post``), whose output first appears in ``resid_pre L+1``.

So ``mlp L`` and ``resid_pre L`` are not the same depth: block L's MLP writes what
``resid_pre L+1`` reads. Tables carry a ``site`` column with these names and figures label
their axes with them.
"""

from __future__ import annotations

import re

__all__ = ["ALIGNMENT_NOTE", "mlp_site", "mlp_span", "residual_site", "residual_span"]

ALIGNMENT_NOTE = "mlp L writes into resid_pre L+1: resid_pre L reads blocks 0..L-1"
_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|mid|post)$")


def mlp_site(layer: int) -> str:
    """``mlp L``: block L's MLP (``blocks.L.mlp.hook_post``)."""
    return f"mlp {int(layer)}"


def residual_site(hook_name: str) -> str:
    """``resid_pre L`` (or ``resid_mid``/``resid_post``) for a block's residual hook, ``output``
    for the final norm, ``embed`` for the embeddings; other hook names are returned as they
    are."""
    m = _RESID.match(hook_name)
    if m:
        return f"resid_{m.group(2)} {m.group(1)}"
    if hook_name.startswith("ln_final"):
        return "output"
    if hook_name in ("hook_embed", "hook_pos_embed", "embed"):
        return "embed"
    return hook_name


def _span(prefix: str, layers: list[int]) -> str:
    if not layers:
        return f"no {prefix} layer"
    lo, hi = min(layers), max(layers)
    return f"{prefix} {lo}" if lo == hi else f"{prefix} {lo}-{hi}"


def mlp_span(layers: list[int]) -> str:
    """``mlp 0-3`` for MLP layers 0 to 3 (``mlp 2`` for one)."""
    return _span("mlp", [int(x) for x in layers])


def residual_span(hook_names: list[str]) -> str:
    """``resid_pre 1-3`` for the residual hooks of blocks 1 to 3 (named by their kind)."""
    sites = [residual_site(h) for h in hook_names]
    kinds = {s.split(" ")[0] for s in sites if " " in s}
    layers = [int(s.split(" ")[1]) for s in sites if " " in s]
    extra = [s for s in sites if " " not in s]
    head = _span("/".join(sorted(kinds)) or "resid", layers) if layers else ""
    return ", ".join([p for p in (head, *extra) if p])
