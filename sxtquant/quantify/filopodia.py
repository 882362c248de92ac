"""Filopodia: detection, centreline length and the measurements of the paper's Fig. 3B.

Dyhr et al. (PNAS 2023, Fig. 3B) measured 59 filopodia by hand: per z-slice 2D
cross-sections (first and second axis, perimeter) and 3D measures (major and second
axis of the ellipsoid, volume, surface area, surface-to-volume ratio).
:func:`analyze` does it automatically:

1. **Find the filopodia.** From a *cell mask* (one foreground value) the cell body
   is found by a morphological opening with a ball wider than any filopodium
   (:func:`sxtquant.quantify.objects.separate_filopodia`); what remains attached to it are
   the candidates. From *instance labels* every object is a candidate.
2. **Measure** every candidate with :func:`sxtquant.quantify.morphology.measure_objects`
   (the contract columns, in nm) and trace its **centreline**: the longest path
   through its 3D skeleton (:func:`skimage.morphology.skeletonize`), smoothed to
   remove the voxel staircase, and prolonged at both ends along its own direction
   up to the object's surface (sub-voxel, on the linearly interpolated mask). The
   skeleton alone stops about one radius short of each rounded tip; the raw voxel
   chain overstates a straight oblique line by up to 20 %. See :func:`centreline`.
3. **Keep the long, thin tubes**: a candidate is a filopodium when its radius
   (below) is at most ``max_radius_nm``, its length at least ``min_aspect`` times
   its diameter and at least ``min_length_nm``, and it is a tube, not a sheet: its
   radius at most ``TUBE_DEPTH_RATIO`` (1.5) times the median depth of its
   centreline below the surface, plus a voxel (a lamella or a sliver shaved off
   the body is long, but shallow). With ``split_at_base``, a piece that fails as a
   whole is judged (and its radius taken) beyond the opening radius from the body.

Length and radius
-----------------
``length_nm`` is the centreline length from base to tip. The ellipsoid's major axis
(``axis_major_nm``, the paper's "3D major axis", also reported) is no length: for a
straight uniform rod it is ``sqrt(5/3)`` = 1.29 times the rod's length, and less
for a bent one (1.14 for a quarter circle, 0.94 for a half circle).
``radius_nm`` is the radius of
the capsule (a cylinder with hemispherical ends) that has the object's volume and
centreline length: exact for a capsule, +2 % for a flat-ended cylinder 8 times
longer than wide. On digitised capsules and bent tubes (radius >= 5 voxels,
isotropic and anisotropic voxels) length and radius come out within 2-5 %.

Examples
--------
>>> import numpy as np
>>> zz, yy, xx = np.mgrid[:20, :20, :120]
>>> rod = ((zz - 10) ** 2 + (yy - 10) ** 2 <= 36) & (xx >= 10) & (xx < 110)
>>> per, summary = analyze(rod, 10.0, kind="labels")
>>> round(float(per["length_nm"].iloc[0]), -1)
1000.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sxtquant.core.progress import progress
from sxtquant.core.voxels import as_voxel_size
from sxtquant.quantify.centreline import Centreline, centreline

__all__ = [
    "DEFAULT_MIN_FILOPODIUM_RADIUS_NM",
    "FIG3B",
    "FILLED_MASK",
    "Centreline",
    "Quantity",
    "analyze",
    "centreline",
    "find_filopodia",
    "kept_candidates",
    "length_from_body",
    "summarize",
]


@dataclass(frozen=True)
class Quantity:
    """One measured quantity of Fig. 3B and the paper's population value (NaN: not given)."""

    name: str
    column: str
    unit: str
    paper_mean: float = math.nan
    paper_sd: float = math.nan
    paper_n: float = math.nan


