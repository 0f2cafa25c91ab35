"""Layer names: the logit lens's residual positions and the neuron analysis's MLPs are named
apart (``resid_pre L`` / ``mlp L``) in tables, figures and the stage detector's series."""

from __future__ import annotations

import torch
from _neuron_fixtures import level_shift_stats

from babel_interp.analysis.layers import mlp_site, mlp_span, residual_site, residual_span
from babel_interp.analysis.neurons.lape import lape
from babel_interp.analysis.neurons.transferring import firing_rate_rows


def test_sites_name_what_the_number_points_to():
    assert residual_site("blocks.2.hook_resid_pre") == "resid_pre 2"
    assert residual_site("blocks.0.hook_resid_post") == "resid_post 0"
    assert residual_site("ln_final.hook_normalized") == "output"
    assert mlp_site(3) == "mlp 3"
    assert mlp_span([0, 1, 2, 3]) == "mlp 0-3" and mlp_span([2]) == "mlp 2"
    hooks = ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre"]
    assert residual_span(hooks) == "resid_pre 1-3"
    assert residual_span([*hooks, "ln_final.hook_normalized"]) == "resid_pre 1-3, output"


def test_neuron_tables_name_their_layers_mlp():
    stats = level_shift_stats(torch.Generator().manual_seed(0))
    df = lape(stats).to_dataframe()
    assert len(df) and (df["layer_name"] == df["layer"].map(lambda x: f"mlp {x}")).all()
    rows = firing_rate_rows(stats, step=0)
    assert [r["layer_name"] for r in rows] == [f"mlp {layer}" for layer in stats.layers]
    assert stats.to_dataframe()["layer_name"].str.startswith("mlp ").all()
