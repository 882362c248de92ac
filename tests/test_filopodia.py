"""Filopodia: centreline length and radius on digitised capsules and bent tubes, detection
of a filopodium on a cell body, classification of labels, the Fig. 3B summary and plot."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sxtquant.quantify import filopodia
from sxtquant.quantify.filopodia import (
    FIG3B,
    analyze,
    capsule_radius,
    centreline,
    find_filopodia,
    length_from_body,
    summarize,
)
from sxtquant.report.filopodia_plot import plot_filopodia
from sxtquant.simulate.shapes import Capsule, Sphere, digitize, paint

VOXELS = [(10.0, 10.0, 10.0), (20.0, 10.0, 10.0), (15.0, 12.0, 9.0)]


def random_capsule(rng, voxel, *, radius, length, margin_nm=80.0):
    """A capsule of full length ``length`` (tip to tip) at a random orientation, centred
    in a grid just large enough for it; returns (mask, capsule)."""
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    voxel = np.asarray(voxel)
    shape = tuple(int(n) for n in (np.abs(u) * length + 2 * radius + 2 * margin_nm) / voxel)
    center = np.asarray(shape) * voxel / 2
    half = u * (length - 2 * radius) / 2
    capsule = Capsule(tuple(center - half), tuple(center + half), radius)
    return digitize(capsule, shape, voxel), capsule


def arc_frame():
    """Orthonormal (e1, e2) of a plane tilted so that no grid axis is special."""
    e1 = np.array([0.3, 0.2, 1.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e1, [0.4, 1.0, -0.1])
    e2 /= np.linalg.norm(e2)
    return e1, e2


def distance_to_arc(points, center, bend_radius, angle):
    """Distance (nm) of points (..., 3) to the circular arc from ``center + R e1``
    turning by ``angle`` radians towards e2."""
    e1, e2 = arc_frame()
    rel = points - center
    a, b, h = rel @ e1, rel @ e2, rel @ np.cross(e1, e2)
    phi = np.mod(np.arctan2(b, a), 2 * np.pi)
    on_arc = np.sqrt((np.hypot(a, b) - bend_radius) ** 2 + h**2)
    ends = [bend_radius * e1, bend_radius * (math.cos(angle) * e1 + math.sin(angle) * e2)]
    to_ends = np.minimum(*(np.linalg.norm(rel - end, axis=-1) for end in ends))
    return np.where(phi <= angle, np.minimum(on_arc, to_ends), to_ends)


def bent_tube(voxel, *, bend_radius, angle, radius):
    """A tube of ``radius`` around a circular arc with hemispherical tips, in a tilted
    plane; returns (mask, true length)."""
    voxel = np.asarray(voxel)
    extent = 2 * (bend_radius + radius) + 160.0
    shape = tuple(int(n) for n in np.array([extent, extent, extent]) / voxel)
    center = np.asarray(shape) * voxel / 2
    grid = np.stack(np.indices(shape), axis=-1) * voxel
    mask = distance_to_arc(grid, center, bend_radius, angle) <= radius
    return mask, bend_radius * angle + 2 * radius


@pytest.mark.parametrize("voxel", VOXELS)
def test_straight_capsule_length_and_radius(voxel):
    rng = np.random.default_rng(7)
    for _ in range(3):
        radius = rng.uniform(5.0, 6.0) * max(voxel)
        length = rng.uniform(8.0, 12.0) * radius
        mask, capsule = random_capsule(rng, voxel, radius=radius, length=length)
        per, _ = analyze(mask, voxel, kind="labels")
        assert len(per) == 1
        assert per["length_nm"].iloc[0] == pytest.approx(length, rel=0.03)
        assert per["radius_nm"].iloc[0] == pytest.approx(radius, rel=0.03)
        # volume and the Fig. 3B columns come from measure_objects
        assert per["volume_nm3"].iloc[0] == pytest.approx(capsule.volume_nm3, rel=0.03)


@pytest.mark.parametrize("voxel", VOXELS[:2])
@pytest.mark.parametrize(
    ("bend_radius", "angle"), [(400.0, math.pi / 2), (300.0, math.pi), (250.0, 1.5 * math.pi)]
)
def test_bent_tube_length_follows_the_centreline(voxel, bend_radius, angle):
    radius = 60.0
    mask, length = bent_tube(voxel, bend_radius=bend_radius, angle=angle, radius=radius)
    per, _ = analyze(mask, voxel, kind="labels")
    assert len(per) == 1
    assert per["length_nm"].iloc[0] == pytest.approx(length, rel=0.05)
    assert per["radius_nm"].iloc[0] == pytest.approx(radius, rel=0.05)


def test_centreline_of_an_oblique_rod_is_not_the_voxel_staircase():
    voxel = (10.0, 10.0, 10.0)
    capsule = Capsule((150.0, 150.0, 150.0), (550.0, 450.0, 850.0), 60.0)
    mask = digitize(capsule, (72, 62, 102), voxel)
    line = centreline(mask, voxel)
    truth = capsule.length_nm + 2 * 60.0
    assert line.length_nm == pytest.approx(truth, rel=0.02)
    # the path runs along the axis, in nm (z, y, x) of the mask
    direction = np.subtract(capsule.p1, capsule.p0) / capsule.length_nm
    offsets = line.points_nm - np.asarray(capsule.p0)
    off_axis = offsets - np.outer(offsets @ direction, direction)
    assert np.linalg.norm(off_axis, axis=1).max() < 2 * max(voxel)
    inner = np.linalg.norm(np.diff(line.points_nm, axis=0), axis=1).sum()
    assert line.length_nm == pytest.approx(inner + sum(line.tip_extensions_nm))
    # the skeleton stops about one radius short of each rounded tip
    assert line.tip_extensions_nm == pytest.approx((60.0, 60.0), abs=2 * max(voxel))


def test_centreline_refuses_empty_and_2d():
    with pytest.raises(ValueError, match="empty"):
        centreline(np.zeros((4, 4, 4), bool), 10.0)
    with pytest.raises(ValueError, match="3D"):
        centreline(np.ones((4, 4), bool), 10.0)


def test_capsule_radius_inverts_the_capsule_volume():
    r, length = 55.0, 900.0
    volume = math.pi * r * r * (length - 2 * r) + 4 / 3 * math.pi * r**3
    assert capsule_radius(volume, length) == pytest.approx(r, rel=1e-9)
    assert math.isnan(capsule_radius(1e9, 10.0))  # rounder than a sphere
    assert math.isnan(capsule_radius(0.0, 10.0))


@pytest.mark.parametrize("voxel", [(10.0, 10.0, 10.0), (20.0, 10.0, 10.0)])
def test_filopodium_on_a_cell_body_is_found_once_with_its_length(voxel):
    """A capsule growing out of a large body: one filopodium, its protruding length."""
    shape = (int(1000 / voxel[0]), 110, 180)
    body = Sphere((500.0, 550.0, 500.0), 400.0)
    # axis from inside the body out through its surface, oblique to the grid
    direction = np.array([0.25, 0.35, 1.0])
    direction /= np.linalg.norm(direction)
    radius, outside = 60.0, 800.0  # tip-to-surface length of the filopodium
    start = np.array(body.center) + direction * 300.0
    tip_centre = np.array(body.center) + direction * (400.0 + outside - radius)
    filopodium = Capsule(tuple(start), tuple(tip_centre), radius)
    mask = digitize(body, shape, voxel) | digitize(filopodium, shape, voxel)

    per, summary = analyze(mask, voxel)
    assert len(per) == 1
    # from the body's surface (where the tube leaves the sphere, ~r²/2R inside) to the tip
    assert per["length_nm"].iloc[0] == pytest.approx(outside, rel=0.10)
    assert per["radius_nm"].iloc[0] == pytest.approx(radius, rel=0.10)
    assert not per["touches_border"].iloc[0]
    assert summary.set_index("column").loc["length_nm", "n"] == 1


def test_length_from_body_runs_from_the_base_not_along_it():
    rod = digitize(Capsule((100.0, 100.0, 0.0), (100.0, 100.0, 800.0), 50.0), (20, 40, 90), 10.0)
    rod[:, :, :10] = False  # cut at x = 95 nm (the faces of voxel column 10)
    base = np.zeros_like(rod)
    base[:, :, 10] = rod[:, :, 10]
    # from the cut face to the apex at 850 nm
    assert length_from_body(rod, base, 10.0) == pytest.approx(755.0, abs=10.0)
    # a 30 nm thin sheet along the base, 300 nm sideways, does not lengthen it
    sheet = rod.copy()
    sheet[8:11, 5:40, 10:13] = True
    assert length_from_body(sheet, base | (sheet & ~rod), 10.0) == pytest.approx(755.0, abs=10.0)
    assert centreline(sheet, 10.0).length_nm > 800.0  # the skeleton runs into it
    with pytest.raises(ValueError, match="base"):
        length_from_body(rod, np.zeros_like(rod), 10.0)


def ball_with_filopodium(radius, outside, *, rim_nm, half_thickness_nm, voxel=10.0):
    """A 400 nm ball with a filopodium along x protruding ``outside`` nm and a flat patch
    around its base (``rim_nm`` out from the ball's surface, 600 nm wide in y,
    ``2 * half_thickness_nm`` thick in z)."""
    shape = (100, 110, 180)
    body = Sphere((500.0, 550.0, 500.0), 400.0)
    start = np.array(body.center) + np.array([0.0, 0.0, 300.0])
    tip_centre = np.array(body.center) + np.array([0.0, 0.0, 400.0 + outside - radius])
    mask = digitize(body, shape, voxel) | digitize(
        Capsule(tuple(start), tuple(tip_centre), radius), shape, voxel
    )
    z, y, x = np.indices(shape) * voxel
    r = np.sqrt((z - 500) ** 2 + (y - 550) ** 2 + (x - 500) ** 2)
    patch = (r <= 400 + rim_nm) & (np.abs(z - 500) <= half_thickness_nm)
    return mask | (patch & (np.abs(y - 550) <= 300))


def test_split_at_base_measures_a_filopodium_from_the_body():
    """A filopodium on a ball with a 40 nm rim patch around its base: from the body."""
    voxel, radius, outside = 10.0, 60.0, 800.0
    mask = ball_with_filopodium(radius, outside, rim_nm=40, half_thickness_nm=60)
    plain, _ = find_filopodia(mask, voxel, min_radius_nm=20.0)
    based, _ = find_filopodia(mask, voxel, min_radius_nm=20.0, split_at_base=True)
    assert len(plain) == len(based) == 1
    assert based["length_nm"].iloc[0] == pytest.approx(outside, rel=0.05)
    assert plain["length_nm"].iloc[0] > based["length_nm"].iloc[0]
    assert based["radius_nm"].iloc[0] == pytest.approx(radius, rel=0.10)


def test_split_at_base_measures_a_filopodium_beyond_a_web_at_its_base():
    """A thin filopodium on a ball, its base in a 200 nm thick web reaching 160 nm out
    (a network's map has such webs): the whole piece is no tube, the part farther than
    the opening radius from the body is, and gives the radius. The same when the web
    only makes the piece too wide for its length."""
    voxel, radius, outside = 10.0, 45.0, 600.0
    mask = ball_with_filopodium(radius, outside, rim_nm=160, half_thickness_nm=100)
    per, labels = find_filopodia(mask, voxel, min_radius_nm=20.0, split_at_base=True)
    assert len(per) == 1
    assert per["length_nm"].iloc[0] == pytest.approx(outside, rel=0.10)
    assert per["radius_nm"].iloc[0] == pytest.approx(radius, rel=0.15)
    piece = labels == per["label"].iloc[0]
    line = centreline(piece, voxel)
    whole = capsule_radius(np.count_nonzero(piece) * voxel**3, line.length_nm)
    assert not filopodia._is_tube(whole, line, (voxel,) * 3)  # kept for the part beyond
    # a stouter one in a thinner web is a tube as a whole, but too wide for its length
    # at three diameters (at the default two the whole piece passes, web and all)
    mask = ball_with_filopodium(55.0, 380.0, rim_nm=160, half_thickness_nm=60)
    per, labels = find_filopodia(
        mask, voxel, min_aspect=3.0, min_radius_nm=20.0, split_at_base=True
    )
    assert len(per) == 1
    assert per["length_nm"].iloc[0] == pytest.approx(380.0, rel=0.10)
    assert per["radius_nm"].iloc[0] == pytest.approx(55.0, rel=0.15)
    line = centreline(labels == per["label"].iloc[0], voxel)
    whole = capsule_radius(
        np.count_nonzero(labels == per["label"].iloc[0]) * voxel**3, line.length_nm
    )
    assert line.length_nm < 3 * 2 * whole
    # that part must be as deep as the thinnest filopodium: a 20 nm rod is a sliver
    zz, yy, xx = np.indices((20, 30, 60))
    rod = ((zz - 10) ** 2 + (yy - 15) ** 2 <= 4) & (xx >= 10) & (xx < 50)
    assert filopodia._radius_beyond(rod, (voxel,) * 3, 0.0) == pytest.approx(20.0, rel=0.1)
    assert filopodia._radius_beyond(rod, (voxel,) * 3, 20.0) is None


def test_bent_filopodium_on_a_cell_body():
    """A quarter-circle filopodium leaving a body: found once, its moment ellipsoid is
    not elongated, its length is the arc outside the body plus the rounded tip."""
    voxel = np.array([10.0, 10.0, 10.0])
    shape = (100, 100, 100)
    center = np.full(3, 500.0)
    bend, angle, radius = 380.0, math.pi / 2, 60.0
    e1, e2 = arc_frame()
    base = center + bend * e1  # the arc starts here, heading along e2
    body_center, body_radius = base - 250.0 * e2 + 0.0 * e1, 330.0
    grid = np.stack(np.indices(shape), axis=-1) * voxel
    tube = distance_to_arc(grid, center, bend, angle) <= radius
    body = np.linalg.norm(grid - body_center, axis=-1) <= body_radius
    # truth: arc length from where the centreline leaves the body, plus the tip cap
    t = np.linspace(0, angle, 20001)
    arc = center + bend * (np.cos(t)[:, None] * e1 + np.sin(t)[:, None] * e2)
    leaves = t[np.argmax(np.linalg.norm(arc - body_center, axis=1) > body_radius)]
    outside = bend * (angle - leaves) + radius

    per, _ = analyze(tube | body, voxel)
    assert len(per) == 1
    assert per["length_nm"].iloc[0] == pytest.approx(outside, rel=0.10)
    assert per["radius_nm"].iloc[0] == pytest.approx(radius, rel=0.10)
    assert not per["touches_border"].iloc[0]


def test_a_sheet_is_not_a_filopodium():
    """A thin lamella is as long and as voluminous as a filopodium but not a tube."""
    voxel = (10.0, 10.0, 10.0)
    labels = np.zeros((20, 60, 140), np.uint16)
    labels[8:11, 10:50, 10:130] = 1  # 30 nm x 400 nm x 1200 nm
    paint(labels, Capsule((150.0, 550.0, 100.0), (150.0, 550.0, 1200.0), 50.0), 2, voxel)
    per, _ = analyze(labels, voxel)
    assert list(per["label"]) == [2]


def _cell_edge_with(protrusions):
    """A cell's edge (a sphere's cap, its centre outside the view at x < 0) crossing a
    600 nm slab, with ``protrusions(surface_x, z)``'s shapes on it; filled mask."""
    voxel = 10.0
    grid = (60, 180, 160)
    z = 300.0
    body = Sphere((z, 900.0, -2500.0), 2900.0)

    def surface_x(y):  # where the body's mid-plane edge is, at y
        return -2500.0 + math.sqrt(2900.0**2 - (y - 900.0) ** 2)

    points = np.stack(np.indices(grid), axis=-1) * voxel
    shapes = (body, *protrusions(surface_x, z))
    return np.min([shape.sdf(points) for shape in shapes], axis=0) <= 0, voxel


