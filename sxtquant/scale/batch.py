"""Batches of tomograms: inputs, where they run (in-process or Dask), summary and sidecar records.

The pieces the ``segment`` and ``quantify`` verbs use to process many tomograms,
each as one task, on the machine that runs them or on a Dask cluster:

=============================  ==========================================================
:func:`expand_inputs`          paths, folders and glob patterns -> the volume files
:func:`parse_scheduler`        ``in-process``, ``local[:N]``, ``tcp://host:port`` or a
                               scheduler file -> :class:`SchedulerSpec`
:func:`connect`                a Dask client for a spec (none for in-process)
:func:`run_jobs`               one task per :class:`Job`; failures are collected, not raised
:func:`summary_table`          the outcomes as a table (input, status, error, seconds)
:func:`report`                 write it as CSV, print it, give the exit code (0 or 1)
:func:`record_matches`         whether a sidecar record says an output set is complete
:func:`write_record`           the sidecar record: SHA-256 of inputs and outputs, model, options
=============================  ==========================================================

Dask is imported only when a scheduler other than ``in-process`` is asked for, so one
tomogram on one machine needs no Dask at all.

A job that fails with an :class:`~sxtquant.core.errors.InputError` (a corrupt file, NaN
values...) fails at once; any other exception is retried ``retries`` times by Dask
(a worker that dies while running a task is replaced and the task run again by the
scheduler itself, up to ``distributed.scheduler.allowed-failures`` times, 3 by default).

Examples
--------
>>> spec = parse_scheduler("local:4")
>>> spec.kind, spec.workers
('local', 4)
>>> parse_scheduler("tcp://10.0.0.5:8786").address
'tcp://10.0.0.5:8786'
"""

from __future__ import annotations

import glob
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sxtquant.core.errors import InputError

__all__ = [
    "DEFAULT_RETRIES",
    "RECORD_SUFFIX",
    "SUMMARY_FILE",
    "Inputs",
    "Job",
    "JobResult",
    "Outcome",
    "expand_inputs",
    "report",
    "run_jobs",
    "summary_table",
]


SUMMARY_FILE = "batch_summary.csv"


RECORD_SUFFIX = ".sxtquant.json"


DEFAULT_RETRIES = 2


SUMMARY_COLUMNS = ("input", "status", "error", "seconds")


# the suffixes sxtquant reads (sxtquant.io's, repeated so that `--help` stays light)
_VOLUME_SUFFIXES = (
    *(".mrc", ".rec", ".st", ".map", ".ali", ".mrcs"),
    *(".tif", ".tiff"),
    *(".h5", ".hdf5", ".hdf", ".he5"),
    ".zarr",
)


_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Inputs:
    """The volumes a command was given.

    Attributes
    ----------
    paths : tuple of Path
        Volume files (or OME-Zarr / TIFF-slice folders), in the order given; folders
        and patterns in natural order (``t2`` before ``t10``), duplicates dropped.
    expanded : bool
        True when a folder of volumes or a glob pattern was given.
    """

    paths: tuple[Path, ...]
    expanded: bool

    @property
    def collection(self) -> bool:
        """A folder or pattern was given, or more than one volume."""
        return self.expanded or len(self.paths) > 1


def _natural_key(path: Path) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(path))]


def _is_zarr(path: Path) -> bool:
    return path.name.lower().endswith(".zarr") or (
        path.is_dir() and ((path / ".zattrs").exists() or (path / "zarr.json").exists())
    )


def _is_volume(path: Path, skip: Sequence[str]) -> bool:
    name = path.name.lower()
    if name.startswith(".") or any(name.endswith(s) or f"{s}." in name for s in skip):
        return False
    if _is_zarr(path):
        return True
    return path.is_file() and name.endswith(_VOLUME_SUFFIXES)


def _is_slice_folder(folder: Path, entries: list[Path]) -> bool:
    """A folder of 2D TIFF slices (one volume), not a folder of volumes."""
    if any(not p.name.lower().endswith((".tif", ".tiff")) for p in entries):
        return False
    import tifffile

    try:
        with tifffile.TiffFile(min(entries, key=_natural_key)) as tif:
            return len(tif.pages) == 1
    except (OSError, ValueError):
        return True  # let the TIFF-folder reader name the bad file


