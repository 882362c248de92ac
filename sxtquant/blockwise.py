"""Tomograms larger than memory: block-by-block segmentation, objects and measurements.

A large tomogram stored as OME-Zarr is read lazily as a dask array cut into
blocks of whole slices (z-slabs, ``block_slices`` slices each, full y and x), and
every stage runs one block at a time, in this process or spread over the workers
of a Dask cluster. Nothing ever holds the whole volume.

=================================  =================================================
:func:`open_blocks`                an OME-Zarr image as a dask array of z-slabs
:func:`predict_blocks`             the network's probability, block by block (the
                                   network is slice-wise: blocks need no overlap)
:func:`smooth_z_blocks`            z-smoothing with ``map_overlap`` (a halo of
                                   ``radius`` slices from the neighbouring blocks)
:func:`segment_ome_zarr`           probability + mask of an OME-Zarr tomogram, written
                                   to OME-Zarr block by block
:func:`plan_objects`               3D objects across blocks (see below)
:func:`label_blocks`               the objects' labels, block by block
:func:`measure_labels`             the per-object table, each object read from its
                                   bounding box only
:func:`iter_mask_slices`           the same thresholding and z-smoothing, streamed
                                   from a memory-mapped probability
:func:`write_tiff_slices`          an ImageJ TIFF written one slice at a time
=================================  =================================================

Objects across blocks
---------------------
Each block's foreground is labelled on its own (:func:`scipy.ndimage.label`,
connectivity 1 to 3). The labels on both sides of every block face are paired where
they touch (with the same connectivity), the pairs join labels into objects (graph
connected components), and every object takes as its number its rank among the
objects ordered by their first voxel in scan order: the smallest of its block-wise
ids, since blocks are whole z-slabs numbered in z order and each block numbers its
labels in scan order. The result is voxel for voxel the labelling of the whole
volume by :func:`sxtquant.objects.connected_components` and, after the same size and
border filters, by :func:`sxtquant.objects.objects_from_mask`. Sizes and bounding
boxes come from the same pass, so filtering needs no extra pass; the labels are
recomputed block by block when written (labelling is cheaper than storing them).

Dask is imported by the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sxtquant import io
from sxtquant.errors import InputError
from sxtquant.utils import as_voxel_size, is_quiet
from sxtquant.utils import progress as progress_bar

__all__ = [
    "DEFAULT_BLOCK_SLICES",
    "ObjectPlan",
    "SegmentStats",
    "cached_model",
    "check_mask_values",
    "iter_mask_slices",
    "label_blocks",
    "measure_labels",
    "open_blocks",
    "plan_objects",
    "predict_blocks",
    "quantify_blocks",
    "release_free_memory",
    "segment_ome_zarr",
    "smooth_z_blocks",
    "write_labels",
    "write_tiff_slices",
]

#: Slices per block: a 1024 x 1024 block is 64 MiB as float32.
DEFAULT_BLOCK_SLICES = 16
_ZARR_CHUNK_YX = 512
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


# --------------------------------------------------------------------------- reading


def open_blocks(path: str | os.PathLike, *, block_slices: int = DEFAULT_BLOCK_SLICES):
    """Open level 0 of an OME-Zarr image as a dask array of z-slabs, lazily.

    Parameters
    ----------
    path : path-like
        The OME-Zarr image (``.zarr`` / ``.ome.zarr`` folder).
    block_slices : int
        Slices per block; y and x are never cut.

    Returns
    -------
    volume : (Z, Y, X) dask.array.Array
        Chunks ``(block_slices, Y, X)``; a 2D image is one slice.
    voxel_size_nm : (z, y, x) tuple of float, or None

    Raises
    ------
    InputError
        Not an OME-Zarr image, not 2D/3D, empty, or of a dtype that is not a number.
    """
    try:
        import dask.array as da
    except ImportError:
        raise InputError(
            path,
            "OME-Zarr volumes are processed block by block with Dask: pip install 'sxtquant[dask]'",
        ) from None
    import zarr

    if block_slices < 1:
        raise InputError("--block-slices", f"must be at least 1, got {block_slices}")
    array, voxel = io.open_ome_zarr(path)
    if array.ndim not in (2, 3):
        raise InputError(path, f"expected a 2D image or a 3D volume, got shape {array.shape}")
    if array.size == 0:
        raise InputError(path, f"the volume is empty (shape {array.shape})")
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise InputError(path, f"unsupported data type {dtype}")
    if array.ndim == 2:
        chunks: tuple = (-1, -1)
    else:
        chunks = (block_slices, -1, -1)
    if isinstance(array, zarr.Array):
        volume = da.from_zarr(array, chunks=chunks)
    else:  # an image with leading (t, c) axes comes back from io already read
        volume = da.from_array(array, chunks=chunks, name=False)
    if volume.ndim == 2:
        volume = volume[np.newaxis]
    return volume, voxel


def _first_z(block_info) -> int:
    if not block_info or 0 not in block_info:
        return 0
    return int(block_info[0]["array-location"][0][0])


def _check_finite(block: np.ndarray, source: str, z0: int) -> None:
    if np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
        bad = "NaN" if np.isnan(block).any() else "infinite"
        z = z0 + int(np.argwhere(~np.isfinite(block))[0][0])
        raise InputError(source, f"the volume contains {bad} values (first at z = {z})")


# --------------------------------------------------------------------------- segmentation


@functools.lru_cache(maxsize=4)
def cached_model(name_or_path: str):
    """:func:`sxtquant.model.load_model` once per process (each Dask worker keeps its own)."""
    from sxtquant.model import load_model

    return load_model(name_or_path)


def _resolve_model(model):
    if isinstance(model, str | os.PathLike):
        return cached_model(os.fspath(model))
    return model


def release_free_memory() -> bool:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``).

    :func:`sxtquant.infer.reuse_freed_memory` keeps freed memory in the process for
    speed; in a worker that runs block after block under a memory limit the kept
    heap grows with fragmentation until the limit kills the worker. Trimming once
    per block bounds it, at the price of faulting the network's buffers in again
    once per block. Returns whether it could be done (Linux/glibc only).
    """
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def _predict_block(block, *, model, source, options, block_info=None):
    from sxtquant.infer import predict_slices

    block = np.asarray(block)
    _check_finite(block, source, _first_z(block_info))
    try:
        return predict_slices(_resolve_model(model), block, progress=False, **options)
    finally:
        release_free_memory()


