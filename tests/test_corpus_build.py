"""Corpus builds from the stdlib, the generator, JSONL and Parquet: labels, determinism, errors."""

from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from babel_interp.cli import main
from babel_interp.corpus.build import (
    CorpusBuildError,
    CorpusConfig,
    CorpusSummary,
    build_corpus,
    content_digest,
    normalize_text,
    split_of,
    synthetic_corpus_config,
)
from babel_interp.corpus.shards import CorpusReader
from babel_interp.corpus.sources import SkipStats, SourceSpec
from babel_interp.corpus.tokenizer import TokenizerConfig, load_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SMALL_TOK = TokenizerConfig(vocab_size=512, sample_bytes=400_000)


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _parquet(path: Path, rows: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    return path


def _synth(languages=("python", "php", "go"), docs=40) -> SourceSpec:
    from babel_interp.corpus.synthetic import SyntheticConfig

    cfg = SyntheticConfig(languages=languages, docs_per_language=docs)
    return SourceSpec("synthetic", options=cfg.to_dict())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    json_init = (STDLIB / "json" / "__init__.py").read_text(encoding="utf-8")
    jsonl = _jsonl(
        d / "extra.jsonl",
        [
            {"content": "<?php\nfunction twice($x) { return 2 * $x; }\n", "language": "PHP"},
            {
                "content": "package util\n\nfunc Twice(x int) int { return 2 * x }\n",
                "language": "go",
            },
            # The same file as in the stdlib source, with CRLF line endings: a duplicate.
            {"content": json_init.replace("\n", "\r\n"), "language": "python"},
            {"content": "echo '<|endoftext|>';\r\n", "language": "php"},
        ],
    )
    parquet = _parquet(
        d / "cs" / "part-0.parquet",
        {
            "content": [
                "class A { static int Twice(int x) => 2 * x; }\n",
                'class B { void Run() { System.Console.WriteLine("hi"); } }\n',
                "namespace N { class C { } }\n",
            ],
            "language": ["C#", "c#", "csharp"],
        },
    )
    return {"jsonl": jsonl, "parquet": parquet}


def _mixed_config(out, inputs, **kw) -> CorpusConfig:
    return CorpusConfig(
        out=str(out),
        sources=[
            SourceSpec("local", str(STDLIB / "json"), "python"),
            SourceSpec("local", str(STDLIB / "email"), "python"),
            _synth(),
            SourceSpec("jsonl", str(inputs["jsonl"])),
            SourceSpec("hf", f"parquet:{inputs['parquet'].parent}/*.parquet"),
        ],
        tokenizer=SMALL_TOK,
        val_fraction=0.2,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, inputs):
    out = tmp_path_factory.mktemp("mixed") / "corpus"
    cfg = _mixed_config(out, inputs)
    return cfg, build_corpus(cfg)


def _expected_documents(cfg: CorpusConfig) -> dict[bytes, tuple[str, str]]:
    """digest -> (language, text) of every document that should survive, read independently."""
    expected: dict[bytes, tuple[str, str]] = {}
    for spec in cfg.sources:
        for doc in spec.iterate(cfg.filters, SkipStats()):
            text = normalize_text(doc.text)
            expected.setdefault(content_digest(text), (doc.language, text))
    return expected


def _check_every_label(corpus_dir: Path, cfg: CorpusConfig) -> dict[bytes, str]:
    """Re-tokenize every document and check its tokens and per-token labels in the shards."""
    from tokenizers import Tokenizer

    reader = CorpusReader(corpus_dir)
    tok = load_tokenizer(reader.tokenizer_dir)
    ref = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    ref.encode_special_tokens = True  # document text is text, even if it spells a special
    expected = _expected_documents(cfg)
    found: dict[bytes, str] = {}
    for split in ("train", "val"):
        shard = reader.split(split)
        for start, end in shard.documents():
            ids, labels = shard.window(start, end - start)
            assert ids[-1] == reader.eos_id and not (ids[:-1] == reader.eos_id).any()
            text = ref.decode(ids[:-1].tolist(), skip_special_tokens=False)
            digest = content_digest(text)
            assert digest in expected, f"a document in {split} is no source document"
            language, source_text = expected[digest]
            assert text == source_text
            assert ids[:-1].tolist() == ref.encode(source_text, add_special_tokens=False).ids
            assert (labels == reader.lang_id(language)).all()
            lo, hi = shard.language_range(language)
            assert lo <= start and end <= hi
            assert digest not in found, "a document appears twice"
            found[digest] = split
    assert set(found) == set(expected), "documents were lost"
    return found


def test_mixed_corpus_keeps_every_token_label(mixed):
    cfg, summary = mixed
    reader = CorpusReader(cfg.out)
    assert reader.languages == ["python", "php", "go", "csharp"]
    found = _check_every_label(Path(cfg.out), cfg)
    # The split is the hash rule, except for documents moved so each language has both splits
    # (here: C#, 3 documents, none of which hashed into validation).
    moved = [d for d, split in found.items() if split != split_of(d, cfg.seed, cfg.val_fraction)]
    assert len(moved) == reader.manifest["build"]["moved_for_split_guarantee"] == 1
    assert summary.language("csharp").val_documents == 1
    py = summary.language("python")
    assert py.skipped.get("duplicate") == 1  # the CRLF copy of json/__init__.py
    assert py.sources[f"local:python={STDLIB / 'json'}"] >= 4
    assert summary.language("csharp").documents == 3
    assert summary.tokenizer_hash == reader.manifest["tokenizer"]["hash"]


def test_manifest_per_language_totals(mixed):
    cfg, summary = mixed
    m = CorpusReader(cfg.out).manifest
    for lang, info in m["per_language"].items():
        tr = m["splits"]["train"]["languages"][lang]
        va = m["splits"]["val"]["languages"][lang]
        assert info["documents"] == tr["docs"] + va["docs"] > 0
        assert info["tokens"] == tr["tokens"] + va["tokens"]
        assert info["bytes"] == tr["bytes"] + va["bytes"]
        assert info["bytes_per_token"] == pytest.approx(info["bytes"] / info["tokens"])
        assert info["sources"] and isinstance(info["skipped"], dict)
    assert m["tokenizer"]["vocab_size"] == 512 and m["tokenizer"]["eos_id"] == 0
    assert m["tokenizer"]["pad_id"] == 1 and m["tokenizer"]["trained"] is True
    assert m["dtype"] == "uint16"
    assert m["build"]["config"]["val_fraction"] == 0.2 and "out" not in m["build"]["config"]
    df = summary.to_dataframe()
    assert list(df["language"]) == ["python", "php", "go", "csharp"]
    assert {"documents", "MB", "train_tokens", "bytes_per_token", "skipped"} <= set(df.columns)
    again = CorpusSummary.from_manifest(cfg.out).to_dataframe()
    assert again.drop(columns=["bytes_per_token"]).equals(df.drop(columns=["bytes_per_token"]))
    assert "csharp" in summary.table() and "MB/s" in summary.table()


def test_rebuild_is_byte_identical(mixed, inputs, tmp_path):
    cfg, _ = mixed
    out = tmp_path / "again"
    # Tokenized in two worker processes this time: the bytes must not depend on that either.
    build_corpus(_mixed_config(out, inputs, workers=2, batch_bytes=50_000))
    a, b = Path(cfg.out), out
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert {str(f) for f in files_a} >= {
        "manifest.json",
        "train/tokens.bin",
        "train/langs.bin",
        "train/docs.npy",
        "val/tokens.bin",
        "tokenizer/tokenizer.json",
    }
    for f in files_a:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_split_does_not_depend_on_order_or_other_sources(tmp_path):
    srcs = [
        SourceSpec("local", str(STDLIB / "json"), "python"),
        SourceSpec("local", str(STDLIB / "http"), "python"),
    ]
    common = dict(tokenizer=TokenizerConfig(vocab_size=300), progress=False, val_fraction=0.3)
    both = build_corpus(CorpusConfig(out=str(tmp_path / "a"), sources=srcs, **common))
    flipped = CorpusConfig(out=str(tmp_path / "b"), sources=srcs[::-1], **common)
    build_corpus(flipped)
    alone = CorpusConfig(out=str(tmp_path / "c"), sources=srcs[:1], **common)
    build_corpus(alone)
    splits = [_check_every_label(tmp_path / n, c) for n, c in (("b", flipped), ("c", alone))]
    for digest, split in splits[1].items():
        assert splits[0][digest] == split
    assert both.language("python").val_documents > 0
    reseeded = CorpusConfig(out=str(tmp_path / "d"), sources=srcs[:1], seed=7, **common)
    build_corpus(reseeded)
    by_seed_7 = _check_every_label(tmp_path / "d", reseeded)
    assert by_seed_7 != splits[1], "the seed must change the split"
    assert all(split_of(d, 7, 0.3) == split for d, split in by_seed_7.items())


def test_every_language_gets_a_validation_document(tmp_path):
    cfg = synthetic_corpus_config(
        tmp_path / "c",
        languages=("python", "go"),
        docs_per_language=4,
        tokenizer=TokenizerConfig(vocab_size=300),
        val_fraction=0.001,
        progress=False,
    )
    summary = build_corpus(cfg)
    for lang in ("python", "go"):
        s = summary.language(lang)
        assert (s.train_documents, s.val_documents) == (3, 1)
    assert CorpusReader(cfg.out).manifest["build"]["moved_for_split_guarantee"] == 2
    _check_every_label(Path(cfg.out), cfg)


def test_reusing_a_tokenizer(mixed, tmp_path):
    cfg, summary = mixed
    out = tmp_path / "reuse"
    reused = CorpusConfig(
        out=str(out),
        sources=[_synth(("python", "cpp"), 10)],
        tokenizer_dir=str(Path(cfg.out) / "tokenizer"),
        progress=False,
    )
    s = build_corpus(reused)
    assert s.tokenizer_hash == summary.tokenizer_hash
    assert CorpusReader(out).manifest["tokenizer"]["trained"] is False
    _check_every_label(out, reused)


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming the problem, and nothing lost
# ---------------------------------------------------------------------------------------------


def _tiny(out, **kw) -> CorpusConfig:
    kw.setdefault("sources", [_synth(("python", "php"), 6)])
    return CorpusConfig(
        out=str(out), tokenizer=TokenizerConfig(vocab_size=300), progress=False, **kw
    )


def _no_leftovers(parent: Path, expected: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == expected


def test_empty_sources_are_errors(tmp_path):
    with pytest.raises(ValueError, match="CorpusConfig.sources is empty"):
        CorpusConfig(out=str(tmp_path / "c"), sources=[])
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("no code here")
    with pytest.raises(CorpusBuildError, match=r"source local:.*docs yielded no documents"):
        build_corpus(_tiny(tmp_path / "c", sources=[SourceSpec("local", str(docs))]))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CorpusBuildError, match=r"source jsonl:.*empty.jsonl yielded no documents"):
        build_corpus(_tiny(tmp_path / "c", sources=[_synth(), SourceSpec("jsonl", str(empty))]))
    _no_leftovers(tmp_path, {"docs", "empty.jsonl"})


def test_unknown_language_names_are_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="CorpusConfig.languages: unknown language 'klingon'"):
        _tiny(tmp_path / "c", languages=["python", "klingon"])
    rc = main(["corpus", "build", "--out", str(tmp_path / "c"), "--source", "klingon=/src"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "babel-interp: error: source 'klingon=/src': unknown language 'klingon'" in err
    assert "known languages: python" in err
    assert not (tmp_path / "c").exists()


def test_unreadable_files_are_counted_and_named(tmp_path):
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "ok.py").write_text("def f():\n    return 1\n")
    os.symlink(tree / "gone.py", tree / "broken.py")
    summary = build_corpus(_tiny(tmp_path / "c", sources=[SourceSpec("local", str(tree))]))
    assert summary.language("python").skipped == {"unreadable": 1}
    examples = CorpusReader(tmp_path / "c").manifest["build"]["skip_examples"]["python"]
    assert "broken.py" in examples["unreadable"][0]
    # An unreadable source itself stops the build before anything is written.
    with pytest.raises(ValueError, match="is a directory, not a file"):
        build_corpus(_tiny(tmp_path / "d", sources=[SourceSpec("jsonl", str(tree))]))
    with pytest.raises(ValueError, match="does not exist"):
        build_corpus(_tiny(tmp_path / "d", sources=[SourceSpec("local", str(tree / "nope"))]))
    _no_leftovers(tmp_path, {"src", "c"})


def test_language_without_surviving_documents_is_an_error(tmp_path):
    jsonl = _jsonl(
        tmp_path / "php.jsonl",
        [
            {"content": "<?php echo 1;" * 400, "language": "php"},
            {"content": "<?php\n// DO NOT EDIT: generated\n$a = 1;\n", "language": "php"},
            {"content": "print('the source itself is not empty')\n", "language": "python"},
        ],
    )
    cfg = _tiny(
        tmp_path / "c",
        sources=[SourceSpec("local", str(STDLIB / "json")), SourceSpec("jsonl", str(jsonl))],
        languages=["python", "php"],
    )
    with pytest.raises(CorpusBuildError) as exc:
        build_corpus(cfg)
    msg = str(exc.value)
    assert "no documents survived for language(s) ['php']" in msg
    assert "php: generated=1, minified=1" in msg and "php.jsonl:1" in msg
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "a.go").write_text("// Code generated by x. DO NOT EDIT.\npackage a\n")
    with pytest.raises(CorpusBuildError, match=r"local:go=.*gen yielded no documents \(gen"):
        build_corpus(_tiny(tmp_path / "c", sources=[SourceSpec("local", str(gen), "go")]))
    _no_leftovers(tmp_path, {"php.jsonl", "gen"})


