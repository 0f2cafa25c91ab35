"""Performance per checkpoint: completion accuracy, validation loss, the run's eval series."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from _model_fixtures import TEXT, TINY, memorized_model

from babel_interp.analysis.performance import (
    CompletionItem,
    PerformanceResult,
    _identifier_match,
    _line_match,
    analyze_run,
    as_completion_item,
    completion_accuracy,
    evaluate_checkpoints,
    greedy_continuations,
    load_completion_items,
    performance_series,
    save_completion_items,
    site_completion_items,
    synthetic_completion_items,
    validation_loss,
)
from babel_interp.corpus.shards import CorpusReader, ShardWriter, write_manifest
from babel_interp.model import build_model, save_model
from babel_interp.runs import checkpoint_dirname


@pytest.fixture(scope="module")
def trained(small_tokenizer):
    """A tiny model that has memorized TEXT (repeated, EOS-separated)."""
    return memorized_model(small_tokenizer)


def test_matching_rules():
    assert _identifier_match(" len(items)", " len", ended=False)
    assert _identifier_match("len(items)", " len", ended=False)  # whitespace is lenient
    assert not _identifier_match(" length(items)", " len", ended=False)  # cannot be extended
    assert not _identifier_match(" 73", " 7", ended=False)
    assert _identifier_match(" 7 + 3", " 7", ended=False)
    assert _identifier_match(" len", " len", ended=True)  # EOS right after it
    assert not _identifier_match(" len", " len", ended=False)  # budget ran out: unknown
    assert not _identifier_match(" strlen(", " len", ended=False)
    assert _line_match(" len(items)\n    x", " len(items)", ended=False)
    assert _line_match(" len(items)  ", " len(items)", ended=True)
    assert not _line_match(" len(items)", " len(items)", ended=False)  # line not finished
    assert not _line_match(" len(item)\n", " len(items)", ended=False)


def _reference_greedy(model, tok, prompt, n):
    """One prompt, no padding, no batching: the plain definition of greedy decoding."""
    ids = [tok.eos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    with torch.inference_mode():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids]), return_type="logits")[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
            out.append(nxt)
    return tok.decode(out)


def test_batched_greedy_matches_unbatched_reference(small_tokenizer):
    model = build_model(TINY, tokenizer=small_tokenizer)
    prompts = ["def", "function count($items) {\n    return", "x = len(", "return strlen($s", "d"]
    one = greedy_continuations(
        model, small_tokenizer, prompts, max_new_tokens=6, batch_size=1, stop_at_newline=False
    )
    five = greedy_continuations(
        model, small_tokenizer, prompts, max_new_tokens=6, batch_size=5, stop_at_newline=False
    )
    assert one == five
    # Without stop rules firing early, the text is the reference's prefix up to where it stopped.
    for prompt, (text, _) in zip(prompts, five, strict=True):
        ref = _reference_greedy(model, small_tokenizer, prompt, 6)
        assert ref.startswith(text)


def test_prompts_longer_than_the_context_keep_their_tail(small_tokenizer, monkeypatch):
    model = build_model(TINY, tokenizer=small_tokenizer)
    # Every line differs, so the head, the middle and the tail are different token sequences.
    long = "".join(f"x{i} = {i}\n" for i in range(200))
    ids = [small_tokenizer.eos_token_id] + small_tokenizer(long, add_special_tokens=False)[
        "input_ids"
    ]
    max_new = 4
    keep = TINY.n_ctx - max_new
    assert len(ids) > 3 * TINY.n_ctx
    tail = ids[-keep:]
    seen = []
    forward = model.forward

    def spy(tokens, *args, **kwargs):
        seen.append(tokens.clone())
        return forward(tokens, *args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    ((text, _),) = greedy_continuations(
        model, small_tokenizer, [long], max_new_tokens=max_new, stop_at_newline=False
    )
    # The first forward is the prompt alone: exactly its last n_ctx - max_new_tokens tokens.
    assert seen[0].tolist() == [tail]
    # Each later forward is that tail plus the tokens written so far, never past the context.
    for k, tokens in enumerate(seen[1:], start=1):
        assert tokens.shape == (1, keep + k) and tokens[0, :keep].tolist() == tail
    # What comes back is the greedy continuation of the tail (unbatched reference decoding).
    ref: list[int] = []
    with torch.inference_mode():
        for _ in range(max_new):
            nxt = int(forward(torch.tensor([tail + ref]), return_type="logits")[0, -1].argmax())
            if nxt == small_tokenizer.eos_token_id:
                break
            ref.append(nxt)
    assert text and small_tokenizer.decode(ref).startswith(text)
    with pytest.raises(ValueError, match="leaves no room"):
        greedy_continuations(model, small_tokenizer, ["x"], max_new_tokens=64)


def test_completion_accuracy_on_a_model_that_knows_the_answer(trained, small_tokenizer):
    items = [
        CompletionItem("def count(items):\n    return ", "len", "len(items)", group="a"),
        CompletionItem("def count(items):\n    return", " strlen", " strlen($items);", group="a"),
        CompletionItem("def count(items):\n    return len(", "items", "items)", group="b"),
        CompletionItem("def count(", "items", "items):", group="c"),
    ]
    res = completion_accuracy(trained, small_tokenizer, items, max_new_tokens=12, progress=False)
    assert res.solved("identifier") == {0, 2, 3}
    assert res.solved("line") == {0, 2, 3}
    assert res.identifier_accuracy.estimate == pytest.approx(0.75)
    assert res.identifier_accuracy.low <= 0.75 <= res.identifier_accuracy.high
    assert res.line_accuracy.n == 4
    df = res.to_dataframe()
    assert list(df["identifier_match"]) == [True, False, True, True]
    assert df.loc[0, "generated"].startswith(" len(items)")
    summary = res.summary()
    assert summary["n"] == 4 and summary["line_accuracy"] == pytest.approx(0.75)
    # Without line answers only the identifier is decoded and scored.
    res = completion_accuracy(
        trained,
        small_tokenizer,
        [CompletionItem("def count(items):\n    return", " len")],
        progress=False,
    )
    assert res.line_accuracy is None and res.solved() == {0}
    with pytest.raises(ValueError, match="at least one item"):
        completion_accuracy(trained, small_tokenizer, [])


def test_items_from_other_modules_and_files(tmp_path):
    from babel_interp.analysis.working_language.probes import Probe
    from babel_interp.corpus.synthetic import SyntheticConfig, fact_probe_items

    fact = fact_probe_items(SyntheticConfig(languages=("python", "php")), "php", 2)[0]
    item = as_completion_item(fact)
    assert item.answer == fact.answer and item.group == fact.fact_id
    assert item.kind == "planted_fact"
    probe = Probe(prompt="$n = ", target="strlen", primary="len", doc_id="d1")
    assert as_completion_item(probe).answer == "strlen"
    assert as_completion_item(probe).group == "d1"
    with pytest.raises(ValueError, match="needs a prompt"):
        as_completion_item(object())
    path = save_completion_items([item, probe], tmp_path / "items.jsonl")
    assert load_completion_items(path) == [item, as_completion_item(probe)]
    path.write_text('{"prompt": "x", "answr": "y"}\n')
    with pytest.raises(ValueError, match="items.jsonl:1"):
        load_completion_items(path)


def test_site_items_cut_the_document_at_the_site():
    from babel_interp.corpus.synthetic import SyntheticConfig

    cfg = SyntheticConfig(languages=("python", "php"), docs_per_language=5)
    items = synthetic_completion_items(cfg, "php", n_documents=4, max_per_document=2)
    assert 0 < len(items) <= 8
    assert all(it.language == "php" for it in items)
    for it in items:
        assert it.line_answer.startswith(it.answer) and "\n" not in it.line_answer
    # Held-out: not the documents of the training stream.
    from babel_interp.corpus.synthetic import generate_documents

    train_texts = {d.text for d in generate_documents(cfg)}
    assert not any(it.prompt in t for it in items for t in train_texts if len(it.prompt) > 200)
    docs = list(generate_documents(cfg))
    every = site_completion_items(docs, kinds=("builtin", "call"), max_per_document=None)
    n_sites = sum(1 for d in docs for s in d.sites if s.kind in ("builtin", "call"))
    assert len(every) == n_sites
    for it in every:
        doc = next(d for d in docs if d.doc_id == it.group)
        offset = int(it.item_id.split("@")[1])
        assert it.prompt == doc.text[:offset]
        assert doc.text[offset:].startswith(it.answer)


def _write_run(tmp_path, model, tokenizer, steps):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"corpus": "none"}))
    for step, m in steps.items():
        d = run / "checkpoints" / checkpoint_dirname(step)
        save_model(m, d, tokenizer=tokenizer)
        state = {"step": step, "tokens_seen": {"python": 100 * step}, "total_tokens": 100 * step}
        (d / "trainer_state.json").write_text(json.dumps(state))
    return run


def test_performance_series_aligns_evals_to_checkpoints(tmp_path):
    run = tmp_path / "run"
    for step in (0, 150, 400):
        d = run / "checkpoints" / checkpoint_dirname(step)
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text(
            json.dumps({"step": step, "tokens_seen": {"php": step * 10}, "total_tokens": step * 20})
        )
    records = [
        {
            "step": 0,
            "kind": "eval",
            "val_loss": {"php": 7.0, "python": 3.0},
            "val_bpb": {"php": 2.0},
        },
        {"step": 50, "kind": "train", "loss": 5.0},
        {"step": 100, "type": "eval", "val_loss": {"php": 5.0, "python": 3.5}},
        {"step": 400, "type": "eval", "val_loss": {"php": 4.0, "python": None}},
        {"step": 400, "kind": "eval", "val_loss": {"php": 3.9, "python": 4.1}},  # a resumed run
    ]
    lines = [json.dumps(r) for r in records] + ['{"step": 500, "kind": "ev']  # torn by a crash
    (run / "metrics.jsonl").write_text("\n".join(lines))
    df = performance_series(run)
    php = df[df["language"] == "php"].set_index("step")
    assert list(php.index) == [0, 150, 400]
    assert php.loc[0, "val_loss"] == 7.0 and php.loc[0, "val_bpb"] == 2.0
    assert php.loc[150, "val_loss"] == 5.0 and php.loc[150, "eval_step"] == 100
    assert math.isnan(php.loc[150, "val_bpb"])
    assert php.loc[400, "val_loss"] == 3.9
    assert php.loc[150, "tokens_seen"] == 1500 and php.loc[150, "total_tokens"] == 3000
    assert set(df["language"]) == {"php", "python"}
    py = df[df["language"] == "python"].set_index("step")
    assert py.loc[400, "val_loss"] == 4.1
    only = performance_series(run, languages=["python"])
    assert set(only["language"]) == {"python"} and len(only) == 3


def test_validation_loss_matches_a_direct_computation(tmp_path, small_tokenizer):
    corpus = tmp_path / "corpus"
    eos = small_tokenizer.eos_token_id
    languages = ["python", "php"]
    texts = {"python": TEXT * 3, "php": "function count($items) {\n    return strlen($items);\n}\n"}
    splits = {}
    for split in ("train", "val"):
        w = ShardWriter(corpus, split, languages, len(small_tokenizer), eos)
        for lang, text in texts.items():
            for _ in range(4):
                ids = small_tokenizer(text, add_special_tokens=False)["input_ids"]
                w.add(lang, ids, len(text.encode()))
        splits[split] = w.close()
    small_tokenizer.save_pretrained(corpus / "tokenizer")
    write_manifest(
        corpus, languages, splits, {"vocab_size": len(small_tokenizer), "eos_id": eos, "hash": "t"}
    )
    model = build_model(TINY, tokenizer=small_tokenizer)
    res = validation_loss(model, corpus, "php", seq_len=16, batch_size=3)
    reader = CorpusReader(corpus)
    val = reader.split("val")
    lo, hi = val.language_range("php")
    n_windows = (hi - lo - 1) // 16
    losses = []
    with torch.inference_mode():
        for k in range(n_windows):
            w = torch.from_numpy(val.window(lo + 16 * k, 17)[0])[None]
            logits = model(w[:, :-1], return_type="logits")
            losses.append(torch.nn.functional.cross_entropy(logits[0], w[0, 1:], reduction="sum"))
    expected = float(sum(losses)) / (16 * n_windows)
    assert res.n_tokens == 16 * n_windows
    assert res.loss == pytest.approx(expected, rel=1e-5)
    assert res.bpb == pytest.approx(expected / math.log(2) / reader.bytes_per_token("php"))
    with pytest.raises(KeyError, match="'go'"):
        validation_loss(model, reader, "go")
    with pytest.raises(ValueError, match="seq_len"):
        validation_loss(model, reader, "php", seq_len=1000)


def test_evaluate_checkpoints(tmp_path, trained, small_tokenizer):
    untrained = build_model(TINY, tokenizer=small_tokenizer)
    run = _write_run(tmp_path, trained, small_tokenizer, {0: untrained, 100: trained})
    items = [
        CompletionItem("def count(items):\n    return", " len", " len(items)", language="python"),
        CompletionItem("def count(", "items", "items):", language="python"),
        CompletionItem("function count($items) {\n    return", " strlen", language="php"),
    ]
    df, results = evaluate_checkpoints(run, items, max_new_tokens=12, progress=False)
    assert sorted(results) == [0, 100]
    assert set(df["language"]) == {"all", "python", "php"}
    py = df[df["language"] == "python"].set_index("step")
    assert py.loc[100, "identifier_accuracy"] == 1.0
    assert py.loc[0, "identifier_accuracy"] == 0.0
    assert results[100].solved() >= {0, 1}
    assert isinstance(df, pd.DataFrame) and np.isfinite(py["identifier_ci_low"]).all()
    with pytest.raises(ValueError, match="no checkpoint at step"):
        evaluate_checkpoints(run, items, steps=[50], progress=False)


def test_analyze_run_saves_a_result_that_loads_back(tmp_path, trained, small_tokenizer):
    untrained = build_model(TINY, tokenizer=small_tokenizer)
    run = _write_run(tmp_path, trained, small_tokenizer, {0: untrained, 100: trained})
    record = {"type": "eval", "step": 100, "val_loss": {"python": 1.5}, "val_bpb": {"python": 0.5}}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    items = [
        CompletionItem("def count(items):\n    return", " len", " len(items)", language="python"),
        CompletionItem("function count($items) {\n    return", " strlen", language="php"),
    ]
    result = analyze_run(run, items=items, max_new_tokens=12, n_boot=50, progress=False)
    saved = run / "analysis" / "performance"
    names = ["completion.csv", "completion_items.csv", "val_series.csv"]
    assert sorted(p.name for p in saved.iterdir()) == names
    assert list(result.to_dataframe()["val_loss"].dropna()) == [1.5]
    loaded = PerformanceResult.load(saved)
    pd.testing.assert_frame_equal(loaded.to_dataframe(), result.to_dataframe(), check_dtype=False)
    pd.testing.assert_frame_equal(loaded.completion, result.completion, check_dtype=False)
    assert len(loaded.completion_items) == len(result.completion_items) == 2 * len(items)
    # Saving what was loaded writes the same bytes.
    loaded.save(tmp_path / "again")
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (saved / name).read_bytes()
    # Without completion only the validation series is rewritten; the other tables stay.
    only = analyze_run(run, completion=False)
    assert only.completion is None and only.completion_items is None
    assert PerformanceResult.load(saved).completion is not None
    with pytest.raises(FileNotFoundError, match="analyze performance"):
        PerformanceResult.load(tmp_path / "nothing")
    # Neither items nor a synthetic corpus: nothing to decode, said before anything is written.
    with pytest.raises(ValueError, match="--probes"):
        analyze_run(run)
