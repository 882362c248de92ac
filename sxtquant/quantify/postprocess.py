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
  objects (per-slice closing + hole filling, then 3D hole filling);
* :func:`postprocess` — the chain, with the paper's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sxtquant.core.defaults import THRESHOLD
from sxtquant.core.voxels import as_voxel_size

__all__ = [
    "clear_border",
    "erode",
    "fill_membranes",
    "postprocess",
    "remove_small",
    "rough_cell_mask",
    "smooth_z",
    "threshold",
]

PAPER_THRESHOLD = THRESHOLD


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

    Returns
    -------
    (Z, Y, X) ndarray of bool
        The membranes together with everything they enclose. Contours cut open by the
        volume's edge stay unfilled (nothing tells their inside from their outside).

    Notes
    -----
    The closing also fills notches narrower than about ``2 * closing_radius`` pixels
    and merges membranes that close together; separate touching objects afterwards
    with :func:`sxtquant.quantify.objects.separate_objects`.
    """
    from scipy import ndimage

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
    return filled


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