def test_reusing_a_corpus_directory_with_another_tokenizer(tmp_path):
    out = tmp_path / "c"
    first = build_corpus(_tiny(out))
    manifest = (out / "manifest.json").read_bytes()
    # The same build again is allowed (same tokenizer) and idempotent.
    assert build_corpus(_tiny(out)).tokenizer_hash == first.tokenizer_hash
    assert (out / "manifest.json").read_bytes() == manifest
    other = _tiny(out, tokenizer_dir=None)
    other.tokenizer = TokenizerConfig(vocab_size=320)
    with pytest.raises(CorpusBuildError) as exc:
        build_corpus(other)
    msg = str(exc.value)
    assert "holds a corpus built with a different tokenizer" in msg
    assert first.tokenizer_hash[:12] in msg and "--overwrite" in msg and "--tokenizer" in msg
    assert (out / "manifest.json").read_bytes() == manifest  # untouched
    _check_every_label(out, _tiny(out))
    _no_leftovers(tmp_path, {"c"})
    # Reusing the corpus's own tokenizer works; --overwrite replaces it explicitly.
    reuse = _tiny(out, tokenizer_dir=str(out / "tokenizer"))
    assert build_corpus(reuse).tokenizer_hash == first.tokenizer_hash
    other.overwrite = True
    assert build_corpus(other).vocab_size == 320
    _no_leftovers(tmp_path, {"c"})


