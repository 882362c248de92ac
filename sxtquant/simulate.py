"""A cryo-soft X-ray tomography (cryo-SXT) simulator with exact ground truth.

Arrays in, arrays out; files are written by :mod:`sxtquant.commands.simulate`.

The simulation has three stages, each a public function:

1. :func:`make_phantom` builds a cell in vitreous ice on a (z, y, x) voxel grid: the
   linear absorption coefficient (LAC, µm⁻¹, water window ≈ 517 eV) of every voxel,
   the membrane ground truth (2–3 voxel shells on every membranous boundary), filled
   instance labels and a table of every object's analytic geometry.
2. :func:`acquire` forward-projects the LAC volume as a parallel-beam tilt series about
   the y axis (missing wedge), blurs it with the zone-plate point-spread function
   (optionally depth dependent), adds Poisson noise at a dose and optional
   misalignment jitter, and returns the measured line integrals ``-ln(I / I0)``.
3. :func:`reconstruct` inverts the tilt series slice-wise in x–z planes with SIRT
   (30 iterations by default, like the IMOD workflow of the reference paper) or
   filtered back-projection.

:func:`simulate_tomogram` runs all three and also derives the artifact mask: the
regions where the gold fiducials' limited-angle streaks lie.

Coordinates are physical (z, y, x) in nm; the centre of voxel ``(i, j, k)`` lies at
``(i, j, k) * voxel_size_nm`` (the convention of :mod:`sxtquant.shapes`). A voxel
belongs to an object when its centre lies inside the object's analytic surface.

Projection operator
-------------------
The tilt geometry is the same for every y row, so the x–z projector is built once per
geometry as a sparse matrix ``A`` (Joseph's ray-driven linear-interpolation model,
checked against :func:`skimage.transform.radon` in the tests) and applied to all y
rows of a block at once: ``A @ V`` with ``V`` the (z·x, y) matrix of a block. The
product is a weighted gather-sum, run by :func:`torch.nn.functional.embedding_bag`
(multi-threaded). SIRT is then two such products per iteration. The reconstruction
grid extends beyond the detector's field of view in x (the specimen is a slab: at
65° the detector sees 2.4× its width of ice), so no mass is missing from any ray and
the crop back to the field of view has no truncation artifacts.

LAC values
----------
See :data:`LAC_PER_UM` and ``docs/simulator.md`` for the values and their sources.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from sxtquant.shapes import ellipsoid_surface_area
from sxtquant.utils import progress

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CLASSES",
    "LAC_PER_UM",
    "Acquisition",
    "CellContent",
    "Phantom",
    "Simulation",
    "TiltSeries",
    "acquire",
    "artifact_mask",
    "make_phantom",
    "reconstruct",
    "sample_conditions",
    "simulate_tomogram",
    "tilt_angles",
]

# --------------------------------------------------------------------------- constants

#: Linear absorption coefficients in µm⁻¹ near 517 eV (water window), see docs/simulator.md.
#: ice: Henke/CXRO tables for H2O at 0.92 g/cm³ (≈ 0.109 µm⁻¹, the value used by
#: Weiss et al. 2000 Ultramicroscopy 84:185 and McDermott et al. 2009 Trends Cell Biol
#: 19:587). Cytoplasm, nucleus, nucleolus, mitochondria, lipid droplets, vesicles: the
#: ranges measured in cryo-SXT of whole cells (Parkinson et al. 2008 J Struct Biol
#: 162:380; Uchida et al. 2009 PNAS 106:19375; Le Gros et al. 2005 Curr Opin Struct Biol
#: 15:593). membrane: protein/lipid material of a bilayer (≈ 1.3 µm⁻¹, between lipid
#: and protein at ≈ 1.35 µm⁻¹, Henke/CXRO; McDermott et al. 2009), applied with its
#: partial volume (a 7 nm bilayer in a 9.8 nm voxel). gold: Henke/CXRO, Au at 19.3 g/cm³
#: (attenuation length ≈ 0.1 µm).
LAC_PER_UM: dict[str, float] = {
    "ice": 0.109,
    "cytoplasm": 0.26,
    "nucleoplasm": 0.28,
    "heterochromatin": 0.33,
    "nucleolus": 0.36,
    "mitochondrion": 0.37,
    "er_lumen": 0.22,
    "vesicle_lumen_min": 0.12,
    "vesicle_lumen_max": 0.34,
    "lipid_droplet": 0.62,
    "membrane": 1.3,
    "gold": 9.5,
}

#: Object classes, in the order they are drawn.
CLASSES = (
    "filopodium",
    "plasma_membrane",
    "nucleus",
    "mitochondrion",
    "er",
    "vesicle",
    "lipid_droplet",
    "fiducial",
)

BILAYER_NM = 7.0  # lipid bilayer with its proteins
PERINUCLEAR_SPACE_NM = 40.0  # distance between the inner and outer nuclear membrane
_GAP_NM = 25.0  # minimum clearance between organelles


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class CellContent:
    """What the simulated cell contains.

    Attributes
    ----------
    organelle_density : float
        Multiplies the number of mitochondria, ER tubules, vesicles and lipid droplets
        per µm³ of cytoplasm (1 = a typical mammalian cell).
    filopodia : int
        Number of filopodia (thin rods protruding from the cell edge).
    fiducials : int or None
        Number of gold fiducial beads; ``None`` draws 2–4.
    nucleus : bool
        Whether the cell has a nucleus (when it fits).
    cytoplasm_lac : float
        LAC of the cytoplasm in µm⁻¹ (cells differ in their cytoplasm density).
    texture : float
        Amplitude of the cytoplasm's smooth density variations, in µm⁻¹.
    """

    organelle_density: float = 1.0
    filopodia: int = 6
    fiducials: int | None = None
    nucleus: bool = True
    cytoplasm_lac: float = LAC_PER_UM["cytoplasm"]
    texture: float = 0.02

    def __post_init__(self):
        if not (self.organelle_density >= 0 and math.isfinite(self.organelle_density)):
            raise ValueError(f"organelle_density must be >= 0, got {self.organelle_density}")
        if self.filopodia < 0:
            raise ValueError(f"filopodia must be >= 0, got {self.filopodia}")
        if self.fiducials is not None and self.fiducials < 0:
            raise ValueError(f"fiducials must be >= 0, got {self.fiducials}")
        if not self.cytoplasm_lac > LAC_PER_UM["ice"] * 0.5:
            raise ValueError(f"cytoplasm_lac must be a positive LAC, got {self.cytoplasm_lac}")


@dataclass(frozen=True)
class Acquisition:
    """How the tilt series is recorded and reconstructed.

    Attributes
    ----------
    tilt_max_deg : float
        Tilt range ±tilt_max_deg about the y axis (65 by default; 90 = no missing wedge).
    tilt_step_deg : float
        Angular step (1° by default).
    blur_fwhm_nm : float
        Full width at half maximum of the zone plate's Gaussian point-spread function
        (25 nm; 40 nm is like Diamond B24). 0 disables it.
    depth_of_focus_nm : float or None
        If set, the blur grows with the distance t from the focal plane (the slab's
        mid-plane) along the beam: extra Gaussian sigma ``sigma0 * |t| / depth_of_focus``.
    dose : float
        Incident photons per detector pixel per projection (Poisson noise);
        ``inf`` for noise-free data.
    jitter_px : float
        Standard deviation (pixels) of random per-projection shifts in y and x that the
        reconstruction does not correct (residual misalignment).
    reconstruction : {"sirt", "fbp"}
        Reconstruction algorithm.
    sirt_iterations : int
        SIRT iterations.
    """

    tilt_max_deg: float = 65.0
    tilt_step_deg: float = 1.0
    blur_fwhm_nm: float = 25.0
    depth_of_focus_nm: float | None = None
    dose: float = 2000.0
    jitter_px: float = 0.0
    reconstruction: Literal["sirt", "fbp"] = "sirt"
    sirt_iterations: int = 30

    def __post_init__(self):
        if not 0 < self.tilt_max_deg <= 90:
            raise ValueError(f"tilt_max_deg must be in (0, 90], got {self.tilt_max_deg}")
        if not 0 < self.tilt_step_deg <= self.tilt_max_deg:
            raise ValueError(f"tilt_step_deg must be in (0, tilt_max], got {self.tilt_step_deg}")
        if not (self.blur_fwhm_nm >= 0 and math.isfinite(self.blur_fwhm_nm)):
            raise ValueError(f"blur_fwhm_nm must be >= 0, got {self.blur_fwhm_nm}")
        if self.depth_of_focus_nm is not None and not self.depth_of_focus_nm > 0:
            raise ValueError(f"depth_of_focus_nm must be > 0, got {self.depth_of_focus_nm}")
        if not self.dose > 0:
            raise ValueError(f"dose must be > 0 photons per pixel, got {self.dose}")
        if not (self.jitter_px >= 0 and math.isfinite(self.jitter_px)):
            raise ValueError(f"jitter_px must be >= 0, got {self.jitter_px}")
        if self.reconstruction not in ("sirt", "fbp"):
            raise ValueError(f"reconstruction must be 'sirt' or 'fbp', got {self.reconstruction!r}")
        if self.sirt_iterations < 1:
            raise ValueError(f"sirt_iterations must be >= 1, got {self.sirt_iterations}")


@dataclass(frozen=True)
class Phantom:
    """The simulated specimen and its ground truth.

    Attributes
    ----------
    lac : (Z, Y, X) ndarray of float32
        Linear absorption coefficient in µm⁻¹.
    membranes : (Z, Y, X) ndarray of bool
        2–3 voxel shells on every membranous boundary.
    objects : (Z, Y, X) ndarray of uint16
        Filled instance labels; a voxel carries the label of the innermost object
        containing it (a mitochondrion's voxels are not the cell's).
    table : pandas.DataFrame
        One row per label: ``label``, ``class``, ``parent`` (label of the enclosing
        object, 0 for none) and the analytic geometry in nm (see docs/simulator.md).
        ``volume_nm3`` and ``surface_area_nm2`` are those of the object's closed surface,
        so they compare with the voxels of the label *and its descendants*.
    voxel_size_nm : float
    """

    lac: np.ndarray
    membranes: np.ndarray
    objects: np.ndarray
    table: pd.DataFrame
    voxel_size_nm: float


@dataclass(frozen=True)
class TiltSeries:
    """Measured line integrals ``-ln(I/I0)``, (n_angles, Y, X) float32, and their angles."""

    data: np.ndarray
    angles_deg: np.ndarray


@dataclass(frozen=True)
class Simulation:
    """Everything :func:`simulate_tomogram` makes.

    ``tomogram`` (Z, Y, X) float32 is the reconstruction in µm⁻¹; ``artifacts`` (Z, Y, X)
    bool the regions of the gold fiducials' streaks; the rest as in :class:`Phantom`.
    """

    tomogram: np.ndarray
    phantom: Phantom
    artifacts: np.ndarray
    tilt_series: TiltSeries
    acquisition: Acquisition
    content: CellContent

    @property
    def membranes(self) -> np.ndarray:
        return self.phantom.membranes

    @property
    def objects(self) -> np.ndarray:
        return self.phantom.objects

    @property
    def table(self):
        return self.phantom.table

    @property
    def voxel_size_nm(self) -> float:
        return self.phantom.voxel_size_nm


# --------------------------------------------------------------------------- shapes


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


class _Shape:
    """A solid with a signed distance (nm, negative inside) and a bounding box."""

    def sd(self, z, y, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Points and radii of spheres covering the shape (for collision tests)."""
        raise NotImplementedError  # pragma: no cover


