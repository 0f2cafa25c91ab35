"""The trainer end to end on a tiny model: per-language losses, mixtures, callbacks, continual
pretraining, the CLI, and the attention/norm fast path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.corpus.shards import CorpusReader
from babel_interp.mixture import Mixture
from babel_interp.model import (
    ModelConfig,
    build_model,
    enable_fast_path,
    fast_path_active,
    get_preset,
    load_model,
)
from babel_interp.runs import list_checkpoints, read_metrics, read_run_config, run_corpus_dir
from babel_interp.training import (
    AnalyzerCallback,
    Callback,
    CheckpointConfig,
    CheckpointSchedule,
    ControllerCallback,
    HookCallback,
    LRSchedule,
    OptimConfig,
    TrainConfig,
    Trainer,
    read_trainer_state,
    train,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # One intra-op thread: a loaded 2-core machine thrashes OpenMP barriers (10x slower steps).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php"), docs=60)


def _cfg(corpus: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        corpus=str(corpus),
        out=str(out),
        steps=10,
        batch_size=8,
        seq_len=32,
        eval_every=5,
        eval_windows=4,
        progress=False,
        optim=OptimConfig(schedule=LRSchedule(lr=3e-3, warmup_steps=2)),
        checkpoints=CheckpointConfig(fsync=False),
    )
    base.update(kw)
    return TrainConfig(**base)


def _records(run: Path, kind: str) -> list[dict]:
    return [r for r in read_metrics(run) if r["type"] == kind]


def test_tiny_model_learns_and_logs_per_language_losses(corpus, tmp_path):
    run = tmp_path / "run"
    result = train(_cfg(corpus, run, steps=40, eval_every=20, mixture="python=0.5,php=0.5"))
    assert result.stop_reason == "completed" and result.step == 40
    evals = _records(run, "eval")
    # Every eval_every steps, and at every checkpoint (log-spaced by default) for the analyzers.
    ckpt_steps = {c.step for c in list_checkpoints(run)}
    assert [e["step"] for e in evals] == sorted({0, 20, 40} | ckpt_steps)
    assert ckpt_steps <= {e["step"] for e in evals}
    reader = CorpusReader(corpus)
    for lang in ("python", "php"):
        first, last = evals[0]["val_loss"][lang], evals[-1]["val_loss"][lang]
        assert last < 0.6 * first, (lang, first, last)
        bpt = reader.bytes_per_token(lang, "val")
        assert evals[-1]["val_bpb"][lang] == pytest.approx(last / math.log(2) / bpt)
    trains = _records(run, "train")
    assert [t["step"] for t in trains] == list(range(1, 41))
    for t in trains:
        assert set(t["loss_per_language"]) <= {"python", "php"}
        assert sum(t["tokens_seen"].values()) == t["tokens"] == t["step"] * 8 * 32
        assert t["lr"] > 0 and t["grad_norm"] > 0
    assert trains[-1]["loss"] < trains[0]["loss"] - 1.0
    # The run directory follows babel_interp.runs exactly.
    rc = read_run_config(run)
    assert rc["corpus_absolute"] == str(corpus.resolve()) and rc["seed"] == 0
    assert run_corpus_dir(run) == corpus.resolve()
    assert rc["mixture"]["weights"] == {"python": 0.5, "php": 0.5}
    assert rc["model"]["d_vocab"] == reader.vocab_size and rc["init_from"] is None
    assert TrainConfig.from_dict(rc["train"]).steps == 40
    ckpts = list_checkpoints(run)
    assert [c.step for c in ckpts] == [0, 1, 2, 4, 8, 16, 32, 40]
    assert ckpts[-1].total_tokens == 40 * 8 * 32
    assert ckpts[-1].tokens_seen == trains[-1]["tokens_seen"]
    state = read_trainer_state(ckpts[-1].path)
    assert state["data"]["next_step"] == 41 and state["mixture"]["weights"]["php"] == 0.5
    # The last checkpoint is the trained model: analyzers load it with load_model.
    model, mcfg = load_model(ckpts[-1].path)
    val = CorpusReader(corpus).split("val")
    tok, _ = val.window(0, 33)
    with torch.no_grad():
        logits = model(torch.from_numpy(tok[None, :-1]), return_type="logits")
    nats = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(tok[1:]))
    assert float(nats) < evals[0]["val_loss"]["python"] - 1.0


def test_gradient_accumulation_gives_the_full_batch_losses(corpus, tmp_path):
    full = train(_cfg(corpus, tmp_path / "full", steps=3, eval_every=0))
    accum = train(_cfg(corpus, tmp_path / "accum", steps=3, eval_every=0, micro_batch_size=2))
    a = [r["loss"] for r in _records(full.run_dir, "train")]
    b = [r["loss"] for r in _records(accum.run_dir, "train")]
    assert b == pytest.approx(a, rel=1e-5)


def test_phases_switch_languages_and_are_logged(corpus, tmp_path):
    run = tmp_path / "run"
    result = train(_cfg(corpus, run, steps=8, eval_every=0, mixture="0:python=1;6:php=1"))
    per_row = 32
    assert result.tokens_seen == {"python": 5 * 8 * per_row, "php": 3 * 8 * per_row}
    trains = _records(run, "train")
    assert all(set(t["loss_per_language"]) == {"python"} for t in trains[:5])
    assert all(set(t["loss_per_language"]) == {"php"} for t in trains[5:])
    mix = _records(run, "mixture")
    assert [(m["step"], m["reason"], m["weights"]) for m in mix] == [
        (1, "start", {"python": 1.0}),
        (6, "phase", {"php": 1.0}),
    ]


def test_budget_exhausts_the_data_and_stops_cleanly(corpus, tmp_path):
    run = tmp_path / "run"
    budget = 3 * 8 * 32 + 1  # enough for 3 full steps and one row of a fourth
    result = train(
        _cfg(corpus, run, steps=20, eval_every=10, mixture=f"python=1;budget:python={budget}")
    )
    assert result.stop_reason == "exhausted"
    assert result.step == 3
    assert list_checkpoints(run)[-1].step == 3
    # Evaluations at the checkpoints reached (log-spaced 0, 1, 2) and a final one at 3.
    ckpt_steps = {c.step for c in list_checkpoints(run)}
    assert ckpt_steps == {0, 1, 2, 3}
    assert [e["step"] for e in _records(run, "eval")] == [0, 1, 2, 3]
    events = [e for e in _records(run, "event") if e["event"] == "exhausted"]
    assert events and "python" in events[0]["message"]


def test_epoch_cap_renormalizes_to_the_other_language(corpus, tmp_path):
    run = tmp_path / "run"
    size = CorpusReader(corpus).split("train").language_range("python")
    cap = (8 * 32 * 2) / (size[1] - size[0])  # python's cap is reached after ~2 full steps
    result = train(
        _cfg(corpus, run, steps=6, eval_every=0, mixture=f"python=0.9,php=0.1;epochs:python={cap}")
    )
    assert result.stop_reason == "completed"
    assert result.tokens_seen["python"] <= 8 * 32 * 2 + 32
    mix = _records(run, "mixture")
    assert mix[-1]["reason"] == "exhausted" and mix[-1]["weights"] == {"php": 1.0}


class SwitchToPhp:
    """A controller: once python's validation loss is below its start, train on PHP only."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.decisions = 0

    def decide(self, trainer, step, signals):
        loss = signals["eval"]["val_loss"]["python"]
        if self.first is None:
            self.first = loss
            return None
        if loss < self.first and self.decisions == 0:
            self.decisions += 1
            return Mixture(weights={"php": 1.0})
        return None

    def state_dict(self):
        return {"first": self.first, "decisions": self.decisions}

    def load_state_dict(self, state):
        self.first, self.decisions = state["first"], state["decisions"]


