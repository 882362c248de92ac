"""Volume I/O: round trips of every format, voxel sizes, memory maps, bad files."""

from __future__ import annotations

import json

import h5py
import mrcfile
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sxtquant import io
from sxtquant.core.errors import InputError

VOXEL = (9.8, 4.9, 3.3)
FORMATS = ["tif", "mrc", "zarr", "h5"]
DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.uint32]


def _volume(rng, dtype, shape=(4, 9, 13)):
    if np.issubdtype(dtype, np.floating):
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    high = min(int(info.max), 2**20)
    return rng.integers(max(int(info.min), -1000), high, size=shape).astype(dtype)


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_preserves_data_and_voxel_size(tmp_path, rng, ext, dtype):
    data = _volume(rng, dtype)
    path = io.write_volume(tmp_path / f"vol.{ext}", data, VOXEL)
    volume = io.read_volume(path)
    assert volume.data.shape == data.shape
    np.testing.assert_array_equal(np.asarray(volume.data), data)
    if ext == "mrc" and dtype in (np.uint8, np.uint32):
        # MRC has no uint8/uint32 mode: stored exactly as uint16 / float32
        assert volume.data.dtype in (np.uint16, np.float32)
    else:
        assert volume.data.dtype == data.dtype
    np.testing.assert_allclose(volume.voxel_size_nm, VOXEL, rtol=1e-6)
    assert volume.path == path


@pytest.mark.parametrize("ext", FORMATS)
def test_round_trip_without_voxel_size(tmp_path, rng, ext):
    data = _volume(rng, np.float32)
    volume = io.read_volume(io.write_volume(tmp_path / f"vol.{ext}", data))
    assert volume.voxel_size_nm is None
    with pytest.raises(InputError, match="--voxel-size"):
        volume.require_voxel_size()
    assert volume.require_voxel_size(7.5) == (7.5, 7.5, 7.5)


def test_2d_image_is_one_slice(tmp_path, rng):
    image = rng.normal(size=(17, 23)).astype(np.float32)
    tifffile.imwrite(tmp_path / "image.tif", image)
    volume = io.read_volume(tmp_path / "image.tif")
    assert volume.data.shape == (1, 17, 23)


def test_mrc_is_memory_mapped_not_copied(tmp_path, rng):
    data = _volume(rng, np.float32, shape=(6, 32, 40))
    path = io.write_volume(tmp_path / "big.rec", data, 9.8)
    volume = io.read_volume(path)
    assert isinstance(volume.data, np.memmap)
    assert not volume.data.flags.writeable  # the user's file can't be changed through it
    np.testing.assert_array_equal(volume.data, data)


def test_mrc_voxel_size_from_header_in_angstrom(tmp_path):
    with mrcfile.new(tmp_path / "a.mrc") as mrc:
        mrc.set_data(np.zeros((2, 3, 4), np.float32))
        mrc.voxel_size = (98.0, 49.0, 33.0)  # x, y, z in Å
    assert io.read_volume(tmp_path / "a.mrc").voxel_size_nm == pytest.approx((3.3, 4.9, 9.8))


def test_uncompressed_tiff_is_memory_mapped(tmp_path, rng):
    data = _volume(rng, np.float32)
    path = io.write_volume(tmp_path / "stack.tif", data, VOXEL)
    assert isinstance(io.read_volume(path).data, np.memmap)