@dataclass
class _Sphere(_Shape):
    c: np.ndarray
    r: float

    def sd(self, z, y, x):
        return np.sqrt((z - self.c[0]) ** 2 + (y - self.c[1]) ** 2 + (x - self.c[2]) ** 2) - self.r

    def bounds(self):
        return self.c - self.r, self.c + self.r

    def spheres(self):
        return self.c[None], np.array([self.r])


@dataclass
class _Ellipsoid(_Shape):
    c: np.ndarray
    axes: np.ndarray  # semi-axes (a, b, c) along the columns of rot
    rot: np.ndarray  # 3x3, columns are the axis directions in (z, y, x)

    def _local(self, z, y, x):
        d = (z - self.c[0], y - self.c[1], x - self.c[2])
        return [
            d[0] * self.rot[0, i] + d[1] * self.rot[1, i] + d[2] * self.rot[2, i] for i in range(3)
        ]

    def sd(self, z, y, x):
        q = self._local(z, y, x)
        k0 = np.sqrt(sum((qi / a) ** 2 for qi, a in zip(q, self.axes, strict=True)))
        k1 = np.sqrt(sum((qi / a**2) ** 2 for qi, a in zip(q, self.axes, strict=True)))
        # Quilez's first-order distance: exact sign, accurate near the surface.
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)

    def bounds(self):
        half = np.sqrt(((self.rot * self.axes[None, :]) ** 2).sum(axis=1))
        return self.c - half, self.c + half

    def spheres(self):
        r = float(self.axes.min())
        n = math.ceil(self.axes.max() / max(r, 1e-9)) + 1
        pts, rad = [self.c], [r]
        i = int(np.argmax(self.axes))
        for s in np.linspace(-1, 1, 2 * n + 1):
            scale = math.sqrt(max(0.0, 1 - s * s))
            p = self.c + self.rot[:, i] * s * (self.axes[i] - r)
            pts.append(p)
            rad.append(max(r, float(np.sort(self.axes)[1]) * scale))
        return np.array(pts), np.array(rad)


@dataclass
class _RoundedDisc(_Shape):
    """A flat disc of radius ``R`` (normal along z) dilated by a ball of radius ``rho``."""

    c: np.ndarray
    R: float
    rho: float

    def sd(self, z, y, x):
        rxy = np.sqrt((y - self.c[1]) ** 2 + (x - self.c[2]) ** 2)
        return np.sqrt(np.maximum(rxy - self.R, 0.0) ** 2 + (z - self.c[0]) ** 2) - self.rho

    def bounds(self):
        h = np.array([self.rho, self.R + self.rho, self.R + self.rho])
        return self.c - h, self.c + h

    @property
    def volume(self) -> float:
        R, r = self.R, self.rho
        return 2 * math.pi * r * R * R + math.pi**2 * r * r * R + 4 / 3 * math.pi * r**3

    @property
    def area(self) -> float:
        R, r = self.R, self.rho
        return 2 * math.pi * R * R + 2 * math.pi**2 * r * R + 4 * math.pi * r * r


@dataclass
class _Tube(_Shape):
    """Union of capsules along a polyline (a possibly bent rod with rounded ends)."""

    pts: np.ndarray  # (N, 3)
    r: float
    curvature: float = 0.0  # 1/nm, of the arc the polyline follows

    def _segment_sd(self, p0, p1, z, y, x):
        d = p1 - p0
        dd = float(d @ d)
        wz, wy, wx = z - p0[0], y - p0[1], x - p0[2]
        t = np.clip((wz * d[0] + wy * d[1] + wx * d[2]) / dd, 0.0, 1.0)
        return np.sqrt((wz - t * d[0]) ** 2 + (wy - t * d[1]) ** 2 + (wx - t * d[2]) ** 2) - self.r

    def sd(self, z, y, x):
        out = None
        for p0, p1 in zip(self.pts[:-1], self.pts[1:], strict=True):
            s = self._segment_sd(p0, p1, z, y, x)
            out = s if out is None else np.minimum(out, s)
        return out

    def bounds(self):
        return self.pts.min(axis=0) - self.r, self.pts.max(axis=0) + self.r

    def spheres(self):
        # points every r/2 along the centreline
        pts = [self.pts[0]]
        for p0, p1 in zip(self.pts[:-1], self.pts[1:], strict=True):
            n = max(1, math.ceil(np.linalg.norm(p1 - p0) / (0.5 * self.r)))
            for s in np.linspace(0, 1, n + 1)[1:]:
                pts.append(p0 + s * (p1 - p0))
        pts = np.array(pts)
        return pts, np.full(len(pts), self.r)

    def pts_after(self, distance: float) -> np.ndarray:
        """Indices of the polyline points more than ``distance`` along it from the start."""
        along = np.concatenate(
            [[0.0], np.cumsum(np.linalg.norm(np.diff(self.pts, axis=0), axis=1))]
        )
        return np.flatnonzero(along > distance)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.pts, axis=0), axis=1).sum())

    def centroid(self) -> np.ndarray:
        seg = np.diff(self.pts, axis=0)
        w = np.linalg.norm(seg, axis=1)
        mid = 0.5 * (self.pts[:-1] + self.pts[1:])
        return (mid * w[:, None]).sum(axis=0) / w.sum()


