"""Options that several verbs share, and their checks (argparse lives here, not in the library)."""

from __future__ import annotations

import argparse

from sxtquant.core.device import DEVICES
from sxtquant.core.errors import InputError
from sxtquant.scale.batch import DEFAULT_RETRIES
from sxtquant.scale.blocks import DEFAULT_BLOCK_SLICES
from sxtquant.scale.schedulers import SCHEDULER_HELP, SchedulerSpec, parse_scheduler


def add_voxel_size_option(parser: argparse.ArgumentParser) -> None:
    """``--voxel-size NM [NM NM]``: overrides the file header's voxel size."""
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="NM",
        help="voxel size in nm, one value or three (z y x); default: from the file header",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``: where the network runs."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where the network runs; auto picks CUDA when present (default: %(default)s)",
    )


def check_device(device: str):
    """The torch device of ``--device``; CUDA asked for but absent is a user error."""
    from sxtquant.core.device import resolve_device

    try:
        return resolve_device(device)
    except ValueError as exc:
        raise InputError("--device", str(exc)) from None


def add_batch_options(parser, *, inputs: str, force_help: str) -> None:
    """The options of a verb that works on batches and on OME-Zarr blocks.

    ``--scheduler`` (see :data:`SCHEDULER_HELP`), ``--block-slices`` (OME-Zarr
    ``inputs``: slices per block), ``--retries`` and ``--force`` (``force_help``).
    """
    parser.add_argument("--scheduler", metavar="WHERE", help=SCHEDULER_HELP)
    parser.add_argument(
        "--block-slices",
        type=int,
        default=DEFAULT_BLOCK_SLICES,
        metavar="N",
        help=f"OME-Zarr {inputs}: slices per block, the unit of work and of memory "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help="with a Dask scheduler: run a task that fails unexpectedly up to N more "
        "times (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help=force_help)


def check_batch_options(args) -> SchedulerSpec:
    """Check the options of :func:`add_batch_options`; returns the scheduler.

    Raises
    ------
    InputError
        A bad ``--scheduler``, ``--block-slices`` below 1 or negative ``--retries``.
    """
    scheduler = parse_scheduler(args.scheduler)
    if args.block_slices < 1:
        raise InputError("--block-slices", f"must be at least 1, got {args.block_slices}")
    if args.retries < 0:
        raise InputError("--retries", f"must be >= 0, got {args.retries}")
    return scheduler
