"""Field-of-view mode: a cell larger than the volume, cut by its borders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from sxtquant import simulate as sim
from sxtquant.io.volumes import read_volume

SHAPE = (24, 96, 96)
VOXEL = 30.0  # a 2.9 µm field of view in a small, fast volume
SEEDS = (0, 1, 2)
FOV = sim.CellContent(field_of_view=True)


@pytest.fixture(scope="module")
def phantoms() -> dict[int, sim.Phantom]:
    return {seed: sim.make_phantom(SHAPE, VOXEL, seed=seed, content=FOV) for seed in SEEDS}


def _faces(volume: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "z0": volume[0],
        "z1": volume[-1],
        "y0": volume[:, 0],
        "y1": volume[:, -1],
        "x0": volume[:, :, 0],
        "x1": volume[:, :, -1],
    }


def _touching(objects: np.ndarray) -> set[int]:
    """Labels with a voxel on a face of the volume, found face by face."""
    return {int(v) for face in _faces(objects).values() for v in np.unique(face)} - {0}


@pytest.mark.parametrize("seed", SEEDS)
def test_cell_crosses_the_field_of_view(phantoms, seed):
    ph = phantoms[seed]
    cell, organelles = sim.region_masks(ph.objects, ph.table)
    filopodia = np.isin(ph.objects, ph.table.loc[ph.table["class"] == "filopodium", "label"])
    body = cell & ~filopodia  # the filopodia may leave through any face
    lateral = [k for k, face in _faces(body).items() if k[0] in "yx" and face.any()]
    assert 1 <= len(lateral) <= 3, lateral
    assert (ph.objects == 0).any()  # ice inside the volume
    assert ((ph.objects == 0) & ~cell).any()
    assert not (organelles & ~cell).any()
    body = ph.table.loc[ph.table["class"] == "plasma_membrane", "label"].iloc[0]
    assert ph.table.set_index("label").loc[body, "touches_border"]


@pytest.mark.parametrize("seed", SEEDS)
def test_touches_border_flags_exactly_the_cut_objects(phantoms, seed):
    ph = phantoms[seed]
    table = ph.table
    assert table["touches_border"].dtype == bool
    flagged = set(table.loc[table["touches_border"], "label"])
    assert flagged == _touching(ph.objects)
    filopodia = table[table["class"] == "filopodium"]
    assert len(filopodia) >= 2
    for label in filopodia["label"]:
        mask = ph.objects == label
        assert mask.any()
        assert ndimage.label(mask)[1] == 1  # one piece inside the volume, joined to the body
        assert (ndimage.binary_dilation(mask) & (ph.objects == 1)).any()
        assert (label in flagged) == any(f.any() for f in _faces(mask).values())


def test_touches_border_is_false_in_normal_mode():
    for seed in SEEDS:
        ph = sim.make_phantom(SHAPE, VOXEL, seed=seed)
        assert (ph.table["class"] == "filopodium").sum() >= 2
        assert not ph.table["touches_border"].any()
        assert not _touching(ph.objects)


def test_field_of_view_mode_from_simulate_tomogram():
    acq = sim.Acquisition(sirt_iterations=3)
    a = sim.simulate_tomogram(SHAPE, VOXEL, seed=5, content=FOV, acquisition=acq)
    b = sim.simulate_tomogram(SHAPE, VOXEL, seed=5, content=FOV, acquisition=acq)
    assert a.content.field_of_view and a.tomogram.shape == SHAPE
    np.testing.assert_array_equal(a.tomogram, b.tomogram)
    np.testing.assert_array_equal(a.objects, b.objects)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.table["touches_border"].any()
    normal = sim.make_phantom(SHAPE, VOXEL, seed=5)
    assert not np.array_equal(normal.objects, a.objects)


def test_field_of_view_must_be_a_bool():
    with pytest.raises(ValueError, match="field_of_view"):
        sim.CellContent(field_of_view="yes")


def test_cli_field_of_view(run_cli, tmp_path):
    out = tmp_path / "cell"
    options = ["--shape", "16", "64", "64", "--voxel-size", "30", "--sirt-iterations", "3"]
    result = run_cli("simulate", out, "--field-of-view", *options, "--seed", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "simulation.json").read_text())
    assert info["content"]["field_of_view"] is True
    table = pd.read_csv(out / "objects.csv")
    objects = read_volume(out / "objects.tif").data
    assert set(table.loc[table["touches_border"], "label"]) == _touching(objects)
    assert table["touches_border"].any()
