"""Object separation: components, watershed, border and size filters, filopodia candidates."""

from __future__ import annotations

import numpy as np
import pytest

from sxtquant.quantify.morphology import measure_objects
from sxtquant.quantify.objects import (
    connected_components,
    ellipsoid_axes,
    exclude_border,
    is_label_volume,
    label_dtype,
    label_sizes,
    moment_axes,
    objects_from_mask,
    opening,
    relabel,
    remove_small,
    separate_filopodia,
    separate_objects,
    touching_border,
)
from sxtquant.simulate.shapes import Capsule, Ellipsoid, Sphere, digitize, random_rotation


def two_touching_capsules(spacing):
    """Two parallel capsules (radius 80 nm) whose sides overlap by 10 nm."""
    grid = (int(400 / spacing[0]), int(600 / spacing[1]), int(1000 / spacing[2]))
    a = Capsule((200.0, 240.0, 200.0), (200.0, 240.0, 800.0), 80.0)
    b = Capsule((200.0, 390.0, 300.0), (200.0, 390.0, 900.0), 80.0)
    return digitize(a, grid, spacing), digitize(b, grid, spacing)


@pytest.mark.parametrize("spacing", [(10.0, 10.0, 10.0), (20.0, 10.0, 10.0)])
def test_two_touching_capsules_become_two_objects(spacing):
    a, b = two_touching_capsules(spacing)
    mask = a | b
    assert connected_components(mask).max() == 1
    labels = separate_objects(mask, spacing)
    assert labels.max() == 2
    for truth in (a, b):
        found = np.bincount(labels[truth]).argmax()
        assert found > 0
        overlap = np.sum((labels == found) & truth) / truth.sum()
        assert overlap > 0.98


@pytest.mark.parametrize("seed", range(4))
def test_single_tube_or_ellipsoid_is_not_split(seed):
    rng = np.random.default_rng(seed)
    rot = random_rotation(rng)
    centre = np.array([200.0, 300.0, 500.0])
    tube = Capsule(tuple(centre - 250 * rot[:, 0]), tuple(centre + 250 * rot[:, 0]), 60.0)
    blob = Ellipsoid(tuple(centre), (180.0, 100.0, 60.0), rot)
    for shape in (tube, blob):
        mask = digitize(shape, (40, 60, 100), 10.0)
        assert separate_objects(mask, 10.0).max() == 1


def test_separate_objects_keeps_separate_labels_apart():
    labels = np.zeros((10, 10, 20), np.uint16)
    labels[2:8, 2:8, 2:10] = 4
    labels[2:8, 2:8, 10:18] = 9  # touching, but already two labels
    out = separate_objects(labels, 1.0)
    assert out.max() == 2
    assert len(np.unique(out[labels == 4])) == 1
    assert len(np.unique(out[labels == 9])) == 1


def test_separate_objects_min_voxels_and_bad_h():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:8, 1:8, 1:8] = True
    mask[9, 9, 9] = True
    out = separate_objects(mask, 1.0, min_voxels=2)
    assert out.max() == 1 and out[9, 9, 9] == 0
    with pytest.raises(ValueError, match="h_nm"):
        separate_objects(mask, 1.0, h_nm=0)


def test_connected_components_connectivity_and_dtype():
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner neighbours
    assert connected_components(mask).max() == 2
    assert connected_components(mask, connectivity=3).max() == 1
    assert connected_components(mask).dtype == np.uint16
    assert label_dtype(70000) == np.uint32
    with pytest.raises(ValueError, match="connectivity"):
        connected_components(mask, connectivity=4)
    with pytest.raises(ValueError, match="3D"):
        connected_components(np.zeros((4, 4), bool))


def test_relabel_is_sequential_and_keeps_order():
    labels = np.array([[[0, 7, 7, 3, 100]]], dtype=np.int64)
    out = relabel(labels)
    assert out.tolist() == [[[0, 2, 2, 1, 3]]]
    assert out.dtype == np.uint16
    assert relabel(np.zeros((2, 2, 2), np.int32)).max() == 0