def predict_blocks(
    volume,
    model,
    *,
    device: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    tta: bool = False,
    source: str | os.PathLike = "volume",
):
    """The network's membrane probability of every block, lazily.

    Parameters
    ----------
    volume : (Z, Y, X) dask.array.Array
        Blocks of whole slices (:func:`open_blocks`).
    model : str, path or torch.nn.Module
        A model name or checkpoint folder (loaded once per process, the way to go on
        a cluster: the workers load it themselves) or a loaded network (shipped to
        every task; fine in-process).
    device, tile, overlap, batch_size, tta
        As :func:`sxtquant.infer.predict_slices` (None: its default).
    source : str or path-like
        Named in the error raised for a block with NaN or infinite values.

    Returns
    -------
    (Z, Y, X) dask.array.Array of float32
        Probabilities in [0, 1], with the chunks of ``volume``; equal, slice for
        slice, to :func:`sxtquant.infer.predict_slices` of the whole volume.
    """
    options: dict[str, Any] = {"device": device, "tta": tta}
    for name, value in (("tile", tile), ("overlap", overlap), ("batch_size", batch_size)):
        if value is not None:
            options[name] = value
    return volume.map_blocks(
        _predict_block,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        name=f"sxtquant-predict-{uuid.uuid4().hex}",
        model=model,
        source=os.fspath(source),
        options=options,
    )


def _smooth_block(block, *, radius):
    from sxtquant.postprocess import smooth_z

    return smooth_z(np.asarray(block, dtype=np.float32), radius)


def smooth_z_blocks(probability, radius: int):
    """Average a probability over ±``radius`` slices, block by block with overlap.

    Each block is extended by ``radius`` slices of its neighbours (``map_overlap``,
    nothing added at the volume's ends), smoothed by
    :func:`sxtquant.postprocess.smooth_z` and trimmed back, so the result equals
    that of the whole volume exactly.

    Parameters
    ----------
    probability : (Z, Y, X) dask.array.Array of float
    radius : int
        Half-width of the window in slices (0: no smoothing).

    Returns
    -------
    (Z, Y, X) dask.array.Array of float32
    """
    if radius < 0 or int(radius) != radius:
        raise ValueError(f"radius must be a whole number >= 0, got {radius}")
    if radius == 0:
        return probability.astype(np.float32)
    return probability.map_overlap(
        _smooth_block,
        depth={0: int(radius), 1: 0, 2: 0},
        boundary="none",
        trim=True,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        radius=int(radius),
    )


