"""Working-language logit lens: throughput and peak memory against the naive full-cache method
(``benchmarks/logit_lens_memory.py`` and the GPU check run :func:`measure_logit_lens_memory`).

Both methods decode the same probe and control prompts (the same token ids, batches and layers)
on the same randomly initialized model:

* reference: ``run_with_cache()`` with no ``names_filter`` (every activation kept), then for each
  residual hook the full logit lens over every position (``[batch, pos, vocab]`` logits and a full
  softmax), then the probe's last position is read;
* project: :func:`babel_interp.analysis.working_language.logit_lens.analyze_working_language`
(hooks keep one
  position per row, the forward stops after the last residual, vocabulary streamed in chunks).

Printed: probes per second, peak memory above the loaded model, the ratios, the largest
disagreement between the two (a correctness check), and the project's peak memory as the number
of probes and of decoded layers grows (it should stay flat). Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU and the process's peak resident set (``VmHWM``, reset
through ``/proc/self/clear_refs``) on a CPU.

Reference figure (H200, GPT-2-small shape, 2,048 tokens): full-cache logit lens 13.4 GB peak,
residual-only 2.7 GB. Usage::

    python benchmarks/logit_lens_memory.py                       # GPT-2-small shape, CPU
    python benchmarks/logit_lens_memory.py --device cuda --n-probes 64
    python benchmarks/logit_lens_memory.py --preset pilot --d-vocab 8192   # quick
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from babel_interp.analysis.working_language.logit_lens import (
    WorkingLanguageConfig,
    _build_items,
    _prepend_id,
    analyze_working_language,
    select_hooks,
    token_sets_for,
)
from babel_interp.analysis.working_language.probes import build_probes
from babel_interp.bench.memory import peak_tensor_bytes
from babel_interp.config import ConfigBase, check_choice, check_int
from babel_interp.corpus.synthetic import SyntheticConfig, generate_documents
from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts
from babel_interp.model import build_model, get_preset, unembed_resid

# ------------------------------------------------------------------------------------------------
# Peak memory
# ------------------------------------------------------------------------------------------------


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """(seconds, peak bytes above the memory in use before, result) of ``fn()``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        return dt, float(torch.cuda.max_memory_allocated(device) - base), out
    # Writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one (Linux).
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return dt, float((_rss_kib("VmHWM") - base) * 1024), out


# ------------------------------------------------------------------------------------------------
# The naive reference
# ------------------------------------------------------------------------------------------------


def naive_full_cache(model, tok, probes, cfg, report) -> dict[tuple[int, int], torch.Tensor]:
    """Full cache, full-vocabulary logit lens at every position, then the last position read.

    Returns ``{(probe, site): p_target per layer}`` for the correctness check.
    """
    hooks = select_hooks(int(model.cfg.n_layers), cfg)
    max_len = min(cfg.max_prompt_tokens or model.cfg.n_ctx, model.cfg.n_ctx)
    items, _ = _build_items(tok, probes, _prepend_id(tok, cfg.prepend), max_len)
    device = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda k: -len(items[k].ids))
    out = {}
    with torch.no_grad():
        for k0 in range(0, len(order), cfg.batch_size):
            its = [items[k] for k in order[k0 : k0 + cfg.batch_size]]
            width = max(len(it.ids) for it in its)
            rows = [it.ids + [it.ids[-1]] * (width - len(it.ids)) for it in its]
            tokens = torch.tensor(rows, device=device)
            last = torch.tensor([len(it.ids) - 1 for it in its], device=device)
            _, cache = model.run_with_cache(tokens)
            per_layer = []
            for h in hooks:
                logp = torch.log_softmax(unembed_resid(model, cache[h]).float(), dim=-1)
                lp = logp[torch.arange(len(its), device=device), last]  # [batch, vocab]
                p = lp.exp()
                masses = []
                for b, it in enumerate(its):
                    s = report.get(probes[it.probe].primary, probes[it.probe].target)
                    masses.append(p[b, list(s.target_ids)].sum())
                _ = (p * lp).sum(-1), lp.argmax(-1), p  # entropy and top-1, as the project
                per_layer.append(torch.stack(masses))
                del logp, lp, p
            stacked = torch.stack(per_layer, dim=1).cpu()
            for b, it in enumerate(its):
                out[(it.probe, it.site)] = stacked[b]
            del cache
    return out


# ------------------------------------------------------------------------------------------------
# Workers (one fresh process per measurement, so no allocator state leaks between methods)
# ------------------------------------------------------------------------------------------------


