"""Block-by-block processing of large tomograms (sxtquant.scale.blocks): the same results as
processing the whole volume, objects crossing block borders included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sxtquant import io, scale
from sxtquant.quantify.morphology import measure_objects
from sxtquant.quantify.objects import connected_components, objects_from_mask
from sxtquant.quantify.postprocess import smooth_z
from sxtquant.simulate.shapes import Capsule, Sphere, digitize, paint
from tests.conftest import assert_user_error

da = pytest.importorskip("dask.array")

VOXEL = (20.0, 10.0, 10.0)  # anisotropic, nm (z, y, x)
GRID = (30, 44, 48)
CAPSULE = Capsule((60.0, 100.0, 100.0), (520.0, 100.0, 100.0), 45.0)


def phantom() -> np.ndarray:
    """Instance labels of analytic shapes, several crossing z = 5, 10, 14, 21 (block borders
    for blocks of 5 and 7 slices), one touching the volume's edge, one tiny."""
    labels = np.zeros(GRID, np.uint16)
    shapes = [
        CAPSULE,  # through every block
        # a U: two arms apart in the low blocks, joined by a bar in the top one
        Capsule((60.0, 300.0, 150.0), (500.0, 300.0, 150.0), 35.0),
        Capsule((60.0, 300.0, 350.0), (500.0, 300.0, 350.0), 35.0),
        Capsule((500.0, 300.0, 150.0), (500.0, 300.0, 350.0), 35.0),
        Sphere((200.0, 150.0, 300.0), 60.0),  # crosses z = 10
        Sphere((280.0, 360.0, 60.0), 55.0),  # crosses z = 14
        Sphere((420.0, 60.0, 420.0), 70.0),  # crosses z = 21, touches the y and x edges
    ]
    for value, shape in enumerate(shapes, start=1):
        paint(labels, shape, value, VOXEL)
    labels[labels == 3] = 2  # the U is one object
    labels[labels == 4] = 2
    labels[2, 40, 4] = 8  # a one-voxel object
    return labels


def diagonal_pair() -> np.ndarray:
    """Voxels touching across the face z = 4 | 5 by an edge (18-connected) and by a corner
    only (26-connected)."""
    mask = np.zeros((10, 8, 8), bool)
    mask[2:5, 2, 2] = True
    mask[5:8, 3, 2] = True  # edge neighbour of (4, 2, 2)
    mask[2:5, 5, 5] = True
    mask[5:8, 6, 6] = True  # corner neighbour of (4, 5, 5)
    return mask


@pytest.mark.parametrize("block_slices", [1, 5, 7, 30])
@pytest.mark.parametrize("connectivity", [1, 3])
def test_components_across_blocks_equal_whole_volume(block_slices, connectivity):
    mask = phantom() > 0
    blocks = da.from_array(mask, chunks=(block_slices, 22, 48))  # y is cut too: made whole
    plan = scale.plan_objects(blocks, is_labels=False, connectivity=connectivity, progress=False)
    labels = scale.label_blocks(blocks, plan).compute(scheduler="synchronous")
    expected = connected_components(mask, connectivity=connectivity)
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == expected.dtype
    assert plan.n_objects == 6  # capsule, U, three spheres, the single voxel
    assert plan.sizes.tolist() == np.bincount(expected.ravel())[1:].tolist()


@pytest.mark.parametrize(("connectivity", "objects"), [(1, 4), (2, 3), (3, 2)])
def test_connectivity_across_a_face(connectivity, objects):
    mask = diagonal_pair()
    blocks = da.from_array(mask, chunks=(5, 8, 8))
    plan = scale.plan_objects(blocks, connectivity=connectivity, progress=False)
    labels = scale.label_blocks(blocks, plan).compute(scheduler="synchronous")
    assert plan.n_objects == objects
    np.testing.assert_array_equal(labels, connected_components(mask, connectivity=connectivity))


