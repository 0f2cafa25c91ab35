"""Sampling throughput: the project's sampler against a naive reference, same problems and model.

* naive reference: one (problem, sample) row at a time, the whole sequence recomputed for every
  new token, with the same draws (the sampler's per-row uniforms, nucleus, token healing and
  stop rule), so its samples must equal the project's;
* project, recomputed: :func:`babel_interp.evaluation.sampling.sample` with
  ``use_kv_cache=False`` (right-padded batches, every step recomputes the sequences);
* project: the same with its default decoder (TL 3.x: left-padded batches through
  TransformerLens's key-value cache; TL 4.x has no usable cache, so this is the recomputed one).

Printed: sampled tokens/s of each, the project's speed-up over the naive reference (the ratio),
and the share of samples equal to the reference's. The model is randomly initialized (speed does
not depend on training, and a random model rarely stops early, so every row runs close to
``max_new_tokens``); prompts are the first lines of held-out synthetic Python programs, with
HumanEval's Python stop sequences. Usage::

    python benchmarks/sampling.py                              # tiny preset, CPU
    python benchmarks/sampling.py --preset pilot --device cuda --n-problems 64
"""

from __future__ import annotations

import argparse
import time

import torch

from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts
from babel_interp.evaluation.problems import Problem, truncate_at_stop
from babel_interp.evaluation.sampling import (
    SamplingConfig,
    encode_prompt,
    healing_candidates,
    next_tokens,
    row_key,
    row_uniform,
    sample,
    token_texts,
)
from babel_interp.model import build_model, get_preset, prepare_tokenizer, tl_major_version

STOPS = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#")


def make_problems(programs: list[str], tok, n: int, max_tokens: int) -> list[Problem]:
    """``n`` prompts: the opening lines of held-out programs, as many as fit ``max_tokens``."""
    problems = []
    for i, text in enumerate(programs[:n]):
        lines = text.splitlines(keepends=True)
        k = 1
        while k < len(lines) // 2 and len(tok("".join(lines[: k + 1]))["input_ids"]) < max_tokens:
            k += 1
        problems.append(
            Problem(
                task_id=f"bench/{i}",
                language="python",
                prompt="".join(lines[:k]),
                tests="pass",
                entry_point="main",
                stop_sequences=STOPS,
            )
        )
    return problems


@torch.inference_mode()
def naive_sample(model, tok, problem: Problem, cfg: SamplingConfig, s: int, texts, special):
    """One row: full recomputation per token, the sampler's draws. Returns (text, tokens)."""
    device = next(model.parameters()).device
    enc = encode_prompt(
        tok, problem.prompt, model.cfg.n_ctx - cfg.max_new_tokens, cfg.token_healing
    )
    ids, healed, pending = list(enc.ids), enc.healed, enc.healed
    n_vocab = len(texts)
    key = row_key(cfg.seed, problem, s)
    out: list[int] = []
    n_sampled = 0
    for step in range(cfg.max_new_tokens):
        logits = model(torch.tensor([ids], device=device), return_type="logits")[0, -1]
        logits = logits[:n_vocab].float()
        if pending:
            allowed = torch.tensor(healing_candidates(texts, pending, special), device=device)
            masked = torch.full_like(logits, float("-inf"))
            masked[allowed] = logits[allowed]
            logits = masked
        u = torch.tensor([row_uniform(key, step)], dtype=torch.float64, device=device)
        nxt = int(next_tokens(logits[None], u, cfg.temperature, cfg.top_p)[0])
        n_sampled += 1
        if nxt == tok.eos_token_id:
            break
        ids.append(nxt)
        out.append(nxt)
        if pending:
            t = texts[nxt]
            pending = "" if t.startswith(pending) else pending[len(t) :]
        text = tok.decode(out, clean_up_tokenization_spaces=False)[len(healed) :]
        if not pending and any(stop in text for stop in problem.stop_sequences):
            break
    text = tok.decode(out, clean_up_tokenization_spaces=False)[len(healed) :]
    return truncate_at_stop(text, problem.stop_sequences), n_sampled


def _timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=4, help="samples per problem")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)

    synthetic = SyntheticConfig(languages=("python",), docs_per_language=200 + args.n_problems)
    programs = [d.text for d in generate_documents(synthetic)]
    tok = prepare_tokenizer(
        train_on_texts(programs[:200], TokenizerConfig(vocab_size=args.vocab_size))
    )
    preset = get_preset(args.preset)
    budget = (preset.n_ctx - args.max_new_tokens) * 3 // 4
    problems = make_problems(programs[200:], tok, args.n_problems, budget)
    model = build_model(preset, tokenizer=tok, device=args.device)
    model.eval()
    cfg = SamplingConfig(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    recomputed = SamplingConfig(**{**cfg.to_dict(), "use_kv_cache": False})

    sample(model, tok, problems, cfg)  # warm-up: kernels and the allocator, at every shape
    ours, t_ours = _timed(lambda: sample(model, tok, problems, cfg))
    rec, t_rec = _timed(lambda: sample(model, tok, problems, recomputed))

    def reference():
        texts = token_texts(tok, min(int(model.cfg.d_vocab), len(tok)))
        special = set(tok.all_special_ids)
        return [
            [naive_sample(model, tok, p, cfg, s, texts, special) for s in range(cfg.n)]
            for p in problems
        ]

    naive, t_naive = _timed(reference)

    n_tok = ours.n_sampled_tokens
    n_naive = sum(k for row in naive for _, k in row)
    rows = len(problems) * cfg.n
    same = sum(
        a == b
        for ca, cb in zip(ours.completions, naive, strict=True)
        for a, (b, _) in zip(ca, cb, strict=True)
    )
    same_rec = sum(
        a == b
        for ca, cb in zip(ours.completions, rec.completions, strict=True)
        for a, b in zip(ca, cb, strict=True)
    )
    print(
        f"{len(problems)} problems x {cfg.n} samples, preset {args.preset}, vocab {len(tok)}, "
        f"max_new_tokens {cfg.max_new_tokens}, batch {cfg.batch_size}, T {cfg.temperature}, "
        f"top_p {cfg.top_p}, device {args.device}, TransformerLens {tl_major_version()}.x; "
        f"truncated prompts {ours.n_truncated_prompts}; finish {ours.finish_reasons}"
    )
    label = "project (KV cache)" if ours.kv_cache else "project (no cache here)"
    print(f"{label:24s} {t_ours:7.2f} s  {n_tok / t_ours:9.1f} tokens/s")
    print(
        f"{'project (recomputed)':24s} {t_rec:7.2f} s  {rec.n_sampled_tokens / t_rec:9.1f} "
        f"tokens/s  -> default decoder speed-up {t_rec / t_ours:.2f}x"
    )
    print(
        f"{'naive reference':24s} {t_naive:7.2f} s  {n_naive / t_naive:9.1f} tokens/s  "
        f"-> project speed-up {(n_tok / t_ours) / (n_naive / t_naive):.2f}x (tokens/s ratio)"
    )
    print(
        f"correctness: {same}/{rows} samples equal the naive reference's; "
        f"{same_rec}/{rows} equal between the cached and recomputed decoders; "
        f"tokens sampled {n_tok} (project) vs {n_naive} (reference)"
    )


if __name__ == "__main__":
    main()
