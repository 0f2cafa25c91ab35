"""Corpus build throughput (MB of source per second) and peak memory, against a reference.

Cases: the running interpreter's standard library (real code no one here wrote) and the
synthetic generator's five languages at two sizes (both above the tokenizer sample cap, where
the builder's peak memory must stay flat).

* ours: :func:`babel_interp.corpus.build.build_corpus` with default settings (streaming two-pass
  build, bounded tokenizer sample, cached word encoding, tokenizing worker processes);
* reference: the straightforward in-memory build: read every file into a list, dedup with a set
  of texts, train the same tokenizer on the same amount of text, encode every document with HF
  ``tokenizers`` batch encoding, concatenate in memory, write.

Each build runs in its own subprocess, so its peak memory (``ru_maxrss``, workers counted
separately) is its own. Throughput is source megabytes (10^6 bytes of UTF-8 read from the
sources) per wall-clock second, end to end (imports excluded, tokenizer training included); CPU
seconds (process plus workers) are printed too, because on a shared machine wall time also
measures the neighbours. Run: ``python benchmarks/corpus_build.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SAMPLE_BYTES = 10_000_000  # the builder's default tokenizer sample


def _sources(case: str, synth_docs: int) -> list:
    from babel_interp.corpus.sources import SourceSpec

    if case == "stdlib":
        return [SourceSpec("local", str(STDLIB), "python")]
    if case == "synthetic":
        from babel_interp.corpus.synthetic import SyntheticConfig

        cfg = SyntheticConfig(docs_per_language=synth_docs)
        return [SourceSpec("synthetic", options=cfg.to_dict())]
    raise ValueError(f"unknown case {case!r}")


def _usage() -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_mb": me.ru_maxrss / 1024,
        "worker_peak_mb": kids.ru_maxrss / 1024,
    }


def run_ours(case: str, out: Path, synth_docs: int) -> dict:
    from babel_interp.corpus.build import CorpusConfig, build_corpus

    cfg = CorpusConfig(out=str(out), sources=_sources(case, synth_docs), progress=False)
    u0, t0 = _usage(), time.perf_counter()
    summary = build_corpus(cfg)
    wall = time.perf_counter() - t0
    u1 = _usage()
    tokens = sum(s.tokens for s in summary.languages)
    return {
        "wall": wall,
        "cpu": u1["cpu"] - u0["cpu"],
        "peak_mb": u1["peak_mb"],
        "worker_peak_mb": u1["worker_peak_mb"],
        "source_bytes": summary.source_bytes,
        "tokens": tokens,
        "phases": summary.seconds,
    }


def run_reference(case: str, out: Path, synth_docs: int) -> dict:
    """The in-memory build: everything in lists, HF batch encoding, one write at the end."""
    import hashlib

    import numpy as np

    from babel_interp.corpus.build import normalize_text
    from babel_interp.corpus.sources import FilterConfig, SkipStats
    from babel_interp.corpus.tokenizer import EOS_TOKEN, TokenizerConfig, train_backend

    u0, t0 = _usage(), time.perf_counter()
    docs = []  # (language, text): the whole corpus in memory
    source_bytes = 0
    for spec in _sources(case, synth_docs):
        for doc in spec.iterate(FilterConfig(), SkipStats()):
            source_bytes += doc.n_bytes
            docs.append((doc.language, normalize_text(doc.text)))
    seen, unique = set(), []
    for lang, text in docs:
        if text.strip() not in seen:
            seen.add(text.strip())
            unique.append((lang, text))
    languages = sorted({lang for lang, _ in unique})
    sample, size = [], 0
    for _, text in unique:
        if size >= SAMPLE_BYTES:
            break
        sample.append(text)
        size += len(text.encode())
    tok = train_backend(sample, TokenizerConfig())
    tok.encode_special_tokens = True
    eos = tok.token_to_id(EOS_TOKEN)
    splits = {"train": ([], []), "val": ([], [])}
    for i in range(0, len(unique), 256):
        chunk = unique[i : i + 256]
        encs = tok.encode_batch_fast([t for _, t in chunk], add_special_tokens=False)
        for (lang, text), enc in zip(chunk, encs, strict=True):
            digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
            split = "val" if digest[0] < 13 else "train"
            ids = np.asarray(enc.ids + [eos], dtype=np.uint16)
            splits[split][0].append(ids)
            splits[split][1].append(np.full(len(ids), languages.index(lang), dtype=np.uint8))
    out.mkdir(parents=True)
    tokens = 0
    for name, (ids, labels) in splits.items():
        if ids:
            all_ids = np.concatenate(ids)
            tokens += len(all_ids)
            all_ids.tofile(out / f"{name}.tokens.bin")
            np.concatenate(labels).tofile(out / f"{name}.langs.bin")
    wall = time.perf_counter() - t0
    u1 = _usage()
    return {
        "wall": wall,
        "cpu": u1["cpu"] - u0["cpu"],
        "peak_mb": u1["peak_mb"],
        "worker_peak_mb": 0.0,
        "source_bytes": source_bytes,
        "tokens": tokens,
    }


def _child(which: str, case: str, synth_docs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="babel-bench-") as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            which,
            "--case",
            case,
            "--synth-docs",
            str(synth_docs),
            "--out",
            str(Path(tmp) / "corpus"),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"{which} build of {case} failed:\n{res.stderr[-3000:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small synthetic cases (below the cap)")
    ap.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument(
        "--synth-docs", type=int, default=2000, help="synthetic docs per language (default 2000)"
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    if args.child:
        import logging

        logging.disable(logging.WARNING)  # unreadable stdlib files are expected
        fn = run_ours if args.child == "ours" else run_reference
        print(json.dumps(fn(args.case, Path(args.out), args.synth_docs)))
        return

    n = 300 if args.quick else args.synth_docs
    # (label, case, synthetic docs per language); the two synthetic sizes are both above the
    # tokenizer sample cap (10 MB), the regime where peak memory must not grow with the corpus.
    cases = [
        ("stdlib", "stdlib", n),
        ("synthetic", "synthetic", n),
        ("synthetic x3", "synthetic", 3 * n),
    ]
    print(
        f"corpus build benchmark: {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f} at start, python {sys.version.split()[0]}"
    )
    by = {}
    for label, case, docs in cases:
        ours = _child("ours", case, docs)
        ref = _child("reference", case, docs)
        by[label] = (ours, ref)
        mb = ours["source_bytes"] / 1e6
        print(
            f"{label:13s} {mb:6.1f} MB | ours {mb / ours['wall']:5.2f} MB/s "
            f"(wall {ours['wall']:5.1f}s, cpu {ours['cpu']:5.1f}s, peak {ours['peak_mb']:5.0f} MB "
            f"+ workers {ours['worker_peak_mb']:4.0f} MB) | reference {mb / ref['wall']:5.2f} MB/s "
            f"(wall {ref['wall']:5.1f}s, cpu {ref['cpu']:5.1f}s, peak {ref['peak_mb']:5.0f} MB) | "
            f"speed ratio {ref['wall'] / ours['wall']:.2f}x, "
            f"cpu ratio {ref['cpu'] / ours['cpu']:.2f}x"
        )
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in ours["phases"].items())
        print(f"{'':13s} ours by phase: {phases}")
    (o1, r1), (o2, r2) = by["synthetic"], by["synthetic x3"]
    size_ratio = o2["source_bytes"] / o1["source_bytes"]
    print(
        f"peak memory at {size_ratio:.1f}x the source (synthetic): ours "
        f"{o1['peak_mb']:.0f} -> {o2['peak_mb']:.0f} MB ({o2['peak_mb'] / o1['peak_mb']:.2f}x), "
        f"workers {o1['worker_peak_mb']:.0f} -> {o2['worker_peak_mb']:.0f} MB; reference "
        f"{r1['peak_mb']:.0f} -> {r2['peak_mb']:.0f} MB ({r2['peak_mb'] / r1['peak_mb']:.2f}x)"
    )
    o, _ = by["stdlib"]
    mb = o["source_bytes"] / 1e6
    verdict = "meets" if mb / o["wall"] >= 2.0 else "misses"
    print(
        f"stdlib end to end: {mb / o['wall']:.2f} MB/s wall ({verdict} the 2 MB/s target; load "
        f"average {os.getloadavg()[0]:.1f} now), {mb / o['cpu']:.2f} MB per CPU-second "
        "(process plus workers: the wall rate on one otherwise idle core)"
    )


if __name__ == "__main__":
    main()