@pytest.mark.parametrize(("min_voxels", "exclude_border"), [(0, False), (50, False), (50, True)])
@pytest.mark.parametrize("kind", ["mask", "labels"])
def test_filters_and_numbering_equal_objects_from_mask(min_voxels, exclude_border, kind):
    labels = phantom()
    data = labels > 0 if kind == "mask" else np.where(labels > 0, 800 - 90 * labels, 0)
    blocks = da.from_array(data, chunks=(7, 44, 48))
    plan = scale.plan_objects(
        blocks, min_voxels=min_voxels, exclude_border=exclude_border, progress=False
    )  # kind found from the values: more than two distinct ones are labels
    assert plan.is_labels == (kind == "labels")
    result = scale.label_blocks(blocks, plan).compute(scheduler="synchronous")
    expected = objects_from_mask(
        data, VOXEL, min_voxels=min_voxels, exclude_border_objects=exclude_border
    )
    np.testing.assert_array_equal(result, expected)
    kept = {(0, False): 6, (50, False): 5, (50, True): 4}[(min_voxels, exclude_border)]
    assert plan.n_objects == kept


def test_table_from_blocks_equals_whole_volume(tmp_path):
    """The per-object table of an OME-Zarr mask processed in z-blocks is the table of the
    whole volume: same rows, columns, dtypes and values to the last bit."""
    mask = phantom() > 0
    source = io.write_volume(tmp_path / "cell.mask.ome.zarr", io.mask_to_uint8(mask), VOXEL)
    blocks, voxel = scale.open_blocks(source, block_slices=7)
    assert voxel == pytest.approx(VOXEL)
    table, plan = scale.quantify_blocks(
        blocks, voxel, tmp_path / "labels.ome.zarr", min_voxels=2, progress=False
    )
    whole = objects_from_mask(mask, VOXEL, min_voxels=2)
    pd.testing.assert_frame_equal(table, measure_objects(whole, VOXEL), check_exact=True)
    stored, stored_voxel = io.open_ome_zarr(tmp_path / "labels.ome.zarr")
    np.testing.assert_array_equal(stored[...], whole)
    assert stored_voxel == pytest.approx(VOXEL)
    # the capsule through every block and the U joined in the top block are one object each
    assert len(table) == 5 and plan.n_objects == 5
    capsule = table.iloc[0]  # first in scan order
    assert capsule["voxels"] == digitize(CAPSULE, GRID, VOXEL).sum()
    assert table["touches_border"].sum() == 1


def test_smoothing_in_blocks_equals_whole(rng):
    prob = rng.random((23, 9, 11)).astype(np.float32)
    for radius in (1, 2, 4):
        blocks = da.from_array(prob, chunks=(5, 9, 11))
        smoothed = scale.smooth_z_blocks(blocks, radius).compute(scheduler="synchronous")
        np.testing.assert_array_equal(smoothed, smooth_z(prob, radius))
        streamed = np.stack(list(scale.iter_mask_slices(prob, 0.5, z_radius=radius,
                                                            block_slices=4)))  # fmt: skip
        np.testing.assert_array_equal(streamed, smooth_z(prob, radius) > np.float32(0.5))


def test_tiff_written_slice_by_slice_is_the_same_file(tmp_path, rng):
    data = rng.random((4, 9, 7)).astype(np.float32)
    a = scale.write_tiff_slices(tmp_path / "a.tif", iter(data), data.shape, np.float32, VOXEL)
    b = io.write_volume(tmp_path / "b.tif", data, VOXEL)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="expected 4"):
        scale.write_tiff_slices(tmp_path / "c.tif", iter(data[:3]), data.shape, np.float32)
    assert not (tmp_path / "c.tif").exists()


@pytest.fixture(scope="module")
def tomogram():
    from sxtquant.simulate.tomogram import simulate_tomogram
    from sxtquant.simulate.tomography import Acquisition

    sim = simulate_tomogram((8, 96, 96), 9.8, seed=3, acquisition=Acquisition(sirt_iterations=4))
    return sim.tomogram


def mask_threshold(probability: np.ndarray) -> float:
    """A threshold that puts about 10 % of the voxels in the mask, whatever the shipped
    model makes of this small simulation: a mask worth comparing."""
    return round(float(np.quantile(probability, 0.9)), 4)


@pytest.fixture
def one_thread(torch_threads):
    """One torch thread (unless $SXTQUANT_TEST_THREADS says otherwise): on busy shared
    cores two threads mostly wait for each other."""