#: The quantities of Fig. 3B of Dyhr et al. 2023, in the order of the figure, each with
#: its column of the per-filopodium table, then the centreline length and radius.
#: Paper values (mean ± SD, n = 59 filopodia) where the text states them.
FIG3B: tuple[Quantity, ...] = (
    Quantity("2D first axis", "slice_first_axis_nm_mean", "nm"),
    Quantity("2D second axis", "slice_second_axis_nm_mean", "nm", 132.0, 28.0, 59),
    Quantity("2D perimeter", "slice_perimeter_nm_mean", "nm"),
    Quantity("3D major axis", "axis_major_nm", "nm", 966.0, 394.0, 59),
    Quantity("3D second axis", "axis_second_nm", "nm"),
    Quantity("volume", "volume_nm3", "nm³"),
    Quantity("surface area", "surface_area_nm2", "nm²"),
    Quantity("surface-to-volume ratio", "surface_to_volume_per_um", "µm⁻¹", 30.2, 5.3, 59),
    Quantity("centreline length", "length_nm", "nm"),
    Quantity("radius", "radius_nm", "nm"),
)

SUMMARY_COLUMNS = (
    "quantity",
    "column",
    "unit",
    "mean",
    "sd",
    "n",
    "paper_mean",
    "paper_sd",
    "paper_n",
    "n_touching_border",
)

DEFAULT_MAX_RADIUS_NM = 150.0
#: Shortest filopodium, in diameters (length / diameter). The paper's filopodia are
#: 966 ± 394 nm long and 132 ± 28 nm wide (Fig. 3B, n = 59), 1.5 SD short under 3
#: diameters; the simulator's go down to 1.7. The figures that chose 2 over 3 are in
#: ``docs/filopodia.md`` ("Short filopodia").
DEFAULT_MIN_ASPECT = 2.0
DEFAULT_MIN_LENGTH_NM = 200.0
#: Protrusions thinner than this (nm) are not filopodia but slivers of a rough cell
#: surface: half the thinnest simulated filopodium (40 nm radius), a third of the
#: thinnest the paper measured (about 60 nm).
DEFAULT_MIN_FILOPODIUM_RADIUS_NM = 20.0
#: How ``quantify`` and the demo read a filled cell mask (filled membranes, true or
#: the network's, or a user's mask): the options of :func:`find_filopodia` that a
#: network's region maps get too (:data:`sxtquant.quantify.regions.NETWORK_MAP`).
#: On the true membranes of development demo seeds 20-31 the plain options found
#: 61 of 71 filopodia with 6 false (whole cells) and 32 of 40 with 10 false (cells cut
#: by the field of view, filled with the wide border opening of
#: :func:`sxtquant.quantify.recipe.border_opening_radius`); these 61 with 0 false and
#: 35 with 2 false (both at ``min_aspect`` 3; at 2, 71 and 40).
FILLED_MASK = {"min_radius_nm": DEFAULT_MIN_FILOPODIUM_RADIUS_NM, "split_at_base": True}


#: A candidate is a tube, not a sheet, when its capsule radius is at most this times
#: the median depth of its centreline below the surface (plus one voxel).
TUBE_DEPTH_RATIO = 1.5


