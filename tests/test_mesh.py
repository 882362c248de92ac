"""Meshes: accuracy on digitised spheres, splitting, export round trips, rendering, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sxtquant.io.volumes import write_mask, write_volume
from sxtquant.quantify.mesh import labels_to_meshes, mesh_format, write_meshes
from sxtquant.report.render import render_meshes, render_meshes_png
from tests.conftest import assert_user_error


def ball(shape, center_nm, radius_nm, voxel):
    """Digitised solid sphere (voxel centre inside), voxel centres at index * voxel nm."""
    grids = np.meshgrid(
        *[np.arange(n) * v - c for n, v, c in zip(shape, voxel, center_nm, strict=True)],
        indexing="ij",
        sparse=True,
    )
    return sum(g**2 for g in grids) <= radius_nm**2


@pytest.mark.parametrize(
    ("voxel", "radius"),
    [((10.0, 10.0, 10.0), 100.0), ((20.0, 10.0, 10.0), 110.0), ((15.0, 8.0, 10.0), 120.0)],
)
def test_sphere_mesh_is_watertight_with_true_area_and_volume(voxel, radius):
    shape = (24, 40, 36)
    center = (shape[0] / 2 * voxel[0], shape[1] / 2 * voxel[1], shape[2] / 2 * voxel[2])
    meshes = labels_to_meshes(ball(shape, center, radius, voxel), voxel)
    assert len(meshes) == 1
    mesh = meshes[0]
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    area, volume = 4 * math.pi * radius**2, 4 / 3 * math.pi * radius**3
    assert mesh.area == pytest.approx(area, rel=0.05)
    assert mesh.volume == pytest.approx(volume, rel=0.03)  # positive: normals point out
    # (x, y, z) nm in the frame of the volume
    np.testing.assert_allclose(mesh.centroid, center[::-1], atol=0.2 * min(voxel))
    np.testing.assert_allclose(
        mesh.bounds,
        [np.subtract(center[::-1], radius), np.add(center[::-1], radius)],
        atol=max(voxel),
    )


def test_unsmoothed_staircase_overstates_area():
    """Why smoothing is on by default: the raw marching-cubes surface is too large."""
    voxel = (10.0, 10.0, 10.0)
    mask = ball((30, 30, 30), (150, 150, 150), 100.0, voxel)
    raw = labels_to_meshes(mask, voxel, smooth_iterations=0)[0]
    assert raw.area > 1.06 * 4 * math.pi * 100.0**2
    assert raw.is_watertight


def test_object_at_the_volume_edge_is_closed():
    voxel = (10.0, 10.0, 10.0)
    mask = np.zeros((20, 20, 20), bool)
    mask[:, 5:15, 5:15] = True  # runs through both z faces of the volume
    mesh = labels_to_meshes(mask, voxel, smooth_iterations=0)[0]
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(20 * 10 * 10 * 1000.0, rel=0.03)


def test_two_spheres_give_two_meshes_and_labels_keep_their_value():
    voxel = (10.0, 10.0, 10.0)
    shape = (24, 24, 60)
    a = ball(shape, (120, 120, 120), 80.0, voxel)
    b = ball(shape, (120, 120, 460), 80.0, voxel)
    meshes = labels_to_meshes(a | b, voxel)
    assert len(meshes) == 2
    assert all(m.is_watertight for m in meshes)
    assert sorted(round(m.centroid[0]) for m in meshes) == pytest.approx([120, 460], abs=2)
    assert [m.metadata["name"] for m in meshes] == ["object_1_1", "object_1_2"]

    labels = a.astype(np.uint16) * 7 + b.astype(np.uint16) * 3
    meshes = labels_to_meshes(labels, voxel)
    assert [m.metadata["label"] for m in meshes] == [3, 7]
    assert [m.metadata["name"] for m in meshes] == ["object_3", "object_7"]
    assert meshes[0].centroid[0] == pytest.approx(460, abs=2)
    assert len(labels_to_meshes(a | b, voxel, split=False)) == 1


def test_min_faces_drops_a_speck():
    voxel = (10.0, 10.0, 10.0)
    mask = ball((24, 24, 40), (120, 120, 120), 80.0, voxel)
    mask[12, 12, 32:34] = True  # a 2-voxel speck, far from the sphere
    assert len(labels_to_meshes(mask, voxel, min_faces=0)) == 2
    meshes = labels_to_meshes(mask, voxel, min_faces=50)
    assert len(meshes) == 1
    assert meshes[0].centroid[0] == pytest.approx(120, abs=2)


def test_decimation_keeps_a_closed_surface():
    voxel = (10.0, 10.0, 10.0)
    mask = ball((30, 30, 30), (150, 150, 150), 120.0, voxel)
    full = labels_to_meshes(mask, voxel)[0]
    reduced = labels_to_meshes(mask, voxel, decimate=0.8)[0]
    assert len(reduced.faces) == pytest.approx(0.2 * len(full.faces), rel=0.1)
    assert reduced.is_watertight
    assert reduced.volume == pytest.approx(full.volume, rel=0.02)


def test_gaussian_presmoothing_and_laplacian_option():
    voxel = (20.0, 10.0, 10.0)
    mask = ball((20, 40, 40), (200, 200, 200), 140.0, voxel)
    mesh = labels_to_meshes(mask, voxel, smooth_sigma=0.5, smoothing="laplacian")[0]
    assert mesh.is_watertight
    assert mesh.area == pytest.approx(4 * math.pi * 140.0**2, rel=0.05)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.ones((4, 4), bool), "3D"),
        (np.full((4, 4, 4), 0.5), "non-integral"),
        (-np.ones((4, 4, 4), int), ">= 0"),
    ],
)
def test_bad_volumes_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        labels_to_meshes(bad, 10.0)


def test_bad_options_are_refused():
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError, match="level"):
        labels_to_meshes(mask, 10.0, level=1.0)
    with pytest.raises(ValueError, match="decimate"):
        labels_to_meshes(mask, 10.0, decimate=1.0)
    with pytest.raises(ValueError, match="voxel size"):
        labels_to_meshes(mask, (10.0, 0.0, 10.0))


@pytest.fixture(scope="module")
def two_objects():
    voxel = (20.0, 10.0, 10.0)
    shape = (16, 30, 50)
    labels = ball(shape, (160, 150, 120), 90.0, voxel).astype(np.uint16)
    labels[ball(shape, (160, 150, 360), 70.0, voxel)] = 5
    return labels_to_meshes(labels, voxel), voxel


@pytest.mark.parametrize("suffix", [".stl", ".ply", ".obj", ".glb", ".vtk", ".vtp"])
def test_every_format_round_trips(tmp_path, two_objects, suffix):
    import pyvista as pv
    import trimesh

    meshes, _ = two_objects
    path = write_meshes(meshes, tmp_path / f"objects{suffix}")
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    n_vertices = sum(len(m.vertices) for m in meshes)
    n_faces = sum(len(m.faces) for m in meshes)
    bounds = np.array(
        [np.min([m.bounds[0] for m in meshes], 0), np.max([m.bounds[1] for m in meshes], 0)]
    )
    if mesh_format(path) == "vtk":
        read = pv.read(path)
        assert read.n_points == n_vertices
        assert read.n_cells == n_faces
        assert sorted(set(read.cell_data["label"].tolist())) == [1, 5]
        got = np.reshape(read.bounds, (3, 2)).T
    else:
        loaded = trimesh.load(path)
        if isinstance(loaded, trimesh.Scene):
            assert sorted(loaded.geometry) == ["object_1", "object_5"]
            loaded = loaded.to_mesh()
        assert len(loaded.vertices) == n_vertices
        assert len(loaded.faces) == n_faces
        got = loaded.bounds
    np.testing.assert_allclose(got, bounds, atol=1e-2)  # float32 files: nm to 0.01
    assert bounds[0, 2] < 160 < bounds[1, 2]  # z in the third column, nm


def test_write_meshes_refuses_unknown_suffix_and_empty(tmp_path, two_objects):
    meshes, _ = two_objects
    with pytest.raises(ValueError, match="unknown mesh file type"):
        write_meshes(meshes, tmp_path / "objects.fbx")
    with pytest.raises(ValueError, match="no meshes"):
        write_meshes([], tmp_path / "objects.stl")
    assert list(tmp_path.iterdir()) == []


def test_png_renders_headless(tmp_path, two_objects):
    from PIL import Image

    meshes, _ = two_objects
    path = render_meshes_png(meshes, tmp_path / "objects.png", seed=3)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100
    coloured = (np.abs(image.astype(int) - 255).sum(axis=2) > 30).mean()
    assert 0.02 < coloured < 0.9
    # the seed decides the colours
    a = render_meshes(meshes, seed=1, max_faces=1000)
    a.canvas.draw()
    b = render_meshes(meshes, seed=2, max_faces=1000)
    b.canvas.draw()
    assert not np.array_equal(
        np.asarray(a.canvas.buffer_rgba()), np.asarray(b.canvas.buffer_rgba())
    )


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def mask_file(tmp_path):
    voxel = (20.0, 10.0, 10.0)
    shape = (16, 30, 50)
    mask = ball(shape, (160, 150, 120), 90.0, voxel) | ball(shape, (160, 150, 360), 70.0, voxel)
    return write_mask(tmp_path / "cell.mask.tif", mask, voxel), voxel


def test_cli_writes_meshes_and_rendering(run_cli, tmp_path, mask_file):
    import trimesh

    path, _ = mask_file
    out = tmp_path / "out" / "cell.glb"
    png = tmp_path / "out" / "cell.png"
    result = run_cli("mesh", path, "-o", out, "--render", png, "--quiet")
    assert result.returncode == 0, result.stderr
    scene = trimesh.load(out)
    assert sorted(scene.geometry) == ["object_1_1", "object_1_2"]
    assert png.stat().st_size > 1000
    assert "2 objects" in result.stdout


def test_cli_format_option_and_voxel_size_override(run_cli, tmp_path, mask_file):
    import pyvista as pv

    path, _ = mask_file
    result = run_cli(
        "mesh", path, "-o", tmp_path / "cell", "--format", "vtk", "--voxel-size", "1", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    read = pv.read(tmp_path / "cell.vtk")
    assert read.bounds[1] < 60  # x in nm at 1 nm voxels: the volume is 50 voxels wide


def test_cli_separate_splits_touching_spheres(run_cli, tmp_path):
    import trimesh

    voxel = (10.0, 10.0, 10.0)
    shape = (24, 24, 44)
    mask = ball(shape, (120, 120, 120), 90.0, voxel) | ball(shape, (120, 120, 290), 90.0, voxel)
    path = write_mask(tmp_path / "touching.tif", mask, voxel)
    result = run_cli("mesh", path, "-o", tmp_path / "one.ply", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "1 objects" in result.stdout
    result = run_cli("mesh", path, "-o", tmp_path / "two.glb", "--separate", "--quiet")
    assert result.returncode == 0, result.stderr
    scene = trimesh.load(tmp_path / "two.glb")
    assert sorted(scene.geometry) == ["object_1", "object_2"]
    centres = sorted(round(g.centroid[0] / 10) * 10 for g in scene.geometry.values())
    assert len(centres) == 2
    assert centres[0] < 200 < centres[1]


def test_cli_bad_input_exit_2_and_no_output(run_cli, tmp_path, mask_file):
    path, voxel = mask_file
    out = tmp_path / "o.stl"

    def no_output():
        assert not out.exists()
        assert not any(p.name.startswith(".o.stl") for p in tmp_path.iterdir())

    assert_user_error(run_cli("mesh", tmp_path / "missing.tif", "-o", out), "missing.tif")
    no_output()
    empty = write_mask(tmp_path / "empty.tif", np.zeros((4, 8, 8), bool), voxel)
    assert_user_error(run_cli("mesh", empty, "-o", out), "no foreground")
    no_output()
    nosize = write_volume(tmp_path / "nosize.tif", np.full((4, 8, 8), 255, np.uint8))
    assert_user_error(run_cli("mesh", nosize, "-o", out), "--voxel-size")
    no_output()
    prob = write_volume(tmp_path / "prob.tif", np.full((4, 8, 8), 0.5, np.float32), voxel)
    assert_user_error(run_cli("mesh", prob, "-o", out), "non-integral")
    no_output()
    assert_user_error(run_cli("mesh", path, "-o", tmp_path / "o.fbx"), "o.fbx")
    assert_user_error(run_cli("mesh", path, "-o", out, "--format", "ply"), "--format")
    assert_user_error(run_cli("mesh", path, "-o", out, "--decimate", "1.5"), "--decimate")
    assert_user_error(run_cli("mesh", path, "-o", out, "--min-faces", "100000"), "--min-faces")
    no_output()
    assert_user_error(run_cli("mesh", path, "-o", out, "--render", tmp_path / "x.jpg"), "x.jpg")
    no_output()


def test_cli_help_documents_options(run_cli):
    result = run_cli("mesh", "--help")
    assert result.returncode == 0
    for option in ("--voxel-size", "--format", "--min-faces", "--smooth", "--decimate", "--render"):
        assert option in result.stdout
    assert "(x, y, z)" in result.stdout
