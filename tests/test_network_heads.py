"""The 2.5D, region-aware network: config, heads, fast form, FLOPs, checkpoints (#16).

The ``paper`` preset stays the reference exactly (one input slice, one label head,
76,483,502 parameters); a config with ``in_slices`` and ``regions`` adds input
channels and label heads and nothing else.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sxtquant.nn import fastform
from sxtquant.nn.checkpoint import load_model, save_checkpoint
from sxtquant.nn.config import PRESETS, REGIONS, ModelConfig
from sxtquant.nn.fastform import FastSXTNet
from sxtquant.nn.network import build_model, count_parameters, flops_per_tile
from tests.test_fastinfer import assert_same_outputs
from tests.test_model import calibrated

REGION_25D = dataclasses.replace(PRESETS["tiny"], in_slices=5, regions=REGIONS)
ONEDNN = [True, False] if fastform.onednn_available() else [False]


def x_of(config: ModelConfig, n: int = 2, h: int = 32, w: int = 48, seed: int = 5):
    return torch.randn(n, config.in_slices, h, w, generator=torch.Generator().manual_seed(seed))


def test_the_paper_preset_is_still_the_reference():
    paper = PRESETS["paper"]
    assert paper.in_slices == 1 and paper.heads == ("membrane",) and paper.is_reference
    assert count_parameters(build_model("paper")) == 76_483_502
    assert "in_slices" not in paper.to_dict() and "regions" not in paper.to_dict()
    paper.to_reference_dict()  # still convertible to the Keras layout


def test_config_validates_and_round_trips_slices_and_heads():
    assert REGION_25D.heads == ("membrane", "cell", "organelles")
    assert not REGION_25D.is_reference
    assert ModelConfig.from_dict(json.loads(json.dumps(REGION_25D.to_dict()))) == REGION_25D
    with pytest.raises(ValueError, match="in_slices"):
        ModelConfig(in_slices=4)
    with pytest.raises(ValueError, match="regions"):
        ModelConfig(regions=("nucleus",))
    with pytest.raises(ValueError):
        REGION_25D.to_reference_dict()
    # the parameters added: k - 1 more input channels of the first convolution, two
    # more output channels of the last
    extra = count_parameters(build_model(REGION_25D)) - count_parameters(build_model("tiny"))
    assert extra > 0
    only_regions = dataclasses.replace(REGION_25D, in_slices=1)
    assert count_parameters(build_model(only_regions)) < count_parameters(build_model(REGION_25D))


def test_heads_forwards_agree_and_the_input_must_have_k_slices():
    model = calibrated(REGION_25D, seed=3)
    x = x_of(REGION_25D)
    with torch.no_grad():
        image, heads = model.forward_all(x)
        assert image.shape == (2, 1, 32, 48) and heads.shape == (2, 3, 32, 48)
        image1, membrane = model(x)
        assert torch.equal(image1, image) and torch.equal(membrane, heads[:, :1])
        assert torch.equal(model.forward_heads(x), heads)
        assert torch.equal(model.forward_label(x), heads[:, :1])
        with pytest.raises(ValueError, match=r"\(N, 5, H, W\)"):
            model(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("onednn", ONEDNN)
def test_fast_form_of_a_2p5d_region_network_gives_its_outputs(onednn):
    model = calibrated(REGION_25D, seed=4)
    fast = FastSXTNet(model, onednn=onednn)
    x = x_of(REGION_25D)
    with torch.inference_mode():
        ref_image, ref_heads = model.forward_all(x)
        # mostly unsaturated, so that the comparison means something
        assert (ref_heads.abs() < 0.99).float().mean() > 0.5 and ref_heads.std() > 0.01
        for fmt in (torch.channels_last, torch.contiguous_format):
            xf = x.contiguous(memory_format=fmt)
            assert_same_outputs((ref_image, ref_heads), fast.forward_all(xf))
            assert_same_outputs((ref_heads,), (fast.forward_heads(xf),))
            assert torch.equal(fast.forward_label(xf), fast.forward_heads(xf)[:, :1])


def test_analytic_flops_count_the_input_slices_and_heads():
    model = build_model(REGION_25D).eval()
    x = torch.zeros(1, 5, 64, 48)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_all(x)
    assert counter.get_total_flops() == flops_per_tile(REGION_25D, (64, 48))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_heads(x)
    assert counter.get_total_flops() == flops_per_tile(REGION_25D, (64, 48), label_only=True)


def test_checkpoint_records_slices_and_heads_and_old_configs_still_load(tmp_path):
    model = calibrated(REGION_25D, seed=6)
    save_checkpoint(model, tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["in_slices"] == 5 and saved["regions"] == ["cell", "organelles"]
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config == REGION_25D
    x = x_of(REGION_25D, n=1)
    with torch.no_grad():
        assert torch.equal(loaded.forward_heads(x), model.forward_heads(x))
    # a config.json written before #16 (no in_slices, no regions) is the 2D membrane net
    old = calibrated("tiny", seed=6)
    save_checkpoint(old, tmp_path / "old")
    values = json.loads((tmp_path / "old" / "config.json").read_text())
    assert "in_slices" not in values and "regions" not in values
    assert load_model(tmp_path / "old").config == PRESETS["tiny"]