def test_short_filopodia_count_and_blebs_buds_bumps_ridges_do_not():
    """Down to two diameters a tube is a filopodium (the paper's Fig. 3B has ones under
    three); what else grows from a cell's edge is not: a bleb, a bud on a thin neck, a
    bump, a ridge across the slab, a stub 1.5 diameters long."""

    def protrusions(surface_x, z):
        def stub(y, radius, aspect):  # leaving the body by aspect diameters
            x = surface_x(y)
            return Capsule((z, y, x - 200.0), (z, y, x + 2 * aspect * radius - radius), radius)

        x = surface_x(650.0)
        return (
            Sphere((z, 200.0, surface_x(200.0) + 50.0), 200.0),  # bleb
            Capsule((z, 650.0, x - 100.0), (z, 650.0, x + 200.0), 40.0),  # neck
            Sphere((z, 650.0, x + 320.0), 130.0),  # its bud
            Capsule(
                (z - 150.0, 900.0, surface_x(900.0) + 100.0),
                (z + 150.0, 900.0, surface_x(900.0) + 100.0),
                50.0,
            ),  # ridge
            Sphere((z, 1150.0, surface_x(1150.0) + 60.0), 120.0),  # bump
            stub(1400.0, 90.0, 1.5),
            stub(1650.0, 90.0, 2.5),  # a short filopodium, 450 nm from the body
        )

    mask, voxel = _cell_edge_with(protrusions)
    per, labels = find_filopodia(mask, voxel, kind="mask", **filopodia.FILLED_MASK)
    per = per[~per["touches_border"]]
    assert len(per) == 1
    (row,) = per.itertuples()
    y = np.argwhere(labels == row.label)[:, 1].mean() * voxel
    assert y == pytest.approx(1650.0, abs=50.0)
    assert row.length_nm == pytest.approx(450.0, rel=0.1)
    assert row.radius_nm == pytest.approx(90.0, rel=0.1)
    per, _ = find_filopodia(mask, voxel, kind="mask", min_aspect=3.0, **filopodia.FILLED_MASK)
    assert not (~per["touches_border"]).any()  # the old limit missed it


