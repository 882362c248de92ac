"""Cells and organelles from region probabilities, the outputs of a region-aware network.

Besides the membranes, a region-aware network writes, per voxel, the probability of
being inside the cell (``<stem>.cell.probability.tif``: the cytoplasm side of the
plasma membrane, filopodia and organelles included) and inside an organelle
(``<stem>.organelles.probability.tif``: nucleus, mitochondria, ER, vesicles, lipid
droplets). With them, the cell needs no closed membrane contours:

* :func:`cell_mask_from_probability` — threshold, fill holes (per slice, in 3D and
  where the volume's border cuts the cell open), drop specks;
* :func:`organelles_from_probability` — the organelle interior split into one label
  per organelle by a seeded watershed (seeds: the high-probability cores, split
  where they are pinched);
* :func:`cell_objects` — a cell mask (from the probability or from filled membranes)
  and organelle labels into one labelled volume: cell bodies, filopodia (the
  body/protrusion split of :func:`sxtquant.quantify.filopodia.find_filopodia`) and
  organelles, as :class:`CellObjects`;
* :func:`objects_from_regions` — the three in a row, what ``sxtquant quantify`` runs
  when region probabilities are given;
* :func:`measure_cell_objects` — their table (the columns of
  :func:`sxtquant.quantify.morphology.measure_objects`).

Example
-------
>>> import numpy as np
>>> zz, yy, xx = np.mgrid[:24, :48, :48]
>>> ball = ((zz - 12) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2 <= 100).astype(np.float32)
>>> objects = objects_from_regions(ball, 10.0, organelle_probability=ball * 0)
>>> objects.n_cells, objects.n_filopodia, objects.n_organelles
(1, 0, 0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sxtquant.core.voxels import as_voxel_size
from sxtquant.quantify.filopodia import (
    DEFAULT_MAX_RADIUS_NM,
    DEFAULT_MIN_ASPECT,
    DEFAULT_MIN_FILOPODIUM_RADIUS_NM,
    DEFAULT_MIN_LENGTH_NM,
)

__all__ = [
    "DEFAULT_CELL_SMOOTH_NM",
    "DEFAULT_MIN_FILOPODIUM_RADIUS_NM",
    "DEFAULT_ORGANELLE_MIN_VOLUME_NM3",
    "NETWORK_MAP",
    "REGION_THRESHOLD",
    "SPECK_FRACTION",
    "CellObjects",
    "cell_mask_from_probability",
    "cell_objects",
    "measure_cell_objects",
    "objects_from_regions",
    "organelles_from_probability",
]

#: Region probabilities are decided at 0.5 (inside where probability > 0.5).
REGION_THRESHOLD = 0.5
#: By default a component of the cell mask is kept when it has at least this fraction
#: of the largest component's voxels (specks of a noisy map are far smaller).
SPECK_FRACTION = 0.01
#: Organelles smaller than this (nm³; a ball of ~36 nm radius) are noise.
DEFAULT_ORGANELLE_MIN_VOLUME_NM3 = 2e5
#: Smoothing (Gaussian sigma, nm) of a network's cell probability before its threshold
#: (``smooth_nm`` of :func:`objects_from_regions`, as ``quantify`` and the demo run it):
#: below the microscope's 30-40 nm resolution, so it
#: removes the map's voxel-scale roughness, not structure.
DEFAULT_CELL_SMOOTH_NM = 20.0
#: How ``quantify`` and the demo read a network's maps (chosen on demo seeds 20-25).
NETWORK_MAP = {"smooth_nm": DEFAULT_CELL_SMOOTH_NM, "split_at_base": True}


def _probability(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D (z, y, x) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) and array.dtype != bool:
        array = array.astype(np.float32)
    return array


def _check_threshold(value: float, name: str = "threshold") -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def cell_mask_from_probability(
    cell_probability: np.ndarray,
    *,
    threshold: float = REGION_THRESHOLD,
    min_voxels: int | None = None,
    smooth_voxels: float | Sequence[float] = 0.0,
) -> np.ndarray:
    """The cell (cytoplasm side of the plasma membrane) from its probability map.

    Parameters
    ----------
    cell_probability : (Z, Y, X) ndarray of float
        Probability, in [0, 1], that a voxel is inside the cell.
    threshold : float
        Inside where the probability is > ``threshold`` (strictly).
    min_voxels : int, optional
        Keep the 3D components (face connectivity) of at least this many voxels. By
        default, those of at least :data:`SPECK_FRACTION` (1 %) of the largest one:
        specks go, a second cell or a piece of a cell cut by the border stays
        (keeping only the largest component would drop those).
    smooth_voxels : float or (z, y, x) floats
        Gaussian smoothing (sigma, voxels) of the probability before the threshold;
        0: none. A network's map is rough at the voxel scale, and the body/protrusion
        split then cuts one-voxel slivers off the cell's surface.

    Returns
    -------
    (Z, Y, X) ndarray of bool
        Thresholded, holes filled per z-slice and in 3D, and the holes that the
        volume's y/x border cuts open filled where they lie on the cell's side
        (:func:`sxtquant.quantify.postprocess.fill_border_regions`: of the
        background regions touching the border, those on the convex side, e.g. a
        low-probability nucleus cut by the border together with the cell), then
        the specks dropped.

    Raises
    ------
    ValueError
        If the map is not 3D, or an option is out of range.
    """
    from scipy import ndimage

    from sxtquant.quantify.objects import connected_components, label_sizes
    from sxtquant.quantify.postprocess import (
        _fill_holes_per_slice,
        fill_border_regions,
    )

    _check_threshold(threshold)
    if min_voxels is not None and min_voxels < 0:
        raise ValueError(f"min_voxels must be >= 0, got {min_voxels}")
    sigmas = np.broadcast_to(np.asarray(smooth_voxels, dtype=float), (3,))
    if not (np.all(sigmas >= 0) and np.all(np.isfinite(sigmas))):
        raise ValueError(f"smooth_voxels must be >= 0, got {smooth_voxels}")
    probability = _probability(cell_probability, "cell_probability")
    if sigmas.any():
        probability = ndimage.gaussian_filter(probability, tuple(sigmas), mode="nearest")
    mask = probability > threshold
    mask = _fill_holes_per_slice(mask)
    mask = ndimage.binary_fill_holes(mask)
    mask = fill_border_regions(mask)
    components = connected_components(mask)
    sizes = label_sizes(components)
    if sizes.size <= 1:
        return mask
    floor = SPECK_FRACTION * sizes[1:].max() if min_voxels is None else min_voxels
    keep = sizes >= floor
    keep[0] = False
    return keep[components]


def organelles_from_probability(
    organelle_probability: np.ndarray,
    *,
    voxel_size_nm: float | Sequence[float],
    cell_mask: np.ndarray | None = None,
    threshold: float = REGION_THRESHOLD,
    core_threshold: float | None = None,
    h_nm: float | None = None,
    min_volume_nm3: float = DEFAULT_ORGANELLE_MIN_VOLUME_NM3,
) -> np.ndarray:
    """Organelle instances from the organelle-interior probability.

    1. The interior: probability > ``threshold`` (inside ``cell_mask`` when given),
       cavities filled in 3D.
    2. Seeds: the core, probability > ``core_threshold``, split where it is pinched
       (:func:`sxtquant.quantify.objects.separate_objects`: h-domes of its distance
       transform, ``h_nm`` deep). Between touching organelles the network's
       probability dips (their membranes) and the interiors' shapes pinch; either
       separates the cores.
    3. The seeds grow back over the interior by a watershed of its (anisotropic)
       distance transform, so the split follows the neck between organelles. An
       interior component without a seed (an organelle whose probability never
       reaches the core level) is one organelle.
    4. Organelles under ``min_volume_nm3`` are dropped.

    Parameters
    ----------
    organelle_probability : (Z, Y, X) ndarray of float
        Probability, in [0, 1], that a voxel is inside an organelle.
    voxel_size_nm : float or (z, y, x) tuple of float
    cell_mask : (Z, Y, X) ndarray of bool, optional
        Organelles are looked for only inside it.
    threshold : float
        Interior where the probability is > ``threshold``.
    core_threshold : float, optional
        Default halfway between ``threshold`` and 1 (0.75).
    h_nm : float, optional
        Default 2 x the coarsest voxel spacing.
    min_volume_nm3 : float

    Returns
    -------
    (Z, Y, X) ndarray of uint16 or uint32
        One label per organelle, numbered 1..n in scan order of their seeds.

    Raises
    ------
    ValueError
        A map that is not 3D, a ``cell_mask`` of another shape, or an option out of
        range.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    from sxtquant.quantify.objects import (
        connected_components,
        relabel,
        remove_small,
        separate_objects,
    )

    voxel = as_voxel_size(voxel_size_nm)
    _check_threshold(threshold)
    if core_threshold is None:
        core_threshold = 0.5 * (1.0 + threshold)
    if not threshold <= core_threshold < 1.0:
        raise ValueError(f"core_threshold must be in [threshold, 1), got {core_threshold}")
    if not (min_volume_nm3 >= 0 and math.isfinite(min_volume_nm3)):
        raise ValueError(f"min_volume_nm3 must be >= 0, got {min_volume_nm3}")
    prob = _probability(organelle_probability, "organelle_probability")
    interior = prob > threshold
    if cell_mask is not None:
        cell_mask = np.asarray(cell_mask)
        if cell_mask.shape != prob.shape:
            raise ValueError(
                f"cell_mask shape {cell_mask.shape} differs from the probability's {prob.shape}"
            )
        interior &= cell_mask > 0
    interior = ndimage.binary_fill_holes(interior)
    seeds = separate_objects(interior & (prob > core_threshold), voxel, h_nm=h_nm)
    if seeds.max() > 0:
        depth = ndimage.distance_transform_edt(interior, sampling=voxel)
        labels = watershed(-depth, seeds.astype(np.int32), mask=interior).astype(np.int64)
    else:
        labels = np.zeros(prob.shape, dtype=np.int64)
    unseeded = connected_components(interior & (labels == 0)).astype(np.int64)
    labels = np.where(unseeded > 0, unseeded + labels.max(), labels)
    min_voxels = math.ceil(min_volume_nm3 / float(np.prod(voxel))) if min_volume_nm3 else 0
    return relabel(remove_small(labels, min_voxels))


