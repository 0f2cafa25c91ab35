"""Named profiles: the sizes of the Babel Tower study and of the mixture-evaluation harness.

Two tables, one per entry point:

* :data:`STUDY_PROFILES` (``python -m babel_interp.experiments.babel_tower --profile NAME``):
defaults of
  the study's config fields; a field the user leaves unset takes its profile's value.
* :data:`HARNESS_PROFILES` (``babel-interp evaluate-mixtures --profile NAME`` and
  ``python -m babel_interp.experiments.optimize_corpus --profile NAME``): defaults of
  :class:`~babel_interp.optimizer.harness.HarnessConfig`.

Read them through :func:`study_profile` and :func:`harness_profile`, which return copies (a
caller that edits its defaults must not edit the table) and name the known profiles when asked
for another.
"""

from __future__ import annotations

import copy
from typing import Any

# What the real-code profiles (``cpu``, ``gpu``) share: the real corpus, vocabulary, context,
# learning rate and evaluation settings. Execution is off unless asked for: HumanEval pass@1 of
# the CPU pilot's 7M model is 0.
_REAL_CODE: dict[str, Any] = dict(
    corpus="real",
    vocab_size=8192,
    seq_len=256,
    lr=1e-3,
    ablation=False,
    completion_docs=0,
    completion_tokens=16,
    execution=False,
    execution_problems=164,
    execution_tokens=256,
)

STUDY_PROFILES: dict[str, dict[str, Any]] = {
    # Sized for the one-command demo on 2 CPU cores (a few minutes in all).
    "quick": dict(
        targets=["php", "go"],
        seeds=[0],
        docs_per_language=1500,
        vocab_size=2048,
        preset="tiny",
        seq_len=128,
        batch_size=16,
        primary_steps=400,
        continual_steps=400,
        scratch_steps=80,
        n_checkpoints=10,
        eval_windows=16,
        lr=2e-3,
        neuron_tokens=8192,
        neuron_permutations=10,
        ablation=False,
        n_per_pair=10,
        random_inits=3,
        completion_docs=12,
        completion_tokens=16,
        execution=True,
        execution_problems=24,
        # The tiny model's context is seq_len (128) tokens: 48 new tokens leave 80 of prompt.
        execution_tokens=48,
    ),
    # The paper's four new languages, three seeds, longer runs: for a workstation or a GPU.
    "full": dict(
        targets=["php", "csharp", "go", "cpp"],
        seeds=[0, 1, 2],
        docs_per_language=20000,
        vocab_size=8192,
        preset="small",
        seq_len=256,
        batch_size=32,
        primary_steps=4000,
        continual_steps=3000,
        scratch_steps=3000,
        n_checkpoints=14,
        eval_windows=64,
        lr=1e-3,
        neuron_tokens=131072,
        neuron_permutations=100,
        ablation=True,
        n_per_pair=20,
        random_inits=5,
        completion_docs=40,
        completion_tokens=32,
        execution=True,
        execution_problems=80,
        execution_tokens=128,
    ),
    # Real code at the CPU pilot's scale: Python's standard library, then Debian PHP; a 7M model
    # (preset pilot), 2M + 2M tokens, the scratch baseline over the first half. About 27 minutes
    # on 2 cores (see README).
    "cpu": dict(
        _REAL_CODE,
        targets=["php"],
        neuron_languages=["go"],
        seeds=[0],
        python_trees=["stdlib"],
        preset="pilot",
        batch_size=16,
        primary_steps=500,
        continual_steps=500,
        scratch_steps=250,
        n_checkpoints=13,
        eval_windows=32,
        neuron_tokens=32768,
        neuron_permutations=20,
        n_per_pair=10,
        random_inits=3,
    ),
    # Real code at the GPU pilot's scale, sized for one 15-minute lease of one H100/H200:
    # a 34M model (preset medium), ~30M Python tokens (standard library and site-packages; 30.5M
    # measured with the 120 MB cap), then ~30M tokens of PHP and of Go each (about three epochs
    # of the Debian sources), a from-scratch baseline over the first third, three seeds, bf16
    # and torch.compile: 330M training tokens, about 9 minutes at the pilot's 600k tokens/s.
    # Seeds run one after another and each writes its results (and the report) as soon as it
    # is done, so a call cut short keeps the finished seeds.
    "gpu": dict(
        _REAL_CODE,
        targets=["php", "go"],
        seeds=[0, 1, 2],
        python_trees=["stdlib", "site-packages"],
        max_source_mb=120,
        preset="medium",
        batch_size=64,
        primary_steps=1830,
        continual_steps=1830,
        scratch_steps=610,
        n_checkpoints=12,
        eval_windows=64,
        neuron_tokens=65536,
        neuron_permutations=50,
        n_per_pair=20,
        random_inits=3,
        dtype="bfloat16",
        compile=True,
    ),
    # The scan's cell on real code (Python's standard library, then Debian PHP), at the
    # synthetic scan's context and batch; no execution (HumanEval pass@1 of models this size
    # is 0, as the cpu profile measured).
    "scan-real": dict(
        _REAL_CODE,
        targets=["php"],
        seeds=[0, 1],
        python_trees=["stdlib"],
        max_source_mb=30,
        vocab_size=4096,
        preset="tiny",
        seq_len=128,
        batch_size=16,
        primary_steps=400,
        continual_steps=128,
        scratch_steps=128,
        n_checkpoints=7,
        eval_windows=8,
        neuron_tokens=8192,
        neuron_permutations=10,
        n_per_pair=10,
        random_inits=2,
    ),
}

