"""One runner per language: which toolchain, how to compile once, how to run, under which limits.

Toolchains come from the distribution (Debian: ``php-cli``, ``golang-go``, ``g++``, ``mono-mcs``
and ``mono-runtime``; ``make toolchains`` installs them). Python runs on the running interpreter
when the sandbox's uid can execute it, otherwise on the system's ``python3`` of the same version
(a root-owned pyenv under ``/root`` is not readable by an unprivileged uid); which one ran is in
:func:`toolchain_report`. A missing toolchain raises :class:`ToolchainMissingError`, naming the
package to install: never a silent zero score.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from babel_interp.evaluation.sandbox import SandboxLimits
from babel_interp.languages import get_language

__all__ = [
    "EXECUTION_LANGUAGES",
    "Runner",
    "ToolchainMissingError",
    "check_toolchains",
    "get_runner",
    "toolchain_report",
]

EXECUTION_LANGUAGES: tuple[str, ...] = ("python", "php", "go", "cpp", "csharp")

_SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"


class ToolchainMissingError(RuntimeError):
    """A language's compiler or interpreter is not installed."""


@dataclass(frozen=True)
class Runner:
    """How one language's program is compiled (optionally) and run inside the sandbox.

    ``compile`` and ``run`` are argv templates; ``{src}`` is the source file name. ``tools`` are
    the executables that must exist, each with the Debian package that provides it.
    ``compile_limits``/``run_limits`` override the default limits by field (compilers and managed
    runtimes reserve much more virtual memory than they use).
    """

    language: str
    source_name: str
    run: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    tools: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    compile_limits: dict = field(default_factory=dict)
    run_limits: dict = field(default_factory=dict)
    cache_env: str | None = None  # env var pointing at a per-slot persistent cache (Go)

    def limits_for(self, base: SandboxLimits, stage: str) -> SandboxLimits:
        extra = self.compile_limits if stage == "compile" else self.run_limits
        return base.replace(**extra) if extra else base

    def resolved(self, argv: Iterable[str]) -> list[str]:
        """``argv`` with tools replaced by absolute paths (the sandbox's PATH is minimal)."""
        out = []
        for a in argv:
            a = a.format(src=self.source_name)
            out.append(_which(a) or a if a in {t for t, _ in self.tools} else a)
        return out


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


_GO_ENV = (
    ("GO111MODULE", "off"),
    ("CGO_ENABLED", "0"),
    ("GOFLAGS", "-buildvcs=false"),
    ("GOTOOLCHAIN", "local"),
)

_RUNNERS: dict[str, Runner] = {
    "php": Runner(
        "php",
        "main.php",
        run=("php", "-d", "display_errors=stderr", "-d", "memory_limit=512M", "{src}"),
        tools=(("php", "php-cli"),),
    ),
    "go": Runner(
        "go",
        "main.go",
        compile=("go", "build", "-o", "main", "{src}"),
        run=("./main",),
        tools=(("go", "golang-go"),),
        env=_GO_ENV,
        cache_env="GOCACHE",
        compile_limits={"memory_mb": 4096, "timeout_s": 60, "cpu_s": 60, "file_size_mb": 256},
        run_limits={"memory_mb": 2048},
    ),
    "cpp": Runner(
        "cpp",
        "main.cpp",
        compile=("g++", "-std=c++17", "-O0", "-o", "main", "{src}"),
        run=("./main",),
        tools=(("g++", "g++"),),
        compile_limits={"memory_mb": 2048, "timeout_s": 60, "cpu_s": 60, "file_size_mb": 128},
    ),
    "csharp": Runner(
        "csharp",
        "Main.cs",
        compile=("mcs", "-nowarn:219,414,162,168", "-out:main.exe", "{src}"),
        run=("mono", "main.exe"),
        tools=(("mcs", "mono-mcs"), ("mono", "mono-runtime")),
        compile_limits={"memory_mb": 4096, "timeout_s": 60, "cpu_s": 60},
        run_limits={"memory_mb": 4096},
    ),
}


@functools.lru_cache(maxsize=1)
def python_interpreter() -> str:
    """The Python the sandbox runs: this interpreter if an unprivileged uid can execute it,
    else the system ``python3.X`` of the same version, else the system ``python3``."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    candidates.append("/usr/bin/python3")
    for exe in candidates:
        if exe and os.path.isfile(exe) and _world_executable(exe):
            return exe
    if os.geteuid() != 0 and sys.executable:
        return sys.executable  # not root: the sandbox runs as this user, who can run it
    raise ToolchainMissingError(
        "no Python interpreter an unprivileged sandbox user can run: the running one "
        f"({sys.executable}) lies in a private folder; install Debian's python3 "
        "(apt-get install python3)"
    )


def _world_executable(path: str) -> bool:
    """Every folder on the way is world-searchable and the file world-executable."""
    if os.geteuid() != 0:
        return os.access(path, os.X_OK)
    p = Path(path).resolve()
    for parent in [*reversed(p.parents)]:
        if not os.stat(parent).st_mode & 0o001:
            return False
    return bool(os.stat(p).st_mode & 0o001)


def get_runner(language: str) -> Runner:
    """The runner of ``language``; raises a ``ValueError`` naming the supported languages."""
    lang = get_language(language).name
    if lang == "python":
        return Runner(
            "python",
            "main.py",
            run=(python_interpreter(), "-I", "-B", "{src}"),
            tools=(),
        )
    if lang not in _RUNNERS:
        raise ValueError(
            f"no execution runner for {lang!r}; supported: {', '.join(EXECUTION_LANGUAGES)}"
        )
    return _RUNNERS[lang]


def check_toolchains(languages: Iterable[str]) -> None:
    """Raise :class:`ToolchainMissingError` naming every missing tool and its package."""
    missing: list[str] = []
    packages: list[str] = []
    for language in languages:
        runner = get_runner(language)
        for tool, package in runner.tools:
            if _which(tool) is None:
                missing.append(f"{tool} ({runner.language})")
                packages.append(package)
    if missing:
        pkgs = " ".join(dict.fromkeys(packages))
        raise ToolchainMissingError(
            f"missing toolchains: {', '.join(missing)}. Install them with "
            f"`make toolchains` or `apt-get install {pkgs}` (as root)."
        )


def toolchain_report(languages: Iterable[str] = EXECUTION_LANGUAGES) -> dict[str, str]:
    """Language -> the version line of its toolchain (or ``"missing: <package>"``)."""
    out: dict[str, str] = {}
    for language in languages:
        runner = get_runner(language)
        if language == "python":
            exe = runner.run[0]
            out[language] = f"{exe}: " + _version([exe, "--version"])
            continue
        parts = []
        for tool, package in runner.tools:
            exe = _which(tool)
            if exe is None:
                parts.append(f"missing: {package}")
                continue
            flag = "version" if tool == "go" else "--version"
            parts.append(_version([exe, flag]))
        out[language] = "; ".join(parts)
    return out


def _version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"error: {e}"
    text = (r.stdout or r.stderr).strip().splitlines()
    return text[0] if text else "?"