def test_foreign_data_in_the_output_directory_is_never_touched(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CorpusBuildError, match=r"is not empty and holds no corpus \(notes.txt\)"):
        build_corpus(_tiny(out))
    (out / "notes.txt").unlink()
    build_corpus(_tiny(out))  # an empty directory is fine
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CorpusBuildError, match=r"holds a corpus and other files \['notes.txt'\]"):
        build_corpus(_tiny(out, overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"


def test_a_failing_source_leaves_no_half_corpus(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "x = 1", "language": "python"}\n{oops\n')
    spec = SourceSpec("jsonl", str(bad), options={"strict": True})
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        build_corpus(_tiny(tmp_path / "c", sources=[_synth(), spec]))
    _no_leftovers(tmp_path, {"bad.jsonl"})


def test_tokenizer_weights_must_cover_the_corpus(tmp_path):
    cfg = _tiny(tmp_path / "c")
    cfg.tokenizer = TokenizerConfig(vocab_size=300, language_weights={"python": 1.0})
    with pytest.raises(ValueError, match="no weight for language 'php'"):
        build_corpus(cfg)
    cfg.tokenizer = TokenizerConfig(vocab_size=300, language_weights={"python": 1, "php": 0})
    build_corpus(cfg)
    _check_every_label(tmp_path / "c", cfg)


def test_config_round_trip_and_validation(tmp_path, inputs):
    cfg = _mixed_config(tmp_path / "c", inputs)
    assert CorpusConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="CorpusConfig.val_fraction"):
        _tiny(tmp_path, val_fraction=1.5)
    with pytest.raises(ValueError, match="CorpusConfig.seed"):
        _tiny(tmp_path, seed="x")
    with pytest.raises(ValueError, match="unknown field"):
        CorpusConfig.from_dict({"out": "x", "sources": [], "colour": 1})


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli_synth_build_and_info(tmp_path, inputs, capsys):
    synth = tmp_path / "synth"
    args = ["corpus", "synth", "--out", str(synth), "--languages", "python,php"]
    assert main(args + ["--docs", "15", "--vocab-size", "300", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "python" in out and "php" in out and f"corpus written to {synth}" in out
    reader = CorpusReader(synth)
    assert reader.languages == ["python", "php"] and reader.vocab_size == 300
    train = reader.split("train")
    lo, hi = train.language_range("php")
    assert (np.asarray(train.lang_ids[lo:hi]) == 1).all()

    built = tmp_path / "built"
    args = [
        "corpus",
        "build",
        "--out",
        str(built),
        "--source",
        f"python={STDLIB / 'json'}",
        "--jsonl",
        str(inputs["jsonl"]),
        "--hf",
        f"parquet:{inputs['parquet'].parent}/*.parquet",
        "--vocab-size",
        "300",
        "--quiet",
    ]
    assert main(args) == 0
    assert CorpusReader(built).languages == ["python", "php", "go", "csharp"]
    capsys.readouterr()
    assert main(["corpus", "info", str(built)]) == 0
    info = capsys.readouterr().out
    assert "csharp" in info and "duplicate=1" in info
    assert main(["corpus", "info", str(built), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vocab_size"] == 300
    assert main(["corpus", "info", str(tmp_path)]) == 1
    assert "manifest.json is missing" in capsys.readouterr().err
    assert main(["corpus", "build", "--out", str(tmp_path / "x")]) == 1
    assert "needs at least one source" in capsys.readouterr().err
