"""Test-wide settings: nothing may reach a hub, and results are deterministic."""

from __future__ import annotations

import os

# Set before transformers / datasets are imported anywhere in the test session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


# What the environment may create in the checkout and the home directory while tests run.
_EXPECTED = {"__pycache__", ".pytest_cache", ".ruff_cache", ".cache", ".config", ".local"}


def _entries(root: str) -> set[str]:
    try:
        names = set(os.listdir(root))
    except OSError:
        return set()
    return {n for n in names if n not in _EXPECTED and not n.endswith(".egg-info")}


@pytest.fixture(autouse=True, scope="session")
def _writes_stay_in_temporary_directories():
    """No test leaves files in the checkout or the home directory (outside its tmp_path)."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    home = os.path.expanduser("~")
    before = {root: _entries(root) for root in (checkout, home)}
    yield
    for root, names in before.items():
        new = sorted(_entries(root) - names)
        assert not new, f"tests left {new} in {root}: write under tmp_path instead"


@pytest.fixture(scope="session")
def small_tokenizer():
    """A byte-level BPE tokenizer trained in memory on a few lines of Python and PHP."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = [
        "def count(items):\n    return len(items)\n" * 10,
        "function count($items) {\n    return strlen($items);\n}\n" * 10,
    ]
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>"
    )