def test_labels_keep_long_thin_objects_only():
    voxel = (10.0, 10.0, 10.0)
    labels = np.zeros((50, 60, 200), np.uint16)
    paint(labels, Capsule((250.0, 150.0, 150.0), (250.0, 150.0, 1000.0), 60.0), 3, voxel)
    paint(labels, Sphere((250.0, 450.0, 400.0), 120.0), 4, voxel)  # a vesicle
    paint(labels, Capsule((250.0, 450.0, 900.0), (250.0, 450.0, 1300.0), 50.0), 5, voxel)
    paint(labels, Capsule((250.0, 450.0, 1550.0), (250.0, 450.0, 1620.0), 50.0), 6, voxel)
    per, found = find_filopodia(labels, voxel, min_aspect=3.0)
    assert list(per["label"]) == [3, 5]  # 6: 170 nm long, 100 nm wide, too stubby
    assert found is labels or np.array_equal(found, labels)
    # widening the radius limit does not make the vesicle a filopodium
    per, _ = find_filopodia(labels, voxel, max_radius_nm=500.0)
    assert 4 not in set(per["label"])
    # a thin radius limit drops the 60 nm one
    per, _ = find_filopodia(labels, voxel, max_radius_nm=55.0)
    assert list(per["label"]) == [5]


