"""Region ground truth (cell, organelles) of the simulator and the data sets that carry it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from sxtquant import simulate as sim
from sxtquant.io.volumes import read_volume
from sxtquant.simulate.files import write_dataset
from tests.conftest import assert_user_error

SHAPE = (32, 128, 128)
VOXEL = 30.0  # coarse voxels: a cell with every class in a small volume
ORGANELLES = {"nucleus", "mitochondrion", "er", "vesicle", "lipid_droplet"}


@pytest.fixture(scope="module")
def simulation() -> sim.Simulation:
    return sim.simulate_tomogram(
        SHAPE, VOXEL, seed=3, acquisition=sim.Acquisition(sirt_iterations=3)
    )


def _by_hand(objects: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The regions derived from the labels and the table, one row at a time."""
    parent = dict(zip(table["label"], table["parent"], strict=True))
    cls = dict(zip(table["label"], table["class"], strict=True))
    cell_labels = []
    for label in table["label"]:
        node = label
        while node and cls[node] not in ("plasma_membrane", "filopodium"):
            node = parent[node]
        if node:
            cell_labels.append(label)
    organelle_labels = [label for label in table["label"] if cls[label] in ORGANELLES]
    return np.isin(objects, cell_labels), np.isin(objects, organelle_labels)


def test_region_masks_match_the_labels_and_table(simulation):
    objects, table = simulation.objects, simulation.table
    assert ORGANELLES <= set(table["class"])  # the fixture has every class
    cell, organelles = sim.region_masks(objects, table)
    assert cell.dtype == bool and organelles.dtype == bool and cell.shape == SHAPE
    hand_cell, hand_organelles = _by_hand(objects, table)
    np.testing.assert_array_equal(cell, hand_cell)
    np.testing.assert_array_equal(organelles, hand_organelles)
    assert not (organelles & ~cell).any()
    assert organelles.any() and (cell & ~organelles).any()
    gold = np.isin(objects, table.loc[table["class"] == "fiducial", "label"])
    assert gold.any() and not cell[gold].any()
    assert not cell[objects == 0].any()
    filopodia = np.isin(objects, table.loc[table["class"] == "filopodium", "label"])
    assert filopodia.any() and cell[filopodia].all() and not organelles[filopodia].any()

    regions = sim.region_labels(objects, table)
    assert regions.dtype == np.uint8 and regions.shape == SHAPE
    expected = np.where(organelles, 2, np.where(cell, 1, 0))
    np.testing.assert_array_equal(regions, expected)


