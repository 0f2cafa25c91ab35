"""Mixture methods by name: one entry point from a method spec to an allocation and provenance.

A method spec is ``METHOD`` or ``METHOD:key=value,key=value`` (``temperature:temperature=3``,
``unimax:max_epochs=2``), or a dict ``{"method": ..., **params}``. The harness and the
``babel-interp optimize`` command both go through :func:`allocate`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from babel_interp.io import write_csv_atomic, write_json_atomic
from babel_interp.mixture import Mixture, load_mixture
from babel_interp.optimizer.babel_tower import (
    BabelTowerAllocationConfig,
    LanguageEvidence,
    babel_tower_allocation,
)
from babel_interp.optimizer.baselines import (
    BASELINE_METHODS,
    Allocation,
    BaselineConfig,
    baseline_allocation,
    corpus_language_sizes,
)
from babel_interp.optimizer.provenance import Provenance, corpus_record

METHODS = (*BASELINE_METHODS, "babel-tower")


def _coerce(value: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"a;b"`` -> ["a", "b"]."""
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if ";" in value:
        return [v.strip() for v in value.split(";") if v.strip()]
    return value


def parse_params(text: str, where: str = "") -> dict[str, Any]:
    """``"temperature=3,share=true"`` -> ``{"temperature": 3, "share": True}``."""
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"method parameter {item!r} in {where or text!r} is not key=value")
        params[key.strip()] = _coerce(value.strip())
    return params


@dataclass
class MethodSpec:
    """A mixture method and its parameters."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"MethodSpec.method must be one of {METHODS}, got {self.method!r}")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | MethodSpec) -> MethodSpec:
        """From ``"temperature:temperature=3"``, a dict with ``method``, or a MethodSpec."""
        if isinstance(spec, MethodSpec):
            return spec
        if isinstance(spec, Mapping):
            d = dict(spec)
            if "method" not in d:
                raise ValueError(f"a method spec dict needs a 'method' key, got {sorted(d)}")
            return cls(d.pop("method"), d)
        method, _, rest = str(spec).partition(":")
        return cls(method.strip(), parse_params(rest, str(spec)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params}

    def __str__(self) -> str:
        if not self.params:
            return self.method
        return self.method + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())


def load_evidence(path: str | os.PathLike) -> dict[str, LanguageEvidence]:
    """Per-language evidence from a JSON file: a list of :class:`LanguageEvidence` dicts."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = data["evidence"] if isinstance(data, dict) and "evidence" in data else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of per-language evidence records")
    out = {}
    for item in items:
        ev = LanguageEvidence.from_dict(item)
        out[ev.language] = ev
    return out


@dataclass
class OptimizeResult:
    """A method's answer: the trainer's :class:`Mixture`, the allocation and its provenance."""

    mixture: Mixture
    allocation: Allocation
    provenance: Provenance

    def to_dict(self) -> dict[str, Any]:
        return {
            "mixture": self.mixture.to_dict(),
            "allocation": self.allocation.to_dict(),
            "provenance": self.provenance.to_dict(),
        }


def provenance_path(mix_path: str | os.PathLike) -> Path:
    """``MIX.provenance.json`` beside ``MIX.json``."""
    p = Path(mix_path)
    return p.with_name(p.stem + ".provenance.json")


def sensitivity_path(mix_path: str | os.PathLike) -> Path:
    """``MIX.sensitivity.csv`` beside ``MIX.json``."""
    p = Path(mix_path)
    return p.with_name(p.stem + ".sensitivity.csv")


def write_mixture_file(path: str | os.PathLike, result: OptimizeResult) -> tuple[Path, Path]:
    """Write ``MIX.json`` (exactly a Mixture, so ``train --mixture MIX.json`` reads it) and
    ``MIX.provenance.json`` (allocation and provenance); both atomically. A babel-tower mixture
    also gets ``MIX.sensitivity.csv``: its proxy cut across target shares and run lengths
    (:func:`babel_interp.optimizer.babel_tower.proxy_sensitivity`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance_path(p)
    write_json_atomic(prov, {"mixture_file": p.name, **result.to_dict()})
    if result.provenance.sensitivity:
        write_csv_atomic(sensitivity_path(p), pd.DataFrame(result.provenance.sensitivity))
    write_json_atomic(p, result.mixture.to_dict())
    return p, prov


def read_mixture_file(path: str | os.PathLike) -> tuple[Mixture, dict[str, Any] | None]:
    """A mixture file and its provenance sidecar (None when there is none)."""
    p = Path(path)
    mixture = load_mixture(p)
    prov = provenance_path(p)
    meta = json.loads(prov.read_text(encoding="utf-8")) if prov.is_file() else None
    return mixture, meta


def allocate(
    spec: str | Mapping[str, Any] | MethodSpec,
    corpus_dir: str | os.PathLike,
    total_tokens: int | None = None,
    evidence: Mapping[str, LanguageEvidence] | None = None,
    runs: list[dict[str, Any]] | None = None,
) -> OptimizeResult:
    """The mixture of ``spec`` over the corpus, its allocation and the provenance explaining it.

    ``total_tokens`` overrides a ``total_tokens`` in the spec. ``evidence`` (babel-tower only)
    may instead be given as an ``evidence=PATH`` parameter; ``runs`` records the runs it was read
    from.
    """
    spec = MethodSpec.parse(spec)
    params = dict(spec.params)
    if total_tokens is not None:
        params["total_tokens"] = int(total_tokens)
    sizes = corpus_language_sizes(corpus_dir)
    prov_signals: dict[str, Any] = {"train_tokens": sizes}
    if spec.method in BASELINE_METHODS:
        cfg = BaselineConfig.from_dict({"method": spec.method, **params})
        alloc = baseline_allocation(cfg, sizes)
        decisions: list[dict[str, Any]] = []
        calibration: list[dict[str, Any]] = []
        sensitivity: list[dict[str, Any]] = []
        cfg_dict = cfg.to_dict()
        caps = {lang: cfg.max_epochs for lang in alloc.languages} if cfg.method == "unimax" else {}
        mixture = alloc.to_mixture(epoch_caps=caps)
    else:
        evidence_path = params.pop("evidence", None)
        if evidence is None:
            if evidence_path is None:
                raise ValueError(
                    "babel-tower needs evidence: continual-pretraining runs (--run LANG=RUN) "
                    "or an evidence file (babel-tower:evidence=PATH)"
                )
            evidence = load_evidence(evidence_path)
        bt_cfg = BabelTowerAllocationConfig.from_dict(params)
        res = babel_tower_allocation(sizes, evidence, bt_cfg)
        alloc = res.allocation
        cut = [d.language for d in res.decisions if d.action == "cut"]
        mixture = alloc.to_mixture(budget_languages=cut)
        decisions = [d.to_dict() for d in res.decisions]
        calibration = [c.to_dict() for c in res.calibration]
        sensitivity = res.to_dict()["sensitivity"]
        prov_signals["evidence"] = {k: v.to_dict() for k, v in evidence.items()}
        if evidence_path is not None:
            prov_signals["evidence_file"] = str(Path(evidence_path).resolve())
        cfg_dict = bt_cfg.to_dict()
    prov = Provenance(
        method=spec.method,
        params=cfg_dict,
        corpus=corpus_record(corpus_dir),
        runs=list(runs or []),
        signals=prov_signals,
        decisions=decisions,
        calibration=calibration,
        sensitivity=sensitivity,
        notes=list(alloc.notes),
    )
    return OptimizeResult(mixture, alloc, prov)