def iter_mask_slices(
    probability: np.ndarray,
    threshold: float,
    *,
    z_radius: int = 0,
    block_slices: int = DEFAULT_BLOCK_SLICES,
) -> Iterator[np.ndarray]:
    """Yield ``probability > threshold`` slice by slice, after z-smoothing over ±z_radius.

    Reads ``block_slices`` slices (plus ``z_radius`` on each side) at a time, so a
    memory-mapped probability is never read whole; the result equals
    :func:`sxtquant.postprocess.smooth_z` then the threshold on the whole volume.

    Yields
    ------
    (Y, X) ndarray of bool
    """
    from sxtquant.postprocess import smooth_z

    level = np.float32(threshold)
    n = probability.shape[0]
    for start in range(0, n, block_slices):
        stop = min(n, start + block_slices)
        if z_radius:
            lo, hi = max(0, start - z_radius), min(n, stop + z_radius)
            window = np.asarray(probability[lo:hi], dtype=np.float32)
            block = smooth_z(window, z_radius)[start - lo : stop - lo]
        else:
            block = np.asarray(probability[start:stop])
        yield from block > level


@dataclass(frozen=True)
class SegmentStats:
    """What :func:`segment_ome_zarr` wrote: the volume's ``shape``, its
    ``voxel_size_nm`` and the number of mask voxels (``foreground``)."""

    shape: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float] | None
    foreground: int

    @property
    def fraction(self) -> float:
        """Fraction of the voxels in the mask."""
        return self.foreground / max(1, int(np.prod(self.shape)))


def _compute(*collections, scheduler=None, desc: str = "blocks", show: bool = True):
    """``dask.compute`` on a Dask client, or here one task at a time with a progress bar."""
    import dask

    if scheduler is not None and not isinstance(scheduler, str):
        return dask.compute(*collections, scheduler=scheduler)
    from dask.callbacks import Callback

    bar = progress_bar(desc=desc, unit="task", disable=not show or is_quiet())

    def start_state(dsk, state):
        bar.total = len(dsk)
        bar.refresh()

    def posttask(key, result, dsk, state, worker_id):
        bar.update(1)

    try:
        with Callback(start_state=start_state, posttask=posttask):
            return dask.compute(*collections, scheduler=scheduler or "synchronous")
    finally:
        bar.close()


def _output_chunks(shape: Sequence[int], block_slices: int) -> tuple[int, int, int]:
    """Zarr chunks that never straddle two blocks (z = the block size), so blocks
    written in parallel never share a chunk."""
    return (
        min(int(shape[0]), block_slices),
        min(int(shape[1]), _ZARR_CHUNK_YX),
        min(int(shape[2]), _ZARR_CHUNK_YX),
    )


def segment_ome_zarr(
    source: str | os.PathLike,
    probability_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    model,
    *,
    threshold: float = 0.9,
    z_radius: int = 0,
    block_slices: int = DEFAULT_BLOCK_SLICES,
    scheduler=None,
    progress: bool = True,
    **infer_options,
) -> SegmentStats:
    """Segment an OME-Zarr tomogram block by block into two OME-Zarr images.

    Every block of ``block_slices`` slices is read, run through the network, and its
    probability and mask written before the next; with a Dask client the blocks run
    on its workers in parallel. Both outputs appear under their names only when
    complete (written beside them, then renamed).

    Parameters
    ----------
    source : path-like
        OME-Zarr tomogram (z, y, x).
    probability_path, mask_path : path-like
        Outputs: float32 probability in [0, 1] and uint8 mask (0/255), OME-Zarr with
        the source's voxel size, chunks ``(block_slices, 512, 512)`` at most.
    model : str, path or torch.nn.Module
        See :func:`predict_blocks`.
    threshold : float
        Mask = probability (z-smoothed if ``z_radius``) > threshold, strictly.
    z_radius : int
        Smooth the probability over ±z_radius slices before thresholding (the mask
        only; the probability written is the network's).
    block_slices : int
        Slices per block.
    scheduler : distributed.Client or str, optional
        Where the blocks run; default: in this process, one after the other.
    progress : bool
        Progress bar (in this process only).
    **infer_options
        ``device``, ``tile``, ``overlap``, ``batch_size``, ``tta`` of :func:`predict_blocks`.

    Returns
    -------
    SegmentStats

    Raises
    ------
    InputError
        The source is not a readable OME-Zarr volume, or holds NaN/inf values (found
        by the block that reads them; nothing is left behind).
    """
    import dask.array as da

    volume, voxel = open_blocks(source, block_slices=block_slices)
    probability = predict_blocks(volume, model, source=source, **infer_options)
    smoothed = smooth_z_blocks(probability, z_radius) if z_radius else probability
    mask = (smoothed > np.float32(threshold)).rechunk(probability.chunks)
    mask_u8 = da.where(mask, np.uint8(255), np.uint8(0))
    chunks = _output_chunks(volume.shape, block_slices)
    with io.atomic_output(probability_path) as tmp_prob, io.atomic_output(mask_path) as tmp_mask:
        prob_out = io.create_ome_zarr(tmp_prob, volume.shape, np.float32, voxel, chunks=chunks)
        mask_out = io.create_ome_zarr(tmp_mask, volume.shape, np.uint8, voxel, chunks=chunks)
        stored = da.store([probability, mask_u8], [prob_out, mask_out], lock=False, compute=False)
        _, foreground = _compute(
            stored, mask.sum(), scheduler=scheduler, desc="segmenting blocks", show=progress
        )
    return SegmentStats(tuple(volume.shape), voxel, int(foreground))


