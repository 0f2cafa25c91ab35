"""Pretraining: mixtures, per-language loss, checkpoints, exact resume, DDP, callbacks.

>>> from babel_interp.training import TrainConfig, train
>>> result = train(TrainConfig(corpus="corpus/", out="runs/python", mixture="python=1"))

Continual pretraining on a new language, with 20% primary-language replay::

    train(TrainConfig(corpus="corpus/", out="runs/php", mixture="php=0.8,python=0.2",
                      init_from="runs/python"))
"""

from babel_interp.mixture import DataExhausted, Mixture, Phase, load_mixture
from babel_interp.training.callbacks import (
    AnalyzerCallback,
    Callback,
    ControllerCallback,
    HookCallback,
    LiveTrainer,
    MixtureController,
)
from babel_interp.training.checkpoints import (
    clean_stale,
    latest_checkpoint,
    prune_checkpoints,
    read_trainer_state,
    resolve_checkpoint,
    write_checkpoint,
)
from babel_interp.training.config import CheckpointConfig, OptimConfig, TrainConfig
from babel_interp.training.distributed import DistInfo, init_distributed
from babel_interp.training.loop import Trainer, per_language_loss, train
from babel_interp.training.metrics_log import MetricsLog
from babel_interp.training.result import TrainResult
from babel_interp.training.sampler import BatchPlan, MixtureSampler, Segment, eval_windows
from babel_interp.training.schedule import CheckpointSchedule, LRSchedule

__all__ = [
    "AnalyzerCallback",
    "BatchPlan",
    "Callback",
    "CheckpointConfig",
    "CheckpointSchedule",
    "ControllerCallback",
    "DataExhausted",
    "DistInfo",
    "HookCallback",
    "LRSchedule",
    "LiveTrainer",
    "MetricsLog",
    "Mixture",
    "MixtureController",
    "MixtureSampler",
    "OptimConfig",
    "Phase",
    "Segment",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "clean_stale",
    "eval_windows",
    "init_distributed",
    "latest_checkpoint",
    "load_mixture",
    "per_language_loss",
    "prune_checkpoints",
    "read_trainer_state",
    "resolve_checkpoint",
    "train",
    "write_checkpoint",
]
