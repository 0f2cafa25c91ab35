"""A tiny model that has memorized one function: the shared fixture of the decoding tests."""

from __future__ import annotations

import torch

from babel_interp.model import ModelConfig, build_model

TINY = ModelConfig(n_layers=2, d_model=64, n_heads=4, d_head=16, d_mlp=128, n_ctx=64, seed=0)
TEXT = "def count(items):\n    return len(items)\n"


def memorized_model(tokenizer, text: str = TEXT, cfg: ModelConfig = TINY):
    """Train ``cfg`` on ``text`` (repeated, EOS-separated) until it has memorized it."""
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer=tokenizer)
    eos = tokenizer.eos_token_id
    doc = [eos] + tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = torch.tensor(doc * 12)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        starts = torch.randint(0, len(stream) - 25, (8,))
        batch = torch.stack([stream[s : s + 25] for s in starts.tolist()])
        logits = model(batch[:, :-1], return_type="logits")
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    final = float(loss.detach())
    assert final < 0.3, f"the fixture model did not memorize its text (loss {final})"
    return model