def expand_inputs(patterns: Iterable[str | os.PathLike], *, skip: Sequence[str] = ()) -> Inputs:
    """The volumes named by paths, folders and glob patterns.

    Parameters
    ----------
    patterns : iterable of str or path-like
        Each is a volume file, an OME-Zarr folder (``.zarr``), a folder of 2D TIFF
        slices (one volume, as :func:`sxtquant.io.read_volume` reads it), a folder of
        volumes (its volume files and OME-Zarr folders, not its subfolders' content),
        or a glob pattern (``"data/*.mrc"``, ``"**"`` recursive).
    skip : sequence of str
        Name parts that leave a file out of folders and patterns (not of files named
        one by one), e.g. ``(".probability",)``. Hidden files (``.name``) are always
        left out: they are unfinished outputs.

    Returns
    -------
    Inputs

    Raises
    ------
    InputError
        A path that does not exist, or a folder or pattern with no volume in it.
    """
    found: list[Path] = []
    expanded = False
    skip = tuple(s.lower() for s in skip)
    for pattern in patterns:
        text = os.fspath(pattern)
        path = Path(text)
        if path.exists():
            if path.is_dir() and not _is_zarr(path):
                entries = sorted(
                    (p for p in path.iterdir() if _is_volume(p, skip)), key=_natural_key
                )
                if entries and not _is_slice_folder(path, entries):
                    found.extend(entries)
                    expanded = True
                    continue
            found.append(path)
        elif _GLOB_CHARS.search(text):
            matches = [Path(m) for m in glob.glob(text, recursive=True)]
            matches = sorted((m for m in matches if _is_volume(m, skip)), key=_natural_key)
            if not matches:
                raise InputError(text, "the pattern matches no volume file")
            found.extend(matches)
            expanded = True
        else:
            raise InputError(text, "no such file or folder")
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.realpath(path), path)
    paths = tuple(unique.values())
    if not paths:
        raise InputError(" ".join(map(os.fspath, patterns)) or "INPUT", "no volume given")
    return Inputs(paths=paths, expanded=expanded)


@dataclass(frozen=True)
class JobResult:
    """What a job function returns.

    Attributes
    ----------
    status : {"ok", "skipped"}
        ``skipped``: its outputs were already complete (see :func:`record_matches`).
    message : str
        One line for the user (what was written).
    value : object
        Anything the caller collects (a table...); must pickle for Dask.
    """

    status: Literal["ok", "skipped"] = "ok"
    message: str = ""
    value: Any = None


@dataclass(frozen=True)
class Job:
    """One task: ``func(*args, **kwargs) -> JobResult`` for the input ``name``.

    ``func`` must be importable by the workers (a module-level function) for Dask.
    """

    name: str
    func: Callable[..., JobResult]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How one job ended: ``status`` ok, failed or skipped, the ``error`` message if it
    failed, the ``seconds`` it ran (NaN if its worker died), and its :class:`JobResult`."""

    input: str
    status: Literal["ok", "failed", "skipped"]
    error: str = ""
    seconds: float = math.nan
    result: JobResult | None = None


class _Failed(Exception):
    """A job's InputError, carried back from a worker with the seconds it ran."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message, seconds)
        self.message = message
        self.seconds = seconds


def _run_timed(
    func: Callable[..., JobResult], args: tuple, kwargs: Mapping, *, quiet: bool = False
) -> tuple:
    """Run one job where it is scheduled; returns ``(JobResult, seconds)``.

    An InputError is not worth retrying: it comes back as :class:`_Failed`, which
    :func:`run_jobs` reports without retrying it. Other exceptions propagate (Dask
    retries them). ``quiet`` silences progress bars (on a worker, nobody sees them).
    """
    from sxtquant.core.progress import set_quiet

    if quiet:
        set_quiet(True)
    start = time.perf_counter()
    try:
        result = func(*args, **kwargs)
    except InputError as exc:
        return _Failed(str(exc), time.perf_counter() - start), None
    return result, time.perf_counter() - start


def _error_text(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return "the worker running it died (killed, or out of memory) too many times"
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc).strip().splitlines()
    return f"{name}: {text[0]}" if text else name


def _outcome(job: Job, value: Any, seconds: float | None) -> Outcome:
    if isinstance(value, _Failed):
        return Outcome(job.name, "failed", value.message, value.seconds)
    if not isinstance(value, JobResult):
        value = JobResult(value=value)
    return Outcome(job.name, value.status, "", seconds, value)