def analyze(
    mask_or_labels: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    kind: str = "auto",
    max_radius_nm: float = DEFAULT_MAX_RADIUS_NM,
    min_aspect: float = DEFAULT_MIN_ASPECT,
    min_length_nm: float = DEFAULT_MIN_LENGTH_NM,
    exclude_border: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Find the filopodia of a cell and measure them as in Fig. 3B of the paper.

    Parameters
    ----------
    mask_or_labels : (Z, Y, X) ndarray of bool or int
        A filled cell mask with its protrusions (one foreground value, e.g. 0/255),
        or instance labels (0 = background) where each filopodium already is an
        object of its own.
    voxel_size_nm : float or (z, y, x) tuple of float
        Voxel size in nm.
    kind : {"auto", "mask", "labels"}
        How to read the input; ``auto`` takes a bool array or a single non-zero
        value as a mask, anything else as labels.
    max_radius_nm : float
        Largest filopodium radius. For a mask it also sets the opening that finds
        the cell body (see :func:`sxtquant.quantify.objects.separate_filopodia`).
    min_aspect : float
        Smallest length / diameter of a filopodium.
    min_length_nm : float
        Shortest filopodium (centreline length).
    exclude_border : bool
        Drop filopodia that touch the edge of the volume (cut, so too short), as
        the paper did; by default they are kept and flagged in ``touches_border``
        (and left out of the summary all the same).

    Returns
    -------
    per_filopodium : pandas.DataFrame
        One row per filopodium, ordered by label: the columns of
        :func:`sxtquant.quantify.morphology.measure_objects` (``label`` refers to the labels
        of :func:`find_filopodia`), then ``length_nm`` (centreline) and
        ``radius_nm``.
    summary : pandas.DataFrame
        :func:`summarize` of ``per_filopodium``: one row per quantity of Fig. 3B
        with mean, SD and n, beside the paper's values; filopodia that leave the
        volume (``touches_border``) are not in it (``n_touching_border`` counts them).

    Raises
    ------
    ValueError
        If the volume is not 3D, ``kind`` is unknown or an option is not positive.
    """
    per_filopodium, _ = find_filopodia(
        mask_or_labels,
        voxel_size_nm,
        kind=kind,
        max_radius_nm=max_radius_nm,
        min_aspect=min_aspect,
        min_length_nm=min_length_nm,
        exclude_border=exclude_border,
    )
    return per_filopodium, summarize(per_filopodium)


def find_filopodia(
    mask_or_labels: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    kind: str = "auto",
    max_radius_nm: float = DEFAULT_MAX_RADIUS_NM,
    min_aspect: float = DEFAULT_MIN_ASPECT,
    min_length_nm: float = DEFAULT_MIN_LENGTH_NM,
    exclude_border: bool = False,
    min_radius_nm: float = 0.0,
    split_at_base: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The filopodia of a cell mask or label volume, measured, and their labels.

    Parameters are those of :func:`analyze`, and for a mask ``min_radius_nm`` and
    ``split_at_base`` of :func:`sxtquant.quantify.objects.separate_filopodia` (for a
    filled or a network's rough cell mask, :data:`FILLED_MASK`; off by default); a
    filopodium must also be at least ``min_radius_nm`` thick. With ``split_at_base``
    the table's ``length_nm`` is measured from the body (:func:`length_from_body` from
    the voxels touching it), since on a network's rough surface the skeleton's base end
    runs sideways along the body; whether a piece is a tube is still decided on its
    centreline, and ``radius_nm`` comes from it, except for a piece whose base sits in
    a web (not a tube, or too wide for its length, as a whole): it is judged on its part
    farther than the opening radius from the body, which must be a tube at least
    ``min_radius_nm`` deep, and that part gives ``radius_nm``.

    Returns
    -------
    per_filopodium : pandas.DataFrame
        As :func:`analyze`.
    labels : (Z, Y, X) ndarray of int
        The candidates the table's ``label`` column refers to: for a mask, the
        pieces that :func:`sxtquant.quantify.objects.separate_filopodia` cut from the cell
        body; for labels, the input. Candidates that were not kept keep their label
        here but have no row.
    """
    from scipy import ndimage as ndi

    from sxtquant.quantify.morphology import measure_objects

    voxel = as_voxel_size(voxel_size_nm)
    data = np.asarray(mask_or_labels)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) volume, got shape {data.shape}")
    if kind not in ("auto", "mask", "labels"):
        raise ValueError(f"kind must be 'auto', 'mask' or 'labels', got {kind!r}")
    for name, value in (
        ("max_radius_nm", max_radius_nm),
        ("min_aspect", min_aspect),
        ("min_length_nm", min_length_nm),
    ):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if kind == "auto":
        kind = "mask" if data.dtype == bool or np.unique(data[data != 0]).size <= 1 else "labels"
    shell = far = None  # the body's rim (a filopodium's base), and beyond the opening
    if kind == "mask":
        from sxtquant.quantify.objects import separate_filopodia

        # only the body/protrusion split is wanted from it; "long and thin" is decided
        # below on the centreline, which a bent filopodium's moment ellipsoid is not
        labels, body = separate_filopodia(
            data != 0,
            voxel,
            max_radius_nm=max_radius_nm,
            min_length_nm=min_length_nm,
            min_elongation=1.0,
            min_radius_nm=min_radius_nm,
            split_at_base=split_at_base,
            return_body=True,
        )
        labels = np.asarray(labels)
        if split_at_base and body.any():
            shell = ndi.binary_dilation(body, ndi.generate_binary_structure(3, 3))
            opened = max_radius_nm + max(voxel)  # the radius separate_filopodia opens with
            far = ndi.distance_transform_edt(~body, sampling=voxel) > opened
    else:
        labels = data
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int64)

    table = measure_objects(labels, voxel)
    columns = [*table.columns, "length_nm", "radius_nm"]
    # Cheap first cut on the ellipsoid: a tube's smallest axis is about 2.24 radii,
    # whatever its length or bend (in one plane).
    table = table[table["axis_minor_nm"] <= 2.5 * max_radius_nm + 2 * max(voxel)]
    boxes = ndi.find_objects(labels)

    def slim(length: float, radius: float) -> bool:  # the size tests of a tube
        return radius <= max_radius_nm and length >= max(min_aspect * 2 * radius, min_length_nm)

    lengths, radii, kept, from_body = [], [], [], {}
    for label, volume in progress(
        list(zip(table["label"], table["volume_nm3"], strict=True)),
        desc="filopodia",
        unit="object",
    ):
        box = boxes[int(label) - 1]
        piece = labels[box] == label
        line = centreline(piece, voxel)
        length, radius = line.length_nm, capsule_radius(float(volume), line.length_nm)
        fits = _is_tube(radius, line, voxel) and slim(length, radius)
        if not fits and far is not None:  # a web at its base: judge the part beyond it
            beyond = _radius_beyond(piece & far[box], voxel, min_radius_nm)
            if beyond is not None and slim(length, beyond):
                radius, fits = beyond, True
        if fits and shell is not None and (piece & shell[box]).any():
            from_body[int(label)] = length_from_body(piece, piece & shell[box], voxel)
        lengths.append(length)
        radii.append(radius)
        kept.append(fits)
    table = table.assign(length_nm=lengths, radius_nm=radii)
    keep = np.asarray(kept, dtype=bool) & (np.asarray(radii, dtype=float) >= min_radius_nm)
    if exclude_border:
        keep &= ~table["touches_border"].to_numpy(bool)
    table = table[keep].reset_index(drop=True)
    if from_body:  # the tests above are on the whole piece; its length is from the body
        table["length_nm"] = table["label"].map(from_body).fillna(table["length_nm"])
    return table.reindex(columns=columns), labels


