"""Fixtures of the evaluation suite: the quick harness, run once per session.

The quick run writes to ``$SXTQUANT_EVAL_OUT`` (default
``evaluation/results/work/pytest``, inside the git-ignored cache folder), so a second
``pytest evaluation/`` reuses its simulations and trained models and takes seconds.
Delete that folder (or point the variable elsewhere) for a run from scratch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

EVAL_OUT_ENV = "SXTQUANT_EVAL_OUT"
DEFAULT_EVAL_OUT = Path(__file__).resolve().parent / "results" / "work" / "pytest"


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
    threads = min(2, torch.get_num_threads())
    config = harness.quick_config("tiny", threads=threads, device="cpu")
    started = time.perf_counter()
    record = harness.run(config, out, quiet=True)
    record["pytest_wall_seconds"] = time.perf_counter() - started
    return out, record
