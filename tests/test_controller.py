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


# ------------------------------------------------------------------------------------------
# The controller inside a real training run (the project's trainer on a synthetic corpus).
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_corpus(tmp_path_factory):
    from babel_interp.corpus.build import build_corpus, synthetic_corpus_config

    out = tmp_path_factory.mktemp("controller") / "corpus"
    build_corpus(
        synthetic_corpus_config(
            out,
            languages=("python", "php", "go"),
            docs_per_language=20,
            vocab_size=320,
            progress=False,
        )
    )
    return out


@pytest.fixture
def one_thread():
    # A model this small only suffers from intra-op threads on a shared 2-core machine.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(corpus, out, steps=16, resume=False, preset="tiny"):
    from babel_interp.model import ModelConfig
    from babel_interp.training import (
        CheckpointConfig,
        CheckpointSchedule,
        LRSchedule,
        OptimConfig,
        TrainConfig,
    )

    return TrainConfig(
        corpus=str(corpus),
        out=str(out),
        model=ModelConfig(n_layers=2, d_model=64, n_heads=2, d_head=32, d_mlp=128, n_ctx=64),
        mixture="python=0.5,php=0.3,go=0.2",
        steps=steps,
        batch_size=4,
        seq_len=48,
        optim=OptimConfig(schedule=LRSchedule(lr=3e-3, warmup_steps=2)),
        eval_every=4,
        eval_windows=2,
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="steps", steps=[steps], include_start=False),
            resume_every=4,
        ),
        resume=resume,
        progress=False,
    )


def _mixture_records(run):
    from babel_interp.runs import read_metrics

    return [
        (r["step"], r["reason"], r["weights"]) for r in read_metrics(run) if r["type"] == "mixture"
    ]


def test_controller_steers_a_real_run_with_the_working_language_signal(
    synth_corpus, tmp_path, one_thread
):
    from babel_interp.optimizer.controller import StageAwareController, WorkingLanguageSignal
    from babel_interp.runs import read_metrics
    from babel_interp.training import AnalyzerCallback, train

    # This corpus's small tokenizer begins most Go built-ins with one character only, which the
    # default token sets drop (no Go pair would be left): the thresholds below were read from
    # the sets that keep them.
    signal = WorkingLanguageSignal(["php", "go"], n_per_pair=2, drop_cross_language_tokens=False)
    # On this corpus and seed the tiny model's measured primary share of php stays below 0.35
    # and falls, while go's stays above 0.7 and rises: thresholds between the two make php,
    # and only php, leave Translation, on the share alone (the loss signal is off), once two
    # consecutive checks (patience) agree.
    exit_share = 0.5
    ctl = StageAwareController(
        ControllerConfig(
            boost=3.0,
            patience=2,
            min_dwell=0,
            share_exit=exit_share,
            share_enter=0.6,
            use_loss_plateau=False,
        ),
        share_signal="wl",
    )
    run = tmp_path / "run"
    result = train(_config(synth_corpus, run), [AnalyzerCallback("wl", signal, when="eval"), ctl])
    assert result.stop_reason == "completed"
    records = read_decisions(run / "controller.jsonl")
    assert records[0]["action"] == "start"
    checks = [r for r in records if r["action"] != "start"]
    assert {r["step"] for r in checks} == {0, 4, 8, 12, 16}
    assert {r["language"] for r in checks} == {"php", "go"}
    analyzer_log = [json.loads(x) for x in (run / "analysis/wl/results.jsonl").open()]
    assert [r["step"] for r in analyzer_log] == [0, 4, 8, 12, 16]
    shares = {r["step"]: r["primary_share"] for r in analyzer_log}
    # The analyzer's share reached the controller at every check, unchanged.
    for r in checks:
        assert r["signals"]["primary_share"] == shares[r["step"]][r["language"]]
        assert r["signals"]["val_loss"] > 0
    # The signal the thresholds were chosen for: php low from the start, go high throughout.
    assert shares[0]["php"] <= exit_share and shares[4]["php"] <= exit_share
    assert all(shares[step]["go"] > exit_share for step in shares)

    # The decision: php released at the second check (step 4), for its share; go never.
    changes = [r for r in checks if r["action"] != "hold"]
    assert [(r["step"], r["language"], r["action"]) for r in changes] == [(4, "php", "release")]
    release = changes[0]
    assert f"primary share {shares[4]['php']:.3f} <= {exit_share}" in release["reason"]
    assert release["state_after"] == "released"
    boosted = {"python": 0.5 / 2.0, "php": 0.9 / 2.0, "go": 0.6 / 2.0}  # php and go x3
    released = {"python": 0.5 / 1.4, "php": 0.3 / 1.4, "go": 0.6 / 1.4}  # php back to base
    assert records[0]["weights"] == pytest.approx(boosted)
    assert release["weights"] == pytest.approx(released)

    # The run used those weights: boosted from step 1, php's boost gone from the step after
    # the decision (step 5) to the end, and no other change.
    mixtures = _mixture_records(run)
    assert [(step, reason) for step, reason, _ in mixtures] == [
        (1, "controller"),
        (5, "controller"),
    ]
    assert mixtures[0][2] == pytest.approx(boosted)
    assert mixtures[1][2] == pytest.approx(released)
    events = [r for r in read_metrics(run) if r.get("event") == "set_mixture"]
    assert [(e["step"], e["source"]) for e in events] == [(0, "stage-aware"), (4, "stage-aware")]
    assert events[1]["weights"] == pytest.approx(released)
    assert signal.seconds > 0 and ctl.seconds > 0


def test_controller_releases_on_a_plateau_and_resumes_exactly(synth_corpus, tmp_path, one_thread):
    from babel_interp.optimizer.controller import StageAwareController
    from babel_interp.training import Callback, train

    cfg = ControllerConfig(boost=4.0, patience=2, min_dwell=1, plateau_rel=0.08)

    class Crash(Callback):
        def __init__(self, at):
            self.at = at

        def on_eval(self, trainer, step, metrics):
            if step == self.at:
                raise RuntimeError("simulated crash")

    whole = tmp_path / "whole"
    train(_config(synth_corpus, whole, steps=24), [StageAwareController(cfg), Crash(-1)])
    decisions = read_decisions(whole / "controller.jsonl")
    releases = [d for d in decisions if d["action"] == "release"]
    assert releases, "the loss flattens within 24 steps: some language must be released"
    rel = releases[0]
    assert "plateau" in rel["reason"] and "2 checks" in rel["reason"]
    assert rel["weights"][rel["language"]] < decisions[0]["weights"][rel["language"]]
    # The release took effect from the next step.
    after = [m for m in _mixture_records(whole) if m[0] == rel["step"] + 1]
    assert after and after[0][2] == pytest.approx(rel["weights"])

    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(synth_corpus, broken, steps=24), [StageAwareController(cfg), Crash(16)])
    train(
        _config(synth_corpus, broken, steps=24, resume=True),
        [StageAwareController(cfg), Crash(-1)],
    )
    # Decisions logged after the last checkpoint (at step 16) were dropped and made again.
    assert read_decisions(broken / "controller.jsonl") == decisions
    assert _mixture_records(broken) == _mixture_records(whole)
