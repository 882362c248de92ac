"""The CPU inference form (sxtquant.nn.fastform): same outputs as the eval-mode network.

Every rewrite in FastSXTNet is exact arithmetic (up to float32 rounding): folded batch
norms, sub-pixel transposed convolutions, collapsed linear heads, single-channel
convolutions as matrix products. Each is checked against the plain PyTorch layers it
replaces, and the whole network against the eval-mode SXTNet and against the
reference implementation's own outputs (the converted Keras fixture).
"""

from __future__ import annotations

import copy
import functools
import gc
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sxtquant.core import memory
from sxtquant.nn import fastform
from sxtquant.nn.config import ModelConfig
from sxtquant.nn.fastform import FastSXTNet, _collapse, _ConvToOne, _Lin, _SubPixelConvTranspose
from sxtquant.nn.inference import prepare_for_inference
from sxtquant.nn.keras import load_keras_weights
from sxtquant.nn.layers import SameConvTranspose2d
from sxtquant.nn.network import SXTNet, build_model, count_parameters
from tests.test_model import calibrated as _calibrated

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
CL = torch.channels_last
ONEDNN = [True, False] if fastform.onednn_available() else [False]


@functools.cache
def calibrated(config: ModelConfig, seed: int) -> SXTNet:
    """A calibrated random network (tests.test_model), built once per module; the tests
    here leave it in eval mode."""
    return _calibrated(config, seed)


def assert_same_outputs(ref, out, rel=1e-4):
    """Label (tanh) to 1e-4; the unbounded image to 1e-4 of its largest value."""
    for a, b in zip(ref, out, strict=True):
        assert a.shape == b.shape
        scale = max(1.0, a.abs().max().item())
        assert (a - b).abs().max().item() <= rel * scale


# --------------------------------------------------------------------------- parts


@pytest.mark.parametrize("onednn", ONEDNN)
@pytest.mark.parametrize(("k", "s"), [(3, 2), (1, 2), (2, 2), (4, 2), (5, 2), (3, 3)])
def test_sub_pixel_transposed_convolution_is_the_transposed_convolution(k, s, onednn):
    gen = torch.Generator().manual_seed(k * 10 + s)
    conv_t = SameConvTranspose2d(6, 5, k, stride=s)
    with torch.no_grad():
        conv_t.weight.normal_(generator=gen)
        conv_t.bias.normal_(generator=gen)
    sub = _SubPixelConvTranspose(conv_t, onednn=onednn)
    for h, w in [(7, 5), (16, 16), (1, 3)]:
        x = torch.randn(2, 6, h, w, generator=gen)
        with torch.no_grad():
            ref = conv_t(x)
            out = sub(x.contiguous(memory_format=CL))
        assert out.shape == (2, 5, s * h, s * w) == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_sub_pixel_transposed_convolution_writes_into_a_channel_slice():
    gen = torch.Generator().manual_seed(1)
    conv_t = SameConvTranspose2d(4, 3, 3, stride=2)
    with torch.no_grad():
        conv_t.weight.normal_(generator=gen)
    sub = _SubPixelConvTranspose(conv_t, onednn=ONEDNN[0])
    x = torch.randn(1, 4, 5, 6, generator=gen).contiguous(memory_format=CL)
    buf = torch.full((1, 7, 10, 12), 7.0).contiguous(memory_format=CL)
    with torch.no_grad():
        sub(x, out=buf[:, 4:])
        torch.testing.assert_close(buf[:, 4:], conv_t(x), rtol=1e-5, atol=1e-5)
    assert torch.all(buf[:, :4] == 7.0)  # the rest of the buffer is untouched


def _lin(gen, cout, cin, k, pad=None):
    p = k // 2
    return _Lin(
        torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64),
        torch.randn(cout, generator=gen, dtype=torch.float64),
        pad if pad is not None else (p, p, p, p),
    )


def _apply(chain, x):
    for lin in chain:
        top, bottom, left, right = lin.pad
        x = F.conv2d(F.pad(x, (left, right, top, bottom)), lin.weight, lin.bias)
    return x


