"""Inference of every head and of 2.5D networks (sxtquant.nn.predict.predict_heads,
iter_head_slices; block-wise in sxtquant.scale.blocks; `segment`'s region outputs).

Random calibrated tiny networks, no training: the claims are about which input
slices reach which output, how axes are combined, and that blocks, files and the
whole volume agree. One tile per slice and one tile per batch where results are
compared bit for bit (batches of other tiles may round differently)."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from sxtquant import io
from sxtquant.nn.checkpoint import load_model, save_checkpoint
from sxtquant.nn.config import PRESETS
from sxtquant.nn.network import standardize_slices
from sxtquant.nn.predict import (
    head_names,
    iter_head_slices,
    predict_heads,
    predict_slices,
    predict_volume,
)
from sxtquant.nn.tiling import check_axes, reflect_index
from tests.conftest import assert_user_error
from tests.test_model import calibrated

HEADS = ("membrane", "cell", "organelles")
ONE_TILE = {"device": "cpu", "tile": 32, "overlap": 0, "batch_size": 1, "progress": False}


def region_config(in_slices: int):
    return dataclasses.replace(PRESETS["tiny"], in_slices=in_slices, regions=HEADS[1:])


@pytest.fixture(scope="module")
def model25():
    """k = 5 input slices, membrane + cell + organelles."""
    return calibrated(region_config(5))


@pytest.fixture
def stack(rng):
    return rng.normal(size=(9, 32, 32)).astype(np.float32)


def heads_of(model, volume, **options):
    return predict_heads(model, volume, **{**ONE_TILE, **options})


def assert_heads_equal(a: dict, b: dict, z_a=slice(None), z_b=slice(None)) -> None:
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name][z_a], b[name][z_b], err_msg=name)


def test_reflect_index_folds_into_range():
    assert [reflect_index(j, 5) for j in range(-2, 7)] == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert [reflect_index(j, 2) for j in range(-2, 3)] == [0, 1, 0, 1, 0]  # folded twice
    assert [reflect_index(j, 1) for j in range(-2, 3)] == [0] * 5
    assert check_axes("xz") == "xz"
    for bad in ("", "zz", "zw", "Z"):
        with pytest.raises(ValueError, match="axes must be"):
            check_axes(bad)


def test_output_of_slice_z_is_the_network_on_slices_z_minus_2_to_z_plus_2(model25, stack):
    """The truth: the eval network on the 5 slices (each standardised on its own, indices
    reflected at the ends), one pass over the whole 32 x 32 slice."""
    probs = heads_of(model25, stack)
    contexts = {0: [2, 1, 0, 1, 2], 1: [1, 0, 1, 2, 3], 4: [2, 3, 4, 5, 6], 8: [6, 7, 8, 7, 6]}
    for z, context in contexts.items():
        x = torch.from_numpy(standardize_slices(stack[context]))[None]
        with torch.no_grad():
            expected = (model25.forward_heads(x)[0].numpy() + 1) / 2
        for c, name in enumerate(HEADS):
            np.testing.assert_allclose(probs[name][z], expected[c], rtol=0, atol=1e-4)


def test_slice_z_sees_z_plus_minus_2_and_nothing_beyond(model25, stack, rng):
    base = heads_of(model25, stack)
    z = 4
    for far in (z - 3, z + 3):
        changed = stack.copy()
        changed[far] = rng.normal(size=stack.shape[1:])
        assert_heads_equal(heads_of(model25, changed), base, z, z)
    for near in (z - 2, z + 2):
        changed = stack.copy()
        changed[near] = rng.normal(size=stack.shape[1:])
        moved = heads_of(model25, changed)
        for name in HEADS:
            assert np.abs(moved[name][z] - base[name][z]).max() > 1e-3, name


@pytest.mark.parametrize(
    ("n", "first", "last"),
    [
        (9, [2, 1, 0, 1, 2], [6, 7, 8, 7, 6]),
        (2, [0, 1, 0, 1, 0], [1, 0, 1, 0, 1]),
        (1, [0] * 5, [0] * 5),
    ],
)
def test_ends_are_the_stack_explicitly_reflected(model25, stack, n, first, last):
    """Slice 0 (n - 1) comes out as the centre of a stack of its context, reflected by hand."""
    volume = stack[:n]
    probs = heads_of(model25, volume)
    assert_heads_equal(heads_of(model25, volume[first]), probs, 2, 0)
    assert_heads_equal(heads_of(model25, volume[last]), probs, 2, n - 1)


def test_start_stop_give_those_slices_with_context_from_all(model25, stack):
    whole = heads_of(model25, stack)
    part = list(iter_head_slices(model25, stack, start=3, stop=6, **ONE_TILE))
    assert len(part) == 3
    for i, probs in enumerate(part):
        for c, name in enumerate(HEADS):
            np.testing.assert_array_equal(probs[c], whole[name][3 + i])
    (cell,) = iter_head_slices(model25, stack, heads=("cell",), start=8, **ONE_TILE)
    np.testing.assert_array_equal(cell[0], whole["cell"][8])
    with pytest.raises(ValueError, match="heads must be some of membrane, cell, organelles"):
        next(iter_head_slices(model25, stack, heads=("nucleus",), **ONE_TILE))


def test_slices_of_different_shapes_are_refused_for_a_2_5d_network(model25, rng):
    slices = [rng.normal(size=(32, 32)), rng.normal(size=(32, 48))]
    with pytest.raises(ValueError, match="needs them all of one shape"):
        list(iter_head_slices(model25, slices, **ONE_TILE))


@pytest.mark.parametrize("preset", ["regions", "membrane"])
def test_predict_heads_gives_every_head_and_the_membrane_of_predict_volume(preset, model25, rng):
    model = model25 if preset == "regions" else calibrated("tiny")
    volume = rng.normal(size=(4, 37, 50)).astype(np.float32) * 50 + 10
    options = {"device": "cpu", "tile": 32, "overlap": 8, "batch_size": 3, "progress": False}
    probs = predict_heads(model, volume, **options)
    assert tuple(probs) == head_names(model) == (HEADS if preset == "regions" else HEADS[:1])
    for name, p in probs.items():
        assert p.shape == volume.shape and p.dtype == np.float32, name
        assert 0.0 <= p.min() and p.max() <= 1.0 and p.std() > 1e-3, name
    np.testing.assert_array_equal(probs["membrane"], predict_volume(model, volume, **options))
    np.testing.assert_array_equal(probs["membrane"], predict_slices(model, volume, **options))
    out = {name: np.zeros(volume.shape, np.float32) for name in probs}
    assert predict_heads(model, volume, out=out, **options)["membrane"] is out["membrane"]
    assert_heads_equal(out, probs)


def test_axes_zyx_is_the_mean_of_the_three_transposed_predictions(model25, rng):
    volume = rng.normal(size=(12, 20, 24)).astype(np.float32)
    along = {}
    for axis, letter in enumerate("zyx"):
        moved = heads_of(model25, np.moveaxis(volume, axis, 0))
        along[letter] = {name: np.moveaxis(p, 0, axis) for name, p in moved.items()}
        assert_heads_equal(heads_of(model25, volume, axes=letter), along[letter])
    mean = heads_of(model25, volume, axes="zyx")
    for name in HEADS:
        expected = (along["z"][name] + along["y"][name] + along["x"][name]) / np.float32(3)
        np.testing.assert_array_equal(mean[name], expected)
        assert np.abs(along["z"][name] - along["y"][name]).max() > 1e-3  # a real average
    with pytest.raises(ValueError, match="axes must be"):
        heads_of(model25, volume, axes="zz")


def symmetric_cell(n: int) -> np.ndarray:
    """A centred membrane shell plus a broad blob in a cube: the same under every
    permutation of the axes, exactly (r^2 in integers, each voxel one function of it)."""
    c = 2 * np.arange(n) - (n - 1)  # odd integers, centre between voxels
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    r = np.sqrt(r2) / 2
    shell = np.exp(-(((r - n / 3) / 1.5) ** 2))
    return (shell + 0.5 * np.exp(-((r / (n / 4)) ** 2))).astype(np.float32)


def test_axes_zyx_on_a_symmetric_cell_is_symmetric_under_every_axis_permutation(model25):
    """On a volume V the same under every permutation of its axes, the prediction along y
    (x) is the one along z with z and y (z and x) swapped. With TTA the prediction along
    z, Q, is symmetric in y <-> x, but not in z <-> y (a slice is not its own
    neighbours); so zyx = (Q + Q^T(zy) + Q^T(zx)) / 3, symmetric under all 6 permutations
    (to float32 rounding: the transposed slices are summed in another order)."""
    volume = symmetric_cell(16)
    for perm in itertools.permutations(range(3)):
        np.testing.assert_array_equal(volume.transpose(perm), volume)
    q = heads_of(model25, volume, tta=True)
    zyx = heads_of(model25, volume, axes="zyx", tta=True)
    for name in HEADS:
        np.testing.assert_allclose(q[name].transpose(0, 2, 1), q[name], rtol=0, atol=1e-5)
        assert np.abs(q[name].transpose(1, 0, 2) - q[name]).max() > 1e-3, name
        swapped = (q[name] + q[name].transpose(1, 0, 2) + q[name].transpose(2, 1, 0)) / 3
        np.testing.assert_allclose(zyx[name], swapped, rtol=0, atol=1e-5)
        for perm in itertools.permutations(range(3)):
            np.testing.assert_allclose(
                zyx[name].transpose(perm), zyx[name], rtol=0, atol=1e-5, err_msg=f"{name} {perm}"
            )


# -- blocks (OME-Zarr path)


@pytest.mark.parametrize("block_slices", [1, 2, 4, 11])
def test_blocks_of_a_2_5d_network_equal_the_whole_volume(model25, rng, block_slices):
    """Each block reads k//2 = 2 slices of halo from its neighbours (even from two blocks
    away), reflection only at the volume's ends: the same bits as the whole volume."""
    da = pytest.importorskip("dask.array")
    import dask

    from sxtquant.scale.blocks import predict_blocks, predict_head_blocks

    volume = rng.normal(size=(11, 32, 32)).astype(np.float32)
    whole = heads_of(model25, volume)
    lazy = da.from_array(volume, chunks=(block_slices, -1, -1))
    options = {key: ONE_TILE[key] for key in ("device", "tile", "overlap", "batch_size")}
    heads = predict_head_blocks(lazy, model25, **options)
    membrane = predict_blocks(lazy, model25, **options)
    assert tuple(heads) == HEADS and membrane.chunks == lazy.chunks
    computed = dask.compute(heads, membrane, scheduler="synchronous")
    assert_heads_equal(computed[0], whole)
    np.testing.assert_array_equal(computed[1], whole["membrane"])