def _arc(start, direction, bend_axis, length, curvature, step) -> np.ndarray:
    """Points along a circular arc (straight line for curvature 0) of a given length."""
    n = max(1, math.ceil(length / step))
    s = np.linspace(0.0, length, n + 1)
    t0 = _unit(direction)
    if curvature <= 1e-12:
        return start[None] + s[:, None] * t0[None]
    b = _unit(np.cross(t0, bend_axis))  # direction towards the centre of curvature
    radius = 1.0 / curvature
    ang = s * curvature
    return (
        start[None]
        + radius * np.sin(ang)[:, None] * t0[None]
        + radius * (1 - np.cos(ang))[:, None] * b[None]
    )


# --------------------------------------------------------------------------- the phantom


@dataclass
class _Object:
    label: int
    cls: str
    shape: _Shape
    parent: int
    lac: float
    membrane: str | None  # "bilayer", "double", "monolayer" or None
    row: dict = field(default_factory=dict)


def _random_direction(rng, flatten: float = 1.0) -> np.ndarray:
    v = rng.normal(size=3)
    v[0] *= flatten
    return _unit(v)


class _Placer:
    """Rejection sampling of non-overlapping organelles inside the cytoplasm."""

    def __init__(self, cell: _RoundedDisc, nucleus: _Shape | None):
        self.cell = cell
        self.nucleus = nucleus
        self.pts = np.zeros((0, 3))
        self.rad = np.zeros(0)

    def fits(self, shape: _Shape) -> bool:
        p, r = shape.spheres()
        if np.any(self.cell.sd(p[:, 0], p[:, 1], p[:, 2]) > -(r + _GAP_NM)):
            return False
        if self.nucleus is not None and np.any(
            self.nucleus.sd(p[:, 0], p[:, 1], p[:, 2]) < r + _GAP_NM
        ):
            return False
        if len(self.pts):
            d = np.linalg.norm(p[:, None, :] - self.pts[None, :, :], axis=2)
            if np.any(d < r[:, None] + self.rad[None, :] + _GAP_NM):
                return False
        return True

    def add(self, shape: _Shape) -> None:
        p, r = shape.spheres()
        self.pts = np.concatenate([self.pts, p])
        self.rad = np.concatenate([self.rad, r])


def _geometry_row(shape: _Shape) -> dict:
    """Analytic geometry columns of an object, in nm."""
    row: dict = {}
    if isinstance(shape, _Sphere):
        c, r = shape.c, shape.r
        row.update(
            shape="sphere",
            radius_nm=r,
            semi_axis_a_nm=r,
            semi_axis_b_nm=r,
            semi_axis_c_nm=r,
            volume_nm3=4 / 3 * math.pi * r**3,
            surface_area_nm2=4 * math.pi * r * r,
        )
        axis = np.array([1.0, 0.0, 0.0])
    elif isinstance(shape, _Ellipsoid):
        c = shape.c
        order = np.argsort(shape.axes)[::-1]
        a, b, cc = (float(shape.axes[i]) for i in order)
        axis = shape.rot[:, order[0]]
        row.update(
            shape="ellipsoid",
            semi_axis_a_nm=a,
            semi_axis_b_nm=b,
            semi_axis_c_nm=cc,
            radius_nm=cc,
            length_nm=2 * a,
            volume_nm3=4 / 3 * math.pi * a * b * cc,
            surface_area_nm2=ellipsoid_surface_area(a, b, cc),
        )
    elif isinstance(shape, _RoundedDisc):
        c = shape.c
        axis = np.array([1.0, 0.0, 0.0])
        row.update(
            shape="rounded_disc",
            radius_nm=shape.R + shape.rho,
            semi_axis_a_nm=shape.R + shape.rho,
            semi_axis_b_nm=shape.R + shape.rho,
            semi_axis_c_nm=shape.rho,
            volume_nm3=shape.volume,
            surface_area_nm2=shape.area,
        )
    else:  # tube
        assert isinstance(shape, _Tube)
        c = shape.centroid()
        axis = _unit(shape.pts[-1] - shape.pts[0])
        L, r = shape.length, shape.r
        row.update(
            shape="tube",
            radius_nm=r,
            diameter_nm=2 * r,
            length_nm=L + 2 * r,
            centreline_length_nm=L,
            curvature_per_um=shape.curvature * 1000,
            volume_nm3=math.pi * r * r * L + 4 / 3 * math.pi * r**3,
            surface_area_nm2=2 * math.pi * r * L + 4 * math.pi * r * r,
        )
    row.update(
        centre_z_nm=float(c[0]),
        centre_y_nm=float(c[1]),
        centre_x_nm=float(c[2]),
        orientation_z=float(axis[0]),
        orientation_y=float(axis[1]),
        orientation_x=float(axis[2]),
    )
    return row


def _volume_box(shape_zyx, v) -> tuple[np.ndarray, np.ndarray]:
    lo = np.zeros(3)
    hi = (np.asarray(shape_zyx, dtype=float) - 1) * v
    return lo, hi


def _inside_volume(shape: _Shape, shape_zyx, v, margin: float) -> bool:
    lo, hi = shape.bounds()
    vlo, vhi = _volume_box(shape_zyx, v)
    return bool(np.all(lo >= vlo + margin) and np.all(hi <= vhi - margin))