def test_exclude_border_drops_cut_filopodia():
    voxel = (10.0, 10.0, 10.0)
    labels = np.zeros((30, 40, 150), np.uint16)
    paint(labels, Capsule((150.0, 100.0, -200.0), (150.0, 100.0, 700.0), 60.0), 1, voxel)
    paint(labels, Capsule((150.0, 280.0, 300.0), (150.0, 280.0, 1200.0), 60.0), 2, voxel)
    per, _ = analyze(labels, voxel)
    assert list(per["label"]) == [1, 2]
    assert list(per["touches_border"]) == [True, False]
    per, _ = analyze(labels, voxel, exclude_border=True)
    assert list(per["label"]) == [2]


def test_summary_mean_sd_n_and_paper_values():
    table = pd.DataFrame(
        {
            "label": [1, 2, 3, 4],
            "slice_second_axis_nm_mean": [100.0, 120.0, 140.0, np.nan],
            "axis_major_nm": [800.0, 1000.0, 1200.0, 900.0],
            "surface_to_volume_per_um": [30.0, 30.0, 30.0, 30.0],
            "length_nm": [1.0, np.nan, np.nan, np.nan],
        }
    )
    summary = summarize(table).set_index("column")
    assert list(summary.index) == [q.column for q in FIG3B]
    row = summary.loc["slice_second_axis_nm_mean"]
    assert (row["mean"], row["sd"], row["n"]) == (120.0, 20.0, 3)  # NaN left out, ddof = 1
    assert (row["paper_mean"], row["paper_sd"], row["paper_n"]) == (132.0, 28.0, 59)
    row = summary.loc["axis_major_nm"]
    assert row["mean"] == 975.0
    assert row["sd"] == pytest.approx(np.std([800, 1000, 1200, 900], ddof=1))
    assert (row["paper_mean"], row["paper_sd"]) == (966.0, 394.0)
    row = summary.loc["surface_to_volume_per_um"]
    assert (row["mean"], row["sd"], row["unit"]) == (30.0, 0.0, "µm⁻¹")
    assert (row["paper_mean"], row["paper_sd"]) == (30.2, 5.3)
    row = summary.loc["length_nm"]
    assert row["n"] == 1 and row["mean"] == 1.0 and math.isnan(row["sd"])
    row = summary.loc["volume_nm3"]  # column absent: NaN, n = 0; no paper value
    assert row["n"] == 0 and math.isnan(row["mean"]) and math.isnan(row["paper_mean"])