def test_label_sizes_and_label_volume_detection():
    labels = np.zeros((40, 3, 3), np.uint32)
    labels[:30, 0, 0] = 5
    labels[35:, 1, 1] = 2
    assert label_sizes(labels).tolist() == [40 * 9 - 35, 0, 5, 0, 0, 30]
    assert is_label_volume(labels)
    assert not is_label_volume(labels > 0)
    assert not is_label_volume((labels > 0).astype(np.uint8) * 255)
    assert not is_label_volume(np.zeros((2, 2, 2), np.uint16))
    with pytest.raises(ValueError, match=">= 0"):
        label_sizes(np.full((2, 2, 2), -3, np.int16))


def test_border_objects_flagged_and_excluded():
    labels = np.zeros((10, 20, 20), np.uint16)
    labels[0:3, 5:8, 5:8] = 1  # first slice
    labels[4:6, 5:8, 15:20] = 2  # right edge
    labels[4:6, 5:8, 5:8] = 3  # inside
    labels[7:10, 10:12, 10:12] = 4  # last slice
    assert touching_border(labels).tolist() == [1, 2, 4]
    assert touching_border(labels, axes=(1, 2)).tolist() == [2]
    assert sorted(np.unique(exclude_border(labels)).tolist()) == [0, 3]
    assert sorted(np.unique(exclude_border(labels, axes=(1, 2))).tolist()) == [0, 1, 3, 4]
    table = measure_objects(labels, 1.0)
    assert table.set_index("label")["touches_border"].to_dict() == {
        1: True,
        2: True,
        3: False,
        4: True,
    }


def test_remove_small_objects():
    labels = np.zeros((10, 10, 10), np.uint16)
    labels[0:2, 0:2, 0:2] = 1  # 8 voxels
    labels[4:8, 4:8, 4:8] = 2  # 64 voxels
    out = remove_small(labels, 9)
    assert np.unique(out).tolist() == [0, 2]
    assert np.array_equal(remove_small(labels, 0), labels)


def test_opening_removes_thin_protrusions_only():
    sp = (10.0, 10.0, 10.0)
    ball = digitize(Sphere((400.0, 400.0, 400.0), 300.0), (80, 80, 160), sp)
    rod = digitize(Capsule((400.0, 400.0, 650.0), (400.0, 400.0, 1400.0), 60.0), (80, 80, 160), sp)
    opened = opening(ball | rod, sp, 110.0)
    outside = rod & ~ball
    # only a stub the ball can reach into at the rod's base (< 2 radii) is kept
    kept = opened & outside
    assert kept.sum() < 0.1 * outside.sum()
    assert not kept[:, :, 90:].any()
    assert (opened & ball).sum() > 0.97 * ball.sum()
    with pytest.raises(ValueError, match="radius_nm"):
        opening(ball, sp, 0.0)


@pytest.mark.parametrize("spacing", [(10.0, 10.0, 10.0), (20.0, 10.0, 10.0)])
def test_capsule_on_body_gives_one_filopodium_candidate(spacing):
    grid = (int(800 / spacing[0]), 80, 170)
    body = digitize(Sphere((400.0, 400.0, 400.0), 300.0), grid, spacing)
    rod_shape = Capsule((400.0, 380.0, 600.0), (400.0, 420.0, 1500.0), 60.0)
    rod = digitize(rod_shape, grid, spacing)
    candidates, found_body = separate_filopodia(
        body | rod, spacing, max_radius_nm=100.0, return_body=True
    )
    assert candidates.max() == 1
    piece = candidates == 1
    outside = rod & ~body
    assert (piece & outside).sum() > 0.9 * outside.sum()
    assert not (piece & found_body).any()
    assert (found_body & body).sum() > 0.97 * body.sum()
    # the piece is thin: its minor axes are the rod's diameter
    axes = moment_axes(candidates, spacing)[1]
    assert axes[1] == pytest.approx(rod_shape.axes_nm[1], rel=0.1)


