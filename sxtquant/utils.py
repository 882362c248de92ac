"""Small shared helpers: progress bars that ``--quiet`` silences, voxel-size handling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tqdm.auto import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) every progress bar of sxtquant."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress bars are silenced."""
    return _QUIET


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm progress bar on stderr that honours :func:`set_quiet`.

    Takes the keyword arguments of :class:`tqdm.tqdm` (``desc``, ``total``, ``unit``...).
    """
    kwargs.setdefault("disable", _QUIET)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def as_voxel_size(voxel_size_nm: float | Sequence[float]) -> tuple[float, float, float]:
    """Normalise a voxel size (one number, or a sequence of 1 or 3) to a (z, y, x) tuple in nm.

    Raises
    ------
    ValueError
        If it is not one or three positive finite numbers.
    """
    try:
        values = [float(voxel_size_nm)] * 3  # type: ignore[arg-type]
    except TypeError:
        values = [float(v) for v in voxel_size_nm]  # type: ignore[union-attr]
        if len(values) == 1:  # one value given as a list (e.g. by argparse nargs="+")
            values = values * 3
    if len(values) != 3 or not all(v > 0 and v < float("inf") for v in values):
        raise ValueError(
            f"voxel size must be one or three positive numbers in nm, got {voxel_size_nm!r}"
        )
    return (values[0], values[1], values[2])
