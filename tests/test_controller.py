"""The stage-aware controller: decision logic on explicit signal sequences, and the log."""

from __future__ import annotations

import json

import pytest

from babel_interp.optimizer.controller import (
    RELEASED,
    TRANSLATION,
    ControllerConfig,
    LanguageSignal,
    StageDecider,
    append_decisions,
    read_decisions,
)

BASE = {"python": 0.5, "php": 0.5}


def _run(decider, shares, losses=None):
    out = []
    for i, share in enumerate(shares):
        loss = None if losses is None else losses[i]
        out.append(decider.update(i, {"php": LanguageSignal(val_loss=loss, primary_share=share)}))
    return out


def test_starts_boosted_and_releases_after_patience():
    cfg = ControllerConfig(boost=3.0, patience=2, min_dwell=0, use_loss_plateau=False)
    d = StageDecider(BASE, cfg)
    assert d.weights() == pytest.approx({"python": 0.25, "php": 0.75})
    steps = _run(d, [0.9, 0.3, 0.9, 0.3, 0.3, 0.2])
    actions = [decisions[0].action for decisions, _ in steps]
    # A single low reading (step 1) is interrupted by a high one: no release until two in a row.
    assert actions == ["hold", "hold", "hold", "hold", "release", "hold"]
    assert steps[4][1] == pytest.approx({"python": 0.5, "php": 0.5})
    assert all(new is None for i, (_, new) in enumerate(steps) if i != 4)
    assert d.state_of("php") == RELEASED
    assert "2 checks" in steps[4][0][0].reason and "0.300" in steps[4][0][0].reason


def test_hysteresis_band_prevents_flapping():
    cfg = ControllerConfig(share_exit=0.4, share_enter=0.6, patience=1, min_dwell=0)
    d = StageDecider(BASE, cfg)
    # Hovering around one threshold (0.45-0.55) never changes anything once released.
    actions = [x[0][0].action for x in _run(d, [0.3, 0.45, 0.55, 0.5, 0.45, 0.55])]
    assert actions == ["release", "hold", "hold", "hold", "hold", "hold"]
    assert d.state_of("php") == RELEASED
    actions = [x[0][0].action for x in _run(d, [0.7])]
    assert actions == ["re-enter"] and d.state_of("php") == TRANSLATION


def test_min_dwell_delays_a_change():
    cfg = ControllerConfig(patience=1, min_dwell=3, use_loss_plateau=False)
    d = StageDecider(BASE, cfg)
    res = _run(d, [0.1, 0.1, 0.1, 0.1])
    assert [r[0][0].action for r in res] == ["hold", "hold", "release", "hold"]
    assert "min_dwell" in res[0][0][0].reason
    # After the release (and one more check) the language must dwell 3 checks before re-entering.
    res = _run(d, [0.9, 0.9, 0.9])
    assert [r[0][0].action for r in res] == ["hold", "re-enter", "hold"]
    assert "dwell 2 < min_dwell 3" in res[0][0][0].reason


def test_loss_plateau_releases_when_no_share_is_measured():
    cfg = ControllerConfig(patience=2, min_dwell=0, plateau_rel=0.02)
    d = StageDecider(BASE, cfg)
    losses = [8.0, 6.0, 5.0, 4.95, 4.94, 4.93]
    res = _run(d, [None] * 6, losses)
    actions = [r[0][0].action for r in res]
    assert actions == ["hold", "hold", "hold", "hold", "release", "hold"]
    assert "plateau" in res[4][0][0].reason
    assert res[2][0][0].signals["loss_rel_improvement"] == pytest.approx(1 / 6)


def test_high_share_overrides_a_loss_plateau():
    cfg = ControllerConfig(patience=1, min_dwell=0, plateau_rel=0.5)
    d = StageDecider(BASE, cfg)
    res = _run(d, [0.9, 0.9, 0.9], [5.0, 4.9, 4.8])
    assert [r[0][0].action for r in res] == ["hold", "hold", "hold"]


def test_log_round_trip_and_torn_line(tmp_path):
    d = StageDecider(BASE, ControllerConfig(patience=1, min_dwell=0))
    decisions, _ = d.update(10, {"php": LanguageSignal(val_loss=3.0, primary_share=0.1)})
    log = tmp_path / "run" / "controller.jsonl"
    append_decisions(log, decisions)
    with open(log, "a") as f:
        f.write('{"step": 20, "lang')  # a crash mid-write
    records = read_decisions(log)
    assert len(records) == 1
    assert records[0]["action"] == "release" and records[0]["step"] == 10
    assert records[0]["weights"] == pytest.approx({"python": 0.5, "php": 0.5})
    assert json.loads(log.read_text().splitlines()[0])["language"] == "php"


def test_config_validation():
    with pytest.raises(ValueError, match="ControllerConfig.boost"):
        ControllerConfig(boost=0.5)
    with pytest.raises(ValueError, match="share_exit must be below share_enter"):
        ControllerConfig(share_exit=0.6, share_enter=0.5)
    with pytest.raises(ValueError, match="ControllerConfig.patience"):
        ControllerConfig(patience=0)
    with pytest.raises(ValueError, match="not in the mixture"):
        StageDecider(BASE, ControllerConfig(languages=["go"]))
    cfg = ControllerConfig(boost=1.5, languages=["php"])
    assert ControllerConfig.from_dict(cfg.to_dict()) == cfg