def test_controller_changes_the_mixture_from_the_next_step(corpus, tmp_path):
    run = tmp_path / "run"
    ctl = SwitchToPhp()
    result = train(
        # Checkpoints (and so evaluations) only at 0, 4 and 8: the controller decides at 4.
        _cfg(
            corpus,
            run,
            steps=8,
            eval_every=4,
            mixture="python=1",
            checkpoints=CheckpointConfig(
                schedule=CheckpointSchedule(kind="every", every=4), fsync=False
            ),
        ),
        callbacks=[ControllerCallback(ctl, when="eval")],
    )
    assert ctl.decisions == 1
    trains = _records(run, "train")
    assert all(set(t["loss_per_language"]) == {"python"} for t in trains[:4])
    assert all(set(t["loss_per_language"]) == {"php"} for t in trains[4:])
    assert result.tokens_seen == {"python": 4 * 8 * 32, "php": 4 * 8 * 32}
    set_events = [e for e in _records(run, "event") if e["event"] == "set_mixture"]
    assert set_events[0]["step"] == 4 and set_events[0]["source"] == "SwitchToPhp"
    assert [(m["step"], m["reason"]) for m in _records(run, "mixture")][-1] == (5, "controller")
    state = read_trainer_state(list_checkpoints(run)[-1].path)
    assert state["mixture"]["weights"] == {"php": 1.0}
    assert state["callbacks"] == [{"first": ctl.first, "decisions": 1}]


