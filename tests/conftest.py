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

# The determinism check of the suite (docs/evaluation.md, "Two layers of tests"):
# `SXTQUANT_TEST_THREADS=2 make test` runs every test, and every CLI subprocess, with that
# many torch threads instead of the tests' own choice; every verdict must be the same
# under 1 and 2 threads.
TEST_THREADS_ENV = "SXTQUANT_TEST_THREADS"


def test_threads(default: int) -> int:
    """Torch threads for a test: ``$SXTQUANT_TEST_THREADS`` when set, else ``default``."""
    return int(os.environ.get(TEST_THREADS_ENV) or default)


test_threads.__test__ = False  # a helper, not a test


def pytest_configure(config):
    if os.environ.get(TEST_THREADS_ENV):
        import torch

        threads = test_threads(1)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the CLI subprocesses


def pytest_report_header(config):
    import torch

    return f"torch threads: {torch.get_num_threads()} (${TEST_THREADS_ENV}=" + (
        os.environ.get(TEST_THREADS_ENV, "") + ")"
    )


@pytest.fixture
def torch_threads():
    """Run the test with :func:`test_threads` (default 1) torch threads, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(test_threads(1))
    yield
    torch.set_num_threads(before)


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
