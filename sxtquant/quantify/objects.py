"""3D objects from a binary mask: components, watershed separation, border and size filters.

Every function takes arrays in (z, y, x) order and returns instance labels (0 =
background, objects numbered 1..n, uint16 when they fit, else uint32) or masks.
Anisotropic voxels are handled through ``voxel_size_nm`` wherever a distance is
involved, so a separation or an opening means the same thing in nm along z as in y/x.

===========================  =========================================================
:func:`connected_components`  3D connected components of a mask
:func:`separate_objects`      split touching objects: marker-controlled watershed on the
                              Euclidean distance transform (markers: its h-maxima)
:func:`touching_border`       labels of the objects that touch the volume's edge
:func:`exclude_border`        remove them (as the reference paper did)
:func:`geodesic_distance`     shortest distance inside a mask from some of its voxels
:func:`remove_small`          remove objects below a voxel count
:func:`relabel`               number the labels 1..n in order, smallest dtype
:func:`opening`               morphological opening with a ball of a radius in nm
:func:`separate_filopodia`    pieces that stick out of a cell body: filopodium candidates
:func:`objects_from_mask`     the chain the ``quantify`` verb runs
===========================  =========================================================

Work is done per object in its bounding box, so the cost grows with the objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sxtquant.core.progress import progress
from sxtquant.core.voxels import as_voxel_size

__all__ = [
    "connected_components",
    "ellipsoid_axes",
    "exclude_border",
    "geodesic_distance",
    "is_label_volume",
    "label_dtype",
    "label_sizes",
    "moment_axes",
    "objects_from_mask",
    "opening",
    "relabel",
    "remove_small",
    "separate_filopodia",
    "separate_objects",
    "touching_border",
]


def _volume(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D (z, y, x) array, got shape {array.shape}")
    return array


def _labels(array) -> np.ndarray:
    array = _volume(array, "labels")
    if array.dtype == bool:
        return array.view(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be an integer array, got dtype {array.dtype}")
    return array


def label_dtype(n_labels: int) -> np.dtype:
    """uint16 for up to 65535 labels (what Fiji/MIB read best), else uint32."""
    return np.dtype(np.uint16 if n_labels <= np.iinfo(np.uint16).max else np.uint32)


def connected_components(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Label the 3D connected components of ``mask`` (non-zero = foreground).

    Parameters
    ----------
    mask : (Z, Y, X) ndarray
    connectivity : {1, 2, 3}
        1: faces (6-neighbourhood, the default), 2: + edges (18), 3: + corners (26).

    Returns
    -------
    (Z, Y, X) ndarray of uint16 or uint32
        Components numbered 1..n in scan order.
    """
    from scipy import ndimage

    mask = _volume(mask, "mask") > 0
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    structure = ndimage.generate_binary_structure(3, connectivity)
    labels, n = ndimage.label(mask, structure, output=np.int32)
    return labels.astype(label_dtype(n), copy=False)


