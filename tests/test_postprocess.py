"""Post-processing: threshold, z-smoothing, small objects, erosion, borders, cell mask, filling."""

from __future__ import annotations

import numpy as np
import pytest

from sxtquant.quantify.postprocess import (
    clear_border,
    erode,
    fill_membranes,
    postprocess,
    remove_small,
    rough_cell_mask,
    smooth_z,
    threshold,
)
from sxtquant.simulate.shapes import Sphere, digitize


def test_threshold_is_strict():
    prob = np.array([[[0.89, 0.9, 0.91]]], np.float32)
    assert threshold(prob).tolist() == [[[False, False, True]]]
    with pytest.raises(ValueError, match="threshold"):
        threshold(prob, 1.5)


def test_smooth_z_probability_is_moving_average():
    prob = np.zeros((7, 2, 2), np.float32)
    prob[3] = 1.0
    out = smooth_z(prob, 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [0, 1 / 4, 1 / 5, 1 / 5, 1 / 5, 1 / 4, 0], atol=1e-6)
    np.testing.assert_array_equal(smooth_z(prob, 0), prob)


def test_smooth_z_mask_is_majority_vote():
    mask = np.zeros((9, 1, 1), np.uint8)
    mask[[2, 3, 5, 6]] = 255  # a one-slice gap at z = 4, a lone slice nowhere
    out = smooth_z(mask, 2)
    assert out.dtype == bool
    assert out[4, 0, 0]  # 4 of 5 slices are foreground: gap filled
    assert not out[0, 0, 0] and not out[8, 0, 0]
    lone = np.zeros((9, 1, 1), bool)
    lone[4] = True
    assert not smooth_z(lone, 2).any()  # flicker in one slice removed
    with pytest.raises(ValueError, match="radius"):
        smooth_z(mask, -1)


def test_remove_small_and_erode():
    mask = np.zeros((12, 12, 12), bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[5:10, 5:10, 5:10] = True  # 125 voxels
    kept = remove_small(mask, 10)
    assert kept.sum() == 125
    assert remove_small(mask, 0).sum() == 133
    eroded = erode(kept, 1)
    assert eroded.sum() == 27
    assert erode(kept, 0).sum() == 125
    in_plane = erode(kept, 1, in_plane=True)
    assert in_plane.sum() == 5 * 9


def test_clear_border_keeps_shape():
    mask = np.ones((4, 10, 10), np.uint8)
    out = clear_border(mask, 2)
    assert out.shape == mask.shape
    assert out.sum() == 4 * 36
    assert clear_border(mask, 2, z=True).sum() == 0
    assert clear_border(mask, 0).sum() == mask.sum()


def test_rough_cell_mask_finds_the_bright_cell():
    rng = np.random.default_rng(0)
    cell = digitize(Sphere((300.0, 300.0, 300.0), 200.0), (30, 30, 30), 20.0)
    tomo = cell * 1.0 + rng.normal(0, 0.3, cell.shape)
    found = rough_cell_mask(tomo, 20.0, sigma_nm=40.0, margin_nm=0.0)
    iou = (found & cell).sum() / (found | cell).sum()
    assert iou > 0.9
    grown = rough_cell_mask(tomo, 20.0, sigma_nm=40.0, margin_nm=60.0)
    assert grown.sum() > found.sum()
    assert not rough_cell_mask(np.ones((4, 4, 4)), 1.0).any()


def ring_stack(n_slices=6, gap=False):
    """A stack of circular membranes (radius 12 px, 2 px thick), optionally with a gap."""
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 20, xx - 20)
    ring = (r >= 11) & (r <= 13)
    if gap:
        ring &= ~((np.abs(yy - 20) <= 1) & (xx > 20))  # 3-pixel gap on the right
    stack = np.zeros((n_slices + 2, 40, 40), bool)
    stack[1:-1] = ring
    return stack, r <= 13


def test_fill_membranes_fills_closed_and_gapped_contours():
    closed, disk = ring_stack()
    filled = fill_membranes(closed, closing_radius=0, fill_3d=False)
    assert np.array_equal(filled[3], disk)
    gapped, disk = ring_stack(gap=True)
    assert fill_membranes(gapped, closing_radius=0, fill_3d=False)[3].sum() < disk.sum() / 2
    filled = fill_membranes(gapped, closing_radius=2)
    assert (filled[3] & disk).sum() > 0.99 * disk.sum()
    assert (filled[3] & ~disk).sum() < 0.02 * disk.sum()
    assert not filled[0].any()


def test_fill_membranes_3d_fills_a_shell():
    ball = digitize(Sphere((20.0, 20.0, 20.0), 14.0), (41, 41, 41), 1.0)
    inner = digitize(Sphere((20.0, 20.0, 20.0), 12.0), (41, 41, 41), 1.0)
    shell = ball & ~inner
    filled = fill_membranes(shell, closing_radius=0)
    assert np.array_equal(filled, ball)


def test_postprocess_chain():
    prob = np.zeros((9, 20, 20), np.float32)
    prob[2:7, 5:15, 5:15] = 0.95
    prob[4, 0:3, 0:3] = 0.99  # one-slice flicker at the border
    cell = np.zeros(prob.shape, bool)
    cell[:, 4:16, 4:16] = True
    mask = postprocess(prob, cell_mask=cell, min_voxels=5)
    assert mask.dtype == bool
    assert not mask[4, 0:3, 0:3].any()
    # 0.95 over 5 slices: after averaging over ±2 slices only the middle one is > 0.9
    assert mask[4, 5:15, 5:15].all()
    assert not mask[3].any()
    with pytest.raises(ValueError, match="cell_mask"):
        postprocess(prob, cell_mask=np.ones((2, 2, 2), bool))
    with pytest.raises(ValueError, match="3D"):
        postprocess(prob[0])