def test_segment_ome_zarr_writes_the_regions_of_the_whole_volume(model25, rng, tmp_path):
    pytest.importorskip("dask.array")
    from sxtquant.scale.blocks import segment_ome_zarr

    volume = rng.normal(size=(7, 32, 32)).astype(np.float32)
    source = io.write_volume(tmp_path / "cell.ome.zarr", volume, 9.0)
    regions = {name: tmp_path / f"cell.{name}.probability.ome.zarr" for name in HEADS[1:]}
    segment_ome_zarr(
        source, tmp_path / "p.ome.zarr", tmp_path / "m.ome.zarr", model25, block_slices=3,
        region_paths=regions, device="cpu", tile=32, overlap=0, batch_size=1, progress=False,
    )  # fmt: skip
    whole = heads_of(model25, volume)
    for name, path in {"membrane": tmp_path / "p.ome.zarr", **regions}.items():
        image, voxel = io.open_ome_zarr(path)
        assert voxel == pytest.approx((9.0,) * 3) and image.dtype == np.float32
        np.testing.assert_array_equal(image[...], whole[name], err_msg=name)


# -- `sxtquant segment`


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "regions": save_checkpoint(calibrated(region_config(3)), folder / "regions"),
        "membrane": save_checkpoint(calibrated("tiny"), folder / "membrane"),
    }