def label_sizes(labels: np.ndarray) -> np.ndarray:
    """Voxel count of every label value 0..max (index = label), counted in slabs of slices.

    Unlike ``np.unique`` or one ``np.bincount`` over the whole volume, it never copies
    the volume, so it suits label volumes of hundreds of millions of voxels.
    """
    labels = _labels(labels)
    if labels.size == 0:
        return np.zeros(1, dtype=np.int64)
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise ValueError("labels must be >= 0 (0 = background)")
    n = int(labels.max()) + 1
    sizes = np.zeros(n, dtype=np.int64)
    step = max(1, (1 << 24) // max(1, labels[0].size))
    for start in range(0, labels.shape[0], step):
        sizes += np.bincount(labels[start : start + step].ravel(), minlength=n)
    return sizes


def is_label_volume(data: np.ndarray) -> bool:
    """True when ``data`` holds more than two distinct values (background + one value = mask)."""
    data = np.asarray(data)
    if data.size == 0 or data.dtype == bool:
        return False
    low, high = data.min(), data.max()
    return bool(low != high and ((data != low) & (data != high)).any())


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels > 0 as 1..n keeping their order; uint16 or uint32."""
    labels = _labels(labels)
    present = np.flatnonzero(label_sizes(labels))
    present = present[present > 0]
    if present.size == 0:
        return np.zeros(labels.shape, dtype=np.uint16)
    lut = np.zeros(int(present[-1]) + 1, dtype=label_dtype(present.size))
    lut[present] = np.arange(1, present.size + 1)
    return lut[labels]


def touching_border(labels: np.ndarray, *, axes: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """Sorted labels (> 0) of the objects that touch the volume's edge along ``axes``."""
    labels = _labels(labels)
    faces = []
    for axis in axes:
        faces.append(np.take(labels, 0, axis=axis).ravel())
        faces.append(np.take(labels, -1, axis=axis).ravel())
    if not faces:
        return np.zeros(0, dtype=labels.dtype)
    found = np.unique(np.concatenate(faces))
    return found[found > 0]


def exclude_border(labels: np.ndarray, *, axes: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """A copy of ``labels`` without the objects that touch the volume's edge (not renumbered).

    ``axes=(1, 2)`` keeps objects cut only by the first/last slice.
    """
    labels = _labels(labels)
    out = labels.copy()
    out[np.isin(labels, touching_border(labels, axes=axes))] = 0
    return out


def remove_small(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """A copy of ``labels`` without the objects of fewer than ``min_voxels`` voxels."""
    labels = _labels(labels)
    out = labels.copy()
    if min_voxels <= 1 or labels.size == 0:
        return out
    sizes = label_sizes(labels)
    small = np.flatnonzero(sizes < min_voxels)
    small = small[small > 0]
    if small.size:
        out[np.isin(labels, small)] = 0
    return out


def _several_foreground_values(data: np.ndarray) -> bool:
    foreground = data != 0
    if not foreground.any():
        return False
    return bool(data.min(where=foreground, initial=data.max()) != data.max())


def _boxes(labels: np.ndarray, pad: int = 1):
    from scipy import ndimage

    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        grown = tuple(
            slice(max(0, s.start - pad), min(n, s.stop + pad))
            for s, n in zip(box, labels.shape, strict=True)
        )
        yield index + 1, grown


def separate_objects(
    mask_or_labels: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    h_nm: float | None = None,
    min_voxels: int = 0,
    connectivity: int = 1,
    is_labels: bool | None = None,
) -> np.ndarray:
    """Split touching objects by a marker-controlled watershed on the distance transform.

    Each object (a connected component of a mask, or each label of a label volume) is
    processed in its bounding box: the Euclidean distance to the background is
    computed with the anisotropic voxel size, its regional maxima at least ``h_nm``
    high (h-maxima) become markers, one per bulge, and the watershed of the inverted
    distance grows them back to the object's full extent. Two blobs joined by a
    neck narrower than their radii minus ``h_nm`` come apart; a long tube has one
    ridge and stays whole.

    Parameters
    ----------
    mask_or_labels : (Z, Y, X) ndarray
        Binary mask (bool, or one non-zero value) or instance labels.
    voxel_size_nm : float or (z, y, x) tuple of float
    h_nm : float, optional
        Minimal depth of the distance transform's dip between two objects. Default:
        2 x the coarsest voxel spacing (about four times the distance transform's
        digitisation noise).
    min_voxels : int
        Pieces smaller than this after splitting are removed.
    connectivity : {1, 2, 3}
        Connectivity of the components of a mask.
    is_labels : bool, optional
        How to read the input; by default, labels when it holds more than one
        non-zero value.

    Returns
    -------
    (Z, Y, X) ndarray of uint16 or uint32
        Objects numbered 1..n.
    """
    from scipy import ndimage

    data = _volume(mask_or_labels, "mask_or_labels")
    spacing = as_voxel_size(voxel_size_nm)
    if h_nm is None:
        h_nm = 2.0 * max(spacing)
    if not h_nm > 0:
        raise ValueError(f"h_nm must be > 0, got {h_nm}")
    if is_labels is None:
        is_labels = data.dtype != bool and _several_foreground_values(data)
    if not is_labels:
        labels = connected_components(data, connectivity=connectivity)
    else:
        labels = _labels(data)

    def distance(obj, box):
        return ndimage.distance_transform_edt(np.pad(obj, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]

    out = _split_by_domes(labels, distance, h_nm, desc="separating")
    out = remove_small(out, min_voxels)
    return relabel(out)


def ellipsoid_axes(covariance_nm2: np.ndarray, voxel_size_nm) -> np.ndarray:
    """Full axes (major, second, minor), nm, of the ellipsoid with given second moments.

    ``covariance_nm2`` (..., 3, 3) is the covariance of an object's voxel centres; one
    voxel's own covariance (s²/12 per axis) is added, then full axis = 2 sqrt(5 λ) for
    each eigenvalue λ: exact for a solid ellipsoid.
    """
    spacing = np.asarray(as_voxel_size(voxel_size_nm))
    cov = np.asarray(covariance_nm2, dtype=float) + np.diag(spacing**2 / 12.0)
    lam = np.linalg.eigvalsh(cov)[..., ::-1]
    return 2.0 * np.sqrt(5.0 * np.clip(lam, 0.0, None))


def moment_axes(labels: np.ndarray, voxel_size_nm) -> np.ndarray:
    """Moment-ellipsoid full axes of every label value 0..max: (max + 1, 3) array, nm.

    Rows of absent labels (and row 0) are NaN. Vectorised over all objects at once.
    """
    labels = _labels(labels)
    spacing = as_voxel_size(voxel_size_nm)
    n = int(labels.max()) + 1 if labels.size else 1
    idx = np.nonzero(labels)
    lab = labels[idx].astype(np.intp)
    coords = [i * s for i, s in zip(idx, spacing, strict=True)]
    count = np.bincount(lab, minlength=n).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = [np.bincount(lab, c, n) / count for c in coords]
        cov = np.empty((n, 3, 3))
        for a in range(3):
            for b in range(a, 3):
                m = np.bincount(lab, coords[a] * coords[b], n) / count - mean[a] * mean[b]
                cov[:, a, b] = cov[:, b, a] = m
    absent = count == 0
    cov[absent] = 0.0
    axes = ellipsoid_axes(cov, spacing)
    axes[absent] = np.nan
    return axes


def _h_domes(dist: np.ndarray, h: float) -> tuple[np.ndarray, int]:
    """Markers: one region per maximum of ``dist`` whose dynamic is at least ``h``.

    The region of a maximum of height P is its "h-dome", where ``dist`` > P - h
    (found by morphological reconstruction). Unlike the h-maxima points, the dome
    of a digitised ridge (a tube's axis, whose top voxels are not adjacent) is one
    connected region; domes of bumps lower than ``h`` are dropped.
    """
    from scipy import ndimage
    from skimage.morphology import reconstruction

    residue = dist - reconstruction(dist - h, dist, method="dilation")
    domes, n = ndimage.label(residue > 1e-9 * h, ndimage.generate_binary_structure(3, 3))
    if n <= 1:
        return domes, n
    significant = np.zeros(n + 1, dtype=bool)
    significant[np.unique(domes[residue >= h * (1 - 1e-6)])] = True
    significant[0] = False
    return relabel(np.where(significant[domes], domes, 0)), int(significant.sum())


#: How far (nm, along the piece from the body) a branch's tip must rise above where it
#: meets another to be its own filopodium (chosen on demo seeds 20-25: 60-100 alike).
BRANCH_NM = 100.0


def geodesic_distance(mask: np.ndarray, starts: np.ndarray, voxel_size_nm) -> np.ndarray:
    """Shortest distance (nm) inside ``mask`` (26-connected) from ``starts``; 0 elsewhere."""
    from skimage.graph import MCP_Geometric

    mask = np.asarray(mask, dtype=bool)
    costs, starts = np.where(mask, 1.0, np.inf), np.argwhere(mask & starts)
    if len(starts) == 0:
        return np.zeros(mask.shape)
    along, _ = MCP_Geometric(costs, sampling=as_voxel_size(voxel_size_nm)).find_costs(starts)
    return np.where(mask & np.isfinite(along), along, 0.0)


def _split_by_domes(labels: np.ndarray, field, h: float, desc: str | None = None):
    """Each label cut by a watershed of ``-field(obj, box)`` from its h-domes (if > 1)."""
    from skimage.segmentation import watershed

    out = np.zeros(labels.shape, dtype=np.uint32)
    next_label = 1
    boxes = list(_boxes(labels))
    for label, box in progress(boxes, desc=desc, unit="object") if desc else boxes:
        obj = labels[box] == label
        values = field(obj, box)
        markers, n = _h_domes(values, h)
        if n <= 1:
            pieces, n = obj.astype(np.int32), 1
        else:
            pieces = watershed(-values, markers, mask=obj)
        view = out[box]
        inside = pieces > 0
        view[inside] = pieces[inside] + (next_label - 1)
        next_label += n
    return out


def opening(
    mask: np.ndarray, voxel_size_nm: float | Sequence[float], radius_nm: float
) -> np.ndarray:
    """Morphological opening of ``mask`` with a ball of ``radius_nm`` (exact, anisotropic).

    Computed with two Euclidean distance transforms (erosion: points at least
    ``radius_nm`` inside; dilation: points within ``radius_nm`` of those), so its cost
    does not grow with the radius. Everything a ball of that radius cannot fit into
    (protrusions thinner than ``2 * radius_nm``) is removed.
    """
    from scipy import ndimage

    mask = _volume(mask, "mask") > 0
    spacing = as_voxel_size(voxel_size_nm)
    if not radius_nm > 0:
        raise ValueError(f"radius_nm must be > 0, got {radius_nm}")
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    # the ball is grown back only within the object's box + radius: pad with zeros
    pad = [int(np.ceil(radius_nm / s)) + 1 for s in spacing]
    padded = np.pad(mask, [(p, p) for p in pad])
    core = ndimage.distance_transform_edt(padded, sampling=spacing) >= radius_nm
    if core.any():
        grown = ndimage.distance_transform_edt(~core, sampling=spacing) <= radius_nm
        crop = tuple(slice(p, p + n) for p, n in zip(pad, mask.shape, strict=True))
        out = grown[crop] & mask
    return out


def separate_filopodia(
    mask: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    max_radius_nm: float = 150.0,
    min_length_nm: float | None = None,
    min_elongation: float = 2.0,
    attached_only: bool = True,
    return_body: bool = False,
    min_radius_nm: float = 0.0,
    split_at_base: bool = False,
):
    """Filopodium candidates: long thin pieces that stick out of a cell body.

    The cell body is the opening of ``mask`` with a ball a little wider than any
    filopodium (radius ``max_radius_nm`` + one voxel): the ball fits into the body
    but not into a filopodium. What the opening removes falls into connected pieces;
    those that are long (moment-ellipsoid major axis >= ``min_length_nm``) and thin
    (major / second axis >= ``min_elongation``) are the candidates. The flat slivers
    an opening also shaves off the body's edges and corners are not.

    On a network's rough cell mask the opening also leaves a ragged layer on the body,
    through which filopodia standing near each other join into one piece that is no
    tube; ``min_radius_nm`` and ``split_at_base`` cut it away before the pieces are
    formed and give each piece back what it lost of it within reach (a watershed).

    Parameters
    ----------
    mask : (Z, Y, X) ndarray
        Filled cell mask with its protrusions (non-zero = cell).
    voxel_size_nm : float or (z, y, x) tuple of float
    max_radius_nm : float
        Largest filopodium radius (nm).
    min_length_nm : float, optional
        Shortest candidate, as the major axis of its moment ellipsoid (1.29 x the
        length of a straight rod). Default ``2 * max_radius_nm``.
    min_elongation : float
        Smallest major / second axis ratio of a candidate.
    attached_only : bool
        Keep only pieces that touch the body (a free-floating thin object is not a
        filopodium of this cell); with no body at all, every piece qualifies.
    return_body : bool
        Also return the body mask.
    min_radius_nm : float
        Thinnest filopodium (radius, nm): what a ball of this radius does not fit into
        (sheets thinner than ``2 * min_radius_nm``) joins no piece (0: off).
    split_at_base : bool
        Form the pieces only beyond one opening radius from the body (filopodia that
        meet at their bases stay apart), grow them back, and cut a piece still holding
        several (joined by a web further out) into its branches, one per tip rising
        :data:`BRANCH_NM` along it above the saddle to the next.

    Returns
    -------
    candidates : (Z, Y, X) ndarray of uint16 or uint32
        The candidate filopodia, numbered 1..n (0 elsewhere, the body included).
    body : (Z, Y, X) ndarray of bool
        Only with ``return_body``: the opened cell body.

    Examples
    --------
    >>> from sxtquant.simulate.shapes import Capsule, Sphere, digitize
    >>> cell = digitize(Sphere((400.0, 400.0, 400.0), 300.0), (80, 80, 160), 10.0)
    >>> cell |= digitize(Capsule((400.0, 400.0, 650.0), (400.0, 400.0, 1400.0), 60.0),
    ...                  (80, 80, 160), 10.0)
    >>> candidates = separate_filopodia(cell, 10.0, max_radius_nm=100.0)
    >>> int(candidates.max())
    1
    """
    from scipy import ndimage

    mask = _volume(mask, "mask") > 0
    spacing = as_voxel_size(voxel_size_nm)
    if not max_radius_nm > 0:
        raise ValueError(f"max_radius_nm must be > 0, got {max_radius_nm}")
    if min_length_nm is None:
        min_length_nm = 2.0 * max_radius_nm
    if not (min_radius_nm >= 0 and math.isfinite(min_radius_nm)):
        raise ValueError(f"min_radius_nm must be >= 0, got {min_radius_nm}")
    radius = max_radius_nm + max(spacing)
    body = opening(mask, spacing, radius)
    removed = mask & ~body
    core, reach = removed, 0.0
    if split_at_base and body.any():
        core = core & (ndimage.distance_transform_edt(~body, sampling=spacing) > radius)
        reach += radius
    if min_radius_nm > 0 and core.any():
        core = opening(core, spacing, min_radius_nm)
        reach += min_radius_nm
    pieces = connected_components(core)
    if reach and pieces.max():
        from skimage.segmentation import watershed

        distance = ndimage.distance_transform_edt(pieces == 0, sampling=spacing)
        within = removed & (distance <= reach + max(spacing))
        pieces = watershed(distance, pieces.astype(np.int32), mask=within)
    if with_body := body.any() and pieces.max() > 0:  # its rim serves both uses below
        shell = ndimage.binary_dilation(body, ndimage.generate_binary_structure(3, 3))
    if split_at_base and with_body:

        def along(obj, box):  # branches: tips BRANCH_NM above their saddle along the piece
            return geodesic_distance(obj, shell[box], spacing)

        pieces = relabel(_split_by_domes(pieces, along, BRANCH_NM))
    keep = np.zeros(int(pieces.max()) + 1, dtype=bool)
    if keep.size > 1:
        axes = moment_axes(pieces, spacing)
        keep[:] = (axes[:, 0] >= min_length_nm) & (axes[:, 0] >= min_elongation * axes[:, 1])
        if attached_only and with_body:
            touching = np.zeros_like(keep)
            touching[np.unique(pieces[shell & (pieces > 0)])] = True
            keep &= touching
    keep[0] = False
    candidates = relabel(np.where(keep[pieces], pieces, 0))
    return (candidates, body) if return_body else candidates


def objects_from_mask(
    mask_or_labels: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    is_labels: bool | None = None,
    separate: bool = False,
    min_voxels: int = 0,
    exclude_border_objects: bool = False,
) -> np.ndarray:
    """Instance labels from a mask or label volume: the chain of ``sxtquant quantify``.

    Membranes to be filled into solid objects go through
    :func:`sxtquant.quantify.postprocess.fill_membranes` first.

    Parameters
    ----------
    mask_or_labels : (Z, Y, X) ndarray
        A binary mask (non-zero = foreground) or instance labels.
    is_labels : bool, optional
        How to read the input; by default an array with more than two distinct values
        (background and one foreground value) is taken as labels.
    separate : bool
        Split touching objects (:func:`separate_objects`).
    min_voxels : int
        Remove objects smaller than this (after separation).
    exclude_border_objects : bool
        Remove the objects that touch the volume's edge.

    Returns
    -------
    (Z, Y, X) ndarray of uint16 or uint32
        Objects numbered 1..n.
    """
    data = _volume(mask_or_labels, "mask_or_labels")
    if is_labels is None:
        is_labels = is_label_volume(data)
    labels = _labels(data) if is_labels else connected_components(data)
    if separate:
        labels = separate_objects(labels, voxel_size_nm, is_labels=True)
    if min_voxels > 1:
        labels = remove_small(labels, min_voxels)
    if exclude_border_objects:
        labels = exclude_border(labels)
    return relabel(labels)