@dataclass(frozen=True)
class CellObjects:
    """A cell's parts as one labelled volume.

    Attributes
    ----------
    labels : (Z, Y, X) ndarray of uint16 or uint32
        Cell bodies ``1..n_cells``, then the filopodia, then the organelles (drawn
        over the body that holds them), 0 elsewhere.
    cell_labels : (Z, Y, X) ndarray of uint16 or uint32
        The same without the organelles: each body whole, its organelles included.
    organelle_labels : (Z, Y, X) ndarray of uint16 or uint32
        The organelles under their labels in ``labels``, 0 elsewhere.
    n_cells, n_filopodia, n_organelles : int
    filopodia : pandas.DataFrame
        :func:`sxtquant.quantify.filopodia.find_filopodia`'s table (its ``label``
        refers to ``filopodia_labels``, not to ``labels``).
    filopodia_labels : (Z, Y, X) ndarray of int
        Each filopodium of the table under its ``label``, 0 elsewhere.
    """

    labels: np.ndarray
    cell_labels: np.ndarray
    organelle_labels: np.ndarray
    n_cells: int
    n_filopodia: int
    n_organelles: int
    filopodia: pd.DataFrame
    filopodia_labels: np.ndarray

    def classes(self) -> tuple[str, ...]:
        """The kind of every label 1..n: ``"cell"``, ``"filopodium"`` or ``"organelle"``."""
        return (
            ("cell",) * self.n_cells
            + ("filopodium",) * self.n_filopodia
            + ("organelle",) * self.n_organelles
        )

    def summary(self) -> str:
        """In words, e.g. ``1 cell (label 1), 2 filopodia (2-3), 3 organelles (4-6)``."""
        words, start = [], 1
        for n, one, many in (
            (self.n_cells, "cell", "cells"),
            (self.n_filopodia, "filopodium", "filopodia"),
            (self.n_organelles, "organelle", "organelles"),
        ):
            where = "" if n == 0 else f" ({start})" if n == 1 else f" ({start}-{start + n - 1})"
            words.append(f"{n} {one if n == 1 else many}{where}")
            start += n
        return ", ".join(words)


