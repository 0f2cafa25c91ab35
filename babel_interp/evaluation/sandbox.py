"""The sandbox: the only place generated code runs.

Every command runs in a child process that, before it executes anything,

* starts its own session and process group, so the whole group can be killed;
* gets resource limits (util-linux ``prlimit``): CPU seconds, address space, file size,
  process count, open files, no core dumps;
* when the sandbox runs as root (util-linux ``unshare --net``, then ``setpriv``): enters a new
  network namespace (only a loopback that is down: no network at all) and drops to an
  unprivileged *slot uid* (leased per command from 61000 upward under a file lock, so
  concurrent sandboxes in other processes never share one). The uid is what
  makes the limits real: root ignores ``RLIMIT_NPROC``, and a program running as the slot uid
  cannot read ``/root``, write into the project or signal other processes. After each command
  every process of the slot uid is killed (found in ``/proc``, which also reaches children that
  left the process group) and files the uid left in world-writable temp folders are removed;
* when not root: the command is wrapped in ``unshare --map-root-user --net`` where user
  namespaces allow it (checked once); otherwise the network is *not* isolated and
  :attr:`SandboxResult.network_isolated` says so. The process limit counts the user's processes
  already running, and cleanup kills the process group;
* sees a scrubbed environment: only ``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` (both the fresh
  working directory) plus what a runner sets explicitly (e.g. ``GOCACHE``);
* runs in a fresh temporary directory owned by the slot uid, removed afterwards;
* has its stdout and stderr captured in files the parent opened (capped by the file-size limit)
  and truncated to ``output_bytes`` when read back.

A wall-clock timeout kills the whole group. Results carry the exit status, the signal, whether
the timeout or a resource limit was hit, and the captured output.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from babel_interp.config import ConfigBase

__all__ = [
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
]

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
_UID_LOCKS = Path(tempfile.gettempdir()) / "babel-interp-sandbox-uids"


@dataclass(frozen=True)
class SandboxLimits(ConfigBase):
    """Limits of one sandboxed command.

    ``timeout_s`` is wall-clock; ``cpu_s`` CPU seconds (``RLIMIT_CPU``); ``memory_mb`` the address
    space (``RLIMIT_AS``: virtual memory, so runtimes that reserve large heaps, such as Mono or
    Go's compiler, need more than they use); ``file_size_mb`` the largest file the command may
    write, its captured output included; ``max_processes`` the processes and threads it may run at
    once; ``output_bytes`` how much of stdout/stderr is kept.
    """

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_size_mb: int = 16
    max_processes: int = 64
    max_open_files: int = 256
    output_bytes: int = 16 * 1024

    def validate(self) -> None:
        """Every limit is a positive number."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"SandboxLimits.{f.name} must be a positive number, got {value!r}")


@dataclass
class SandboxResult:
    """What one sandboxed command did."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False
    signal: str | None = None
    output_truncated: bool = False
    network_isolated: bool = True
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        """One line saying how the command ended, for a failure's recorded reason."""
        if self.timed_out:
            return f"wall-clock timeout after {self.limits.get('timeout_s', '?')} s"
        if self.signal is not None:
            why = {
                "SIGXCPU": "CPU time limit exceeded",
                "SIGXFSZ": "file size limit exceeded",
                "SIGKILL": "killed",
                "SIGSEGV": "segmentation fault (or out of memory)",
                "SIGABRT": "aborted (or out of memory)",
            }.get(self.signal, "killed by a signal")
            return f"{self.signal}: {why}"
        return f"exit status {self.returncode}"


class Sandbox:
    """Runs commands under limits, one fresh working directory per use.

    ``slots`` is how many commands may run at once. As root each running command gets a uid of
    its own, leased from ``first_uid`` .. ``first_uid + uid_range - 1`` under an exclusive
    ``flock`` on ``<tmp>/babel-interp-sandbox-uids/<uid>.lock`` (one place for every sandbox,
    whatever its ``base_dir``): two sandboxes (two processes, two test
    sessions) never share a uid, so one's cleanup never kills the other's programs. ``base_dir``
    holds the working directories and the per-uid caches (default: a folder under
    the system temp dir; it must be traversable by other users, so not a private folder). Use
    :meth:`slot` to get a uid and a fresh directory, then run inside it::

        sandbox = Sandbox(slots=2)
        with sandbox.slot() as box:
            box.write("main.py", "print(1)")
            result = box.run(["python3", "main.py"], SandboxLimits(timeout_s=5))
    """

    def __init__(
        self,
        slots: int = 1,
        base_dir: str | os.PathLike | None = None,
        first_uid: int = 61000,
        uid_range: int = 1000,
    ) -> None:
        if slots < 1:
            raise ValueError(f"Sandbox slots must be >= 1, got {slots}")
        if uid_range < slots:
            raise ValueError(f"Sandbox uid_range ({uid_range}) must be >= slots ({slots})")
        self.is_root = os.geteuid() == 0
        self.base_dir = Path(base_dir or Path(tempfile.gettempdir()) / "babel-interp-sandbox")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # The parent's private folder for captured output: the slot uid cannot read it, but the
        # descriptors the child inherits can be written.
        self._private = Path(tempfile.mkdtemp(prefix="out-", dir=self.base_dir))
        os.chmod(self._private, 0o700)
        if self.is_root:
            os.chmod(self.base_dir, 0o755)
            _UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
        self._slots = threading.Semaphore(slots)
        self._lease_lock = threading.Lock()
        self.first_uid = first_uid
        self.uid_range = uid_range
        self._userns_ok: bool | None = None

    # -- slots ------------------------------------------------------------------------------
    def _lease_uid(self) -> tuple[int, int] | None:
        """A uid no other sandbox holds, and the descriptor whose lock holds it (None when not
        root: commands run as the caller)."""
        if not self.is_root:
            return None
        with self._lease_lock:
            for uid in range(self.first_uid, self.first_uid + self.uid_range):
                fd = os.open(_UID_LOCKS / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return uid, fd
        raise RuntimeError(
            f"sandbox: all {self.uid_range} uids from {self.first_uid} are in use by other "
            "sandboxes"
        )

    @contextmanager
    def slot(self) -> Iterator[SandboxBox]:
        """Take a free slot (waiting if none is free): a leased uid and a fresh, empty working
        directory; both are cleaned up (processes killed, files removed) on exit."""
        with self._slots:
            lease = self._lease_uid()
            uid = lease[0] if lease else None
            try:
                # Leftovers of a crashed earlier holder of this uid go before anything runs.
                self._kill_uid(uid)
                workdir = Path(tempfile.mkdtemp(prefix="run-", dir=self.base_dir))
                try:
                    if uid is not None:
                        os.chown(workdir, uid, uid)
                    os.chmod(workdir, 0o700)
                    yield SandboxBox(self, uid, workdir)
                finally:
                    self._cleanup(uid, workdir)
            finally:
                if lease:
                    os.close(lease[1])  # releases the flock

    def cache_dir(self, uid: int | None, name: str) -> Path:
        """A persistent folder of ``uid`` (e.g. Go's build cache), owned by it."""
        path = self.base_dir / f"cache-{name}-{uid if uid is not None else os.getuid()}"
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
            if uid is not None:
                os.chown(path, uid, uid)
        return path

    # -- running ----------------------------------------------------------------------------
    def userns_available(self) -> bool:
        """Whether ``unshare --map-root-user --net`` works here (checked once)."""
        if self._userns_ok is None:
            exe = shutil.which("unshare")
            ok = False
            if exe:
                try:
                    ok = (
                        subprocess.run(
                            [exe, "--map-root-user", "--net", "true"],
                            capture_output=True,
                            timeout=10,
                        ).returncode
                        == 0
                    )
                except (OSError, subprocess.TimeoutExpired):
                    ok = False
            self._userns_ok = ok
        return self._userns_ok

    def _run(
        self,
        argv: Sequence[str],
        workdir: Path,
        uid: int | None,
        limits: SandboxLimits,
        env: Mapping[str, str] | None,
        stdin: str | None,
    ) -> SandboxResult:
        clean_env = {
            "PATH": _DEFAULT_PATH,
            "LANG": "C.UTF-8",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
        }
        clean_env.update(env or {})
        argv, isolated = self._wrap(list(argv), uid, limits)
        out_path = Path(tempfile.mkstemp(prefix="stdout-", dir=self._private)[1])
        err_path = Path(tempfile.mkstemp(prefix="stderr-", dir=self._private)[1])
        start = time.perf_counter()
        timed_out = False
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                try:
                    proc = subprocess.Popen(
                        argv,
                        cwd=workdir,
                        env=clean_env,
                        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                        close_fds=True,
                    )
                except FileNotFoundError as e:
                    raise FileNotFoundError(f"sandbox: cannot run {argv[0]!r}: {e}") from None
                try:
                    if stdin is not None:
                        assert proc.stdin is not None
                        try:
                            proc.stdin.write(stdin.encode())
                            proc.stdin.close()
                        except BrokenPipeError:
                            pass
                    proc.wait(timeout=limits.timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_group(proc.pid)
                    self._kill_uid(uid)
                    proc.wait()
            wall = time.perf_counter() - start
            stdout, t1 = _read_capped(out_path, limits.output_bytes)
            stderr, t2 = _read_capped(err_path, limits.output_bytes)
        finally:
            out_path.unlink(missing_ok=True)
            err_path.unlink(missing_ok=True)
        rc = proc.returncode
        sig = None
        if rc is not None and rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = f"signal {-rc}"
        return SandboxResult(
            returncode=rc,
            stdout=stdout,
            stderr=stderr,
            wall_s=wall,
            timed_out=timed_out,
            signal=None if timed_out else sig,
            output_truncated=t1 or t2,
            network_isolated=isolated,
            limits=limits.to_dict(),
        )

    # -- cleanup ----------------------------------------------------------------------------
    def _wrap(
        self, argv: list[str], uid: int | None, limits: SandboxLimits
    ) -> tuple[list[str], bool]:
        """The command line that applies the namespace, the limits and the uid, then runs argv.

        util-linux's ``unshare``, ``prlimit`` and ``setpriv`` do the work between fork and exec
        (no Python runs in the child, which stays safe with the executor's threads)."""
        mb = 1024 * 1024
        nproc = limits.max_processes + (0 if uid is not None else _count_own_processes())
        cpu = int(limits.cpu_s)
        limit_args = [
            _tool("prlimit"),
            f"--cpu={cpu}:{cpu + 1}",
            f"--as={int(limits.memory_mb * mb)}",
            f"--fsize={int(limits.file_size_mb * mb)}",
            f"--nproc={int(nproc)}",
            f"--nofile={int(limits.max_open_files)}",
            "--core=0",
            "--",
        ]
        if uid is not None:
            drop = [_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
            return [_tool("unshare"), "--net", "--", *limit_args, *drop, *argv], True
        if self.userns_available():
            return [_tool("unshare"), "--map-root-user", "--net", "--", *limit_args, *argv], True
        return [*limit_args, *argv], False

    def _kill_uid(self, uid: int | None) -> None:
        """Kill every process of ``uid`` (root only), including children that left the process
        group: stop them all first (a stopped process cannot fork), then kill, until a scan of
        ``/proc`` finds none."""
        if uid is None:
            return
        for _ in range(100):
            pids = _pids_of_uid(uid)
            if not pids:
                return
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
            time.sleep(0.005)
        raise RuntimeError(f"sandbox: processes of uid {uid} survive repeated SIGKILL")

    def _cleanup(self, uid: int | None, workdir: Path) -> None:
        self._kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)
        if uid is not None:
            for root in _WORLD_WRITABLE:
                _remove_owned(Path(root), uid)

    def close(self) -> None:
        """Remove the sandbox's private folder (working directories go with their slots)."""
        shutil.rmtree(self._private, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SandboxBox:
    """One taken slot: a fresh working directory and the uid its commands run as."""

    sandbox: Sandbox
    uid: int | None
    workdir: Path

    def write(self, name: str, text: str) -> Path:
        """Write a file into the working directory (owned by the slot uid)."""
        path = self.workdir / name
        path.write_text(text, encoding="utf-8")
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path

    def run(
        self,
        argv: Sequence[str],
        limits: SandboxLimits | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> SandboxResult:
        """Run ``argv`` in this slot's directory under ``limits``."""
        return self.sandbox._run(
            argv, self.workdir, self.uid, limits or SandboxLimits(), env, stdin
        )

    def cache_dir(self, name: str) -> Path:
        return self.sandbox.cache_dir(self.uid, name)


def _tool(name: str) -> str:
    """Absolute path of a util-linux/procps tool the sandbox needs, or a clear error."""
    path = shutil.which(name, path=_DEFAULT_PATH + ":/sbin:/usr/sbin")
    if path is None:
        raise FileNotFoundError(
            f"the sandbox needs {name!r} (Debian package util-linux / procps), not found on PATH"
        )
    return path


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _pids_of_uid(uid: int) -> list[int]:
    """Live processes of ``uid`` (zombies are dead already and wait only for their reaper)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                if state not in (b"Z", b"X"):
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return pids


def _count_own_processes() -> int:
    uid = os.getuid()
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _read_capped(path: Path, limit: int) -> tuple[str, bool]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        data = f.read(int(limit))
    return data.decode("utf-8", errors="replace"), size > limit


def _remove_owned(root: Path, uid: int) -> None:
    """Delete what ``uid`` left directly in a world-writable folder (files, folders, links)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
