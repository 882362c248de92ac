"""File formats by suffix, volume names, length units."""

from __future__ import annotations

import os
from pathlib import Path

from sxtquant.core.errors import InputError

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".map", ".ali", ".mrcs")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
ZARR_SUFFIXES = (".zarr",)


# Length units as written by ImageJ, OME-NGFF, HDF5 conventions -> nanometres.
_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "ångström": 0.1,
}


def format_of(path: str | os.PathLike) -> str:
    """The format name (``mrc``, ``tiff``, ``tiff-folder``, ``hdf5``, ``zarr``) of a path.

    Decided by the suffix (and, for folders, by their content), never by guessing
    from the bytes.

    Raises
    ------
    InputError
        If the suffix is not one sxtquant reads.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ZARR_SUFFIXES or (path.is_dir() and (path / ".zattrs").exists()):
        return "zarr"
    if path.is_dir() and (path / "zarr.json").exists():
        return "zarr"
    if path.is_dir():
        return "tiff-folder"
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    raise InputError(
        path,
        f"unknown file type '{suffix or path.name}'; sxtquant reads "
        + ", ".join(MRC_SUFFIXES + TIFF_SUFFIXES + HDF5_SUFFIXES + ZARR_SUFFIXES)
        + " and folders of TIFF slices",
    )


def volume_stem(path: str | os.PathLike) -> str:
    """The name of a volume without its format suffixes (``cell.ome.zarr`` -> ``cell``)."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if Path(name).suffix else name


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unit_to_nm(unit: str | None) -> float | None:
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\\u00b5", "µ")
    return _UNIT_NM.get(key)
