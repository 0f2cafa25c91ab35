r"""Sampling completions of execution problems from a hooked model.

:func:`sample_completions` returns ``n`` completions per :class:`~.problems.Problem`, each cut at
the problem's stop sequences; :func:`sample` returns them with counts (truncated prompts, tokens
sampled, why rows stopped). The design, decision by decision:

**Rows and batches.** A row is one (problem, sample) pair. Problems are ordered by prompt length
(longest first, so memory runs out at once if it is going to) and their rows are cut into batches
of ``batch_size`` rows, so the prompts sharing a batch have similar lengths. A row stops as soon as
it samples EOS, its completion contains a stop sequence, or it has sampled ``max_new_tokens``;
stopped rows leave the batch at once, so the rest of the batch computes only live rows. Only the
finished strings are kept: memory is flat in the number of problems.

**Two decoders, one per TransformerLens line.**

* TL 3.x ``HookedTransformer`` (cached): prompts are left-padded with an attention mask, run once
  (one prefill per distinct prompt, whose cache rows are then repeated for its samples), then each
  step feeds one token per row through TransformerLens's key-value cache
  (``TransformerLensKeyValueCache``, ``past_kv_cache=``). The cache carries the mask, so padding
  is never attended, and positions are counted from the mask, so a padded row sees the positions
  it would see alone.
* TL 4.x ``TransformerBridge.boot_native`` (recomputed): the native model returns no cache
  (:func:`babel_interp.model.new_kv_cache` is None), so every step recomputes each row's whole
  sequence. Rows are right-padded and read at their own last token: with causal attention,
  padding after a row's end cannot reach its logits, and no mask is needed, so the fused
  attention of :func:`babel_interp.model.enable_fast_path` applies.
  ``SamplingConfig.use_kv_cache=False`` picks this decoder on TL 3.x too (the reference the
  cached one is tested against).

**Seeds.** Every draw is an inverse-CDF lookup with one uniform number that depends only on the
seed, the problem (task id, language, prompt), the sample index and the step (SplitMix64 over a
BLAKE2 key, :func:`row_uniform`). No generator state is shared between rows, so the samples do not
depend on the batch size, the order of the problems or which other problems are sampled with
them. (Batch shapes can change logits in their last bits on some kernels; a draw then changes only
if its uniform lands within that distance of a CDF boundary.)

**Temperature and nucleus.** ``temperature == 0`` is greedy (argmax) and requires ``n == 1``:
greedy samples would be ``n`` copies of one, which makes pass@k with k > 1 meaningless, so the
config refuses it rather than computing copies. Otherwise probabilities are
``softmax(logits / temperature)``, restricted with ``top_p < 1`` to the smallest set of most
likely tokens whose mass reaches ``top_p`` (with any token as likely as its least likely one; at
least the most likely token, so a tiny ``top_p`` is greedy). The draw walks the CDF in vocabulary
order, so tokens of nearly equal probability, which a sort orders by their last bits, do not
trade draws when batch shapes change those bits.

**Prompts.** Each prompt follows the EOS token, the document separator of training, so it looks
like the start of a training document. Prompts longer than ``n_ctx - max_new_tokens`` tokens keep
their end and are counted.

The end of a prompt is a BPE boundary the model never saw in training. The project's tokenizer
makes every whitespace run one word (``"\n    "`` is one token, before ``return``), so a
HumanEval-style prompt (a docstring's closing quotes, then a newline) ends in a lone ``"\n"``
token, after which training text continues at column 0. A GPT-2-style tokenizer writes the space
before a word as part of the word (``"\n   "`` + ``" return"``), so a prompt ending in
``"\n    "`` ends in whitespace tokens that no word follows. Stripping trailing blanks (as
:func:`~babel_interp.analysis.performance.greedy_continuations` does) fixes the second case and
makes the first worse. *Token healing* (``token_healing=True``) fixes both: the tokens of the
prompt's last word (the tokenizer's last pre-tokenized piece) are removed, and the first sampled
tokens are constrained to spell that text (each must be a prefix of what remains, or start with
it). The model picks the tokenization itself (``"\n    "`` + ``"return"``, or ``"\n        "``
for a deeper indent), and the completion, the sampled text after the healed part, continues the
prompt exactly. Healing assumes a tokenizer whose text is the concatenation of its tokens' texts
(byte-level BPE: the project's, GPT-2's); a prompt whose last word does not decode to the end of
the prompt is not healed. Where no single token can start the rest (a character whose bytes the
tokenizer merged only together with others), the rest is spelled with the tokenizer's own tokens.
Healed tokens count toward ``max_new_tokens``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from babel_interp.config import ConfigBase
from babel_interp.devices import model_device
from babel_interp.evaluation.problems import Problem, truncate_at_stop
from babel_interp.model import HookedModel, new_kv_cache, select_kv_cache_rows

__all__ = [
    "FINISH_REASONS",
    "EncodedPrompt",
    "SamplingConfig",
    "SamplingResult",
    "encode_prompt",
    "healing_candidates",
    "next_tokens",
    "row_key",
    "row_uniform",
    "sample",
    "sample_completions",
    "token_texts",
]

log = logging.getLogger(__name__)

#: Why a row stopped: a stop sequence, the EOS token, or ``max_new_tokens``.
FINISH_REASONS = ("stop", "eos", "length")

_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass
class SamplingConfig(ConfigBase):
    """How completions are sampled.

    ``n`` samples per problem. ``temperature`` 0 is greedy decoding (then ``n`` must be 1; any
    ``top_p`` is ignored). ``top_p`` in (0, 1] is the nucleus mass. ``max_new_tokens`` caps the
    tokens sampled per completion (healed prompt text included). ``batch_size`` is the number of
    (problem, sample) rows decoded together. ``seed`` fixes every draw (see the module
    docstring: samples do not depend on batching). ``token_healing`` re-samples the tokens of
    the prompt's last word under the constraint that they spell the same text. ``use_kv_cache``
    uses the model's key-value cache where the TransformerLens line offers one (TL 3.x
    ``HookedTransformer``); False recomputes every sequence at every step.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 16
    seed: int = 0
    token_healing: bool = True
    use_kv_cache: bool = True

    def validate(self) -> None:
        """Check every field; numbers become plain ``int`` and ``float``."""
        for name in ("n", "max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"SamplingConfig.{name} must be an int >= 1, got {value!r}")
        if not _is_int(self.seed):
            raise ValueError(f"SamplingConfig.seed must be an int, got {self.seed!r}")
        t = self.temperature
        if not _is_real(t) or not math.isfinite(t) or t < 0:
            raise ValueError(f"SamplingConfig.temperature must be a finite number >= 0, got {t!r}")
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p!r}")
        for name in ("token_healing", "use_kv_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"SamplingConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )
        if t == 0 and self.n != 1:
            raise ValueError(
                f"SamplingConfig.n must be 1 when temperature is 0 (greedy decoding gives n "
                f"identical samples), got n={self.n}; set a temperature > 0 for n > 1"
            )
        for name in ("n", "max_new_tokens", "batch_size", "seed"):
            setattr(self, name, int(getattr(self, name)))
        self.temperature = float(t)
        self.top_p = float(self.top_p)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class SamplingResult:
    """Completions (``n`` per problem, in problem order, cut at the stop sequences) and counts.

    ``n_truncated_prompts``: prompts longer than ``n_ctx - max_new_tokens`` tokens, which kept
    their end; ``truncated`` says which (one flag per problem). ``n_sampled_tokens``: tokens
    sampled over all rows (EOS included).
    ``finish_reasons``: rows per :data:`FINISH_REASONS`. ``kv_cache``: whether the cached decoder
    ran (False: every step recomputed the sequences).
    """

    completions: list[list[str]]
    n_truncated_prompts: int = 0
    n_sampled_tokens: int = 0
    finish_reasons: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    kv_cache: bool = False
    truncated: list[bool] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Seeds and draws