# One cell of the scale scan (:mod:`babel_interp.experiments.scan`, which sets the depth,
# width and primary steps of each cell): the quick profile's corpus, context, batch and
# learning rate, one new language, two seeds, and short continued and scratch runs with
# dense checkpoints (the verdict is read at the first competent one: the quick profile's
# model reaches it within about 60 steps, a d_model-64 one after a few hundred Python steps
# only past 128).
STUDY_PROFILES["scan"] = dict(
    STUDY_PROFILES["quick"],
    targets=["php"],
    seeds=[0, 1],
    continual_steps=256,
    scratch_steps=256,
    n_checkpoints=8,
    eval_windows=8,
    random_inits=2,
    completion_docs=0,
)

# The harness's quick profile is sized for the test suite on 2 CPU cores: a two-layer model,
# three languages, a few dozen steps. The full profile is the comparison reported in the docs.
_QUICK_HARNESS_MODEL = {
    "n_layers": 2,
    "d_model": 64,
    "n_heads": 2,
    "d_head": 32,
    "d_mlp": 256,
    "n_ctx": 64,
}
# Every method the cpu and gpu comparisons run: the four simple baselines (temperature at two
# temperatures, UniMax capped at one pass), the paper's allocation (gated by the measured
# dependence on the primary, and as published) and the online controller.
_EVERY_METHOD: dict[str, str] = {
    "proportional": "proportional",
    "uniform": "uniform",
    "temperature-3": "temperature:temperature=3",
    "temperature-5": "temperature:temperature=5",
    "unimax": "unimax:max_epochs=1",
    "babel-tower": "babel-tower",
    # The paper's Algorithm 1 as published: every new language cut at its loss-proxy crossing,
    # whatever the working-language analyzer measured.
    "babel-tower-paper": "babel-tower:dependence=assumed",
    "controller": "controller",
}

