"""2.5D and region-aware training: neighbours, nested targets, losses, runs, CLI (#16).

Everything runs a ``tiny`` network on CPU on small synthetic stacks whose membranes
are spherical shells and whose regions are the ball (cell) and a smaller ball inside
it (organelle), so every target is known exactly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sxtquant import io
from sxtquant.cli import main as cli_main
from sxtquant.core.errors import InputError
from sxtquant.nn.checkpoint import load_model
from sxtquant.train.config import TrainConfig
from sxtquant.train.data import (
    CropStream,
    TrainingData,
    augment,
    context_indices,
    label_stack,
    load_training_data,
    reflect_index,
    region_masks,
)
from sxtquant.train.loop import REGION_LOG_COLUMNS, train
from sxtquant.train.steps import centre_slice, label_loss, validate
from tests.conftest import CliResult, assert_user_error

TINY = dict(preset="tiny", steps_per_epoch=2, batch_size=2, crop=32, device="cpu")


@pytest.fixture(autouse=True)
def one_thread(torch_threads):
    """One CPU thread (unless $SXTQUANT_TEST_THREADS says otherwise)."""


def cell_stack(n: int = 8, size: int = 48, seed: int = 0):
    """A (n, size, size) stack: a bright shell (membrane) around a ball (cell) holding a
    smaller dense ball (organelle); returns image, membrane mask, regions (0/1/2)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:n, :size, :size]
    c = np.array([n / 2, size / 2, size / 2]) + rng.uniform(-2, 2, 3)
    r = np.sqrt(((zz - c[0]) * 3) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
    membrane = np.abs(r - size / 3) < 1.5
    regions = np.where(r < size / 3, 1, 0).astype(np.uint8)
    regions[r < size / 8] = 2
    image = 500 + 60 * membrane + 20 * (regions == 2) + 5 * rng.standard_normal(r.shape)
    return image.astype(np.float32), membrane, regions


def write_stacks(root, n_files: int = 2, regions: bool = True):
    for i in range(n_files):
        image, membrane, region = cell_stack(seed=i)
        io.write_volume(root / "labeled" / "images" / f"cell{i}.tif", image)
        io.write_mask(root / "labeled" / "labels" / f"cell{i}.tif", membrane)
        if regions:
            io.write_volume(root / "labeled" / "regions" / f"cell{i}.tif", region)
    io.write_volume(root / "unlabeled" / "images" / "raw.tif", cell_stack(seed=9)[0])
    return root


def test_reflect_index_mirrors_about_the_end_slices():
    assert [reflect_index(j, 5) for j in range(-4, 9)] == [4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert [reflect_index(j, 2) for j in (-2, -1, 0, 1, 2, 3)] == [0, 1, 0, 1, 0, 1]
    assert reflect_index(7, 1) == 0


def test_context_indices_take_neighbours_within_each_tomogram():
    positions = [("a", z) for z in range(4)] + [("b", 10), ("b", 11), ("b", 12)]
    ctx = context_indices(positions, 3)
    assert ctx[0] == (1, 0, 1)  # reflected at a's first slice
    assert ctx[2] == (1, 2, 3)
    assert ctx[3] == (2, 3, 2)  # reflected at a's last slice
    assert ctx[4] == (5, 4, 5)  # b's slices are 4, 5, 6; z 10 is its first
    assert ctx[6] == (5, 6, 5)
    assert context_indices(positions, 1) == [(i,) for i in range(7)]
    with pytest.raises(InputError, match="not consecutive"):
        context_indices([("a", 0), ("a", 2)], 3)
    with pytest.raises(InputError, match="lone slice"):
        context_indices([("a", 0), ("b", 0), ("b", 1)], 3)
    with pytest.raises(ValueError, match="odd"):
        context_indices(positions, 4)


def test_loader_keeps_positions_and_regions(tmp_path):
    write_stacks(tmp_path)
    data = load_training_data(tmp_path, regions=True)
    assert len(data.images) == 16 and len(data.regions) == 16 and len(data.unlabeled) == 8
    assert data.positions[:2] == (("labeled/cell0", 0), ("labeled/cell0", 1))
    assert data.positions[16] == ("unlabeled/raw", 0)
    _, membrane, region = cell_stack(seed=1)
    np.testing.assert_array_equal(data.regions[8 + 3], region[3])
    np.testing.assert_array_equal(data.labels[8 + 3], membrane[3])
    ctx = data.context(5)
    assert ctx[0] == (2, 1, 0, 1, 2) and ctx[16] == (18, 17, 16, 17, 18)
    assert data.context(1) is None
    # 2D slices named <tomo>_z<NNNN> are grouped into their tomogram
    flat = tmp_path / "flat"
    image, membrane, _ = cell_stack(n=3)
    for z in range(3):
        io.write_volume(flat / "labeled" / "images" / f"t_z{z:04d}.tif", image[z])
        io.write_mask(flat / "labeled" / "labels" / f"t_z{z:04d}.tif", membrane[z])
    assert load_training_data(flat).context(3)[0] == (1, 0, 1)


def test_loader_asks_for_regions_and_lone_slices_have_no_context(tmp_path):
    write_stacks(tmp_path, regions=False)
    with pytest.raises(InputError, match="regions"):
        load_training_data(tmp_path, regions=True)
    data = TrainingData.from_arrays(*cell_stack()[:2])
    with pytest.raises(InputError, match="neighbours"):
        data.context(3)


def test_region_targets_are_nested_and_stacked_after_the_membrane():
    _, membrane, regions = cell_stack()
    masks = label_stack(membrane, regions)
    assert masks.shape == (3, *membrane.shape) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], membrane)
    np.testing.assert_array_equal(masks[1], regions >= 1)
    np.testing.assert_array_equal(masks[2], regions == 2)
    assert not (masks[2] & ~masks[1]).any()  # organelles lie inside the cell
    np.testing.assert_array_equal(region_masks(regions), masks[1:])
    assert label_stack(membrane, None).shape == (1, *membrane.shape)