def test_compressed_tiff_is_read(tmp_path, rng):
    data = _volume(rng, np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", data, compression="zlib", photometric="minisblack")
    np.testing.assert_array_equal(io.read_volume(tmp_path / "c.tif").data, data)


def test_imagej_hyperstack_singleton_axes_are_squeezed(tmp_path, rng):
    data = _volume(rng, np.uint8, shape=(1, 5, 1, 8, 9))  # T Z C Y X
    tifffile.imwrite(
        tmp_path / "hyper.tif",
        data,
        imagej=True,
        resolution=(1 / 12.5, 1 / 12.5),
        metadata={"axes": "TZCYX", "spacing": 25.0, "unit": "nm"},
    )
    volume = io.read_volume(tmp_path / "hyper.tif")
    np.testing.assert_array_equal(volume.data, data[0, :, 0])
    assert volume.voxel_size_nm == pytest.approx((25.0, 12.5, 12.5))


def test_imagej_micron_unit_is_converted(tmp_path, rng):
    data = _volume(rng, np.uint8)
    tifffile.imwrite(
        tmp_path / "um.tif",
        data,
        imagej=True,
        resolution=(1 / 0.0098, 1 / 0.0098),
        metadata={"axes": "ZYX", "spacing": 0.0098, "unit": "micron"},
    )
    assert io.read_volume(tmp_path / "um.tif").voxel_size_nm == pytest.approx((9.8,) * 3)


def test_multichannel_tiff_is_refused(tmp_path, rng):
    data = _volume(rng, np.uint8, shape=(4, 3, 8, 9))
    tifffile.imwrite(tmp_path / "rgb.tif", data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(InputError, match="3 channels"):
        io.read_volume(tmp_path / "rgb.tif")


def test_tiff_folder_in_natural_order(tmp_path, rng):
    folder = tmp_path / "slices"
    folder.mkdir()
    slices = [np.full((6, 7), i, np.uint16) for i in range(12)]
    for i, image in enumerate(slices):
        tifffile.imwrite(
            folder / f"slice_{i}.tif",
            image,
            imagej=True,
            resolution=(1 / 9.8, 1 / 9.8),
            metadata={"spacing": 9.8, "unit": "nm"},
        )
    (folder / "notes.txt").write_text("not an image")
    volume = io.read_volume(folder)
    assert volume.data.shape == (12, 6, 7)
    assert [int(s[0, 0]) for s in volume.data] == list(range(12))  # 2 after 1, 10 after 9
    assert volume.voxel_size_nm == pytest.approx((9.8,) * 3)


def test_tiff_folder_with_mismatched_slice(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    tifffile.imwrite(folder / "a1.tif", np.zeros((5, 5), np.uint8))
    tifffile.imwrite(folder / "a2.tif", np.zeros((5, 6), np.uint8))
    with pytest.raises(InputError, match="a2.tif"):
        io.read_volume(folder)


def test_hdf5_dataset_choice_and_element_size(tmp_path, rng):
    path = tmp_path / "two.h5"
    a, b = _volume(rng, np.float32), _volume(rng, np.uint8)
    with h5py.File(path, "w") as f:
        f["raw"] = a
        f["raw"].attrs["element_size_um"] = [0.0098, 0.0049, 0.0033]
        f.create_group("seg")["mask"] = b
        f["scalar"] = 3.0
    with pytest.raises(InputError, match="raw, seg/mask"):
        io.read_volume(path)
    volume = io.read_volume(path, dataset="raw")
    np.testing.assert_array_equal(volume.data, a)
    assert volume.voxel_size_nm == pytest.approx(VOXEL)
    np.testing.assert_array_equal(io.read_volume(path, dataset="seg/mask").data, b)
    with pytest.raises(InputError, match="no dataset 'nope'"):
        io.read_volume(path, dataset="nope")


def test_ome_zarr_metadata_is_ngff(tmp_path, rng):
    path = io.write_volume(tmp_path / "cell.ome.zarr", _volume(rng, np.float32), VOXEL)
    attrs = json.loads((path / ".zattrs").read_text())
    multiscale = attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in multiscale["axes"]} == {"nanometer"}
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx(list(VOXEL))
    assert io.volume_stem(path) == "cell"


def test_ome_zarr_v05_with_channel_axis(tmp_path, rng):
    """NGFF 0.5 (zarr v3, metadata under 'ome'), a singleton c axis, micrometre units."""
    data = _volume(rng, np.uint16, shape=(1, 4, 8, 9))
    group = zarr.open_group(str(tmp_path / "v05.zarr"), mode="w", zarr_format=3)
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"
    ]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {
                        "path": "s0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0, 0.0098, 0.0049, 0.0033]}
                        ],
                    }
                ],
            }
        ],
    }
    group.create_array("s0", shape=data.shape, dtype=data.dtype)[...] = data
    volume = io.read_volume(tmp_path / "v05.zarr")
    np.testing.assert_array_equal(volume.data, data[0])
    assert volume.voxel_size_nm == pytest.approx(VOXEL)
    # opened lazily: the singleton channel axis is indexed away slab by slab
    array, voxel = io.open_ome_zarr(tmp_path / "v05.zarr")
    assert array.shape == data.shape[1:] and array.ndim == 3 and array.dtype == data.dtype
    assert len(array.chunks) == 3 and voxel == pytest.approx(VOXEL)
    np.testing.assert_array_equal(array[1:3], data[0, 1:3])
    np.testing.assert_array_equal(array[2, :, 4], data[0, 2, :, 4])
    np.testing.assert_array_equal(np.asarray(array), data[0])


