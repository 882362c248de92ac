"""Semi-supervised training: losses, augmentation, the two kinds of step, checkpoints, CLI.

Everything runs the ``tiny`` preset on CPU with small crops, on synthetic slices with
bright rings whose labels are the rings.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from sxtquant import io
from sxtquant.cli import main as cli_main
from sxtquant.core.errors import InputError
from sxtquant.nn.checkpoint import load_model
from sxtquant.nn.network import build_model
from sxtquant.train.config import TrainConfig
from sxtquant.train.data import (
    CropStream,
    TrainingData,
    augment,
    label_target,
    load_training_data,
    split_slices,
)
from sxtquant.train.loop import LOG_COLUMNS, save_training_checkpoint, train, unsupervised_schedule
from sxtquant.train.losses import image_loss, ssim
from sxtquant.train.steps import frozen, supervised_step, unsupervised_step
from tests.conftest import CliResult, assert_user_error, test_threads

TINY = dict(
    preset="tiny",
    steps_per_epoch=2,
    batch_size=2,
    crop=32,
    device="cpu",
    unsupervised_ratio=1.0,
)


@pytest.fixture(autouse=True)
def one_thread(torch_threads):
    """One CPU thread (unless $SXTQUANT_TEST_THREADS says otherwise): fast on a shared,
    busy machine (OpenMP spinning)."""


def ring_slices(n: int, size: int = 48, seed: int = 0):
    """``n`` raw slices (offset, scaled, noisy) with 1-3 bright rings; labels = the rings."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        ring = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(8, size - 8, 2)
            r = rng.uniform(4, size / 3)
            ring |= np.abs(np.hypot(yy - cy, xx - cx) - r) < 1.2
        image = 500 + 80 * ring + 10 * rng.standard_normal((size, size))
        images.append(image.astype(np.float32))
        labels.append(ring)
    return images, labels


def write_dataset(root, n_files=3, slices_per_file=2, size=48, unlabeled=True):
    images, labels = ring_slices(n_files * slices_per_file, size)
    for i in range(n_files):
        part = slice(i * slices_per_file, (i + 1) * slices_per_file)
        io.write_volume(root / "labeled" / "images" / f"cell{i}.tif", np.stack(images[part]))
        io.write_mask(root / "labeled" / "labels" / f"cell{i}.tif", np.stack(labels[part]))
    if unlabeled:
        extra, _ = ring_slices(2, size, seed=1)
        io.write_volume(root / "unlabeled" / "images" / "raw.tif", np.stack(extra))
    return root


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- losses


def test_ssim_of_an_image_with_itself_is_one():
    x = torch.randn(3, 1, 40, 33, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(ssim(x, x, data_range=4.0).numpy(), 1.0, atol=1e-6)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 57)).cumsum(axis=1)
    b = a + 3.0 * rng.standard_normal(a.shape)
    data_range = float(a.max() - a.min())
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range
    )
    x, y = (torch.from_numpy(v)[None, None] for v in (a, b))
    got = ssim(x, y, data_range=data_range).item()
    assert 0.2 < expected < 0.95
    assert got == pytest.approx(expected, abs=1e-3)


def test_image_loss_is_zero_for_a_perfect_reconstruction_and_differentiable():
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert image_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.zeros_like(x, requires_grad=True)
    image_loss(y, x).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_label_target_is_plus_one_on_membrane_minus_one_elsewhere():
    mask = np.array([[0, 255], [1, 0]], np.uint8)
    np.testing.assert_array_equal(label_target(mask), [[-1, 1], [1, -1]])
    assert torch.equal(label_target(torch.from_numpy(mask)), torch.tensor([[-1.0, 1], [1, -1]]))


# --------------------------------------------------------------------------- data


def test_augment_keeps_image_and_label_aligned():
    image = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)  # every value unique
    label = (image.astype(int) % 7) == 0
    seen = set()
    for seed in range(40):
        a, b = augment(image, label, np.random.default_rng(seed), crop=32)
        assert a.shape == b.shape == (32, 32)
        np.testing.assert_array_equal(b, (a.astype(int) % 7) == 0)
        # the crop is a rotation/flip of a 32 x 32 window of the original
        y, x = np.argwhere(image == a.min())[0]
        np.testing.assert_array_equal(np.sort(a, None), image[y : y + 32, x : x + 32].ravel())
        corner = tuple(np.argwhere(a == a.min())[0])
        step = tuple(np.argwhere(a == a.min() + 1)[0])
        seen.add((corner, step))
    assert len(seen) == 8  # every rotation and flip occurs


