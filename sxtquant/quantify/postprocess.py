"""From a membrane probability map to a clean binary mask, and from membranes to solid objects.

The post-processing steps the reference paper (Dyhr et al., PNAS 2023) discusses,
each a function on arrays (axis order (z, y, x)):

* :func:`threshold` — positive where probability > threshold (strictly; 0.9 in the paper);
* :func:`smooth_z` — average over ±2 slices (probability) or majority vote (mask), which
  removes slice-to-slice flicker of a slice-wise network;
* :func:`remove_small` — drop 3D connected components below a voxel count;
* :func:`erode` — optional erosion iterations that thin over-wide membranes;
* :func:`clear_border` — blank a few pixels along the edge of every slice, where tiled
  inference and reconstruction are least reliable (the shape is kept);
* :func:`rough_cell_mask` — an optional coarse mask of the cell, from the tomogram, to
  discard detections outside it;
* :func:`fill_membranes` — close gaps in membrane contours and fill them into solid
  objects (per-slice closing + hole filling, then 3D hole filling), including a cell
  cut open by the volume's border (:func:`fill_border_regions`);
* :func:`fill_border_regions` — fill the regions that the volume's border cuts open on
  the cell's side: of the background regions that touch the border, those that the
  convex hulls of the rest of the slice cover (a cell is convex, its outside wraps
  around it);
* :func:`postprocess` — the chain, with the paper's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sxtquant.core.defaults import THRESHOLD
from sxtquant.core.voxels import as_voxel_size

__all__ = [
    "BORDER_MODES",
    "clear_border",
    "erode",
    "fill_border_regions",
    "fill_membranes",
    "postprocess",
    "remove_small",
    "rough_cell_mask",
    "smooth_z",
    "threshold",
]

PAPER_THRESHOLD = THRESHOLD

#: How :func:`fill_membranes` treats contours cut open by the volume's y/x edges:
#: ``"convex"`` fills the cell's side (:func:`fill_border_regions`), ``"open"`` leaves
#: them unfilled.
BORDER_MODES = ("convex", "open")


def _volume(array, name: str = "volume") -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D (z, y, x) array, got shape {array.shape}")
    return array


def threshold(probability: np.ndarray, level: float = PAPER_THRESHOLD) -> np.ndarray:
    """Binary mask: True where ``probability > level`` (strictly, as the contract says)."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {level}")
    return np.asarray(probability) > level


def smooth_z(volume: np.ndarray, radius: int = 2) -> np.ndarray:
    """Smooth along z over ``±radius`` slices.

    Parameters
    ----------
    volume : (Z, Y, X) ndarray
        A probability map (float) or a mask (bool, or 0/255-style integers).
    radius : int
        Half-width of the window in slices (2: five slices, as in the paper).

    Returns
    -------
    ndarray
        For a float input, the moving average (float32; at the first and last slices
        the window is shortened, no padding values enter). For a mask, a bool mask:
        True where more than half of the window's slices are foreground.
    """
    volume = _volume(volume)
    if radius < 0 or int(radius) != radius:
        raise ValueError(f"radius must be a whole number >= 0, got {radius}")
    radius = int(radius)
    is_mask = not np.issubdtype(volume.dtype, np.floating)
    values = (volume > 0) if is_mask else volume
    if radius == 0 or volume.shape[0] == 0:
        return values.astype(bool if is_mask else np.float32)
    nz = volume.shape[0]
    out = np.empty(volume.shape, dtype=bool if is_mask else np.float32)
    for z in range(nz):  # slice by slice: no full-size float64 temporaries
        lo, hi = max(0, z - radius), min(nz, z + radius + 1)
        total = np.sum(values[lo:hi], axis=0, dtype=np.int32 if is_mask else np.float64)
        out[z] = (2 * total > hi - lo) if is_mask else total / (hi - lo)
    return out


