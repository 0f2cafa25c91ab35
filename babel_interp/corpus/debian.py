"""Real source corpora from Debian packages, fetched without installing anything.

Debian ships the source code of many libraries and toolchains inside ordinary binary packages
(PHP libraries are ``.php`` files under ``usr/share/php``, ``golang-1.19-src`` is Go's standard
library, ``openjdk-17-source`` carries a ``src.zip``). :func:`fetch_debian` downloads such
packages with ``apt-get download NAME`` (a ``.deb`` file in a cache directory, nothing installed)
and unpacks each with ``dpkg -x FILE DIR`` into ``OUT/<language>/<package>/``, so that the corpus
builder can read a language's trees with ``--source php=OUT/php``.

Each package's name, version (``dpkg-deb -f FILE Version``) and license (the first ``License:``
field of ``usr/share/doc/<package>/copyright``, or its first lines when the file is not in the
machine-readable format) are recorded in ``OUT/debian_manifest.json``, written atomically and
merged with the entries of earlier fetches into the same ``OUT``. The corpus builder records its
sources by path only, so this manifest stays beside the trees as their provenance.

Unpacked trees are pruned to what a corpus needs: only files with the language's extensions
(and the package's copyright files), no test, locale or translation folders (``drop_dirs``, by
name, case-insensitive), no files over ``max_file_bytes``, no symbolic links (an absolute link
would point into the host system). Each tree is unpacked and pruned in a hidden temporary sibling
and renamed into place at the end, so a crash never leaves a half tree under a package's name.

``apt-get download`` needs the package lists: run ``apt-get update`` once on a fresh machine.
When a download fails with "Unable to locate package" and the lists are empty, ``fetch_debian``
runs ``apt-get update`` itself once when asked (``update_lists=True``, ``--update-lists``;
needs root).
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from babel_interp.config import ConfigBase, check_dir_path
from babel_interp.corpus.build import swap_into_place
from babel_interp.corpus.sources import resolve_language
from babel_interp.io import write_json_atomic
from babel_interp.languages import get_language

MANIFEST_NAME = "debian_manifest.json"
MANIFEST_FORMAT = 1
APT_LISTS_DIR = Path("/var/lib/apt/lists")

# Package lists per language (sizes measured on Debian 12 "bookworm"). PHP: 41 libraries and
# applications, ~44 MB of .php after pruning; Go: the standard library; Rust: the standard
# library's source; Java: the JDK's src.zip; Ruby: the standard library; C++: header-only
# libraries whose headers end in .hpp (a small, permissively licensed set, ~10 MB);
# Lua: the prosody XMPP server.
DEFAULT_PACKAGES: dict[str, tuple[str, ...]] = {
    "php": (
        "php-icinga",
        "roundcube-core",
        "php-codesniffer",
        "php-getid3",
        "php-nesbot-carbon",
        "php-doctrine-orm",
        "php-doctrine-dbal",
        "php-horde",
        "php-horde-core",
        "php-horde-imp",
        "php-horde-activesync",
        "php-horde-kronolith",
        "php-horde-turba",
        "php-horde-nag",
        "php-horde-imap-client",
        "php-phpseclib3",
        "php-pear",
        "php-illuminate-database",
        "php-dompdf",
        "php-htmlpurifier",
        "php-symfony-validator",
        "php-symfony-form",
        "php-symfony-framework-bundle",
        "php-symfony-http-kernel",
        "php-symfony-console",
        "php-symfony-http-foundation",
        "php-symfony-dependency-injection",
        "php-symfony-serializer",
        "php-symfony-routing",
        "php-symfony-cache",
        "php-symfony-security-core",
        "php-parser",
        "php-sabre-dav",
        "php-league-commonmark",
        "php-twig",
        "php-laravel-framework",
        "php-monolog",
        "php-guzzlehttp-guzzle",
        "php-guzzlehttp-psr7",
        "php-zeta-console-tools",
        "php-phpstan-phpdoc-parser",
    ),
    "go": ("golang-1.19-src",),
    "rust": ("rust-src",),
    "java": ("openjdk-17-source",),
    "ruby": ("libruby3.1",),
    "cpp": (
        "libglm-dev",
        "nlohmann-json3-dev",
        "libcereal-dev",
        "librange-v3-dev",
        "libasio-dev",
        "libcli11-dev",
        "libxtensor-dev",
        "libxsimd-dev",
        "libgtest-dev",
        "libspdlog-dev",
        "libfmt-dev",
    ),
    "lua": ("prosody",),
}
# Folders never worth training on: tests and translations. Matched case-insensitively by name.
DEFAULT_DROP_DIRS: tuple[str, ...] = (
    "test",
    "tests",
    "testdata",
    "testing",
    "fixtures",
    "locale",
    "locales",
    "i18n",
    "l10n",
)
# "lang" holds translation tables in PHP applications (roundcube, horde) but is a code package
# elsewhere (java/lang), so it is dropped for PHP only.
DEFAULT_LANGUAGE_DROP_DIRS: dict[str, tuple[str, ...]] = {"php": ("lang", "localization")}
# Test files that live beside the code rather than in a test folder.
DEFAULT_DROP_FILES: dict[str, tuple[str, ...]] = {"go": ("*_test.go",)}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+$")  # Debian package name rules


class DebianFetchError(ValueError):
    """The fetch cannot run at all (a missing tool, a bad output directory).

    A ``ValueError``, so the command line reports it as one line, not a traceback.
    """


@dataclass
class DebianFetchConfig(ConfigBase):
    """What :func:`fetch_debian` fetches and how the unpacked trees are pruned.

    ``languages`` are registry names (``php``, ``go``, ...) that have a package list, either in
    :data:`DEFAULT_PACKAGES` or in ``packages`` (which overrides the default list of a language).
    ``cache_dir`` holds the downloaded ``.deb`` files (default ``OUT/.debs``), reused by later
    fetches. ``drop_tests`` removes test and translation folders (:data:`DEFAULT_DROP_DIRS`,
    plus ``drop_dirs``) and test files; ``max_file_bytes`` removes larger files (the corpus
    builder's own limit is 200 KB too). ``update_lists`` allows one ``apt-get update`` when the
    package lists are empty (off by default: fetching never changes the system unless asked).
    """

    languages: list[str]
    out: str
    cache_dir: str | None = None
    packages: dict[str, list[str]] = field(default_factory=dict)
    drop_tests: bool = True
    drop_dirs: list[str] = field(default_factory=list)
    max_file_bytes: int = 200_000
    update_lists: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Check every field; language names become canonical."""
        self.out = check_dir_path("DebianFetchConfig", "out", self.out)
        if self.cache_dir is not None:
            self.cache_dir = str(self.cache_dir)
        if not isinstance(self.packages, Mapping):
            raise ValueError("DebianFetchConfig.packages must map a language to package names")
        packages: dict[str, list[str]] = {}
        for lang, names in self.packages.items():
            try:
                canon = resolve_language(lang)
            except ValueError as exc:
                raise ValueError(f"DebianFetchConfig.packages: {exc}") from None
            if isinstance(names, str) or not isinstance(names, Sequence) or not names:
                raise ValueError(
                    f"DebianFetchConfig.packages[{lang!r}] must be a non-empty list of names"
                )
            for name in names:
                if not isinstance(name, str) or not _NAME_RE.match(name):
                    raise ValueError(
                        f"DebianFetchConfig.packages[{lang!r}]: {name!r} is not a Debian "
                        "package name"
                    )
            packages[canon] = list(names)
        self.packages = packages
        if isinstance(self.languages, str) or not isinstance(self.languages, Sequence):
            raise ValueError("DebianFetchConfig.languages must be a list of language names")
        if not self.languages:
            raise ValueError(
                f"DebianFetchConfig.languages is empty; supported: {supported_languages()}"
            )
        langs: list[str] = []
        for lang in self.languages:
            try:
                canon = resolve_language(lang)
            except ValueError:
                canon = None
            if canon is None or (canon not in DEFAULT_PACKAGES and canon not in self.packages):
                supported = sorted(set(supported_languages()) | set(self.packages))
                raise ValueError(
                    f"DebianFetchConfig.languages: no Debian package list for {lang!r}; "
                    f"supported: {', '.join(supported)} (or give the packages of another "
                    "language with packages={LANG: [NAME, ...]})"
                )
            if canon not in langs:
                langs.append(canon)
        self.languages = langs
        if isinstance(self.drop_dirs, str) or not isinstance(self.drop_dirs, Sequence):
            raise ValueError("DebianFetchConfig.drop_dirs must be a list of folder names")
        self.drop_dirs = [str(d) for d in self.drop_dirs]
        if (
            not isinstance(self.max_file_bytes, int)
            or isinstance(self.max_file_bytes, bool)
            or self.max_file_bytes <= 0
        ):
            raise ValueError(
                f"DebianFetchConfig.max_file_bytes must be a positive int, "
                f"got {self.max_file_bytes!r}"
            )
        for name in ("drop_tests", "update_lists", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"DebianFetchConfig.{name} must be a bool")

    def package_list(self, language: str) -> list[str]:
        """The packages fetched for ``language``: the override if given, else the default."""
        return list(self.packages.get(language) or DEFAULT_PACKAGES[language])

    def cache_path(self) -> Path:
        """Where the ``.deb`` files are kept."""
        return Path(self.cache_dir) if self.cache_dir else Path(self.out) / ".debs"

    def dropped_dirs(self, language: str) -> frozenset[str]:
        """Lower-cased folder names removed from ``language``'s trees."""
        names = list(self.drop_dirs)
        if self.drop_tests:
            names += [*DEFAULT_DROP_DIRS, *DEFAULT_LANGUAGE_DROP_DIRS.get(language, ())]
        return frozenset(n.lower() for n in names)


def supported_languages() -> list[str]:
    """Languages with a default Debian package list."""
    return sorted(DEFAULT_PACKAGES)


@dataclass
class PackageRecord:
    """One fetched package: where it came from, its license, and what its tree holds."""

    name: str
    language: str
    version: str
    license: str
    deb: str
    tree: str  # relative to the fetch's output directory
    files: int  # source files of the language kept in the tree
    bytes: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def mb(self) -> float:
        return self.bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PackageRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class FetchFailure:
    """A package that could not be fetched or unpacked, and why."""

    name: str
    language: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FetchFailure:
        return cls(name=d["name"], language=d["language"], error=d["error"])


@dataclass
class FetchSummary:
    """The result of :func:`fetch_debian` (and the content of ``debian_manifest.json``)."""

    out_dir: str
    packages: list[PackageRecord] = field(default_factory=list)
    failures: list[FetchFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def manifest_path(self) -> Path:
        return Path(self.out_dir) / MANIFEST_NAME

    def language_dirs(self) -> dict[str, str]:
        """``{language: OUT/<language>}`` for each language with at least one package."""
        return {
            p.language: str(Path(self.out_dir) / p.language) for p in self.packages if p.files > 0
        }

    def table(self) -> str:
        """A plain-text table: package, version, license, files, MB, then failures."""
        rows = [("language", "package", "version", "license", "files", "MB")]
        for p in self.packages:
            lic = p.license if len(p.license) <= 40 else p.license[:37] + "..."
            rows.append((p.language, p.name, p.version, lic, str(p.files), f"{p.mb:.2f}"))
        total_files = sum(p.files for p in self.packages)
        total_mb = sum(p.mb for p in self.packages)
        rows.append(("total", f"{len(self.packages)} packages", "", "", str(total_files)))
        rows[-1] = (*rows[-1], f"{total_mb:.2f}")
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = []
        for i, row in enumerate(rows):
            cells = [
                c.rjust(w) if j >= 4 else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        for f in self.failures:
            lines.append(f"FAILED {f.language}/{f.name}: {f.error}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "out_dir": self.out_dir,
            "packages": [p.to_dict() for p in self.packages],
            "failures": [f.to_dict() for f in self.failures],
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FetchSummary:
        return cls(
            out_dir=str(d["out_dir"]),
            packages=[PackageRecord.from_dict(p) for p in d.get("packages", [])],
            failures=[FetchFailure.from_dict(f) for f in d.get("failures", [])],
            seconds=float(d.get("seconds", 0.0)),
        )


def read_debian_manifest(out_dir: str | os.PathLike) -> FetchSummary:
    """The manifest of a fetch directory as a :class:`FetchSummary`."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {str(out_dir)!r}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: unknown manifest format {data.get('format')!r}")
    return FetchSummary.from_dict(data)


def write_debian_manifest(summary: FetchSummary, config: DebianFetchConfig | None = None) -> Path:
    """Write ``summary`` to ``OUT/debian_manifest.json`` atomically."""
    data = summary.to_dict()
    if config is not None:
        data["config"] = config.to_dict()
    return write_json_atomic(summary.manifest_path, data)


def parse_license(text: str, max_chars: int = 200) -> str:
    """The license of a Debian ``copyright`` file's text.

    In the machine-readable format (DEP-5) that is the first ``License:`` field's short name
    (the one of the first ``Files:`` paragraph, which is usually ``Files: *``); otherwise the
    first non-empty lines, joined and cut to ``max_chars``. ``"unknown"`` for an empty text.
    """
    for line in text.splitlines():
        m = re.match(r"^License:[ \t]*(\S.*?)\s*$", line)
        if m:
            return m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    head = " ".join(lines[:3])
    if not head:
        return "unknown"
    return head if len(head) <= max_chars else head[: max_chars - 3] + "..."


def require_tools(tools: Sequence[str] = ("apt-get", "dpkg", "dpkg-deb")) -> None:
    """Raise :class:`DebianFetchError` naming the first of ``tools`` not on ``PATH``."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise DebianFetchError(
                f"{tool!r} was not found on PATH: fetching Debian packages needs apt-get and "
                "dpkg (a Debian or Ubuntu system). Elsewhere build a corpus from a HF dataset "
                "(babel-interp corpus build --hf SPEC) or from local source trees "
                "(--source LANG=PATH)."
            )


def _run(
    cmd: list[str], cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _lists_empty() -> bool:
    try:
        # Lists may be stored compressed (..._Packages.lz4, ..._Packages.gz).
        return not any("_Packages" in p.name for p in APT_LISTS_DIR.iterdir())
    except OSError:
        return True


def _cached_deb(cache: Path, name: str) -> Path | None:
    # Debian package names have no underscore, so NAME_* matches this package's files only.
    found = sorted(cache.glob(f"{name}_*.deb"), key=lambda p: (p.stat().st_mtime, p.name))
    return found[-1] if found else None


def _error_text(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1]


class _Downloader:
    """``apt-get download`` into the cache, with one ``apt-get update`` when lists are empty."""

    def __init__(self, cache: Path, update_lists: bool) -> None:
        self.cache = cache
        self.update_lists = update_lists
        self.updated = False

    def get(self, name: str) -> Path:
        cached = _cached_deb(self.cache, name)
        if cached is not None:
            return cached
        proc = _run(["apt-get", "download", name], cwd=self.cache)
        if (
            proc.returncode != 0
            and "Unable to locate package" in (proc.stderr or "")
            and self.update_lists
            and not self.updated
            and _lists_empty()
        ):
            self.updated = True
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0:
                raise RuntimeError(
                    f"the package lists are empty and 'apt-get update' failed "
                    f"({_error_text(upd)}); run it once as root"
                )
            proc = _run(["apt-get", "download", name], cwd=self.cache)
        if proc.returncode != 0:
            hint = ""
            if "Unable to locate package" in (proc.stderr or "") and _lists_empty():
                hint = (
                    " (the package lists are empty: run 'apt-get update' once as root, or "
                    "pass --update-lists)"
                )
            raise RuntimeError(f"apt-get download {name}: {_error_text(proc)}{hint}")
        deb = _cached_deb(self.cache, name)
        if deb is None:
            raise RuntimeError(f"apt-get download {name} succeeded but wrote no {name}_*.deb")
        return deb


def _extract_src_zips(root: Path, extensions: frozenset[str]) -> int:
    """Unpack the source files of every ``src.zip`` under ``root`` beside it; returns a count.

    openjdk-17-source ships the JDK's sources as ``lib/src.zip``; only members with the
    language's extensions are written, and paths that would leave the folder are refused.
    """
    n = 0
    for zpath in sorted(p for p in root.rglob("src.zip") if p.is_file() and not p.is_symlink()):
        dest = zpath.parent / "src"
        with zipfile.ZipFile(zpath) as zf:
            for info in zf.infolist():
                if info.is_dir() or Path(info.filename).suffix.lower() not in extensions:
                    continue
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(dest.resolve()):
                    continue  # a "../" member: never written outside the tree
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
    return n


def _prune(
    root: Path,
    extensions: frozenset[str],
    drop_dirs: frozenset[str],
    drop_files: Sequence[str],
    max_bytes: int,
    keep: frozenset[Path],
) -> tuple[int, int, dict[str, int]]:
    """Keep only the language's source files (and ``keep``); returns (files, bytes, dropped)."""
    dropped = {"dirs": 0, "oversized": 0, "test_files": 0, "links": 0, "other_files": 0}
    files = n_bytes = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        d = Path(dirpath)
        for sub in list(dirnames):
            p = d / sub
            if p.is_symlink():
                p.unlink()
                dropped["links"] += 1
                dirnames.remove(sub)
            elif sub.lower() in drop_dirs:
                shutil.rmtree(p)
                dropped["dirs"] += 1
                dirnames.remove(sub)
        for fname in filenames:
            p = d / fname
            if p in keep and not p.is_symlink():
                continue
            if p.is_symlink():
                reason = "links"
            elif p.suffix.lower() not in extensions:
                reason = "other_files"
            elif any(fnmatch.fnmatch(fname, pat) for pat in drop_files):
                reason = "test_files"
            elif p.stat().st_size > max_bytes:
                reason = "oversized"
            else:
                files += 1
                n_bytes += p.stat().st_size
                continue
            p.unlink()
            dropped[reason] += 1
    # Folders left empty by the pruning go too (deepest first).
    for dirpath, _dirnames, _filenames in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if dirpath != str(root) and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return files, n_bytes, {k: v for k, v in dropped.items() if v}


def _unpack(
    deb: Path, name: str, language: str, lang_dir: Path, cfg: DebianFetchConfig
) -> PackageRecord:
    proc = _run(["dpkg-deb", "-f", str(deb), "Version"])
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-deb -f {deb.name} Version: {_error_text(proc)}")
    version = proc.stdout.strip()
    lang_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.unpacking-", dir=lang_dir))
    try:
        proc = _run(["dpkg", "-x", str(deb), str(tmp)])
        if proc.returncode != 0:
            raise RuntimeError(f"dpkg -x {deb.name}: {_error_text(proc)}")
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the tree from other users
        doc = tmp / "usr" / "share" / "doc" / name
        license_text = ""
        keep: set[Path] = set()
        for candidate in (doc / "copyright", doc / "copyright.gz"):
            if candidate.is_file() and not candidate.is_symlink():
                keep.add(candidate)
                if candidate.suffix == ".gz":
                    license_text = gzip.decompress(candidate.read_bytes()).decode(
                        "utf-8", "replace"
                    )
                else:
                    license_text = candidate.read_text(encoding="utf-8", errors="replace")
                break
        extensions = frozenset(get_language(language).extensions)
        _extract_src_zips(tmp, extensions)
        files, n_bytes, dropped = _prune(
            tmp,
            extensions,
            cfg.dropped_dirs(language),
            DEFAULT_DROP_FILES.get(language, ()) if cfg.drop_tests else (),
            cfg.max_file_bytes,
            frozenset(keep),
        )
        swap_into_place(tmp, lang_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackageRecord(
        name=name,
        language=language,
        version=version,
        license=parse_license(license_text) if license_text else "unknown (no copyright file)",
        deb=deb.name,
        tree=f"{language}/{name}",
        files=files,
        bytes=n_bytes,
        dropped=dropped,
    )


def fetch_debian(cfg: DebianFetchConfig) -> FetchSummary:
    """Download, unpack and prune the Debian packages of ``cfg.languages`` into ``cfg.out``.

    Each package goes to ``OUT/<language>/<package>/`` (replacing an earlier tree of it only once
    the new one is complete); ``.deb`` files already in the cache are reused. A package that
    cannot be downloaded or unpacked is recorded in ``FetchSummary.failures`` with the reason
    and the others go on. ``OUT/debian_manifest.json`` is rewritten atomically after every
    package, keeping the entries of packages fetched earlier that this call did not touch.
    Raises :class:`DebianFetchError` when apt-get or dpkg is missing.
    """
    require_tools()
    out = Path(cfg.out).absolute()
    if out.exists() and not out.is_dir():
        raise DebianFetchError(f"output path {str(out)!r} exists and is not a directory")
    cache = cfg.cache_path().absolute()
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        previous = read_debian_manifest(out)
    except FileNotFoundError:
        previous = FetchSummary(out_dir=str(out))
    jobs = [(lang, name) for lang in cfg.languages for name in cfg.package_list(lang)]
    touched = set(jobs)
    kept = [p for p in previous.packages if (p.language, p.name) not in touched]
    summary = FetchSummary(out_dir=str(out), packages=list(kept))
    downloader = _Downloader(cache, cfg.update_lists)
    bar = tqdm(jobs, desc="debian packages", unit="pkg", disable=not cfg.progress)
    for lang, name in bar:
        bar.set_postfix_str(name)
        try:
            deb = downloader.get(name)
            record = _unpack(deb, name, lang, out / lang, cfg)
        except (RuntimeError, OSError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
            summary.failures.append(FetchFailure(name=name, language=lang, error=str(exc)))
        else:
            summary.packages.append(record)
        summary.seconds = time.perf_counter() - t0
        write_debian_manifest(summary, cfg)
    bar.close()
    summary.packages.sort(key=lambda p: (p.language, p.name))
    summary.seconds = time.perf_counter() - t0
    write_debian_manifest(summary, cfg)
    return summary
