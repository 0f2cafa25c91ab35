"""The console script is installed and dispatches to its command groups."""

from __future__ import annotations

import shutil
import subprocess
import sys

from babel_interp.cli import build_parser, main


def test_console_script_help():
    exe = shutil.which("babel-interp") or f"{sys.prefix}/bin/babel-interp"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "babel-interp" in out.stdout
    assert "analyze" in out.stdout


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: babel-interp" in capsys.readouterr().out


def test_parser_has_analyze_group():
    parser = build_parser()
    args = parser.parse_args(["analyze"])
    assert args.command == "analyze"
