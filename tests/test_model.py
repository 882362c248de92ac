"""The network: architecture, exact parameter count, FLOPs, padding, BN folding, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from sxtquant.core.errors import InputError
from sxtquant.nn.checkpoint import load_model, save_checkpoint
from sxtquant.nn.config import PRESETS, ModelConfig
from sxtquant.nn.inference import prepare_for_inference
from sxtquant.nn.layers import SameConvTranspose2d, SamePadConv2d
from sxtquant.nn.network import (
    build_model,
    count_parameters,
    flops_per_pixel,
    flops_per_tile,
    standardize_slices,
)


def calibrated(preset_or_config="tiny", seed: int = 0) -> torch.nn.Module:
    """A random network whose batch-norm statistics fit its activations (outputs O(1)).

    Batch-norm scales below 1 keep the random network contractive, so float32
    rounding stays ~1e-5 at the outputs and a 1e-4 comparison is meaningful."""
    torch.manual_seed(seed)
    model = build_model(preset_or_config)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 0.4, generator=gen)
            m.bias.data.uniform_(-0.2, 0.2, generator=gen)
    batches = [torch.randn(4, model.config.in_slices, 32, 32, generator=gen) for _ in range(2)]
    torch.optim.swa_utils.update_bn(batches, model)
    return model.eval()


def test_paper_preset_has_exactly_the_reference_parameter_count():
    assert count_parameters(build_model("paper")) == 76_483_502


def test_smaller_presets_shrink_with_width():
    counts = [count_parameters(build_model(p)) for p in ("base", "small", "tiny")]
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] < 1.5e6


@pytest.mark.parametrize(("h", "w"), [(16, 16), (48, 80), (64, 32)])
def test_forward_shapes_and_label_range(h, w):
    model = calibrated()
    x = torch.randn(2, 1, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        image, label = model(x)
    assert image.shape == label.shape == (2, 1, h, w)
    assert image.dtype == label.dtype == torch.float32
    assert label.min() >= -1 and label.max() <= 1


def test_forward_label_equals_the_label_of_forward():
    model = calibrated()
    x = torch.randn(2, 1, 32, 48, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert torch.equal(model.forward_label(x), model(x)[1])


def test_forward_rejects_sizes_that_are_not_multiples_of_16():
    model = build_model("tiny").eval()
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.zeros(1, 1, 40, 32))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model(torch.zeros(1, 2, 32, 32))


def test_submodules_split_the_parameters_between_encoder_neck_and_decoders():
    model = build_model("tiny")
    parts = [model.encoder, model.neck, model.image_decoder, model.label_decoder]
    assert sum(count_parameters(p) for p in parts) == count_parameters(model)
    label_ids = {id(p) for p in model.label_decoder.parameters()}
    assert not label_ids & {id(p) for p in model.encoder.parameters()}
    # the whole label head (final batch norm, bottleneck, 1x1 conv) lives in label_decoder
    names = {n for n, _ in model.label_decoder.named_parameters()}
    assert {"head_batch_norm.weight", "head_conv_1.conv_3.bias", "head_conv_2.weight"} <= names
    assert "head_batch_norm.running_var" in dict(model.label_decoder.named_buffers())


def test_frozen_label_decoder_does_not_change_the_image_path():
    """Image output does not depend on the label decoder (the unsupervised step's premise)."""
    model = calibrated()
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        image, _ = model(x)
        for p in model.label_decoder.parameters():
            p.add_(1.0)
        image2, _ = model(x)
    torch.testing.assert_close(image, image2, rtol=0, atol=0)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_analytic_flops_match_torch_flop_counter(preset):
    if preset == "paper":
        model = build_model("tiny")  # same structure, counting scales exactly; keep it cheap
        config = ModelConfig(width=64)
        assert flops_per_tile(config, 256) == pytest.approx(151.96e9, rel=1e-3)
        assert flops_per_pixel("paper") == pytest.approx(2.32e6, rel=1e-2)
        return
    model = build_model(preset).eval()
    x = torch.zeros(1, 1, 64, 48)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() == flops_per_tile(preset, (64, 48))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_label(x)
    assert counter.get_total_flops() == flops_per_tile(preset, (64, 48), label_only=True)


def test_same_padding_of_even_kernel_puts_extra_row_bottom_right():
    """TensorFlow 'same' with k = 2: output[i] = w0 x[i] + w1 x[i + 1], zero past the end."""
    conv = SamePadConv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight)
    out = conv(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)
    assert out[0, 0, 2, 2] == 1.0 * 8  # only x[2, 2] * w[0, 0] at the corner


