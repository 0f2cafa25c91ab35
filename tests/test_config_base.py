"""The shared config base: dict round trips, unknown fields named, validation on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from babel_interp.config import ConfigBase, check_choice, check_float, check_int


@dataclass
class Inner(ConfigBase):
    rate: float = 0.5

    def validate(self) -> None:
        check_float("Inner", "rate", self.rate, 0.0, 1.0)


@dataclass
class Outer(ConfigBase):
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None
    out: Path | None = None
    mode: str = "a"

    def validate(self) -> None:
        check_choice("Outer", "mode", self.mode, ("a", "b"))
        for s in self.sizes:
            check_int("Outer", "sizes", s, 1)


def test_round_trip_rebuilds_nested_configs_tuples_and_paths():
    cfg = Outer(sizes=(3, 4), inner=Inner(0.25), maybe=Inner(0.75), out=Path("/tmp/o"))
    d = cfg.to_dict()
    assert d == {
        "name": "x",
        "sizes": [3, 4],
        "inner": {"rate": 0.25},
        "maybe": {"rate": 0.75},
        "out": "/tmp/o",
        "mode": "a",
    }
    assert Outer.from_dict(d) == cfg


def test_unknown_fields_are_named():
    with pytest.raises(ValueError, match=r"Outer: unknown field\(s\) \['colour'\]"):
        Outer.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match=r"Inner: unknown field\(s\) \['rat'\]"):
        Outer.from_dict({"inner": {"rat": 1}})
    with pytest.raises(ValueError, match="unknown field"):
        Outer().replace(nme="y")


def test_validation_runs_on_construction_from_dict_and_replace():
    with pytest.raises(ValueError, match=r"Inner.rate must be in \[0.0, 1.0\], got 2"):
        Inner(2)
    with pytest.raises(ValueError, match="Outer.mode must be one of"):
        Outer.from_dict({"mode": "c"})
    with pytest.raises(ValueError, match="Outer.sizes must be an int >= 1, got 0"):
        Outer().replace(sizes=(0,))
    with pytest.raises(ValueError, match="must be an int, got True"):
        check_int("X", "n", True)


def test_from_dict_wants_a_dict():
    with pytest.raises(ValueError, match="must be read from a dict, got list"):
        Outer.from_dict([1, 2])
