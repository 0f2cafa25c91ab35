"""Typed configuration of a training run: what to train on, how, and what to save."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from babel_interp.config import ConfigBase, check_choice, check_float, check_int
from babel_interp.mixture import Mixture, load_mixture
from babel_interp.model import PRESETS, ModelConfig, get_preset
from babel_interp.training.schedule import CheckpointSchedule, LRSchedule

__all__ = ["CheckpointConfig", "OptimConfig", "TrainConfig"]

SequenceMode = Literal["pure", "mixed"]
DType = Literal["auto", "float32", "bfloat16"]
OnNonFinite = Literal["stop", "skip"]
Parallel = Literal["ddp", "fsdp"]
SEQUENCE_MODES: tuple[str, ...] = get_args(SequenceMode)
DTYPES: tuple[str, ...] = get_args(DType)
DEVICES_HINT = "'auto', 'cpu', 'cuda' or 'cuda:N'"


@dataclass
class OptimConfig(ConfigBase):
    """AdamW and its learning-rate schedule. Weight decay applies to matrices only."""

    schedule: LRSchedule = field(default_factory=LRSchedule)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.schedule, dict):
            self.schedule = LRSchedule.from_dict(self.schedule)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.schedule, LRSchedule):
            raise ValueError(f"OptimConfig.schedule must be an LRSchedule, got {self.schedule!r}")
        check_float("OptimConfig", "weight_decay", self.weight_decay, 0.0)
        check_float("OptimConfig", "beta1", self.beta1, 0.0, 0.999999)
        check_float("OptimConfig", "beta2", self.beta2, 0.0, 0.999999)
        check_float("OptimConfig", "eps", self.eps, 0.0, 1.0)
        check_float("OptimConfig", "grad_clip", self.grad_clip, 0.0)


@dataclass
class CheckpointConfig(ConfigBase):
    """When to checkpoint and which checkpoints to keep.

    ``schedule`` picks the analysis checkpoints; ``resume_every`` adds checkpoints every N steps
    that exist only so a crash loses little work. Retention: a checkpoint is kept when it is
    scheduled (and ``keep_scheduled``), or among the ``keep_last`` newest (``None``: keep all).
    The newest checkpoint is always kept.
    """

    schedule: CheckpointSchedule = field(default_factory=CheckpointSchedule)
    resume_every: int = 0
    keep_last: int | None = None
    keep_scheduled: bool = True
    fsync: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.schedule, dict):
            self.schedule = CheckpointSchedule.from_dict(self.schedule)
        if isinstance(self.schedule, str):
            self.schedule = CheckpointSchedule.parse(self.schedule)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.schedule, CheckpointSchedule):
            raise ValueError(
                f"CheckpointConfig.schedule must be a CheckpointSchedule, got {self.schedule!r}"
            )
        check_int("CheckpointConfig", "resume_every", self.resume_every, 0)
        if self.keep_last is not None:
            check_int("CheckpointConfig", "keep_last", self.keep_last, 1)


@dataclass
class TrainConfig(ConfigBase):
    """One training run.

    ``batch_size`` is the global number of sequences per optimizer step, split over data-parallel
    ranks and then into micro-batches of ``micro_batch_size`` (gradient accumulation); the losses
    do not depend on the split. ``seq_len`` defaults to the model's context. ``mixture`` defaults
    to each corpus language in proportion to its training tokens. ``model`` overrides ``preset``;
    its ``seed`` is replaced by ``seed`` so one number seeds initialization and data.
    ``init_from`` (a checkpoint directory, or a run whose last checkpoint is taken) starts from
    another run's weights for continual pretraining, with a fresh optimizer unless
    ``init_optimizer``. ``eval_windows`` is the number of fixed validation windows per language
    (0: every non-overlapping window of the split). ``deterministic`` turns on
    ``torch.use_deterministic_algorithms`` for the run (``None``: on CPU only, where it costs
    little and makes a resumed run's losses bit-identical; multi-threaded CPU backward of the
    embedding lookup is otherwise order-nondeterministic).
    ``schedule_steps`` (>= ``steps``) is the length the learning-rate schedule is laid out for,
    so a run can be exactly the first ``steps`` updates of a longer one (a truncated baseline
    with the same schedule); default ``steps``.
    ``on_nan``: what a step whose loss or gradient norm is not finite does. ``stop`` (default)
    leaves the weights as they were before the step and raises
    :class:`~babel_interp.training.loop.NonFiniteLoss` naming the step, the languages in the
    batch and the last checkpoint; ``skip`` drops that step's update, records it (an
    ``event: "nonfinite"`` line in ``metrics.jsonl``) and goes on.
    ``parallel``: how ranks share the work. ``ddp`` (default) keeps a full model and optimizer
    on every rank and averages gradients; ``fsdp`` shards them (FSDP2, each transformer block
    then the root; see :mod:`babel_interp.training.fsdp`) and writes sharded checkpoints
    (:mod:`babel_interp.training.dcp`). One process with ``fsdp`` runs a single-rank group, so
    the code path and the checkpoint format are those of a multi-rank run.
    ``activation_checkpointing`` recomputes each block's activations in the backward pass
    instead of keeping them (less memory, about one more forward of compute; same losses),
    with either ``parallel``.
    """

    @property
    def lr_steps(self) -> int:
        """The horizon of the learning-rate schedule."""
        return self.schedule_steps or self.steps

    corpus: str
    out: str
    preset: str = "tiny"
    model: ModelConfig | None = None
    mixture: Mixture | None = None
    steps: int = 1000
    schedule_steps: int | None = None
    batch_size: int = 16
    micro_batch_size: int | None = None
    seq_len: int | None = None
    sequence_mode: SequenceMode = "pure"
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval_every: int = 100
    eval_windows: int = 32
    eval_batch_size: int = 16
    log_every: int = 1
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    init_from: str | None = None
    init_optimizer: bool = False
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    dtype: DType = "auto"
    compile: bool = False
    deterministic: bool | None = None
    fast_path: bool = True
    parallel: Parallel = "ddp"
    activation_checkpointing: bool = False
    hooks: list[str] = field(default_factory=list)
    on_nan: OnNonFinite = "stop"
    progress: bool = True

    def __post_init__(self) -> None:
        # The constructor also takes the JSON forms of the nested configs and a mixture spec.
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.mixture is not None and not isinstance(self.mixture, Mixture):
            self.mixture = load_mixture(self.mixture)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig.from_dict(self.optim)
        if isinstance(self.checkpoints, dict):
            self.checkpoints = CheckpointConfig.from_dict(self.checkpoints)
        self.validate()

    def validate(self) -> None:
        for name in ("corpus", "out"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"TrainConfig.{name} must be a non-empty path, got {value!r}")
        check_choice("TrainConfig", "preset", self.preset, PRESETS)
        if self.model is not None and not isinstance(self.model, ModelConfig):
            raise ValueError(f"TrainConfig.model must be a ModelConfig, got {self.model!r}")
        check_int("TrainConfig", "steps", self.steps, 1)
        if self.schedule_steps is not None:
            check_int("TrainConfig", "schedule_steps", self.schedule_steps, self.steps)
        check_int("TrainConfig", "batch_size", self.batch_size, 1)
        if self.micro_batch_size is not None:
            check_int("TrainConfig", "micro_batch_size", self.micro_batch_size, 1)
        if self.seq_len is not None:
            check_int("TrainConfig", "seq_len", self.seq_len, 2)
        check_choice("TrainConfig", "sequence_mode", self.sequence_mode, SEQUENCE_MODES)
        check_int("TrainConfig", "eval_every", self.eval_every, 0)
        check_int("TrainConfig", "eval_windows", self.eval_windows, 0)
        check_int("TrainConfig", "eval_batch_size", self.eval_batch_size, 1)
        check_int("TrainConfig", "log_every", self.log_every, 1)
        check_int("TrainConfig", "seed", self.seed, 0)
        check_choice("TrainConfig", "dtype", self.dtype, DTYPES)
        check_choice("TrainConfig", "on_nan", self.on_nan, get_args(OnNonFinite))
        check_choice("TrainConfig", "parallel", self.parallel, get_args(Parallel))
        if not isinstance(self.activation_checkpointing, bool):
            raise ValueError(
                "TrainConfig.activation_checkpointing must be True or False, got "
                f"{self.activation_checkpointing!r}"
            )
        if self.parallel == "fsdp" and self.compile:
            # torch.compile of an FSDP2 model needs per-block compilation (and is untested on
            # the CPU backend); compiling the sharded root would trace its collectives.
            raise ValueError(
                "TrainConfig.compile is not supported with parallel='fsdp'; train with "
                "--parallel ddp --compile or --parallel fsdp without --compile"
            )
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ValueError(f"TrainConfig.device must be {DEVICES_HINT}, got {self.device!r}")
        if self.deterministic is not None and not isinstance(self.deterministic, bool):
            raise ValueError(
                f"TrainConfig.deterministic must be True, False or None, got {self.deterministic!r}"
            )
        if not isinstance(self.hooks, list) or not all(isinstance(h, str) for h in self.hooks):
            raise ValueError(f"TrainConfig.hooks must be a list of hook names, got {self.hooks!r}")
        if self.init_from is not None and (
            not isinstance(self.init_from, str) or not self.init_from
        ):
            raise ValueError(
                f"TrainConfig.init_from must be a path or None, got {self.init_from!r}"
            )

    def model_config(self) -> ModelConfig:
        """The model shape: ``model`` if given, else the preset, seeded with ``seed``."""
        base = self.model if self.model is not None else get_preset(self.preset)
        return base.replace(seed=self.seed)

    # Fields that define what is trained: a resumed run must agree on them.
    IDENTITY_FIELDS = (
        "corpus",
        "preset",
        "model",
        "mixture",
        "batch_size",
        "seq_len",
        "sequence_mode",
        "optim",
        "eval_windows",
        "init_from",
        "seed",
    )