def remove_small(mask: np.ndarray, min_voxels: int, *, connectivity: int = 1) -> np.ndarray:
    """Remove the 3D connected components of ``mask`` with fewer than ``min_voxels`` voxels.

    ``connectivity`` 1 (faces, 6-neighbourhood) to 3 (26-neighbourhood). Returns bool.
    """
    from scipy import ndimage

    mask = _volume(mask, "mask") > 0
    if min_voxels <= 1:
        return mask.copy()
    structure = ndimage.generate_binary_structure(3, connectivity)
    components, n = ndimage.label(mask, structure)
    if n == 0:
        return mask.copy()
    sizes = np.zeros(n + 1)
    sizes[1:] = ndimage.sum_labels(mask, components, index=np.arange(1, n + 1))
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[components]


def erode(mask: np.ndarray, iterations: int = 1, *, in_plane: bool = False) -> np.ndarray:
    """Binary erosion by ``iterations`` face-neighbour steps (3D, or per slice if ``in_plane``)."""
    from scipy import ndimage

    mask = _volume(mask, "mask") > 0
    if iterations <= 0:
        return mask.copy()
    structure = ndimage.generate_binary_structure(3, 1)
    if in_plane:
        structure[0] = structure[2] = False
    return ndimage.binary_erosion(mask, structure, iterations=int(iterations))


def clear_border(mask: np.ndarray, width: int, *, z: bool = False) -> np.ndarray:
    """A copy of ``mask`` with ``width`` pixels along the y/x edges (and z ends if ``z``) set to 0.

    Keeps the shape, so the result still lines up with the tomogram.
    """
    mask = _volume(mask, "mask")
    out = mask.copy()
    width = int(width)
    if width <= 0:
        return out
    out[:, :width] = 0
    out[:, -width:] = 0
    out[:, :, :width] = 0
    out[:, :, -width:] = 0
    if z:
        out[:width] = 0
        out[-width:] = 0
    return out


