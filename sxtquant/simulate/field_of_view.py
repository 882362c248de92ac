"""Field-of-view mode of the cell builder: a cell larger than the volume, cut by its faces.

See :attr:`sxtquant.simulate.cell.CellContent.field_of_view` and docs/simulator.md.
"""

from __future__ import annotations

import math

import numpy as np

from sxtquant.simulate.geometry import _Ellipsoid, _RoundedDisc, _Shape, _volume_box

_RIM_STEP = 2 * math.pi / 720  # angular step of the rim samples of field-of-view mode


def _lateral_grid(shape_zyx, v, n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) points in nm on an n × n grid over the volume's lateral extent."""
    _lo, hi = _volume_box(shape_zyx, v)
    y, x = np.meshgrid(np.linspace(0, hi[1], n), np.linspace(0, hi[2], n), indexing="ij")
    return y.ravel(), x.ravel()


def _field_of_view_body(rng, shape_zyx, v) -> _RoundedDisc:
    """A cell body larger than the volume, cut by one to three lateral faces (and maybe in z).

    In z one of three cases, equally likely: the cell's whole thickness lies inside the
    volume (as in normal mode), its top or its bottom lies outside, or both do. Laterally
    the body's outline, a circle of radius 0.6–2 times the smaller lateral extent L,
    crosses the volume with its edge 0.25 L before to 0.3 L beyond the centre, in a random
    direction; a draw is kept when 10–70 % of the mid-plane is ice and the body reaches
    more than two voxels beyond one to three of the four sides and stays two voxels clear
    of the others.
    """
    _lo, hi = _volume_box(shape_zyx, v)
    thick = hi[0]
    mode = int(rng.integers(3))
    if mode == 0:  # the whole thickness inside
        rho = min(0.5 * thick * rng.uniform(0.6, 0.8), 2000.0)
        cz = thick / 2
    elif mode == 1:  # top or bottom outside, with ice between the cell and the other face
        gap = thick * rng.uniform(0.1, 0.3)
        rho = (thick - gap) / 2 * rng.uniform(1.2, 2.0)
        cz = gap + rho if rng.random() < 0.5 else thick - gap - rho
    else:  # spans the whole z range
        rho = thick * rng.uniform(0.6, 1.2)
        cz = thick / 2 + rng.uniform(-0.1, 0.1) * thick
    lateral = min(hi[1], hi[2])
    mid = hi[1:] / 2
    gy, gx = _lateral_grid(shape_zyx, v)

    def side_distances(cy, cx):  # from the centre to the four sides (y = 0, Y; x = 0, X)
        ny, nx = min(max(cy, 0.0), hi[1]), min(max(cx, 0.0), hi[2])
        return [
            math.hypot(cy, cx - nx),
            math.hypot(cy - hi[1], cx - nx),
            math.hypot(cy - ny, cx),
            math.hypot(cy - ny, cx - hi[2]),
        ]

    for _attempt in range(200):
        outer = lateral * rng.uniform(0.6, 2.0)
        phi = rng.uniform(0, 2 * math.pi)
        normal = np.array([math.sin(phi), math.cos(phi)])  # outwards at the edge, (y, x)
        edge = rng.uniform(-0.25, 0.3) * lateral
        cyx = mid + normal * (edge - outer)
        ice = float(np.mean(np.hypot(gy - cyx[0], gx - cyx[1]) > outer))
        # each side clearly cut or clearly clear of the body, by two voxels
        near = side_distances(float(cyx[0]), float(cyx[1]))
        cut = sum(d < outer - 2 * v for d in near)
        clear = sum(d > outer + 2 * v for d in near)
        if 0.1 <= ice <= 0.7 and 1 <= cut <= 3 and cut + clear == 4:
            break
    else:  # a body over one side and into the two beside it
        outer = lateral
        cyx = mid + np.array([0.0, 0.1 * lateral - outer])
    R = max(outer - rho, 0.2 * outer)
    rho = outer - R if outer - R < rho else rho
    return _RoundedDisc(c=np.array([cz, cyx[0], cyx[1]]), R=R, rho=rho)


def _rim_angles_inside(cell: _RoundedDisc, shape_zyx, v) -> np.ndarray:
    """Angles (radians, about z) where the cell's equator lies inside the volume."""
    lo, hi = _volume_box(shape_zyx, v)
    phi = np.arange(720) * _RIM_STEP
    y = cell.c[1] + (cell.R + cell.rho) * np.sin(phi)
    x = cell.c[2] + (cell.R + cell.rho) * np.cos(phi)
    margin = 100.0 + 2 * v  # a filopodium's radius and a voxel
    keep = (y >= lo[1] + margin) & (y <= hi[1] - margin) & (x >= lo[2] + margin)
    keep &= x <= hi[2] - margin
    if not lo[0] <= cell.c[0] <= hi[0]:
        keep[:] = False
    return phi[keep]


def _fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly evenly spread unit vectors."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    return np.stack(
        [np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)], axis=1
    )


def _field_of_view_nucleus(
    rng, cell: _RoundedDisc, shape_zyx, v, *, gap: float
) -> _Ellipsoid | None:
    """A nucleus centred inside the volume laterally, or None (half of the time, or no fit)."""
    if rng.random() < 0.5:  # the nucleus lies outside the field of view
        return None
    lo, hi = _volume_box(shape_zyx, v)
    lateral = min(hi[1], hi[2])
    surface = _fibonacci_sphere(200)
    for _attempt in range(30):
        a_z = cell.rho * rng.uniform(0.55, 0.7)
        a_xy = lateral * rng.uniform(0.2, 0.4)
        ang = rng.uniform(0, math.pi)
        nc = np.array([cell.c[0], rng.uniform(lo[1], hi[1]), rng.uniform(lo[2], hi[2])])
        axes = np.array([a_z, a_xy * rng.uniform(0.8, 1.0), a_xy])
        if a_z <= 100 or a_xy <= 200:
            return None
        rot = np.eye(3)
        rot[1:, 1:] = [[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]
        points = nc + (surface * axes) @ rot.T
        if np.all(cell.sd(*points.T) < -gap):
            return _Ellipsoid(c=nc, axes=axes, rot=rot)
    return None


def _cytoplasm_inside_um3(cell: _RoundedDisc, nucleus: _Shape | None, shape_zyx, v) -> float:
    """Volume (µm³) of the cell body inside the volume, less the nucleus (a grid estimate)."""
    lo, hi = _volume_box(shape_zyx, v)
    nz = 16
    z = np.linspace(lo[0], hi[0], nz)[:, None]
    y, x = _lateral_grid(shape_zyx, v)
    inside = cell.sd(z, y[None], x[None]) < 0
    if nucleus is not None:
        inside &= nucleus.sd(z, y[None], x[None]) >= 0
    box_um3 = float(np.prod(np.asarray(shape_zyx, dtype=float) * v)) / 1e9
    return float(inside.mean()) * box_um3
