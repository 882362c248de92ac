"""measure_objects against digitised analytic shapes (sxtquant.shapes) and its edge cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sxtquant.morphology import COLUMNS, measure_objects, measure_slices
from sxtquant.shapes import (
    Capsule,
    Cylinder,
    Ellipsoid,
    Sphere,
    digitize,
    ellipse_perimeter,
    paint,
    random_rotation,
)

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
    # move into a grid with a margin of 2-3 voxels, at a random sub-voxel offset
    lo, _ = shape.bounds_nm()
    offset = -lo + (2.0 + rng.uniform(0, 1, 3)) * np.asarray(spacing)
    if isinstance(shape, Ellipsoid):
        shape = dataclasses.replace(shape, center=tuple(np.add(shape.center, offset)))
    else:
        shape = dataclasses.replace(
            shape, p0=tuple(np.add(shape.p0, offset)), p1=tuple(np.add(shape.p1, offset))
        )
    _, hi = shape.bounds_nm()
    grid = tuple(int(np.ceil(h / s)) + 3 for h, s in zip(hi, spacing, strict=True))
    return shape, grid


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