def _splitmix64(x: int) -> int:
    x = (x + _GOLDEN64) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def row_key(seed: int, problem: Problem, sample_index: int) -> int:
    """The 64-bit key of one (problem, sample) row: a hash of the seed, the problem's task id,
    language and prompt, and the sample index (so it does not depend on the problem's place)."""
    text = "\x1f".join(
        (str(seed), problem.task_id, problem.language, problem.prompt, str(sample_index))
    )
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def row_uniform(key: int, step: int) -> float:
    """The uniform number in [0, 1) of a row's ``step``-th draw (SplitMix64's ``step``-th output
    from state ``key``: stateless, so any row can be drawn at any step in any batch)."""
    return (_splitmix64((key + step * _GOLDEN64) & _MASK64) >> 11) * 2.0**-53


def next_tokens(
    logits: Float[Tensor, "rows vocab"],
    uniforms: Float[Tensor, " rows"] | None,
    temperature: float,
    top_p: float = 1.0,
) -> Int[Tensor, " rows"]:
    """One token per row: argmax for ``temperature == 0``, else an inverse-CDF draw with
    ``uniforms`` (in [0, 1)) from ``softmax(logits / temperature)``, restricted with
    ``top_p < 1`` to the nucleus: the tokens at least as likely as the least likely one of the
    smallest most-likely set whose mass reaches ``top_p``.

    Tokens with ``-inf`` logits are never drawn. The CDF runs in vocabulary order, not in order
    of probability: nearly equally likely tokens (common in a barely trained model) swap places
    in a sort under last-bit changes of the logits, which would move every draw between them.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if uniforms is None:
        raise ValueError("next_tokens: sampling with temperature > 0 needs uniforms")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        ranked = probs.sort(dim=-1, descending=True).values
        n_kept = ((ranked.cumsum(dim=-1) - ranked) < top_p).sum(dim=-1, keepdim=True)
        probs = probs.masked_fill(probs < ranked.gather(-1, n_kept - 1), 0.0)
    # float64 so the CDF of a large vocabulary keeps its small steps. With a target in
    # (0, total], the first index whose CDF reaches it always has positive probability.
    cdf = probs.double().cumsum(dim=-1)
    target = (1.0 - uniforms.to(cdf)) * cdf[:, -1]
    idx = torch.searchsorted(cdf, target[:, None]).squeeze(-1)
    return idx.clamp_(max=cdf.shape[-1] - 1)  # the clamp guards rounding only


# ---------------------------------------------------------------------------------------------
# Prompts and token healing


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt's input tokens (EOS first), the healed text its completion must start with, and
    whether it was left-truncated."""

    ids: list[int]
    healed: str
    truncated: bool


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    # No clean-up: it deletes spaces before punctuation ("x ." -> "x."), which changes code.
    return tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)


