"""Tiled inference: coverage, seam-free stitching, exactness, streaming, shapes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sxtquant.core.device import resolve_device
from sxtquant.nn.config import ModelConfig
from sxtquant.nn.network import standardize_slices
from sxtquant.nn.predict import iter_label_slices, predict_slices, predict_volume
from sxtquant.nn.tiling import tile_starts
from tests.test_model import calibrated


class Affine(nn.Module):
    """A trivial 'network': (a x + b, a x + b), shape preserving, no context."""

    def __init__(self, a: float = 1.0, b: float = 0.0):
        super().__init__()
        self.a, self.b = a, b
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        y = self.a * x + self.b
        return y, y


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(16, 16, 0), (256, 256, 32), (512, 256, 32), (528, 256, 32), (1296, 256, 32), (64, 32, 16)],
)
def test_tile_starts_cover_with_aligned_starts_and_minimum_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + tile == length
    assert all(s % 16 == 0 for s in starts)
    assert all(b > a for a, b in itertools.pairwise(starts))
    assert all(a + tile - b >= overlap for a, b in itertools.pairwise(starts))


def test_tile_starts_reject_bad_arguments():
    with pytest.raises(ValueError, match="multiples of 16"):
        tile_starts(100, 32, 8)
    with pytest.raises(ValueError, match="at least 16"):
        tile_starts(256, 32, 24)


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((3, 511, 237), 64, 16), ((2, 511, 237), 256, 32), ((1, 37, 21), 256, 32), ((2, 5, 1), 32, 0)],
)
@pytest.mark.parametrize("tta", [False, True])
def test_identity_predictor_stitches_back_the_input(shape, tile, overlap, tta):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    labels = list(
        iter_label_slices(
            Affine(),
            x,
            device="cpu",
            tile=tile,
            overlap=overlap,
            batch_size=3,
            tta=tta,
            standardize=False,
            progress=False,
        )
    )
    out = np.stack(labels)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, rtol=1e-6, atol=1e-6)


def test_probability_is_affine_of_tanh_and_standardised_input():
    """With an identity network the probability is (standardise(x) + 1) / 2, clipped."""
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 0.2, size=(2, 100, 130)).astype(np.float32) * 50
    prob = predict_slices(Affine(), x, device="cpu", tile=64, overlap=16, progress=False)
    expected = np.clip((standardize_slices(x) + 1) / 2, 0, 1)
    assert prob.dtype == np.float32
    np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_tiles_are_batched():
    model = Affine()
    x = np.zeros((3, 64, 64), np.float32)  # 9 tiles of 32 with overlap 16 -> 3 x 3 = 9 per slice
    list(
        iter_label_slices(model, x, device="cpu", tile=32, overlap=16, batch_size=4, progress=False)
    )
    assert model.calls == -(-27 // 4)


@pytest.fixture(scope="module")
def tiny():
    return calibrated("tiny")


@pytest.mark.parametrize(("h", "w"), [(17, 250), (33, 33), (64, 48), (1, 40)])
def test_output_shapes_for_odd_sizes_with_the_tiny_network(tiny, h, w):
    model = tiny
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, h, w)).astype(np.float32)
    prob = predict_slices(model, x, device="cpu", tile=64, overlap=16, progress=False)
    assert prob.shape == (2, h, w)
    assert prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1))


def test_a_2d_image_is_one_slice():
    prob = predict_slices(
        Affine(), np.ones((20, 30)), device="cpu", tile=32, overlap=8, progress=False
    )
    assert prob.shape == (1, 20, 30)


def test_tiled_equals_whole_slice_inference_for_a_real_network():
    """Seam-free and exact: with the tile rim discarded (overlap/4 >= receptive radius)
    the blended result equals one whole-slice pass, away from the image border."""
    # a real SXTNet, shallow enough that its receptive field (about +-27 px) fits the rim
    config = ModelConfig(width=4, n_stages=2, neck_depth=1, label_decoder_blocks=1)
    model = calibrated(config, seed=3)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 150, 237)).astype(np.float32)
    tiled = np.stack(
        list(
            iter_label_slices(
                model, x, device="cpu", tile=128, overlap=112, batch_size=8, progress=False
            )
        )
    )
    # whole-slice reference: the same standardisation and padding to a multiple of 4
    z = standardize_slices(x)
    z = np.pad(z, ((0, 0), (0, 2), (0, 3)), mode="reflect")
    with torch.no_grad():
        whole = model(torch.from_numpy(z)[:, None])[1][:, 0, :150, :237].numpy()
    assert np.abs(whole).max() > 0.1  # a non-trivial output
    border = 32
    inner = (slice(None), slice(border, -border), slice(border, -border))
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=1e-4)


def test_predict_volume_streams_into_a_memmap(tmp_path):
    rng = np.random.default_rng(5)
    volume = rng.normal(size=(4, 40, 50)).astype(np.float32)
    src = np.lib.format.open_memmap(
        tmp_path / "in.npy", mode="w+", dtype=np.float32, shape=(4, 40, 50)
    )
    src[:] = volume
    out = np.lib.format.open_memmap(
        tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(4, 40, 50)
    )
    res = predict_volume(Affine(), src, out, device="cpu", tile=32, overlap=8, progress=False)
    assert res is out
    np.testing.assert_allclose(out, np.clip((standardize_slices(volume) + 1) / 2, 0, 1), atol=1e-5)


def test_iterator_yields_before_reading_everything():
    """Slices come out one by one; later slices are read only when needed."""

    class Lazy:
        ndim = 3

        def __init__(self):
            self.read = []

        def __len__(self):
            return 5

        def __getitem__(self, i):
            self.read.append(i)
            return np.full((32, 32), float(i), np.float32)

    data = Lazy()
    it = iter_label_slices(
        Affine(), data, device="cpu", tile=32, overlap=0, batch_size=1, standardize=False,
        progress=False,
    )  # fmt: skip
    first = next(it)
    assert np.all(first == 0)
    assert max(data.read) <= 1


def test_bad_arguments():
    x = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match="multiple of 16"):
        predict_slices(Affine(), x, device="cpu", tile=40, progress=False)
    with pytest.raises(ValueError, match="overlap"):
        predict_slices(Affine(), x, device="cpu", tile=32, overlap=20, progress=False)
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_agrees_with_cpu(tiny):
    model = tiny
    x = np.random.default_rng(6).normal(size=(2, 96, 80)).astype(np.float32)
    cpu = predict_slices(model, x, device="cpu", tile=64, overlap=16, progress=False)
    gpu = predict_slices(model, x, device="cuda", tile=64, overlap=16, progress=False)
    assert np.mean(np.abs(cpu - gpu)) < 0.05


def test_reuse_freed_memory_is_idempotent():
    from sxtquant.core.memory import reuse_freed_memory

    first = reuse_freed_memory()
    assert reuse_freed_memory() == first
    assert isinstance(first, bool)
