"""A step whose loss is NaN: the update never reaches the weights; ``on_nan="stop"`` stops
with the step, the batch's languages and the last checkpoint, ``"skip"`` drops the update and
goes on. The NaN is made real: one weight is set to NaN between two steps."""

from __future__ import annotations

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.runs import read_metrics
from babel_interp.training import CheckpointConfig, CheckpointSchedule, TrainConfig, train
from babel_interp.training.callbacks import Callback
from babel_interp.training.loop import NonFiniteLoss


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php"), docs=30)


class _PoisonAt(Callback):
    """After step ``at``, sets the first weight matrix to NaN; after step ``at + 1`` (when
    ``restore``), puts it back, so exactly one step sees a NaN loss."""

    def __init__(self, at: int, restore: bool) -> None:
        self.at, self.restore = at, restore
        self.saved: torch.Tensor | None = None
        self.opt_steps: dict[int, float] = {}

    def _param(self, trainer) -> torch.nn.Parameter:
        return next(p for p in trainer.model.parameters() if p.dim() == 2)

    def on_step(self, trainer, step, record):
        p = self._param(trainer)
        self.opt_steps[step] = float(trainer.optimizer.state[p]["step"])
        with torch.no_grad():
            if step == self.at:
                self.saved = p.detach().clone()
                p.fill_(float("nan"))
            elif step == self.at + 1 and self.restore:
                p.copy_(self.saved)


def _cfg(corpus, out, on_nan):
    return TrainConfig(
        corpus=str(corpus),
        out=str(out),
        steps=6,
        batch_size=4,
        seq_len=32,
        eval_every=0,
        progress=False,
        on_nan=on_nan,
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="every", every=2), fsync=False
        ),
    )


def test_stop_names_the_step_the_languages_and_the_last_checkpoint(corpus, tmp_path):
    poison = _PoisonAt(3, restore=False)
    with pytest.raises(NonFiniteLoss) as err:
        train(_cfg(corpus, tmp_path / "run", "stop"), callbacks=[poison])
    msg = str(err.value)
    assert "at step 4, on a batch of" in msg and "python" in msg
    assert "checkpoints/step_00000002 (resume from it with --resume)" in msg
    assert "--on-nan skip" in msg
    event = [r for r in read_metrics(tmp_path / "run") if r.get("event") == "nonfinite"][-1]
    assert event["step"] == 4 and event["action"] == "stopped" and event["loss"] == "nan"
    assert event["last_checkpoint"].endswith("step_00000002")


def test_skip_drops_exactly_that_update_and_goes_on(corpus, tmp_path):
    poison = _PoisonAt(3, restore=True)
    result = train(_cfg(corpus, tmp_path / "run", "skip"), callbacks=[poison])
    assert result.step == 6 and result.stop_reason == "completed"
    # AdamW counted updates 1, 2, 3, then none at step 4, then 4 and 5 at steps 5 and 6.
    assert poison.opt_steps == {1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5}
    records = [r for r in read_metrics(tmp_path / "run") if r["type"] == "train"]
    skipped = [r for r in records if r.get("skipped_update")]
    assert [r["step"] for r in skipped] == [4] and skipped[0]["loss"] is None
    assert all(r["loss"] is not None for r in records if r["step"] != 4)
    event = [r for r in read_metrics(tmp_path / "run") if r.get("event") == "nonfinite"]
    assert [e["action"] for e in event] == ["skipped the update"]


def test_the_command_line_takes_on_nan(corpus, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--corpus", str(corpus), "--out", str(tmp_path / "r"), "--on-nan", "x"])