HARNESS_PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "mixtures": {"proportional": "proportional", "babel-tower": "babel-tower"},
        "seeds": [0, 1],
        "model": _QUICK_HARNESS_MODEL,
        "preset": "tiny",
        "batch_size": 8,
        "seq_len": 64,
        "token_budget": 8 * 64 * 24,
        "eval_every": 6,
        "eval_windows": 4,
        "lr": 3e-3,
        "warmup_steps": 4,
        "corpus_languages": ["python", "php", "go"],
        "corpus_docs": 30,
        "corpus_vocab": 384,
        "evidence_primary_steps": 16,
        "evidence_steps": 16,
        "evidence_every": 2,
        "checkpoint_every": 0,
        "execution_problems": 3,
        "execution_tokens": 48,
        # Intra-op threads only add contention for a model this small (measured on 2 loaded
        # cores: 27 ms per step with one thread, 1.5 s with two).
        "num_threads": 1,
    },
    # Sized for 2 CPU cores (about an hour): every method, three seeds, the five languages, a
    # budget of 1M tokens per run (512 steps of 16 x 128), where the demo-sized model learns
    # (bits/byte falls from about 4 to below 1). The corpus's training split is about that
    # budget, so the proportional run is about one pass over the original corpus: the baseline
    # of the paper's experiment (``paper_experiment``: one pass over the corpus the allocation
    # produced).
    "cpu": {
        "mixtures": dict(_EVERY_METHOD),
        "seeds": [0, 1, 2],
        "model": None,
        "preset": "tiny",
        "batch_size": 16,
        "seq_len": 128,
        "token_budget": 16 * 128 * 512,
        "eval_every": 64,
        "eval_windows": 16,
        "lr": 2e-3,
        "warmup_steps": 20,
        "corpus_languages": ["python", "php", "csharp", "go", "cpp"],
        "corpus_docs": {"python": 1200, "php": 900, "csharp": 600, "go": 500, "cpp": 300},
        "corpus_vocab": 2048,
        "evidence_primary_steps": 200,
        "evidence_steps": 150,
        "evidence_every": 10,
        "evidence_working_language": True,
        "checkpoint_every": 128,
        "execution_problems": 16,
        "execution_tokens": 48,
        "paper_experiment": True,
        "num_threads": None,
    },
    # The cpu profile's comparison at the study's gpu scale (the medium preset, 34M parameters,
    # about 30M tokens per run): for the GPU check, not run on a CPU.
    "gpu": {
        "mixtures": dict(_EVERY_METHOD),
        "seeds": [0, 1, 2],
        "model": None,
        "preset": "medium",
        "batch_size": 64,
        "seq_len": 256,
        "token_budget": 64 * 256 * 1830,
        "eval_every": 183,
        "eval_windows": 64,
        "lr": 1e-3,
        "warmup_steps": 100,
        "corpus_languages": ["python", "php", "csharp", "go", "cpp"],
        "corpus_docs": {"python": 33000, "php": 25000, "csharp": 16500, "go": 14000, "cpp": 8500},
        "corpus_vocab": 8192,
        "evidence_primary_steps": 1000,
        "evidence_steps": 600,
        "evidence_every": 30,
        "evidence_working_language": True,
        "checkpoint_every": 300,
        "execution_problems": 40,
        "execution_tokens": 128,
        "paper_experiment": True,
        "num_threads": None,
    },
    "full": {
        "mixtures": {
            "proportional": "proportional",
            "uniform": "uniform",
            "temperature": "temperature:temperature=3",
            "unimax": "unimax:max_epochs=4",
            "babel-tower": "babel-tower",
            "controller": "controller",
        },
        "seeds": [0, 1, 2],
        "model": None,
        "preset": "tiny",
        "batch_size": 16,
        "seq_len": 128,
        "token_budget": 16 * 128 * 300,
        "eval_every": 25,
        "eval_windows": 16,
        "lr": 2e-3,
        "warmup_steps": 20,
        "corpus_languages": ["python", "php", "csharp", "go", "cpp"],
        "corpus_docs": {"python": 600, "php": 400, "csharp": 300, "go": 200, "cpp": 150},
        "corpus_vocab": 2048,
        "evidence_primary_steps": 150,
        "evidence_steps": 120,
        "evidence_every": 10,
        "evidence_working_language": True,
        "checkpoint_every": 100,
        "execution_problems": 40,
        "execution_tokens": 128,
        "num_threads": None,
    },
}


def _profile(table: dict[str, dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    if name not in table:
        raise ValueError(f"{what} profile must be one of {sorted(table)}, got {name!r}")
    return copy.deepcopy(table[name])


def study_profile(name: str) -> dict[str, Any]:
    """A copy of the study profile ``name``'s field defaults."""
    return _profile(STUDY_PROFILES, name, "study")


def harness_profile(name: str) -> dict[str, Any]:
    """A copy of the harness profile ``name``'s field defaults."""
    return _profile(HARNESS_PROFILES, name, "harness")


# What the scale scan (:mod:`babel_interp.experiments.scan`, README "Where the signature
# appears") measured at a study profile's scale. The study report adds the profile's note to
# its answer when no new language shows the signature and the study kept the profile's model
# and primary training.
SCALE_NOTES: dict[str, str] = {
    "quick": (
        "the scale scan found no signature at this shape after the same Python training "
        "(continued − scratch −1.21 [−2.28, −0.13], two seeds), nor in any cell a 2-core "
        "machine trains (2–8 layers, d_model 64–128, up to 1.6M Python tokens). See the "
        "README's phase diagram and the `gpu` profile (8 layers, d_model 512, about 30M "
        "Python tokens), where the project's GPU pilot saw it."
    ),
}