def _setup(args):
    from babel_interp.model import prepare_tokenizer

    torch.manual_seed(0)
    device = torch.device(args.device)
    tok = prepare_tokenizer(args.tokenizer)
    mcfg = get_preset(args.preset)
    mcfg.d_vocab = max(args.d_vocab, len(tok))
    mcfg.n_ctx = max(mcfg.n_ctx, args.prompt_tokens + 1)
    model = build_model(mcfg, tokenizer=tok, device=str(device))
    model = model.to(getattr(torch, args.dtype)).eval()
    n_per_pair = -(-4 * args.n_probes // 14)
    pool = build_probes("python", "php", n_per_pair=n_per_pair, seed=0)
    cfg = WorkingLanguageConfig(
        batch_size=args.batch_size,
        vocab_chunk=args.vocab_chunk,
        max_prompt_tokens=args.prompt_tokens,
        include_mid=args.include_mid,
        n_boot=10,
    )
    report = token_sets_for(tok, pool, cfg)
    return device, tok, mcfg, model, pool[: args.n_probes], report, cfg


def run_worker(args, in_process: bool = False) -> dict[str, Any]:
    """Run one method (``args.worker``) twice: the first run gives the peak memory, the second
    the time. ``in_process`` on a CPU measures the peak tensor memory with torch's profiler
    (:func:`babel_interp.bench.memory.peak_tensor_bytes`) instead of the resident set, which
    other work in the same process would disturb."""
    device, tok, mcfg, model, probes, report, cfg = _setup(args)
    if args.worker == "naive":

        def run():
            return naive_full_cache(model, tok, probes, cfg, report)
    else:

        def run():
            res = analyze_working_language(
                model, tok, probes, cfg, token_sets=report, progress=False
            )
            df = res.records
            return {
                (int(pi), ("probe", "matched", "random").index(site)): torch.tensor(
                    g.sort_values("layer_pos")["p_target"].to_numpy()
                )
                for (pi, site), g in df.groupby(["probe", "site"])
            }

    if in_process and device.type == "cpu":
        holder: dict[str, Any] = {}
        peak = float(
            peak_tensor_bytes(lambda: None, lambda _: holder.setdefault("out", run())).peak
        )
        out = holder["out"]
    else:
        _, peak, out = measure(run, device)
    seconds, _, _ = measure(run, device)
    n_tokens = sum(
        len(it.ids)
        for it in _build_items(tok, probes, tok.bos_token_id, args.prompt_tokens)[0]
        if it.site == 0
    )
    return dict(
        seconds=seconds,
        peak=peak,
        p_target=out,
        n_probes=len(probes),
        n_tokens=n_tokens,
        n_layers=mcfg.n_layers,
        d_vocab=mcfg.d_vocab,
    )


def _worker_args(cfg: LogitLensConfig, tokenizer: str, method: str, n_probes: int, mid: bool):
    return argparse.Namespace(
        worker=method,
        tokenizer=tokenizer,
        preset=cfg.preset,
        d_vocab=cfg.d_vocab,
        prompt_tokens=cfg.prompt_tokens,
        batch_size=cfg.batch_size,
        vocab_chunk=cfg.vocab_chunk,
        device=cfg.device,
        dtype=cfg.dtype,
        n_probes=n_probes,
        include_mid=mid,
    )


def _run(cfg: LogitLensConfig, tmp: str, tokenizer: str, method: str, n_probes: int, mid=False):
    args = _worker_args(cfg, tokenizer, method, n_probes, mid)
    if not cfg.spawn:
        result = run_worker(args, in_process=True)
        gc.collect()
        if torch.device(cfg.device).type == "cuda":
            torch.cuda.empty_cache()
        return result
    out = os.path.join(tmp, f"{method}-{n_probes}-{mid}.pt")
    cmd = [sys.executable, "-m", __name__, "--worker", method, "--out", out]
    cmd += ["--tokenizer", tokenizer]
    for name in ("preset", "d_vocab", "prompt_tokens", "batch_size", "vocab_chunk", "device"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    cmd += ["--dtype", args.dtype, "--n-probes", str(n_probes)]
    if mid:
        cmd.append("--include-mid")
    # glibc keeps freed blocks below its mmap threshold in the heap, so the resident set would
    # also count fragmentation; serving every block over 64 KiB by mmap makes the peak resident
    # set track live memory (applied to both methods alike).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    subprocess.run(cmd, check=True, env=env)
    return torch.load(out, weights_only=False)


# ------------------------------------------------------------------------------------------------
# The measurement
# ------------------------------------------------------------------------------------------------


@dataclass
class LogitLensConfig(ConfigBase):
    """The model (a preset with ``d_vocab``), the probes and how they are decoded.
    ``spawn`` runs each method in a fresh process (no allocator state shared between them; the
    resident set measures a CPU run); ``scaling`` adds the project's peak at 4x the probes and
    with ``resid_mid``. ``tokenizer_docs`` synthetic documents per language train the
    tokenizer."""

    preset: str = "gpt2-small"
    d_vocab: int = 50257
    n_probes: int = 16
    prompt_tokens: int = 128
    batch_size: int = 16
    vocab_chunk: int = 8192
    device: str = "cpu"
    dtype: str = "float32"
    spawn: bool = True
    scaling: bool = True
    tokenizer_docs: int = 150
    tokenizer_vocab: int = 4096

    def validate(self) -> None:
        check_choice("LogitLensConfig", "dtype", self.dtype, ("float32", "bfloat16"))
        for name in ("d_vocab", "n_probes", "prompt_tokens", "batch_size", "vocab_chunk"):
            check_int("LogitLensConfig", name, getattr(self, name), 1)
        check_int("LogitLensConfig", "tokenizer_docs", self.tokenizer_docs, 1)
        check_int("LogitLensConfig", "tokenizer_vocab", self.tokenizer_vocab, 256)


def measure_logit_lens_memory(cfg: LogitLensConfig) -> dict[str, Any]:
    """Both methods on the same probes: probes/s, peak bytes, the ratios and the largest
    disagreement of the target probability (a correctness check); with ``scaling``, the
    project's peak as probes and decoded layers grow (``scaling`` rows)."""
    with tempfile.TemporaryDirectory(prefix="bench-wl-") as tmp:
        syn = SyntheticConfig(
            languages=("python", "php"), docs_per_language=cfg.tokenizer_docs, seed=1
        )
        texts = [d.text for d in generate_documents(syn)]
        tokenizer = os.path.join(tmp, "tokenizer")
        train_on_texts(texts, TokenizerConfig(vocab_size=cfg.tokenizer_vocab), tokenizer)
        ref = _run(cfg, tmp, tokenizer, "naive", cfg.n_probes)
        ours = _run(cfg, tmp, tokenizer, "ours", cfg.n_probes)
        worst = max(
            float((ours["p_target"][k].float() - v.float()).abs().max())
            for k, v in ref["p_target"].items()
        )
        n = ref["n_probes"]
        scaling = []
        if cfg.scaling:
            rows = [(f"{n} probes", ours)]
            rows.append((f"{4 * n} probes", _run(cfg, tmp, tokenizer, "ours", 4 * n)))
            mid = _run(cfg, tmp, tokenizer, "ours", 4 * n, True)
            rows.append((f"{4 * n} probes + resid_mid", mid))
            scaling = [
                {"label": label, "probes_per_s": r["n_probes"] / r["seconds"], "peak": r["peak"]}
                for label, r in rows
            ]
    return {
        "preset": cfg.preset,
        "d_vocab": ref["d_vocab"],
        "n_layers": ref["n_layers"],
        "dtype": cfg.dtype,
        "device": cfg.device,
        "n_probes": n,
        "n_tokens": ref["n_tokens"],
        "reference_probes_per_s": n / ref["seconds"],
        "project_probes_per_s": n / ours["seconds"],
        "reference_peak_bytes": ref["peak"],
        "project_peak_bytes": ours["peak"],
        "throughput_ratio": ref["seconds"] / ours["seconds"],
        "peak_ratio": ref["peak"] / max(ours["peak"], 1.0),
        "max_abs_disagreement": worst,
        "scaling": scaling,
    }


def main(argv: list[str] | None = None) -> None:
    """The benchmark's command line (``benchmarks/logit_lens_memory.py``), and its workers."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="gpt2-small")
    ap.add_argument("--d-vocab", type=int, default=50257, help="model vocabulary size")
    ap.add_argument("--n-probes", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=128, help="tokens per prompt (max)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--vocab-chunk", type=int, default=8192)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--no-scaling", action="store_true", help="skip the flat-memory sweep")
    ap.add_argument("--worker", choices=("naive", "ours"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", help=argparse.SUPPRESS)
    ap.add_argument("--include-mid", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        torch.save(run_worker(args), args.out)
        return
    cfg = LogitLensConfig(
        preset=args.preset,
        d_vocab=args.d_vocab,
        n_probes=args.n_probes,
        prompt_tokens=args.prompt_tokens,
        batch_size=args.batch_size,
        vocab_chunk=args.vocab_chunk,
        device=args.device,
        dtype=args.dtype,
        scaling=not args.no_scaling,
    )
    r = measure_logit_lens_memory(cfg)
    print(
        f"model {r['preset']} (d_vocab {r['d_vocab']}, {r['n_layers']} layers, {r['dtype']}) on "
        f"{r['device']}; {r['n_probes']} probes x 3 sites, {r['n_tokens']} probe tokens"
    )
    print(f"{'method':<34}{'probes/s':>12}{'peak MB':>12}")
    for label, key in (("naive full cache (reference)", "reference"), ("project", "project")):
        label = "project (residual hooks)" if key == "project" else label
        rate, peak = r[f"{key}_probes_per_s"], r[f"{key}_peak_bytes"]
        print(f"{label:<34}{rate:>12.2f}{peak / 2**20:>12.1f}")
    print(f"throughput ratio (project / reference): {r['throughput_ratio']:.2f}x")
    print(f"peak memory ratio (reference / project): {r['peak_ratio']:.2f}x")
    print(f"largest |p_target| disagreement: {r['max_abs_disagreement']:.2e}")
    if r["scaling"]:
        print("project peak memory as probes and layers grow:")
        for row in r["scaling"]:
            print(
                f"  {row['label']:<30}{row['probes_per_s']:>10.2f} probes/s"
                f"{row['peak'] / 2**20:>10.1f} MB"
            )


if __name__ == "__main__":
    main()