def test_augment_pads_a_slice_smaller_than_the_crop():
    image, label = np.ones((20, 40), np.float32), np.ones((20, 40), bool)
    a, b = augment(image, label, np.random.default_rng(0), crop=32)
    assert a.shape == b.shape == (32, 32)
    np.testing.assert_array_equal(a == 1, b)  # padding: image 0, label background
    assert (a == 0).sum() == 32 * 32 - 20 * 32


def test_crop_stream_is_a_pure_function_of_the_index():
    images, labels = ring_slices(3)
    stream = CropStream(images, labels, [0, 2], crop=32, seed=5, stream=1)
    first, again = stream[7], stream[7]
    assert all(torch.equal(u, v) for u, v in zip(first, again, strict=True))
    assert not torch.equal(stream[8][0], first[0])
    assert set(torch.unique(first[1]).tolist()) <= {-1.0, 1.0}


def test_split_is_seeded_disjoint_and_by_slice():
    train_idx, val_idx = split_slices(20, 0.1, seed=4)
    assert len(val_idx) == 2 and len(train_idx) == 18
    assert set(train_idx).isdisjoint(val_idx) and set(train_idx) | set(val_idx) == set(range(20))
    again = split_slices(20, 0.1, seed=4)
    np.testing.assert_array_equal(again[1], val_idx)
    assert split_slices(2, 0.1, seed=0)[1].size == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_slices(1, 0.1, seed=0)


def test_unsupervised_schedule_spreads_the_ratio():
    assert unsupervised_schedule(4, 1.0) == [1, 1, 1, 1]
    assert unsupervised_schedule(4, 0.5) == [0, 1, 0, 1]
    assert sum(unsupervised_schedule(10, 2.5)) == 25
    assert unsupervised_schedule(3, 0.0) == [0, 0, 0]


def test_load_training_data_pairs_by_name_and_counts_every_slice(tmp_path):
    root = write_dataset(tmp_path / "data", n_files=2, slices_per_file=3)
    data = load_training_data(root)
    assert len(data.images) == len(data.labels) == 6
    assert len(data.unlabeled) == 2
    assert data.names[0] == "cell0.tif[0]" and data.names[5] == "cell1.tif[2]"
    assert data.labels[0].dtype == bool and data.labels[0].any()
    assert data.images[0].dtype == np.float32 and data.images[0].mean() > 100  # raw values


def test_load_training_data_rejects_bad_layouts(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        load_training_data(tmp_path / "missing")
    root = write_dataset(tmp_path / "data", n_files=2, unlabeled=False)
    (root / "labeled" / "labels" / "cell1.tif").unlink()
    with pytest.raises(InputError, match=r"cell1\.tif.*no label"):
        load_training_data(root)
    io.write_mask(root / "labeled" / "labels" / "cell1.tif", np.zeros((2, 40, 48), bool))
    with pytest.raises(InputError, match="label shape"):
        load_training_data(root)


# --------------------------------------------------------------------------- steps


def batch_of(images, labels, crop=32):
    stream = CropStream(
        [np.asarray((s - s.mean()) / s.std(), np.float32) for s in images],
        labels,
        range(len(images)),
        crop=crop,
        seed=0,
        stream=1,
    )
    items = [stream[i] for i in range(len(images))]
    return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])