def test_ome_zarr_is_named_after_its_final_path(tmp_path, rng):
    path = io.write_volume(tmp_path / "cell.ome.zarr", _volume(rng, np.uint8), VOXEL)
    attrs = json.loads((path / ".zattrs").read_text())
    assert attrs["multiscales"][0]["name"] == "cell"


@pytest.mark.parametrize(
    ("values", "problem"),
    [(np.nan, "NaN values"), (np.inf, "infinite values")],
)
def test_non_finite_values_are_refused(tmp_path, values, problem):
    data = np.zeros((3, 4, 5), np.float32)
    data[2, 1, 1] = values
    path = io.write_volume(tmp_path / "bad.mrc", data, 9.8)
    with pytest.raises(
        InputError, match=rf"bad.mrc: the volume contains {problem} \(first at z = 2\)"
    ):
        io.read_volume(path)


def test_wrong_dimensionality_and_empty_are_refused(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["four"] = np.zeros((2, 3, 4, 5), np.float32)
        f["empty"] = np.zeros((0, 4, 5), np.float32)
    with pytest.raises(InputError, match="x.h5: the volume is empty"):
        io.read_volume(tmp_path / "x.h5")  # the only 2D/3D dataset is the empty one
    with pytest.raises(InputError, match="expected a 2D image or a 3D volume"):
        io.read_volume(tmp_path / "x.h5", dataset="four")
    with pytest.raises(InputError, match="empty"):
        io.read_volume(tmp_path / "x.h5", dataset="empty")


def test_missing_corrupt_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.read_volume(tmp_path / "missing.mrc")
    (tmp_path / "junk.mrc").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="junk.mrc"):
        io.read_volume(tmp_path / "junk.mrc")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="junk.tif"):
        io.read_volume(tmp_path / "junk.tif")
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        io.read_volume(tmp_path / "notes.docx")


def test_truncated_mrc_is_refused(tmp_path, rng):
    path = io.write_volume(tmp_path / "t.mrc", _volume(rng, np.float32, (8, 16, 16)), 9.8)
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(InputError, match="t.mrc"):
        io.read_volume(path)


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.tif"
    target.write_text("the user's old result")
    with pytest.raises(RuntimeError), io.atomic_output(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("disk full")
    assert target.read_text() == "the user's old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_atomic_output_replaces_folder(tmp_path, rng):
    first = io.write_volume(tmp_path / "v.zarr", _volume(rng, np.uint8), VOXEL)
    second = _volume(rng, np.uint8)
    io.write_volume(first, second, VOXEL)
    np.testing.assert_array_equal(io.read_volume(first).data, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.zarr"]


def test_write_mask_and_probability(tmp_path):
    mask = np.zeros((2, 3, 3), bool)
    mask[1, 1, 1] = True
    written = io.read_volume(io.write_mask(tmp_path / "m.tif", mask, 10.0))
    assert written.data.dtype == np.uint8
    assert set(np.unique(written.data)) == {0, 255}
    prob = io.read_volume(io.write_probability(tmp_path / "p.tif", np.full((2, 3, 3), 1.5), 10.0))
    assert prob.data.dtype == np.float32 and float(prob.data.max()) == 1.0


def test_table_and_json_writers(tmp_path):
    import pandas as pd

    table = pd.DataFrame({"label": [1, 2], "volume_nm3": [1.5, 2.5]})
    io.write_table(table, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), table)
    io.write_json({"f1": float("nan"), "x": np.float32(0.5)}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"f1": None, "x": 0.5}


_dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.float32])
# y, x >= 2: tifffile's ImageJ writer takes a trailing axis of length 1 for colour samples
_shapes = st.tuples(st.integers(1, 5), st.integers(2, 17), st.integers(2, 17))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dtype=_dtypes,
    shape=_shapes,
    seed=st.integers(0, 2**31),
    ext=st.sampled_from(["tif", "mrc"]),
    voxel=st.tuples(*[st.floats(0.1, 1000.0)] * 3),
)
def test_property_round_trip_tiff_mrc(tmp_path, dtype, shape, seed, ext, voxel):
    data = _volume(np.random.default_rng(seed), dtype, shape)
    path = io.write_volume(tmp_path / f"p.{ext}", data, voxel)
    volume = io.read_volume(path)
    np.testing.assert_array_equal(np.asarray(volume.data), data)
    np.testing.assert_allclose(volume.voxel_size_nm, voxel, rtol=1e-6)
