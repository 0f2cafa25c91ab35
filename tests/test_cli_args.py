"""Flags derived from config dataclasses, and the train command's options built from them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from babel_interp.cli import build_parser
from babel_interp.cli.args import add_config_arguments, config_from_arguments
from babel_interp.cli.train import config_from_args
from babel_interp.config import ConfigBase, check_int
from babel_interp.mixture import Mixture
from babel_interp.training import (
    CheckpointConfig,
    CheckpointSchedule,
    LRSchedule,
    OptimConfig,
    TrainConfig,
)


@dataclass
class Toy(ConfigBase):
    """A config with one field of each kind.

    Attributes:
        rate: how fast, from the docstring
    """

    size: int = 3
    rate: float = 0.5
    name: str = "x"
    flag: bool = False
    on: bool = True
    maybe: int | None = None
    mode: Literal["a", "b"] = "a"
    steps: tuple[int, ...] = (1, 2)
    tags: list[str] = field(default_factory=list)
    out: Path | None = None
    nested: LRSchedule = field(default_factory=LRSchedule)
    noted: int = field(default=7, metadata={"help": "from the field's metadata: 100%"})

    def validate(self) -> None:
        check_int("Toy", "size", self.size, 1)


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    add_config_arguments(p, Toy, **kw)
    return p


def test_flags_follow_the_field_names_and_types():
    args = _parser().parse_args(
        ["--size", "5", "--rate", "0.25", "--name", "y", "--flag", "--no-on", "--maybe", "4"]
        + ["--mode", "b", "--steps", "0, 10,100", "--tags", "p,q", "--out", "/tmp/o"]
    )
    cfg = config_from_arguments(Toy, args)
    assert cfg == Toy(
        size=5, rate=0.25, name="y", flag=True, on=False, maybe=4, mode="b",
        steps=(0, 10, 100), tags=["p", "q"], out=Path("/tmp/o"),
    )  # fmt: skip
    # A nested config has no flag form: it is left to its own flags.
    assert not any(a.dest == "nested" for a in _parser()._actions)


def test_only_given_flags_override_the_base():
    p = _parser()
    assert config_from_arguments(Toy, p.parse_args([])) == Toy()
    base = Toy(size=9, maybe=2, flag=True, steps=(5,))
    got = config_from_arguments(Toy, p.parse_args(["--rate", "0.75"]), base)
    assert got == dataclasses.replace(base, rate=0.75)
    # A dict base (a config's JSON form) works the same, and a flag may set the default value.
    got = config_from_arguments(Toy, p.parse_args(["--size", "3"]), {"size": 8, "name": "z"})
    assert got == Toy(size=3, name="z")
    with pytest.raises(TypeError, match="base must be a Toy"):
        config_from_arguments(Toy, p.parse_args([]), base=3)


def test_values_are_checked_by_the_config_and_by_argparse():
    p = _parser()
    with pytest.raises(ValueError, match="Toy.size must be an int >= 1, got 0"):
        config_from_arguments(Toy, p.parse_args(["--size", "0"]))
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        p.parse_args(["--mode", "c"])
    with pytest.raises(argparse.ArgumentError, match="invalid int value"):
        p.parse_args(["--size", "many"])


def test_exclude_only_prefix_and_renamed_flags():
    p = argparse.ArgumentParser(exit_on_error=False)
    added = add_config_arguments(p, Toy, only=("size", "rate"), flags={"rate": ("--r", "--speed")})
    assert added == {"size": "size", "rate": "rate"}
    add_config_arguments(p, Toy, prefix="other-", exclude=("tags", "out"))
    args = p.parse_args(["--speed", "0.1", "--other-size", "4", "--no-other-on"])
    assert config_from_arguments(Toy, args) == Toy(rate=0.1)
    assert config_from_arguments(Toy, args, prefix="other-") == Toy(size=4, on=False)
    assert not any(a.dest in ("other_tags", "tags") for a in p._actions)
    with pytest.raises(ValueError, match=r"exclude names no field of Toy: \['colour'\]"):
        add_config_arguments(p, Toy, prefix="x-", exclude=("colour",))
    with pytest.raises(ValueError, match="Toy.nested .* has no command-line form"):
        add_config_arguments(p, Toy, prefix="y-", only=("nested",))
    with pytest.raises(ValueError, match="no flags of LRSchedule"):
        config_from_arguments(LRSchedule, args)


def test_help_comes_from_the_dict_the_metadata_or_the_docstring_with_the_default():
    p = _parser(help={"size": "how many"})
    helps = {a.dest: a.help for a in p._actions}
    assert helps["size"] == "how many (default: 3)"
    assert helps["rate"] == "how fast, from the docstring (default: 0.5)"
    assert helps["noted"] == "from the field's metadata: 100%% (default: 7)"
    assert helps["on"] == "default: on" and helps["steps"] == "default: 1,2"
    assert helps["maybe"] == ""
    assert "100% (default: 7)" in p.format_help()


def test_flags_spread_over_groups_of_one_parser():
    p = argparse.ArgumentParser()
    add_config_arguments(p.add_argument_group("a"), Toy, only=("size",))
    add_config_arguments(p.add_argument_group("b"), Toy, only=("rate",))
    args = p.parse_args(["--size", "2", "--rate", "0.3"])
    assert config_from_arguments(Toy, args) == Toy(size=2, rate=0.3)


def _train(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_train_options_keep_their_names_defaults_and_meaning():
    assert _train(["--corpus", "c", "--out", "o"]) == TrainConfig(corpus="c", out="o")
    argv = "--corpus c --out o --preset pilot --steps 5 --schedule-steps 9 --seed 3".split()
    argv += "--init-from ckpt --init-optimizer --batch-size 8 --micro-batch-size 4".split()
    argv += "--seq-len 32 --sequence-mode mixed --lr 3e-3 --lr-schedule wsd --warmup 1".split()
    argv += "--min-lr-ratio 0.2 --decay-fraction 0.5 --weight-decay 0 --grad-clip 0".split()
    argv += "--eval-every 2 --eval-windows 3 --eval-batch-size 4 --log-every 5".split()
    argv += "--checkpoints every:2 --resume-every 3 --keep-last 1 --no-keep-scheduled".split()
    argv += "--device cpu --dtype float32 --compile --deterministic off --no-fast-path".split()
    argv += "--no-progress --mixture python=0.7,php=0.3 --hook a --hook b".split()
    assert _train(argv) == TrainConfig(
        corpus="c",
        out="o",
        preset="pilot",
        steps=5,
        schedule_steps=9,
        seed=3,
        init_from="ckpt",
        init_optimizer=True,
        batch_size=8,
        micro_batch_size=4,
        seq_len=32,
        sequence_mode="mixed",
        optim=OptimConfig(
            schedule=LRSchedule(
                kind="wsd", lr=3e-3, warmup_steps=1, min_lr_ratio=0.2, decay_fraction=0.5
            ),
            weight_decay=0.0,
            grad_clip=0.0,
        ),
        eval_every=2,
        eval_windows=3,
        eval_batch_size=4,
        log_every=5,
        checkpoints=CheckpointConfig(
            schedule=CheckpointSchedule(kind="every", every=2),
            resume_every=3,
            keep_last=1,
            keep_scheduled=False,
        ),
        device="cpu",
        dtype="float32",
        compile=True,
        deterministic=False,
        fast_path=False,
        progress=False,
        mixture=Mixture(weights={"python": 0.7, "php": 0.3}),
        hooks=["a", "b"],
    )


def test_train_options_override_a_config_file(tmp_path):
    saved = TrainConfig(corpus="c", out="elsewhere", steps=7, optim=OptimConfig(beta2=0.9))
    path = tmp_path / "train.json"
    path.write_text(json.dumps(saved.to_dict()))
    got = _train(["--config", str(path), "--out", "o", "--lr", "0.01", "--deterministic", "on"])
    want = saved.replace(
        out="o", deterministic=True, optim=OptimConfig(beta2=0.9, schedule=LRSchedule(lr=0.01))
    )
    assert got == want
    with pytest.raises(ValueError, match="--corpus is required"):
        _train(["--out", "o"])


def test_every_train_config_field_has_an_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    dests = {a.dest for a in sub.choices["train"]._actions}
    for cls in (TrainConfig, OptimConfig, LRSchedule, CheckpointConfig):
        for f in dataclasses.fields(cls):
            if f.name in ("optim", "schedule", "hooks"):
                continue  # nested configs (--checkpoints is the schedule) and --hook
            assert f.name in dests, f"{cls.__name__}.{f.name} has no option"
    assert "hook" in dests