def encode_prompt(
    tokenizer: Any, prompt: str, max_tokens: int, token_healing: bool = True
) -> EncodedPrompt:
    """The model input for ``prompt``: EOS, then the prompt's tokens, the whole left-truncated to
    ``max_tokens``. With ``token_healing`` the tokens of the prompt's last word (the
    pre-tokenizer's last piece; the last token where the tokenizer reports no words) are
    removed and returned as ``healed`` text, when they decode to the end of the prompt."""
    enc = tokenizer(prompt, add_special_tokens=False)
    ids = list(enc["input_ids"])
    healed = ""
    if token_healing and ids:
        words = enc.word_ids() if getattr(enc, "is_fast", False) else None
        k = 1
        if words is not None and words[-1] is not None:
            while k < len(ids) and words[-k - 1] == words[-1]:
                k += 1
        head, tail = _decode(tokenizer, ids[:-k]), _decode(tokenizer, ids[-k:])
        if tail and head + tail == prompt:
            ids, healed = ids[:-k], tail
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None:
        ids = [int(eos)] + ids
    if not ids:
        raise ValueError("a prompt is empty and the tokenizer has no EOS token to start from")
    truncated = len(ids) > max_tokens
    return EncodedPrompt(ids[-max_tokens:], healed, truncated)