def test_transposed_conv_keeps_the_first_rows_as_tensorflow():
    """TF 'same' transposed conv (k = 3, stride 2): y[2i + a] += x[i] w[a], rows [0, 2n)."""
    layer = SameConvTranspose2d(1, 1, 3, stride=2)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(rng.normal(size=(1, 1, 3, 3)).astype(np.float32)))
        layer.bias.fill_(0.5)
    x = rng.normal(size=(3, 2)).astype(np.float32)
    w = layer.weight[0, 0].detach().numpy()
    full = np.zeros((3 * 2 + 1, 2 * 2 + 1), np.float32)
    for i in range(3):
        for j in range(2):
            full[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += x[i, j] * w
    expected = full[:6, :4] + 0.5
    out = layer(torch.from_numpy(x)[None, None]).detach().numpy()[0, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_batch_norm_matches_keras_defaults():
    bn = build_model("tiny").encoder.initial_activation.batch_norm
    assert bn.eps == pytest.approx(1e-3)
    assert bn.momentum == pytest.approx(0.01)


def test_config_json_round_trip_and_reference_layout():
    config = ModelConfig(width=12, neck_kernel_sizes=(1, 3))
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    ref = PRESETS["paper"].to_reference_dict()
    assert ref["encoder"]["n_filters"] == [64, 64, 128, 256, 512]
    assert ref["neck"]["n_filters"] == 1024
    assert ref["decoder_label"]["n_blocks"] == 2
    assert ModelConfig.from_reference_dict(ref) == PRESETS["paper"]
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"width": 8, "depth": 3})
    with pytest.raises(ValueError, match="positive integer"):
        ModelConfig(width=0)
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("huge")


def test_standardize_slices_per_slice_and_constant_slice():
    rng = np.random.default_rng(3)
    x = np.stack([rng.normal(5, 3, (20, 30)), np.full((20, 30), 7.0)]).astype(np.float32)
    y = standardize_slices(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0].mean(), 0, atol=1e-5)
    np.testing.assert_allclose(y[0].std(), 1, atol=1e-4)
    assert np.all(y[1] == 0)
    t = standardize_slices(torch.from_numpy(x))
    np.testing.assert_allclose(t.numpy(), y, atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_bn_folding_gives_the_same_outputs(channels_last):
    model = calibrated("tiny", seed=4)
    folded = prepare_for_inference(model, channels_last=channels_last)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_bn_folded = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert n_bn_folded < n_bn / 2
    x = torch.randn(2, 1, 32, 48, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref = model(x)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out = folded(x.contiguous(memory_format=fmt))
        label_only = folded.forward_label(x.contiguous(memory_format=fmt))
    assert torch.equal(label_only, out[1])
    # label (tanh) to 1e-4; the unbounded image to 1e-4 of its range
    for a, b in zip(ref, out, strict=True):
        scale = max(1.0, a.abs().max().item())
        assert (a - b).abs().max().item() <= 1e-4 * scale
    # the original is untouched
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == n_bn


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = calibrated("tiny", seed=6)
    save_checkpoint(model, tmp_path / "ckpt", metadata={"epochs": 3})
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["width"] == 8
    loaded = load_model(tmp_path / "ckpt")
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.randn(1, 1, 32, 48, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_load_model_errors(tmp_path):
    with pytest.raises(InputError, match="no such model"):
        load_model("nonexistent")
    with pytest.raises(InputError, match="untrained"):
        load_model("paper")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json is missing"):
        load_model(tmp_path / "empty")
    folder = save_checkpoint(build_model("tiny"), tmp_path / "bad")
    (folder / "config.json").write_text(json.dumps(ModelConfig(width=16).to_dict()))
    with pytest.raises(InputError, match="do not fit"):
        load_model(folder)


def test_shipped_default_model_is_a_clear_error_when_absent():
    from sxtquant.nn.checkpoint import SHIPPED_MODELS_DIR

    if (SHIPPED_MODELS_DIR / "default" / "config.json").is_file():
        model = load_model("default")
        assert not model.training
    else:
        with pytest.raises(InputError, match="not installed"):
            load_model("default")