def _build_cell(rng, shape_zyx, v, content: CellContent) -> list[_Object]:
    """Draw the objects of one cell (geometry only)."""
    extent = np.array(shape_zyx, dtype=float) * v
    centre = (np.array(shape_zyx, dtype=float) - 1) * v / 2
    lateral = min(extent[1], extent[2])
    rho = min(0.5 * extent[0] * rng.uniform(0.6, 0.8), 2000.0)
    outer = lateral * rng.uniform(0.22, 0.28)
    R = max(outer - rho, 0.2 * outer)
    rho = outer - R if outer - R < rho else rho
    c = centre + np.array(
        [0.0, rng.uniform(-0.04, 0.04) * extent[1], rng.uniform(-0.04, 0.04) * extent[2]]
    )
    cell = _RoundedDisc(c=c, R=R, rho=rho)
    objects: list[_Object] = []
    label = 1

    def new(cls, shape, parent, lac, membrane):
        nonlocal label
        obj = _Object(label, cls, shape, parent, lac, membrane)
        obj.row = {
            "label": label,
            "class": cls,
            "parent": parent,
            **_geometry_row(shape),
            "lac_per_um": lac,
        }
        objects.append(obj)
        label += 1
        return obj

    # Filopodia: bent rods from points on the rim, initially along the surface normal.
    filopodia = []
    for _ in range(content.filopodia):
        for _attempt in range(40):
            r = rng.uniform(40.0, 90.0)
            phi = rng.uniform(0, 2 * math.pi)
            elev = rng.uniform(-0.5, 0.5)  # angle on the rim's half-circle cross-section
            radial = np.array([0.0, math.sin(phi), math.cos(phi)])
            normal = _unit(np.array([math.sin(elev), 0, 0]) + math.cos(elev) * radial)
            base = c + (R + rho * math.cos(elev)) * radial + np.array([rho * math.sin(elev), 0, 0])
            length = rng.uniform(300.0, 2000.0)
            bent = rng.random() < 0.5
            curvature = rng.uniform(0.3, 1.5) / 1000.0 if bent else 0.0
            inset = r * r / rho + v  # start inside the cell so the rod joins it
            start = base - normal * inset
            pts = _arc(
                start,
                normal,
                _random_direction(rng),
                length + inset,
                curvature,
                step=min(2 * v, 40.0),
            )
            tube = _Tube(pts=pts, r=r, curvature=curvature)
            if not _inside_volume(tube, shape_zyx, v, margin=2 * v):
                continue
            # the rod must leave the cell and not come back, nor touch other rods
            tail = pts[pts.shape[0] // 4 :] if pts.shape[0] > 4 else pts[-1:]
            beyond = pts[np.einsum("ij,j->i", pts - base, normal) > 2 * r]
            if len(beyond) and np.any(cell.sd(*beyond.T) < r + _GAP_NM):
                continue
            if np.any(cell.sd(*tail.T) < 0):
                continue
            if any(
                np.min(np.linalg.norm(pts[:, None] - f.pts[None], axis=2)) < 2.5 * max(r, f.r)
                for f in filopodia
            ):
                continue
            filopodia.append(tube)
            break
    cell_obj = new("plasma_membrane", cell, 0, content.cytoplasm_lac, "bilayer")
    for tube in filopodia:
        obj = new("filopodium", tube, 0, content.cytoplasm_lac, "bilayer")
        # geometry from the cell surface to the tip: the part of the rod outside the cell
        base_t = tube.r * tube.r / cell.rho + v  # inset length along the initial direction
        L = tube.length - base_t
        r = tube.r
        # the cut by the curved cell surface adds the sagitta volume (curvatures 1/rho, 1/(R+rho))
        k = 1 / cell.rho + 1 / (cell.R + cell.rho)
        base = tube.pts[0] + _unit(tube.pts[1] - tube.pts[0]) * base_t
        tip = tube.pts[-1] + _unit(tube.pts[-1] - tube.pts[-2]) * r
        outside = _Tube(pts=np.concatenate([base[None], tube.pts[tube.pts_after(base_t)]]), r=r)
        centre = outside.centroid()
        obj.row.update(
            centre_z_nm=centre[0],
            centre_y_nm=centre[1],
            centre_x_nm=centre[2],
            length_nm=L + r,
            centreline_length_nm=L,
            volume_nm3=math.pi * r * r * L + 2 / 3 * math.pi * r**3 + math.pi * r**4 / 8 * k,
            surface_area_nm2=2 * math.pi * r * L
            + 3 * math.pi * r * r
            + 2 * math.pi * r * (r * r / 4) * k,
            base_z_nm=base[0],
            base_y_nm=base[1],
            base_x_nm=base[2],
            tip_z_nm=tip[0],
            tip_y_nm=tip[1],
            tip_x_nm=tip[2],
            orientation_z=_unit(tip - base)[0],
            orientation_y=_unit(tip - base)[1],
            orientation_x=_unit(tip - base)[2],
        )
    cell_label = cell_obj.label

    # Nucleus: flattened ellipsoid with a double envelope.
    nucleus_shape = None
    if content.nucleus:
        a_z = rho * rng.uniform(0.55, 0.7)
        a_xy = R * rng.uniform(0.45, 0.6) + rho * 0.2
        if a_z > 100 and a_xy > 200:
            off = rng.normal(size=2) * 0.1 * R
            nc = c + np.array([0.0, off[0], off[1]])
            rot = np.eye(3)
            ang = rng.uniform(0, math.pi)
            rot[1:, 1:] = [[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]
            axes = np.array([a_z, a_xy * rng.uniform(0.8, 1.0), a_xy])
            shape = _Ellipsoid(c=nc, axes=axes, rot=rot)
            if np.all(cell.sd(*shape.spheres()[0].T) < -(a_z * 0.2)):
                nucleus_shape = shape
                new("nucleus", shape, cell_label, LAC_PER_UM["nucleoplasm"], "double")
    placer = _Placer(cell, nucleus_shape)

    cyto_um3 = cell.volume / 1e9 - (
        4 / 3 * math.pi * np.prod(nucleus_shape.axes) / 1e9 if nucleus_shape is not None else 0
    )
    density = content.organelle_density

    def count(per_um3, cap):
        return int(min(cap, rng.poisson(per_um3 * density * cyto_um3)))

    def place(make, n, attempts=60):
        for _ in range(n):
            for _a in range(attempts):
                shape = make()
                if shape is not None and placer.fits(shape):
                    placer.add(shape)
                    yield shape
                    break

    def random_point(margin):
        rr = (R + rho - margin) * math.sqrt(rng.random())
        phi = rng.uniform(0, 2 * math.pi)
        zz = rng.uniform(-1, 1) * max(rho - margin, 0)
        return c + np.array([zz, rr * math.sin(phi), rr * math.cos(phi)])

    # Mitochondria: capsules (tubes with one segment), some bent, with cristae.
    def make_mito():
        r = min(rng.uniform(90.0, 170.0), 0.7 * rho)
        if r < 40:
            return None
        L = rng.uniform(300.0, 1600.0)
        d = _random_direction(rng, flatten=0.2)
        curvature = rng.uniform(0, 1.0) / 1000.0
        start = random_point(r + _GAP_NM)
        return _Tube(
            pts=_arc(start, d, _random_direction(rng, 0.3), L, curvature, 40.0),
            r=r,
            curvature=curvature,
        )

    for shape in place(make_mito, max(1, count(6.0, 400))):
        new("mitochondrion", shape, cell_label, LAC_PER_UM["mitochondrion"], "bilayer")

    def make_er():
        r = rng.uniform(25.0, 45.0)
        L = rng.uniform(300.0, 1500.0)
        d = _random_direction(rng, flatten=0.3)
        curvature = rng.uniform(0.5, 3.0) / 1000.0
        return _Tube(
            pts=_arc(random_point(r + _GAP_NM), d, _random_direction(rng), L, curvature, 30.0),
            r=r,
            curvature=curvature,
        )

    for shape in place(make_er, max(1, count(10.0, 600))):
        new("er", shape, cell_label, LAC_PER_UM["er_lumen"], "bilayer")

    def make_sphere(rmin, rmax):
        def make():
            r = min(rng.uniform(rmin, rmax), 0.8 * rho)
            if r < rmin * 0.8:
                return None
            return _Sphere(c=random_point(r + _GAP_NM), r=r)

        return make

    for shape in place(make_sphere(50.0, 150.0), max(1, count(40.0, 2000))):
        lac = rng.uniform(LAC_PER_UM["vesicle_lumen_min"], LAC_PER_UM["vesicle_lumen_max"])
        new("vesicle", shape, cell_label, float(lac), "bilayer")
    for shape in place(make_sphere(80.0, 250.0), max(1, count(5.0, 300))):
        new("lipid_droplet", shape, cell_label, LAC_PER_UM["lipid_droplet"], "monolayer")

    # Gold fiducials: in the ice beside the cell (100–250 nm beads).
    n_gold = int(rng.integers(2, 5)) if content.fiducials is None else content.fiducials
    gold: list[_Sphere] = []
    for _ in range(n_gold):
        for _a in range(200):
            r = min(rng.uniform(50.0, 125.0), (extent.min() - 6 * v) / 2)
            if r < 25.0:
                break
            p = np.array([rng.uniform(r + 2 * v, extent[i] - v - r - 2 * v) for i in range(3)])
            s = _Sphere(c=p, r=r)
            if cell.sd(*p) < r + _GAP_NM or not _inside_volume(s, shape_zyx, v, 2 * v):
                continue
            if any(np.linalg.norm(p - g.c) < r + g.r + 4 * _GAP_NM for g in gold):
                continue
            if any(
                np.min(np.linalg.norm(f.pts - p, axis=1)) < r + f.r + _GAP_NM for f in filopodia
            ):
                continue
            gold.append(s)
            new("fiducial", s, 0, LAC_PER_UM["gold"], None)
            break
    return objects


def _box(shape: _Shape, shape_zyx, v, pad: float):
    """Index slices of the shape's bounding box grown by ``pad`` nm, or None if outside."""
    lo, hi = shape.bounds()
    i0 = np.maximum(np.floor((lo - pad) / v).astype(int), 0)
    i1 = np.minimum(np.ceil((hi + pad) / v).astype(int) + 1, np.asarray(shape_zyx))
    if np.any(i1 <= i0):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(i0, i1, strict=True))


def _coords(box, v):
    z = (np.arange(box[0].start, box[0].stop, dtype=np.float32) * v)[:, None, None]
    y = (np.arange(box[1].start, box[1].stop, dtype=np.float32) * v)[None, :, None]
    x = (np.arange(box[2].start, box[2].stop, dtype=np.float32) * v)[None, None, :]
    return z, y, x


def _tube_sd(tube: _Tube, box, v, pad):
    """Signed distance of a tube over a box, computed segment by segment in sub-boxes."""
    shape = tuple(s.stop - s.start for s in box)
    out = np.full(shape, np.float32(1e9), dtype=np.float32)
    origin = np.array([s.start for s in box])
    for p0, p1 in zip(tube.pts[:-1], tube.pts[1:], strict=True):
        seg = _Tube(pts=np.stack([p0, p1]), r=tube.r)
        sub = _box(seg, np.array(origin) + shape, v, pad)
        if sub is None:
            continue
        sub = tuple(slice(max(s.start, o), s.stop) for s, o in zip(sub, origin, strict=True))
        if any(s.stop <= s.start for s in sub):
            continue
        local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(sub, origin, strict=True))
        np.minimum(out[local], seg.sd(*_coords(sub, v)), out=out[local])
    return out


