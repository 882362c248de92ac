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
EVAL_THREADS_ENV = "SXTQUANT_EVAL_THREADS"  # torch threads (default 2); 1 on a busy machine
DEFAULT_EVAL_CACHE = Path(__file__).resolve().parent / "results" / "work"
DEFAULT_EVAL_OUT = DEFAULT_EVAL_CACHE / "pytest"


def quick_out() -> Path:
    return Path(os.environ.get(EVAL_OUT_ENV) or DEFAULT_EVAL_OUT)


@pytest.fixture(scope="session")
def quick_run():
    """The quick harness on the simulated benchmark (tiny preset, 2 torch threads).

    Returns
    -------
    (Path, dict)
        The output folder and the ``run.json`` record.
    """
    import torch

    from evaluation import harness

    out = quick_out()
    threads = int(os.environ.get(EVAL_THREADS_ENV) or min(2, torch.get_num_threads()))
    cache = Path(os.environ.get(EVAL_CACHE_ENV) or DEFAULT_EVAL_CACHE)
    config = harness.quick_config("tiny", threads=threads)
    started = time.perf_counter()
    record = harness.run(config, out, cache=cache, quiet=True)
    record["pytest_wall_seconds"] = time.perf_counter() - started
    return out, record
