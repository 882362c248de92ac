"""Cells and organelles from region probabilities (sxtquant.quantify.regions and the CLI).

The probabilities are soft versions of known shapes (indicator smoothed by a small
Gaussian, plus noise): an ellipsoidal cell with two capsule filopodia and three
spherical organelles, two of which touch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from sxtquant.io import read_volume, write_probability, write_volume
from sxtquant.quantify.filopodia import find_filopodia
from sxtquant.quantify.morphology import COLUMNS
from sxtquant.quantify.regions import (
    cell_mask_from_probability,
    cell_objects,
    measure_cell_objects,
    objects_from_regions,
    organelles_from_probability,
)
from sxtquant.simulate.shapes import Capsule, Ellipsoid, Sphere, digitize
from tests.conftest import assert_user_error

VOXEL = 10.0
GRID = (48, 128, 176)
BODY = Ellipsoid((240.0, 680.0, 760.0), (180.0, 280.0, 360.0))
FILOPODIA = (
    Capsule((240.0, 680.0, 1000.0), (240.0, 680.0, 1590.0), 60.0),  # along +x
    Capsule((240.0, 520.0, 640.0), (240.0, 70.0, 1000.0), 60.0),  # oblique, -y +x
)
ORGANELLES = (  # the first two touch
    Sphere((240.0, 680.0, 560.0), 100.0),
    Sphere((240.0, 680.0, 740.0), 80.0),
    Sphere((240.0, 840.0, 900.0), 70.0),
)


def soft(indicator, rng, *, sigma=1.0, noise=0.05) -> np.ndarray:
    """A probability map like a network's: smoothed indicator plus noise, in [0, 1]."""
    p = ndimage.gaussian_filter(indicator.astype(np.float32), sigma)
    p += rng.normal(0.0, noise, indicator.shape).astype(np.float32)
    return np.clip(p, 0.0, 1.0)


def dice(a, b) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def protruding_length(capsule, body) -> float:
    p0, p1 = np.asarray(capsule.p0, float), np.asarray(capsule.p1, float)
    t = np.linspace(0.0, 1.0, 20001)
    inside = body.sdf(p0 + t[:, None] * (p1 - p0)) <= 0
    exit_point = p0 + t[np.flatnonzero(inside)[-1]] * (p1 - p0)
    return float(np.linalg.norm(p1 - exit_point) + capsule.radius)


@pytest.fixture(scope="module")
def cell():
    rng = np.random.default_rng(7)
    truth = digitize(BODY, GRID, VOXEL)
    for capsule in FILOPODIA:
        truth |= digitize(capsule, GRID, VOXEL)
    organelles = [digitize(o, GRID, VOXEL) for o in ORGANELLES]
    cell_p = soft(truth, rng)
    organelle_p = soft(np.any(organelles, axis=0), rng)
    objects = objects_from_regions(
        cell_p, VOXEL, organelle_probability=organelle_p, max_radius_nm=80.0
    )
    return {
        "truth": truth,
        "organelles": organelles,
        "cell_p": cell_p,
        "organelle_p": organelle_p,
        "objects": objects,
    }


def test_cell_mask_is_the_true_cell(cell):
    mask = cell_mask_from_probability(cell["cell_p"])
    assert mask.dtype == bool
    assert dice(mask, cell["truth"]) > 0.98
    assert dice(cell["objects"].cell_labels > 0, cell["truth"]) > 0.98


def test_three_organelles_two_of_them_touching(cell):
    objects = cell["objects"]
    assert objects.n_organelles == 3
    first = objects.n_cells + objects.n_filopodia + 1
    found = [objects.organelle_labels == label for label in range(first, first + 3)]
    iou = np.array([[(f & t).sum() / (f | t).sum() for t in cell["organelles"]] for f in found])
    # one to one, each matching its true organelle
    assert sorted(iou.argmax(axis=1).tolist()) == [0, 1, 2]
    assert (iou.max(axis=1) > 0.8).all()
    assert (np.sort(iou, axis=1)[:, -2] == 0).all()  # touching ones do not share voxels


def test_organelles_alone_and_restricted_to_the_cell(cell):
    labels = organelles_from_probability(cell["organelle_p"], voxel_size_nm=VOXEL)
    assert int(labels.max()) == 3
    around = digitize(Sphere(ORGANELLES[2].center, 90.0), GRID, VOXEL)  # holds only the third
    labels = organelles_from_probability(cell["organelle_p"], voxel_size_nm=VOXEL, cell_mask=around)
    assert int(labels.max()) == 1
    assert ((labels > 0) & cell["organelles"][2]).sum() > 0.8 * cell["organelles"][2].sum()


