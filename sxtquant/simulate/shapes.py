"""Analytic test shapes in physical units, digitised on (anisotropic) voxel grids.

Spheres, tri-axial ellipsoids, capsules and cylinders at any orientation, with their
exact volume, surface area, second moments (and so the axes of the ellipsoid with
the same second moments) and exact plane cross-sections. They give the ground truth
against which :func:`sxtquant.quantify.morphology.measure_objects` is tested and benchmarked,
with no simulator involved.

Coordinates are physical (z, y, x) in nm; the centre of voxel ``(i, j, k)`` of a grid
with voxel size ``(sz, sy, sx)`` lies at ``(i * sz, j * sy, k * sx)``. Digitisation
is by voxel centre: a voxel belongs to a shape when its centre is inside.

Examples
--------
>>> import numpy as np
>>> from sxtquant.simulate.shapes import Sphere, digitize
>>> ball = Sphere(center=(100.0, 100.0, 100.0), radius=50.0)
>>> mask = digitize(ball, (40, 40, 40), voxel_size_nm=5.0)
>>> abs(float(mask.sum()) * 125 / ball.volume_nm3 - 1) < 0.02
True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sxtquant.core.voxels import as_voxel_size

__all__ = [
    "Capsule",
    "Cylinder",
    "Ellipsoid",
    "Section",
    "Shape",
    "Solid",
    "Sphere",
    "digitize",
    "ellipse_perimeter",
    "ellipsoid_surface_area",
    "paint",
    "place",
    "random_rotation",
    "section_truth",
]


# --------------------------------------------------------------------------- formulas


def ellipse_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a`` and ``b`` (Ramanujan's second formula).

    Relative error below 1e-9 for axis ratios up to 10, exact for a circle.
    """
    a, b = float(a), float(b)
    if a + b == 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def ellipsoid_surface_area(a: float, b: float, c: float) -> float:
    """Exact surface area of an ellipsoid with semi-axes ``a``, ``b``, ``c`` (any order).

    Uses Legendre's form with incomplete elliptic integrals of the first and second kind.
    """
    from scipy.special import ellipeinc, ellipkinc

    a, b, c = sorted((float(a), float(b), float(c)), reverse=True)
    if a - c <= 1e-12 * a:
        return 4 * math.pi * a * a
    phi = math.acos(c / a)
    m = (a * a * (b * b - c * c)) / (b * b * (a * a - c * c))
    sin_phi = math.sin(phi)
    e_term = ellipeinc(phi, m) * sin_phi**2 + ellipkinc(phi, m) * math.cos(phi) ** 2
    return 2 * math.pi * c * c + 2 * math.pi * a * b / sin_phi * e_term


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (columns: the rotated body axes)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if n == 0:
        raise ValueError("zero direction vector (the end points of a capsule/cylinder must differ)")
    return v / n


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Section:
    """A plane cross-section z = const of a shape: what ``measure_objects`` measures per slice.

    Attributes
    ----------
    area_nm2 : float
    perimeter_nm : float
        Total boundary length.
    first_axis_nm, second_axis_nm : float
        Full axes (2 x semi-axis) of the ellipse with the section's second moments.
    """

    area_nm2: float
    perimeter_nm: float
    first_axis_nm: float
    second_axis_nm: float