def test_filopodium_candidates_ignore_free_and_stubby_pieces():
    sp = 10.0
    grid = (80, 80, 170)
    body = digitize(Sphere((400.0, 400.0, 400.0), 300.0), grid, sp)
    free_rod = digitize(Capsule((100.0, 100.0, 900.0), (100.0, 100.0, 1500.0), 50.0), grid, sp)
    stub = digitize(Capsule((400.0, 400.0, 650.0), (400.0, 400.0, 760.0), 60.0), grid, sp)
    candidates = separate_filopodia(body | free_rod | stub, sp, max_radius_nm=100.0)
    assert candidates.max() == 0
    loose = separate_filopodia(body | free_rod, sp, max_radius_nm=100.0, attached_only=False)
    assert loose.max() == 1


def _body_with_rods(spacing=10.0, web_nm=40.0):
    """A ball (radius 300 nm) with two radial rods (radius 60 nm) 40 degrees apart, and a
    ``web_nm`` thick patch of shell on the ball joining their bases (0: none)."""
    grid, centre = (80, 120, 170), np.array([400.0, 600.0, 400.0])
    cell = digitize(Sphere(tuple(centre), 300.0), grid, spacing)
    rods = []
    for angle in np.radians([-20.0, 20.0]):
        direction = np.array([0.0, np.sin(angle), np.cos(angle)])
        shape = Capsule(tuple(centre + 250 * direction), tuple(centre + 1150 * direction), 60.0)
        rods.append(digitize(shape, grid, spacing) & ~cell)
    if web_nm:
        z, y, x = np.indices(grid).astype(float) * spacing
        r = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
        angle = np.degrees(np.arctan2(y - centre[1], x - centre[2]))
        web = (
            (r >= 300) & (r <= 300 + web_nm) & (np.abs(z - centre[0]) <= 60) & (np.abs(angle) < 20)
        )
        cell |= web
    return cell | rods[0] | rods[1], rods


def test_split_at_base_keeps_filopodia_joined_by_a_rim_apart():
    cell, rods = _body_with_rods()
    joined = separate_filopodia(cell, 10.0, max_radius_nm=100.0, min_elongation=1.0)
    assert joined.max() == 1  # the rim on the body joins the two rods into one piece
    split = separate_filopodia(
        cell, 10.0, max_radius_nm=100.0, min_elongation=1.0, split_at_base=True
    )
    assert split.max() == 2
    for rod in rods:
        labels, counts = np.unique(split[rod], return_counts=True)
        best = labels[np.argmax(counts * (labels > 0))]
        assert best > 0 and counts[labels == best].sum() > 0.9 * rod.sum()
    # without the rim, the option changes nothing but the rods' own bases
    bare, _ = _body_with_rods(web_nm=0.0)
    plain = separate_filopodia(bare, 10.0, max_radius_nm=100.0)
    cut = separate_filopodia(bare, 10.0, max_radius_nm=100.0, split_at_base=True)
    assert plain.max() == cut.max() == 2
    assert np.count_nonzero((plain > 0) != (cut > 0)) < 0.02 * np.count_nonzero(plain)


def test_split_at_base_cuts_filopodia_joined_by_a_web_into_branches():
    # a 120 nm thick web between the rods reaching 250 nm out from the ball: beyond
    # the opening radius (110 nm), so only the cut into branches parts the rods
    cell, rods = _body_with_rods(web_nm=0.0)
    z, y, x = np.indices(cell.shape).astype(float) * 10.0
    r = np.sqrt((z - 400) ** 2 + (y - 600) ** 2 + (x - 400) ** 2)
    angle = np.degrees(np.arctan2(y - 600, x - 400))
    cell |= (r <= 550) & (np.abs(z - 400) <= 60) & (np.abs(angle) < 20)
    split = separate_filopodia(
        cell, 10.0, max_radius_nm=100.0, min_elongation=1.0, split_at_base=True
    )
    assert split.max() == 2
    owners = []
    for rod in rods:
        labels, counts = np.unique(split[rod], return_counts=True)
        best = labels[np.argmax(counts * (labels > 0))]
        assert best > 0 and counts[labels == best].sum() > 0.9 * rod.sum()
        owners.append(best)
    assert owners[0] != owners[1]
    # a single bent rod stays one piece (its tip is the one far point)
    bent = digitize(Sphere((400.0, 600.0, 400.0), 300.0), cell.shape, 10.0)
    for a, b in (
        ((400.0, 600.0, 650.0), (400.0, 600.0, 1100.0)),
        ((400.0, 600.0, 1100.0), (400.0, 950.0, 1400.0)),
    ):
        bent |= digitize(Capsule(a, b, 60.0), cell.shape, 10.0)
    one = separate_filopodia(bent, 10.0, max_radius_nm=100.0, split_at_base=True)
    assert one.max() == 1