def _shape_sd(shape: _Shape, box, v, pad):
    if isinstance(shape, _Tube):
        return _tube_sd(shape, box, v, pad)
    return shape.sd(*_coords(box, v)).astype(np.float32, copy=False)


def _occupancy(sd, v):
    """Fraction of a voxel inside the surface (linear partial-volume model)."""
    return np.clip(0.5 - sd / v, 0.0, 1.0)


def _shell(sd, v, thickness):
    """Fraction of a voxel covered by a layer of ``thickness`` centred on the surface."""
    lo = np.maximum(sd - v / 2, -thickness / 2)
    hi = np.minimum(sd + v / 2, thickness / 2)
    return np.clip(hi - lo, 0.0, None) / v


def make_phantom(
    shape: Sequence[int] = (64, 256, 256),
    voxel_size_nm: float = 9.8,
    *,
    seed: int | np.random.Generator | None = 0,
    content: CellContent | None = None,
) -> Phantom:
    """Build a cell in vitreous ice with its ground truth.

    Parameters
    ----------
    shape : (Z, Y, X) ints
        Grid size in voxels.
    voxel_size_nm : float
        Isotropic voxel size in nm (9.8 nm, the reference paper's, by default).
    seed : int or numpy Generator
        Randomness; the same seed gives the same phantom.
    content : CellContent, optional
        What the cell contains.

    Returns
    -------
    Phantom

    Examples
    --------
    >>> ph = make_phantom((32, 96, 96), 9.8, seed=1)
    >>> ph.lac.dtype, ph.objects.dtype, bool(ph.membranes.any())
    (dtype('float32'), dtype('uint16'), True)
    """
    import pandas as pd
    from scipy import ndimage

    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes >= 8 voxels (z, y, x), got {shape}")
    v = float(voxel_size_nm)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"voxel size must be a positive number of nm, got {voxel_size_nm}")
    content = content or CellContent()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    objects = _build_cell(rng, shape, v, content)
    if len(objects) >= 2**16:
        raise ValueError("too many objects for uint16 labels; lower the organelle density")

    ice = LAC_PER_UM["ice"]
    lac = np.full(shape, ice, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    membranes = np.zeros(shape, dtype=bool)
    h = v  # membrane shell: voxel centres within one voxel of the surface (2-3 voxels)
    pad = 2 * v
    d_membrane = LAC_PER_UM["membrane"] - content.cytoplasm_lac

    by_class = {cls: [o for o in objects if o.cls == cls] for cls in CLASSES}
    cell = by_class["plasma_membrane"][0] if by_class["plasma_membrane"] else None

    # The cell body and its filopodia form one compound surface, drawn in z blocks so
    # that the temporaries stay small for large volumes.
    if cell is not None:
        texture = None
        if content.texture > 0:
            texture = rng.standard_normal(shape, dtype=np.float32)
            ndimage.gaussian_filter(texture, 1.5, output=texture, mode="reflect", truncate=3.0)
            texture *= np.float32(content.texture / max(float(texture.std()), 1e-6))
        filopodia = [(o, _box(o.shape, shape, v, pad)) for o in by_class["filopodium"]]
        for z0 in range(0, shape[0], 16):
            z1 = min(z0 + 16, shape[0])
            blk = (slice(z0, z1), slice(0, shape[1]), slice(0, shape[2]))
            sd_body = cell.shape.sd(*_coords(blk, v)).astype(np.float32)
            sd_union = sd_body.copy()
            for obj, box in filopodia:
                if box is None or box[0].start >= z1 or box[0].stop <= z0:
                    continue
                sub = (slice(max(box[0].start, z0), min(box[0].stop, z1)), box[1], box[2])
                local = (slice(sub[0].start - z0, sub[0].stop - z0), box[1], box[2])
                sd_f = _tube_sd(obj.shape, sub, v, pad)
                labels[sub][(sd_f <= 0) & (sd_body[local] > 0)] = obj.label
                np.minimum(sd_union[local], sd_f, out=sd_union[local])
            labels[blk][sd_body <= 0] = cell.label
            occ = _occupancy(sd_union, v)
            fill = np.float32(content.cytoplasm_lac - ice)
            if texture is not None:
                fill = fill + texture[blk]
            lac[blk] += fill * occ
            membranes[blk] |= np.abs(sd_union) <= h
            lac[blk] += np.float32(d_membrane) * _shell(sd_union, v, BILAYER_NM)
        del texture

    for cls in ("nucleus", "mitochondrion", "er", "vesicle", "lipid_droplet", "fiducial"):
        for obj in by_class[cls]:
            box = _box(obj.shape, shape, v, pad)
            if box is None:
                continue
            sd = _shape_sd(obj.shape, box, v, pad)
            occ = _occupancy(sd, v)
            value = _interior_lac(obj, box, v, sd, rng)
            lac[box] = lac[box] * (1 - occ) + value * occ
            labels[box][sd <= 0] = obj.label
            if obj.membrane is None:
                continue
            membranes[box] |= np.abs(sd) <= h
            thick = BILAYER_NM / 2 if obj.membrane == "monolayer" else BILAYER_NM
            lac[box] += np.float32(d_membrane) * _shell(sd, v, thick)
            if obj.membrane == "double":
                inner = sd + PERINUCLEAR_SPACE_NM
                membranes[box] |= np.abs(inner) <= h
                lac[box] += np.float32(d_membrane) * _shell(inner, v, BILAYER_NM)

    table = pd.DataFrame([o.row for o in objects])
    if len(table):
        first = ["label", "class", "parent", "shape"]
        table = table[first + [c for c in table.columns if c not in first]]
        table["touches_border"] = False
    else:
        table = pd.DataFrame(columns=["label", "class", "parent", "shape"])
    return Phantom(lac=lac, membranes=membranes, objects=labels, table=table, voxel_size_nm=v)


def _interior_lac(obj: _Object, box, v, sd, rng):
    """The LAC field inside an object (with internal structure where it has some)."""
    if obj.cls == "nucleus":
        # heterochromatin along the envelope, a nucleolus inside
        value = LAC_PER_UM["nucleoplasm"] + (
            LAC_PER_UM["heterochromatin"] - LAC_PER_UM["nucleoplasm"]
        ) * np.exp(np.minimum(sd + PERINUCLEAR_SPACE_NM, 0) / 60.0)
        ell = obj.shape
        nuc = _Sphere(
            c=ell.c + ell.rot @ (rng.uniform(-0.3, 0.3, 3) * ell.axes),
            r=0.3 * float(ell.axes.min()),
        )
        sd_n = nuc.sd(*_coords(box, v))
        return (value + (LAC_PER_UM["nucleolus"] - value) * _occupancy(sd_n, v)).astype(np.float32)
    if obj.cls == "mitochondrion":
        # cristae: density bands across the long axis (about 70 nm apart)
        tube = obj.shape
        z, y, x = _coords(box, v)
        axis = _unit(tube.pts[-1] - tube.pts[0])
        s = (
            (z - tube.pts[0][0]) * axis[0]
            + (y - tube.pts[0][1]) * axis[1]
            + (x - tube.pts[0][2]) * axis[2]
        )
        return (obj.lac + 0.05 * np.cos(2 * math.pi * s / 70.0)).astype(np.float32)
    return np.float32(obj.lac)


# --------------------------------------------------------------------------- projector


def tilt_angles(tilt_max_deg: float = 65.0, tilt_step_deg: float = 1.0) -> np.ndarray:
    """Tilt angles in degrees, symmetric about 0: -max, -max + step, ..., max."""
    n = math.floor(tilt_max_deg / tilt_step_deg + 1e-9)
    return np.arange(-n, n + 1) * float(tilt_step_deg)


def _grid_width(Z: int, X: int, angles_deg: np.ndarray) -> int:
    """Width (voxels) of the reconstruction grid that holds every ray of the detector."""
    a = np.deg2rad(np.abs(angles_deg)).max()
    if a < math.radians(80):
        need = X / math.cos(a) + Z * math.tan(a)
    else:  # near 90°: a finite specimen block (the slab model needs an infinite one)
        need = 3 * max(X, Z)
    W = math.ceil(need) + 4
    return W + (W - X) % 2  # same parity as X keeps the field of view centred


class _Projector:
    """Joseph's projector of an x–z slice as a CSR matrix, applied with embedding_bag."""

    def __init__(self, Z: int, W: int, D: int, angles_deg: np.ndarray):
        import scipy.sparse as sp

        # Entries are generated ray by ray (row-major), so the CSR arrays are built
        # directly: per angle an (D, n_steps, 2) block of column indices and weights.
        zc, xc, uc = (Z - 1) / 2, (W - 1) / 2, (D - 1) / 2
        u = np.arange(D) - uc
        cols = []
        for a in np.deg2rad(np.asarray(angles_deg, dtype=float)):
            c, s = math.cos(a), math.sin(a)
            if abs(c) >= abs(s):  # step through z rows, interpolate along x
                zz = np.arange(Z)[None, :]
                pos = (u[:, None] + (zz - zc) * s) / c + xc
                lo = np.floor(pos).astype(np.int64)
                f = (pos - lo).astype(np.float32)
                idx = np.stack([zz * W + lo, zz * W + lo + 1], axis=2)
                ok = np.stack([(lo >= 0) & (lo < W), (lo + 1 >= 0) & (lo + 1 < W)], axis=2)
                w = np.stack([1 - f, f], axis=2) / np.float32(abs(c))
            else:  # step through x columns, interpolate along z
                xx = np.arange(W)[None, :]
                pos = ((xx - xc) * c - u[:, None]) / s + zc
                lo = np.floor(pos).astype(np.int64)
                f = (pos - lo).astype(np.float32)
                idx = np.stack([lo * W + xx, (lo + 1) * W + xx], axis=2)
                ok = np.stack([(lo >= 0) & (lo < Z), (lo + 1 >= 0) & (lo + 1 < Z)], axis=2)
                w = np.stack([1 - f, f], axis=2) / np.float32(abs(s))
            ok &= w > 0
            cols.append((idx.reshape(D, -1), ok.reshape(D, -1), w.reshape(D, -1)))
        counts = np.concatenate([m.sum(axis=1) for _, m, _ in cols])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = np.concatenate([i[m] for i, m, _ in cols])
        data = np.concatenate([w[m] for _, m, w in cols]).astype(np.float32)
        n_rays, n_vox = len(angles_deg) * D, Z * W
        A = sp.csr_matrix((data, indices, indptr), shape=(n_rays, n_vox))
        self.shape = A.shape
        self.Z, self.W, self.D = Z, W, D
        self.matrix = A
        self._fwd = self._bag(A)
        self._back = self._bag(A.T.tocsr())
        ones_v = np.ones(n_vox, dtype=np.float32)
        ones_r = np.ones(n_rays, dtype=np.float32)
        self.row_sum = np.asarray(A @ ones_v).ravel()
        self.col_sum = np.asarray(A.T @ ones_r).ravel()

    @staticmethod
    def _bag(M):
        import torch

        idx_dtype = np.int32 if M.nnz < 2**31 else np.int64
        return (
            torch.from_numpy(M.indices.astype(idx_dtype)),
            torch.from_numpy(M.indptr[:-1].astype(idx_dtype)),
            torch.from_numpy(M.data.astype(np.float32)),
        )

    @staticmethod
    def apply(bag, V):
        """Sparse matrix (as an embedding-bag triple) times a dense torch tensor."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            return F.embedding_bag(bag[0], V, bag[1], mode="sum", per_sample_weights=bag[2])

    def forward(self, V: np.ndarray) -> np.ndarray:
        """(Z·W, n) voxel columns -> (n_angles·D, n) ray sums, in voxel lengths."""
        import torch

        V = torch.from_numpy(np.ascontiguousarray(V, dtype=np.float32))
        return self.apply(self._fwd, V).numpy()

    def back(self, P: np.ndarray) -> np.ndarray:
        """The transpose: (n_angles·D, n) -> (Z·W, n)."""
        import torch

        P = torch.from_numpy(np.ascontiguousarray(P, dtype=np.float32))
        return self.apply(self._back, P).numpy()


@lru_cache(maxsize=4)
def _projector(Z: int, W: int, D: int, angles: tuple[float, ...]) -> _Projector:
    return _Projector(Z, W, D, np.asarray(angles))


def _block_rows(Z: int, W: int, n_rays: int, budget_bytes: int = 256 << 20) -> int:
    per_row = 4 * (3 * Z * W + 3 * n_rays)
    return int(max(1, min(128, budget_bytes // per_row)))


def _project(
    lac: np.ndarray,
    angles_deg: np.ndarray,
    pad_value: float,
    v_um: float,
    *,
    rows: slice | None = None,
) -> np.ndarray:
    """Line integrals (n_angles, Y, X) of a (Z, Y, X) volume padded in x with ``pad_value``.

    With ``rows``, only those z rows of the slab are projected (the rest count as empty).
    """
    Z, Y, X = lac.shape
    W = _grid_width(Z, X, angles_deg)
    op = _projector(Z, W, X, tuple(float(a) for a in angles_deg))
    left = (W - X) // 2
    out = np.empty((len(angles_deg), Y, X), dtype=np.float32)
    step = _block_rows(Z, W, op.shape[0])
    for y0 in progress(range(0, Y, step), desc="projecting", unit="block"):
        y1 = min(Y, y0 + step)
        V = np.full((Z, W, y1 - y0), pad_value, dtype=np.float32)
        V[:, left : left + X, :] = lac[:, y0:y1, :].transpose(0, 2, 1)
        if rows is not None:
            V[: rows.start] = 0
            V[rows.stop :] = 0
        P = op.forward(V.reshape(Z * W, -1)) * np.float32(v_um)
        out[:, y0:y1, :] = P.reshape(len(angles_deg), X, -1).transpose(0, 2, 1)
    return out


def _gaussian2d(img: np.ndarray, sigma_px: float) -> np.ndarray:
    from scipy import ndimage

    if sigma_px <= 0:
        return img
    return ndimage.gaussian_filter(img, (0, sigma_px, sigma_px), mode="nearest", truncate=3.0)


def acquire(
    lac: np.ndarray,
    voxel_size_nm: float,
    acquisition: Acquisition | None = None,
    *,
    seed: int | np.random.Generator | None = 0,
) -> TiltSeries:
    """Record a tilt series of a LAC volume.

    The specimen is a slab of the volume's thickness that continues in x as ice beyond
    the field of view. Each projection is ``I = PSF * (I0 exp(-∫ LAC dl))`` with Poisson
    noise at ``I0 = dose``; with a depth of focus, parts of the specimen far from the
    focal plane are blurred more (applied to the line integrals of depth bands, a
    weak-absorption approximation).

    Parameters
    ----------
    lac : (Z, Y, X) ndarray
        Linear absorption coefficients in µm⁻¹.
    voxel_size_nm : float
    acquisition : Acquisition, optional
    seed : int or numpy Generator
        Noise and jitter.

    Returns
    -------
    TiltSeries
        ``data`` (n_angles, Y, X) float32: measured ``-ln(I / I0)``.
    """
    from scipy import ndimage

    acq = acquisition or Acquisition()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    v = float(voxel_size_nm)
    angles = tilt_angles(acq.tilt_max_deg, acq.tilt_step_deg)
    ice = LAC_PER_UM["ice"]
    sigma0 = acq.blur_fwhm_nm / (2 * math.sqrt(2 * math.log(2))) / v
    if acq.depth_of_focus_nm is None:
        line = _project(lac, angles, ice, v / 1000)
    else:
        line = _project_depth_bands(lac, angles, ice, v, sigma0, acq.depth_of_focus_nm)
    intensity = np.exp(-line, dtype=np.float32)
    del line
    intensity = _gaussian2d(intensity, sigma0)
    if math.isfinite(acq.dose):
        counts = rng.poisson(intensity * np.float32(acq.dose)).astype(np.float32)
        intensity = np.maximum(counts, 0.5) / np.float32(acq.dose)
    if acq.jitter_px > 0:
        shifts = rng.normal(0, acq.jitter_px, size=(len(angles), 2))
        for k in range(len(angles)):
            intensity[k] = ndimage.shift(intensity[k], shifts[k], order=1, mode="nearest")
    data = -np.log(np.maximum(intensity, 1e-6))
    return TiltSeries(data=data.astype(np.float32, copy=False), angles_deg=angles)


def _project_depth_bands(lac, angles, pad_value, v, sigma0, dof_nm, n_bands: int = 5):
    """Projections where each depth band of the slab gets its own defocus blur.

    The bands are layers of the slab (z ranges); a layer at height t from the focal
    (mid-)plane gets an extra Gaussian sigma ``sigma0 * |t| / dof``. The lateral
    defocus of a tilted specimen (the ``x sin(angle)`` term) is neglected.
    """
    Z = lac.shape[0]
    edges = np.linspace(0, Z, n_bands + 1).round().astype(int)
    total = None
    for z0, z1 in itertools.pairwise(edges):
        if z1 <= z0:
            continue
        t_nm = abs(0.5 * (z0 + z1 - 1) - (Z - 1) / 2) * v
        band = _project(lac, angles, pad_value, v / 1000, rows=slice(int(z0), int(z1)))
        band = _gaussian2d(band, sigma0 * t_nm / dof_nm)
        total = band if total is None else total + band
    return total


# --------------------------------------------------------------------------- reconstruction


def _ramp_filter(P: np.ndarray, D: int) -> np.ndarray:
    """Ram-Lak filter (designed in the spatial domain, Kak & Slaney) with a Hann window,
    along axis 1 of (n_angles, D, n)."""
    n = max(64, int(2 ** math.ceil(math.log2(2 * D))))
    k = np.concatenate([np.arange(1, n // 2 + 1, 2), np.arange(n // 2 - 1, 0, -2)])
    h = np.zeros(n)
    h[0] = 0.25
    h[1::2] = -1 / (np.pi * k) ** 2
    filt = 2 * np.real(np.fft.fft(h))
    freq = np.fft.fftfreq(n)
    filt *= 0.5 + 0.5 * np.cos(2 * np.pi * freq)  # Hann
    padded = np.zeros((P.shape[0], n, P.shape[2]), dtype=np.float32)
    padded[:, :D] = P
    out = np.real(np.fft.ifft(np.fft.fft(padded, axis=1) * filt[None, :, None], axis=1))
    return out[:, :D].astype(np.float32)


def reconstruct(
    tilt_series: np.ndarray,
    angles_deg: Sequence[float],
    thickness: int,
    voxel_size_nm: float,
    *,
    method: Literal["sirt", "fbp"] = "sirt",
    iterations: int = 30,
) -> np.ndarray:
    """Reconstruct a tomogram slice-wise in x–z planes (tilt axis y).

    Parameters
    ----------
    tilt_series : (n_angles, Y, X) ndarray
        Line integrals ``-ln(I / I0)``.
    angles_deg : sequence of float
        Tilt angles in degrees.
    thickness : int
        Z, the number of slices to reconstruct (the specimen slab's thickness).
    voxel_size_nm : float
    method : {"sirt", "fbp"}
    iterations : int
        SIRT iterations.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        LAC in µm⁻¹. The grid is wider than the field of view (it holds every ray),
        then cropped to the X columns the detector sees at 0°.
    """
    if method not in ("sirt", "fbp"):
        raise ValueError(f"method must be 'sirt' or 'fbp', got {method!r}")
    data = np.asarray(tilt_series, dtype=np.float32)
    angles = np.asarray(angles_deg, dtype=float)
    n_a, Y, X = data.shape
    if n_a != len(angles):
        raise ValueError(f"{n_a} projections but {len(angles)} angles")
    Z = int(thickness)
    W = _grid_width(Z, X, angles)
    op = _projector(Z, W, X, tuple(float(a) for a in angles))
    left = (W - X) // 2
    v_um = float(voxel_size_nm) / 1000
    import torch

    out = np.empty((Z, Y, X), dtype=np.float32)
    R = torch.from_numpy(
        np.where(op.row_sum > 0, 1 / np.maximum(op.row_sum, 1e-12), 0).astype(np.float32)
    )[:, None]
    C = torch.from_numpy(
        np.where(op.col_sum > 0, 1 / np.maximum(op.col_sum, 1e-12), 0).astype(np.float32)
    )[:, None]
    step = _block_rows(Z, W, op.shape[0])
    bar = progress(total=Y, desc=f"reconstructing ({method})", unit="row")
    for y0 in range(0, Y, step):
        y1 = min(Y, y0 + step)
        b = np.ascontiguousarray(data[:, y0:y1, :].transpose(0, 2, 1)).reshape(n_a * X, -1)
        if method == "fbp":
            q = _ramp_filter(b.reshape(n_a, X, -1), X).reshape(n_a * X, -1)
            d_theta = math.radians(abs(angles[1] - angles[0])) if n_a > 1 else 1.0
            x = torch.from_numpy(op.back(q) * np.float32(d_theta))
        else:
            bt = torch.from_numpy(b)
            x = torch.zeros((Z * W, y1 - y0), dtype=torch.float32)
            with torch.no_grad():
                for _ in range(iterations):
                    r = bt - op.apply(op._fwd, x)
                    r.mul_(R)
                    x.addcmul_(op.apply(op._back, r), C)
        vol = x.numpy().reshape(Z, W, -1)[:, left : left + X, :] / np.float32(v_um)
        out[:, y0:y1, :] = vol.transpose(0, 2, 1)
        bar.update(y1 - y0)
    bar.close()
    return out


# --------------------------------------------------------------------------- simulation


def artifact_mask(
    phantom: Phantom,
    acquisition: Acquisition,
    *,
    threshold: float = 0.05,
    grow_voxels: int = 2,
) -> np.ndarray:
    """Regions where the gold fiducials' reconstruction artifacts (streaks) lie.

    The reconstruction is linear in the data (SIRT from zero, or FBP), so the streaks
    of the beads are the reconstruction of the beads' own noise-free projections minus
    the beads. Voxels where that difference exceeds ``threshold`` µm⁻¹ (about a third
    of the membrane contrast), and the beads grown by ``grow_voxels``, are artifacts.
    Only the y rows holding beads are reconstructed.
    """
    from scipy import ndimage

    table = phantom.table
    gold_labels = table.loc[table["class"] == "fiducial", "label"].to_numpy() if len(table) else []
    shape = phantom.lac.shape
    mask = np.zeros(shape, dtype=bool)
    if len(gold_labels) == 0:
        return mask
    gold = np.isin(phantom.objects, gold_labels)
    rows = np.flatnonzero(gold.any(axis=(0, 2)))
    v = phantom.voxel_size_nm
    sigma = acquisition.blur_fwhm_nm / (2 * math.sqrt(2 * math.log(2))) / v
    margin = math.ceil(3 * sigma) + grow_voxels
    keep = np.zeros(shape[1], dtype=bool)
    for r in rows:
        keep[max(0, r - margin) : r + margin + 1] = True
    ys = np.flatnonzero(keep)
    delta = np.where(gold[:, ys, :], LAC_PER_UM["gold"] - LAC_PER_UM["ice"], 0).astype(np.float32)
    angles = tilt_angles(acquisition.tilt_max_deg, acquisition.tilt_step_deg)
    line = _project(delta, angles, 0.0, v / 1000)
    line = _gaussian2d(line, sigma)
    rec = reconstruct(
        line,
        angles,
        shape[0],
        v,
        method=acquisition.reconstruction,
        iterations=acquisition.sirt_iterations,
    )
    truth = ndimage.gaussian_filter(delta, sigma) if sigma > 0 else delta
    streaks = np.abs(rec - truth) > threshold
    beads = ndimage.binary_dilation(gold[:, ys, :], iterations=grow_voxels)
    mask[:, ys, :] = streaks | beads
    return mask


def simulate_tomogram(
    shape: Sequence[int] = (64, 256, 256),
    voxel_size_nm: float = 9.8,
    *,
    seed: int = 0,
    content: CellContent | None = None,
    acquisition: Acquisition | None = None,
) -> Simulation:
    """Simulate a cryo-SXT tomogram of a cell with its ground truth.

    Parameters
    ----------
    shape : (Z, Y, X) ints
    voxel_size_nm : float
    seed : int
        The same seed gives the same phantom, noise and reconstruction.
    content : CellContent, optional
    acquisition : Acquisition, optional

    Returns
    -------
    Simulation

    Examples
    --------
    >>> sim = simulate_tomogram((32, 64, 64), 9.8, seed=3,
    ...                         acquisition=Acquisition(sirt_iterations=5))
    >>> sim.tomogram.shape, sim.tomogram.dtype
    ((32, 64, 64), dtype('float32'))
    """
    content = content or CellContent()
    acq = acquisition or Acquisition()
    root = np.random.SeedSequence(int(seed))
    phantom_seed, noise_seed = (np.random.default_rng(s) for s in root.spawn(2))
    phantom = make_phantom(shape, voxel_size_nm, seed=phantom_seed, content=content)
    series = acquire(phantom.lac, voxel_size_nm, acq, seed=noise_seed)
    tomogram = reconstruct(
        series.data,
        series.angles_deg,
        phantom.lac.shape[0],
        voxel_size_nm,
        method=acq.reconstruction,
        iterations=acq.sirt_iterations,
    )
    artifacts = artifact_mask(phantom, acq)
    return Simulation(
        tomogram=tomogram,
        phantom=phantom,
        artifacts=artifacts,
        tilt_series=series,
        acquisition=acq,
        content=content,
    )


# --------------------------------------------------------------------------- training sets

#: Condition ranges the training set draws from. ``sample_conditions(split="test")``
#: draws from outside them, so a held-out test set probes conditions never trained on.
TRAINING_RANGES = {
    "tilt_max_deg": (62.0, 70.0),
    "blur_fwhm_nm": (20.0, 32.0),
    "dose": (1000.0, 5000.0),
    "organelle_density": (0.6, 1.6),
    "filopodia": (2, 10),
    "cytoplasm_lac": (0.22, 0.30),
    "jitter_px": (0.0, 0.5),
}
#: The held-out conditions: narrower tilt range (±58–60°), Diamond-B24-like blur
#: (≈ 40 nm), half the dose or less, more misalignment.
HELD_OUT_RANGES = {
    "tilt_max_deg": (58.0, 60.0),
    "blur_fwhm_nm": (38.0, 42.0),
    "dose": (500.0, 950.0),
    "organelle_density": (0.6, 1.6),
    "filopodia": (2, 10),
    "cytoplasm_lac": (0.22, 0.30),
    "jitter_px": (0.5, 0.8),
}


def sample_conditions(
    rng: np.random.Generator,
    split: Literal["labeled", "unlabeled", "test"] = "unlabeled",
    *,
    labeled_conditions: Literal["standard", "varied"] = "standard",
) -> tuple[Acquisition, CellContent]:
    """Draw the acquisition and cell content of one tomogram of a training/test set.

    Parameters
    ----------
    rng : numpy Generator
    split : {"labeled", "unlabeled", "test"}
        ``labeled``: the standard conditions (±65°, 25 nm blur, default dose), only the
        cell content varies, like the few expert-labelled tomograms of the paper (with
        ``labeled_conditions="varied"``: drawn from :data:`TRAINING_RANGES` too).
        ``unlabeled``: every condition drawn from :data:`TRAINING_RANGES`, so the
        unlabelled data covers conditions the labels don't.
        ``test``: drawn from :data:`HELD_OUT_RANGES`, disjoint from the training
        ranges in tilt range, blur, dose and jitter.
    labeled_conditions : {"standard", "varied"}
        The acquisition of ``labeled`` tomograms: all at the standard conditions, or
        each drawn from the training ranges like the unlabelled ones (labels taken
        under several microscopes' conditions).

    Returns
    -------
    (Acquisition, CellContent)
    """
    if split not in ("labeled", "unlabeled", "test"):
        raise ValueError(f"split must be labeled, unlabeled or test, got {split!r}")
    if labeled_conditions not in ("standard", "varied"):
        raise ValueError(
            f"labeled_conditions must be standard or varied, got {labeled_conditions!r}"
        )
    ranges = HELD_OUT_RANGES if split == "test" else TRAINING_RANGES
    content = CellContent(
        organelle_density=float(rng.uniform(*ranges["organelle_density"])),
        filopodia=int(rng.integers(ranges["filopodia"][0], ranges["filopodia"][1] + 1)),
        cytoplasm_lac=float(rng.uniform(*ranges["cytoplasm_lac"])),
    )
    if split == "labeled" and labeled_conditions == "standard":
        return Acquisition(), content
    lo, hi = ranges["dose"]
    acq = Acquisition(
        tilt_max_deg=float(np.round(rng.uniform(*ranges["tilt_max_deg"]))),
        blur_fwhm_nm=float(rng.uniform(*ranges["blur_fwhm_nm"])),
        dose=float(np.exp(rng.uniform(math.log(lo), math.log(hi)))),
        jitter_px=float(rng.uniform(*ranges["jitter_px"])),
    )
    return acq, content


def conditions_dict(acquisition: Acquisition, content: CellContent) -> dict:
    """The conditions of a tomogram as plain JSON-ready dicts."""
    return {"acquisition": asdict(acquisition), "content": asdict(content)}