class Solid(ABC):
    """A solid in physical (z, y, x) coordinates (nm): a signed distance and a box.

    The root of every shape in sxtquant: the simulator's cell parts
    (:mod:`sxtquant.simulate.geometry`) and the analytic test shapes below
    (:class:`Shape`, with exact geometry). A subclass gives :meth:`sd` (coordinates
    as broadcastable arrays, the fast form the phantom uses) or :meth:`sdf` (points);
    each is defined through the other.
    """

    def sd(self, z, y, x) -> np.ndarray:
        """Signed distance (nm, or a level-set function with the same zero set) at the
        broadcast (z, y, x) coordinates in nm: negative inside, zero on the surface."""
        return self.sdf(np.stack(np.broadcast_arrays(z, y, x), axis=-1))

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """:meth:`sd` of ``points`` (..., 3) in (z, y, x) nm."""
        points = np.asarray(points, dtype=float)
        return self.sd(points[..., 0], points[..., 1], points[..., 2])

    @abstractmethod
    def bounds_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest (z, y, x) corner of a box that holds the shape."""


class Shape(Solid):
    """A solid with exact geometry: volume, surface area, moments, sections."""

    @abstractmethod
    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (nm, or a level-set function with the same zero set) of
        ``points`` (..., 3) in (z, y, x) nm: negative inside, zero on the surface."""

    @property
    @abstractmethod
    def volume_nm3(self) -> float:
        """Exact volume."""

    @property
    @abstractmethod
    def surface_area_nm2(self) -> float:
        """Exact surface area."""

    @property
    @abstractmethod
    def covariance_nm2(self) -> np.ndarray:
        """3x3 covariance (second central moments / volume) of the solid, (z, y, x)."""

    @abstractmethod
    def translated(self, offset_nm: Sequence[float]) -> Shape:
        """The same shape moved by ``offset_nm`` (z, y, x)."""

    @property
    def axes_nm(self) -> tuple[float, float, float]:
        """Full axes (major, second, minor) of the ellipsoid with the same second moments.

        For a solid ellipsoid the semi-axis along an eigenvector is ``sqrt(5 λ)``.
        """
        lam = np.sort(np.linalg.eigvalsh(self.covariance_nm2))[::-1]
        axes = 2 * np.sqrt(5 * np.clip(lam, 0, None))
        return (float(axes[0]), float(axes[1]), float(axes[2]))

    def section(self, z_nm: float, *, resolution_nm: float | None = None) -> Section | None:
        """The cross-section with the plane z = ``z_nm``, or ``None`` where it is empty.

        Computed from a contour of :meth:`sdf` on a fine (y, x) grid of step
        ``resolution_nm`` (default: 1/400 of the shape's extent), which is exact to
        well below 0.1 % for the sizes used in tests. :class:`Ellipsoid` overrides it
        with the closed form.
        """
        from skimage.measure import find_contours

        lo, hi = self.bounds_nm()
        if not lo[0] < z_nm < hi[0]:
            return None
        extent = float(np.max(hi[1:] - lo[1:]))
        step = resolution_nm or extent / 400
        ys = np.arange(lo[1] - 2 * step, hi[1] + 2 * step, step)
        xs = np.arange(lo[2] - 2 * step, hi[2] + 2 * step, step)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        pts = np.stack([np.full_like(yy, z_nm), yy, xx], axis=-1)
        field = self.sdf(pts)
        if field.min() >= 0:
            return None
        perim = 0.0
        moments = np.zeros(6)  # signed: area, Sx, Sy, Sxx, Syy, Sxy (holes count negative)
        for c in find_contours(field, 0.0):
            y = ys[0] + c[:, 0] * step
            x = xs[0] + c[:, 1] * step
            y1, x1 = np.roll(y, -1), np.roll(x, -1)
            perim += float(np.hypot(y1 - y, x1 - x).sum())
            cross = x * y1 - x1 * y  # Green's theorem polygon moments
            moments += [
                cross.sum() / 2,
                ((x + x1) * cross).sum() / 6,
                ((y + y1) * cross).sum() / 6,
                ((x * x + x * x1 + x1 * x1) * cross).sum() / 12,
                ((y * y + y * y1 + y1 * y1) * cross).sum() / 12,
                ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum() / 24,
            ]
        if moments[0] < 0:  # contours all run the other way round
            moments = -moments
        area, sx, sy, sxx, syy, sxy = moments
        mx, my = sx / area, sy / area
        cov = np.array([[syy / area - my * my, sxy / area - mx * my], [0, sxx / area - mx * mx]])
        cov[1, 0] = cov[0, 1]
        lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
        return Section(
            area_nm2=area,
            perimeter_nm=perim,
            first_axis_nm=float(4 * np.sqrt(max(lam[0], 0))),
            second_axis_nm=float(4 * np.sqrt(max(lam[1], 0))),
        )


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """A solid tri-axial ellipsoid.

    Parameters
    ----------
    center : (z, y, x) nm
    semi_axes : (a, b, c) nm
        Semi-axes along the columns of ``rotation``.
    rotation : 3x3 array, optional
        Columns are the body axes in (z, y, x); identity by default.
    """

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    rotation: np.ndarray | None = None

    def _rot(self) -> np.ndarray:
        return np.eye(3) if self.rotation is None else np.asarray(self.rotation, dtype=float)

    def translated(self, offset_nm: Sequence[float]) -> Ellipsoid:
        return replace(self, center=tuple(np.add(self.center, offset_nm).tolist()))

    def _form(self) -> np.ndarray:
        r = self._rot()
        return r @ np.diag(1.0 / np.asarray(self.semi_axes, dtype=float) ** 2) @ r.T

    def sdf(self, points: np.ndarray) -> np.ndarray:
        # a level-set function (exact zero set), scaled to nm near the surface
        d = (np.asarray(points, dtype=float) - np.asarray(self.center)) @ self._rot()
        q = np.sqrt(np.sum((d / np.asarray(self.semi_axes, dtype=float)) ** 2, axis=-1))
        return (q - 1.0) * float(min(self.semi_axes))

    def bounds_nm(self):
        half = np.sqrt(np.diag(np.linalg.inv(self._form())))  # exact extent along each axis
        c = np.asarray(self.center, dtype=float)
        return c - half, c + half

    @property
    def volume_nm3(self) -> float:
        a, b, c = self.semi_axes
        return 4.0 / 3.0 * math.pi * a * b * c

    @property
    def surface_area_nm2(self) -> float:
        return ellipsoid_surface_area(*self.semi_axes)

    @property
    def covariance_nm2(self) -> np.ndarray:
        r = self._rot()
        return r @ np.diag(np.asarray(self.semi_axes, dtype=float) ** 2 / 5.0) @ r.T

    def section(self, z_nm: float, *, resolution_nm: float | None = None) -> Section | None:
        """Closed form: a plane section of an ellipsoid is an ellipse."""
        m = self._form()
        dz = z_nm - self.center[0]
        q = m[1:, 1:]
        b = m[1:, 0] * dz
        k = 1.0 - m[0, 0] * dz * dz + b @ np.linalg.solve(q, b)
        if k <= 0:
            return None
        semi = np.sort(np.sqrt(k / np.linalg.eigvalsh(q)))[::-1]
        return Section(
            area_nm2=float(math.pi * semi[0] * semi[1]),
            perimeter_nm=ellipse_perimeter(semi[0], semi[1]),
            first_axis_nm=float(2 * semi[0]),  # the ellipse's own moments: semi = 2 sqrt(λ)
            second_axis_nm=float(2 * semi[1]),
        )