def token_texts(tokenizer: Any, n_vocab: int) -> list[str]:
    """The text of each token id below ``n_vocab``, decoded on its own."""
    return tokenizer.batch_decode([[i] for i in range(n_vocab)], clean_up_tokenization_spaces=False)


def healing_candidates(texts: Sequence[str], pending: str, excluded: set[int]) -> list[int]:
    """Token ids that may come next while ``pending`` text is still to be spelled: a non-empty
    prefix of it, or a text that starts with it."""
    return [
        i
        for i, s in enumerate(texts)
        if s and i not in excluded and (pending.startswith(s) or s.startswith(pending))
    ]


# ---------------------------------------------------------------------------------------------
# Decoding


@dataclass(eq=False)
class _Row:
    problem: int
    key: int
    prompt: list[int]
    healed: str
    stops: tuple[str, ...]
    pending: str = ""  # healed text still to spell
    forced: list[int] = field(default_factory=list)  # the tokens that will spell it, if fixed
    tokens: list[int] = field(default_factory=list)
    heal_tokens: int = 0  # tokens up to the one that finished the healed text
    reason: str = ""


class _Stepper:
    """What both decoders share: choosing each live row's next token and deciding when it stops."""

    def __init__(self, tokenizer: Any, config: SamplingConfig, n_vocab: int, device: Any):
        self.tokenizer = tokenizer
        self.config = config
        self.n_vocab = n_vocab
        self.device = device
        eos = getattr(tokenizer, "eos_token_id", None)
        self.eos = None if eos is None else int(eos)
        self._texts: list[str] | None = None
        self._bias: dict[str, Tensor] = {}
        self.n_sampled = 0

    def _heal_bias(self, pending: str) -> Tensor | None:
        bias = self._bias.get(pending)
        if bias is None and pending not in self._bias:
            if self._texts is None:
                self._texts = token_texts(self.tokenizer, self.n_vocab)
            excluded = {int(i) for i in getattr(self.tokenizer, "all_special_ids", [])}
            allowed = healing_candidates(self._texts, pending, excluded)
            if allowed:
                bias = torch.full((self.n_vocab,), -math.inf, device=self.device)
                bias[torch.tensor(allowed, device=self.device)] = 0.0
            self._bias[pending] = bias  # type: ignore[assignment]
        return bias

    def choose(self, rows: list[_Row], logits: Float[Tensor, "rows vocab"]) -> list[int]:
        logits = logits[:, : self.n_vocab].float()
        for j, row in enumerate(rows):
            bias = self._heal_bias(row.pending) if row.pending and not row.forced else None
            if row.pending and bias is None and not row.forced:
                # No single token starts the rest (a character whose bytes merged only with
                # their neighbours): spell it with the tokenizer's own tokens, without choice.
                row.forced = list(
                    self.tokenizer(row.pending, add_special_tokens=False)["input_ids"]
                )
            if row.forced:
                bias = torch.full((self.n_vocab,), -math.inf, device=self.device)
                bias[row.forced[0]] = 0.0
            if bias is not None:
                logits[j] += bias
        uniforms = None
        if not self.config.greedy:
            u = [row_uniform(row.key, len(row.tokens)) for row in rows]
            uniforms = torch.tensor(u, dtype=torch.float64, device=logits.device)
        return next_tokens(logits, uniforms, self.config.temperature, self.config.top_p).tolist()

    def take(
        self, rows: list[_Row], logits: Float[Tensor, "rows vocab"]
    ) -> tuple[list[int], list[int]]:
        """Choose each row's next token and record it: the tokens chosen, and the indices of
        the rows that are still live after it."""
        chosen = self.choose(rows, logits)
        live = [
            j
            for j, (row, t) in enumerate(zip(rows, chosen, strict=True))
            if not self.advance(row, t)
        ]
        return chosen, live

    def advance(self, row: _Row, token: int) -> bool:
        """Record ``token`` for ``row``; True when the row has stopped."""
        self.n_sampled += 1
        if token == self.eos and not row.pending:
            row.reason = "eos"
            return True
        row.tokens.append(token)
        if row.forced:
            row.forced.pop(0)
            if not row.forced:
                row.pending, row.heal_tokens = "", len(row.tokens)
        elif row.pending:
            text = self._texts[token] if self._texts is not None else ""
            if text.startswith(row.pending):
                row.pending, row.heal_tokens = "", len(row.tokens)
            else:
                row.pending = row.pending[len(text) :]
        if row.stops and not row.pending and self._hit_stop(row):
            row.reason = "stop"
            return True
        if len(row.tokens) >= self.config.max_new_tokens:
            row.reason = "length"
            return True
        return False

    def _hit_stop(self, row: _Row) -> bool:
        # A stop sequence of c characters spans at most 4c tokens (each token holds at least a
        # byte); decoding a window a little wider than that finds one the step it is completed,
        # without decoding the whole completion at every step. The final text is cut from the
        # full decoding anyway, so the window only decides when to stop.
        window = 4 * max(len(s) for s in row.stops) + 8
        start = len(row.tokens) - window
        if start >= row.heal_tokens:
            text = _decode(self.tokenizer, row.tokens[start:])
        else:
            text = _decode(self.tokenizer, row.tokens)[len(row.healed) :]
        return any(s in text for s in row.stops)

    def completion(self, row: _Row) -> str:
        text = _decode(self.tokenizer, row.tokens)
        if text.startswith(row.healed):
            text = text[len(row.healed) :]
        return truncate_at_stop(text, row.stops)


