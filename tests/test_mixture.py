"""Mixtures: simplex weights, phases, budgets, epoch caps, JSON and compact-string round trips."""

from __future__ import annotations

import json
import math

import pytest

from babel_interp.mixture import (
    DataExhausted,
    Mixture,
    Phase,
    load_mixture,
    parse_token_count,
)


def test_weights_are_normalized_onto_the_simplex():
    m = Mixture(weights={"python": 7, "php": 3})
    assert m.weights == pytest.approx({"python": 0.7, "php": 0.3})
    assert math.fsum(m.weights.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "spec",
    [
        "python=0.7,php=0.3",
        "0:python=1;1000:php=0.8,python=0.2",
        "python=0.5,php=0.5;budget:php=2000000;epochs:php=2.5",
        "python=1;10:php=1;20:python=0.25,php=0.75;budget:python=1500",
    ],
)
def test_compact_spec_and_json_round_trip(spec):
    m = Mixture.parse(spec)
    assert Mixture.parse(m.to_spec()) == m
    assert Mixture.from_json(m.to_json()) == m
    assert Mixture.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert str(m) == m.to_spec()


def test_spec_reads_phases_budgets_and_caps():
    m = Mixture.parse("0:python=1;1000:php=0.8,python=0.2;budget:php=2M;epochs:python=3")
    assert m.weights == {"python": 1.0}
    assert [p.start for p in m.phases] == [0, 1000]
    assert m.phases[1].weights == pytest.approx({"php": 0.8, "python": 0.2})
    assert m.budgets == {"php": 2_000_000}
    assert m.epoch_caps == {"python": 3.0}
    assert m.all_languages() == ["python", "php"]


def test_weights_at_follows_phases():
    m = Mixture(
        weights={"python": 1.0},
        phases=[Phase(100, {"php": 1.0}), (200, {"php": 1, "python": 1})],
    )
    assert m.weights_at(0) == {"python": 1.0}
    assert m.weights_at(99) == {"python": 1.0}
    assert m.weights_at(100) == {"php": 1.0}
    assert m.weights_at(250) == {"php": 0.5, "python": 0.5}


def test_phase_from_step_zero_defines_the_base_weights():
    m = Mixture(weights={"go": 1.0}, phases=[(0, {"python": 1.0})])
    assert m.weights == {"python": 1.0}
    assert Mixture.parse(m.to_spec()) == m


def test_token_limits_take_the_smaller_of_budget_and_epoch_cap():
    m = Mixture(
        weights={"python": 1, "php": 1, "go": 1},
        budgets={"python": 500, "php": 10_000},
        epoch_caps={"php": 2.0, "go": 0.5},
    )
    limits = m.token_limits({"python": 1000, "php": 1000, "go": 1001})
    assert limits == {"python": 500, "php": 2000, "go": 500}


def test_available_weights_renormalize_and_exhaust():
    m = Mixture(weights={"python": 0.6, "php": 0.4}, budgets={"python": 100})
    limits = m.token_limits({"python": 10**6, "php": 10**6})
    assert m.available_weights(1, {"python": 99}, limits) == pytest.approx(
        {"python": 0.6, "php": 0.4}
    )
    assert m.available_weights(1, {"python": 100}, limits) == {"php": 1.0}
    only = Mixture(weights={"python": 1.0}, budgets={"python": 100})
    with pytest.raises(DataExhausted, match=r"python.*100/100"):
        only.available_weights(7, {"python": 100}, only.token_limits({"python": 10**6}))


def test_zero_weight_languages_are_not_drawn():
    m = Mixture(weights={"python": 1.0, "php": 0.0})
    assert m.available_weights(1, {}, {}) == {"python": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": {"python": -1.0}}, r"Mixture.weights\['python'\]"),
        ({"weights": {"python": 0.0}}, r"Mixture.weights sum to 0"),
        ({"weights": {"python": float("nan")}}, r"finite"),
        ({"weights": {"python": "a"}}, r"must be a number"),
        ({"weights": {"bad name": 1.0}}, r"not a language name"),
        ({"weights": {}}, r"Mixture.weights is empty"),
        ({"weights": {"python": 1}, "budgets": {"python": 0}}, r"Mixture.budgets\['python'\]"),
        ({"weights": {"python": 1}, "epoch_caps": {"python": -2}}, r"Mixture.epoch_caps"),
        ({"weights": {"python": 1}, "budgets": {"php": 5}}, r"no weight mentions"),
        (
            {"weights": {"python": 1}, "phases": [(10, {"php": 1}), (5, {"python": 1})]},
            r"strictly increasing",
        ),
        ({"weights": {"python": 1}, "phases": [(-1, {"php": 1})]}, r"Phase.start"),
        ({"phases": [(5, {"php": 1})]}, r"first starts at 0"),
    ],
)
def test_bad_mixtures_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mixture(**kwargs)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty"),
        ("python", "not 'language=value'"),
        ("python=x", "not a number"),
        ("python=1;php=1", "two weight segments"),
        ("python=1;foo:php=1", "expected"),
        ("python=1;budget:python=1.5", "whole number"),
        ("python=1;budget:python=lots", "token count"),
    ],
)
def test_bad_specs_are_rejected_clearly(spec, match):
    with pytest.raises(ValueError, match=match):
        Mixture.parse(spec)


def test_parse_token_count_suffixes():
    assert parse_token_count("2M") == 2_000_000
    assert parse_token_count("1.5k") == 1500
    assert parse_token_count("5e6") == 5_000_000
    assert parse_token_count("3G") == 3 * 10**9
    assert parse_token_count("17") == 17


def test_load_mixture_from_file_spec_mapping_and_instance(tmp_path):
    m = Mixture.parse("python=0.2,php=0.8;epochs:php=1")
    path = m.save(tmp_path / "mix.json")
    assert load_mixture(path) == m
    assert load_mixture(str(path)) == m
    assert load_mixture("python=0.2,php=0.8;epochs:php=1") == m
    assert load_mixture({"python": 1, "php": 4}) == Mixture(weights={"python": 0.2, "php": 0.8})
    assert load_mixture(m) is m
    with pytest.raises(FileNotFoundError):
        load_mixture(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_mixture(tmp_path / "broken.json")


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown field"):
        Mixture.from_dict({"weights": {"python": 1}, "wieghts": {}})


def test_uniform_and_proportional():
    assert Mixture.uniform(["a", "b"]).weights == {"a": 0.5, "b": 0.5}
    assert Mixture.proportional({"a": 3, "b": 1}).weights == {"a": 0.75, "b": 0.25}