def rough_cell_mask(
    tomogram: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    sigma_nm: float = 100.0,
    margin_nm: float = 200.0,
    dark_cell: bool = False,
) -> np.ndarray:
    """A coarse mask of the cell: smoothed tomogram, Otsu threshold, largest component.

    Parameters
    ----------
    tomogram : (Z, Y, X) ndarray
        The reconstruction; in cryo-SXT the cell absorbs more than the surrounding ice,
        so it is the brighter phase (set ``dark_cell`` for data with the opposite sign).
    voxel_size_nm : float or (z, y, x)
        Voxel size in nm.
    sigma_nm : float
        Gaussian smoothing before thresholding.
    margin_nm : float
        The mask is grown by this much, so membranes at the cell's edge stay inside.

    Returns
    -------
    (Z, Y, X) ndarray of bool
        The largest connected bright (or dark) region, holes filled per slice and in
        3D, dilated by ``margin_nm``. Empty if the tomogram is constant.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    tomogram = _volume(tomogram, "tomogram")
    spacing = np.asarray(as_voxel_size(voxel_size_nm))
    smooth = ndimage.gaussian_filter(tomogram.astype(np.float32), sigma_nm / spacing)
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(tomogram.shape, dtype=bool)
    level = threshold_otsu(smooth)
    cell = smooth < level if dark_cell else smooth > level
    components, n = ndimage.label(cell)
    if n == 0:
        return cell
    sizes = np.zeros(n + 1)
    sizes[1:] = ndimage.sum_labels(cell, components, index=np.arange(1, n + 1))
    cell = components == int(np.argmax(sizes))
    cell = _fill_holes_per_slice(cell)
    cell = ndimage.binary_fill_holes(cell)
    if margin_nm > 0:
        outside = ndimage.distance_transform_edt(~cell, sampling=spacing)
        cell = outside <= margin_nm
    return cell


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    out = np.empty_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndimage.binary_fill_holes(mask[k])
    return out


def fill_membranes(
    membranes: np.ndarray,
    *,
    closing_radius: int = 2,
    fill_3d: bool = True,
    border: str = "convex",
    border_opening_radius: int = 3,
) -> np.ndarray:
    """Close open membrane contours and fill them into solid objects.

    Parameters
    ----------
    membranes : (Z, Y, X) ndarray
        Membrane mask (non-zero = membrane): thin closed or nearly closed contours.
    closing_radius : int
        Per slice, the membranes are dilated by a disk of this radius (pixels), which
        bridges gaps in a contour up to about ``2 * closing_radius`` pixels wide, the
        closed contours are filled and the result eroded back by the same disk. 0
        fills only contours that are already closed.
    fill_3d : bool
        Also fill cavities closed in 3D but open in some slices (a membrane cut
        tangentially, or a gap that another slice closes).
    border : {"convex", "open"}
        A cell cut by the volume's y/x edges has contours that only the edge closes.
        ``"convex"`` (default) fills the side of such a membrane that is the cell's
        (:func:`fill_border_regions`: the convex side); ``"open"`` leaves them
        unfilled. Nothing changes for objects wholly inside the volume.
    border_opening_radius : int
        ``opening_radius`` of :func:`fill_border_regions` (pixels): more than half a
        membrane's thickness, and wider than the cell's filopodia, which otherwise
        count as concavities of the cell's side
        (:func:`sxtquant.quantify.recipe.objects_from_membranes` sets it from the
        voxel size).

    Returns
    -------
    (Z, Y, X) ndarray of bool
        The membranes together with everything they enclose.

    Notes
    -----
    The closing also fills notches narrower than about ``2 * closing_radius`` pixels
    and merges membranes that close together; separate touching objects afterwards
    with :func:`sxtquant.quantify.objects.separate_objects`.
    """
    from scipy import ndimage

    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {BORDER_MODES}, got {border!r}")
    mask = _volume(membranes, "membranes") > 0
    filled = _fill_holes_per_slice(mask)
    r = int(closing_radius)
    if r > 0:
        # dilate (bridges gaps up to ~2r), fill, erode back: the closing of the filled
        # shape. The slices are padded so that nothing is glued to the volume's edge.
        footprint = _disk(r)[np.newaxis]
        padded = np.pad(mask, ((0, 0), (r, r), (r, r)))
        solid = _fill_holes_per_slice(ndimage.binary_dilation(padded, footprint))
        filled |= ndimage.binary_erosion(solid, footprint)[:, r:-r, r:-r]
    if fill_3d:
        filled |= ndimage.binary_fill_holes(mask)
    if border == "convex":
        filled = fill_border_regions(
            filled, closing_radius=r, opening_radius=int(border_opening_radius)
        )
    return filled


#: Background regions cut by the border smaller than this (voxels) are left as they are.
BORDER_MIN_VOXELS = 64
#: Hull deficits below this many pixels per slice (or 0.1 % of a slice) decide nothing.
_BORDER_MIN_DEFICIT_PX = 4.0


def fill_border_regions(
    mask: np.ndarray,
    *,
    closing_radius: int = 0,
    opening_radius: int = 3,
    max_slices: int = 24,
) -> np.ndarray:
    """Fill the background regions that the volume's border cuts open on the cell's side.

    Hole filling leaves every background region that touches the volume's edge
    unfilled; for a cell cut by the edge that is its inside too (bounded by its
    membrane and the edge). Which side is the cell's cannot be told from the
    topology (both sides are bounded by membrane plus edge); the shape tells it: a
    cell is (nearly) convex, so its inside is a convex region, while the outside
    has the cell's bulge pushed into it.

    Rule: the *candidates* are the 3D background regions (face-connected, of
    ``mask`` dilated per slice by ``closing_radius``) of at least
    :data:`BORDER_MIN_VOXELS` voxels that touch the volume's edge. With fewer than
    two nothing changes (in particular nothing for objects wholly inside the
    volume, whose outside is the only candidate). Otherwise they are compared in the
    y/x slices where two or more of them appear (at most ``max_slices``, evenly
    spread). In a slice, a candidate ``R`` is taken with all that is not another
    candidate (its membranes and what it encloses), opened by a disk of
    ``opening_radius + closing_radius`` pixels (drops membranes and thin filaments),
    and the components that overlap ``R`` are compared with their convex hulls. Their
    *deficit* (hull area minus area) is near 0 for the cell's side and about the area
    of the cell's bulge for the outside. Over the slices (median, so that a few
    slices through filopodia do not decide), a candidate whose deficit is under half
    the largest one is the cell's. Where ``R`` is only a small part of what it is
    measured with (a hole in the cell, cut by the edge), the deficit says nothing
    about ``R``; it is the cell's when most of it lies under the convex hulls of the
    rest of the slice (it is a notch in something convex). When the largest deficit
    is below 4 pixels per slice (or 0.1 % of a slice) the deficits decide nothing.
    This is repeated with the candidates left, the ones decided now counting as
    enclosed (a nucleus cut by the edge is decided first, then the cytoplasm around
    it), until no more is decided.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray
        Filled objects (non-zero), e.g. membranes with their closed contours filled.
    closing_radius : int
        Pixels: the regions are those of ``mask`` dilated per slice by a disk of this
        radius (which bridges gaps up to about twice as wide), and the regions filled
        are grown back by the same disk.
    opening_radius : int
        Pixels, added to ``closing_radius``: more than half a membrane's thickness.
    max_slices : int
        At most this many slices are compared.

    Returns
    -------
    (Z, Y, X) ndarray of bool
        ``mask`` with the cell-side regions added.

    Notes
    -----
    Only y/x edges need this: a cell cut by the first or last slice has closed
    contours there, which the per-slice filling fills. Not filled: a region whose
    membrane is also open in 3D towards the outside (e.g. membrane missing over
    several slices: it is one region with the outside), a cell whose membrane is
    nearly flat across the field of view (no clue which side bulges), and anything
    when no outside is in view (the volume wholly inside the cell).
    """
    from scipy import ndimage

    mask = _volume(mask, "mask") > 0
    out = mask.copy()
    r = int(closing_radius)
    footprint = _disk(r)[np.newaxis] if r > 0 else None
    solid = ndimage.binary_dilation(mask, footprint) if r > 0 else mask
    regions, n = ndimage.label(~solid)
    if n < 2:
        return out
    faces = [regions[0], regions[-1], regions[:, 0], regions[:, -1]]
    faces += [regions[:, :, 0], regions[:, :, -1]]
    candidates = np.unique(np.concatenate([f.ravel() for f in faces]))
    sizes = np.bincount(regions.ravel(), minlength=n + 1)
    candidates = [int(c) for c in candidates if c > 0 and sizes[c] >= BORDER_MIN_VOXELS]
    if len(candidates) < 2:
        return out
    cell: list[int] = []
    while len(candidates) >= 2:  # again without those decided (the cytoplasm around a nucleus)
        chosen = _cell_side(regions, candidates, opening_radius + r, max_slices)
        if not chosen:
            break
        cell += chosen
        candidates = [c for c in candidates if c not in chosen]
    if cell:
        inside = np.isin(regions, cell)
        if r > 0:  # back over the band the dilation took, on the cell's side only
            inside |= ndimage.binary_dilation(inside, footprint) & solid
        out |= inside
    return out


def _cell_side(regions: np.ndarray, candidates: list[int], radius: int, max_slices: int):
    """The candidates on the cell's side (see :func:`fill_border_regions`)."""
    lut = np.zeros(int(regions.max()) + 1, dtype=np.int32)
    lut[candidates] = np.arange(1, len(candidates) + 1)
    present = np.zeros((regions.shape[0], len(candidates) + 1), dtype=bool)
    for z in range(regions.shape[0]):
        present[z, np.unique(lut[regions[z]])] = True
    present = present[:, 1:]
    slices = np.flatnonzero(present.sum(axis=1) >= 2)
    if slices.size == 0:
        return []
    if slices.size > max_slices:
        slices = slices[np.unique(np.linspace(0, slices.size - 1, max_slices).round().astype(int))]
    deficits: list[list[float]] = [[] for _ in candidates]
    covers: list[list[float]] = [[] for _ in candidates]
    for z in slices:
        which = lut[regions[z]]
        for i in np.flatnonzero(present[z]):
            region = which == i + 1
            deficit = _hull_deficit(_open2d(~((which > 0) & ~region), radius), region)
            if deficit is not None:
                deficits[i].append(deficit)
            else:
                hulls = _hulls(_open2d(~region, radius))
                covers[i].append(float((hulls & region).sum()) / float(region.sum()))
    # medians over slices: a few slices through filopodia or a notch do not decide;
    # each candidate is judged by the kind of evidence most of its slices gave
    by_deficit = [len(d) > len(c) for d, c in zip(deficits, covers, strict=True)]
    pairs = list(zip(deficits, covers, by_deficit, strict=True))
    deficit = np.array([np.median(d) if y else np.nan for d, _, y in pairs])
    cover = np.array([np.median(c) if c and not y else 0.0 for _, c, y in pairs])
    chosen = cover >= 0.5
    measured = np.isfinite(deficit)
    if measured.any():
        largest = deficit[measured].max()
        if largest >= max(_BORDER_MIN_DEFICIT_PX, 1e-3 * regions[0].size):
            chosen |= measured & (deficit < 0.5 * largest)
    return [c for c, yes in zip(candidates, chosen, strict=True) if yes]


