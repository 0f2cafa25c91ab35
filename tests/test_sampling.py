"""Sampling completions: the batched, cached sampler against a one-prompt, recompute-everything
reference; seeds independent of batching; stop sequences; nucleus; token healing; the config."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import TINY, memorized_model
from beartype import beartype
from jaxtyping import TypeCheckError, jaxtyped

from babel_interp.evaluation import sampling as sampling_mod
from babel_interp.evaluation.problems import Problem
from babel_interp.evaluation.sampling import (
    SamplingConfig,
    encode_prompt,
    next_tokens,
    row_key,
    row_uniform,
    sample,
    sample_completions,
)
from babel_interp.model import ModelConfig, build_model, tl_major_version

PROMPTS = [
    "def",
    "function count($items) {\n    return",
    "x = len(",
    "return strlen($s",
    "d",
    "def count(items):\n    ",
    "",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The tiny model's ops are too small to split across threads; on a busy machine waiting for
    # a descheduled second thread costs milliseconds per op.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problems(prompts=PROMPTS, stops=()):
    return [
        Problem(
            task_id=f"T/{i}",
            language="python",
            prompt=p,
            tests="pass",
            entry_point="f",
            stop_sequences=stops,
        )
        for i, p in enumerate(prompts)
    ]


@pytest.fixture(scope="module", params=["standard", "rotary"])
def model(request, small_tokenizer):
    cfg = ModelConfig(**{**TINY.to_dict(), "positional_embedding": request.param})
    torch.manual_seed(0)
    return build_model(cfg, tokenizer=small_tokenizer)


def _reference(model, tok, problem, config, sample_index=0):
    """One prompt, no padding, no cache: the whole sequence recomputed for every token, the
    healing constraint found by decoding every token of the vocabulary."""
    eos = tok.eos_token_id
    special = set(tok.all_special_ids)
    texts = [tok.decode([i]) for i in range(len(tok))]
    prompt = encode_prompt(
        tok, problem.prompt, model.cfg.n_ctx - config.max_new_tokens, config.token_healing
    )
    ids, healed = list(prompt.ids), prompt.healed
    key = row_key(config.seed, problem, sample_index)
    out: list[int] = []
    pending = healed
    with torch.inference_mode():
        for step in range(config.max_new_tokens):
            logits = model(torch.tensor([ids]), return_type="logits")[0, -1, : len(tok)].float()
            if pending:
                ok = [
                    i
                    for i, s in enumerate(texts)
                    if s and i not in special and (pending.startswith(s) or s.startswith(pending))
                ]
                masked = torch.full_like(logits, float("-inf"))
                masked[ok] = logits[ok]
                logits = masked
            u = torch.tensor([row_uniform(key, step)], dtype=torch.float64)
            nxt = int(next_tokens(logits[None], u, config.temperature, config.top_p)[0])
            if nxt == eos:
                break
            ids.append(nxt)
            out.append(nxt)
            if pending:
                s = texts[nxt]
                pending = "" if s.startswith(pending) else pending[len(s) :]
            text = tok.decode(out)[len(healed) :]
            if not pending and any(stop in text for stop in problem.stop_sequences):
                break
    return out, healed


@pytest.fixture
def recorded(monkeypatch):
    """The tokens each row sampled, by (problem index, row key)."""
    seen: dict[tuple[int, int], list[int]] = {}
    original = sampling_mod._Stepper.completion

    def completion(self, row):
        seen[(row.problem, row.key)] = list(row.tokens)
        return original(self, row)

    monkeypatch.setattr(sampling_mod._Stepper, "completion", completion)
    return seen


# ---------------------------------------------------------------------------------------------
# Against the reference


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_greedy_matches_recomputation_token_for_token(
    model, small_tokenizer, recorded, use_kv_cache
):
    problems = _problems()
    config = SamplingConfig(max_new_tokens=10, batch_size=4, use_kv_cache=use_kv_cache)
    result = sample(model, small_tokenizer, problems, config)
    assert result.kv_cache == (use_kv_cache and tl_major_version() < 4)
    for i, p in enumerate(problems):
        ref, healed = _reference(model, small_tokenizer, p, config)
        assert recorded[(i, row_key(0, p, 0))] == ref, p.prompt
        text = small_tokenizer.decode(ref)
        assert text.startswith(healed)
        assert result.completions[i] == [text[len(healed) :]]


def test_sampling_matches_recomputation_token_for_token(model, small_tokenizer, recorded):
    problems = _problems()
    config = SamplingConfig(n=3, temperature=0.9, top_p=0.9, max_new_tokens=8, batch_size=5)
    result = sample(model, small_tokenizer, problems, config)
    for i, p in enumerate(problems):
        for s in range(3):
            ref, healed = _reference(model, small_tokenizer, p, config, s)
            assert recorded[(i, row_key(config.seed, p, s))] == ref
            assert result.completions[i][s] == small_tokenizer.decode(ref)[len(healed) :]


def test_batched_equals_one_at_a_time(model, small_tokenizer):
    problems = _problems()
    for base in (
        SamplingConfig(max_new_tokens=12),
        SamplingConfig(n=3, temperature=1.0, max_new_tokens=12),
        SamplingConfig(n=2, temperature=0.7, top_p=0.8, max_new_tokens=12, token_healing=False),
    ):
        d = base.to_dict()
        one = sample_completions(
            model, small_tokenizer, problems, SamplingConfig(**{**d, "batch_size": 1})
        )
        for batch_size in (3, 7, 32):
            cfg = SamplingConfig(**{**d, "batch_size": batch_size})
            assert sample_completions(model, small_tokenizer, problems, cfg) == one
        each = [
            sample_completions(
                model, small_tokenizer, [p], SamplingConfig(**{**d, "batch_size": 1})
            )[0]
            for p in problems
        ]
        assert each == one
        recomputed = SamplingConfig(**{**d, "batch_size": 5, "use_kv_cache": False})
        assert sample_completions(model, small_tokenizer, problems, recomputed) == one


# ---------------------------------------------------------------------------------------------
# Seeds, nucleus, samples per problem


def test_seeded_samples_reproduce_and_do_not_depend_on_order(model, small_tokenizer):
    problems = _problems()
    cfg = SamplingConfig(n=4, temperature=1.0, max_new_tokens=10, batch_size=6, seed=7)
    first = sample_completions(model, small_tokenizer, problems, cfg)
    assert sample_completions(model, small_tokenizer, problems, cfg) == first
    backwards = sample_completions(model, small_tokenizer, problems[::-1], cfg)
    assert backwards[::-1] == first
    assert sample_completions(model, small_tokenizer, problems[2:4], cfg) == first[2:4]
    other = SamplingConfig(**{**cfg.to_dict(), "seed": 8})
    assert sample_completions(model, small_tokenizer, problems, other) != first
    # Samples of one problem differ from each other (they have their own keys).
    assert any(len(set(cs)) > 1 for cs in first)


def test_tiny_top_p_is_greedy(model, small_tokenizer):
    problems = _problems()
    greedy = sample_completions(model, small_tokenizer, problems, SamplingConfig(max_new_tokens=10))
    nucleus = SamplingConfig(n=3, temperature=1.0, top_p=1e-9, max_new_tokens=10)
    assert sample_completions(model, small_tokenizer, problems, nucleus) == [g * 3 for g in greedy]


def test_n_samples_per_problem_in_problem_order(model, small_tokenizer):
    problems = _problems()
    cfg = SamplingConfig(n=5, temperature=1.0, max_new_tokens=4, batch_size=3)
    result = sample(model, small_tokenizer, problems, cfg)
    assert len(result.completions) == len(problems)
    assert all(len(cs) == 5 for cs in result.completions)
    assert sum(result.finish_reasons.values()) == 5 * len(problems)
    assert result.n_sampled_tokens <= 5 * len(problems) * 4
    assert sample_completions(model, small_tokenizer, [], cfg) == []


def test_next_tokens_draws_by_inverse_cdf():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]]))
    u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    drawn = next_tokens(logits.expand(1000, -1), u, temperature=1.0)
    counts = torch.bincount(drawn, minlength=4).tolist()
    assert counts == [500, 300, 200, 0]  # exact: one uniform per draw, never a zero-mass token
    # top_p keeps the smallest most-likely set whose mass reaches it.
    nucleus = next_tokens(logits.expand(1000, -1), u, temperature=1.0, top_p=0.75)
    assert set(nucleus.tolist()) == {0, 1}
    assert next_tokens(logits, None, temperature=0.0).tolist() == [0]
    assert 0.0 <= min(row_uniform(123, s) for s in range(1000))
    assert max(row_uniform(123, s) for s in range(1000)) < 1.0


def test_next_tokens_shapes_are_checked():
    checked = jaxtyped(typechecker=beartype)(next_tokens)
    checked(torch.zeros(3, 10), torch.rand(3, dtype=torch.float64), 1.0)
    with pytest.raises(TypeCheckError):
        checked(torch.zeros(3, 10), torch.rand(4, dtype=torch.float64), 1.0)


# ---------------------------------------------------------------------------------------------
# Stop sequences, truncation, token healing


def test_stop_sequences_cut_and_stop_early(model, small_tokenizer):
    cfg = SamplingConfig(max_new_tokens=30, token_healing=False)
    (free,) = _problems(["function count($items) {\n"])
    before = sample(model, small_tokenizer, [free], cfg)
    text = before.completions[0][0]
    assert len(text) > 8 and before.finish_reasons["length"] == 1
    stop = text[4:7]
    (stopped,) = _problems(["function count($items) {\n"], stops=(stop, "never seen"))
    after = sample(model, small_tokenizer, [stopped], cfg)
    assert after.completions == [[text[: text.index(stop)]]]
    assert after.finish_reasons["stop"] == 1
    assert after.n_sampled_tokens < before.n_sampled_tokens


def test_long_prompts_keep_their_end_and_are_counted(model, small_tokenizer):
    problems = _problems(["x = 1\n" * 200, "def"])
    cfg = SamplingConfig(max_new_tokens=8)
    result = sample(model, small_tokenizer, problems, cfg)
    assert result.n_truncated_prompts == 1
    tail = encode_prompt(small_tokenizer, problems[0].prompt, model.cfg.n_ctx - 8)
    assert tail.truncated and len(tail.ids) == model.cfg.n_ctx - 8
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(model, small_tokenizer, problems, SamplingConfig(max_new_tokens=64))


def test_encode_prompt_heals_the_last_word(small_tokenizer):
    tok = small_tokenizer
    eos = tok.eos_token_id

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    # The trailing whitespace run is one word of two tokens ("\n  " + "  "): both are healed.
    e = encode_prompt(tok, "def count(items):\n    ", 100)
    assert e == sampling_mod.EncodedPrompt([eos] + ids("def count(items):"), "\n    ", False)
    e = encode_prompt(tok, "x = len(items)\n    return le", 100)
    assert e.healed == " le" and e.ids == [eos] + ids("x = len(items)\n    return")
    no = encode_prompt(tok, "def f", 100, token_healing=False)
    assert no.healed == "" and no.ids == [eos] + ids("def f")
    assert encode_prompt(tok, "", 100) == sampling_mod.EncodedPrompt([eos], "", False)


@pytest.fixture(scope="module")
def trained(small_tokenizer):
    """A tiny model that has memorized one function (EOS-separated copies)."""
    return memorized_model(small_tokenizer)


def test_token_healing_continues_a_prompt_cut_inside_a_word(trained, small_tokenizer):
    # Training text tokenizes "\n    return" as "\n   " + " return"; a prompt ending in the
    # indentation ends in a whitespace token that no word ever followed.
    problems = _problems(
        ["def count(items):\n    ", "def count(items):\n    return le"], stops=("\n",)
    )
    healed = sample_completions(
        trained, small_tokenizer, problems, SamplingConfig(max_new_tokens=12)
    )
    assert healed == [["return len(items)"], ["n(items)"]]


def test_healing_spells_a_word_no_single_token_starts(model, small_tokenizer, recorded):
    # The tokenizer never merged the bytes of "é": after "h", no token starts "éllo", so the
    # rest is spelled with the tokenizer's own tokens.
    (p,) = _problems(["x = 'héllo"])
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=12)
    (completions,) = sample_completions(model, small_tokenizer, [p], cfg)
    for s in range(2):
        text = small_tokenizer.decode(recorded[(0, row_key(0, p, s))])
        assert text.startswith("héllo") and completions[s] == text[len("héllo") :]


# ---------------------------------------------------------------------------------------------
# Config


def test_config_round_trip_and_errors_name_the_field():
    cfg = SamplingConfig(n=4, temperature=0.8, top_p=0.95, max_new_tokens=32, batch_size=8, seed=3)
    assert SamplingConfig.from_dict(cfg.to_dict()) == cfg
    assert SamplingConfig().greedy and not cfg.greedy
    bad = {
        "n": 0,
        "temperature": -0.1,
        "top_p": 0.0,
        "max_new_tokens": 0,
        "batch_size": 1.5,
        "seed": "x",
        "token_healing": 1,
        "use_kv_cache": None,
    }
    for name, value in bad.items():
        kwargs = {"n": 2, "temperature": 1.0, name: value}
        with pytest.raises(ValueError, match=f"SamplingConfig.{name}"):
            SamplingConfig(**kwargs)
    with pytest.raises(ValueError, match="SamplingConfig.top_p"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(ValueError, match="SamplingConfig.temperature"):
        SamplingConfig(temperature=float("nan"))
    with pytest.raises(ValueError, match="SamplingConfig.n must be 1 when temperature is 0"):
        SamplingConfig(n=3, temperature=0.0)
    with pytest.raises(ValueError, match="unknown field"):
        SamplingConfig.from_dict({"k": 1})
