"""The layer regions the working-language results are summarized over.

A decoded layer's *depth* is its position (:func:`~babel_interp.analysis.working_language.
logit_lens.layer_position`: blocks counted, ``blocks.L.hook_resid_pre`` at L) over the deepest
position decoded, so 0 is the embedding and 1 the output. The *middle layers* are the depths
strictly between the two (:data:`MIDDLE`), the *output* is depth 1, and depth 0 (``emb``) belongs
to neither. The analyzer's region table and the study report both use this one definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Decoded depths counted as "middle layers": strictly between the embedding (0) and the output (1).
MIDDLE = (0.0, 1.0)
# The regions summarized (the embedding is left out).
REGIONS = ("middle", "output")


def decoded_depth(layer_pos: pd.Series | Sequence[float] | np.ndarray) -> np.ndarray:
    """Layer positions scaled to [0, 1] by the deepest one (0: embedding, 1: output)."""
    pos = np.asarray(layer_pos, dtype=np.float64)
    if pos.size == 0:
        return pos
    return pos / max(float(np.nanmax(pos)), 1e-9)


def layer_region(depth: pd.Series | Sequence[float] | np.ndarray) -> np.ndarray:
    """``"output"`` at depth 1 (or beyond), ``"middle"`` strictly inside :data:`MIDDLE`,
    ``"emb"`` otherwise, per depth."""
    d = np.asarray(depth, dtype=np.float64)
    return np.where(
        d >= 1.0, "output", np.where((d > MIDDLE[0]) & (d < MIDDLE[1]), "middle", "emb")
    )