def test_analyzer_and_hook_callbacks_run_on_the_live_model(corpus, tmp_path):
    run = tmp_path / "run"
    seen: list[tuple[int, bool]] = []

    def top1_python(trainer, step, out_dir):
        tokens = trainer.validation_tokens("python", 2)
        logits = trainer.model(tokens[:, :-1], return_type="logits")
        acc = (logits.argmax(-1) == tokens[:, 1:]).float().mean()
        (out_dir / "note.txt").write_text("ok", encoding="utf-8")
        seen.append((step, torch.is_grad_enabled()))
        return {"top1": float(acc)}

    class Steps(Callback):
        def __init__(self):
            self.events = []

        def on_train_start(self, trainer):
            self.events.append("start")

        def on_checkpoint(self, trainer, step, ckpt_path):
            assert (ckpt_path / "trainer_state.json").is_file()
            self.events.append(("ckpt", step))

        def on_train_end(self, trainer, result):
            self.events.append(("end", result.step))

    steps = Steps()
    train(
        _cfg(
            corpus,
            run,
            steps=4,
            eval_every=0,
            checkpoints=CheckpointConfig(schedule=CheckpointSchedule(kind="steps", steps=[2])),
        ),
        callbacks=[
            AnalyzerCallback("top1", top1_python),
            HookCallback(["activation-norms"], n_windows=2),
            steps,
        ],
    )
    assert seen == [(0, False), (2, False), (4, False)]
    lines = (run / "analysis" / "top1" / "results.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 2, 4]
    assert (run / "analysis" / "top1" / "step_00000002" / "note.txt").is_file()
    norms = run / "analysis" / "hooks" / "step_00000004" / "php" / "activation-norms.json"
    summary = json.loads(norms.read_text("utf-8"))
    assert set(summary["mean_norm"]) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    assert steps.events == ["start", ("ckpt", 0), ("ckpt", 2), ("ckpt", 4), ("end", 4)]


def test_continual_pretraining_starts_from_the_parent_and_records_lineage(corpus, tmp_path):
    parent = tmp_path / "python"
    train(_cfg(corpus, parent, steps=6, eval_every=0, mixture="python=1"))
    child = tmp_path / "php"
    result = train(
        _cfg(
            corpus,
            child,
            steps=4,
            eval_every=2,
            mixture="php=0.8,python=0.2",
            init_from=str(parent),
            checkpoints=CheckpointConfig(schedule=CheckpointSchedule(include_start=False)),
        )
    )
    assert result.step == 4
    ckpts = list_checkpoints(child)
    assert ckpts[0].step == 0  # always saved for continual pretraining
    start, _ = load_model(ckpts[0].path)
    end_of_parent, _ = load_model(list_checkpoints(parent)[-1].path)
    for (n, a), (_, b) in zip(
        start.state_dict().items(), end_of_parent.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    lineage = read_run_config(child)["init_from"]
    assert lineage["run"] == str(parent.resolve()) and lineage["step"] == 6
    assert lineage["tokens_seen"] == {"python": 6 * 8 * 32, "php": 0}
    assert read_trainer_state(ckpts[-1].path)["lineage"] == lineage
    # A fresh optimizer by default: no AdamW moments at the start.
    opt0 = torch.load(ckpts[0].path / "optimizer.pt", weights_only=False)
    assert opt0["state"] == {}
    # The child's step-0 evaluation is the parent's final model on the new mixture.
    assert _records(child, "eval")[0]["step"] == 0


def test_continual_pretraining_refuses_another_tokenizer(corpus, tmp_path):
    parent = tmp_path / "parent"
    train(_cfg(corpus, parent, steps=1, eval_every=0))
    other = make_corpus(tmp_path / "other", ("python", "php"), docs=60, seed=5, vocab_size=380)
    with pytest.raises(ValueError, match="different tokenizer|vocabulary"):
        Trainer(_cfg(other, tmp_path / "child", init_from=str(parent)))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"mixture": "python=0.5,rust=0.5"}, r"\['rust'\] not in corpus"),
        ({"seq_len": 4096}, "exceeds the model context"),
        ({"batch_size": 8, "micro_batch_size": 3}, "must divide"),
        ({"init_from": "/nonexistent/ckpt"}, "neither a checkpoint"),
    ],
)
def test_bad_configurations_fail_before_training(corpus, tmp_path, kw, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        Trainer(_cfg(corpus, tmp_path / "run", **kw))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "TrainConfig.steps"),
        ({"preset": "huge"}, "TrainConfig.preset"),
        ({"sequence_mode": "zip"}, "TrainConfig.sequence_mode"),
        ({"device": "tpu"}, "TrainConfig.device"),
        ({"dtype": "float16"}, "TrainConfig.dtype"),
        ({"deterministic": "yes"}, "TrainConfig.deterministic"),
    ],
)
def test_config_validation_names_the_field(corpus, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(corpus, tmp_path / "run", **kw)


def test_config_round_trips_through_a_dict(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path / "run", mixture="0:python=1;5:php=1;budget:php=9000")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({**cfg.to_dict(), "stepz": 3})


# run_config.json["train"] as runs already on disk hold it.
SAVED_TRAIN_CONFIG = {
    "corpus": "/data/corpus",
    "out": "runs/php",
    "preset": "tiny",
    "model": {
        "n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16, "d_mlp": 64, "n_ctx": 32,
        "d_vocab": 300, "act_fn": "gelu", "normalization": "LN",
        "positional_embedding": "standard", "seed": 0,
    },
    "mixture": {
        "weights": {"python": 1.0},
        "phases": [{"start": 0, "weights": {"python": 1.0}}, {"start": 5, "weights": {"php": 1.0}}],
        "budgets": {"php": 9000},
        "epoch_caps": {"python": 2.0},
    },
    "steps": 10, "schedule_steps": None, "batch_size": 8, "micro_batch_size": None,
    "seq_len": 32, "sequence_mode": "pure",
    "optim": {
        "schedule": {
            "kind": "cosine", "lr": 0.003, "warmup_steps": 2, "min_lr_ratio": 0.1,
            "decay_fraction": 0.2,
        },
        "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "eps": 1e-08, "grad_clip": 1.0,
    },
    "eval_every": 5, "eval_windows": 4, "eval_batch_size": 16, "log_every": 1,
    "checkpoints": {
        "schedule": {"kind": "every", "every": 2, "n": None, "steps": [], "include_start": True},
        "resume_every": 0, "keep_last": None, "keep_scheduled": True, "fsync": False,
    },
    "init_from": "runs/py", "init_optimizer": False, "resume": False, "seed": 3,
    "device": "auto", "dtype": "auto", "compile": False, "deterministic": None,
    "fast_path": True, "hooks": ["activation-norms"], "on_nan": "stop", "progress": False,
    "parallel": "ddp", "activation_checkpointing": False,
}  # fmt: skip


def test_saved_run_configs_load_and_are_written_the_same_way():
    cfg = TrainConfig.from_dict(json.loads(json.dumps(SAVED_TRAIN_CONFIG)))
    assert cfg.model == ModelConfig(
        n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, n_ctx=32, d_vocab=300
    )
    assert cfg.mixture == Mixture.parse("0:python=1;5:php=1;budget:php=9000;epochs:python=2")
    assert cfg.optim.schedule == LRSchedule(lr=3e-3, warmup_steps=2)
    assert cfg.checkpoints == CheckpointConfig(
        schedule=CheckpointSchedule(kind="every", every=2), fsync=False
    )
    assert cfg.hooks == ["activation-norms"] and cfg.seed == 3
    assert cfg.to_dict() == SAVED_TRAIN_CONFIG
    # A config from before some fields existed takes their defaults.
    newer = ("schedule_steps", "hooks", "parallel", "activation_checkpointing")
    older = {k: v for k, v in SAVED_TRAIN_CONFIG.items() if k not in newer}
    older["checkpoints"] = {"schedule": {"kind": "log"}}
    cfg = TrainConfig.from_dict(older)
    assert cfg.schedule_steps is None and cfg.hooks == []
    assert cfg.parallel == "ddp" and cfg.activation_checkpointing is False
    assert cfg.checkpoints == CheckpointConfig()


def test_an_existing_run_needs_resume(corpus, tmp_path):
    run = tmp_path / "run"
    train(_cfg(corpus, run, steps=1, eval_every=0))
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(_cfg(corpus, run, steps=1))


def test_cli_trains_and_resumes_from_the_saved_configuration(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--corpus", str(corpus), "--out", str(run), "--steps", "4"]
    args += ["--batch-size", "4", "--seq-len", "32", "--lr", "3e-3", "--warmup", "1"]
    args += ["--eval-every", "2", "--eval-windows", "2", "--mixture", "python=0.7,php=0.3"]
    args += ["--checkpoints", "every:2", "--no-progress", "--seed", "3"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 4 and out["stop_reason"] == "completed"
    saved = TrainConfig.from_dict(read_run_config(run)["train"])
    assert saved.seed == 3 and saved.batch_size == 4
    assert saved.mixture == Mixture(weights={"python": 0.7, "php": 0.3})
    assert saved.checkpoints.schedule == CheckpointSchedule(kind="every", every=2)
    # Resuming needs only --out; extending --steps continues the same run.
    assert main(["train", "--out", str(run), "--resume", "--steps", "6", "--no-progress"]) == 0
    assert [r["step"] for r in _records(run, "train")] == list(range(1, 7))
    assert main(["train", "--corpus", str(corpus), "--out", str(run)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x")]) == 1
    assert "--corpus is required" in capsys.readouterr().err


@pytest.mark.parametrize("positional", ["standard", "rotary"])
def test_fast_path_matches_transformer_lens_and_yields_to_hooks(positional, monkeypatch):
    cfg = get_preset("tiny").with_vocab(200)
    cfg.positional_embedding = positional
    slow = build_model(cfg, fast_path=False)
    fast = build_model(cfg)
    fast.load_state_dict(slow.state_dict())
    assert fast_path_active(fast) and not fast_path_active(slow)
    assert enable_fast_path(fast) == 0  # idempotent
    calls = {"sdpa": 0}
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls["sdpa"] += 1
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
    x = torch.randint(0, 200, (3, 24))
    ls, lf = slow(x, return_type="loss"), fast(x, return_type="loss")
    assert calls["sdpa"] == cfg.n_layers
    assert float(lf.detach()) == pytest.approx(float(ls.detach()), abs=1e-5)
    ls.backward()
    lf.backward()
    for (n, a), (_, b) in zip(slow.named_parameters(), fast.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), n
    # Any hook on the pattern, scores or norm internals sends that module through TL's code.
    calls["sdpa"] = 0
    names = lambda n: n.endswith(  # noqa: E731
        ("hook_pattern", "hook_attn_scores", "hook_normalized", "hook_scale")
    )
    with torch.no_grad():
        _, c_slow = slow.run_with_cache(x, names_filter=names)
        _, c_fast = fast.run_with_cache(x, names_filter=names)
    assert calls["sdpa"] == 0
    assert sorted(c_fast.keys()) == sorted(c_slow.keys()) and len(c_slow.keys()) > 0
    for k in c_slow.keys():
        assert torch.allclose(c_fast[k], c_slow[k], atol=1e-5), k

    def knock_out_head0(pattern, hook):
        pattern[:, 0] = 0.0
        return pattern

    hooked = [("blocks.1.attn.hook_pattern", knock_out_head0)]
    with torch.no_grad():
        a = slow.run_with_hooks(x, fwd_hooks=hooked)
        b = fast.run_with_hooks(x, fwd_hooks=hooked)
        assert calls["sdpa"] == 1  # block 0 fused, block 1 through the hook
        assert torch.allclose(a, b, atol=1e-4)
        assert not torch.allclose(a, slow(x), atol=1e-3)
        # Analyzers' residual-stream hooks keep the fused kernels and see the same values.
        resid = lambda n: n.endswith("hook_resid_post")  # noqa: E731
        _, r_slow = slow.run_with_cache(x, names_filter=resid)
        _, r_fast = fast.run_with_cache(x, names_filter=resid)
    for k in r_slow.keys():
        assert torch.allclose(r_fast[k], r_slow[k], atol=1e-5), k


def test_per_language_loss_sums_by_target_language_and_checks_shapes():
    from beartype import beartype
    from jaxtyping import TypeCheckError, jaxtyped

    from babel_interp.training import per_language_loss

    checked = jaxtyped(typechecker=beartype)(per_language_loss)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    langs = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
    total, sums, counts = checked(logits, targets, langs, 2)
    flat = logits.reshape(-1, 7)
    ce = torch.nn.functional.cross_entropy(flat, targets.reshape(-1), reduction="none")
    assert counts.tolist() == [3.0, 7.0]
    assert float(sums[0]) == pytest.approx(float(ce[langs.reshape(-1) == 0].sum()), rel=1e-6)
    assert float(sums[1]) == pytest.approx(float(ce[langs.reshape(-1) == 1].sum()), rel=1e-6)
    assert float(total) == pytest.approx(float(ce.sum()), rel=1e-6)
    with pytest.raises(TypeCheckError):
        checked(logits, targets[:, :4], langs, 2)


def test_mixed_sequences_train_on_several_languages_per_row(corpus, tmp_path):
    run = tmp_path / "run"
    result = train(
        _cfg(corpus, run, steps=3, eval_every=0, sequence_mode="mixed", mixture="python=1,php=1")
    )
    assert result.total_tokens == 3 * 8 * 32
    trains = _records(run, "train")
    assert all(set(t["loss_per_language"]) == {"python", "php"} for t in trains)
    assert read_trainer_state(list_checkpoints(run)[-1].path)["data"]["sequence_mode"] == "mixed"