def _open2d(area: np.ndarray, radius: int) -> np.ndarray:
    """Opening of a 2D mask by a disk of ``radius`` (two distance transforms); the
    image's edge does not erode (what touches it continues beyond)."""
    from scipy import ndimage

    if radius <= 0 or area.all() or not area.any():
        return area
    core = ndimage.distance_transform_edt(area) > radius
    if not core.any():
        return core
    return (ndimage.distance_transform_edt(~core) <= radius) & area


def _hull_deficit(area: np.ndarray, region: np.ndarray) -> float | None:
    """Convex-hull area minus area of the components of ``area`` that overlap
    ``region``; None when ``region`` is a small part of them (or mostly not in them)."""
    from scipy import ndimage
    from skimage.morphology import convex_hull_image

    kept = region & area
    parts, _ = ndimage.label(area)
    touched = np.unique(parts[kept])
    touched = touched[touched > 0]
    if 2 * int(kept.sum()) < int(region.sum()):
        return None
    if 4 * int(kept.sum()) < int(np.isin(parts, touched).sum()):
        return None
    deficit = 0.0
    for index, box in enumerate(ndimage.find_objects(parts)):
        if box is not None and index + 1 in touched:
            part = parts[box] == index + 1
            deficit += float(convex_hull_image(part).sum() - part.sum())
    return deficit