def run_jobs(
    jobs: Sequence[Job],
    client=None,
    *,
    here: Sequence[bool] | None = None,
    retries: int = DEFAULT_RETRIES,
    echo: bool = True,
) -> list[Outcome]:
    """Run every job, in this process (``client`` None) or on a Dask cluster.

    A failing job does not stop the others: its exception becomes a ``failed``
    :class:`Outcome`. On a cluster each job is one task, submitted with
    ``retries`` (exceptions other than InputError are retried); a task whose worker
    died is rerun by the scheduler.

    Parameters
    ----------
    jobs : sequence of Job
    client : distributed.Client, optional
    here : sequence of bool, optional
        Per job: run it in this process even with a client, after the others (a job
        that spreads its own blocks over the client's workers).
    retries : int
        Extra attempts after an exception (Dask only).
    echo : bool
        Print each job's message (or error) as it ends.

    Returns
    -------
    list of Outcome
        In the order of ``jobs``.
    """
    if here is not None and any(here):
        local = [i for i, h in enumerate(here) if h]
        remote = [i for i, h in enumerate(here) if not h]
        options = {"retries": retries, "echo": echo}
        outcomes = {}
        for group, where in ((remote, client), (local, None)):
            done = run_jobs([jobs[i] for i in group], where, **options)
            outcomes.update(zip(group, done, strict=True))
        return [outcomes[i] for i in range(len(jobs))]
    if not jobs:
        return []
    from sxtquant.core.progress import progress

    outcomes: list[Outcome | None] = [None] * len(jobs)

    def done(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        if echo:
            if outcome.status == "failed":
                print(f"{outcome.input}: FAILED: {outcome.error}", file=sys.stderr)
            elif outcome.result is not None and outcome.result.message:
                print(outcome.result.message, flush=True)

    bar = progress(total=len(jobs), desc="tomograms", unit="tomogram")
    try:
        if client is None:
            for i, job in enumerate(jobs):
                start = time.perf_counter()
                try:
                    value, seconds = _run_timed(job.func, job.args, job.kwargs)
                except Exception as exc:  # a failed job is reported, not raised
                    elapsed = time.perf_counter() - start
                    done(i, Outcome(job.name, "failed", _error_text(exc), elapsed))
                else:
                    done(i, _outcome(job, value, seconds))
                bar.update(1)
        else:
            from distributed import as_completed

            futures = {}
            for i, job in enumerate(jobs):
                future = client.submit(
                    _run_timed,
                    job.func,
                    job.args,
                    job.kwargs,
                    quiet=True,
                    pure=False,
                    retries=retries,
                )
                futures[future] = i
            for future in as_completed(futures):
                i = futures[future]
                if future.status == "error":
                    exc = future.exception()
                    done(i, Outcome(jobs[i].name, "failed", _error_text(exc), math.nan))
                else:
                    value, seconds = future.result()
                    done(i, _outcome(jobs[i], value, seconds))
                future.release()
                bar.update(1)
    finally:
        bar.close()
    return [o for o in outcomes if o is not None]


def summary_table(outcomes: Sequence[Outcome]):
    """The outcomes as a pandas DataFrame: ``input``, ``status``, ``error``, ``seconds``."""
    import pandas as pd

    rows = [(o.input, o.status, o.error, o.seconds) for o in outcomes]
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return table.astype({"seconds": float})


def report(outcomes: Sequence[Outcome], summary_path: str | os.PathLike) -> int:
    """Write the summary table (CSV), print it, and return the exit code.

    Returns
    -------
    int
        0 when every job is ok or skipped, 1 when some failed.
    """
    from sxtquant.io.files import write_table

    table = summary_table(outcomes)
    write_table(table, summary_path)
    counts = table["status"].value_counts()
    ok, skipped, failed = (int(counts.get(s, 0)) for s in ("ok", "skipped", "failed"))
    shown = table if len(table) <= 100 else table[table["status"] == "failed"]
    with_text = shown.assign(seconds=shown["seconds"].map(lambda s: f"{s:.1f}"))
    print(with_text.to_string(index=False, max_colwidth=120))
    line = f"{len(table)} inputs: {ok} ok, {skipped} skipped (up to date), {failed} failed"
    print(f"{line}; summary in {summary_path}")
    if failed:
        print(
            f"sxtquant: {failed} of {len(table)} inputs failed (see {summary_path})",
            file=sys.stderr,
        )
    return 1 if failed else 0
