"""``babel-interp corpus ...``: build and inspect language-labelled corpora.

* ``corpus synth --out DIR``: a corpus from the synthetic generator (the probes' positive control);
* ``corpus build --out DIR --source LANG=PATH ...``: a corpus from source trees, JSONL files and
  HF datasets;
* ``corpus fetch-debian --language LANG ... --out DIR``: real source trees from Debian packages
  (downloaded and unpacked, nothing installed), optionally built into a corpus with ``--build``;
* ``corpus info DIR``: the summary table of an existing corpus.

The handlers are thin: they turn arguments into a :class:`~babel_interp.corpus.build.CorpusConfig`
and call :func:`~babel_interp.corpus.build.build_corpus`. Heavy imports happen inside them, so
``babel-interp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from typing import Any


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _weights(value: str) -> dict[str, float]:
    """``python=1,php=0.5`` -> ``{"python": 1.0, "php": 0.5}``."""
    out: dict[str, float] = {}
    for item in _csv(value):
        lang, eq, w = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"weight {item!r} is not LANG=WEIGHT")
        try:
            out[lang.strip()] = float(w)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight {item!r}: {w!r} is not a number") from None
    return out


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="corpus directory to create (or rebuild)")
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size")
    p.add_argument(
        "--min-frequency", type=int, default=2, help="least count of a merged pair (default 2)"
    )
    p.add_argument(
        "--sample-mb",
        type=float,
        default=10.0,
        help="MB of train text the tokenizer is trained on (default 10)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="DIR",
        help="reuse this tokenizer directory instead of training one",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="share of documents in the validation split, by document hash (default 0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash (and generator)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a corpus in --out that was built with a different tokenizer",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``corpus`` command group."""
    parser = subparsers.add_parser("corpus", help="build and inspect language-labelled corpora")
    sub = parser.add_subparsers(dest="corpus_command", metavar="COMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    synth = sub.add_parser(
        "synth",
        help="corpus from the synthetic parallel-program generator",
        description="Build a corpus from the synthetic generator: the same programs rendered in "
        "each language, with frequent, learnable built-ins.",
    )
    _add_common(synth)
    synth.add_argument(
        "--languages",
        type=_csv,
        default=["python", "php", "csharp", "go", "cpp"],
        help="comma-separated languages (default python,php,csharp,go,cpp)",
    )
    synth.add_argument("--docs", type=int, default=1000, help="documents per language")
    synth.set_defaults(handler=_synth)

    build = sub.add_parser(
        "build",
        help="corpus from source trees, JSONL files and HF datasets",
        description="Build a corpus: dedup, split by document hash, train a byte-level BPE "
        "tokenizer, write token shards with a per-token language label.",
    )
    _add_common(build)
    build.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[LANG=]PATH",
        help="a source tree or file; LANG= labels every file of that language's extensions, "
        "without it each file's extension decides (repeatable)",
    )
    build.add_argument(
        "--jsonl",
        action="append",
        default=[],
        metavar="[LANG=]FILE",
        help="a JSONL file with content and language fields (repeatable)",
    )
    build.add_argument(
        "--hf",
        action="append",
        default=[],
        metavar="SPEC",
        help="a HF dataset: PATH[:DATA][?KEY=VALUE&...], e.g. "
        "'bigcode/the-stack-smol:data/python?language=python' or "
        "'parquet:data/*.parquet?text=content&lang=language' (repeatable)",
    )
    build.add_argument(
        "--languages",
        type=_csv,
        default=None,
        help="keep only these languages, in this order (label ids follow it)",
    )
    build.add_argument(
        "--tokenizer-weights",
        type=_weights,
        default=None,
        metavar="LANG=W,...",
        help="mixture weights of the tokenizer sample (default: the corpus's own proportions)",
    )
    build.add_argument(
        "--max-doc-bytes", type=int, default=200_000, help="skip larger files (default 200000)"
    )
    build.add_argument(
        "--skip-tests", action="store_true", help="do not enter test/tests/testdata directories"
    )
    build.add_argument("--text-field", default="content", help="JSONL text field")
    build.add_argument("--language-field", default="language", help="JSONL language field")
    build.set_defaults(handler=_build)

    fetch = sub.add_parser(
        "fetch-debian",
        help="real source trees from Debian packages (apt-get download + dpkg -x)",
        description="Download Debian packages that ship source code (apt-get download, nothing "
        "installed), unpack them into OUT/<language>/<package>/ and record name, version and "
        "license in OUT/debian_manifest.json. Run 'apt-get update' once on a fresh machine.",
    )
    fetch.add_argument(
        "--language",
        action="append",
        required=True,
        metavar="LANG",
        help="a language with a package list: php, go, rust, java, ruby, cpp, lua (repeatable)",
    )
    fetch.add_argument("--out", required=True, help="directory of the unpacked trees")
    fetch.add_argument(
        "--cache", default=None, metavar="DIR", help="where .deb files are kept (OUT/.debs)"
    )
    fetch.add_argument(
        "--packages",
        action="append",
        default=[],
        metavar="LANG=NAME,...",
        help="replace a language's package list (repeatable)",
    )
    fetch.add_argument(
        "--keep-tests", action="store_true", help="keep test, locale and translation folders"
    )
    fetch.add_argument(
        "--max-file-bytes", type=int, default=200_000, help="drop larger files (default 200000)"
    )
    fetch.add_argument(
        "--build",
        default=None,
        metavar="OUT_CORPUS",
        help="also build a corpus from the fetched trees plus Python's standard library",
    )
    fetch.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary (--build)")
    fetch.add_argument(
        "--update-lists",
        action="store_true",
        help="run 'apt-get update' once (root) if the package lists are empty; off by default, "
        "so a fetch changes nothing on the system unless asked",
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(handler=_fetch_debian)

    info = sub.add_parser("info", help="print the summary table of a corpus")
    info.add_argument("corpus", help="corpus directory")
    info.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    info.set_defaults(handler=_info)


def _common_config(args: argparse.Namespace, default_vocab: int) -> dict[str, Any]:
    """The corpus config fields that the options of :func:`_add_common` set (all but the seed,
    which the synthetic generator shares)."""
    from babel_interp.corpus.tokenizer import TokenizerConfig

    tokenizer = TokenizerConfig(
        vocab_size=args.vocab_size if args.vocab_size is not None else default_vocab,
        min_frequency=args.min_frequency,
        sample_bytes=int(args.sample_mb * 1e6),
        language_weights=getattr(args, "tokenizer_weights", None),
    )
    return dict(
        tokenizer=tokenizer,
        tokenizer_dir=args.tokenizer,
        val_fraction=args.val_fraction,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def _report(summary: Any) -> int:
    print(summary.table())
    print(f"corpus written to {summary.corpus_dir}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from babel_interp.corpus.build import build_corpus, synthetic_corpus_config

    cfg = synthetic_corpus_config(
        args.out,
        languages=args.languages,
        docs_per_language=args.docs,
        seed=args.seed,
        **_common_config(args, default_vocab=4096),
    )
    return _report(build_corpus(cfg))


def _build(args: argparse.Namespace) -> int:
    from babel_interp.corpus.build import CorpusConfig, build_corpus
    from babel_interp.corpus.sources import FilterConfig, SourceSpec, parse_source_arg

    sources = []
    for arg in args.source:
        spec = parse_source_arg(arg, kind="local")
        if args.skip_tests:
            spec.options["skip_tests"] = True
        sources.append(spec)
    for arg in args.jsonl:
        spec = parse_source_arg(arg, kind="jsonl")
        spec.options.update(text_field=args.text_field, language_field=args.language_field)
        sources.append(spec)
    sources += [SourceSpec(kind="hf", path=spec) for spec in args.hf]
    if not sources:
        raise ValueError(
            "corpus build needs at least one source: --source [LANG=]PATH, --jsonl FILE or "
            "--hf SPEC"
        )
    cfg = CorpusConfig(
        out=args.out,
        sources=sources,
        languages=args.languages,
        filters=FilterConfig(max_bytes=args.max_doc_bytes),
        seed=args.seed,
        **_common_config(args, default_vocab=8192),
    )
    return _report(build_corpus(cfg))


def _info(args: argparse.Namespace) -> int:
    from babel_interp.corpus.build import CorpusSummary

    summary = CorpusSummary.from_manifest(args.corpus)
    if args.json:
        json.dump(summary.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(summary.table())
    return 0


def _fetch_debian(args: argparse.Namespace) -> int:
    from babel_interp.corpus.debian import DebianFetchConfig, fetch_debian

    packages: dict[str, list[str]] = {}
    for item in args.packages:
        lang, eq, names = item.partition("=")
        if not eq or not _csv(names):
            raise ValueError(f"--packages {item!r} is not LANG=NAME,NAME,...")
        packages[lang.strip()] = _csv(names)
    cfg = DebianFetchConfig(
        languages=args.language,
        out=args.out,
        cache_dir=args.cache,
        packages=packages,
        drop_tests=not args.keep_tests,
        max_file_bytes=args.max_file_bytes,
        update_lists=args.update_lists,
        progress=not args.quiet,
    )
    summary = fetch_debian(cfg)
    print(summary.table())
    print(f"trees and {summary.manifest_path.name} written to {summary.out_dir}")
    if args.build:
        from babel_interp.corpus.build import CorpusConfig, build_corpus
        from babel_interp.corpus.sources import SourceSpec
        from babel_interp.corpus.tokenizer import TokenizerConfig

        trees = {
            lang: path for lang, path in summary.language_dirs().items() if lang in cfg.languages
        }
        sources = [
            SourceSpec(
                kind="local",
                path=sysconfig.get_paths()["stdlib"],
                language="python",
                options={"skip_tests": True},
            )
        ]
        sources += [SourceSpec(kind="local", path=p, language=lang) for lang, p in trees.items()]
        corpus = build_corpus(
            CorpusConfig(
                out=args.build,
                sources=sources,
                languages=["python", *trees],
                tokenizer=TokenizerConfig(vocab_size=args.vocab_size),
                filters=_filters(args.max_file_bytes),
                progress=not args.quiet,
            )
        )
        _report(corpus)
        print(f"provenance of the {', '.join(trees)} trees: {summary.manifest_path}")
    return 1 if summary.failures else 0


def _filters(max_bytes: int) -> Any:
    from babel_interp.corpus.sources import FilterConfig

    return FilterConfig(max_bytes=max_bytes)