def test_crop_stream_stacks_context_and_targets_under_one_transform():
    image, membrane, regions = cell_stack()
    images = [s for s in image]
    context = context_indices([("t", z) for z in range(len(images))], 5)
    stream = CropStream(
        images, list(membrane), range(8), crop=32, seed=3, stream=1,
        regions=list(regions), context=context,
    )  # fmt: skip
    x, t = stream[5]
    assert x.shape == (5, 32, 32) and t.shape == (3, 32, 32)
    # the same item by hand: the same generator draws the same slice and transform
    rng = np.random.default_rng([3, 1, 5])
    i = int(np.arange(8)[rng.integers(8)])
    want_x, want_t = augment(
        np.stack([images[j] for j in context[i]]),
        label_stack(membrane[i], regions[i]),
        rng,
        crop=32,
    )
    np.testing.assert_array_equal(x.numpy(), want_x)
    np.testing.assert_array_equal(t.numpy(), np.where(want_t, 1.0, -1.0))
    # without context and regions: the 2D membrane-only items of before
    plain = CropStream(images, list(membrane), range(8), crop=32, seed=3, stream=1)
    x1, t1 = plain[5]
    assert x1.shape == (1, 32, 32) and t1.shape == (1, 32, 32)
    np.testing.assert_array_equal(x1[0].numpy(), want_x[2])  # the centre slice


def test_label_loss_is_zero_on_its_targets_and_weighs_each_part():
    targets = torch.where(
        torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5, 1.0, -1.0
    )
    membrane, region = label_loss(targets.clone(), targets)
    assert membrane.item() == 0 and region.item() == 0
    wrong = targets.clone()
    wrong[:, 1:] *= -1  # every region pixel wrong, the membrane right
    membrane, region = label_loss(wrong, targets)
    assert membrane.item() == 0
    assert region.item() == pytest.approx(0.1 * (2 - 0.05))  # Huber(δ = 0.1) of an error 2
    assert label_loss(targets[:, :1], targets[:, :1])[1].item() == 0
    x = torch.arange(2 * 5 * 2.0).reshape(2, 5, 2, 1)
    np.testing.assert_array_equal(centre_slice(x), x[:, 2:3])


def test_validate_scores_the_region_heads_by_dice():
    class Oracle(torch.nn.Module):
        """Returns the stored tanh outputs whatever the input."""

        def __init__(self, out):
            super().__init__()
            self.out = out
            self.label_decoder = None

        def forward_all(self, x):
            return centre_slice(x), self.out

    _, membrane, regions = cell_stack(n=1, size=32)
    masks = label_stack(membrane[0], regions[0])
    out = torch.from_numpy(np.where(masks, 1.0, -1.0)).float()[None]
    half = out.clone()
    half[:, 2] = -1  # no organelle predicted
    image = np.zeros((5, 32, 32), np.float32)
    good = validate(Oracle(out), [image], [masks], device=torch.device("cpu"))
    assert good["val_loss"] == 0 and good["val_cell_dice"] == 1 and good["val_f1"] == 1
    bad = validate(Oracle(half), [image], [masks], device=torch.device("cpu"))
    assert bad["val_organelles_dice"] == 0 and bad["val_cell_dice"] == 1
    assert bad["val_region_loss"] == pytest.approx(
        0.5 * 0.1 * (2 - 0.05) * masks[2].mean(), rel=1e-6
    )


