"""Two processes training into one run directory: the second stops at once, naming the first;
a killed trainer leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from _corpus_fixtures import make_corpus

from babel_interp.cli import main
from babel_interp.training.lock import RunLock, RunLockedError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), ("python", "php"), docs=30)


def _args(corpus, out, steps=4000):
    return ["train", "--corpus", str(corpus), "--out", str(out), "--steps", str(steps),
            "--batch-size", "2", "--seq-len", "16", "--eval-every", "0", "--no-progress",
            "--threads", "1"]  # fmt: skip


def test_the_lock_is_exclusive_and_released(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(
        RunLockedError, match=rf"being trained by another process \(pid {os.getpid()}"
    ):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire().release()


def test_a_second_trainer_on_a_running_run_stops_with_a_clear_message(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "babel_interp.cli", *_args(corpus, run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the first trainer never started"
            time.sleep(0.05)
        assert main([*_args(corpus, run), "--resume"]) == 1
        err = capsys.readouterr().err
        assert f"is being trained by another process (pid {proc.pid}" in err
        # The first run was not disturbed by the attempt.
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    # Killed: the operating system released its lock; the run resumes.
    assert main([*_args(corpus, run, steps=2), "--resume"]) == 0
