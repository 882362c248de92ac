"""Fixtures of the evaluation suite: the quick harness, run once per session.

The quick run writes its tables to ``$SXTQUANT_EVAL_OUT`` (default
``evaluation/results/work/pytest``, inside the git-ignored cache folder) and shares
the cache of ``python -m evaluation run --quick`` (``evaluation/results/work``, or
``$SXTQUANT_EVAL_CACHE``): simulations and trained models made by either are reused
by the other, so a second run takes a minute or two. Delete the cache folder for a
run from scratch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

EVAL_OUT_ENV = "SXTQUANT_EVAL_OUT"
EVAL_CACHE_ENV = "SXTQUANT_EVAL_CACHE"
# torch threads of the quick run (default 1): floating-point sums, and with them the
# trained networks, differ with the thread count; one thread makes the suite's scores
# the same on every run on the same CPU, and those are the scores its thresholds are set
# against (docs/evaluation.md)
EVAL_THREADS_ENV = "SXTQUANT_EVAL_THREADS"
DEFAULT_EVAL_CACHE = Path(__file__).resolve().parent / "results" / "work"
DEFAULT_EVAL_OUT = DEFAULT_EVAL_CACHE / "pytest"


def quick_out() -> Path:
    return Path(os.environ.get(EVAL_OUT_ENV) or DEFAULT_EVAL_OUT)


@pytest.fixture(scope="session")
def quick_run():
    """The quick harness on the simulated benchmark (tiny preset, 1 torch thread).

    Returns
    -------
    (Path, dict)
        The output folder and the ``run.json`` record.
    """

    from evaluation import harness

    out = quick_out()
    threads = int(os.environ.get(EVAL_THREADS_ENV) or 1)
    cache = Path(os.environ.get(EVAL_CACHE_ENV) or DEFAULT_EVAL_CACHE)
    config = harness.quick_config("tiny", threads=threads)
    started = time.perf_counter()
    record = harness.run(config, out, cache=cache, quiet=True)
    record["pytest_wall_seconds"] = time.perf_counter() - started
    return out, record