def test_a_2p5d_region_run_saves_a_model_that_records_its_slices_and_heads(tmp_path):
    write_stacks(tmp_path / "data")
    data = load_training_data(tmp_path / "data", regions=True)
    config = TrainConfig(epochs=1, in_slices=3, regions=True, **TINY)
    result = train(data, tmp_path / "run", config, progress=False)
    model = load_model(result.last_dir)
    assert model.config.in_slices == 3
    assert model.config.heads == ("membrane", "cell", "organelles")
    assert set(REGION_LOG_COLUMNS) <= set(result.log[0])
    log = result.log_path.read_text().splitlines()[0].split(",")
    assert log[-len(REGION_LOG_COLUMNS) :] == list(REGION_LOG_COLUMNS)
    with torch.no_grad():
        assert model.forward_heads(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    # resuming with another input size is refused
    other = TrainConfig(epochs=2, in_slices=5, regions=True, **TINY)
    with pytest.raises(InputError, match="--in-slices"):
        train(data, tmp_path / "run", other, resume=True, progress=False)
    # fine-tuning needs the same input slices and heads; the message names those that fit
    # and, for a 2D membrane run, the shipped 2D model
    fits = "is not a tiny network; fine-tune it with --preset tiny --in-slices 3 --regions "
    with pytest.raises(InputError, match=re.escape(fits) + ".*start from membrane-2d"):
        train(
            data,
            tmp_path / "tune",
            TrainConfig(epochs=1, init=str(result.last_dir), **TINY),
            progress=False,
        )


def test_train_config_in_slices_and_regions():
    with pytest.raises(ValueError, match="in_slices"):
        TrainConfig(in_slices=4)
    assert "in_slices" not in TrainConfig().to_dict()  # older records read the same
    values = TrainConfig(in_slices=5, regions=True).to_dict()
    assert values["in_slices"] == 5 and values["regions"] is True
    assert TrainConfig.from_dict(values) == TrainConfig(in_slices=5, regions=True)


def _train_cli(capsys, *args) -> CliResult:
    code = cli_main(["train", *map(str, args)])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def test_cli_trains_a_2p5d_region_model_and_refuses_bad_data(tmp_path, capsys):
    data = write_stacks(tmp_path / "data")
    small = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "1"]
    small += ["--batch-size", "2", "--crop", "32", "--quiet"]
    run = tmp_path / "run"
    result = _train_cli(capsys, data, "-o", run, *small, "--in-slices", "3", "--regions")
    assert result.returncode == 0, result.stderr
    assert load_model(run / "best").config.in_slices == 3
    bare = write_stacks(tmp_path / "bare", regions=False)
    out = tmp_path / "r2"
    assert_user_error(_train_cli(capsys, bare, "-o", out, *small, "--regions"), "regions")
    assert_user_error(_train_cli(capsys, data, "-o", out, *small, "--in-slices", "2"), "in_slices")
    assert not out.exists()


def test_soft_dice_loss_is_zero_on_target_one_on_its_complement_and_counts_each_channel():
    from sxtquant.train.losses import soft_dice_loss

    t = -torch.ones(2, 2, 8, 8)
    t[:, 0, 2:4, 2:6] = 1  # 8 pixels a crop in channel 0
    t[:, 1, :, :4] = 1  # half of channel 1
    assert soft_dice_loss(t.clone(), t).item() == pytest.approx(0.0)
    # all background predicted: channel 0's Dice is eps / (16 + eps), channel 1's 1 / 65
    empty = soft_dice_loss(-torch.ones_like(t), t).item()
    assert empty == pytest.approx(1 - 0.5 * (1 / 17 + 1 / 65))
    # with the Dice term the "background everywhere" answer costs much more
    membrane, _ = label_loss(-torch.ones_like(t[:, :1]), t[:, :1], dice_weight=1.0)
    plain, _ = label_loss(-torch.ones_like(t[:, :1]), t[:, :1])
    assert membrane.item() == pytest.approx(plain.item() + 1 - 1 / 17)
    with pytest.raises(ValueError, match="dice_weight"):
        TrainConfig(dice_weight=-1)
    assert "dice_weight" not in TrainConfig().to_dict()


def test_supervised_step_adds_the_dice_term_to_its_loss():
    import copy

    from sxtquant.nn.network import build_model
    from sxtquant.train.losses import soft_dice_loss
    from sxtquant.train.steps import supervised_step

    torch.manual_seed(0)
    model = build_model(TrainConfig().__class__ and __import__("dataclasses").replace(
        __import__("sxtquant.nn.config", fromlist=["PRESETS"]).PRESETS["tiny"],
        in_slices=3, regions=("cell", "organelles"),
    ))  # fmt: skip
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.where(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) > 1,
                    1.0, -1.0)  # fmt: skip
    losses = {}
    for weight in (0.0, 1.0):
        net = copy.deepcopy(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        losses[weight] = supervised_step(net, opt, x, t, image_loss_weight=0.0, dice_weight=weight)[
            "label_loss"
        ]
    net = copy.deepcopy(model).train()
    with torch.no_grad():
        heads = net.forward_heads(x)
    dice = soft_dice_loss(heads[:, :1], t[:, :1]) + soft_dice_loss(heads[:, 1:], t[:, 1:])
    assert losses[1.0] - losses[0.0] == pytest.approx(dice.item(), rel=1e-4)
