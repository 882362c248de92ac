"""3D objects and their measurements across the blocks of a volume."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sxtquant import io
from sxtquant.core.errors import InputError
from sxtquant.core.progress import is_quiet
from sxtquant.core.voxels import as_voxel_size
from sxtquant.scale.blocks import _compute, _output_chunks


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
        from sxtquant.quantify.objects import label_dtype

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

    The objects are exactly those of :func:`sxtquant.quantify.objects.objects_from_mask`
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
    from sxtquant.quantify.objects import label_dtype

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
        :func:`sxtquant.quantify.objects.objects_from_mask` of the whole volume.
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


def _measure_some(labels, items, spacing, shape):
    """Rows of :func:`sxtquant.quantify.morphology.measure_objects` for some objects, each
    measured on its bounding box read from ``labels``."""
    import pandas as pd

    from sxtquant.core.progress import set_quiet
    from sxtquant.quantify.morphology import measure_objects

    rows = []
    quiet = is_quiet()
    set_quiet(True)  # no progress bar per object
    try:
        for label, box in items:
            crop = np.asarray(labels[box[0] : box[1], box[2] : box[3], box[4] : box[5]])
            row = measure_objects((crop == label).view(np.uint8), spacing)
            row["label"] = int(label)
            for axis, name in enumerate(("z", "y", "x")):  # crop to volume coordinates
                row[f"centroid_{name}_nm"] += box[2 * axis] * spacing[axis]
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
        Equal to :func:`sxtquant.quantify.morphology.measure_objects` of the whole volume:
        same columns, dtypes, rows and values.
    """
    from dask import delayed

    from sxtquant.quantify.morphology import measure_objects

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
        As :func:`sxtquant.quantify.morphology.measure_objects` of
        :func:`sxtquant.quantify.objects.objects_from_mask` of the whole volume.
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