def Sphere(center: Sequence[float], radius: float) -> Ellipsoid:
    """A solid ball: an :class:`Ellipsoid` with three equal semi-axes."""
    r = float(radius)
    return Ellipsoid(center=tuple(map(float, center)), semi_axes=(r, r, r))


@dataclass(frozen=True)
class _Rod(Shape):
    """A body of revolution about the segment p0–p1 (nm, (z, y, x)) with a radius."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    radius: float

    @property
    def length_nm(self) -> float:
        """Length of the axis segment p0–p1."""
        return float(np.linalg.norm(np.subtract(self.p1, self.p0)))

    def translated(self, offset_nm: Sequence[float]):
        return replace(
            self,
            p0=tuple(np.add(self.p0, offset_nm).tolist()),
            p1=tuple(np.add(self.p1, offset_nm).tolist()),
        )


@dataclass(frozen=True)
class Capsule(_Rod):
    """A solid capsule (spherocylinder): all points within ``radius`` of the segment p0–p1.

    Its full length is ``length_nm + 2 * radius``.
    """

    def sdf(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=float) - np.asarray(self.p0)
        d = np.subtract(self.p1, self.p0).astype(float)
        t = np.clip((p @ d) / (d @ d), 0.0, 1.0)
        return np.linalg.norm(p - t[..., None] * d, axis=-1) - self.radius

    def bounds_nm(self):
        lo = np.minimum(self.p0, self.p1) - self.radius
        hi = np.maximum(self.p0, self.p1) + self.radius
        return np.asarray(lo, float), np.asarray(hi, float)

    @property
    def volume_nm3(self) -> float:
        r, ell = self.radius, self.length_nm
        return math.pi * r * r * ell + 4.0 / 3.0 * math.pi * r**3

    @property
    def surface_area_nm2(self) -> float:
        r, ell = self.radius, self.length_nm
        return 2 * math.pi * r * ell + 4 * math.pi * r * r

    @property
    def covariance_nm2(self) -> np.ndarray:
        r, ell = self.radius, self.length_nm
        v = self.volume_nm3
        # along the axis: cylinder + two hemispheres centred at ±ell/2
        axial = math.pi * r * r * ell**3 / 12
        axial += 2 * ((ell / 2) ** 2 * (2 / 3) * math.pi * r**3)
        axial += 2 * ell * math.pi * r**4 / 4
        axial += 2 * (2 / 15) * math.pi * r**5
        radial = math.pi * r * r * ell * r * r / 4 + (4 / 15) * math.pi * r**5
        return _axial_covariance(_unit(np.subtract(self.p1, self.p0)), axial / v, radial / v)


@dataclass(frozen=True)
class Cylinder(_Rod):
    """A solid circular cylinder with flat ends at p0 and p1."""

    def sdf(self, points: np.ndarray) -> np.ndarray:
        c = (np.asarray(self.p0, float) + np.asarray(self.p1, float)) / 2
        d = _unit(np.subtract(self.p1, self.p0))
        p = np.asarray(points, dtype=float) - c
        t = p @ d
        rho = np.linalg.norm(p - t[..., None] * d, axis=-1)
        dx = rho - self.radius
        dy = np.abs(t) - self.length_nm / 2
        outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
        return np.minimum(np.maximum(dx, dy), 0) + outside

    def bounds_nm(self):
        d = _unit(np.subtract(self.p1, self.p0))
        # extent of the end discs along each coordinate axis: r * sqrt(1 - d_i^2)
        pad = self.radius * np.sqrt(np.clip(1 - d * d, 0, None))
        lo = np.minimum(self.p0, self.p1) - pad
        hi = np.maximum(self.p0, self.p1) + pad
        return np.asarray(lo, float), np.asarray(hi, float)

    @property
    def volume_nm3(self) -> float:
        return math.pi * self.radius**2 * self.length_nm

    @property
    def surface_area_nm2(self) -> float:
        r = self.radius
        return 2 * math.pi * r * self.length_nm + 2 * math.pi * r * r

    @property
    def covariance_nm2(self) -> np.ndarray:
        d = _unit(np.subtract(self.p1, self.p0))
        return _axial_covariance(d, self.length_nm**2 / 12, self.radius**2 / 4)


def _axial_covariance(d: np.ndarray, axial: float, radial: float) -> np.ndarray:
    """Covariance of a body of revolution about unit axis ``d``."""
    outer = np.outer(d, d)
    return axial * outer + radial * (np.eye(3) - outer)


# --------------------------------------------------------------------------- digitising


def _index_box(shape: Shape, grid_shape, spacing) -> tuple[slice, ...] | None:
    lo, hi = shape.bounds_nm()
    sp = np.asarray(spacing)
    start = np.maximum(np.floor(lo / sp).astype(int), 0)
    stop = np.minimum(np.ceil(hi / sp).astype(int) + 1, np.asarray(grid_shape))
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))


def _inside(shape: Shape, box: tuple[slice, ...], spacing) -> np.ndarray:
    axes = [np.arange(s.start, s.stop) * sp for s, sp in zip(box, spacing, strict=True)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    return shape.sdf(np.stack([zz, yy, xx], axis=-1)) < 0


def place(
    shape: Shape,
    voxel_size_nm: float | Sequence[float],
    *,
    margin_voxels: float = 2.0,
    offset_voxels: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[Shape, tuple[int, int, int]]:
    """Move ``shape`` next to the grid origin and give the smallest grid that holds it.

    The shape's box starts ``margin_voxels + offset_voxels`` voxels from the origin
    along each axis (a fractional ``offset_voxels`` sets the sub-voxel position), and
    the grid leaves at least ``margin_voxels`` empty voxels after it.

    Returns
    -------
    shape : Shape
        The moved shape.
    grid_shape : (Z, Y, X) tuple of int
    """
    spacing = np.asarray(as_voxel_size(voxel_size_nm))
    lo, _ = shape.bounds_nm()
    moved = shape.translated(-lo + (margin_voxels + np.asarray(offset_voxels)) * spacing)
    _, hi = moved.bounds_nm()
    grid = np.ceil(hi / spacing + margin_voxels).astype(int) + 1
    return moved, (int(grid[0]), int(grid[1]), int(grid[2]))


def digitize(
    shape: Shape, grid_shape: Sequence[int], voxel_size_nm: float | Sequence[float]
) -> np.ndarray:
    """A bool (Z, Y, X) mask of ``shape`` on a grid: voxels whose centre is inside."""
    spacing = as_voxel_size(voxel_size_nm)
    mask = np.zeros(tuple(int(n) for n in grid_shape), dtype=bool)
    box = _index_box(shape, mask.shape, spacing)
    if box is not None:
        mask[box] = _inside(shape, box, spacing)
    return mask


def paint(
    labels: np.ndarray, shape: Shape, label: int, voxel_size_nm: float | Sequence[float]
) -> int:
    """Set the voxels of ``shape`` in ``labels`` (in place) to ``label``; returns their count.

    Only the shape's bounding box is visited, so filling a large volume with many
    shapes costs in proportion to the shapes. Later shapes overwrite earlier ones.
    """
    spacing = as_voxel_size(voxel_size_nm)
    box = _index_box(shape, labels.shape, spacing)
    if box is None:
        return 0
    inside = _inside(shape, box, spacing)
    labels[box][inside] = label
    return int(inside.sum())


def section_truth(
    shape: Shape, grid_shape: Sequence[int], voxel_size_nm: float | Sequence[float]
) -> dict[int, Section]:
    """The exact cross-section of ``shape`` in each z-slice of a grid, keyed by slice index."""
    spacing = as_voxel_size(voxel_size_nm)
    out = {}
    for z in range(int(grid_shape[0])):
        sec = shape.section(z * spacing[0])
        if sec is not None:
            out[z] = sec
    return out