def test_parent_chains_and_classes_on_a_hand_made_volume():
    objects = np.array([[[0, 1, 2, 3], [4, 5, 6, 0]]], dtype=np.uint16)
    table = pd.DataFrame(
        {
            "label": [1, 2, 3, 4, 5, 6],
            "class": ["plasma_membrane", "nucleus", "vesicle", "fiducial", "filopodium", "er"],
            # 3 inside 2 inside 1; 6 inside the filopodium; 4 free
            "parent": [0, 1, 2, 0, 0, 5],
        }
    )
    cell, organelles = sim.region_masks(objects, table)
    np.testing.assert_array_equal(cell[0], [[0, 1, 1, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(organelles[0], [[0, 0, 1, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(
        sim.region_labels(objects, table)[0], [[0, 1, 2, 2], [0, 1, 2, 0]]
    )


def test_no_organelles_without_nucleus_and_density():
    content = sim.CellContent(organelle_density=0, nucleus=False)
    ph = sim.make_phantom(SHAPE, VOXEL, seed=3, content=content)
    assert not set(ph.table["class"]) & ORGANELLES
    cell, organelles = sim.region_masks(ph.objects, ph.table)
    assert cell.any() and not organelles.any()
    assert sim.region_labels(ph.objects, ph.table).max() == 1


def test_region_masks_reject_bad_input(simulation):
    objects, table = simulation.objects, simulation.table
    with pytest.raises(ValueError, match="not in the object table"):
        sim.region_masks(objects, table[table["class"] != "vesicle"])
    with pytest.raises(ValueError, match="integer"):
        sim.region_masks(objects.astype(np.float32), table)
    with pytest.raises(ValueError, match="parent"):
        sim.region_labels(objects, table.drop(columns="parent"))
    with pytest.raises(ValueError, match="z, y, x"):
        sim.region_masks(objects[0], table)


# ---------------------------------------------------------------------- data sets

DATASET = dict(seed=4, labeled=1, unlabeled=1, test=1, shape=(16, 48, 48), slice_step=4)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_dataset(root / "slices", **DATASET)
    write_dataset(root / "stacks", **DATASET, layout="stacks")
    return root


def test_slices_carry_regions(datasets):
    out = datasets / "slices"
    info = json.loads((out / "dataset.json").read_text())
    assert info["layout"] == "slices" and info["slice_step"] == 4
    assert set(info["files"]) == {"images", "labels", "regions"}
    assert [t["field_of_view"] for t in info["tomograms"]] == [False] * 3
    for split in ("labeled", "test"):
        labels = sorted(p.name for p in (out / split / "labels").glob("*.tif"))
        regions = sorted(p.name for p in (out / split / "regions").glob("*.tif"))
        assert regions == labels and len(regions) == 4
        vol = read_volume(out / split / "regions" / regions[1])
        assert vol.data.dtype == np.uint8 and vol.shape == (1, 48, 48)
        assert set(np.unique(vol.data)) <= {0, 1, 2}
        assert vol.voxel_size_nm == pytest.approx((9.8,) * 3, rel=1e-4)
    assert not (out / "unlabeled" / "regions").exists()


def test_stacks_hold_every_slice_of_the_same_tomograms(datasets):
    slices, stacks = datasets / "slices", datasets / "stacks"
    info = json.loads((stacks / "dataset.json").read_text())
    assert info["layout"] == "stacks" and info["slice_step"] == 1
    assert [t["slices"] for t in info["tomograms"]] == [list(range(16))] * 3
    for split, name in (
        ("labeled", "labeled000"),
        ("unlabeled", "unlabeled000"),
        ("test", "test000"),
    ):
        kinds = ("images", "labels", "regions") if split != "unlabeled" else ("images",)
        dtypes = {"images": np.float32, "labels": np.uint8, "regions": np.uint8}
        for kind in kinds:
            stack = read_volume(stacks / split / kind / f"{name}.tif")
            assert stack.data.dtype == dtypes[kind] and stack.shape == (16, 48, 48), kind
            assert stack.voxel_size_nm == pytest.approx((9.8,) * 3, rel=1e-4)
            for z in (0, 4, 8, 12):
                np.testing.assert_array_equal(
                    stack.data[z], tifffile.imread(slices / split / kind / f"{name}_z{z:04d}.tif")
                )
        if split != "unlabeled":
            regions = read_volume(stacks / split / "regions" / f"{name}.tif").data
            assert {0, 1} <= set(np.unique(regions)) <= {0, 1, 2}
            labels = read_volume(stacks / split / "labels" / f"{name}.tif").data
            assert set(np.unique(labels)) == {0, 255}
    assert not (stacks / "unlabeled" / "labels").exists()
    assert not (stacks / "unlabeled" / "regions").exists()


def test_field_of_view_fraction_leaves_the_other_tomograms_alone(datasets, tmp_path):
    out = tmp_path / "half"
    write_dataset(out, **DATASET, field_of_view=0.5)
    info = json.loads((out / "dataset.json").read_text())
    reference = json.loads((datasets / "slices" / "dataset.json").read_text())["tomograms"]
    flags = [t["field_of_view"] for t in info["tomograms"]]
    assert sorted(set(flags)) == [False, True]  # this seed draws both
    for tomo, ref in zip(info["tomograms"], reference, strict=True):
        assert tomo["content"]["field_of_view"] is tomo["field_of_view"]
        assert tomo["seed"] == ref["seed"] and tomo["acquisition"] == ref["acquisition"]
        path = f"{tomo['split']}/images/{tomo['name']}_z0008.tif"
        same = np.array_equal(
            tifffile.imread(out / path), tifffile.imread(datasets / "slices" / path)
        )
        assert same is not tomo["field_of_view"], tomo["name"]


def test_bad_dataset_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        write_dataset(tmp_path / "a", **DATASET, layout="volumes")
    with pytest.raises(ValueError, match="field_of_view"):
        write_dataset(tmp_path / "b", **DATASET, field_of_view=1.5)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_stacks_in_field_of_view_mode(run_cli, tmp_path):
    out = tmp_path / "ds"
    options = ["--labeled-tomograms", "1", "--unlabeled-tomograms", "0", "--shape", "16", "48"]
    options += ["48", "--voxel-size", "30", "--seed", "2", "--quiet"]
    result = run_cli("simulate", out, "--dataset", "--stacks", "--field-of-view", "1", *options)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "dataset.json").read_text())
    assert info["layout"] == "stacks" and info["tomograms"][0]["field_of_view"] is True
    regions = read_volume(out / "labeled" / "regions" / "labeled000.tif").data
    assert regions.shape == (16, 48, 48) and regions.dtype == np.uint8


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--field-of-view", "0.5"], "--field-of-view"),
        (["--dataset", "--field-of-view", "2"], "--field-of-view"),
        (["--stacks"], "--stacks"),
    ],
)
def test_cli_rejects_bad_region_options(run_cli, tmp_path, args, fragment):
    result = run_cli("simulate", tmp_path / "out", *args)
    assert_user_error(result, fragment)
    assert not (tmp_path / "out").exists()
