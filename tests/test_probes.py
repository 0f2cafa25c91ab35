"""Probe sets: synthetic sites, real-code mining, controls, JSONL files."""

from __future__ import annotations

import json
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from babel_interp.analysis.working_language.probes import (
    Probe,
    build_probes,
    check_coverage,
    find_builtin_sites,
    find_call_sites,
    load_probes_jsonl,
    probe_coverage,
    probes_from_corpus,
    probes_from_texts,
    save_probes_jsonl,
    truncate_prompt,
)
from babel_interp.corpus.synthetic import SyntheticConfig, render_document
from babel_interp.languages import get_language


@pytest.fixture(scope="module")
def synthetic_probes():
    return build_probes("python", "php", n_per_pair=10, seed=0)


def _document(probe: Probe):
    m = re.match(r"synth-s(\d+)-(\w+)-(\d+)$", probe.doc_id)
    assert m, probe.doc_id
    return render_document(SyntheticConfig(seed=int(m.group(1))), m.group(2), int(m.group(3)))


def test_synthetic_probes_meet_the_paper_design(synthetic_probes):
    cov = probe_coverage(synthetic_probes)
    assert (cov["n"] >= 10).sum() >= 5
    assert check_coverage(synthetic_probes, min_pairs=5, n_per_pair=10) == []
    php = get_language("php").builtins
    py = get_language("python").builtins
    for p in synthetic_probes:
        assert p.target == php[p.concept] and p.primary == py[p.concept]
        assert (p.primary_language, p.target_language, p.source) == ("python", "php", "synthetic")
    # Prompts of one pair come from several documents, not one file repeated.
    per_pair_docs = cov.merge(
        probe_coverage(list({(p.pair, p.doc_id): p for p in synthetic_probes}.values())),
        on=["concept", "primary", "target"],
    )
    assert (per_pair_docs["n_y"] >= 5).all()


@pytest.mark.parametrize("target", ["csharp", "go", "cpp"])
def test_every_paper_language_gets_the_paper_design(target):
    probes = build_probes("python", target, n_per_pair=10, seed=0)
    assert check_coverage(probes, min_pairs=5, n_per_pair=10) == []
    # Concepts spelled alike in the target share one pair (C++ size for length and count).
    cov = probe_coverage(probes)
    assert cov[["primary", "target"]].duplicated().sum() == 0


def test_synthetic_prompts_end_right_before_the_identifier(synthetic_probes):
    for p in synthetic_probes[::7]:
        text = _document(p).text
        assert text.startswith(p.prompt + p.target)
        assert not text[len(p.prompt + p.target)].isalnum()  # the whole identifier
        assert p.control_prompt is not None and p.random_prompt is not None
        assert text.startswith(p.control_prompt + p.control_identifier)
        assert p.control_identifier not in get_language("php").builtins.values()
        assert text.startswith(p.random_prompt + p.random_next)
        sites = {s.offset for s in _document(p).sites if s.kind == "builtin"}
        assert len(p.random_prompt) not in sites
        assert [s for s, _, _ in p.sites()] == ["probe", "matched", "random"]


def test_synthetic_probes_are_deterministic_and_seeded():
    a = build_probes("python", "php", n_per_pair=3, seed=1)
    b = build_probes("python", "php", n_per_pair=3, seed=1)
    c = build_probes("python", "php", n_per_pair=3, seed=2)
    assert a == b
    assert [p.prompt for p in a] != [p.prompt for p in c]


def test_synthetic_probes_reject_unknown_or_unrendered_languages():
    with pytest.raises(ValueError, match="unknown language"):
        build_probes("python", "klingon")
    with pytest.raises(ValueError, match="synthetic generator renders only"):
        build_probes("python", "ruby", n_per_pair=1, max_documents=5)


def test_truncate_keeps_the_end_from_a_line_start():
    text = "line one\n" * 1000 + "tail"
    cut = truncate_prompt(text, 100)
    assert len(cut) <= 100 and cut.endswith("tail") and cut.startswith("line one")


PHP = """<?php
function demo($s, $items) {
    $n = strlen($s);
    if ($n > 3) {
        echo $s;
    }
    $up = strtoupper($s);
    $strlen = 4;
    $k = $obj->strlen($s);
    $total = helper_sum($items) + count($items);
    return format_row($up, $k, $total);
}
"""


