"""Reading and writing volumes: the only module of sxtquant that touches image files.

Every reader returns a :class:`Volume`: the array in (z, y, x) order and the voxel
size in nanometres (``None`` when the file does not record one). Every writer goes
to a temporary name in the target folder and renames it when complete, so an
interrupted run never leaves a half-written file under the final name.

Supported formats
-----------------
======================  ======  =====  =========================================
format                  read    write  voxel size
======================  ======  =====  =========================================
MRC / REC / ST / MAP    yes     yes    header ``voxel_size`` (Å, converted to nm)
TIFF (stack, ImageJ)    yes     yes    ImageJ ``spacing`` + resolution tags + unit
folder of TIFF slices   yes     no     from the first slice
HDF5                    yes     yes    ``voxel_size_nm`` or ``element_size_um`` attrs
OME-Zarr (0.4 / 0.5)    yes     yes    ``coordinateTransformations`` scale + units
======================  ======  =====  =========================================
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sxtquant.core.errors import InputError
from sxtquant.core.voxels import VoxelSize, as_voxel_size
from sxtquant.io.files import atomic_output
from sxtquant.io.formats import (
    HDF5_SUFFIXES,
    MRC_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    _one_line,
    _unit_to_nm,
    format_of,
)
from sxtquant.io.zarr import _read_zarr, _write_zarr


@dataclass(frozen=True)
class Volume:
    """A volume and its voxel size.

    Attributes
    ----------
    data : (Z, Y, X) ndarray
        The voxels, in the file's own dtype; a read-only memory map where the
        format allows (MRC, uncompressed TIFF), so reading does not copy.
    voxel_size_nm : (z, y, x) tuple of float, or None
        Voxel size in nm; ``None`` when the file records none.
    path : Path or None
        Where the volume was read from.
    """

    data: np.ndarray
    voxel_size_nm: VoxelSize | None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def require_voxel_size(self, override: float | Sequence[float] | None = None) -> VoxelSize:
        """The voxel size to use for physical units: ``override`` if given, else the header's.

        Raises
        ------
        InputError
            If neither is known; the message tells the user to pass ``--voxel-size``.
        """
        if override is not None:
            try:
                return as_voxel_size(override)
            except ValueError as exc:
                raise InputError("--voxel-size", str(exc)) from None
        if self.voxel_size_nm is None:
            raise InputError(
                self.path or "volume",
                "the file records no voxel size; give it with --voxel-size NM",
            )
        return self.voxel_size_nm


def read_volume(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    check: bool = True,
) -> Volume:
    """Read a volume from MRC/REC/ST, TIFF, a folder of TIFFs, HDF5 or OME-Zarr.

    Parameters
    ----------
    path : path-like
        The file (or folder, for TIFF slices and OME-Zarr).
    dataset : str, optional
        HDF5 only: path of the dataset inside the file. By default the only 2D/3D
        dataset of the file is taken.
    check : bool
        Reject empty volumes and volumes with NaN or infinite values.

    Returns
    -------
    Volume
        ``data`` is (Z, Y, X); a single 2D image comes back as one slice (1, Y, X).

    Raises
    ------
    InputError
        Missing or unreadable file, a dimensionality other than 2 or 3, an empty
        volume, or NaN/inf values; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    kind = format_of(path)
    try:
        if kind == "mrc":
            data, voxel = _read_mrc(path)
        elif kind == "tiff":
            data, voxel = _read_tiff(path)
        elif kind == "tiff-folder":
            data, voxel = _read_tiff_folder(path)
        elif kind == "hdf5":
            data, voxel = _read_hdf5(path, dataset)
        else:
            data, voxel = _read_zarr(path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise InputError(path, f"cannot read as {kind}: {_one_line(exc)}") from None
    data = as_zyx(data, source=path)
    if voxel is not None:
        voxel = VoxelSize.of(voxel)
    if check:
        check_values(data, source=path)
    return Volume(data=data, voxel_size_nm=voxel, path=path)


def as_zyx(data: np.ndarray, *, source: str | os.PathLike = "volume") -> np.ndarray:
    """A 2D image as one slice (1, Y, X); a 3D volume unchanged; anything else rejected."""
    if data.ndim == 2:
        return data[np.newaxis]
    if data.ndim != 3:
        raise InputError(
            source, f"expected a 2D image or a 3D volume (z, y, x), got shape {data.shape}"
        )
    return data


def check_values(data: np.ndarray, *, source: str | os.PathLike = "volume") -> None:
    """Reject an empty volume or one with NaN/inf values.

    Scans slice blocks so that a memory-mapped volume is never copied whole.
    """
    if data.size == 0:
        raise InputError(source, f"the volume is empty (shape {data.shape})")
    if not np.issubdtype(data.dtype, np.floating):
        if not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
            raise InputError(source, f"unsupported data type {data.dtype}")
        return
    step = max(1, (1 << 24) // max(1, data[0].size))
    for start in range(0, data.shape[0], step):
        block = np.asarray(data[start : start + step])
        if not np.isfinite(block).all():
            bad = "NaN" if np.isnan(block).any() else "infinite"
            z = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise InputError(source, f"the volume contains {bad} values (first at z = {z})")


def read_mask(path: str | os.PathLike, **kwargs) -> Volume:
    """Read a mask: any volume whose voxels > 0 are foreground; data is a bool array."""
    volume = read_volume(path, **kwargs)
    return Volume(
        data=np.asarray(volume.data) > 0, voxel_size_nm=volume.voxel_size_nm, path=volume.path
    )


def _read_mrc(path: Path) -> tuple[np.ndarray, VoxelSize | None]:
    import mrcfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # permissive mode warns about header quirks
        with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
            data = mrc.data
            if data is None:
                raise InputError(path, "not a readable MRC file (header or data is corrupt)")
            size = mrc.voxel_size
            voxel_a = (float(size.z), float(size.y), float(size.x))
    expected = int(np.prod(data.shape)) * data.dtype.itemsize
    if data.nbytes != expected:  # pragma: no cover - mrcfile already checks
        raise InputError(path, "the file is shorter than its header says")
    if all(v > 0 for v in voxel_a):
        voxel = (voxel_a[0] / 10.0, voxel_a[1] / 10.0, voxel_a[2] / 10.0)
    else:
        voxel = None
    return data, voxel


def _tiff_voxel_size(tif) -> VoxelSize | None:
    page = tif.pages[0]
    meta = tif.imagej_metadata or tif.shaped_metadata
    if isinstance(meta, (list, tuple)):
        meta = meta[0] if meta else None
    meta = meta or {}
    unit_nm = _unit_to_nm(meta.get("unit"))
    if unit_nm is None:
        res_unit = page.tags.get("ResolutionUnit")
        value = int(res_unit.value) if res_unit is not None else 1
        unit_nm = {2: 2.54e7, 3: 1e7}.get(value)
    if unit_nm is None:
        return None

    def pixel(tag_name: str) -> float | None:
        tag = page.tags.get(tag_name)
        if tag is None:
            return None
        num, den = tag.value
        return den / num if num else None

    x, y = pixel("XResolution"), pixel("YResolution")
    if x is None or y is None:
        return None
    z = meta.get("spacing")
    if z is None:  # no spacing recorded: z taken as x, and the voxel size says so
        return VoxelSize(x * unit_nm, y * unit_nm, x * unit_nm, z_assumed=True)
    return VoxelSize(float(z) * unit_nm, y * unit_nm, x * unit_nm)


def _read_tiff(path: Path) -> tuple[np.ndarray, VoxelSize | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(path, "the TIFF file holds no image")
        series = tif.series[0]
        axes = series.axes
        voxel = _tiff_voxel_size(tif)
        try:
            data = tif.asarray(out="memmap") if _tiff_is_contiguous(tif) else series.asarray()
        except (ValueError, TypeError):
            data = series.asarray()
    return _tiff_to_zyx(data, axes, path), voxel


def _tiff_is_contiguous(tif) -> bool:
    try:
        return tif.series[0].dataoffset is not None
    except AttributeError:  # pragma: no cover - older tifffile
        return False


def _tiff_to_zyx(data: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Squeeze singleton axes of an ImageJ hyperstack and check what is left is z, y, x."""
    axes = axes.upper()
    if len(axes) != data.ndim:  # pragma: no cover - tifffile keeps them in sync
        return data
    keep = [i for i, (a, n) in enumerate(zip(axes, data.shape, strict=True)) if n > 1 or a in "YX"]
    squeezed = data.reshape([data.shape[i] for i in keep])
    left = "".join(axes[i] for i in keep)
    for channel_axis in "CS":
        if channel_axis in left:
            n = data.shape[axes.index(channel_axis)]
            raise InputError(path, f"the TIFF has {n} channels; give a single-channel volume")
    if len(left) > 3:
        raise InputError(path, f"the TIFF has axes {left} {squeezed.shape}; expected (z, y, x)")
    return squeezed


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _read_tiff_folder(path: Path) -> tuple[np.ndarray, VoxelSize | None]:
    import tifffile

    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
        key=_natural_key,
    )
    if not files:
        raise InputError(path, "the folder holds no .tif/.tiff files")
    with tifffile.TiffFile(files[0]) as tif:
        voxel = _tiff_voxel_size(tif)
        first = tif.asarray()
    if first.ndim != 2:
        raise InputError(files[0], f"expected one 2D slice per file, got shape {first.shape}")
    stack = np.empty((len(files), *first.shape), dtype=first.dtype)
    stack[0] = first
    for i, file in enumerate(files[1:], start=1):
        try:
            image = tifffile.imread(file)
        except (OSError, ValueError) as exc:
            raise InputError(file, f"cannot read TIFF slice: {_one_line(exc)}") from None
        if image.shape != first.shape:
            raise InputError(
                file, f"slice shape {image.shape} differs from the first slice's {first.shape}"
            )
        stack[i] = image
    return stack, voxel


def _hdf5_voxel_size(node) -> VoxelSize | None:
    attrs = node.attrs
    if "voxel_size_nm" in attrs:
        return as_voxel_size(np.asarray(attrs["voxel_size_nm"]).tolist())
    if "element_size_um" in attrs:  # Fiji / ilastik convention, (z, y, x) in µm
        return as_voxel_size((np.asarray(attrs["element_size_um"]) * 1e3).tolist())
    return None


def _read_hdf5(path: Path, dataset: str | None) -> tuple[np.ndarray, VoxelSize | None]:
    import h5py

    with h5py.File(path, "r") as f:
        if dataset is None:
            found: list[str] = []
            f.visititems(
                lambda name, obj: (
                    found.append(name)
                    if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3)
                    else None
                )
            )
            if len(found) != 1:
                what = "no 2D or 3D dataset" if not found else f"datasets {', '.join(found)}"
                raise InputError(path, f"the file holds {what}; choose one with --dataset")
            dataset = found[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputError(path, f"no dataset '{dataset}' in the file")
        node = f[dataset]
        data = node[()]
        voxel = _hdf5_voxel_size(node) or _hdf5_voxel_size(node.parent)
    return data, voxel


def write_volume(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size_nm: float | Sequence[float] | None = None,
    *,
    dataset: str = "data",
) -> Path:
    """Write a (Z, Y, X) volume; the format follows the suffix of ``path``.

    ``.tif``/``.tiff``: ImageJ hyperstack with spacing and unit nm (uint8, uint16,
    int16, float32), otherwise a plain TIFF with the same metadata. ``.mrc`` etc.:
    MRC2014 with the voxel size in Å. ``.zarr``: OME-Zarr 0.4. ``.h5``: HDF5 with a
    ``voxel_size_nm`` attribute. Written atomically.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {data.shape}")
    voxel = as_voxel_size(voxel_size_nm) if voxel_size_nm is not None else None
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        writer = _write_tiff
    elif name.endswith(MRC_SUFFIXES):
        writer = _write_mrc
    elif name.endswith(ZARR_SUFFIXES):
        writer = _write_zarr
    elif name.endswith(HDF5_SUFFIXES):

        def writer(tmp, data, voxel):
            _write_hdf5(tmp, data, voxel, dataset)

    else:
        raise InputError(path, "unknown output type; use .tif, .mrc, .zarr or .h5")
    with atomic_output(path) as tmp:
        writer(tmp, data, voxel)
    return path


def write_mask(path: str | os.PathLike, mask: np.ndarray, voxel_size_nm=None) -> Path:
    """Write a binary mask as uint8 with values 0/255 (what Fiji and MIB expect)."""
    return write_volume(path, mask_to_uint8(mask), voxel_size_nm)


def mask_to_uint8(mask: np.ndarray) -> np.ndarray:
    """Foreground (non-zero / True) -> 255, background -> 0, as uint8."""
    return np.where(np.asarray(mask) > 0, np.uint8(255), np.uint8(0))


def write_probability(path: str | os.PathLike, probability: np.ndarray, voxel_size_nm=None) -> Path:
    """Write a probability map as float32 in [0, 1]."""
    prob = np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0)
    return write_volume(path, prob, voxel_size_nm)


_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


def _write_tiff(tmp: Path, data: np.ndarray, voxel: VoxelSize | None) -> None:
    import tifffile

    kwargs: dict = {"metadata": {"axes": "ZYX"}}
    if voxel is not None:
        kwargs["resolution"] = (1.0 / voxel[2], 1.0 / voxel[1])
        kwargs["metadata"].update(spacing=voxel[0], unit="nm")
    if data.dtype.type in _IMAGEJ_DTYPES:
        tifffile.imwrite(tmp, data, imagej=True, **kwargs)
    else:  # ImageJ cannot hold it (uint32 labels...): a plain TIFF with shaped metadata
        if voxel is not None:
            kwargs["resolutionunit"] = "NONE"
        tifffile.imwrite(tmp, data, bigtiff=data.nbytes > 2**31, photometric="minisblack", **kwargs)


def _write_mrc(tmp: Path, data: np.ndarray, voxel: VoxelSize | None) -> None:
    import mrcfile

    # MRC2014 modes: int8 (0), int16 (1), float32 (2), uint16 (6), float16 (12).
    # uint8 is stored as uint16 (mode 6, as mrcfile does); wider integers as float32
    # when every value is exact in float32, otherwise refused rather than rounded.
    if data.dtype == np.uint8:
        data = data.astype(np.uint16)
    elif data.dtype.type not in (np.int8, np.int16, np.uint16, np.float32, np.float16):
        if np.issubdtype(data.dtype, np.integer) and data.size and np.abs(data).max() > 2**24:
            raise ValueError(f"{data.dtype} values above 2**24 cannot be stored exactly in MRC")
        data = data.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            if voxel is not None:
                mrc.voxel_size = (voxel[2] * 10.0, voxel[1] * 10.0, voxel[0] * 10.0)


def _write_hdf5(tmp: Path, data: np.ndarray, voxel: VoxelSize | None, dataset: str) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset(
            dataset, data=data, chunks=True, compression="gzip", compression_opts=1
        )
        if voxel is not None:
            ds.attrs["voxel_size_nm"] = np.asarray(voxel)
            ds.attrs["element_size_um"] = np.asarray(voxel) / 1e3
