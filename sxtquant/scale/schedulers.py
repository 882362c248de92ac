"""Where a batch runs: in this process, on local worker processes, or on a Dask cluster.

:func:`parse_scheduler` reads ``--scheduler`` (``in-process``, ``local[:N]``,
``tcp://host:port`` or a scheduler file) into a :class:`SchedulerSpec`;
:func:`connect` gives the Dask client for it (none for in-process). Dask is imported
only when a scheduler other than ``in-process`` is asked for.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sxtquant.core.errors import InputError

_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")


@dataclass(frozen=True)
class SchedulerSpec:
    """Where the tasks run.

    Attributes
    ----------
    kind : {"in-process", "local", "address", "file"}
        ``in-process``: this process, one task after the other, no Dask needed;
        ``local``: a :class:`distributed.LocalCluster` of ``workers`` processes with one
        thread each; ``address``: an existing scheduler at ``address``; ``file``: an
        existing scheduler described by a scheduler file (``dask-scheduler
        --scheduler-file``, dask-mpi).
    workers : int or None
        ``local`` only; None: one worker per CPU core.
    address : str or None
        The scheduler's address, or the scheduler file's path.
    """

    kind: Literal["in-process", "local", "address", "file"] = "in-process"
    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return "local" if self.workers is None else f"local:{self.workers}"
        return self.address if self.address is not None else self.kind


SCHEDULER_HELP = (
    "where the tomograms are processed: 'in-process' (default: this process, one after "
    "the other), 'local' or 'local:N' (a local Dask cluster of N worker processes, one "
    "per CPU core by default), the address of a running Dask scheduler "
    "('tcp://host:8786') or its scheduler file (.json)"
)


def parse_scheduler(text: str | None) -> SchedulerSpec:
    """Read a ``--scheduler`` value; see :data:`SCHEDULER_HELP`.

    Raises
    ------
    InputError
        Anything else (message names ``--scheduler`` and the accepted forms).
    """
    if text is None:
        return SchedulerSpec()
    value = str(text).strip()
    if value in ("in-process", "inprocess", "none"):
        return SchedulerSpec()
    local = re.fullmatch(r"local(?::(\d+))?", value)
    if local:
        workers = int(local.group(1)) if local.group(1) else None
        if workers is not None and workers < 1:
            raise InputError("--scheduler", f"local:N needs at least 1 worker, got {value!r}")
        return SchedulerSpec("local", workers=workers)
    if _ADDRESS.match(value) and re.search(r":\d+$", value.split("://", 1)[1]):
        return SchedulerSpec("address", address=value)
    if value.lower().endswith(".json"):
        if not Path(value).is_file():
            raise InputError("--scheduler", f"no scheduler file {value!r}")
        return SchedulerSpec("file", address=value)
    raise InputError(
        "--scheduler",
        f"unknown scheduler {value!r}; use in-process, local, local:N, "
        "tcp://HOST:PORT or a scheduler file (.json)",
    )


def local_workers() -> int:
    """The number of CPU cores this process may use (one local worker each)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def connect(
    spec: SchedulerSpec,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | int = "auto",
    timeout_s: float = 10.0,
) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``spec``, closed on exit; ``None`` for in-process.

    A ``local`` cluster is started here and shut down on exit (worker processes,
    ``threads_per_worker`` threads each, ``memory_limit`` per worker; no dashboard).

    Raises
    ------
    InputError
        The scheduler cannot be reached within ``timeout_s`` seconds.
    """
    if spec.kind == "in-process":
        yield None
        return
    import logging

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "--scheduler", f"{spec} needs Dask: pip install 'sxtquant[dask]'"
        ) from None

    with contextlib.ExitStack() as stack:
        try:
            if spec.kind == "local":
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=spec.workers or local_workers(),
                        threads_per_worker=threads_per_worker,
                        processes=True,
                        memory_limit=memory_limit,
                        dashboard_address=None,
                        # a worker whose heartbeat meets the scheduler already gone at
                        # shutdown logs that at ERROR with a traceback (seen under load);
                        # a task's own failure reaches the caller through its future
                        silence_logs=logging.CRITICAL,
                    )
                )
                client = stack.enter_context(Client(cluster))
            elif spec.kind == "file":
                client = stack.enter_context(
                    Client(scheduler_file=spec.address, timeout=f"{timeout_s}s")
                )
            else:
                client = stack.enter_context(Client(spec.address, timeout=f"{timeout_s}s"))
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError("--scheduler", f"cannot start or reach {spec}: {exc}") from None
        yield client
