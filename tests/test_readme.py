"""The README cannot rot: its commands are run (or, for long jobs, parsed) here.

* ``console`` blocks: every ``$ command`` is run in order in one scratch folder, as a
  newcomer would type them, and must exit 0.
* the ``python`` block runs in that folder after the console blocks.
* ``bash`` blocks hold long jobs (training, downloads): each ``sxtquant`` line is parsed
  by the real argument parser, so the README cannot name a verb or option that does
  not exist; each ``make`` target must exist in the Makefile.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _console_commands() -> list[str]:
    return [
        line[2:].strip()
        for block in _blocks("console")
        for line in block.splitlines()
        if line.startswith("$ ")
    ]


def test_readme_shows_the_two_setup_commands_first():
    first = _blocks("bash")[0].split("\n")
    commands = [line.split("#")[0].strip() for line in first if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_tour_and_python_example_run(tmp_path):
    commands = _console_commands()
    assert len(commands) >= 5
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2"}
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "sxtquant", command
        proc = subprocess.run(
            [sys.executable, "-m", "sxtquant", *argv[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
    (python_block,) = _blocks("python")
    proc = subprocess.run(
        [sys.executable, "-c", python_block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "volume_nm3" in proc.stdout


@pytest.mark.parametrize(
    "line",
    [
        line.strip()
        for block in _blocks("bash")[1:]
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ],
)
def test_readme_long_jobs_are_valid_commands(line):
    argv = shlex.split(line)
    if argv[0] == "make":
        makefile = (ROOT / "Makefile").read_text()
        assert re.search(rf"^{argv[1]}:", makefile, flags=re.M), line
        return
    assert argv[0] == "sxtquant", line
    from sxtquant.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert callable(args._run)