def _decode_cached(model: HookedModel, step: _Stepper, rows: list[_Row], pad: int) -> None:
    """Left-padded prefill of each distinct prompt, then one token per row per step through the
    key-value cache."""
    device = step.device
    slots: dict[int, int] = {}
    prompts: list[list[int]] = []
    for row in rows:
        if row.problem not in slots:
            slots[row.problem] = len(prompts)
            prompts.append(row.prompt)
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width), dtype=torch.int, device=device)
    for j, p in enumerate(prompts):
        tokens[j, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[j, width - len(p) :] = 1
    cache = new_kv_cache(model, len(prompts))
    if width > 1:
        # All but the last column fill the cache without unembedding: the logits of every
        # prompt position would be [prompts, width, d_vocab] floats, of which one row is read.
        model(tokens[:, :-1], attention_mask=mask[:, :-1], past_kv_cache=cache, return_type=None)
    # Left padding puts every prompt's last token in the last column.
    logits = model(tokens[:, -1:], attention_mask=mask[:, -1:], past_kv_cache=cache)
    src = torch.tensor([slots[row.problem] for row in rows], device=device)
    last = logits[:, -1][src]
    cache = select_kv_cache_rows(cache, src)
    live = list(rows)
    while True:
        chosen, keep = step.take(live, last)
        if not keep:
            return
        if len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache = select_kv_cache_rows(cache, index)
            live = [live[j] for j in keep]
            chosen = [chosen[j] for j in keep]
        new = torch.tensor(chosen, dtype=torch.long, device=device)[:, None]
        ones = torch.ones_like(new, dtype=torch.int)
        last = model(new, attention_mask=ones, past_kv_cache=cache, return_type="logits")[:, -1]


def _decode_recomputed(model: HookedModel, step: _Stepper, rows: list[_Row], pad: int) -> None:
    """Right-padded rows, each whole sequence recomputed at every step and read at its own end."""
    device = step.device
    width = max(len(row.prompt) for row in rows) + step.config.max_new_tokens
    buf = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    for j, row in enumerate(rows):
        buf[j, : len(row.prompt)] = torch.tensor(row.prompt, dtype=torch.long)
    lengths = torch.tensor([len(row.prompt) for row in rows], device=device)
    live = list(rows)
    while True:
        cur = int(lengths.max())
        logits = model(buf[:, :cur], return_type="logits")
        last = logits[torch.arange(len(live), device=device), lengths - 1]
        del logits
        chosen, keep = step.take(live, last)
        if not keep:
            return
        index = torch.tensor(keep, device=device)
        new = torch.tensor(chosen, dtype=torch.long, device=device)[index]
        buf, lengths, live = buf[index], lengths[index], [live[j] for j in keep]
        buf[torch.arange(len(live), device=device), lengths] = new
        lengths += 1


def sample(
    model: HookedModel,
    tokenizer: Any,
    problems: Sequence[Problem],
    config: SamplingConfig | None = None,
    progress: bool = False,
) -> SamplingResult:
    """Sample ``config.n`` completions per problem; completions and counts (see
    :class:`SamplingResult`). The module docstring describes batching, the decoder used on each
    TransformerLens line, seeding, prompt truncation and token healing."""
    config = config or SamplingConfig()
    if tokenizer is None:
        raise ValueError("sampling needs a tokenizer (load_model gives model.tokenizer)")
    n_ctx = int(model.cfg.n_ctx)
    max_prompt = n_ctx - config.max_new_tokens
    if max_prompt < 1:
        raise ValueError(
            f"SamplingConfig.max_new_tokens={config.max_new_tokens} leaves no room for a prompt "
            f"in the model's n_ctx={n_ctx}"
        )
    problems = list(problems)
    result = SamplingResult(completions=[[""] * config.n for _ in problems])
    if not problems:
        return result
    encoded = [
        encode_prompt(tokenizer, p.prompt, max_prompt, config.token_healing) for p in problems
    ]
    result.truncated = [bool(e.truncated) for e in encoded]
    result.n_truncated_prompts = sum(result.truncated)

    device = model_device(model)
    n_vocab = min(int(model.cfg.d_vocab), len(tokenizer))
    step = _Stepper(tokenizer, config, n_vocab, device)
    pad = step.eos if step.eos is not None else int(getattr(tokenizer, "pad_token_id", 0) or 0)
    cached = config.use_kv_cache and new_kv_cache(model, 1) is not None
    result.kv_cache = cached
    decode = _decode_cached if cached else _decode_recomputed

    order = sorted(range(len(problems)), key=lambda i: -len(encoded[i].ids))
    pairs = [(i, s) for i in order for s in range(config.n)]
    batches = [pairs[k : k + config.batch_size] for k in range(0, len(pairs), config.batch_size)]
    was_training = getattr(model, "training", False)
    model.eval()  # type: ignore[attr-defined]
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc="sampling", leave=False, disable=not progress):
                rows = [
                    _Row(
                        problem=i,
                        key=row_key(config.seed, problems[i], s),
                        prompt=encoded[i].ids,
                        healed=encoded[i].healed,
                        pending=encoded[i].healed,
                        stops=problems[i].stop_sequences,
                    )
                    for i, s in batch
                ]
                decode(model, step, rows, pad)
                for row, (i, s) in zip(rows, batch, strict=True):
                    result.completions[i][s] = step.completion(row)
                    result.finish_reasons[row.reason] += 1
    finally:
        if was_training:
            model.train()  # type: ignore[attr-defined]
    result.n_sampled_tokens = step.n_sampled
    return result


def sample_completions(
    model: HookedModel,
    tokenizer: Any,
    problems: Sequence[Problem],
    config: SamplingConfig | None = None,
    progress: bool = False,
) -> list[list[str]]:
    """``config.n`` completions per problem (in problem order), each cut at the problem's stop
    sequences: ``prompt + completion`` is the text the model wrote. See :func:`sample` (which
    also returns counts) and the module docstring. Truncated prompts are logged."""
    result = sample(model, tokenizer, problems, config, progress)
    if result.n_truncated_prompts:
        log.warning(
            "%d of %d prompts were longer than n_ctx - max_new_tokens tokens and kept their end",
            result.n_truncated_prompts,
            len(result.completions),
        )
    return result.completions