def _segment(run_cli, source, out, model, *extra):
    result = run_cli(
        "segment", source, "-o", out, "--model", model, "--device", "cpu",
        "--tile", "32", "--overlap", "16", "--quiet", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_segment_writes_region_probabilities_for_a_region_network(
    run_cli, checkpoints, rng, tmp_path
):
    volume = rng.normal(size=(5, 37, 50)).astype(np.float32)
    voxel = (12.0, 10.0, 10.0)
    source = io.write_volume(tmp_path / "in" / "cell.mrc", volume, voxel)
    out = tmp_path / "out"
    names = ["cell.probability.tif", "cell.mask.tif"]
    regions = ["cell.cell.probability.tif", "cell.organelles.probability.tif"]

    printed = _segment(run_cli, source, out, checkpoints["regions"])
    assert all(str(out / name) in printed for name in names + regions)
    expected = predict_heads(
        load_model(checkpoints["regions"]), volume, device="cpu", tile=32, overlap=16,
        progress=False,
    )  # fmt: skip
    for head, name in zip(HEADS, ["cell.probability.tif", *regions], strict=True):
        image = io.read_volume(out / name)
        assert image.shape == volume.shape and image.data.dtype == np.float32, name
        np.testing.assert_allclose(image.voxel_size_nm, voxel, rtol=1e-5)
        p = np.asarray(image.data)
        assert 0.0 <= p.min() and p.max() <= 1.0
        np.testing.assert_allclose(p, expected[head], rtol=0, atol=1e-5, err_msg=name)
    record = json.loads((out / "cell.sxtquant.json").read_text())
    assert [o["path"] for o in record["outputs"]] == names + regions
    assert "axes" not in record["identity"]["options"]

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert "up to date" in _segment(run_cli, source, out, checkpoints["regions"])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    (out / regions[1]).unlink()
    assert "up to date" not in _segment(run_cli, source, out, checkpoints["regions"])
    assert (out / regions[1]).is_file()

    # --axes zyx is another result: redone, the mean over the three axes
    assert "up to date" not in _segment(
        run_cli, source, out, checkpoints["regions"], "--axes", "zyx"
    )
    record = json.loads((out / "cell.sxtquant.json").read_text())
    assert record["identity"]["options"]["axes"] == "zyx"
    zyx = predict_heads(
        load_model(checkpoints["regions"]), volume, axes="zyx", device="cpu", tile=32,
        overlap=16, progress=False,
    )  # fmt: skip
    cell = np.asarray(io.read_volume(out / regions[0]).data)
    np.testing.assert_allclose(cell, zyx["cell"], rtol=0, atol=1e-5)


def test_segment_writes_no_regions_for_a_membrane_network(run_cli, checkpoints, rng, tmp_path):
    source = io.write_volume(tmp_path / "in" / "cell.tif", rng.normal(size=(2, 30, 20)), 8.0)
    out = tmp_path / "out"
    printed = _segment(run_cli, source, out, checkpoints["membrane"])
    assert sorted(p.name for p in out.iterdir()) == [
        "cell.mask.tif",
        "cell.probability.tif",
        "cell.sxtquant.json",
    ]
    assert printed.startswith(
        f"{source}: {out / 'cell.probability.tif'}, {out / 'cell.mask.tif'} ("
    )


def test_segment_refuses_bad_axes(run_cli, checkpoints, tmp_path, rng):
    source = io.write_volume(tmp_path / "cell.tif", rng.normal(size=(2, 32, 32)), 8.0)
    result = run_cli("segment", source, "-o", tmp_path / "out", "--axes", "zz")
    assert_user_error(result, "--axes", "distinct letters")
    zarr = io.write_volume(tmp_path / "cell.ome.zarr", rng.normal(size=(2, 32, 32)), 8.0)
    result = run_cli("segment", zarr, "-o", tmp_path / "out", "--axes", "zyx")
    assert_user_error(result, "--axes", "OME-Zarr")
    assert not (tmp_path / "out").exists()
