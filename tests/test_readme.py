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

from tests.conftest import test_threads

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _console_commands() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows under it) of every ``$`` line."""
    commands: list[tuple[str, list[str]]] = []
    for block in _blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:].strip(), []))
            elif line.strip() and commands:
                commands[-1][1].append(line.rstrip())
    return commands


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _same_line(shown: str, actual: str) -> bool:
    """Equal text and integers; decimals equal to the README's printed precision (±2 in the
    last digit, or 2 %: the network's output differs in the last bits between CPUs)."""
    if _NUMBER.sub("#", shown).split() != _NUMBER.sub("#", actual).split():
        return False
    for a, b in zip(_NUMBER.findall(shown), _NUMBER.findall(actual), strict=True):
        if "." not in a:
            if a != b:
                return False
            continue
        decimals = len(a.split(".")[1].split("e")[0])
        if abs(float(a) - float(b)) > max(2 * 10.0**-decimals, 0.02 * abs(float(a))):
            return False
    return True


def test_same_line_compares_text_exactly_and_numbers_to_printed_precision():
    assert _same_line("a: 12.34 % of 128 slices", "a: 12.35 % of 128 slices")
    assert not _same_line("a: 12.34 % of 128 slices", "a: 13.34 % of 128 slices")
    assert not _same_line("a: 12.34 % of 128 slices", "b: 12.34 % of 128 slices")
    assert not _same_line("128 slices", "130 slices")
    assert _same_line("F1 0.712", "F1 0.714") and not _same_line("F1 0.712", "F1 0.75")


def test_readme_shows_the_two_setup_commands_first():
    first = _blocks("bash")[0].split("\n")
    commands = [line.split("#")[0].strip() for line in first if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_tour_and_python_example_run(tmp_path):
    commands = _console_commands()
    assert len(commands) >= 5
    assert sum(bool(shown) for _, shown in commands) >= 3, "the tour shows real output"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(test_threads(2))}
    for command, shown in commands:
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
        actual = [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]
        for line in shown:  # every shown line is printed, in order
            while actual and not _same_line(line, actual[0]):
                actual.pop(0)
            assert actual, f"{command}: the README shows\n{line}\nbut it printed\n{proc.stdout}"
            actual.pop(0)
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
