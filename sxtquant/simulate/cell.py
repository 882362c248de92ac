"""What a simulated cell contains and where: the objects and their geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sxtquant.simulate.shapes import ellipsoid_surface_area

if TYPE_CHECKING:
    import pandas as pd
from sxtquant.simulate.field_of_view import (
    _RIM_STEP,
    _cytoplasm_inside_um3,
    _field_of_view_body,
    _field_of_view_nucleus,
    _rim_angles_inside,
)
from sxtquant.simulate.geometry import (
    _arc,
    _Ellipsoid,
    _random_direction,
    _RoundedDisc,
    _Shape,
    _Sphere,
    _Tube,
    _unit,
    _volume_box,
)

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
    field_of_view : bool
        Field-of-view mode: the cell body is larger than the volume and cut by its
        borders, as in a tomogram of part of a mammalian cell. Laterally the body
        extends beyond one to three of the four sides, so a curved stretch of the cell
        edge (with the filopodia) crosses the volume and some ice lies beside it; in z
        the cell lies inside, or its top and/or bottom lie outside the volume.
        Organelles lie in the part of the cell inside the volume and may be cut by its
        faces; ``touches_border`` in the table flags every cut object. ``False`` (the
        default): the whole cell lies inside the volume.
    """

    organelle_density: float = 1.0
    filopodia: int = 6
    fiducials: int | None = None
    nucleus: bool = True
    cytoplasm_lac: float = LAC_PER_UM["cytoplasm"]
    texture: float = 0.02
    field_of_view: bool = False

    def __post_init__(self):
        if not (self.organelle_density >= 0 and math.isfinite(self.organelle_density)):
            raise ValueError(f"organelle_density must be >= 0, got {self.organelle_density}")
        if self.filopodia < 0:
            raise ValueError(f"filopodia must be >= 0, got {self.filopodia}")
        if self.fiducials is not None and self.fiducials < 0:
            raise ValueError(f"fiducials must be >= 0, got {self.fiducials}")
        if not self.cytoplasm_lac > LAC_PER_UM["ice"] * 0.5:
            raise ValueError(f"cytoplasm_lac must be a positive LAC, got {self.cytoplasm_lac}")
        if self.field_of_view not in (True, False):
            raise ValueError(f"field_of_view must be True or False, got {self.field_of_view!r}")


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
        object, 0 for none), the analytic geometry in nm (see docs/simulator.md) and
        ``touches_border`` (the label's voxels reach a face of the volume).
        ``volume_nm3`` and ``surface_area_nm2`` are those of the object's closed surface,
        so they compare with the voxels of the label *and its descendants*.
    voxel_size_nm : float
    """

    lac: np.ndarray
    membranes: np.ndarray
    objects: np.ndarray
    table: pd.DataFrame
    voxel_size_nm: float


@dataclass
class _Object:
    label: int
    cls: str
    shape: _Shape
    parent: int
    lac: float
    membrane: str | None  # "bilayer", "double", "monolayer" or None
    row: dict = field(default_factory=dict)


class _Placer:
    """Rejection sampling of non-overlapping organelles inside the cytoplasm."""

    def __init__(self, cell: _RoundedDisc, nucleus: _Shape | None):
        self.cell = cell
        self.nucleus = nucleus
        self.pts = np.zeros((0, 3))
        self.rad = np.zeros(0)
        self.rad_max = 0.0
        self._last: tuple = (None, None, None)  # the spheres of the shape fits() saw last

    def fits(self, shape: _Shape) -> bool:
        p, r = shape.spheres()
        self._last = (shape, p, r)
        if np.any(self.cell.sd(p[:, 0], p[:, 1], p[:, 2]) > -(r + _GAP_NM)):
            return False
        if self.nucleus is not None and np.any(
            self.nucleus.sd(p[:, 0], p[:, 1], p[:, 2]) < r + _GAP_NM
        ):
            return False
        if len(self.pts):
            # only the placed spheres that can be close enough (the same decisions, faster)
            reach = float(r.max()) + self.rad_max + _GAP_NM
            near = np.all(
                (self.pts >= p.min(axis=0) - reach) & (self.pts <= p.max(axis=0) + reach), axis=1
            )
            if near.any():
                pts, rad = self.pts[near], self.rad[near]
                d = np.linalg.norm(p[:, None, :] - pts[None, :, :], axis=2)
                if np.any(d < r[:, None] + rad[None, :] + _GAP_NM):
                    return False
        return True

    def add(self, shape: _Shape) -> None:
        last, p, r = self._last
        if last is not shape:
            p, r = shape.spheres()
        self.pts = np.concatenate([self.pts, p])
        self.rad = np.concatenate([self.rad, r])
        self.rad_max = max(self.rad_max, float(r.max()))


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


def _inside_volume(shape: _Shape, shape_zyx, v, margin: float) -> bool:
    lo, hi = shape.bounds_nm()
    vlo, vhi = _volume_box(shape_zyx, v)
    return bool(np.all(lo >= vlo + margin) and np.all(hi <= vhi - margin))


def _build_cell(rng, shape_zyx, v, content: CellContent) -> list[_Object]:
    """Draw the objects of one cell (geometry only)."""
    extent = np.array(shape_zyx, dtype=float) * v
    centre = (np.array(shape_zyx, dtype=float) - 1) * v / 2
    lateral = min(extent[1], extent[2])
    fov = content.field_of_view
    if fov:
        cell = _field_of_view_body(rng, shape_zyx, v)
        c, R, rho = cell.c, cell.R, cell.rho
    else:
        rho = min(0.5 * extent[0] * rng.uniform(0.6, 0.8), 2000.0)
        outer = lateral * rng.uniform(0.22, 0.28)
        R = max(outer - rho, 0.2 * outer)
        rho = outer - R if outer - R < rho else rho
        c = centre + np.array(
            [0.0, rng.uniform(-0.04, 0.04) * extent[1], rng.uniform(-0.04, 0.04) * extent[2]]
        )
        cell = _RoundedDisc(c=c, R=R, rho=rho)
    box_lo, box_hi = _volume_box(shape_zyx, v)
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
    rim = _rim_angles_inside(cell, shape_zyx, v) if fov else None
    for _ in range(content.filopodia if rim is None or len(rim) else 0):
        # field-of-view mode: half of the filopodia are kept inside the volume if they fit
        whole = fov and rng.random() < 0.5
        for attempt in range(40):
            r = rng.uniform(40.0, 90.0)
            if rim is None:
                phi = rng.uniform(0, 2 * math.pi)
            else:  # from the stretch of the rim inside the volume
                phi = float(rng.choice(rim)) + rng.uniform(-0.5, 0.5) * _RIM_STEP
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
            if fov:
                if whole and attempt < 30 and not _inside_volume(tube, shape_zyx, v, 2 * v):
                    continue
                # the rod joins the cell inside the volume and may leave it once (cut)
                if not (np.all(base >= box_lo + r + v) and np.all(base <= box_hi - r - v)):
                    continue
                inside = np.all((pts >= box_lo) & (pts <= box_hi), axis=1)
                if np.any(np.diff(inside.astype(np.int8)) > 0):
                    continue
            elif not _inside_volume(tube, shape_zyx, v, margin=2 * v):
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
    if content.nucleus and fov:
        nucleus_shape = _field_of_view_nucleus(rng, cell, shape_zyx, v, gap=2 * _GAP_NM)
        if nucleus_shape is not None:
            new("nucleus", nucleus_shape, cell_label, LAC_PER_UM["nucleoplasm"], "double")
    elif content.nucleus:
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

    if fov:  # the cytoplasm inside the volume
        cyto_um3 = _cytoplasm_inside_um3(cell, nucleus_shape, shape_zyx, v)
    else:
        cyto_um3 = cell.volume / 1e9 - (
            4 / 3 * math.pi * np.prod(nucleus_shape.axes) / 1e9 if nucleus_shape is not None else 0
        )
    density = content.organelle_density

    def count(per_um3, cap):
        return int(min(cap, rng.poisson(per_um3 * density * cyto_um3)))

    # At least one of each organelle class is tried; with density 0 the tries still
    # draw their random numbers (so the fiducials don't move) but nothing is kept.
    keep = density > 0

    def place(make, n, attempts=60):
        for _ in range(n):
            for _a in range(attempts):
                shape = make()
                if shape is not None and placer.fits(shape):
                    placer.add(shape)
                    yield shape
                    break

    def random_point(margin):
        if fov:  # anywhere in the volume between the cell's top and bottom
            z0 = max(c[0] - rho + margin, box_lo[0])
            z1 = max(min(c[0] + rho - margin, box_hi[0]), z0)
            return np.array(
                [
                    rng.uniform(z0, z1),
                    rng.uniform(box_lo[1], box_hi[1]),
                    rng.uniform(box_lo[2], box_hi[2]),
                ]
            )
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
        if keep:
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
        if keep:
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
        if keep:
            new("vesicle", shape, cell_label, float(lac), "bilayer")
    for shape in place(make_sphere(80.0, 250.0), max(1, count(5.0, 300))):
        if keep:
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