# --------------------------------------------------------------------------- objects


def check_mask_values(data: np.ndarray, source: str | os.PathLike = "mask") -> np.ndarray:
    """A mask or label volume as integers (or bool), refusing what cannot be one.

    Floating-point data with whole values becomes int64.

    Raises
    ------
    InputError
        Non-integral or negative values (the message names ``source``).
    """
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        if not np.array_equal(data, np.round(data)):
            raise InputError(
                source,
                "holds non-integral values; give a binary mask or instance labels "
                "(threshold a probability map first, e.g. with sxtquant segment)",
            )
        data = data.astype(np.int64)
    if data.dtype.kind == "i" and data.size and data.min() < 0:
        raise InputError(source, "holds negative values; labels must be >= 0")
    return data


def _structure(connectivity: int) -> np.ndarray:
    from scipy import ndimage

    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    return ndimage.generate_binary_structure(3, connectivity)


def _local_labels(data: np.ndarray, is_labels: bool, connectivity: int):
    """A block's own labels 1..n (int32, 0 = background) and, for a label volume,
    the label value of each (index = local label). ``data`` as from
    :func:`check_mask_values`."""
    from scipy import ndimage

    if not is_labels:
        local, _ = ndimage.label(data > 0, _structure(connectivity), output=np.int32)
        return local, None
    values, local = np.unique(data, return_inverse=True)
    local = local.reshape(data.shape).astype(np.int32)
    if values[0] != 0:  # no background in this block: local 0 is a label
        values = np.concatenate([[0], values])
        local += 1
    return local, values.astype(np.int64)


def _few_values(data: np.ndarray) -> np.ndarray:
    """Up to three distinct values of ``data``: enough to tell a mask from labels."""
    low, high = data.min(), data.max()
    middle = data[(data != low) & (data != high)][:1]
    return np.unique(np.concatenate([[low, high], middle]).astype(np.int64))


def _summarize_block(block, *, is_labels, connectivity, source, z0):
    """Sizes and boxes of a block's labels, its first and last slice of labels, and a
    few of its values."""
    from scipy import ndimage

    data = check_mask_values(block, source)
    local, values = _local_labels(data, is_labels, connectivity)
    n = int(local.max()) if local.size else 0
    sizes = np.bincount(local.ravel(), minlength=n + 1)[1:].astype(np.int64)
    boxes = np.zeros((n, 6), np.int64)
    for i, box in enumerate(ndimage.find_objects(local, max_label=n)):
        if box is not None:
            boxes[i] = [box[0].start, box[0].stop, box[1].start, box[1].stop,
                        box[2].start, box[2].stop]  # fmt: skip
    boxes[:, :2] += z0
    summary = {
        "n": n,
        "values": None if values is None else values[1:],
        "sizes": sizes,
        "boxes": boxes,
        "few_values": _few_values(data),
    }
    return summary, local[0].copy(), local[-1].copy()


