"""The solids the simulated cell is built from, with signed distances in nm."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from sxtquant.simulate.shapes import Solid, _unit


class _Shape(Solid):
    """A part of the simulated cell: a :class:`~sxtquant.simulate.shapes.Solid` that the
    cell builder can also cover with spheres (for its collision tests)."""

    @abstractmethod
    def sd(self, z, y, x): ...

    def spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Points and radii of spheres covering the shape (the parts placed beside
        others have them)."""
        raise NotImplementedError(f"{type(self).__name__} is not placed by collision tests")


@dataclass
class _Sphere(_Shape):
    c: np.ndarray
    r: float

    def sd(self, z, y, x):
        return np.sqrt((z - self.c[0]) ** 2 + (y - self.c[1]) ** 2 + (x - self.c[2]) ** 2) - self.r

    def bounds_nm(self):
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

    def bounds_nm(self):
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

    def bounds_nm(self):
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

    def bounds_nm(self):
        return self.pts.min(axis=0) - self.r, self.pts.max(axis=0) + self.r

    def spheres(self):
        # points every r/2 along the centreline
        pts = [self.pts[:1]]
        steps: dict[int, np.ndarray] = {}
        for p0, p1 in zip(self.pts[:-1], self.pts[1:], strict=True):
            d = p1 - p0
            n = max(1, math.ceil(np.linalg.norm(d) / (0.5 * self.r)))
            if n not in steps:
                steps[n] = np.linspace(0, 1, n + 1)[1:, None]
            pts.append(p0 + steps[n] * d)
        pts = np.concatenate(pts)
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


def _volume_box(shape_zyx, v) -> tuple[np.ndarray, np.ndarray]:
    """Corners (nm) of the box of the voxel centres of a (Z, Y, X) grid."""
    lo = np.zeros(3)
    hi = (np.asarray(shape_zyx, dtype=float) - 1) * v
    return lo, hi


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


def _random_direction(rng, flatten: float = 1.0) -> np.ndarray:
    v = rng.normal(size=3)
    v[0] *= flatten
    return _unit(v)