def cell_objects(
    cell_mask: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    organelles: np.ndarray | None = None,
    separate: bool = False,
    min_voxels: int = 0,
    exclude_border: bool = False,
    max_radius_nm: float = DEFAULT_MAX_RADIUS_NM,
    min_aspect: float = DEFAULT_MIN_ASPECT,
    min_length_nm: float = DEFAULT_MIN_LENGTH_NM,
    min_radius_nm: float = 0.0,
    split_at_base: bool = False,
) -> CellObjects:
    """Cell bodies, filopodia and organelles as one labelled volume.

    The filopodia are those of :func:`sxtquant.quantify.filopodia.find_filopodia` on
    ``cell_mask`` (the body/protrusion split by an opening, then the tube tests); the
    bodies are what remains of the cell (its 3D components, or split by
    :func:`sxtquant.quantify.objects.separate_objects` with ``separate``); the
    organelles are ``organelles`` inside the cell.

    Parameters
    ----------
    cell_mask : (Z, Y, X) ndarray of bool
        The filled cell with its protrusions (and its organelles).
    voxel_size_nm : float or (z, y, x) tuple of float
    organelles : (Z, Y, X) ndarray of int, optional
        Organelle instance labels (:func:`organelles_from_probability`).
    separate : bool
        Split touching cell bodies.
    min_voxels : int
        Drop bodies and organelles of fewer voxels.
    exclude_border : bool
        Drop the cells that touch the volume's edge (with their filopodia and
        organelles) and the organelles that touch it. Without it they are kept, and
        ``touches_border`` says so; filopodia that leave the volume are then left
        out of the filopodia summary (:func:`sxtquant.quantify.filopodia.summarize`).
    max_radius_nm, min_aspect, min_length_nm : float
        Of :func:`sxtquant.quantify.filopodia.find_filopodia`.
    min_radius_nm : float
        Thinner filopodia go back to their body (slivers of a rough surface), and
        thinner sheets join none (:func:`~sxtquant.quantify.objects.separate_filopodia`).
    split_at_base : bool
        Of :func:`sxtquant.quantify.objects.separate_filopodia`.

    Returns
    -------
    CellObjects
    """
    from sxtquant.quantify.filopodia import find_filopodia, kept_candidates
    from sxtquant.quantify.morphology import COLUMNS
    from sxtquant.quantify.objects import (
        connected_components,
        label_dtype,
        relabel,
        remove_small,
        separate_objects,
    )
    from sxtquant.quantify.objects import exclude_border as drop_border

    voxel = as_voxel_size(voxel_size_nm)
    cell = np.asarray(cell_mask) > 0
    if cell.ndim != 3:
        raise ValueError(f"cell_mask must be a 3D (z, y, x) array, got shape {cell.shape}")
    if organelles is not None and np.shape(organelles) != cell.shape:
        raise ValueError(
            f"organelles shape {np.shape(organelles)} differs from the cell mask's {cell.shape}"
        )
    if exclude_border:
        cell = drop_border(connected_components(cell)) > 0
    if cell.any():
        per, candidates = find_filopodia(
            cell,
            voxel,
            kind="mask",
            max_radius_nm=max_radius_nm,
            min_aspect=min_aspect,
            min_length_nm=min_length_nm,
            exclude_border=exclude_border,
            min_radius_nm=min_radius_nm,
            split_at_base=split_at_base,
        )
        filopodia_labels = kept_candidates(candidates, per)
        kept = filopodia_labels > 0
    else:
        per = pd.DataFrame(columns=[*COLUMNS, "length_nm", "radius_nm"])
        kept = np.zeros(cell.shape, dtype=bool)
        filopodia_labels = np.zeros(cell.shape, dtype=np.uint16)
    body = cell & ~kept
    bodies = separate_objects(body, voxel) if separate else connected_components(body)
    bodies = relabel(remove_small(bodies, min_voxels)).astype(np.int64)
    n_cells = int(bodies.max())
    tubes = relabel(filopodia_labels).astype(np.int64)
    n_filopodia = int(tubes.max())
    parts = np.where(tubes > 0, tubes + n_cells, bodies)
    inner = np.zeros(cell.shape, dtype=np.int64)
    if organelles is not None:
        inner = np.where(cell, np.asarray(organelles), 0).astype(np.int64)
        if exclude_border:
            inner = drop_border(inner)
        inner = relabel(remove_small(inner, min_voxels)).astype(np.int64)
    n_organelles = int(inner.max())
    inner = np.where(inner > 0, inner + n_cells + n_filopodia, 0)
    dtype = label_dtype(n_cells + n_filopodia + n_organelles)
    return CellObjects(
        labels=np.where(inner > 0, inner, parts).astype(dtype),
        cell_labels=parts.astype(dtype),
        organelle_labels=inner.astype(dtype),
        n_cells=n_cells,
        n_filopodia=n_filopodia,
        n_organelles=n_organelles,
        filopodia=per,
        filopodia_labels=filopodia_labels,
    )


