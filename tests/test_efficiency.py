"""Token efficiency of continual pretraining against a from-scratch baseline."""

from __future__ import annotations

import json
import math

import pytest

from babel_interp.analysis.stages.efficiency import efficiency_summary, token_efficiency


def _run(path, curve):
    path.mkdir()
    recs = [
        {"type": "eval", "step": s, "tokens_seen": {"php": s * 100}, "val_loss": {"php": loss}}
        for s, loss in curve
    ]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return str(path)


def test_gain_is_scratch_tokens_to_reach_the_continued_loss(tmp_path):
    # The scratch model's loss falls linearly in tokens; the continued model is ahead.
    scratch = _run(tmp_path / "scratch", [(0, 9.0), (10, 8.0), (20, 7.0), (40, 5.0)])
    cont = _run(tmp_path / "cont", [(0, 8.0), (10, 7.0), (20, 5.0), (40, 4.0)])
    eff = token_efficiency(cont, scratch, "php")
    assert eff["scratch_tokens_needed"].tolist()[:3] == pytest.approx([1000, 2000, 4000])
    assert math.isnan(eff["gain"].iloc[0])  # no tokens yet: no ratio
    assert eff["gain"].tolist()[1:3] == pytest.approx([2.0, 2.0])
    # Never reached by scratch: the gain is at least scratch tokens / continued tokens.
    assert math.isnan(eff["gain"].iloc[3]) and eff["gain_at_least"].iloc[3] == pytest.approx(1.0)
    summ = efficiency_summary(eff)
    assert summ == {
        "median_gain": pytest.approx(2.0),
        "min_gain": pytest.approx(2.0),
        "max_gain": pytest.approx(2.0),
        "n_checkpoints": 2,
        "last_step": 20,
        "last_gain": pytest.approx(2.0),
    }
    assert efficiency_summary(eff.iloc[:1]) == {}
    with pytest.raises(ValueError, match="no evaluation"):
        token_efficiency(cont, scratch, "go")
