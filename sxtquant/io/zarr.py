"""OME-Zarr (NGFF 0.4 / 0.5) images: lazy reading, metadata, creation."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sxtquant.core.errors import InputError
from sxtquant.core.voxels import VoxelSize
from sxtquant.io.formats import _one_line, _unit_to_nm, volume_stem


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