def test_filopodia_and_their_lengths(cell):
    objects = cell["objects"]
    assert objects.n_cells == 1 and objects.n_filopodia == 2
    per = objects.filopodia.sort_values("centroid_y_nm")
    ideal, _ = find_filopodia(cell["truth"], VOXEL, max_radius_nm=80.0)
    ideal = ideal.sort_values("centroid_y_nm")
    for capsule, row, exact in zip(
        FILOPODIA[::-1], per.itertuples(), ideal.itertuples(), strict=True
    ):
        assert row.length_nm == pytest.approx(protruding_length(capsule, BODY), rel=0.06)
        assert row.length_nm == pytest.approx(exact.length_nm, rel=0.03)
        assert row.radius_nm == pytest.approx(capsule.radius, rel=0.05)
    # the filopodia labels are those of the table
    assert set(np.unique(objects.filopodia_labels)) - {0} == set(objects.filopodia["label"])


def test_table_has_the_contract_columns_and_whole_bodies(cell):
    objects = cell["objects"]
    table = measure_cell_objects(objects, VOXEL)
    assert list(table.columns) == list(COLUMNS)
    assert table["label"].tolist() == [1, 2, 3, 4, 5, 6]
    assert objects.classes() == ("cell", "filopodium", "filopodium") + ("organelle",) * 3
    assert objects.summary() == "1 cell (1), 2 filopodia (2-3), 3 organelles (4-6)"
    body = table.iloc[0]
    # measured whole, organelles included: about the ellipsoid's volume
    assert body["volume_nm3"] == pytest.approx(BODY.volume_nm3, rel=0.05)
    volumes = sorted(table.iloc[3:]["volume_nm3"])
    for measured, organelle in zip(volumes, sorted(o.volume_nm3 for o in ORGANELLES), strict=True):
        assert measured == pytest.approx(organelle, rel=0.15)
    # in the label volume the organelles are drawn over the body
    assert (objects.labels == 1).sum() < body["voxels"]
    assert ((objects.labels >= 4) == (objects.organelle_labels > 0)).all()


def cut_cell(rng):
    """A cell whose centre lies outside the volume, with a nucleus the border cuts open
    that the cell probability misses (the organelle probability has it)."""
    grid = (40, 100, 100)
    truth = digitize(Sphere((200.0, 500.0, -150.0), 600.0), grid, VOXEL)
    nucleus = digitize(Sphere((200.0, 500.0, 0.0), 180.0), grid, VOXEL)
    return truth, nucleus, soft(truth & ~nucleus, rng), soft(nucleus, rng)


def test_cell_cut_by_the_border_is_one_cell(rng):
    truth, nucleus, cell_p, nucleus_p = cut_cell(rng)
    mask = cell_mask_from_probability(cell_p)
    assert dice(mask, truth) > 0.98
    assert mask[nucleus].mean() > 0.98  # the hole the border cuts open is filled
    objects = objects_from_regions(cell_p, VOXEL, organelle_probability=nucleus_p)
    assert (objects.n_cells, objects.n_organelles) == (1, 1)
    found = objects.organelle_labels > 0
    assert (found & nucleus).sum() / (found | nucleus).sum() > 0.8
    assert dice(objects.cell_labels > 0, truth) > 0.98
    table = measure_cell_objects(objects, VOXEL)
    assert table["touches_border"].all()
    excluded = objects_from_regions(
        cell_p, VOXEL, organelle_probability=nucleus_p, exclude_border=True
    )
    assert excluded.n_cells + excluded.n_filopodia + excluded.n_organelles == 0


def test_specks_are_dropped(rng):
    prob = np.zeros((20, 40, 40), np.float32)
    prob[4:16, 8:32, 8:32] = 0.9
    prob[1, 1:3, 35:37] = 0.9  # 4 voxels
    assert cell_mask_from_probability(prob).sum() == 12 * 24 * 24
    assert cell_mask_from_probability(prob, min_voxels=1).sum() == 12 * 24 * 24 + 4
    assert not cell_mask_from_probability(prob, threshold=0.9).any()  # strictly greater


def test_bad_arguments():
    prob = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="3D"):
        cell_mask_from_probability(prob[0])
    with pytest.raises(ValueError, match="threshold"):
        cell_mask_from_probability(prob, threshold=1.5)
    with pytest.raises(ValueError, match="cell_mask"):
        organelles_from_probability(prob, voxel_size_nm=10.0, cell_mask=np.ones((4, 8, 9)))
    with pytest.raises(ValueError, match="organelle_probability"):
        objects_from_regions(prob, 10.0, organelle_probability=prob[:, :7])
    with pytest.raises(ValueError, match="organelles"):
        cell_objects(prob > 0, 10.0, organelles=np.zeros((4, 8, 9), np.uint16))