def test_min_radius_drops_sheets_but_keeps_rods():
    sp, grid = 10.0, (80, 120, 170)
    body = digitize(Sphere((400.0, 600.0, 400.0), 300.0), grid, sp)
    rod = digitize(Capsule((400.0, 600.0, 650.0), (400.0, 600.0, 1500.0), 60.0), grid, sp)
    fin = np.zeros(grid, bool)
    fin[30:50, 79:81, 60:150] = True  # 20 nm thick (y), 200 wide (z), out of the ball along x
    cell = body | rod | fin
    loose = separate_filopodia(cell, sp, max_radius_nm=100.0)
    assert loose.max() == 2  # the rod and the fin
    kept = separate_filopodia(cell, sp, max_radius_nm=100.0, min_radius_nm=20.0)
    assert kept.max() == 1
    assert (kept[rod & ~body] > 0).mean() > 0.9
    with pytest.raises(ValueError, match="min_radius_nm"):
        separate_filopodia(cell, sp, max_radius_nm=100.0, min_radius_nm=-1.0)


def test_separate_filopodia_without_body_and_bad_radius():
    rod = digitize(Capsule((100.0, 100.0, 100.0), (100.0, 100.0, 900.0), 50.0), (20, 20, 110), 10.0)
    assert separate_filopodia(rod, 10.0, max_radius_nm=100.0).max() == 1
    with pytest.raises(ValueError, match="max_radius_nm"):
        separate_filopodia(rod, 10.0, max_radius_nm=-1.0)


def test_moment_axes_match_measure_objects():
    labels = np.zeros((30, 40, 40), np.uint16)
    rng = np.random.default_rng(3)
    from sxtquant.simulate.shapes import paint

    paint(
        labels, Ellipsoid((150.0, 200.0, 200.0), (120.0, 80.0, 50.0), random_rotation(rng)), 2, 10.0
    )
    paint(labels, Sphere((60.0, 60.0, 60.0), 40.0), 5, 10.0)
    axes = moment_axes(labels, 10.0)
    table = measure_objects(labels, 10.0).set_index("label")
    for label in (2, 5):
        expected = table.loc[label, ["axis_major_nm", "axis_second_nm", "axis_minor_nm"]]
        np.testing.assert_allclose(axes[label], expected.to_numpy(float), rtol=1e-9)
    assert np.isnan(axes[0]).all() and np.isnan(axes[3]).all()
    # a solid ellipsoid's moment axes are its own
    sphere_cov = np.eye(3) * 100.0**2 / 5
    np.testing.assert_allclose(ellipsoid_axes(sphere_cov, 1e-9), [200.0] * 3)


def test_objects_from_mask_chain():
    sp = 10.0
    a, b = two_touching_capsules((sp, sp, sp))
    mask = (a | b).astype(np.uint8) * 255
    mask[0:2, 0:2, 0:2] = 255  # a speck in the corner, on the border
    assert objects_from_mask(mask, sp).max() == 2  # capsules merged + speck
    assert objects_from_mask(mask, sp, separate=True).max() == 3
    assert objects_from_mask(mask, sp, separate=True, min_voxels=100).max() == 2
    assert objects_from_mask(mask, sp, separate=True, exclude_border_objects=True).max() == 2
    # a label volume is kept as labels
    labels = np.zeros((10, 10, 20), np.uint16)
    labels[2:8, 2:8, 2:10] = 4
    labels[2:8, 2:8, 10:18] = 9
    assert objects_from_mask(labels, 1.0).max() == 2
    assert objects_from_mask(labels, 1.0, is_labels=False).max() == 1
