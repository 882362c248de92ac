"""Filling a cell that the volume's border cuts open, and filopodia that leave the volume.

Ground truth from analytic shapes: a membrane is the shell ``-t < sd <= 0`` of the
cell's signed distance (a true membrane: nothing closes it along the volume's edge).
"""

from __future__ import annotations

import numpy as np
import pytest

from sxtquant.quantify.filopodia import analyze, find_filopodia, summarize
from sxtquant.quantify.postprocess import fill_border_regions, fill_membranes
from sxtquant.quantify.recipe import ObjectRecipe, objects_from_membranes
from sxtquant.simulate.shapes import Capsule, Sphere, digitize, paint

VOXEL = 10.0


def signed_distance(shapes, grid, voxel=VOXEL) -> np.ndarray:
    """The union's signed distance (nm) at the voxel centres of ``grid``."""
    points = np.stack(np.indices(grid), axis=-1) * voxel
    return np.min([shape.sdf(points) for shape in shapes], axis=0)


def dice(a, b) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def shell(sd, thickness_nm=25.0) -> np.ndarray:
    return (sd <= 0) & (sd > -thickness_nm)


def _protruding_length(capsule, body) -> float:
    """Tip-to-surface length of a capsule that leaves a sphere (along its axis)."""
    p0, p1 = np.asarray(capsule.p0, float), np.asarray(capsule.p1, float)
    t = np.linspace(0.0, 1.0, 20001)
    inside = body.sdf(p0 + t[:, None] * (p1 - p0)) <= 0
    exit_point = p0 + t[np.flatnonzero(inside)[-1]] * (p1 - p0)
    return float(np.linalg.norm(p1 - exit_point) + capsule.radius)


# a large cell whose centre lies outside the volume (x < 0), two filopodia
GRID = (40, 110, 140)
BODY = Sphere((200.0, 550.0, -300.0), 800.0)
FILOPODIA = (
    Capsule((200.0, 350.0, 350.0), (200.0, 250.0, 1100.0), 60.0),
    Capsule((200.0, 800.0, 300.0), (200.0, 1000.0, 950.0), 60.0),
)


@pytest.fixture(scope="module")
def cut_cell():
    sd = signed_distance((BODY, *FILOPODIA), GRID)
    return sd <= 0, shell(sd)


def test_cell_cut_by_the_border_is_filled_from_its_membrane(cut_cell):
    truth, membrane = cut_cell
    assert truth[:, :, 0].any()  # cut by the x = 0 face
    filled = fill_membranes(membrane)
    assert dice(filled, truth) > 0.98
    # the border left open (as before) fills nothing of the cytoplasm
    assert dice(fill_membranes(membrane, border="open"), truth) < 0.5


def test_filopodia_of_the_cut_cell_are_found(cut_cell):
    truth, membrane = cut_cell
    filled = fill_membranes(membrane)
    per, _ = find_filopodia(filled, VOXEL, max_radius_nm=80.0)
    assert len(per) == 2
    on_truth, _ = find_filopodia(truth, VOXEL, max_radius_nm=80.0)
    by_y = per.sort_values("centroid_y_nm")
    truth_by_y = on_truth.sort_values("centroid_y_nm")
    for capsule, row, ideal in zip(
        FILOPODIA, by_y.itertuples(), truth_by_y.itertuples(), strict=True
    ):
        assert row.length_nm == pytest.approx(_protruding_length(capsule, BODY), rel=0.06)
        assert row.length_nm == pytest.approx(ideal.length_nm, rel=0.02)
        assert row.radius_nm == pytest.approx(capsule.radius, rel=0.05)
        assert not row.touches_border


def test_the_recipe_gives_one_cut_cell(cut_cell):
    truth, membrane = cut_cell
    objects = objects_from_membranes(membrane, VOXEL, ObjectRecipe())
    assert int(objects.max()) == 1
    assert dice(objects > 0, truth) > 0.98


def test_membrane_gaps_are_bridged_at_the_border(cut_cell):
    truth, membrane = cut_cell
    gapped = membrane.copy()
    gapped[:, 40:42, :] = False  # a 2-pixel gap through every slice
    assert dice(fill_membranes(gapped), truth) > 0.98


@pytest.mark.parametrize(
    ("centre", "radius", "nucleus"),
    [
        ((200.0, -100.0, -100.0), 700.0, None),  # cut by two faces: a corner
        ((200.0, 500.0, -1500.0), 2300.0, None),  # a large cell across the field of view
        ((200.0, 500.0, -300.0), 900.0, ((200.0, 500.0, -100.0), 450.0)),  # nucleus cut too
    ],
)
def test_other_cuts(centre, radius, nucleus):
    grid = (40, 100, 110)
    sd = signed_distance((Sphere(centre, radius),), grid)
    membrane = shell(sd)
    if nucleus is not None:
        membrane |= shell(signed_distance((Sphere(*nucleus),), grid))
    assert dice(fill_membranes(membrane), sd <= 0) > 0.98