def _face_pairs(lower_last: np.ndarray, upper_first: np.ndarray, connectivity: int):
    """Unique (lower label, upper label) pairs that touch across a block face."""
    shifts = [(0, 0)]
    if connectivity >= 2:
        shifts += [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 3:
        shifts += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    ny, nx = lower_last.shape
    found = [np.zeros((0, 2), np.int64)]
    for dy, dx in shifts:
        a = lower_last[max(0, -dy) : ny - max(0, dy), max(0, -dx) : nx - max(0, dx)]
        b = upper_first[max(0, dy) : ny - max(0, -dy), max(0, dx) : nx - max(0, -dx)]
        both = (a > 0) & (b > 0)
        found.append(np.stack([a[both], b[both]], axis=1).astype(np.int64))
    return np.unique(np.concatenate(found), axis=0)


@dataclass(frozen=True)
class ObjectPlan:
    """How every block's own labels become the volume's objects.

    Attributes
    ----------
    shape : (Z, Y, X)
    block_slices : tuple of int
        Slices of each block, in z order.
    luts : tuple of ndarray
        Per block: its own label (index) -> object number (0: background or dropped).
    boxes : (n, 6) ndarray of int64
        Bounding box of object i + 1: z0, z1, y0, y1, x0, x1 (stop exclusive).
    sizes : (n,) ndarray of int64
        Voxels of each object.
    is_labels : bool
        Whether the source was read as instance labels.
    connectivity : int
    """

    shape: tuple[int, int, int]
    block_slices: tuple[int, ...]
    luts: tuple[np.ndarray, ...]
    boxes: np.ndarray
    sizes: np.ndarray
    is_labels: bool
    connectivity: int

    @property
    def n_objects(self) -> int:
        return int(self.sizes.size)

    @property
    def dtype(self) -> np.dtype:
        from sxtquant.objects import label_dtype

        return label_dtype(self.n_objects)


def _z_slabs(volume):
    """``volume`` with y and x whole in every block (blocks are z-slabs)."""
    if len(volume.chunks[1]) > 1 or len(volume.chunks[2]) > 1:
        volume = volume.rechunk({1: -1, 2: -1})
    return volume


def _touches_edge(lo: np.ndarray, hi: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return (lo == 0).any(axis=1) | (hi == np.asarray(shape)).any(axis=1)


def _keep(sizes, lo, hi, shape, min_voxels, exclude_border) -> np.ndarray:
    keep = sizes > 0
    if min_voxels > 1:
        keep &= sizes >= min_voxels
    if exclude_border:
        keep &= ~_touches_edge(lo, hi, shape)
    return keep


def _merge_components(summaries, pairs, shape, min_voxels, exclude_border):
    """Objects from the block-wise labels of a mask joined across faces (mask mode)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = [s["n"] for s in summaries]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n_ids = int(offsets[-1]) + 1  # global id 0 = background
    sizes = np.concatenate([np.zeros(1, np.int64)] + [s["sizes"] for s in summaries])
    boxes = np.concatenate([np.zeros((1, 6), np.int64)] + [s["boxes"] for s in summaries])
    a = [p[:, 0] + offsets[k] for k, p in enumerate(pairs)]
    b = [p[:, 1] + offsets[k + 1] for k, p in enumerate(pairs)]
    a = np.concatenate([np.zeros(0, np.int64), *a])
    b = np.concatenate([np.zeros(0, np.int64), *b])
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n_ids, n_ids))
    n_comp, comp = connected_components(graph, directed=False)
    ids = np.arange(1, n_ids)
    first = np.full(n_comp, n_ids, np.int64)  # smallest id: scan order of the first voxel
    np.minimum.at(first, comp[1:], ids)
    size = np.bincount(comp[1:], weights=sizes[1:], minlength=n_comp).astype(np.int64)
    lo = np.full((n_comp, 3), np.iinfo(np.int64).max)
    hi = np.zeros((n_comp, 3), np.int64)
    np.minimum.at(lo, comp[1:], boxes[1:, 0::2])
    np.maximum.at(hi, comp[1:], boxes[1:, 1::2])
    keep = _keep(size, lo, hi, shape, min_voxels, exclude_border)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(first[kept], kind="stable")]
    number = np.zeros(n_comp, np.int64)
    number[kept] = np.arange(1, kept.size + 1)
    per_id = number[comp]
    per_id[0] = 0
    luts = tuple(
        np.concatenate([[0], per_id[offsets[k] + 1 : offsets[k + 1] + 1]])
        for k in range(len(summaries))
    )
    return luts, _boxes(lo[kept], hi[kept]), size[kept]


def _merge_values(summaries, shape, min_voxels, exclude_border):
    """Objects of a label volume: each label value is one object (labels mode)."""
    values = np.concatenate([np.zeros(0, np.int64)] + [s["values"] for s in summaries])
    unique, index = np.unique(values, return_inverse=True)
    sizes = np.concatenate([np.zeros(0, np.int64)] + [s["sizes"] for s in summaries])
    boxes = np.concatenate([np.zeros((0, 6), np.int64)] + [s["boxes"] for s in summaries])
    size = np.bincount(index, weights=sizes, minlength=unique.size).astype(np.int64)
    lo = np.full((unique.size, 3), np.iinfo(np.int64).max)
    hi = np.zeros((unique.size, 3), np.int64)
    np.minimum.at(lo, index, boxes[:, 0::2])
    np.maximum.at(hi, index, boxes[:, 1::2])
    keep = _keep(size, lo, hi, shape, min_voxels, exclude_border)
    number = np.where(keep, np.cumsum(keep), 0)  # renumbered 1..n in the order of values
    luts, start = [], 0
    for s in summaries:
        stop = start + s["values"].size
        luts.append(np.concatenate([[0], number[index[start:stop]]]))
        start = stop
    return tuple(luts), _boxes(lo[keep], hi[keep]), size[keep]


def _boxes(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    out = np.empty((lo.shape[0], 6), np.int64)
    out[:, 0::2] = lo
    out[:, 1::2] = hi
    return out


def _summaries(volume, *, is_labels, connectivity, source, scheduler, show):
    from dask import delayed

    starts = np.concatenate([[0], np.cumsum(volume.chunks[0])[:-1]]).astype(int)
    blocks = volume.to_delayed().ravel()
    summarize = delayed(_summarize_block, nout=3, pure=True)
    parts = [
        summarize(blk, is_labels=is_labels, connectivity=connectivity, source=source, z0=int(z0))
        for blk, z0 in zip(blocks, starts, strict=True)
    ]
    faces = []
    if not is_labels:
        pair = delayed(_face_pairs, pure=True)
        faces = [pair(parts[k][2], parts[k + 1][1], connectivity) for k in range(len(parts) - 1)]
    summaries, pairs = _compute(
        [p[0] for p in parts], faces, scheduler=scheduler, desc="labelling blocks", show=show
    )
    return list(summaries), list(pairs)


def plan_objects(
    volume,
    *,
    is_labels: bool | None = None,
    connectivity: int = 1,
    min_voxels: int = 0,
    exclude_border: bool = False,
    scheduler=None,
    source: str | os.PathLike = "mask",
    progress: bool = True,
) -> ObjectPlan:
    """3D objects of a mask or label volume, block by block, merged across block faces.

    The objects are exactly those of :func:`sxtquant.objects.objects_from_mask`
    (without ``separate``) on the whole volume, numbered the same way: the 3D
    connected components of a mask in scan order, or the labels of a label volume
    in the order of their values; then those under ``min_voxels`` and, with
    ``exclude_border``, those touching the volume's edge are dropped and the rest
    numbered 1..n.

    Parameters
    ----------
    volume : (Z, Y, X) dask.array.Array
        Mask (non-zero = foreground) or instance labels, e.g. from :func:`open_blocks`;
        read twice (here and by :func:`label_blocks`), so pass stored data, not a
        lazy computation. Blocks are made whole in y and x if they are not.
    is_labels : bool, optional
        Read as labels; default: labels when the volume holds more than two distinct
        values (then it is read a second time).
    connectivity : {1, 2, 3}
        Of the components of a mask (1: faces, as the whole-volume default).
    min_voxels : int
    exclude_border : bool
    scheduler : distributed.Client or str, optional
        Where the blocks run; default: here, one after the other.
    source : str or path-like
        Named in errors (non-integral or negative values).

    Returns
    -------
    ObjectPlan
    """
    volume = _z_slabs(volume)
    _structure(connectivity)
    source = os.fspath(source)
    shape = tuple(int(n) for n in volume.shape)
    options = {"connectivity": connectivity, "source": source, "scheduler": scheduler}
    summaries, pairs = _summaries(volume, is_labels=bool(is_labels), show=progress, **options)
    if is_labels is None:
        few = np.unique(np.concatenate([s["few_values"] for s in summaries]))
        is_labels = few.size > 2
        if is_labels:
            summaries, pairs = _summaries(volume, is_labels=True, show=progress, **options)
    if is_labels:
        luts, boxes, sizes = _merge_values(summaries, shape, min_voxels, exclude_border)
    else:
        luts, boxes, sizes = _merge_components(summaries, pairs, shape, min_voxels, exclude_border)
    from sxtquant.objects import label_dtype

    dtype = label_dtype(sizes.size)
    return ObjectPlan(
        shape=shape,
        block_slices=tuple(int(n) for n in volume.chunks[0]),
        luts=tuple(lut.astype(dtype) for lut in luts),
        boxes=boxes,
        sizes=sizes,
        is_labels=bool(is_labels),
        connectivity=connectivity,
    )


def _final_block(block, lut, *, is_labels, connectivity, source):
    local, _ = _local_labels(check_mask_values(block, source), is_labels, connectivity)
    return lut[local]


def label_blocks(volume, plan: ObjectPlan, *, source: str | os.PathLike = "mask"):
    """The objects of ``plan`` as a lazy label volume (each block labelled again and
    renumbered through its lookup table).

    Returns
    -------
    (Z, Y, X) dask.array.Array of uint16 or uint32
        Objects numbered 1..n (0 = background), equal to
        :func:`sxtquant.objects.objects_from_mask` of the whole volume.
    """
    import dask.array as da
    from dask import delayed

    volume = _z_slabs(volume)
    if tuple(int(n) for n in volume.chunks[0]) != plan.block_slices:
        raise ValueError("the volume's blocks differ from those the plan was made with")
    final = delayed(_final_block, pure=True)
    options = {"is_labels": plan.is_labels, "connectivity": plan.connectivity}
    ny, nx = plan.shape[1:]
    meta = np.empty((0, 0, 0), plan.dtype)
    parts = []
    blocks = volume.to_delayed().ravel()
    for blk, lut, nz in zip(blocks, plan.luts, plan.block_slices, strict=True):
        labels = final(blk, lut, source=os.fspath(source), **options)
        parts.append(da.from_delayed(labels, shape=(nz, ny, nx), dtype=plan.dtype, meta=meta))
    return da.concatenate(parts, axis=0)


def write_labels(
    path: str | os.PathLike,
    volume,
    plan: ObjectPlan,
    voxel_size_nm,
    *,
    scheduler=None,
    source: str | os.PathLike = "mask",
    progress: bool = True,
) -> Path:
    """Write the objects of ``plan`` to an OME-Zarr label image, block by block, atomically."""
    import dask.array as da

    labels = label_blocks(volume, plan, source=source)
    chunks = _output_chunks(plan.shape, max(plan.block_slices))
    labels = labels.rechunk((chunks[0], -1, -1))
    voxel = as_voxel_size(voxel_size_nm) if voxel_size_nm is not None else None
    with io.atomic_output(path) as tmp:
        out = io.create_ome_zarr(tmp, plan.shape, plan.dtype, voxel, chunks=chunks)
        _compute(
            da.store(labels, out, lock=False, compute=False),
            scheduler=scheduler,
            desc="writing labels",
            show=progress,
        )
    return Path(path)


# --------------------------------------------------------------------------- measuring


def _measure_some(labels, items, spacing, shape):
    """Rows of :func:`sxtquant.morphology.measure_objects` for some objects, each
    measured on its bounding box read from ``labels``."""
    import pandas as pd

    from sxtquant.morphology import measure_objects
    from sxtquant.utils import is_quiet, set_quiet

    rows = []
    quiet = is_quiet()
    set_quiet(True)  # no progress bar per object
    try:
        for label, box in items:
            crop = np.asarray(labels[box[0] : box[1], box[2] : box[3], box[4] : box[5]])
            row = measure_objects((crop == label).view(np.uint8), spacing)
            row["label"] = int(label)
            row["touches_border"] = bool(
                _touches_edge(np.asarray([box[0::2]]), np.asarray([box[1::2]]), shape)[0]
            )
            rows.append(row)
    finally:
        set_quiet(quiet)
    return pd.concat(rows, ignore_index=True) if rows else None


def measure_labels(
    labels,
    plan: ObjectPlan,
    voxel_size_nm,
    *,
    scheduler=None,
    objects_per_task: int = 16,
    progress: bool = True,
):
    """The per-object table of a stored label volume, one bounding box at a time.

    Parameters
    ----------
    labels : (Z, Y, X) zarr.Array or ndarray
        The objects of ``plan`` (written by :func:`write_labels`); only each object's
        bounding box is read.
    plan : ObjectPlan
    voxel_size_nm : float or (z, y, x) tuple of float
    scheduler : distributed.Client or str, optional
    objects_per_task : int
        Objects measured by one task.

    Returns
    -------
    pandas.DataFrame
        Equal to :func:`sxtquant.morphology.measure_objects` of the whole volume:
        same columns, dtypes, rows and values.
    """
    from dask import delayed

    from sxtquant.morphology import measure_objects

    spacing = as_voxel_size(voxel_size_nm)
    items = [(i + 1, tuple(int(v) for v in box)) for i, box in enumerate(plan.boxes)]
    if not items:
        return measure_objects(np.zeros((1, 1, 1), np.uint8), spacing)
    measure = delayed(_measure_some, pure=True)
    labels = delayed(labels, traverse=False)  # one key, not hashed again for every task
    tasks = [
        measure(labels, items[i : i + objects_per_task], spacing, plan.shape)
        for i in range(0, len(items), objects_per_task)
    ]
    import pandas as pd

    parts = _compute(tasks, scheduler=scheduler, desc="measuring objects", show=progress)[0]
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values("label", kind="stable").reset_index(drop=True)


def quantify_blocks(
    volume,
    voxel_size_nm,
    labels_path: str | os.PathLike,
    *,
    is_labels: bool | None = None,
    min_voxels: int = 0,
    exclude_border: bool = False,
    connectivity: int = 1,
    scheduler=None,
    source: str | os.PathLike = "mask",
    progress: bool = True,
):
    """Objects and their table for a mask or label volume too large for memory.

    :func:`plan_objects`, then :func:`write_labels` to ``labels_path`` (OME-Zarr),
    then :func:`measure_labels` from it.

    Returns
    -------
    table : pandas.DataFrame
        As :func:`sxtquant.morphology.measure_objects` of
        :func:`sxtquant.objects.objects_from_mask` of the whole volume.
    plan : ObjectPlan
    """
    plan = plan_objects(
        volume,
        is_labels=is_labels,
        connectivity=connectivity,
        min_voxels=min_voxels,
        exclude_border=exclude_border,
        scheduler=scheduler,
        source=source,
        progress=progress,
    )
    options = {"scheduler": scheduler, "progress": progress}
    write_labels(labels_path, volume, plan, voxel_size_nm, source=source, **options)
    labels, _ = io.open_ome_zarr(labels_path)
    return measure_labels(labels, plan, voxel_size_nm, **options), plan


# --------------------------------------------------------------------------- TIFF


def write_tiff_slices(
    path: str | os.PathLike,
    slices: Iterable[np.ndarray],
    shape: Sequence[int],
    dtype,
    voxel_size_nm=None,
) -> Path:
    """Write a (Z, Y, X) ImageJ TIFF from its slices, one at a time, atomically.

    The same file as :func:`sxtquant.io.write_volume` writes for the whole array
    (ImageJ hyperstack, ``spacing`` and unit nm), without ever holding more than
    one slice.

    Parameters
    ----------
    path : path-like
        ``.tif`` / ``.tiff``.
    slices : iterable of (Y, X) arrays
        Exactly ``shape[0]`` of them; each is cast to ``dtype``.
    shape : (Z, Y, X)
    dtype : uint8, uint16, int16 or float32
        What ImageJ reads.
    voxel_size_nm : float or (z, y, x), optional

    Returns
    -------
    Path
    """
    import tifffile

    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if dtype.type not in _IMAGEJ_DTYPES or len(shape) != 3:
        raise ValueError(f"write_tiff_slices writes (z, y, x) {_IMAGEJ_DTYPES}, got {dtype}")
    metadata: dict = {"axes": "ZYX"}
    options: dict = {}
    if voxel_size_nm is not None:
        z, y, x = as_voxel_size(voxel_size_nm)
        options["resolution"] = (1.0 / x, 1.0 / y)
        metadata.update(spacing=z, unit="nm")

    def pages() -> Iterator[np.ndarray]:
        count = 0
        for image in slices:
            image = np.asarray(image).astype(dtype, copy=False)
            if image.shape != shape[1:]:
                raise ValueError(f"slice {count} has shape {image.shape}, expected {shape[1:]}")
            count += 1
            yield image
        if count != shape[0]:
            raise ValueError(f"got {count} slices, expected {shape[0]}")

    with io.atomic_output(path) as tmp:
        tifffile.imwrite(
            tmp, data=pages(), shape=shape, dtype=dtype, imagej=True, metadata=metadata, **options
        )
    return Path(path)