def objects_from_regions(
    cell_probability: np.ndarray | None,
    voxel_size_nm: float | Sequence[float],
    *,
    organelle_probability: np.ndarray | None = None,
    cell_mask: np.ndarray | None = None,
    threshold: float = REGION_THRESHOLD,
    separate: bool = False,
    min_voxels: int = 0,
    exclude_border: bool = False,
    max_radius_nm: float = DEFAULT_MAX_RADIUS_NM,
    min_aspect: float = DEFAULT_MIN_ASPECT,
    min_length_nm: float = DEFAULT_MIN_LENGTH_NM,
    min_radius_nm: float = DEFAULT_MIN_FILOPODIUM_RADIUS_NM,
    smooth_nm: float = 0.0,
    split_at_base: bool = False,
) -> CellObjects:
    """Cell bodies, filopodia and organelles from the region probabilities.

    The cell is :func:`cell_mask_from_probability` of the larger of the two
    probabilities (an organelle is inside the cell, so a voxel's probability of
    being in the cell is at least that of being in an organelle), or ``cell_mask``
    when no cell probability is given; the organelles are
    :func:`organelles_from_probability` inside it, and :func:`cell_objects` puts
    them together.

    Parameters
    ----------
    cell_probability : (Z, Y, X) ndarray of float, or None
    voxel_size_nm : float or (z, y, x) tuple of float
    organelle_probability : (Z, Y, X) ndarray of float, optional
    cell_mask : (Z, Y, X) ndarray of bool, optional
        The cell, when ``cell_probability`` is None (e.g. filled membranes).
    threshold : float
        Of both maps (strictly greater is inside).
    separate, min_voxels, exclude_border, max_radius_nm, min_aspect, min_length_nm
        Of :func:`cell_objects`.
    min_radius_nm : float
        Of :func:`cell_objects` (default :data:`DEFAULT_MIN_FILOPODIUM_RADIUS_NM`).
    smooth_nm : float
        Gaussian sigma (nm) of the cell probability's smoothing before its threshold
        (0: none, exact on a clean map; :data:`DEFAULT_CELL_SMOOTH_NM` for a network's
        map, as ``quantify`` and the demo use it). On the demo's simulated cell (seed 0)
        with a trained region model it turned 0 of 6 filopodia found with 7 slivers
        called filopodia into 3 of 6 found with none (with ``min_radius_nm``).
    split_at_base : bool
        Of :func:`cell_objects` (:data:`NETWORK_MAP` for a network's maps).

    Returns
    -------
    CellObjects

    Raises
    ------
    ValueError
        Neither or both of ``cell_probability`` and ``cell_mask``, or maps of
        different shapes.
    """
    if (cell_probability is None) == (cell_mask is None):
        raise ValueError("give either cell_probability or cell_mask")
    reference = cell_probability if cell_mask is None else cell_mask
    shape = np.shape(reference)
    if organelle_probability is not None:
        organelle_probability = _probability(organelle_probability, "organelle_probability")
        if organelle_probability.shape != shape:
            raise ValueError(
                f"organelle_probability shape {organelle_probability.shape} differs from "
                f"the cell's {shape}"
            )
    if cell_probability is not None:
        cell_probability = _probability(cell_probability, "cell_probability")
        if organelle_probability is not None:
            cell_probability = np.maximum(cell_probability, organelle_probability)
        smooth = [smooth_nm / v for v in as_voxel_size(voxel_size_nm)]
        cell_mask = cell_mask_from_probability(
            cell_probability, threshold=threshold, smooth_voxels=smooth
        )
    cell_mask = np.asarray(cell_mask) > 0
    organelles = None
    if organelle_probability is not None:
        organelles = organelles_from_probability(
            organelle_probability,
            voxel_size_nm=voxel_size_nm,
            cell_mask=cell_mask,
            threshold=threshold,
        )
    return cell_objects(
        cell_mask,
        voxel_size_nm,
        organelles=organelles,
        separate=separate,
        min_voxels=min_voxels,
        exclude_border=exclude_border,
        max_radius_nm=max_radius_nm,
        min_aspect=min_aspect,
        min_length_nm=min_length_nm,
        min_radius_nm=min_radius_nm,
        split_at_base=split_at_base,
    )


def measure_cell_objects(
    objects: CellObjects, voxel_size_nm: float | Sequence[float]
) -> pd.DataFrame:
    """The table of :func:`sxtquant.quantify.morphology.measure_objects` for the parts.

    One row per label of ``objects.labels``, sorted by label, with the contract
    columns. A cell body is measured whole, its organelles included (its volume is
    the cell's without the filopodia; in ``labels`` its organelles are drawn over
    it), each filopodium and organelle on its own.
    """
    from sxtquant.quantify.morphology import measure_objects

    tables = [measure_objects(objects.cell_labels, voxel_size_nm)]
    if objects.n_organelles:
        tables.append(measure_objects(objects.organelle_labels, voxel_size_nm))
    table = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    return table.sort_values("label", kind="stable").reset_index(drop=True)