# ---------------------------------------------------------------------------- CLI

CLI_GRID = (60, 80, 150)


@pytest.fixture
def segmented(tmp_path):
    """What 'sxtquant segment' writes with a region-aware model, for a ball (r 300 nm)
    with a filopodium along x and two touching organelles."""
    rng = np.random.default_rng(11)
    body = Sphere((300.0, 400.0, 400.0), 300.0)
    cell = digitize(body, CLI_GRID, VOXEL)
    cell |= digitize(Capsule((300.0, 400.0, 650.0), (300.0, 400.0, 1350.0), 60.0), CLI_GRID, VOXEL)
    organelles = digitize(Sphere((300.0, 400.0, 300.0), 90.0), CLI_GRID, VOXEL)
    organelles |= digitize(Sphere((300.0, 400.0, 470.0), 80.0), CLI_GRID, VOXEL)
    membrane = cell & ~ndimage.binary_erosion(cell, iterations=2)
    write_volume(tmp_path / "cell.mask.tif", membrane.astype(np.uint8) * 255, VOXEL)
    write_probability(tmp_path / "cell.probability.tif", membrane.astype(np.float32), VOXEL)
    write_probability(tmp_path / "cell.cell.probability.tif", soft(cell, rng), VOXEL)
    write_probability(tmp_path / "cell.organelles.probability.tif", soft(organelles, rng), VOXEL)
    return tmp_path