def _is_tube(radius_nm: float, line: Centreline, voxel) -> bool:
    """A tube is as deep along its centreline as its volume says; a sheet (a sliver
    shaved off a body, a lamella) is much shallower than its capsule radius."""
    return radius_nm <= TUBE_DEPTH_RATIO * float(np.median(line.radii_nm)) + max(voxel)


def _radius_beyond(part: np.ndarray, voxel, min_depth_nm: float) -> float | None:
    """The capsule radius of the largest piece of ``part`` (a candidate farther than
    the opening radius from the body) if a tube at least ``min_depth_nm`` deep, else None."""
    from scipy import ndimage as ndi

    pieces, n = ndi.label(part, np.ones((3, 3, 3)))
    if not n:
        return None
    part = pieces == 1 + np.argmax(np.bincount(pieces.ravel())[1:])
    line = centreline(part, voxel)
    radius = capsule_radius(np.count_nonzero(part) * float(np.prod(voxel)), line.length_nm)
    deep = float(np.median(line.radii_nm)) >= min_depth_nm
    return radius if deep and _is_tube(radius, line, voxel) else None


def kept_candidates(candidates: np.ndarray, per_filopodium: pd.DataFrame) -> np.ndarray:
    """The candidates of :func:`find_filopodia` that its table kept, under their own
    labels (the rest 0), in the candidates' dtype."""
    keep = np.isin(candidates, per_filopodium["label"].to_numpy()) & (candidates > 0)
    return np.where(keep, candidates, 0).astype(candidates.dtype)


