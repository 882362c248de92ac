"""Shared fixtures: a CLI runner and small seeded volumes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# before any test module imports torch (sxtquant sets the same default, too late once torch is
# loaded): idle OpenMP threads sleep instead of spinning, which on 2 shared cores made
# tests 2-3 times slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def _run_cli(*args: str | os.PathLike, cwd: Path | None = None, timeout: float = 600) -> CliResult:
    """Run ``python -m sxtquant ARGS`` in a subprocess, as a user would."""
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "sxtquant", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def run_cli():
    """Call as ``run_cli("segment", path, "-o", out)``; returns returncode/stdout/stderr."""
    return _run_cli


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, one ``sxtquant: error:`` line naming what is wrong, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sxtquant: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
