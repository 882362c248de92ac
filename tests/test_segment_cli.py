"""`sxtquant segment` end to end with a tiny checkpoint saved in the test."""

from __future__ import annotations

import numpy as np
import pytest

from sxtquant import io
from sxtquant.nn.checkpoint import save_checkpoint
from tests.conftest import assert_user_error
from tests.test_model import calibrated


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_checkpoint(calibrated("tiny"), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def volumes(tmp_path, rng):
    folder = tmp_path / "in"
    vol = rng.normal(size=(3, 37, 50)).astype(np.float32)
    io.write_volume(folder / "cell.mrc", vol, (12.0, 10.0, 10.0))
    io.write_volume(folder / "slice.tif", rng.normal(size=(1, 30, 20)).astype(np.float32), 8.0)
    return folder


def test_segment_writes_probability_and_mask(run_cli, tiny_checkpoint, volumes, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "segment",
        volumes / "cell.mrc",
        volumes / "slice.tif",
        "-o",
        out,
        "--model",
        tiny_checkpoint,
        "--device",
        "cpu",
        "--tile",
        "32",
        "--overlap",
        "16",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    expected = [("cell", (3, 37, 50), (12.0, 10.0, 10.0)), ("slice", (1, 30, 20), (8.0,) * 3)]
    for stem, shape, voxel in expected:
        prob = io.read_volume(out / f"{stem}.probability.tif")
        mask = io.read_volume(out / f"{stem}.mask.tif")
        assert prob.data.dtype == np.float32 and mask.data.dtype == np.uint8
        assert prob.shape == mask.shape == shape
        np.testing.assert_allclose(prob.voxel_size_nm, voxel, rtol=1e-5)
        np.testing.assert_allclose(mask.voxel_size_nm, voxel, rtol=1e-5)
        p = np.asarray(prob.data)
        assert p.min() >= 0 and p.max() <= 1
        assert set(np.unique(mask.data)) <= {0, 255}
        np.testing.assert_array_equal(np.asarray(mask.data) == 255, p > np.float32(0.9))


def test_reference_rule_is_tanh_positive(run_cli, tiny_checkpoint, volumes, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "segment", volumes / "slice.tif", "-o", out, "--model", tiny_checkpoint,
        "--device", "cpu", "--reference-rule", "--tile", "32", "--overlap", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    p = np.asarray(io.read_volume(out / "slice.probability.tif").data)
    m = np.asarray(io.read_volume(out / "slice.mask.tif").data)
    np.testing.assert_array_equal(m == 255, p > 0.5)


def _write_bad(folder, kind, rng):
    if kind == "missing":
        return folder / "nothing.mrc"
    if kind == "nan":
        vol = rng.normal(size=(2, 32, 32)).astype(np.float32)
        vol[1, 3, 4] = np.nan
        return io.write_volume(folder / "nan.tif", vol)
    if kind == "4d":
        import tifffile

        path = folder / "four.tif"
        tifffile.imwrite(path, np.zeros((2, 2, 16, 16), np.float32), metadata={"axes": "TZYX"})
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [("missing", "nothing.mrc"), ("nan", "NaN"), ("4d", "four.tif")],
)
def test_bad_input_exits_2_and_writes_nothing(
    run_cli, tiny_checkpoint, volumes, tmp_path, rng, kind, fragment
):
    bad = _write_bad(volumes, kind, rng)
    out = tmp_path / "out"
    # the good volume first: it must not be written either
    result = run_cli(
        "segment", volumes / "cell.mrc", bad, "-o", out, "--model", tiny_checkpoint,
        "--device", "cpu",
    )  # fmt: skip
    assert_user_error(result, fragment)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--model", "nonexistent"], "nonexistent"),
        (["--model", "paper"], "untrained"),
        (["--tile", "40"], "--tile"),
        (["--overlap", "250"], "--overlap"),
        (["--threshold", "1.5"], "--threshold"),
    ],
)
def test_bad_options_exit_2(run_cli, tiny_checkpoint, volumes, tmp_path, options, fragment):
    out = tmp_path / "out"
    args = ["segment", volumes / "cell.mrc", "-o", out, "--device", "cpu"]
    if "--model" not in options:
        args += ["--model", tiny_checkpoint]
    result = run_cli(*args, *options)
    assert_user_error(result, fragment)
    assert not out.exists() or not any(out.iterdir())


def test_without_a_shipped_model_the_default_is_a_clear_error(run_cli, volumes, tmp_path):
    from sxtquant.nn.checkpoint import SHIPPED_MODELS_DIR

    if (SHIPPED_MODELS_DIR / "default" / "config.json").exists():
        pytest.skip("a default model is shipped")
    result = run_cli("segment", volumes / "cell.mrc", "-o", tmp_path / "out")
    assert_user_error(result, "default", "not installed")


def test_command_defaults_match_the_library():
    from sxtquant.nn import tiling as infer
    from sxtquant.scale.segmentation import SegmentSpec as segment

    assert segment.tile == infer.DEFAULT_TILE
    assert segment.overlap == infer.DEFAULT_OVERLAP
    assert segment.batch_size == infer.DEFAULT_BATCH_SIZE
