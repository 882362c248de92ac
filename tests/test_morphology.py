"""measure_objects against digitised analytic shapes (sxtquant.simulate.shapes), edge cases, and
the `sxtquant quantify` verb that writes its table (through the command line, as a user does)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sxtquant.io.volumes import read_volume, write_volume
from sxtquant.quantify.morphology import COLUMNS, measure_objects, measure_slices
from sxtquant.simulate.shapes import (
    Capsule,
    Cylinder,
    Ellipsoid,
    Sphere,
    digitize,
    ellipse_perimeter,
    paint,
    place,
    random_rotation,
)
from tests.conftest import assert_user_error

SPACINGS = [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 1.3, 1.3), (3.0, 1.0, 1.0)]
KINDS = ["sphere", "ellipsoid", "capsule", "cylinder"]
# Contract tolerances (DESIGN.md)
TOL = {"volume": 0.03, "area": 0.05, "axes": 0.05, "perimeter": 0.05}


def make_shape(kind: str, rng: np.random.Generator, spacing, *, radius_voxels: float = 5.0):
    """A randomly oriented shape whose smallest radius is >= radius_voxels x coarsest spacing."""
    r = radius_voxels * max(spacing) * rng.uniform(1.0, 1.5)
    rot = random_rotation(rng)
    if kind == "sphere":
        shape = Sphere((0.0, 0.0, 0.0), r)
    elif kind == "ellipsoid":
        semi = (r * rng.uniform(1.5, 2.5), r * rng.uniform(1.0, 1.5), r)
        shape = Ellipsoid((0.0, 0.0, 0.0), semi, rot)
    else:
        d = rot[:, 0] * r * rng.uniform(2.0, 4.0)
        cls = Capsule if kind == "capsule" else Cylinder
        shape = cls(tuple(-d / 2), tuple(d / 2), r)
    # into a grid with a margin of 2-3 voxels, at a random sub-voxel offset
    return place(shape, spacing, offset_voxels=rng.uniform(0, 1, 3))


def rel(measured: float, truth: float) -> float:
    return abs(measured / truth - 1.0)


@pytest.mark.parametrize("spacing", SPACINGS, ids=lambda s: "x".join(f"{v:g}" for v in s))
@pytest.mark.parametrize("kind", KINDS)
def test_accuracy_on_analytic_shapes(kind, spacing):
    rng = np.random.default_rng([KINDS.index(kind), SPACINGS.index(spacing)])
    for _ in range(2):
        shape, grid = make_shape(kind, rng, spacing)
        mask = digitize(shape, grid, spacing)
        row = measure_objects(mask.astype(np.uint8), spacing).iloc[0]

        assert rel(row.volume_nm3, shape.volume_nm3) < TOL["volume"]
        assert rel(row.surface_area_nm2, shape.surface_area_nm2) < TOL["area"]
        assert row.surface_to_volume_per_um == pytest.approx(
            row.surface_area_nm2 / row.volume_nm3 * 1e3
        )
        measured_axes = (row.axis_major_nm, row.axis_second_nm, row.axis_minor_nm)
        for measured, truth in zip(measured_axes, shape.axes_nm, strict=True):
            assert rel(measured, truth) < TOL["axes"], (measured_axes, shape.axes_nm)

        zs = np.flatnonzero(mask.any(axis=(1, 2)))
        sections = [shape.section(z * spacing[0]) for z in zs]
        sections = [s for s in sections if s is not None]
        true_perimeter = np.mean([s.perimeter_nm for s in sections])
        assert rel(row.slice_perimeter_nm_mean, true_perimeter) < TOL["perimeter"]
        true_first = np.mean([s.first_axis_nm for s in sections])
        true_second = np.mean([s.second_axis_nm for s in sections])
        assert rel(row.slice_first_axis_nm_mean, true_first) < TOL["axes"]
        assert rel(row.slice_second_axis_nm_mean, true_second) < TOL["axes"]
        assert row.slice_perimeter_nm_sd > 0
        assert not row.touches_border


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 1.0, 1.0), (1.0, 1.0, 1.6)])
def test_slice_perimeter_against_ramanujan_per_slice(spacing):
    """Each cross-section of a tilted ellipsoid is an ellipse: compare slice by slice."""
    rng = np.random.default_rng(7)
    smin = min(spacing[1:])
    shape = Ellipsoid(
        (60.0, 60.0, 60.0), (40.0, 25.0, 15.0 * max(spacing) / 2), random_rotation(rng)
    )
    grid = tuple(int(120 / s) for s in spacing)
    mask = digitize(shape, grid, spacing)
    table = measure_slices(mask, spacing)
    checked = 0
    for z, first, second, perimeter in table[
        ["z", "first_axis_nm", "second_axis_nm", "perimeter_nm"]
    ].itertuples(index=False):
        section = shape.section(z * spacing[0])
        if section is None or section.second_axis_nm < 10 * smin:  # radius >= 5 pixels
            continue
        semi = (section.first_axis_nm / 2, section.second_axis_nm / 2)
        assert rel(perimeter, ellipse_perimeter(*semi)) < TOL["perimeter"], z
        assert rel(first, section.first_axis_nm) < TOL["axes"], z
        assert rel(second, section.second_axis_nm) < TOL["axes"], z
        checked += 1
    assert checked >= 5


def test_large_sphere():
    labels = np.zeros((64, 64, 64), np.uint16)
    ball = Sphere((32.2, 31.7, 32.4), 25.0)
    paint(labels, ball, 1, 1.0)
    row = measure_objects(labels, 1.0).iloc[0]
    assert rel(row.volume_nm3, ball.volume_nm3) < 0.005
    assert rel(row.surface_area_nm2, ball.surface_area_nm2) < 0.03
    assert rel(row.axis_major_nm, 50.0) < 0.01
    assert rel(row.axis_minor_nm, 50.0) < 0.01


def test_columns_units_and_several_labels():
    spacing = (20.0, 10.0, 10.0)
    labels = np.zeros((30, 60, 90), np.uint32)
    balls = {3: Sphere((300.0, 300.0, 250.0), 120.0), 9: Sphere((300.0, 300.0, 600.0), 150.0)}
    for label, ball in balls.items():
        paint(labels, ball, label, spacing)
    table = measure_objects(labels, spacing)
    assert list(table.columns) == list(COLUMNS)
    assert table["label"].tolist() == [3, 9]
    assert table["voxels"].tolist() == [(labels == 3).sum(), (labels == 9).sum()]
    assert table["touches_border"].dtype == bool
    for row in table.itertuples():
        ball = balls[row.label]
        assert row.volume_nm3 == row.voxels * 2000.0
        assert rel(row.surface_area_nm2, ball.surface_area_nm2) < TOL["area"]
        # SA:V of a sphere is 3/r; in µm⁻¹ with r in nm: 3000/r
        assert rel(row.surface_to_volume_per_um, 3e3 / ball.semi_axes[0]) < 0.06


def test_float_and_tuple_voxel_size_agree():
    labels = digitize(Sphere((40.0, 40.0, 40.0), 30.0), (20, 20, 20), 4.0).astype(np.uint8)
    a = measure_objects(labels, 4.0)
    b = measure_objects(labels, (4.0, 4.0, 4.0))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
def test_any_integer_dtype(dtype):
    labels = np.zeros((12, 12, 12), dtype)
    labels[2:6, 2:6, 2:6] = 1
    labels[7:10, 7:10, 7:10] = 5
    table = measure_objects(labels, 2.0)
    assert table["label"].tolist() == [1, 5]
    assert table["voxels"].tolist() == [64, 27]


def test_bool_mask_is_one_object():
    mask = np.zeros((10, 10, 10), bool)
    mask[3:7, 3:7, 3:7] = True
    table = measure_objects(mask, 1.0)
    assert table["label"].tolist() == [1]
    assert table["voxels"].tolist() == [64]


def test_empty_labels_give_empty_table_with_columns():
    table = measure_objects(np.zeros((5, 6, 7), np.uint16), 1.0)
    assert table.empty
    assert list(table.columns) == list(COLUMNS)
    table = measure_objects(np.zeros((0, 6, 7), np.uint16), 1.0)
    assert table.empty and list(table.columns) == list(COLUMNS)


def test_single_slice_object_has_nan_slice_sd():
    labels = np.zeros((5, 20, 20), np.uint8)
    labels[2, 5:15, 5:15] = 1
    row = measure_objects(labels, (5.0, 2.0, 2.0)).iloc[0]
    assert row.voxels == 100
    assert np.isnan(row.slice_first_axis_nm_sd)
    assert np.isnan(row.slice_perimeter_nm_sd)
    assert row.slice_first_axis_nm_mean > 0
    assert rel(row.slice_perimeter_nm_mean, 80.0) < 0.15  # a 20 nm square, corners rounded
    assert row.surface_area_nm2 > 0


def test_single_voxel_object():
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[2, 2, 2] = 1
    row = measure_objects(labels, 1.0).iloc[0]
    assert row.voxels == 1
    assert row.volume_nm3 == 1.0
    assert np.isfinite(row.surface_area_nm2) and row.surface_area_nm2 > 0
    assert np.isfinite(row.axis_minor_nm)


def test_touches_border_and_exclude_border():
    labels = np.zeros((20, 30, 30), np.uint16)
    labels[0:5, 10:15, 10:15] = 1  # touches z = 0
    labels[8:12, 10:15, 25:30] = 2  # touches x = end
    labels[8:12, 10:15, 10:15] = 3  # inside
    table = measure_objects(labels, 1.0)
    assert table.set_index("label")["touches_border"].to_dict() == {1: True, 2: True, 3: False}
    inner = measure_objects(labels, 1.0, exclude_border=True)
    assert inner["label"].tolist() == [3]
    assert list(inner.columns) == list(COLUMNS)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((10, 10), np.uint8), "3D"),
        (np.zeros((2, 3, 4, 5), np.uint8), "3D"),
        (np.zeros((4, 4, 4), np.float32), "integer"),
        (np.full((4, 4, 4), -1, np.int16), ">= 0"),
    ],
)
def test_bad_labels_raise(labels, match):
    with pytest.raises(ValueError, match=match):
        measure_objects(labels, 1.0)


@pytest.mark.parametrize("voxel", [0.0, -1.0, (1.0, 2.0), float("nan"), (1.0, 1.0, float("inf"))])
def test_bad_voxel_size_raises(voxel):
    with pytest.raises(ValueError, match="voxel size"):
        measure_objects(np.ones((3, 3, 3), np.uint8), voxel)


# --------------------------------------------------------------------------- sxtquant quantify

CLI_VOXEL = (20.0, 10.0, 10.0)
CLI_GRID = (40, 80, 120)
CLI_SPHERES = (Sphere((400.0, 400.0, 300.0), 150.0), Sphere((400.0, 400.0, 800.0), 200.0))


def two_spheres_mask() -> np.ndarray:
    mask = np.zeros(CLI_GRID, np.uint8)
    for ball in CLI_SPHERES:
        mask[digitize(ball, CLI_GRID, CLI_VOXEL)] = 255
    return mask


@pytest.fixture
def mask_tif(tmp_path):
    path = tmp_path / "cell.mask.tif"
    write_volume(path, two_spheres_mask(), CLI_VOXEL)
    return path


def test_two_spheres_table(run_cli, mask_tif, tmp_path):
    out = tmp_path / "objects.csv"
    result = run_cli("quantify", mask_tif, "-o", out, "--quiet")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == list(COLUMNS)
    assert table["label"].tolist() == [1, 2]
    # components are numbered in scan order (z first): the larger sphere comes first
    by_size = sorted(CLI_SPHERES, key=lambda ball: -ball.volume_nm3)
    for row, ball in zip(table.itertuples(), by_size, strict=True):
        r = ball.semi_axes[0]
        assert row.volume_nm3 == pytest.approx(ball.volume_nm3, rel=0.03)
        assert row.surface_area_nm2 == pytest.approx(ball.surface_area_nm2, rel=0.05)
        assert row.surface_to_volume_per_um == pytest.approx(3e3 / r, rel=0.06)
        assert row.axis_major_nm == pytest.approx(2 * r, rel=0.05)
        assert row.axis_minor_nm == pytest.approx(2 * r, rel=0.05)
        assert not row.touches_border
    assert "2 objects" in result.stdout


def test_label_volume_voxel_override_and_labels_out(run_cli, tmp_path):
    labels = np.zeros(CLI_GRID, np.uint16)
    for label, ball in zip((7, 3), CLI_SPHERES, strict=True):
        paint(labels, ball, label, CLI_VOXEL)
    labels[0:3, 0:3, 0:3] = 12  # a small object on the border
    src = tmp_path / "labels.tif"
    write_volume(src, labels)  # no voxel size in the file
    out = tmp_path / "t.csv"
    labels_out = tmp_path / "objects.tif"
    result = run_cli(
        "quantify",
        src,
        "--voxel-size",
        *map(str, CLI_VOXEL),
        "--exclude-border",
        "--min-voxels",
        "10",
        "--labels-out",
        labels_out,
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert len(table) == 2
    saved = read_volume(labels_out)
    assert saved.data.dtype == np.uint16
    assert saved.voxel_size_nm == pytest.approx(CLI_VOXEL)
    assert sorted(np.unique(saved.data).tolist()) == [0, 1, 2]
    # the labels were kept as given (7 before 3 in the volume's order: renumbered 1..n)
    for row in table.itertuples():
        assert row.voxels == np.sum(saved.data == row.label)


def test_separate_and_fill(run_cli, tmp_path):
    spacing = (10.0, 10.0, 10.0)
    grid = (40, 60, 100)
    a = Capsule((200.0, 240.0, 200.0), (200.0, 240.0, 800.0), 80.0)
    b = Capsule((200.0, 390.0, 300.0), (200.0, 390.0, 900.0), 80.0)
    mask = digitize(a, grid, spacing) | digitize(b, grid, spacing)
    src = tmp_path / "touching.tif"
    write_volume(src, mask.astype(np.uint8) * 255, spacing)
    merged, split = tmp_path / "merged.csv", tmp_path / "split.csv"
    assert run_cli("quantify", src, "-o", merged).returncode == 0
    assert run_cli("quantify", src, "--separate", "-o", split).returncode == 0
    assert len(pd.read_csv(merged)) == 1
    assert len(pd.read_csv(split)) == 2

    # membranes: a hollow shell is filled into a solid ball with --fill
    ball = Sphere((300.0, 300.0, 300.0), 200.0)
    inner = Sphere((300.0, 300.0, 300.0), 170.0)
    grid = (60, 60, 60)
    shell = digitize(ball, grid, spacing) & ~digitize(inner, grid, spacing)
    src = tmp_path / "membrane.tif"
    write_volume(src, shell.astype(np.uint8) * 255, spacing)
    out = tmp_path / "filled.csv"
    assert run_cli("quantify", src, "--fill", "-o", out).returncode == 0
    table = pd.read_csv(out)
    assert len(table) == 1
    assert table["volume_nm3"][0] == pytest.approx(ball.volume_nm3, rel=0.03)


def _cell_with_a_filopodium(tmp_path, spacing: float):
    """A ball (r 300 nm) with one capsule (r 60 nm) along x, saved as a 0/255 TIFF."""
    grid = (80, 80, 170)
    cell = digitize(Sphere((400.0, 400.0, 400.0), 300.0), grid, spacing)
    cell |= digitize(Capsule((400.0, 400.0, 650.0), (400.0, 400.0, 1500.0), 60.0), grid, spacing)
    src = tmp_path / "cell.tif"
    write_volume(src, cell.astype(np.uint8) * 255, spacing)
    return cell, src


def test_filopodia_tables_beside_the_table(run_cli, tmp_path):
    pytest.importorskip("sxtquant.quantify.filopodia")
    spacing = 10.0
    _, src = _cell_with_a_filopodium(tmp_path, spacing)
    out = tmp_path / "cell_objects.csv"
    result = run_cli("quantify", src, "--filopodia", "-o", out)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cell_objects.filopodia.csv").exists()
    assert (tmp_path / "cell_objects.filopodia_summary.csv").exists()
    assert not (tmp_path / "cell_objects.filopodia.tif").exists()  # only with --labels-out


def test_filopodia_labels_are_numbered_like_the_filopodia_table(run_cli, tmp_path):
    spacing = 10.0
    cell, src = _cell_with_a_filopodium(tmp_path, spacing)
    out = tmp_path / "cell_objects.csv"
    args = ("--filopodia", "--labels-out", tmp_path / "objects.tif", "-o", out)
    result = run_cli("quantify", src, *args)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "cell_objects.filopodia.csv")
    assert len(table) == 1
    volume = read_volume(tmp_path / "cell_objects.filopodia.tif")
    labels = np.asarray(volume.data)
    assert tuple(volume.voxel_size_nm) == pytest.approx((spacing,) * 3)
    assert set(np.unique(labels)) - {0} == set(table["label"])
    for row in table.to_dict("records"):
        mine = labels == row["label"]
        assert mine.sum() == row["voxels"]
        assert cell[mine].all()  # a part of the cell
        # the filopodium is the capsule, beyond the body (x from 700 nm to 1560 nm)
        assert 900.0 < row["centroid_x_nm"] < 1300.0
        assert row["centroid_x_nm"] == pytest.approx(np.argwhere(mine)[:, 2].mean() * spacing)


def test_2d_input_is_refused(run_cli, tmp_path):
    src = tmp_path / "slice.tif"
    write_volume(src, two_spheres_mask()[20], CLI_VOXEL)
    out = tmp_path / "t.csv"
    result = run_cli("quantify", src, "-o", out)
    assert_user_error(result, "slice.tif", "3D measurements require 3D input")
    assert not out.exists()


def test_missing_voxel_size_is_refused(run_cli, tmp_path):
    src = tmp_path / "novoxel.tif"
    write_volume(src, two_spheres_mask())
    out = tmp_path / "t.csv"
    result = run_cli("quantify", src, "-o", out)
    assert_user_error(result, "novoxel.tif", "--voxel-size")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--min-voxels", "-1"], "--min-voxels"),
        (["--voxel-size", "0"], "--voxel-size"),
        (["--voxel-size", "1", "2"], "--voxel-size"),
        (["--labels-out", "labels.xyz"], "labels.xyz"),
    ],
)
def test_bad_options_exit_2_without_output(run_cli, mask_tif, tmp_path, extra, fragment):
    out = tmp_path / "t.csv"
    result = run_cli("quantify", mask_tif, "-o", out, *extra, cwd=tmp_path)
    assert_user_error(result, fragment)
    assert not out.exists()


def test_missing_and_non_integral_inputs(run_cli, tmp_path):
    out = tmp_path / "t.csv"
    assert_user_error(run_cli("quantify", tmp_path / "nope.tif", "-o", out), "nope.tif")
    prob = tmp_path / "prob.tif"
    write_volume(prob, np.full((4, 8, 8), 0.5, np.float32), 10.0)
    assert_user_error(run_cli("quantify", prob, "-o", out), "prob.tif", "non-integral")
    assert not out.exists()


def test_empty_mask_gives_header_only_table(run_cli, tmp_path):
    src = tmp_path / "empty.tif"
    write_volume(src, np.zeros((4, 8, 8), np.uint8), 10.0)
    out = tmp_path / "t.csv"
    result = run_cli("quantify", src, "-o", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert table.empty and list(table.columns) == list(COLUMNS)


@pytest.mark.parametrize("spacing", [(10.0, 10.0, 10.0), (25.0, 10.0, 8.0)])
def test_centroid_is_exact_on_symmetric_shapes(spacing):
    """A box of voxels and a sphere centred on a voxel centre: the centroid is their
    centre, in nm from voxel (0, 0, 0), also for anisotropic voxels."""
    labels = np.zeros((30, 60, 70), dtype=np.uint16)
    labels[3:10, 5:22, 40:61] = 1  # centre index (6, 13, 50)
    centre = tuple(c * s for c, s in zip((18, 35, 20), spacing, strict=True))
    paint(labels, Sphere(centre, 80.0), 2, spacing)
    table = measure_objects(labels, spacing).set_index("label")
    got = table[["centroid_z_nm", "centroid_y_nm", "centroid_x_nm"]].to_numpy()
    expected = [[6 * spacing[0], 13 * spacing[1], 50 * spacing[2]], list(centre)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_centroid_of_an_asymmetric_object_is_its_voxel_mean():
    rng = np.random.default_rng(3)
    labels = (rng.random((12, 20, 16)) < 0.3).astype(np.uint8)
    labels[:, :, :3] = 0  # the object does not start at the volume's corner
    spacing = (30.0, 9.0, 11.0)
    row = measure_objects(labels, spacing).iloc[0]
    mean = np.argwhere(labels).mean(axis=0) * np.asarray(spacing)
    got = row[["centroid_z_nm", "centroid_y_nm", "centroid_x_nm"]].to_numpy(float)
    np.testing.assert_allclose(got, mean, rtol=1e-12)