def _comb_cell(slices: int):
    """A nearly flat cell edge across the view (the cell's centre far outside, x < 0)
    with a comb of four thick filopodia (radius 70 nm) in the mid-plane."""
    grid = (slices, 120, 160)
    z = slices * VOXEL / 2
    body = Sphere((z, 600.0, -2500.0), 2900.0)
    comb = tuple(
        Capsule((z, y, 300.0), (z, y, 1300.0), 70.0) for y in (150.0, 450.0, 750.0, 1050.0)
    )
    sd = signed_distance((body, *comb), grid)
    return sd <= 0, shell(sd)


def test_the_cell_side_is_told_with_its_filopodia_opened_away():
    """With a thin opening the filopodia make the cell's side look the more concave
    one, and the outside is filled instead of the cell (a slab as thin as the
    filopodia, which are then in every slice compared); the recipe's opening is wider
    than any filopodium (border_opening_radius), and the cell is filled."""
    from sxtquant.quantify.recipe import border_opening_radius

    truth, membrane = _comb_cell(24)
    assert dice(fill_membranes(membrane), truth) < 0.5
    radius = border_opening_radius(VOXEL, 2)
    assert radius == 13  # 150 nm at 10 nm, less the closing's 2 pixels
    assert dice(fill_membranes(membrane, border_opening_radius=radius), truth) > 0.99
    assert dice(objects_from_membranes(membrane, VOXEL, ObjectRecipe()) > 0, truth) > 0.99


def test_the_wide_opening_keeps_the_filopodia_of_a_cut_cell():
    from sxtquant.pipeline import filopodia_of

    truth, membrane = _comb_cell(40)  # thick enough for the body's opening
    objects = objects_from_membranes(membrane, VOXEL, ObjectRecipe())
    assert dice(objects > 0, truth) > 0.99
    per, _ = filopodia_of(objects > 0, VOXEL)
    assert len(per) == 4
    assert per["radius_nm"].to_numpy() == pytest.approx(70.0, rel=0.08)
    assert not per["touches_border"].any()


def test_border_opening_radius_follows_the_voxel_size():
    from sxtquant.quantify.recipe import border_opening_radius

    assert border_opening_radius(9.8, 2) == 13  # round(15.3) - 2
    assert border_opening_radius((20.0, 5.0, 5.0), 0) == 30  # in-plane voxels decide
    assert border_opening_radius(40.0, 2) == 3  # never below the membrane's half-width


def test_cells_inside_the_volume_are_filled_as_before(rng):
    grid = (30, 80, 80)
    sd = signed_distance((Sphere((150.0, 400.0, 380.0), 250.0),), grid)
    membrane = shell(sd) & (rng.random(grid) > 0.03)
    # specks of noise, some on the border, enclosing little pockets with it
    specks = rng.random(grid) < 0.002
    specks[:, :, :2] |= rng.random((grid[0], grid[1], 2)) < 0.05
    membrane |= specks
    assert np.array_equal(fill_membranes(membrane), fill_membranes(membrane, border="open"))
    with pytest.raises(ValueError, match="border"):
        fill_membranes(membrane, border="closed")


def test_hole_cut_by_the_border_is_filled_in_a_solid_cell():
    """A cell mask (not membranes) with a hole that the border cuts open: filled."""
    grid = (40, 100, 100)
    cell = digitize(Sphere((200.0, 500.0, -150.0), 600.0), grid, VOXEL)
    hole = digitize(Sphere((200.0, 500.0, 0.0), 180.0), grid, VOXEL)
    filled = fill_border_regions(cell & ~hole)
    assert np.array_equal(filled, cell)
    # the outside is never filled, even with only a sliver of cell in view
    sliver = digitize(Sphere((200.0, 500.0, -550.0), 600.0), grid, VOXEL)
    assert np.array_equal(fill_border_regions(sliver), sliver)


def test_filopodia_leaving_the_volume_are_flagged_and_left_out_of_the_summary():
    labels = np.zeros((30, 40, 150), np.uint16)
    paint(labels, Capsule((150.0, 100.0, -200.0), (150.0, 100.0, 700.0), 60.0), 1, VOXEL)
    paint(labels, Capsule((150.0, 280.0, 300.0), (150.0, 280.0, 1200.0), 60.0), 2, VOXEL)
    per, summary = analyze(labels, VOXEL)
    assert list(per["touches_border"]) == [True, False]
    summary = summary.set_index("column")
    assert (summary["n_touching_border"] == 1).all()
    inside = per[~per["touches_border"]]
    row = summary.loc["length_nm"]
    assert row["n"] == 1 and row["mean"] == pytest.approx(inside["length_nm"].iloc[0])
    everything = summarize(per, exclude_border=False).set_index("column")
    assert everything.loc["length_nm", "n"] == 2
    assert (everything["n_touching_border"] == 0).all()
