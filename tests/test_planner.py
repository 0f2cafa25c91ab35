"""The memory planner: its predictions against the measured peak of real training steps on CPU,
its arithmetic at the paper's sizes, and the ``plan`` command's output and errors.

The measured peak is the most tensor memory alive at once during one steady-state training step
(after a warm-up step that creates AdamW's state), from torch's CPU memory profiler, with the
weights and optimizer state counted from their allocation (see
:mod:`babel_interp.bench.memory`): the quantity the planner predicts.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from babel_interp.bench.memory import peak_tensor_bytes
from babel_interp.bench.throughput import random_corpus
from babel_interp.cli import main
from babel_interp.model import get_preset, tl_major_version
from babel_interp.planner import (
    ModelShape,
    PlanConfig,
    largest_micro_batch,
    parse_bytes,
    peak_memory,
    plan_memory,
    shape_of_preset,
    static_memory,
)
from babel_interp.training import CheckpointConfig, TrainConfig, Trainer

TOLERANCE = 0.15
HAS_FSDP = "parallel" in {f.name for f in dataclasses.fields(TrainConfig)}

# (preset, vocabulary, micro-batch, sequence, TrainConfig overrides): batches large enough that
# activations and the loss's vocabulary-sized tensors dominate the weights.
CASES = {
    "tiny-fp32-sdpa": ("tiny", 2048, 8, 128, {}),
    "tiny-fp32-eager": ("tiny", 2048, 8, 128, {"fast_path": False}),
    "tiny-bf16-sdpa": ("tiny", 2048, 8, 128, {"dtype": "bfloat16"}),
    "pilot-fp32-checkpointed": ("pilot", 4096, 4, 256, {"activation_checkpointing": True}),
}


def _measure(tmp_path, preset, vocab, batch, seq, overrides):
    corpus = random_corpus(tmp_path / "corpus", vocab, 40_000)
    model = get_preset(preset).with_vocab(vocab)
    cfg = TrainConfig(
        corpus=str(corpus),
        out=str(tmp_path / "run"),
        model=model,
        steps=100,
        batch_size=batch,
        seq_len=seq,
        eval_every=0,
        progress=False,
        device="cpu",
        checkpoints=CheckpointConfig(fsync=False),
        **overrides,
    )
    trainers = []

    def setup():
        trainer = Trainer(cfg)
        trainers.append(trainer)
        trainer.train_step()  # creates AdamW's moments: the next step is the steady state
        return trainer

    try:
        measured = peak_tensor_bytes(setup, lambda t: t.train_step())
    finally:
        for t in trainers:
            t.close()
    plan = PlanConfig(
        model=ModelShape.of(model),
        seq_len=seq,
        dtype=cfg.dtype if cfg.dtype != "auto" else "float32",
        attention="sdpa" if cfg.fast_path else "eager",
        activation_checkpointing=bool(overrides.get("activation_checkpointing", False)),
        parallel=overrides.get("parallel", "ddp"),
        grad_accumulation=False,  # one micro-batch per step
        tl_major=tl_major_version(),
    )
    return measured, peak_memory(plan, batch)[0]


@pytest.mark.parametrize("case", list(CASES))
def test_predicted_peak_is_within_15_percent_of_a_measured_training_step(tmp_path, case):
    preset, vocab, batch, seq, overrides = CASES[case]
    if "activation_checkpointing" in overrides and not HAS_FSDP:
        pytest.skip("the trainer has no activation_checkpointing option")
    measured, predicted = _measure(tmp_path, preset, vocab, batch, seq, overrides)
    # The measurement saw the model: weights and AdamW moments were alive when the step began.
    assert measured.start >= 12 * (get_preset(preset).with_vocab(vocab).n_params() - vocab)
    assert measured.peak > 2 * measured.start, "activations should dominate this case"
    assert abs(predicted - measured.peak) <= TOLERANCE * measured.peak, (
        f"{case}: predicted {predicted:,} bytes, measured {measured.peak:,}"
    )


@pytest.mark.skipif(not HAS_FSDP, reason="the trainer has no FSDP option")
def test_fsdp_one_rank_prediction_is_within_15_percent(tmp_path):
    measured, predicted = _measure(tmp_path, "tiny", 2048, 8, 128, {"parallel": "fsdp"})
    assert abs(predicted - measured.peak) <= TOLERANCE * measured.peak, (predicted, measured)


def test_the_measurement_sees_a_known_allocation():
    import torch

    size = 4 * 1024 * 1024
    # 1M fp32 zeros, then a second tensor of the same size while the first is alive: 8 MiB.
    got = peak_tensor_bytes(lambda: torch.zeros(size // 4), lambda a: (a + 1).sum())
    assert got.start == size
    assert size * 2 <= got.peak <= size * 2 + 4096


def test_paper_shapes_and_sharding():
    six = shape_of_preset("6.7b")
    assert (six.n_layers, six.d_model, six.n_heads, six.d_head, six.d_mlp) == (
        32,
        4096,
        32,
        128,
        16384,
    )
    assert six.n_params() == get_preset("6.7b").with_vocab(50257).n_params()
    assert 6.7e9 < six.n_params() < 7.0e9
    one = shape_of_preset("1.3b")
    assert one.n_params() == get_preset("1.3b").with_vocab(50257).n_params()
    ddp = static_memory(PlanConfig(model=six, gpus=8, parallel="ddp"))
    fsdp = static_memory(PlanConfig(model=six, gpus=8, parallel="fsdp"))
    # AdamW: fp32 weights, gradients and two moments, 16 bytes a parameter; FSDP divides by 8.
    assert ddp["weights"] + ddp["gradients"] + ddp["optimizer"] == 16 * six.n_params()
    sharded = fsdp["weights"] + fsdp["gradients"] + fsdp["optimizer"]
    assert abs(sharded - 2 * six.n_params()) <= 16
    assert fsdp["gathered_params"] == 2 * (six.root_params() + 2 * six.block_params())


def test_six_b_on_eight_gpus_fits_with_fsdp_not_ddp():
    six = shape_of_preset("6.7b")
    base = PlanConfig(model=six, seq_len=2048, gpus=8, gpu_mem=parse_bytes("80GB"))
    ddp = plan_memory(base.replace(parallel="ddp"))
    assert not ddp.fits and ddp.micro_batch == 0
    assert "nothing fits" in ddp.message and "--parallel fsdp" in ddp.message
    fsdp = plan_memory(base.replace(parallel="fsdp"))
    assert fsdp.fits and fsdp.micro_batch >= 1
    assert fsdp.peak <= base.usable
    assert peak_memory(base.replace(parallel="fsdp"), fsdp.micro_batch + 1)[0] > base.usable
    ckpt = plan_memory(base.replace(parallel="fsdp", activation_checkpointing=True))
    assert ckpt.micro_batch > fsdp.micro_batch
    assert fsdp.activations_per_sequence_checkpointed < fsdp.activations_per_sequence / 3


def test_more_memory_never_fits_fewer_sequences():
    one = shape_of_preset("1.3b")
    sizes = [largest_micro_batch(PlanConfig(model=one, gpu_mem=g * 10**9)) for g in (24, 40, 80)]
    assert sizes == sorted(sizes) and sizes[0] == 0 and sizes[-1] > 0
    # eager attention keeps n_heads x seq x seq per block: fewer sequences fit.
    eager = largest_micro_batch(PlanConfig(model=one, attention="eager"))
    assert eager < sizes[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80GB", 80 * 10**9), ("141GiB", 141 * 2**30), ("512 MB", 512 * 10**6), ("80", 80 * 10**9)],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "needle"), [("80XB", "unknown unit 'XB'"), ("lots", "not a")])
def test_parse_bytes_names_the_problem(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_bytes(text)


def test_plan_config_names_a_bad_field():
    with pytest.raises(ValueError, match="PlanConfig.gpus"):
        PlanConfig(model=shape_of_preset("tiny", 512), seq_len=64, gpus=0)
    with pytest.raises(ValueError, match="PlanConfig.parallel"):
        PlanConfig(model=shape_of_preset("tiny", 512), seq_len=64, parallel="zero3")


def test_plan_command_prints_the_components_and_the_micro_batch(capsys):
    assert main(["plan", "--preset", "6.7b", "--gpus", "8", "--gpu-mem", "80GB"]) == 0
    out = capsys.readouterr().out
    for needle in ("weights", "AdamW moments", "activations per sequence", "largest micro-batch"):
        assert needle in out
    assert "fsdp" in out  # the default on several GPUs


def test_plan_command_json(capsys):
    argv = ["plan", "--preset", "1.3b", "--seq", "1024", "--json", "--no-accumulation"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "1.3b" and out["config"]["seq_len"] == 1024
    assert out["fits"] and out["micro_batch"] >= 1 and out["peak_bytes"] <= out["usable_bytes"]
    assert {r["parallel"] for r in out["alternatives"]} == {"ddp", "fsdp"}


def test_plan_command_says_when_nothing_fits(capsys):
    assert main(["plan", "--preset", "6.7b", "--gpus", "8", "--parallel", "ddp"]) == 3
    assert "nothing fits" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "7b"], "invalid choice: '7b'"),
        (["--preset", "1.3b", "--gpu-mem", "80XB"], "--gpu-mem: memory size '80XB': unknown unit"),
        (["--preset", "1.3b", "--gpus", "0"], "--gpus: must be at least 1, got 0"),
        (["--preset", "1.3b", "--seq", "4096"], "--seq 4096 exceeds the 1.3b preset's context"),
    ],
)
def test_plan_command_names_bad_input(argv, needle, capsys):
    try:
        code = main(["plan", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code in (1, 2)
    assert needle in capsys.readouterr().err
