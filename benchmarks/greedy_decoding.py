"""Completion accuracy's greedy decoding against two references, on the same prompts and model.

* naive reference: one prompt at a time, the whole sequence recomputed for every new token, the
  same stop rule (EOS or a newline): the plain definition of greedy decoding;
* TransformerLens reference: ``model.generate(do_sample=False)`` one prompt at a time, with its
  key-value cache; it has no newline stop, so it decodes ``max_new_tokens`` every time and is
  compared per generated token as well as per prompt;
* project: :func:`babel_interp.analysis.performance.greedy_continuations` (right-padded batches of
  similar-length prompts, every row read at its own last position, rows stop independently).

Printed: prompts/s and generated tokens/s of each, the speed-ups, and the correctness checks: the
share of prompts whose continuation equals the naive reference's exactly, and the share whose
tokens agree with TransformerLens's greedy tokens up to where the project stopped. The model is
randomly initialized (speed and agreement do not depend on training); prompts are held-out
synthetic completion sites. Usage::

    python benchmarks/greedy_decoding.py                  # tiny preset, CPU
    python benchmarks/greedy_decoding.py --preset pilot --n-items 64 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from babel_interp.analysis.performance import greedy_continuations, synthetic_completion_items
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts
from babel_interp.model import build_model, get_preset, prepare_tokenizer


def naive_greedy(model, tok, prompt: str, max_new_tokens: int) -> tuple[str, list[int]]:
    ids = [tok.eos_token_id] + tok(prompt.rstrip(" \t"), add_special_tokens=False)["input_ids"]
    ids = ids[-(model.cfg.n_ctx - max_new_tokens) :]
    device = next(model.parameters()).device
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids], device=device), return_type="logits")
            nxt = int(logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
            out.append(nxt)
            if "\n" in tok.decode(out):
                break
    return tok.decode(out), out


def tl_greedy(model, tok, prompt: str, max_new_tokens: int) -> list[int]:
    ids = [tok.eos_token_id] + tok(prompt.rstrip(" \t"), add_special_tokens=False)["input_ids"]
    ids = ids[-(model.cfg.n_ctx - max_new_tokens) :]
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids], device=device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            stop_at_eos=False,
            verbose=False,
        )
    return out[0, len(ids) :].tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--n-items", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)

    cfg = SyntheticConfig(languages=("python", "php"), docs_per_language=200)
    texts = [d.text for d in generate_documents(cfg)]
    tok = prepare_tokenizer(train_on_texts(texts, TokenizerConfig(vocab_size=args.vocab_size)))
    model = build_model(get_preset(args.preset), tokenizer=tok, device=args.device)
    model.eval()
    items = synthetic_completion_items(cfg, "php", n_documents=args.n_items, max_per_document=1)
    prompts = [it.prompt for it in items][: args.n_items]
    n = len(prompts)
    mnt = args.max_new_tokens

    greedy_continuations(model, tok, prompts[:2], mnt, args.batch_size)  # warm-up
    t0 = time.perf_counter()
    ours = greedy_continuations(model, tok, prompts, mnt, args.batch_size)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = [naive_greedy(model, tok, p, mnt) for p in prompts]
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    tl = [tl_greedy(model, tok, p, mnt) for p in prompts]
    t_tl = time.perf_counter() - t0

    n_ours = sum(len(ids) for _, ids in naive)  # same stop rule: the tokens both generated
    same_naive = sum(a[0] == b[0] for a, b in zip(ours, naive, strict=True)) / n
    agree_tl = sum(ids == t[: len(ids)] for (_, ids), t in zip(naive, tl, strict=True)) / n
    print(
        f"{n} prompts, preset {args.preset}, vocab {len(tok)}, max_new_tokens {mnt}, "
        f"batch {args.batch_size}, device {args.device}"
    )
    print(
        f"project      {t_ours:7.2f} s  {n / t_ours:8.1f} prompts/s  "
        f"{n_ours / t_ours:8.1f} tokens/s"
    )
    print(
        f"naive        {t_naive:7.2f} s  {n / t_naive:8.1f} prompts/s  "
        f"{n_ours / t_naive:8.1f} tokens/s  -> project speed-up {t_naive / t_ours:.1f}x"
    )
    print(
        f"TL generate  {t_tl:7.2f} s  {n / t_tl:8.1f} prompts/s  "
        f"{n * mnt / t_tl:8.1f} tokens/s  -> project speed-up per prompt {t_tl / t_ours:.1f}x "
        f"(TL decodes all {mnt} tokens; per token "
        f"{(n_ours / t_ours) / (n * mnt / t_tl):.2f}x)"
    )
    print(
        f"correctness: {same_naive:.1%} of continuations equal the naive reference's; "
        f"{agree_tl:.1%} agree token for token with TL's greedy generate"
    )


if __name__ == "__main__":
    main()
