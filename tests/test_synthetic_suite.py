"""The synthetic execution suite: configuration, held-out program ids, rendering fidelity, the
reference interpreter, and (end to end) canonical completions passing in every language."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter

import pytest

from babel_interp.corpus.build import synthetic_corpus_config
from babel_interp.corpus.shards import MANIFEST
from babel_interp.corpus.synthetic import (
    SUPPORTED_LANGUAGES,
    SyntheticConfig,
    plan_program,
    render_document,
    render_function_cut,
)
from babel_interp.evaluation import synthetic_suite as suite
from babel_interp.evaluation.problems import (
    Problem,
    assemble_program,
    load_problems,
    save_problems,
    truncate_at_stop,
)
from babel_interp.evaluation.synthetic_suite import (
    DEFAULT_FIRST_PROGRAM,
    KINDS,
    SEED_STRIDE,
    HeldOutError,
    SyntheticSuiteConfig,
    assert_held_out,
    synthetic_problems,
    training_program_ranges,
)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    """Ten tasks (two of each kind) in all five languages."""
    return synthetic_problems(SyntheticSuiteConfig(n_problems=10))


# The expected value in a check call: babel_check(f(...), 42, "f case 1")
_EXPECTED = re.compile(r', (-?\d+), "\w+ case \d+"\)')


def _by_task(problems: list[Problem]) -> dict[str, dict[str, Problem]]:
    out: dict[str, dict[str, Problem]] = {}
    for p in problems:
        out.setdefault(p.task_id, {})[p.language] = p
    return out


# --- configuration -----------------------------------------------------------------------


def test_config_defaults_round_trip_and_aliases():
    cfg = SyntheticSuiteConfig()
    assert cfg.languages == SUPPORTED_LANGUAGES
    assert cfg.n_problems == 40 and cfg.first_program == DEFAULT_FIRST_PROGRAM
    assert set(cfg.kinds) <= set(KINDS)
    aliased = SyntheticSuiteConfig(
        languages=["py", "c#"], planted_in="Python", kinds=["helper_tail"]
    )
    assert aliased.languages == ("python", "csharp") and aliased.planted_in == "python"
    assert aliased.kinds == ("helper_tail",)
    d = json.loads(json.dumps(aliased.to_dict()))
    assert SyntheticSuiteConfig.from_dict(d) == aliased
    with pytest.raises(ValueError, match="unknown field.*n_problem"):
        SyntheticSuiteConfig.from_dict({"n_problem": 3})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"languages": "python"}, "languages"),
        ({"languages": ()}, "languages"),
        ({"languages": ("python", "py")}, "languages"),
        ({"languages": ("rust",)}, "languages"),
        ({"n_problems": 0}, "n_problems"),
        ({"n_problems": 2.5}, "n_problems"),
        ({"seed": -1}, "seed"),
        ({"first_program": -5}, "first_program"),
        ({"kinds": ()}, "kinds"),
        ({"kinds": ("main_tail_9",)}, "kinds"),
        ({"kinds": "helper_body"}, "kinds"),
        ({"n_tests": 1}, "n_tests"),
        ({"synthetic_seed": "0"}, "synthetic_seed"),
        ({"fact_seed": 1.0}, "fact_seed"),
        ({"n_planted_facts": 10_000}, "n_planted_facts"),
        ({"planted_in": "java"}, "planted_in"),
        ({"min_ops": 5, "max_ops": 4}, "max_ops"),
        ({"max_facts_per_doc": 0}, "max_facts_per_doc"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"SyntheticSuiteConfig\.{field}"):
        SyntheticSuiteConfig(**kwargs)


def test_world_comes_from_the_corpus_config():
    corpus = SyntheticConfig(seed=5, fact_seed=9, n_planted_facts=20, planted_in="php", max_ops=6)
    cfg = SyntheticSuiteConfig(n_problems=3).with_world(corpus.to_dict())
    assert cfg.synthetic_seed == 5 and cfg.fact_seed == 9 and cfg.planted_in == "php"
    world = cfg.world()
    for name in ("seed", "fact_seed", "n_planted_facts", "planted_in", "max_ops"):
        assert getattr(world, name) == getattr(corpus, name)
    # Passing the corpus config to synthetic_problems is the same as copying its world.
    assert synthetic_problems(SyntheticSuiteConfig(n_problems=3), corpus) == synthetic_problems(cfg)


# --- the problems --------------------------------------------------------------------------


def test_problems_are_parallel_across_languages(problems):
    tasks = _by_task(problems)
    assert len(tasks) == 10 and len(problems) == 50
    assert Counter(p.meta["kind"] for p in problems) == {k: 10 for k in KINDS}
    for per_lang in tasks.values():
        assert set(per_lang) == set(SUPPORTED_LANGUAGES)
        metas = [
            {k: v for k, v in p.meta.items() if k not in ("lines", "defines_planted")}
            for p in per_lang.values()
        ]
        assert all(m == metas[0] for m in metas)
        assert len({p.entry_point for p in per_lang.values()}) == 1
        # The same expected values in every language.
        expected = [_EXPECTED.findall(p.tests) for p in per_lang.values()]
        assert all(e == expected[0] for e in expected)
        assert len(expected[0]) == metas[0]["n_tests"] and len(set(expected[0])) >= 2


def test_problem_shape_and_stop_sequences(problems):
    continuation = {
        "python": "\n\n\ndef extra():\n    pass\n",
        "php": "\n}\n\nfunction extra()\n{\n",
        "go": "\n}\n\nfunc extra() int {\n",
        "cpp": "\n}\n\nint extra() {\n",
        "csharp": "\n    }\n\n    static int extra()\n    {\n",
    }
    for p in problems:
        assert p.suite == "synthetic" and p.task_id.startswith("synthetic/")
        assert p.meta["program_id"] >= DEFAULT_FIRST_PROGRAM
        assert p.prompt.endswith("\n") and p.canonical_solution.strip()
        assert not p.canonical_solution.endswith("\n")
        # The canonical completion survives its stop sequences, and a model that goes on past
        # the function is cut back to it.
        assert truncate_at_stop(p.canonical_solution, p.stop_sequences) == p.canonical_solution
        cont = p.canonical_solution + continuation[p.language]
        assert truncate_at_stop(cont, p.stop_sequences).rstrip("\n") == p.canonical_solution
        program = assemble_program(p, p.canonical_solution)
        assert program == p.prompt + p.canonical_solution + "\n" + p.tests
        assert p.meta["difficulty"] >= 1 and p.meta["lines"] >= 1
        if p.meta["kind"] in ("main_tail_1", "helper_tail"):
            assert p.meta["difficulty"] == 1
        assert p.meta["n_tests"] == 4
        exit_call = {
            "python": "sys.exit(3)",
            "php": "exit(3);",
            "go": "os.Exit(3)",
            "cpp": "std::exit(3);",
            "csharp": "Environment.Exit(3);",
        }[p.language]
        assert exit_call in p.tests


def test_deterministic_and_independent_of_other_languages(problems):
    again = synthetic_problems(SyntheticSuiteConfig(n_problems=10))
    assert again == problems
    alone = synthetic_problems(SyntheticSuiteConfig(n_problems=10, languages=("go",)))
    assert alone == [p for p in problems if p.language == "go"]
    other = synthetic_problems(SyntheticSuiteConfig(n_problems=10, seed=1, languages=("go",)))
    assert {p.meta["program_id"] for p in other}.isdisjoint(p.meta["program_id"] for p in alone)
    assert min(p.meta["program_id"] for p in other) >= DEFAULT_FIRST_PROGRAM + SEED_STRIDE


def test_prompts_follow_the_corpus_rendering(problems):
    world = SyntheticSuiteConfig().world()
    for p in problems:
        doc = render_document(world, p.language, p.meta["program_id"]).text
        whole = p.prompt + p.canonical_solution + "\n"
        if p.language in ("php", "csharp") and p.meta["kind"].startswith("helper"):
            # No header depends on later definitions here: the problem is the document's prefix.
            assert doc.startswith(whole)
        if p.language == "python" and p.meta["kind"].startswith("main"):
            # The main function is the last definition: the whole Python document.
            assert whole == doc
        if p.language == "go":
            assert '"os"' in p.prompt and '"slices"' not in p.prompt
        if p.meta["defines_planted"]:
            assert p.language != "python" and p.meta["kind"].startswith("main")


def test_go_prompts_read_every_variable_they_declare(problems):
    # Go rejects a declared variable that nothing reads, and the completion may not read it.
    blank_uses = 0
    for p in problems:
        if p.language != "go":
            continue
        body = p.prompt.split(f"func {p.entry_point}(", 1)[1]
        lines = body.splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\t(\w+)(?:, _)? := ", line)
            if m:
                later = "\n".join(lines[i + 1 :])
                assert re.search(rf"\b{m[1]}\b", later), f"{p.task_id}: {m[1]} is never read"
        blank_uses += sum(line.startswith("\t_ = ") for line in lines)
    assert blank_uses > 0


def test_jsonl_round_trip(problems, tmp_path):
    path = save_problems(problems, tmp_path / "synthetic.jsonl")
    assert load_problems(path) == problems


def test_render_function_cut_splits_inside_the_function():
    program = plan_program(SyntheticConfig(), 123)
    main = program.defs[-1]
    for lang in SUPPORTED_LANGUAGES:
        whole = render_function_cut(program, lang, main.name, len(main.body))
        assert whole.rest == ""
        cut = render_function_cut(program, lang, main.name, 1)
        assert cut.before + cut.rest == whole.before
        # Without the planted facts outside Python, the pieces make the corpus document.
        cut = render_function_cut(program, lang, main.name, 1, keep_planted=lang == "python")
        text = cut.header + cut.before + cut.rest + cut.close + cut.footer
        assert text == render_document(SyntheticConfig(), lang, 123).text
    with pytest.raises(ValueError, match="defines no function"):
        render_function_cut(program, "php", "nope", 0)
    with pytest.raises(ValueError, match="keep must be"):
        render_function_cut(program, "php", main.name, len(main.body) + 1)


# --- held out ----------------------------------------------------------------------------


def _write_manifest(corpus_dir, **synth) -> None:
    corpus_dir.mkdir(parents=True, exist_ok=True)
    recorded = synthetic_corpus_config(corpus_dir, **synth).recorded()
    (corpus_dir / MANIFEST).write_text(json.dumps({"build": {"config": recorded}}))


def test_assert_held_out_both_ways(tmp_path, problems):
    corpus = tmp_path / "corpus"
    _write_manifest(corpus, docs_per_language=20_000, seed=0)
    assert training_program_ranges(corpus) == [(0, 0, 20_000)]
    assert assert_held_out(problems, corpus) == len(problems)

    # A suite drawn from the training range is caught.
    leaked = synthetic_problems(
        SyntheticSuiteConfig(n_problems=2, first_program=100, languages=("php",))
    )
    with pytest.raises(HeldOutError, match="programs of the training corpus") as e:
        assert_held_out(leaked, corpus)
    assert leaked[0].task_id in str(e.value)

    # A corpus without synthetic sources holds none of the programs.
    real = tmp_path / "real"
    real.mkdir()
    (real / MANIFEST).write_text(json.dumps({"build": {"config": {"sources": []}}}))
    assert assert_held_out(leaked, real) == len(leaked)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        assert_held_out(problems, tmp_path / "missing")
    foreign = Problem("x/1", "python", "def f():\n", "pass\n", "f")
    with pytest.raises(ValueError, match="program_id"):
        assert_held_out([foreign], corpus)


def test_synthetic_problems_refuses_a_training_range():
    corpus = SyntheticConfig(docs_per_language=1_000, first_program=0)
    with pytest.raises(HeldOutError, match="first_program"):
        synthetic_problems(SyntheticSuiteConfig(n_problems=1, first_program=500), corpus)
    ok = synthetic_problems(SyntheticSuiteConfig(n_problems=1, first_program=1_000), corpus)
    assert ok[0].meta["program_id"] >= 1_000


# --- the reference interpreter -----------------------------------------------------------


@pytest.mark.parametrize(
    "concept, args",
    [
        ("find", ["abc", "z"]),  # PHP's strpos returns false, the others -1 / npos
        ("to_int", ["12a"]),
        ("to_int", ["99999999999"]),
        ("sqrt", [-4]),
        ("round", [2.5]),  # half to even in Python and C#, away from zero elsewhere
        ("pow", [5000, 3]),  # beyond a 32-bit int
    ],
)
def test_interpreter_refuses_divergent_builtins(concept, args):
    with pytest.raises(suite._Divergent):
        suite._Interpreter.builtin(concept, args)


def test_interpreter_refuses_negative_modulo_and_overflow():
    with pytest.raises(suite._Divergent):
        suite._Interpreter.binary("%", -7, 3)
    assert suite._Interpreter.binary("%", 7, 3) == 1
    with pytest.raises(suite._Divergent):
        suite._Interpreter.binary("*", 2**20, 2**12)


def test_interpreter_matches_the_python_rendering(problems):
    # The expected values are the canonical Python program's results.
    for p in problems:
        if p.language != "python":
            continue
        namespace: dict = {"__name__": "suite_check"}
        source = p.program(p.canonical_solution).replace("sys.exit(3)", "raise AssertionError")
        exec(compile(source, p.task_id, "exec"), namespace)


# --- end to end: the runners execute every language ----------------------------------------


@pytest.fixture
def sandbox():
    """A sandbox of its own, in a fresh folder outside pytest's private tmp_path (which the
    sandbox's unprivileged uids cannot enter)."""
    from babel_interp.evaluation.sandbox import Sandbox

    base = tempfile.mkdtemp(prefix="babel-suite-test-")
    box = Sandbox(slots=2, base_dir=base)
    try:
        yield box
    finally:
        box.close()
        shutil.rmtree(base, ignore_errors=True)