def _hulls(area: np.ndarray) -> np.ndarray:
    """Each connected component of a 2D mask replaced by its convex hull."""
    from scipy import ndimage
    from skimage.morphology import convex_hull_image

    parts, _ = ndimage.label(area)
    out = area.copy()
    for index, box in enumerate(ndimage.find_objects(parts)):
        if box is not None:
            part = parts[box] == index + 1
            if part.sum() >= 3:
                out[box] |= convex_hull_image(part)
    return out


def postprocess(
    probability: np.ndarray,
    *,
    threshold_level: float = PAPER_THRESHOLD,
    z_radius: int = 2,
    min_voxels: int = 0,
    erosion_iterations: int = 0,
    border_pixels: int = 0,
    cell_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The post-processing chain from a probability map to a membrane mask.

    z-smoothing of the probability over ``±z_radius`` slices, threshold (strictly
    greater), optional restriction to ``cell_mask``, border clearing, erosion, and
    removal of components below ``min_voxels``, in that order.

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    probability = _volume(probability, "probability")
    prob = smooth_z(probability.astype(np.float32, copy=False), z_radius)
    mask = threshold(prob, threshold_level)
    if cell_mask is not None:
        cell_mask = _volume(cell_mask, "cell_mask")
        if cell_mask.shape != mask.shape:
            raise ValueError(
                f"cell_mask shape {cell_mask.shape} differs from the probability's {mask.shape}"
            )
        mask &= cell_mask > 0
    mask = clear_border(mask, border_pixels)
    mask = erode(mask, erosion_iterations)
    return remove_small(mask, min_voxels)