def test_empty_result_has_the_columns():
    labels = np.zeros((20, 20, 20), np.uint16)
    labels[5:15, 5:15, 5:15] = 1  # a cube: not a filopodium
    per, summary = analyze(labels, 10.0, kind="labels")
    assert len(per) == 0
    assert {"label", "volume_nm3", "length_nm", "radius_nm", "touches_border"} <= set(per)
    assert (summary["n"] == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="3D"):
        analyze(np.ones((5, 5), bool), 10.0)
    with pytest.raises(ValueError, match="kind"):
        analyze(np.ones((5, 5, 5), bool), 10.0, kind="cells")
    with pytest.raises(ValueError, match="min_aspect"):
        analyze(np.ones((5, 5, 5), bool), 10.0, min_aspect=-1)


def test_plot_filopodia_headless(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    table = pd.DataFrame({q.column: rng.uniform(50, 150, 12) for q in FIG3B})
    fig = plot_filopodia(table, tmp_path / "fig3b.png")
    assert len(fig.axes) == 8
    assert fig.axes[1].get_title() == "2D second axis"
    image = np.asarray(Image.open(tmp_path / "fig3b.png").convert("L"))
    assert (image < 200).mean() > 0.01
    plot_filopodia(table.iloc[:0])  # an empty table draws too
