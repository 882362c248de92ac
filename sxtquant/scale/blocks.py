"""Tomograms larger than memory: block-by-block segmentation, objects and measurements.

A large tomogram stored as OME-Zarr is read lazily as a dask array cut into
blocks of whole slices (z-slabs, ``block_slices`` slices each, full y and x), and
every stage runs one block at a time, in this process or spread over the workers
of a Dask cluster. Nothing ever holds the whole volume.

=================================  =================================================
:func:`open_blocks`                an OME-Zarr image as a dask array of z-slabs
:func:`predict_blocks`             the network's probability, block by block (a
                                   2.5D network's blocks read a halo of k//2 slices)
:func:`predict_head_blocks`        every head of the network (membrane, regions)
:func:`smooth_z_blocks`            z-smoothing with ``map_overlap`` (a halo of
                                   ``radius`` slices from the neighbouring blocks)
:func:`segment_ome_zarr`           probability + mask (+ region probabilities) of an
                                   OME-Zarr tomogram, written to OME-Zarr block by block
:func:`plan_objects`               3D objects across blocks (see below)
:func:`label_blocks`               the objects' labels, block by block
:func:`measure_labels`             the per-object table, each object read from its
                                   bounding box only
:func:`iter_mask_slices`           the same thresholding and z-smoothing, streamed
                                   from a memory-mapped probability
:func:`write_tiff_slices`          an ImageJ TIFF written one slice at a time
:func:`tiff_memmap`                an ImageJ TIFF filled as a memory map (beside a
                                   stream written by :func:`write_tiff_slices`)
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
volume by :func:`sxtquant.quantify.objects.connected_components` and, after the same size and
border filters, by :func:`sxtquant.quantify.objects.objects_from_mask`. Sizes and bounding
boxes come from the same pass, so filtering needs no extra pass; the labels are
recomputed block by block when written (labelling is cheaper than storing them).

Dask is imported by the functions that need it, so importing this module is cheap.

Why this size: it holds every block-wise stage of ``segment`` (prediction with its
2.5D halo, z-smoothing, thresholding, the OME-Zarr writer and the streamed TIFF
writers that the plain-file path shares), as the table above lists; the stages of
objects across blocks are in ``block_objects.py``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sxtquant import io
from sxtquant.core.defaults import THRESHOLD
from sxtquant.core.errors import InputError
from sxtquant.core.memory import trim_memory
from sxtquant.core.progress import is_quiet
from sxtquant.core.progress import progress as progress_bar
from sxtquant.core.voxels import as_voxel_size

__all__ = [
    "DEFAULT_BLOCK_SLICES",
    "SegmentStats",
    "cached_model",
    "iter_mask_slices",
    "open_blocks",
    "predict_blocks",
    "predict_head_blocks",
    "release_free_memory",
    "segment_ome_zarr",
    "smooth_z_blocks",
    "tiff_memmap",
    "write_tiff_slices",
]


#: Slices per block: a 1024 x 1024 block is 64 MiB as float32.
DEFAULT_BLOCK_SLICES = 16
_ZARR_CHUNK_YX = 512
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


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


@functools.lru_cache(maxsize=4)
def cached_model(name_or_path: str):
    """:func:`sxtquant.nn.checkpoint.load_model` once per process (a Dask worker keeps its own)."""
    from sxtquant.nn.checkpoint import load_model

    return load_model(name_or_path)


def _resolve_model(model):
    if isinstance(model, str | os.PathLike):
        return cached_model(os.fspath(model))
    return model


def release_free_memory() -> bool:
    """Give the C heap's free memory back to the system (:func:`sxtquant.core.memory.trim_memory`).

    :func:`sxtquant.core.memory.reuse_freed_memory` keeps freed memory in the process
    for speed; in a worker that runs block after block under a memory limit the kept
    heap grows with fragmentation until the limit kills the worker. Trimming once
    per block bounds it, at the price of faulting the network's buffers in again
    once per block. Returns whether it could be done (Linux/glibc only).
    """
    return trim_memory()


def _predict_block(block, *, model, first, start, stop, heads, source, options):
    """(heads, stop - start, Y, X) probabilities of slices ``start`` ... ``stop - 1`` of
    ``block`` (slices ``first`` ... of the volume, a halo of neighbours included)."""
    from sxtquant.nn.predict import iter_head_slices

    block = np.asarray(block)
    _check_finite(block, source, first)
    try:
        net = _resolve_model(model)
        out = np.empty((len(heads), stop - start, *block.shape[1:]), np.float32)
        slices = iter_head_slices(
            net, block, heads=heads, start=start, stop=stop, progress=False, **options
        )
        for i, probs in enumerate(slices):
            out[:, i] = probs
        return out
    finally:
        release_free_memory()


def predict_head_blocks(
    volume,
    model,
    *,
    heads: Sequence[str] | None = None,
    device: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    tta: bool = False,
    source: str | os.PathLike = "volume",
) -> dict[str, Any]:
    """The probabilities of the network's heads, block by block, lazily.

    A 2.5D network (``config.in_slices`` = k > 1) needs the k//2 slices beyond each
    end of a block: every block is read with that halo from its neighbours
    (reflection only at the volume's own ends), so the result equals that of the
    whole volume, whatever the block size. The network runs once per block for all
    the heads.

    Parameters
    ----------
    volume : (Z, Y, X) dask.array.Array
        Blocks of whole slices (:func:`open_blocks`).
    model : str, path or torch.nn.Module
        As :func:`predict_blocks` (a name or folder is also loaded here, once, to
        read its heads and input slices).
    heads : sequence of str, optional
        Which heads (default: all, :func:`sxtquant.nn.predict.head_names`).
    device, tile, overlap, batch_size, tta, source
        As :func:`predict_blocks`.

    Returns
    -------
    dict of str to (Z, Y, X) dask.array.Array of float32
        Probabilities in [0, 1] by head name, with the chunks of ``volume``; equal,
        slice for slice, to :func:`sxtquant.nn.predict.predict_heads` of the whole
        volume.
    """
    import dask
    import dask.array as da

    from sxtquant.nn.predict import head_names

    net = _resolve_model(model)
    heads = head_names(net) if heads is None else tuple(heads)
    radius = int(getattr(getattr(net, "config", None), "in_slices", 1)) // 2
    options: dict[str, Any] = {"device": device, "tta": tta}
    for name, value in (("tile", tile), ("overlap", overlap), ("batch_size", batch_size)):
        if value is not None:
            options[name] = value
    n, height, width = volume.shape
    task = dask.delayed(_predict_block, pure=False)
    token = uuid.uuid4().hex
    parts = []
    start = 0
    for b, size in enumerate(volume.chunks[0]):
        stop = start + size
        lo, hi = max(0, start - radius), min(n, stop + radius)
        part = task(
            volume[lo:hi],
            model=model,
            first=lo,
            start=start - lo,
            stop=stop - lo,
            heads=heads,
            source=os.fspath(source),
            options=options,
            dask_key_name=f"sxtquant-predict-{token}-{b}",
        )
        shape = (len(heads), size, height, width)
        parts.append(da.from_delayed(part, shape=shape, dtype=np.float32))
        start = stop
    stacked = da.concatenate(parts, axis=1)
    return {name: stacked[c] for c, name in enumerate(heads)}


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
        As :func:`sxtquant.nn.predict.predict_slices` (None: its default).
    source : str or path-like
        Named in the error raised for a block with NaN or infinite values.

    Returns
    -------
    (Z, Y, X) dask.array.Array of float32
        Probabilities in [0, 1], with the chunks of ``volume``; equal, slice for
        slice, to :func:`sxtquant.nn.predict.predict_slices` of the whole volume (a
        2.5D network's blocks read a halo of neighbours, see
        :func:`predict_head_blocks`).
    """
    options = {"device": device, "tile": tile, "overlap": overlap, "batch_size": batch_size}
    heads = predict_head_blocks(
        volume, model, heads=("membrane",), tta=tta, source=source, **options
    )
    return heads["membrane"]


def _smooth_block(block, *, radius):
    from sxtquant.quantify.postprocess import smooth_z

    return smooth_z(np.asarray(block, dtype=np.float32), radius)


def smooth_z_blocks(probability, radius: int):
    """Average a probability over ±``radius`` slices, block by block with overlap.

    Each block is extended by ``radius`` slices of its neighbours (``map_overlap``,
    nothing added at the volume's ends), smoothed by
    :func:`sxtquant.quantify.postprocess.smooth_z` and trimmed back, so the result equals
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
    :func:`sxtquant.quantify.postprocess.smooth_z` then the threshold on the whole volume.

    Yields
    ------
    (Y, X) ndarray of bool
    """
    from sxtquant.quantify.postprocess import smooth_z

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
    threshold: float = THRESHOLD,
    z_radius: int = 0,
    block_slices: int = DEFAULT_BLOCK_SLICES,
    region_paths: Mapping[str, str | os.PathLike] | None = None,
    scheduler=None,
    progress: bool = True,
    **infer_options,
) -> SegmentStats:
    """Segment an OME-Zarr tomogram block by block into two OME-Zarr images (and one
    per region head).

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
    region_paths : mapping of str to path-like, optional
        Outputs for region heads of the network by name (e.g. ``{"cell": ...}``):
        float32 probabilities in [0, 1], OME-Zarr like the membrane's, from the same
        network pass.
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
    region_paths = dict(region_paths or {})
    heads = predict_head_blocks(
        volume, model, heads=("membrane", *region_paths), source=source, **infer_options
    )
    probability = heads["membrane"]
    smoothed = smooth_z_blocks(probability, z_radius) if z_radius else probability
    mask = (smoothed > np.float32(threshold)).rechunk(probability.chunks)
    mask_u8 = da.where(mask, np.uint8(255), np.uint8(0))
    chunks = _output_chunks(volume.shape, block_slices)
    images = [(probability_path, probability), (mask_path, mask_u8)]
    images += [(path, heads[name]) for name, path in region_paths.items()]
    with contextlib.ExitStack() as stack:
        outputs = [
            io.create_ome_zarr(
                stack.enter_context(io.atomic_output(path)),
                volume.shape,
                image.dtype,
                voxel,
                chunks=chunks,
            )
            for path, image in images
        ]
        stored = da.store([image for _, image in images], outputs, lock=False, compute=False)
        _, foreground = _compute(
            stored, mask.sum(), scheduler=scheduler, desc="segmenting blocks", show=progress
        )
    return SegmentStats(tuple(volume.shape), voxel, int(foreground))


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

    shape, dtype, options = _imagej_options(shape, dtype, voxel_size_nm)

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
        tifffile.imwrite(tmp, data=pages(), shape=shape, dtype=dtype, **options)
    return Path(path)


@contextlib.contextmanager
def tiff_memmap(
    path: str | os.PathLike, shape: Sequence[int], dtype, voxel_size_nm=None
) -> Iterator[np.ndarray]:
    """A (Z, Y, X) ImageJ TIFF to fill slice by slice in any order, as a memory map.

    For several images made in one pass (one of them streamed by
    :func:`write_tiff_slices`, the others written here as their slices come); the
    file is read by :func:`sxtquant.io.read_volume` as :func:`write_tiff_slices`'s
    is (shape, dtype, voxel size), and appears under ``path`` only when the block
    succeeds.

    Parameters
    ----------
    path, shape, dtype, voxel_size_nm
        As :func:`write_tiff_slices`.

    Yields
    ------
    (Z, Y, X) numpy.memmap
        Zero-filled; flushed and closed when the block ends.
    """
    import tifffile

    shape, dtype, options = _imagej_options(shape, dtype, voxel_size_nm)
    with io.atomic_output(path) as tmp:
        image = tifffile.memmap(tmp, shape=shape, dtype=dtype, **options)
        try:
            yield image
            image.flush()
        finally:
            del image


def _imagej_options(shape, dtype, voxel_size_nm) -> tuple[tuple[int, ...], np.dtype, dict]:
    """The checked shape and dtype of a (z, y, x) ImageJ TIFF and tifffile's options
    for it (hyperstack, ``spacing`` and unit nm)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if dtype.type not in _IMAGEJ_DTYPES or len(shape) != 3:
        raise ValueError(f"ImageJ TIFFs hold (z, y, x) {_IMAGEJ_DTYPES}, got {dtype} {shape}")
    metadata: dict = {"axes": "ZYX"}
    options: dict = {"imagej": True, "metadata": metadata}
    if voxel_size_nm is not None:
        z, y, x = as_voxel_size(voxel_size_nm)
        options["resolution"] = (1.0 / x, 1.0 / y)
        metadata.update(spacing=z, unit="nm")
    return shape, dtype, options
