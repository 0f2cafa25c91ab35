"""Hook overhead of the streaming neuron statistics, against a plain forward of the same model.

Measures in one run, on the same model, batches and device:

* throughput of a plain forward (``model(tokens, return_type=None)``): the reference;
* throughput of :class:`NeuronStatsCollector.update` (hooks on every ``blocks.{l}.mlp.hook_post``)
  with language-pure windows (the analyzer's case) and with mixed-language windows (the
  ``index_add_`` path), each with and without per-window records;
* memory: on CUDA the peak allocated memory of each, plus ``run_with_cache`` with and without
  a names filter (what the streaming design avoids); on every device the collector's state
  after N and 4N batches (it must not grow with tokens beyond the bounded window records).

Prints the throughput ratio (hooked / plain) and the overhead. Goal: overhead at most 15%.
Reference numbers (H200, GPT-2-small shape): counting hooks cost 6% of throughput; a full
``run_with_cache`` took 42.5 GB against 4.5 GB for the plain forward.

    python benchmarks/neuron_hook_overhead.py                   # CPU: "pilot" shape
    python benchmarks/neuron_hook_overhead.py --preset gpt2-small --batch-size 16 --seq-len 1024
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from babel_interp.analysis.neurons.neuron_stats import NeuronStatsCollector, NeuronStatsConfig
from babel_interp.model import build_model, get_preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, batches, device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of running ``fn`` over ``batches``."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    for tokens, langs in batches:
        fn(tokens, langs)
    _sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def _peak(fn, batches, device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    for tokens, langs in batches:
        fn(tokens, langs)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def _state_bytes(collector: NeuronStatsCollector) -> int:
    acc = collector._acc or {}
    n = sum(t.numel() * t.element_size() for t in acc.values())
    n += sum(t.numel() * t.element_size() for parts in collector._windows.values() for t in parts)
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default=None, help="model preset (CPU: pilot, GPU: gpt2-small)")
    p.add_argument("--d-vocab", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--n-batches", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    p.add_argument("--max-windows", type=int, default=1024, help="window records per language")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (CPU default 1: idle OpenMP threads spin and inflate CPU time)",
    )
    args = p.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    if args.threads or not gpu:
        torch.set_num_threads(args.threads or 1)
    preset = args.preset or ("gpt2-small" if gpu else "pilot")
    batch_size = args.batch_size or (16 if gpu else 8)
    seq_len = args.seq_len or (1024 if gpu else 256)
    n_batches = args.n_batches or (8 if gpu else 4)
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    cfg = replace(get_preset(preset), d_vocab=args.d_vocab, n_ctx=max(seq_len, 1))
    torch.manual_seed(0)
    model = build_model(cfg, device=device).to(dtype)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    tokens = [
        torch.randint(cfg.d_vocab, (batch_size, seq_len), generator=gen).to(device)
        for _ in range(n_batches)
    ]
    pure = [torch.full((batch_size, seq_len), i % 2, dtype=torch.int64) for i in range(n_batches)]
    mixed = [torch.randint(2, (batch_size, seq_len), generator=gen) for _ in range(n_batches)]
    langs = ["a", "b"]

    def plain(toks, _langs):
        with torch.no_grad():
            model(toks, return_type=None)

    def collector(max_windows: int) -> NeuronStatsCollector:
        scfg = NeuronStatsConfig(tokens_per_language=None, max_windows_per_language=max_windows)
        return NeuronStatsCollector(model, langs, scfg)

    totals, records, mixed_c = collector(0), collector(args.max_windows), collector(0)
    variants = {
        "plain forward": (plain, pure),
        "stats, pure windows": (lambda t, la: totals.update(t, la), pure),
        "stats + window records": (lambda t, la: records.update(t, la), pure),
        "stats, mixed windows": (lambda t, la: mixed_c.update(t, la), mixed),
    }
    for fn, labels in variants.values():  # warm-up (allocator, kernels, caches)
        fn(tokens[0], labels[0])
    tokens_per_round = batch_size * seq_len * n_batches
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        # Interleaved, rotated rounds: drift in machine load hits every variant alike.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, labels = variants[name]
            times[name].append(_timed(fn, list(zip(tokens, labels, strict=True)), device))

    print(
        f"device={device} ({torch.cuda.get_device_name(device) if gpu else 'cpu'}), "
        f"threads={torch.get_num_threads()}, preset={preset}, dtype={dtype}, "
        f"batch={batch_size}x{seq_len}, {n_batches} batches x {args.rounds} rounds, "
        f"n_layers={cfg.n_layers}, d_mlp={cfg.d_mlp}"
    )
    # On a shared CPU, wall time counts other processes' load; process CPU time does not, so
    # the CPU ratio is the one to read there (on a GPU, wall time is the measure).
    clocks = {"wall": 0, "cpu": 1} if not gpu else {"wall": 0}
    for clock, i in clocks.items():
        base = tokens_per_round / statistics.median(t[i] for t in times["plain forward"])
        print(f"[{clock} clock] {'variant':24s} {'tokens/s':>12s} {'ratio':>7s} {'overhead':>9s}")
        for name, ts in times.items():
            tps = tokens_per_round / statistics.median(t[i] for t in ts)
            print(f"[{clock} clock] {name:24s} {tps:12.0f} {tps / base:7.3f} {1 - tps / base:9.1%}")

    main_clock = 0 if gpu else 1
    ratio = statistics.median(t[main_clock] for t in times["plain forward"]) / statistics.median(
        t[main_clock] for t in times["stats + window records"]
    )
    print(
        f"RESULT ratio (stats + window records / plain forward, "
        f"{'wall' if gpu else 'cpu'} clock): {ratio:.3f}; overhead {1 - ratio:.1%} (goal <= 15%)"
    )

    # Memory: state after N vs 4N batches (bounded window records excluded: capped at 0 here).
    c = collector(0)
    for t, la in zip(tokens, pure, strict=True):
        c.update(t, la)
    after_n = _state_bytes(c)
    for _ in range(3):
        for t, la in zip(tokens, pure, strict=True):
            c.update(t, la)
    after_4n = _state_bytes(c)
    print(
        f"collector state: {after_n / 2**20:.2f} MiB after {tokens_per_round} tokens, "
        f"{after_4n / 2**20:.2f} MiB after {4 * tokens_per_round} (ratio {after_4n / after_n:.3f})"
    )
    if gpu:
        batches = list(zip(tokens, pure, strict=True))
        peak_c = collector(0)
        peaks = {
            "plain forward": _peak(plain, batches, device),
            "stats hooks": _peak(lambda t, la: peak_c.update(t, la), batches, device),
        }

        def cache_mlp(toks, _langs):
            with torch.no_grad():
                model.run_with_cache(toks, names_filter=lambda n: n.endswith("mlp.hook_post"))

        def cache_all(toks, _langs):
            with torch.no_grad():
                model.run_with_cache(toks)

        peaks["run_with_cache (mlp only)"] = _peak(cache_mlp, batches[:1], device)
        peaks["run_with_cache (all)"] = _peak(cache_all, batches[:1], device)
        for name, gib in peaks.items():
            print(f"peak memory {name:28s} {gib:7.2f} GiB ({gib / peaks['plain forward']:.2f}x)")


if __name__ == "__main__":
    main()
