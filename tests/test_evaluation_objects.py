"""Evaluation scripts of the complete objects: ``evaluation/objects.py``'s totals (pooled
counts and their intervals over cells) and ``evaluation/misses.py``'s description of
the maps along each true filopodium."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.misses import describe_cell, detached, profile, true_body
from evaluation.objects import SHAPE, VOXEL_NM, _seeds, paired_differences, totals


def _cell(seed: int, found: int, true: int, false: int = 0, mode: str = "field_of_view") -> dict:
    """One scored cell with the columns :func:`totals` reads."""
    return {
        "mode": mode,
        "seed": seed,
        "true": true,
        "found": found,
        "false": false,
        "cut": 1,
        "length_error": 0.1,
        "diameter_error": 0.2,
        "true_membranes_found": true,
        "true_membranes_true": true,
        "true_membranes_false": 0,
        "true_regions_found": None,
        "true_regions_false": None,
        "cell_dice": 0.9,
        "cell_body_pieces": 1,
        "f1": 0.5,
        "f1_tolerance_2vx": 0.7,
        "precision": 0.5,
    }


def test_totals_pool_the_counts_and_bracket_them_with_an_interval_over_cells():
    rows = [_cell(0, 0, 4, false=1), _cell(1, 4, 4), _cell(2, 2, 4), _cell(3, 3, 4, false=1)]
    out = totals(rows)
    assert (out["found"], out["true"], out["false"]) == (9, 16, 2)
    assert out["found_fraction"] == pytest.approx(9 / 16)
    assert out["false_per_true"] == pytest.approx(2 / 16)
    # the draws pool whole cells: a draw of cell 0 alone finds 0 of 4, of cell 1 4 of 4
    assert 0 < out["found_fraction_low"] < 9 / 16 < out["found_fraction_high"] < 1
    assert 0 <= out["false_per_true_low"] < 2 / 16 < out["false_per_true_high"] <= 0.25


def test_cells_that_agree_give_an_interval_of_no_width():
    out = totals([_cell(seed, 3, 4) for seed in range(5)])
    assert out["found_fraction"] == out["found_fraction_low"] == out["found_fraction_high"] == 0.75
    assert out["false_per_true_low"] == out["false_per_true_high"] == 0


def test_cells_without_filopodia_leave_the_interval_undefined():
    out = totals([_cell(0, 0, 0), _cell(1, 0, 0)])
    assert math.isnan(out["found_fraction_low"]) and math.isnan(out["found_fraction_high"])


def test_paired_differences_share_the_draws_of_cells():
    import pandas as pd

    a = [_cell(s, f, 4) for s, f in enumerate([4, 3, 2, 4])]
    b = [_cell(s, f - 1, 4) for s, f in enumerate([4, 3, 2, 4])]  # one fewer in every cell
    frame = pd.DataFrame([{**r, "model": "a"} for r in a] + [{**r, "model": "b"} for r in b])
    out = paired_differences(frame)["a - b/field_of_view"]
    # every draw has 4 cells, each one filopodium apart: the difference is 1/4 in all
    assert out["found_fraction_difference"] == pytest.approx(0.25)
    assert out["low"] == pytest.approx(0.25) and out["high"] == pytest.approx(0.25)
    assert out["excludes_zero"]
    same = pd.DataFrame([{**r, "model": m} for m in ("a", "c") for r in a])
    assert paired_differences(same)["a - c/field_of_view"]["excludes_zero"] is False


@pytest.mark.parametrize(
    ("text", "seeds"), [("0-3", [0, 1, 2, 3]), ("0,2,5", [0, 2, 5]), ("4", [4]), ("none", [])]
)
def test_seed_lists(text, seeds):
    assert _seeds(text) == seeds


# ---- evaluation/misses.py: the network's maps along each true filopodium


def test_profile_is_the_mean_per_distance_bin():
    distance = np.arange(10, dtype=float)[None, None, :] * 30.0  # 0, 30, ..., 270 nm
    values = np.arange(10, dtype=float)[None, None, :]
    mask = np.ones_like(values, dtype=bool)
    # bins [0, 100): 0-3, [100, 200): 4-6, [200, 300): 7-9
    assert profile(mask, distance, values, 100.0) == [1.5, 5.0, 8.0]
    # a bin that nothing falls in is NaN, not 0
    gap = profile(
        np.array([True, True, True]), np.array([0.0, 30.0, 250.0]), values[0, 0, :3], 100.0
    )
    assert gap[0] == 0.5 and math.isnan(gap[1]) and gap[2] == 2.0


@pytest.mark.parametrize(
    ("by_bin", "expected"),
    [
        ([0.9, 0.3, 0.8], True),  # a gap, then the tip again
        ([0.2, 0.7], True),  # a gap at the base
        ([0.9, 0.8, 0.3], False),  # the tip fades: no piece beyond
        ([0.3, 0.2], False),
        ([0.9, 0.9], False),
    ],
)
def test_a_filopodium_is_detached_when_its_map_rises_again_beyond_a_gap(by_bin, expected):
    assert detached(by_bin) is expected


@pytest.fixture(scope="module")
def cell_with_true_maps():
    from sxtquant.simulate.regions import region_masks
    from sxtquant.simulate.tomogram import simulate_tomogram

    sim = simulate_tomogram(SHAPE, VOXEL_NM, seed=1)
    cell, organelles = region_masks(sim.objects, sim.table)
    maps = {
        "membrane": sim.membranes.astype(np.float32),
        "cell": cell.astype(np.float32),
        "organelles": organelles.astype(np.float32),
    }
    return sim, maps


@pytest.mark.slow
def test_true_maps_find_every_filopodium_and_a_cut_map_detaches_one(cell_with_true_maps):
    from scipy import ndimage as ndi

    sim, maps = cell_with_true_maps
    rows = describe_cell(sim, maps, 100.0)
    assert rows and all(r["status"] == "matched" and not r["detached"] for r in rows)
    # NETWORK_MAP's 20 nm smoothing takes a shell off a binary tube (0.74-0.94 kept)
    assert all(r["in_cell_mask"] > 0.7 and r["min_cell_probability"] == 1.0 for r in rows)
    assert all(r["min_contrast"] > 0 for r in rows)  # the simulator's filopodia are denser
    assert all(abs(r["length_error"]) < 0.1 for r in rows)
    assert all(r["min_membrane_probability"] == 1.0 for r in rows)
    # cut the longest one's map 100-250 nm from the body: its tip is cut off the cell
    longest = max(rows, key=lambda r: r["length_nm"])
    body, _ = true_body(sim)
    from_body = ndi.distance_transform_edt(~body, sampling=VOXEL_NM)
    tube = sim.objects == longest["true_label"]
    gap = ndi.binary_dilation(tube, iterations=3) & (from_body > 100) & (from_body < 250)
    cut = dict(maps, cell=np.where(gap, 0.0, maps["cell"]).astype(np.float32))
    after = {r["true_label"]: r for r in describe_cell(sim, cut, 100.0)}
    # its base is too short to be a filopodium and its tip is a speck off the cell
    assert after[longest["true_label"]]["status"] == "missed"
    assert math.isnan(after[longest["true_label"]]["length_error"])
    assert after[longest["true_label"]]["detached"]
    assert after[longest["true_label"]]["min_cell_probability"] == 0.0
    assert after[longest["true_label"]]["in_cell_mask"] < longest["in_cell_mask"]
    others = [r for label, r in after.items() if label != longest["true_label"]]
    assert all(r["status"] == "matched" and not r["detached"] for r in others)
