"""`sxtquant quantify` through the command line, as a user runs it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sxtquant.io import read_volume, write_volume
from sxtquant.morphology import COLUMNS
from sxtquant.shapes import Capsule, Sphere, digitize, paint
from tests.conftest import assert_user_error

VOXEL = (20.0, 10.0, 10.0)
GRID = (40, 80, 120)
SPHERES = (Sphere((400.0, 400.0, 300.0), 150.0), Sphere((400.0, 400.0, 800.0), 200.0))


def two_spheres_mask() -> np.ndarray:
    mask = np.zeros(GRID, np.uint8)
    for ball in SPHERES:
        mask[digitize(ball, GRID, VOXEL)] = 255
    return mask


@pytest.fixture
def mask_tif(tmp_path):
    path = tmp_path / "cell.mask.tif"
    write_volume(path, two_spheres_mask(), VOXEL)
    return path


def test_two_spheres_table(run_cli, mask_tif, tmp_path):
    out = tmp_path / "objects.csv"
    result = run_cli("quantify", mask_tif, "-o", out, "--quiet")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == list(COLUMNS)
    assert table["label"].tolist() == [1, 2]
    # components are numbered in scan order (z first): the larger sphere comes first
    by_size = sorted(SPHERES, key=lambda ball: -ball.volume_nm3)
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
    labels = np.zeros(GRID, np.uint16)
    for label, ball in zip((7, 3), SPHERES, strict=True):
        paint(labels, ball, label, VOXEL)
    labels[0:3, 0:3, 0:3] = 12  # a small object on the border
    src = tmp_path / "labels.tif"
    write_volume(src, labels)  # no voxel size in the file
    out = tmp_path / "t.csv"
    labels_out = tmp_path / "objects.tif"
    result = run_cli(
        "quantify",
        src,
        "--voxel-size",
        *map(str, VOXEL),
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
    assert saved.voxel_size_nm == pytest.approx(VOXEL)
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


def test_filopodia_tables_beside_the_table(run_cli, tmp_path):
    pytest.importorskip("sxtquant.filopodia")
    spacing = 10.0
    grid = (80, 80, 170)
    cell = digitize(Sphere((400.0, 400.0, 400.0), 300.0), grid, spacing)
    cell |= digitize(Capsule((400.0, 400.0, 650.0), (400.0, 400.0, 1500.0), 60.0), grid, spacing)
    src = tmp_path / "cell.tif"
    write_volume(src, cell.astype(np.uint8) * 255, spacing)
    out = tmp_path / "cell_objects.csv"
    result = run_cli("quantify", src, "--filopodia", "-o", out)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cell_objects.filopodia.csv").exists()
    assert (tmp_path / "cell_objects.filopodia_summary.csv").exists()


def test_2d_input_is_refused(run_cli, tmp_path):
    src = tmp_path / "slice.tif"
    write_volume(src, two_spheres_mask()[20], VOXEL)
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