def test_site_finders_on_php():
    sites = find_builtin_sites(PHP, ["strlen", "strtoupper", "count", "echo"])
    found = [(PHP[o : o + len(i)], i) for o, i in sites]
    assert all(a == b for a, b in found)
    idents = [i for _, i in sites]
    assert idents.count("strlen") == 2  # the call and the method call; never $strlen
    assert "echo" not in idents  # not followed by "("
    words = [i for _, i in find_builtin_sites(PHP, ["echo"], call_only=False)]
    assert words == ["echo"]
    calls = [i for _, i in find_call_sites(PHP, exclude={"strlen", "strtoupper", "count"})]
    assert calls == ["demo", "helper_sum", "format_row"]


def test_probes_from_texts_with_fallback_and_controls():
    docs = [(f"d{i}", PHP) for i in range(3)]
    probes = probes_from_texts(docs, "python", "php", n_per_pair=2, seed=0)
    by_target = {}
    for p in probes:
        by_target.setdefault(p.target, []).append(p)
    assert set(by_target) == {"strlen", "strtoupper", "count", "echo"}
    assert all(len(v) == 2 for v in by_target.values())
    for p in probes:
        assert PHP.startswith(p.prompt + p.target)
        assert p.control_identifier in {"demo", "helper_sum", "format_row"}
        assert PHP.startswith(p.control_prompt)
    # echo never appears as a call, so its whole-word occurrence is used.
    (echo,) = {p.prompt for p in by_target["echo"]}
    assert echo.endswith("{\n        ")


def test_probes_from_real_python_code():
    """Mining the interpreter's own standard library (real code), Python as the new language."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = ["textwrap.py", "shlex.py", "string.py", "csv.py", "difflib.py", "pprint.py"]
    docs = [(f, (stdlib / f).read_text(encoding="utf-8")) for f in files]
    with pytest.warns(UserWarning, match="fewer than 3 probe sites"):
        probes = probes_from_texts(docs, "php", "python", n_per_pair=3, seed=0, source="stdlib")
    cov = probe_coverage(probes)
    assert len(cov) >= 5
    texts = dict(docs)
    for p in probes:
        assert p.primary_language == "php" and p.target_language == "python"
        assert texts[p.doc_id].startswith(p.prompt + p.target) or len(p.prompt) >= 3900
        if p.control_prompt is not None:
            assert p.control_identifier not in get_language("python").builtins.values()


def test_probes_from_a_corpus_split(tmp_path):
    from babel_interp.corpus.shards import ShardWriter, write_manifest
    from babel_interp.corpus.tokenizer import TokenizerConfig, train_on_texts

    docs = [PHP.replace("demo", f"demo{i}") for i in range(4)]
    tok = train_on_texts(docs * 3, TokenizerConfig(vocab_size=400), tmp_path / "tokenizer")
    splits = {}
    for split in ("train", "val"):
        w = ShardWriter(tmp_path, split, ["python", "php"], len(tok), tok.eos_token_id)
        for d in docs:
            ids = tok(d, add_special_tokens=False)["input_ids"]
            w.add("php", np.asarray(ids), len(d.encode()))
        splits[split] = w.close()
    info = {"vocab_size": len(tok), "eos_id": tok.eos_token_id, "hash": "test"}
    write_manifest(tmp_path, ["python", "php"], splits, info)
    probes = probes_from_corpus(tmp_path, "python", "php", n_per_pair=2, seed=0)
    assert {p.target for p in probes} == {"strlen", "strtoupper", "count", "echo"}
    assert all(p.doc_id.startswith("val:") and p.source == "corpus:val" for p in probes)
    assert all(any(d.startswith(p.prompt + p.target) for d in docs) for p in probes)
    with pytest.raises(ValueError, match="no 'go' documents"):
        probes_from_corpus(tmp_path, "python", "go")


def test_jsonl_round_trip_and_defaults(tmp_path, synthetic_probes):
    path = save_probes_jsonl(synthetic_probes[:5], tmp_path / "p.jsonl")
    assert load_probes_jsonl(path) == synthetic_probes[:5]
    user = tmp_path / "user.jsonl"
    user.write_text(
        json.dumps({"prompt": "$n = ", "target": "strlen", "primary": "len"}) + "\n\n",
        encoding="utf-8",
    )
    (p,) = load_probes_jsonl(user, primary_language="python", target_language="php")
    assert p.prompt == "$n = " and p.sites() == [("probe", "$n = ", "strlen")]
    assert (p.concept, p.source, p.target_language) == ("strlen", "jsonl", "php")


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"bad\.jsonl:1: not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "x", "target": "strlen"}', "missing required field"),
        ('{"prompt": "x", "target": "str len", "primary": "len"}', "without whitespace"),
        ('{"prompt": "x", "target": "a", "primary": "b", "colour": 1}', "unknown field"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_probes_jsonl(path)


def test_jsonl_missing_or_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_probes_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no probes"):
        load_probes_jsonl(tmp_path / "empty.jsonl")