def test_segmentation_in_blocks_equals_whole(tmp_path, tomogram, one_thread):
    """Blocks of 4 slices of 96 x 96 (one tile each) fill the network's batches of 4 tiles
    exactly as the whole volume does: the same probability to the last bit. Blocks of 5
    batch some tiles differently, which changes float32 rounding only."""
    from sxtquant.nn.predict import predict_slices

    source = io.write_volume(tmp_path / "cell.ome.zarr", tomogram, 9.8)
    expected = predict_slices(scale.cached_model("default"), tomogram, batch_size=4, progress=False)
    threshold = mask_threshold(expected)
    for block_slices, z_radius in ((4, 0), (4, 2), (5, 0)):
        prob_path = tmp_path / f"p{block_slices}{z_radius}.ome.zarr"
        mask_path = tmp_path / f"m{block_slices}{z_radius}.ome.zarr"
        stats = scale.segment_ome_zarr(
            source, prob_path, mask_path, "default", block_slices=block_slices,
            z_radius=z_radius, batch_size=4, threshold=threshold, progress=False,
        )  # fmt: skip
        prob, voxel = io.open_ome_zarr(prob_path)
        mask = io.open_ome_zarr(mask_path)[0][...]
        assert voxel == pytest.approx((9.8,) * 3) and prob.chunks[0] == block_slices
        assert set(np.unique(mask)) <= {0, 255}
        assert stats.foreground == int((mask == 255).sum())
        if block_slices == 5:
            np.testing.assert_allclose(prob[...], expected, rtol=0, atol=1e-4)
            continue
        np.testing.assert_array_equal(prob[...], expected)
        smoothed = smooth_z(expected, z_radius) if z_radius else expected
        np.testing.assert_array_equal(mask == 255, smoothed > np.float32(threshold))
        assert 0.01 < (mask == 255).mean() < 0.5


def test_cli_zarr_in_blocks_gives_the_same_mask_and_table(run_cli, tmp_path, tomogram, one_thread):
    """`segment` of a tomogram as MRC (whole, TIFF out) and as OME-Zarr (4-slice blocks,
    OME-Zarr out): the same mask; `quantify` of both masks: the same table."""
    io.write_volume(tmp_path / "in" / "cell.mrc", tomogram, 9.8)
    io.write_volume(tmp_path / "in" / "cellz.ome.zarr", tomogram, 9.8)
    from sxtquant.nn.predict import predict_slices

    threshold = mask_threshold(predict_slices(scale.cached_model("default"), tomogram))
    out = tmp_path / "seg"
    result = run_cli(
        "segment", tmp_path / "in" / "cell.mrc", tmp_path / "in" / "cellz.ome.zarr",
        "-o", out, "--block-slices", "4", "--threshold", str(threshold), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    whole = np.asarray(io.read_volume(out / "cell.mask.tif").data)
    blocks = io.read_volume(out / "cellz.mask.ome.zarr")
    np.testing.assert_array_equal(blocks.data, whole)
    assert blocks.voxel_size_nm == pytest.approx((9.8,) * 3)
    assert (out / "cellz.probability.ome.zarr").is_dir()
    assert (out / "cellz.sxtquant.json").is_file()

    tables = []
    for mask, extra in (("cell.mask.tif", []), ("cellz.mask.ome.zarr", ["--block-slices", "4"])):
        table = tmp_path / f"{mask}.csv"
        result = run_cli("quantify", out / mask, "-o", table, "--min-voxels", "3", *extra)
        assert result.returncode == 0, result.stderr
        tables.append(pd.read_csv(table))
    assert len(tables[0]) >= 1  # (the phantom tests above have objects of all kinds)
    pd.testing.assert_frame_equal(tables[1], tables[0], check_exact=True)


def test_nan_in_a_block_is_a_clear_error_and_leaves_nothing(run_cli, tmp_path):
    data = np.ones((9, 32, 32), np.float32)
    data[7, 3, 4] = np.nan
    source = io.write_volume(tmp_path / "bad.ome.zarr", data, 10.0)
    out = tmp_path / "out"
    result = run_cli("segment", source, "-o", out, "--block-slices", "4", "--quiet")
    assert_user_error(result, "bad.ome.zarr", "NaN", "z = 7")
    assert not out.exists() or not any(out.iterdir())
