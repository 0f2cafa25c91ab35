"""Containment: hostile programs end as recorded failures and leave the machine as it was."""

from __future__ import annotations

import os
import time

import pytest

from babel_interp.evaluation.execute import execute
from babel_interp.evaluation.problems import Problem
from babel_interp.evaluation.runners import ToolchainMissingError, check_toolchains
from babel_interp.evaluation.sandbox import Sandbox, SandboxLimits, _pids_of_uid

LIMITS = SandboxLimits(timeout_s=4, cpu_s=4, memory_mb=512, file_size_mb=8, max_processes=32)


def _py(code: str, task: str = "hostile") -> Problem:
    return Problem(task_id=task, language="python", prompt="", tests=code, entry_point="main")


def _run(code: str) -> object:
    (result,) = execute([(_py(code), "")], workers=1, limits=LIMITS)
    return result


def test_infinite_loop_times_out():
    t = time.perf_counter()
    r = _run("while True:\n    pass\n")
    assert r.status == "timeout"
    assert time.perf_counter() - t < LIMITS.timeout_s + 5


def test_fork_bomb_is_contained_and_cleaned_up():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    # A uid range of its own, so other sandboxes running meanwhile cannot blur the check.
    with Sandbox(slots=1, first_uid=64000, uid_range=4) as sb:
        (r,) = execute([(_py(bomb), "")], workers=1, limits=LIMITS, sandbox=sb)
    assert r.status in ("timeout", "runtime_error")
    if os.geteuid() == 0:
        assert all(_pids_of_uid(uid) == [] for uid in range(64000, 64004))


def test_concurrent_sandboxes_never_share_a_uid():
    if os.geteuid() != 0:
        pytest.skip("uids are leased only when the sandbox runs as root")
    a, b = Sandbox(slots=2, first_uid=64100, uid_range=8), Sandbox(slots=2, first_uid=64100)
    with a.slot() as x, a.slot() as y, b.slot() as z:
        assert len({x.uid, y.uid, z.uid}) == 3
    a.close()
    b.close()


def test_memory_hog_fails_with_memory_error():
    r = _run("x = bytearray(2 * 1024 ** 3)\nprint(len(x))\n")
    assert r.status == "runtime_error"
    assert "MemoryError" in r.reason


def test_huge_write_hits_the_file_size_limit(tmp_path):
    r = _run("f = open('big.bin', 'wb')\nfor _ in range(1024):\n    f.write(b'x' * 1024 * 1024)\n")
    assert r.status == "runtime_error"
    assert "File too large" in r.reason or "SIGXFSZ" in r.reason


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("BABEL_SECRET_TOKEN", "hunter2")
    r = _run(
        "import os, sys\n"
        "print(sorted(os.environ))\n"
        "sys.exit(3 if 'BABEL_SECRET_TOKEN' in os.environ else 0)\n"
    )
    assert r.status == "passed", r.stdout
    assert "hunter2" not in r.stdout


def test_writes_outside_its_directory_fail(tmp_path):
    target = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o755)
    if os.geteuid() != 0:
        pytest.skip("only a root sandbox drops to an unprivileged uid that cannot write here")
    r = _run(f"open({str(target)!r}, 'w').write('x')\n")
    assert r.status == "runtime_error"
    assert "Permission" in r.reason
    assert not target.exists()


def test_files_left_in_tmp_are_removed():
    name = f"/tmp/babel-sandbox-leftover-{os.getpid()}"
    r = _run(f"open({name!r}, 'w').write('x')\n")
    assert r.status == "passed"
    if os.geteuid() == 0:
        assert not os.path.exists(name)


def test_network_is_unreachable():
    sb = Sandbox(slots=1)
    if os.geteuid() != 0 and not sb.userns_available():
        pytest.skip("no way to isolate the network here (not root, no user namespaces)")
    r = _run(
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "except OSError:\n"
        "    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    assert r.status == "passed", r.reason


def test_output_is_truncated():
    sb = Sandbox(slots=1)
    with sb.slot() as box:
        box.write("main.py", "print('y' * 1_000_000)\n")
        from babel_interp.evaluation.runners import python_interpreter

        res = box.run([python_interpreter(), "main.py"], LIMITS.replace(output_bytes=1000))
    sb.close()
    assert res.output_truncated and len(res.stdout) == 1000


@pytest.mark.parametrize(
    "language, source",
    [
        ("python", "def f(:\n"),
        ("php", "<?php function f( {\n"),
        ("go", "package main\nfunc main() { x := }\n"),
        ("cpp", "int main() { return x; }\n"),
        ("csharp", "class P { static void Main() { int x = ; } }\n"),
    ],
)
def test_compile_errors_are_recorded(language, source):
    check_toolchains([language])
    p = Problem(task_id="bad", language=language, prompt="", tests=source, entry_point="main")
    (r,) = execute([(p, "")], workers=1)
    assert r.status == "compile_error", (r.status, r.reason)
    assert r.reason


def test_wrong_answer_is_told_from_a_crash():
    assert _run("import sys\nsys.exit(3)\n").status == "wrong_answer"
    assert _run("raise ValueError('boom')\n").status == "runtime_error"


def test_missing_toolchain_names_the_package(monkeypatch):
    import babel_interp.evaluation.runners as runners

    monkeypatch.setattr(runners, "_which", lambda name: None)
    with pytest.raises(ToolchainMissingError, match="php-cli"):
        check_toolchains(["php"])


def test_limits_validate():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="unknown field.*nonsense"):
        SandboxLimits().replace(nonsense=1)
