"""The demo pipeline with a region-aware network: objects from the region heads (#16, item 4).

The network's region probabilities are replaced by an oracle -- the simulated cell's
true regions -- so the test checks the pipeline's region path against known truth:
every filopodium wholly inside the volume found, the cell body one object, and the
region files written beside the membrane files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sxtquant import io, pipeline
from sxtquant.nn import predict
from sxtquant.nn.config import PRESETS, REGIONS
from sxtquant.nn.network import build_model
from sxtquant.simulate.cell import CellContent
from sxtquant.simulate.regions import region_masks
from sxtquant.simulate.tomogram import simulate_tomogram

VOXEL = 9.8


@pytest.fixture(autouse=True)
def one_thread(torch_threads):
    """One CPU thread (unless $SXTQUANT_TEST_THREADS says otherwise)."""


def _oracle(sim, monkeypatch):
    """``predict_heads`` answering the simulation's true membranes and regions."""
    cell, organelles = region_masks(sim.objects, sim.table)
    maps = {
        "membrane": sim.membranes.astype(np.float32),
        "cell": cell.astype(np.float32),
        "organelles": organelles.astype(np.float32),
    }
    calls = []

    def fake(model, volume, **kwargs):
        calls.append(model.config.heads)
        return {name: maps[name].copy() for name in model.config.heads}

    monkeypatch.setattr(predict, "predict_heads", fake)
    return calls


@pytest.mark.parametrize("field_of_view", [False, True], ids=["whole", "field-of-view"])
def test_region_path_finds_the_filopodia_inside_the_volume(field_of_view, monkeypatch, tmp_path):
    content = CellContent(field_of_view=True) if field_of_view else None
    sim = simulate_tomogram((64, 256, 256), VOXEL, seed=1, content=content)
    calls = _oracle(sim, monkeypatch)
    model = build_model(dataclasses.replace(PRESETS["tiny"], in_slices=3, regions=REGIONS))
    analysis = pipeline.analyze(sim.tomogram, VOXEL, model, device="cpu", meshes=False)
    assert calls == [("membrane", "cell", "organelles")] and analysis.from_regions
    comparison = pipeline.compare_with_truth(analysis, sim)
    m = comparison.matching
    # seed 1's whole cell has one stubby filopodium (476 nm long, 180 nm wide: aspect
    # 2.6), a filopodium since min_aspect is 2
    assert m["true"] > 0 and m["true_found"] == m["true"] and m["false"] == 0
    assert m["mean_abs_relative_error"]["length"] < 0.10
    if field_of_view:
        assert m["cut"] > 0 or sim.table["touches_border"].any()
    # the cell body is one object: one label holds (almost) all of the true body
    body = np.isin(sim.objects, sim.table.loc[sim.table["class"] == "plasma_membrane", "label"])
    labels, counts = np.unique(analysis.objects[body], return_counts=True)
    assert np.sum((labels > 0) & (counts >= 0.01 * body.sum())) == 1
    written = pipeline.write_analysis(analysis, tmp_path, stem="cell")
    for name, values in (
        ("cell", analysis.cell_probability),
        ("organelles", analysis.organelle_probability),
    ):
        path = tmp_path / "segmentation" / f"cell.{name}.probability.tif"
        assert path in written
        volume = io.read_volume(path)
        assert volume.voxel_size_nm[0] == pytest.approx(VOXEL)
        np.testing.assert_array_equal(volume.data, values)


def test_regions_false_keeps_the_membrane_path(monkeypatch):
    sim = simulate_tomogram((32, 128, 128), VOXEL, seed=2)
    _oracle(sim, monkeypatch)
    model = build_model(dataclasses.replace(PRESETS["tiny"], regions=REGIONS))
    analysis = pipeline.analyze(
        sim.tomogram, VOXEL, model, device="cpu", meshes=False, regions=False, progress=False
    )
    assert not analysis.from_regions and analysis.cell_probability is None