def test_tiny_model_overfits_a_handful_of_labelled_slices():
    torch.manual_seed(0)
    model = build_model("tiny")
    x, t = batch_of(*ring_slices(4, size=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [
        supervised_step(model, optimizer, x, t, image_loss_weight=0.01)["label_loss"]
        for _ in range(25)
    ]
    assert losses[-1] < losses[0] / 10, losses[::10]


def test_unsupervised_step_leaves_the_label_decoder_bit_identical():
    torch.manual_seed(0)
    model = build_model("tiny")
    x, t = batch_of(*ring_slices(2, size=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    supervised_step(model, optimizer, x, t, image_loss_weight=0.01)  # Adam has momentum now
    label_before = state_copy(model.label_decoder)
    encoder_before = state_copy(model.encoder)
    image_before = state_copy(model.image_decoder)
    for _ in range(2):
        unsupervised_step(model, optimizer, x)
    assert same_state(state_copy(model.label_decoder), label_before)  # params + BN buffers
    assert not same_state(state_copy(model.encoder), encoder_before)
    assert not same_state(state_copy(model.image_decoder), image_before)
    # restored afterwards: trainable and in training mode again
    assert all(p.requires_grad for p in model.label_decoder.parameters())
    assert model.label_decoder.training


def test_single_head_forwards_equal_the_full_forward():
    from sxtquant.train.steps import _forward_image, _forward_label

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        image, label = model(x)
        assert torch.equal(_forward_image(model, x), image)
        assert torch.equal(_forward_label(model, x), label)


class ThresholdNet(torch.nn.Module):
    """Reconstructs its input exactly; label +1 where the input > 0.5, else -1."""

    def forward(self, x):
        return x, torch.where(x > 0.5, 1.0, -1.0)


def test_validate_losses_and_pixel_metrics_on_known_outputs():
    from sxtquant.train.steps import validate

    image_a = np.zeros((32, 32), np.float32)
    image_a[:8, :8] = 2.0  # predicted membrane: 64 px
    truth_a = np.zeros((32, 32), bool)
    truth_a[:8, :16] = True  # true membrane: 128 px -> TP 64, FN 64, TN 896
    image_b = np.zeros((20, 36), np.float32)  # odd size: padded, then cropped back
    image_b[0, :10] = 1.0  # 10 px false positives; TN 710
    truth_b = np.zeros((20, 36), bool)
    got = validate(
        ThresholdNet(), [image_a, image_b], [truth_a, truth_b], device=torch.device("cpu")
    )
    pixels = 32 * 32 + 20 * 36
    huber_wrong = 0.1 * (2 - 0.05)  # |error| = 2 on each wrong pixel, delta 0.1
    assert got["val_loss"] == pytest.approx((64 + 10) * huber_wrong / pixels)
    assert got["val_image_loss"] == pytest.approx(0.0, abs=1e-6)
    assert got["val_precision"] == pytest.approx(64 / 74)
    assert got["val_recall"] == pytest.approx(0.5)
    assert got["val_f1"] == pytest.approx(128 / (128 + 10 + 64))
    assert got["val_accuracy"] == pytest.approx((64 + 896 + 710) / pixels)


def test_frozen_restores_mode_and_flags():
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    module[0].weight.requires_grad_(False)
    with frozen(module):
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert module.training
    assert [p.requires_grad for p in module.parameters()] == [False, True, True, True]


# --------------------------------------------------------------------------- the loop


def tiny_data(n=6, size=48):
    images, labels = ring_slices(n, size)
    extra, _ = ring_slices(2, size, seed=9)
    return TrainingData.from_arrays(images, labels, extra)


def test_train_writes_best_last_and_log(tmp_path):
    result = train(tiny_data(), tmp_path / "run", TrainConfig(epochs=2, **TINY), progress=False)
    assert result.epochs_run == 2 and 1 <= result.best_epoch <= 2
    log = pd.read_csv(result.log_path)
    assert list(log.columns) == list(LOG_COLUMNS)
    assert log["epoch"].tolist() == [1, 2]
    assert (
        log[["train_loss", "train_unsupervised_loss", "val_loss", "val_accuracy"]]
        .notna()
        .all()
        .all()
    )
    assert log["val_loss"].min() == pytest.approx(result.best_val_loss)
    model = load_model(result.best_dir)  # a normal checkpoint folder
    assert not model.training
    assert (result.last_dir / "train_state.pt").is_file()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny")
    x, t = batch_of(*ring_slices(2, size=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    supervised_step(model, optimizer, x, t, image_loss_weight=0.01)  # BN stats move
    folder = save_training_checkpoint(tmp_path / "ckpt", model, metadata={"epoch": 1})
    loaded = load_model(folder)
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_supervised_only_never_touches_the_image_decoder(tmp_path):
    config = TrainConfig(epochs=1, supervised_only=True, seed=3, **TINY)
    result = train(tiny_data(), tmp_path / "run", config, progress=False)
    torch.manual_seed(3)
    initial = build_model("tiny")
    trained = load_model(result.last_dir)
    assert same_state(state_copy(trained.image_decoder), state_copy(initial.image_decoder))
    assert not same_state(state_copy(trained.label_decoder), state_copy(initial.label_decoder))
    log = pd.read_csv(result.log_path)
    assert log["train_image_loss"].isna().all() and log["train_unsupervised_loss"].isna().all()


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    data = tiny_data()
    straight = train(data, tmp_path / "a", TrainConfig(epochs=2, **TINY), progress=False)
    train(data, tmp_path / "b", TrainConfig(epochs=1, **TINY), progress=False)  # "killed"
    resumed = train(
        data, tmp_path / "b", TrainConfig(epochs=2, **TINY), resume=True, progress=False
    )
    weights = [torch.load(r.last_dir / "weights.pt") for r in (straight, resumed)]
    assert same_state(*weights)
    drop = ["seconds"]
    pd.testing.assert_frame_equal(
        pd.read_csv(straight.log_path).drop(columns=drop),
        pd.read_csv(resumed.log_path).drop(columns=drop),
    )
    assert resumed.best_epoch == straight.best_epoch


def test_resume_needs_a_checkpoint_and_the_same_data(tmp_path):
    data = tiny_data()
    with pytest.raises(InputError, match="no training checkpoint"):
        train(data, tmp_path / "run", TrainConfig(epochs=1, **TINY), resume=True)
    train(data, tmp_path / "run", TrainConfig(epochs=1, **TINY), progress=False)
    with pytest.raises(InputError, match="already holds a training run"):
        train(data, tmp_path / "run", TrainConfig(epochs=1, **TINY), progress=False)
    other = tiny_data(n=5)
    with pytest.raises(InputError, match="different data"):
        train(other, tmp_path / "run", TrainConfig(epochs=2, **TINY), resume=True)
    (tmp_path / "run" / "last" / "train_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the training state"):
        train(data, tmp_path / "run", TrainConfig(epochs=2, **TINY), resume=True)


def test_init_fine_tunes_a_trained_model(tmp_path):
    data = tiny_data()
    first = train(data, tmp_path / "first", TrainConfig(epochs=1, **TINY), progress=False)
    start = torch.load(first.last_dir / "weights.pt")
    # a vanishing learning rate: the fine-tuned weights stay those of the model it started from
    tuned = train(
        data,
        tmp_path / "tuned",
        TrainConfig(epochs=1, lr=1e-12, seed=1, init=str(first.last_dir), **TINY),
        progress=False,
    )
    after = torch.load(tuned.last_dir / "weights.pt")
    params = [name for name, _ in build_model("tiny").named_parameters()]
    assert all(torch.allclose(after[n], start[n], atol=1e-8) for n in params)
    fresh = train(
        data, tmp_path / "fresh", TrainConfig(epochs=1, lr=1e-12, seed=1, **TINY), progress=False
    )
    fresh_weights = torch.load(fresh.last_dir / "weights.pt")
    assert not torch.allclose(fresh_weights[params[0]], start[params[0]])
    assert json.loads((tuned.last_dir / "metadata.json").read_text())["train_config"]["init"] == (
        str(first.last_dir)
    )


def test_init_checks_the_preset_and_resumes_as_a_run(tmp_path):
    data = tiny_data()
    first = train(data, tmp_path / "first", TrainConfig(epochs=1, **TINY), progress=False)
    config = {**TINY, "preset": "small"}
    with pytest.raises(InputError, match="is not a small network; fine-tune it with --preset tiny"):
        train(data, tmp_path / "x", TrainConfig(epochs=1, init=str(first.last_dir), **config))
    # the same command line with --resume continues the fine-tuning run itself
    tuned = TrainConfig(epochs=1, init=str(first.last_dir), **TINY)
    train(data, tmp_path / "tuned", tuned, progress=False)
    again = dataclasses.replace(tuned, epochs=2)
    assert train(data, tmp_path / "tuned", again, resume=True, progress=False).epochs_run == 2
    with pytest.raises(InputError, match="no such model"):
        train(data, tmp_path / "y", TrainConfig(epochs=1, init=str(tmp_path / "missing"), **TINY))


def test_early_stopping_stops_after_patience_epochs(tmp_path, monkeypatch):
    import sxtquant.train.loop as train_module

    real_validate = train_module.validate
    epochs = iter(range(100))

    def worse_every_epoch(*args, **kwargs):  # best at epoch 1, then only worse
        return {**real_validate(*args, **kwargs), "val_loss": 1.0 + next(epochs)}

    monkeypatch.setattr(train_module, "validate", worse_every_epoch)
    config = TrainConfig(epochs=6, patience=2, **TINY)
    result = train(tiny_data(), tmp_path / "run", config, progress=False)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    assert load_model(result.best_dir) is not None
    # resuming a run that stopped early trains no further
    again = train(tiny_data(), tmp_path / "run", config, resume=True, progress=False)
    assert again.epochs_run == 3 and again.stopped_early


def test_train_config_validates_its_fields():
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainConfig(crop=100)
    with pytest.raises(ValueError, match="preset"):
        TrainConfig(preset="huge")
    from sxtquant.cli import train as train_command
    from sxtquant.nn.config import PRESETS as model_presets
    from sxtquant.train.config import PRESETS

    assert train_command.PRESETS == PRESETS
    assert set(PRESETS) == set(model_presets)
    config = TrainConfig(preset="tiny", epochs=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4  # type: ignore[misc]


# --------------------------------------------------------------------------- CLI


def test_cli_trains_on_a_dataset_folder(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", str(test_threads(1)))
    root = write_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2"]
    result = run_cli("train", root, "-o", out, *args, "--crop", "32", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "best epoch 1" in result.stdout
    for name in ("config.json", "weights.pt"):
        assert (out / "best" / name).is_file() and (out / "last" / name).is_file()
    assert (out / "last" / "train_state.pt").is_file()
    assert len(pd.read_csv(out / "log.csv")) == 1
    load_model(out / "best")


def run_in_process(capsys, *args) -> CliResult:
    code = cli_main(["train", *map(str, args)])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def test_cli_bad_input_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    result = run_in_process(capsys, tmp_path / "nothing", "-o", out)
    assert_user_error(result, "nothing", "no such folder")

    empty = tmp_path / "empty"
    (empty / "labeled" / "images").mkdir(parents=True)
    (empty / "labeled" / "labels").mkdir(parents=True)
    assert_user_error(run_in_process(capsys, empty, "-o", out), "no labelled images")

    root = write_dataset(tmp_path / "data", n_files=2, unlabeled=False)
    io.write_mask(root / "labeled" / "labels" / "cell1.tif", np.zeros((2, 40, 48), bool))
    assert_user_error(run_in_process(capsys, root, "-o", out), "cell1.tif", "label shape")

    (root / "labeled" / "labels" / "cell1.tif").unlink()
    assert_user_error(run_in_process(capsys, root, "-o", out), "cell1.tif", "no label")

    good = write_dataset(tmp_path / "good", n_files=1, unlabeled=False)
    assert_user_error(run_in_process(capsys, good, "-o", out, "--crop", "40"), "multiple of 16")
    assert not out.exists()


def test_membrane_weight_weighs_membrane_pixels():
    from sxtquant.train.losses import huber

    prediction = torch.tensor([[0.5, -1.0]])
    target = torch.tensor([[1.0, -1.0]])
    # error 0.5 > delta: 0.1 * (0.5 - 0.05) = 0.045 on the membrane pixel, 0 elsewhere
    assert huber(prediction, target).item() == pytest.approx(0.045 / 2)
    assert huber(prediction, target, membrane_weight=3.0).item() == pytest.approx(3 * 0.045 / 4)
    with pytest.raises(ValueError, match="membrane_weight"):
        TrainConfig(membrane_weight=0)
