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

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sxtquant.errors import InputError
from sxtquant.utils import as_voxel_size

VoxelSize = tuple[float, float, float]

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


# --------------------------------------------------------------------------- reading


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unit_to_nm(unit: str | None) -> float | None:
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\\u00b5", "µ")
    return _UNIT_NM.get(key)


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
    z = float(z) if z is not None else x  # no spacing recorded: isotropic voxels
    return (z * unit_nm, y * unit_nm, x * unit_nm)


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


def _read_zarr(path: Path) -> tuple[np.ndarray, VoxelSize | None]:
    import zarr

    array, voxel = open_ome_zarr(path)
    if isinstance(array, zarr.Array):
        array = array[...]
    return np.asarray(array), voxel


def open_ome_zarr(path: str | os.PathLike):
    """Open level 0 of an OME-Zarr image lazily.

    Returns
    -------
    array : zarr.Array or a view of it
        The full-resolution (z, y, x) or (y, x) array; leading singleton (t, c) axes are
        indexed away lazily. Nothing is read until it is sliced (``array[z0:z1]``,
        ``array[...]``, or ``dask.array.from_array``).
    voxel_size_nm : (z, y, x) tuple or None
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise InputError(path, f"not an OME-Zarr image: {_one_line(exc)}") from None
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise InputError(path, "not an OME-Zarr image: no 'multiscales' metadata")
    scale_meta = multiscales[0]
    level0 = scale_meta["datasets"][0]
    array = group[level0["path"]]
    axes = scale_meta.get("axes") or [{"name": n} for n in "zyx"[-array.ndim :]]
    scale = np.ones(array.ndim)
    for transform in level0.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = scale * np.asarray(transform["scale"], dtype=float)
    for transform in scale_meta.get("coordinateTransformations", []) or []:
        if transform.get("type") == "scale":
            scale = scale * np.asarray(transform["scale"], dtype=float)
    spatial = [i for i, ax in enumerate(axes) if _axis_type(ax) == "space"]
    for i, (ax, n) in enumerate(zip(axes, array.shape, strict=True)):
        if i not in spatial and n != 1:
            raise InputError(
                path, f"axis '{ax.get('name')}' has {n} entries; give a single-channel volume"
            )
    voxel = None
    units = [
        _unit_to_nm(axes[i].get("unit")) if isinstance(axes[i], dict) else None for i in spatial
    ]
    if len(spatial) in (2, 3) and all(u is not None for u in units):
        sizes = [float(scale[i]) * u for i, u in zip(spatial, units, strict=True)]
        voxel = tuple([sizes[0], *sizes] if len(sizes) == 2 else sizes)
    if array.ndim > len(spatial):
        array = _SpatialView(array, array.ndim - len(spatial))
    return array, voxel


class _SpatialView:
    """The spatial axes of an array with leading singleton axes, read only when sliced."""

    def __init__(self, array, n_leading: int):
        self._array, self._lead = array, (0,) * n_leading
        self.shape = tuple(array.shape[n_leading:])
        self.ndim = len(self.shape)
        self.dtype = array.dtype
        self.chunks = tuple(array.chunks[n_leading:])

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self._array[self._lead + key]

    def __array__(self, dtype=None, copy=None):
        data = np.asarray(self[...])
        return data if dtype is None else data.astype(dtype, copy=False)


def _axis_type(axis) -> str:
    if isinstance(axis, str):
        return "space" if axis in "zyx" else "other"
    return axis.get("type") or ("space" if axis.get("name") in ("z", "y", "x") else "other")


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On any error the temporary file (or folder) is removed and ``path`` is left as it
    was, so no half-written output ever appears under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


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


def ome_zarr_metadata(voxel: VoxelSize | None, name: str = "image") -> dict:
    """The OME-NGFF 0.4 ``multiscales`` attributes for one (z, y, x) level in nm."""
    scale = list(voxel) if voxel is not None else [1.0, 1.0, 1.0]
    axes = [{"name": n, "type": "space"} for n in "zyx"]
    if voxel is not None:
        for axis in axes:
            axis["unit"] = "nanometer"
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ]
    }


def create_ome_zarr(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype,
    voxel_size_nm: VoxelSize | None,
    *,
    chunks: Sequence[int] | None = None,
    name: str | None = None,
):
    """Create an empty OME-Zarr 0.4 image (zarr format 2) and return its level-0 array.

    ``name`` (the image's name in its metadata) defaults to the file's stem; the temporary
    name of :func:`atomic_output` is seen through, so the image is named after its final path.
    """
    import zarr

    shape = tuple(int(n) for n in shape)
    if chunks is None:
        chunks = (min(shape[0], 16), min(shape[1], 512), min(shape[2], 512))
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    if name is None:
        final = re.fullmatch(r"\.(.+)\.partial-\d+", Path(path).name)
        name = volume_stem(final.group(1) if final else path)
    group.attrs.update(ome_zarr_metadata(voxel_size_nm, name=name))
    return group.create_array(
        "0",
        shape=shape,
        chunks=tuple(chunks),
        dtype=dtype,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        fill_value=0,
    )


def _write_zarr(tmp: Path, data: np.ndarray, voxel: VoxelSize | None) -> None:
    array = create_ome_zarr(tmp, data.shape, data.dtype, voxel)
    array[...] = data


def _write_hdf5(tmp: Path, data: np.ndarray, voxel: VoxelSize | None, dataset: str) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        ds = f.create_dataset(
            dataset, data=data, chunks=True, compression="gzip", compression_opts=1
        )
        if voxel is not None:
            ds.attrs["voxel_size_nm"] = np.asarray(voxel)
            ds.attrs["element_size_um"] = np.asarray(voxel) / 1e3


def write_table(table, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV (or Parquet for ``.parquet``), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        if path.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    return path


def json_text(obj) -> str:
    """Indented JSON text of ``obj`` with NaN/inf written as null and numpy scalars as numbers."""
    return json.dumps(_nan_to_none(obj), indent=2) + "\n"


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON (indented, NaN written as null), atomically."""
    return write_text(json_text(obj), path)


def _nan_to_none(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (HTML, Markdown...), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def save_figure(figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure (format from the suffix: .png, .pdf, .svg), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path
