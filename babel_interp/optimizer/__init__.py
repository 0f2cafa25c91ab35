"""The corpus optimizer: baseline mixtures, the paper's allocation, an online controller, and the
harness that compares them at an equal token budget.

* :mod:`~babel_interp.optimizer.baselines`: proportional, uniform, temperature, UniMax;
* :mod:`~babel_interp.optimizer.babel_tower`: the loss proxy, its calibration against the
  measured working-language share, and the allocation (the paper's Algorithm 1);
* :mod:`~babel_interp.optimizer.controller`: the stage-aware online controller (a training
  callback with hysteresis and a decision log);
* :mod:`~babel_interp.optimizer.methods`: method specs -> Mixture + provenance (``MIX.json``);
* :mod:`~babel_interp.optimizer.evidence`: the allocation's evidence read from runs;
* :mod:`~babel_interp.optimizer.resample`: a mixture written as a resampled corpus;
* :mod:`~babel_interp.optimizer.harness` and :mod:`~babel_interp.optimizer.summary`: the
  evaluation harness and its comparison table.

The harness and controller import the trainer (torch); import them from their modules.
"""

from babel_interp.optimizer.babel_tower import (
    BabelTowerAllocationConfig,
    BabelTowerResult,
    CalibrationReport,
    LanguageEvidence,
    LossProxy,
    babel_tower_allocation,
    calibrate_proxy,
    fit_loss_proxy,
    system_share,
)
from babel_interp.optimizer.baselines import (
    BASELINE_METHODS,
    Allocation,
    BaselineConfig,
    baseline_allocation,
    corpus_language_sizes,
    proportional_weights,
    temperature_weights,
    uniform_weights,
    unimax_budgets,
)
from babel_interp.optimizer.methods import (
    METHODS,
    MethodSpec,
    OptimizeResult,
    allocate,
    read_mixture_file,
    write_mixture_file,
)
from babel_interp.optimizer.provenance import Provenance
from babel_interp.optimizer.resample import ResampleReport, write_resampled_corpus

__all__ = [
    "BASELINE_METHODS",
    "METHODS",
    "Allocation",
    "BabelTowerAllocationConfig",
    "BabelTowerResult",
    "BaselineConfig",
    "CalibrationReport",
    "LanguageEvidence",
    "LossProxy",
    "MethodSpec",
    "OptimizeResult",
    "Provenance",
    "ResampleReport",
    "allocate",
    "babel_tower_allocation",
    "baseline_allocation",
    "calibrate_proxy",
    "corpus_language_sizes",
    "fit_loss_proxy",
    "proportional_weights",
    "read_mixture_file",
    "system_share",
    "temperature_weights",
    "uniform_weights",
    "unimax_budgets",
    "write_mixture_file",
    "write_resampled_corpus",
]