def test_cli_finds_the_region_files_beside_the_mask(run_cli, segmented):
    out = segmented / "objects.csv"
    labels = segmented / "labels.tif"
    result = run_cli(
        "quantify", segmented / "cell.mask.tif", "--filopodia", "--labels-out", labels, "-o", out
    )
    assert result.returncode == 0, result.stderr
    assert "region probabilities: cell " in result.stdout
    assert "cell.cell.probability.tif" in result.stdout
    assert "cell.organelles.probability.tif" in result.stdout
    assert "1 cell (1), 1 filopodium (2), 2 organelles (3-4)" in result.stdout
    table = pd.read_csv(out)
    assert list(table.columns) == list(COLUMNS)
    assert table["label"].tolist() == [1, 2, 3, 4]
    saved = read_volume(labels)
    assert sorted(np.unique(saved.data).tolist()) == [0, 1, 2, 3, 4]
    assert len(pd.read_csv(segmented / "objects.filopodia.csv")) == 1
    # the same from the probability file named as MASK, quietly
    quiet = run_cli(
        "quantify", segmented / "cell.probability.tif", "-o", segmented / "q.csv", "--quiet"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "region probabilities" not in quiet.stdout
    assert pd.read_csv(segmented / "q.csv")["voxels"].tolist() == table["voxels"].tolist()


def test_cli_no_regions_and_explicit_files(run_cli, segmented):
    mask = segmented / "cell.mask.tif"
    result = run_cli("quantify", mask, "--fill", "--no-regions", "-o", segmented / "m.csv")
    assert result.returncode == 0, result.stderr
    assert "region probabilities" not in result.stdout
    assert len(pd.read_csv(segmented / "m.csv")) == 1  # the filled membrane: one object
    moved = segmented / "elsewhere.tif"
    (segmented / "cell.cell.probability.tif").rename(moved)
    (segmented / "cell.organelles.probability.tif").unlink()
    result = run_cli("quantify", mask, "--fill", "-o", segmented / "n.csv")
    assert result.returncode == 0, result.stderr
    assert "region probabilities" not in result.stdout  # nothing left beside the mask
    result = run_cli("quantify", mask, "--cell-probability", moved, "-o", segmented / "e.csv")
    assert result.returncode == 0, result.stderr
    assert f"region probabilities: cell {moved}" in result.stdout
    assert len(pd.read_csv(segmented / "e.csv")) == 2  # body and filopodium, no organelles


@pytest.mark.parametrize("problem", ["shape", "voxel size", "values"])
def test_cli_bad_region_file_exits_2_without_output(run_cli, tmp_path, problem):
    mask = np.zeros((6, 20, 20), np.uint8)
    mask[1:5, 5:15, 5:15] = 255
    write_volume(tmp_path / "c.mask.tif", mask, VOXEL)
    prob = np.zeros(mask.shape, np.float32)
    voxel = VOXEL
    if problem == "shape":
        prob = prob[:, :, :-1]
    elif problem == "voxel size":
        voxel = 2 * VOXEL
    else:
        prob[2, 2, 2] = 3.0
    write_volume(tmp_path / "c.cell.probability.tif", prob, voxel)
    out = tmp_path / "t.csv"
    labels = tmp_path / "l.tif"
    result = run_cli("quantify", tmp_path / "c.mask.tif", "-o", out, "--labels-out", labels)
    assert_user_error(result, "c.cell.probability.tif", problem)
    assert not out.exists() and not labels.exists()


def test_cli_batch_takes_each_masks_region_files(run_cli, segmented):
    import shutil

    single = segmented / "single.csv"
    assert run_cli("quantify", segmented / "cell.mask.tif", "-o", single).returncode == 0
    for name in ("mask", "cell.probability", "organelles.probability"):
        shutil.copy(segmented / f"cell.{name}.tif", segmented / f"other.{name}.tif")
    batch = segmented / "tables"
    batch.mkdir()
    out = batch / "all.csv"
    result = run_cli("quantify", segmented, "--filopodia", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "region probabilities: beside 2 of 2 masks" in result.stderr
    table = pd.read_csv(out)
    expected = pd.read_csv(single)
    for tomogram in ("cell", "other"):  # each as the single mask gives it
        rows = table[table["tomogram"] == tomogram].reset_index(drop=True)
        assert rows["voxels"].tolist() == expected["voxels"].tolist()
        assert len(rows) == 4  # body, filopodium, two organelles
    assert len(pd.read_csv(batch / "all.filopodia.csv")) == 2
    # a rerun skips; a changed region file is an input too: redone
    again = run_cli("quantify", segmented, "--filopodia", "-o", out)
    assert "up to date" in again.stdout
    organelles = read_volume(segmented / "other.organelles.probability.tif")
    write_probability(
        segmented / "other.organelles.probability.tif",
        np.zeros(organelles.shape, np.float32),
        VOXEL,
    )
    redone = run_cli("quantify", segmented, "--filopodia", "-o", out)
    assert redone.returncode == 0, redone.stderr
    table = pd.read_csv(out)
    assert (table["tomogram"] == "other").sum() == 2  # body and filopodium, no organelles
    # --no-regions: the masks themselves
    plain = run_cli("quantify", segmented, "--no-regions", "-o", batch / "plain.csv")
    assert plain.returncode == 0, plain.stderr
    assert "region probabilities" not in plain.stderr
    assert len(pd.read_csv(batch / "plain.csv")) == 2  # one membrane shell per mask


def test_cli_refuses_an_explicit_region_file_with_several_masks(run_cli, segmented):
    out = segmented / "all.csv"
    other = segmented / "other.mask.tif"
    other.write_bytes((segmented / "cell.mask.tif").read_bytes())
    result = run_cli(
        "quantify",
        segmented / "cell.mask.tif",
        other,
        "--cell-probability",
        segmented / "cell.cell.probability.tif",
        "-o",
        out,
    )
    assert_user_error(result, "--cell-probability", "one MASK")
    assert not out.exists()


def test_min_radius_returns_slivers_to_the_body_and_smoothing_is_checked():
    from sxtquant.quantify.regions import cell_mask_from_probability, cell_objects

    zz, yy, xx = np.mgrid[:40, :80, :160]
    voxel = 10.0
    body = (zz - 20) ** 2 + (yy - 40) ** 2 + (xx - 40) ** 2 <= 18**2
    tube = ((zz - 20) ** 2 + (yy - 40) ** 2 <= 5**2) & (xx >= 40) & (xx < 120)  # r 50 nm
    sliver = (np.abs(zz - 20) <= 0) & (np.abs(yy - 58) <= 0) & (xx >= 30) & (xx < 90)
    cell = body | tube | sliver
    every = cell_objects(cell, voxel, min_aspect=3.0)
    assert every.n_filopodia == 2  # the tube and the one-voxel sliver
    assert min(every.filopodia["radius_nm"]) < 10
    thick = cell_objects(cell, voxel, min_aspect=3.0, min_radius_nm=20.0)
    assert thick.n_filopodia == 1
    assert thick.filopodia["radius_nm"].iloc[0] == pytest.approx(50.0, rel=0.15)
    assert (thick.cell_labels > 0).sum() == cell.sum()  # the sliver is back in the body
    from sxtquant.quantify.filopodia import FILLED_MASK, find_filopodia

    per, _ = find_filopodia(cell, voxel, min_aspect=3.0, **FILLED_MASK)  # quantify's options
    assert per["radius_nm"].to_numpy() == pytest.approx([50.0], rel=0.15)
    probability = cell.astype(np.float32)
    smoothed = cell_mask_from_probability(probability, smooth_voxels=1.5)
    assert not smoothed[sliver & ~body].any()  # a one-voxel line does not survive
    assert smoothed[body].mean() > 0.95  # a ball loses only its outermost voxels
    with pytest.raises(ValueError, match="smooth_voxels"):
        cell_mask_from_probability(probability, smooth_voxels=-1)