def _wrong(p: Problem) -> str:
    """A completion that compiles and returns a constant no test expects."""
    first = p.canonical_solution.splitlines()[0]
    indent = first[: len(first) - len(first.lstrip())]
    term = ";" if p.language in ("php", "cpp", "csharp") else ""
    return f"{indent}return 987654{term}"


def test_canonical_completions_pass_and_wrong_ones_fail_in_every_language(sandbox):
    from babel_interp.evaluation.execute import execute
    from babel_interp.evaluation.runners import ToolchainMissingError, check_toolchains

    try:
        check_toolchains(SUPPORTED_LANGUAGES)
    except ToolchainMissingError as e:
        pytest.skip(str(e))
    problems = synthetic_problems(SyntheticSuiteConfig(n_problems=6))
    assert len(problems) == 30
    # A wrong completion of an easy main-function task and of a helper, in every language.
    wrong = [p for p in problems if p.meta["kind"] in ("main_tail_1", "helper_tail")][:10]
    pairs = [(p, p.canonical_solution) for p in problems] + [(p, _wrong(p)) for p in wrong]
    results = execute(pairs, workers=2, sandbox=sandbox)
    ran, ran_wrong = results[: len(problems)], results[len(problems) :]
    failures = [
        f"{p.task_id} {p.language}: {r.status} {r.reason}\n{r.stderr[-500:]}"
        for p, r in zip(problems, ran, strict=True)
        if r.status != "passed"
    ]
    assert not failures, "\n".join(failures)
    statuses = Counter((p.language, r.status) for p, r in zip(wrong, ran_wrong, strict=True))
    reasons = [
        f"{p.task_id} {p.language}: {r.status} {r.reason}"
        for p, r in zip(wrong, ran_wrong, strict=True)
    ]
    assert statuses == {(lang, "wrong_answer"): 2 for lang in SUPPORTED_LANGUAGES}, reasons