def test_collapsed_linear_chain_is_the_same_map_with_fewer_multiply_adds():
    # the image head of the paper network (m = 64, scaled to m = 8 here): three
    # bottlenecks m -> m, m -> m, m -> 1 with bias, no non-linearity
    gen = torch.Generator().manual_seed(2)
    m = 8
    chain = []
    for cin, cout in [(m, m), (m, m), (m, 1)]:
        r = max(1, cout // 2)
        chain += [_lin(gen, r, cin, 1), _lin(gen, r, r, 3), _lin(gen, cout, r, 1)]
    short = _collapse(chain)
    assert [tuple(c.weight.shape) for c in short] == [
        (4, 8, 1, 1),
        (4, 4, 3, 3),
        (1, 4, 3, 3),
        (1, 1, 3, 3),
    ]
    assert sum(c.macs for c in short) < sum(c.macs for c in chain)
    x = torch.randn(2, m, 9, 11, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(_apply(short, x), _apply(chain, x), rtol=1e-10, atol=1e-10)


def test_collapse_keeps_a_chain_that_would_get_dearer():
    gen = torch.Generator().manual_seed(3)
    chain = [_lin(gen, 8, 16, 1), _lin(gen, 8, 8, 3), _lin(gen, 16, 8, 1)]  # a bottleneck
    assert _collapse(chain) == chain


@pytest.mark.parametrize(
    ("cin", "k", "pad"),
    [
        (5, 3, (1, 1, 1, 1)),
        (1, 3, (1, 1, 1, 1)),
        (4, 1, (0, 0, 0, 0)),
        (3, 2, (0, 1, 0, 1)),
        (3, 3, (2, 0, 1, 1)),
    ],
)
def test_single_output_channel_convolution(cin, k, pad):
    gen = torch.Generator().manual_seed(cin + k)
    lin = _lin(gen, 1, cin, k, pad)
    x = torch.randn(2, cin, 6, 7, generator=gen)
    out = _ConvToOne(lin)(x.contiguous(memory_format=CL))
    ref = _apply([lin], x.double()).float()
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("onednn", ONEDNN)
@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(width=8),  # tiny
        ModelConfig(width=64, n_stages=1, neck_width_factor=2, label_decoder_blocks=1),
        ModelConfig(width=4, kernel_size=5, neck_kernel_sizes=(2, 4), block_depth=3),
    ],
    ids=["tiny", "paper-width-1-stage", "odd"],
)
def test_fast_network_gives_the_eval_outputs(config, onednn):
    model = calibrated(config, seed=4)
    fast = FastSXTNet(model, onednn=onednn)
    assert count_parameters(fast) == 0
    x = torch.randn(2, 1, 32, 48, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref = model(x)
        for fmt in (CL, torch.contiguous_format):
            out = fast(x.contiguous(memory_format=fmt))
            assert_same_outputs(ref, out)
            assert torch.equal(fast.forward_label(x.contiguous(memory_format=fmt)), out[1])


def test_prepare_for_inference_gives_the_fast_form_on_cpu_and_leaves_the_model():
    model = _calibrated(ModelConfig(width=8), seed=6).train()
    before = copy.deepcopy(model.state_dict())
    fast = prepare_for_inference(model)
    if fastform.onednn_available():
        assert isinstance(fast, FastSXTNet)
    assert isinstance(fast, SXTNet)  # so that infer.py runs forward_label
    assert model.training and count_parameters(model) == count_parameters(build_model("tiny"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        out = fast(x.contiguous(memory_format=CL))
        assert_same_outputs(model.eval()(x), out)
        again = copy.deepcopy(fast)  # after a pass: pre-packed weights are not copied
        assert torch.equal(again(x.contiguous(memory_format=CL))[1], out[1])
        generic = prepare_for_inference(model, channels_last=False)
        assert not isinstance(generic, FastSXTNet)
        assert_same_outputs(model(x), generic(x))


@pytest.mark.parametrize("case", ["batch64", "wide", "tile256"])
def test_fast_form_of_the_converted_reference_reproduces_its_outputs(case):
    """The m = 4 reference network, weights and outputs written by TensorFlow."""
    with np.load(FIXTURES / "m4.reference.npz") as data:
        ref = {k: data[k] for k in data.files if k.startswith(case)}
    fast = prepare_for_inference(load_keras_weights(FIXTURES / "m4_weights.h5", "auto"))
    x = torch.from_numpy(ref[f"{case}_input"]).contiguous(memory_format=CL)
    with torch.inference_mode():
        image, label = fast(x)
    np.testing.assert_allclose(label.numpy(), ref[f"{case}_label"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(image.numpy(), ref[f"{case}_image"], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_memory_is_kept_while_a_fast_network_lives(monkeypatch):
    # a Dask LocalCluster started earlier in the session leaves MALLOC_TRIM_THRESHOLD_ in
    # os.environ, and fastinfer leaves a user's malloc settings alone
    for name in memory._MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    trims = []
    monkeypatch.setattr(fastform, "trim_memory", lambda: trims.append(1))
    start = memory._holders
    fast = FastSXTNet(calibrated(ModelConfig(width=4), seed=8))
    assert memory._holders == start  # nothing before the first pass
    small = torch.zeros(1, 1, 16, 16).contiguous(memory_format=CL)
    with torch.inference_mode():
        fast(small)
        fast.forward_label(small)
        assert memory._holders == start + 1 and not trims
        fast(torch.zeros(2, 1, 16, 16).contiguous(memory_format=CL))  # another shape:
    assert len(trims) == 1  # the heap is given back first
    copied = copy.deepcopy(fast)
    assert memory._holders == start + 1
    del fast, copied
    gc.collect()
    assert memory._holders == start
    kept = FastSXTNet(calibrated(ModelConfig(width=4), seed=8), keep_memory=False)
    with torch.inference_mode():
        kept(small)
    assert memory._holders == start