def length_from_body(
    mask: np.ndarray, base: np.ndarray, voxel_size_nm: float | Sequence[float]
) -> float:
    """Length (nm) of an object from its base: the longest of the shortest paths inside
    ``mask`` (26-connected, in nm) from the ``base`` voxels, plus one voxel (half a
    voxel from the surface to each end's centre)."""
    from sxtquant.quantify.objects import geodesic_distance

    voxel = as_voxel_size(voxel_size_nm)
    mask = np.asarray(mask, dtype=bool)
    if not (mask & base).any():
        raise ValueError("no base voxel lies in the mask")
    return float(geodesic_distance(mask, base, voxel).max()) + max(voxel)


def capsule_radius(volume_nm3: float, length_nm: float) -> float:
    """Radius of the capsule with this volume and full length (tip to tip).

    Solves ``pi r**2 (L - 2 r / 3) = V`` for ``0 < r <= L / 2``; NaN when no capsule
    of that length holds the volume (a blob rounder than a sphere).
    """
    if not (volume_nm3 > 0 and length_nm > 0):
        return math.nan
    length = float(length_nm)
    if volume_nm3 > math.pi / 6 * length**3:  # more than the sphere of that diameter
        return math.nan
    lo, hi = 0.0, length / 2  # the volume grows monotonically with r on this interval
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if math.pi * mid * mid * (length - 2 * mid / 3) < volume_nm3:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def summarize(per_filopodium: pd.DataFrame, *, exclude_border: bool = True) -> pd.DataFrame:
    """Mean, SD (ddof = 1) and n of every Fig. 3B quantity, beside the paper's values.

    Parameters
    ----------
    per_filopodium : pandas.DataFrame
        The table of :func:`analyze`; missing columns give NaN rows.
    exclude_border : bool
        Leave out the filopodia flagged in ``touches_border`` (they leave the volume,
        so they are cut: too short, too small), as the paper's Fig. 3B did. A table
        without that column is taken whole.

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity``, ``column``, ``unit``, ``mean``, ``sd``, ``n``,
        ``paper_mean``, ``paper_sd``, ``paper_n`` and ``n_touching_border`` (the
        filopodia left out because they touch the volume's edge; 0 with
        ``exclude_border=False``); one row per entry of :data:`FIG3B`. NaN values
        are left out of mean, SD and n; SD is NaN for fewer than two filopodia,
        mean for none.
    """
    left_out = 0
    if exclude_border and "touches_border" in per_filopodium and len(per_filopodium):
        cut = per_filopodium["touches_border"].astype("boolean").fillna(False).to_numpy(bool)
        left_out = int(cut.sum())
        per_filopodium = per_filopodium[~cut]
    rows = []
    for q in FIG3B:
        if q.column in per_filopodium:
            values = pd.to_numeric(per_filopodium[q.column], errors="coerce").to_numpy(float)
            values = values[np.isfinite(values)]
        else:
            values = np.empty(0)
        n = len(values)
        rows.append(
            {
                "quantity": q.name,
                "column": q.column,
                "unit": q.unit,
                "mean": float(values.mean()) if n else math.nan,
                "sd": float(values.std(ddof=1)) if n > 1 else math.nan,
                "n": n,
                "paper_mean": q.paper_mean,
                "paper_sd": q.paper_sd,
                "paper_n": q.paper_n,
                "n_touching_border": left_out,
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
