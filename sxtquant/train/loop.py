"""Semi-supervised training of the two-headed network (the reference paper's protocol).

The network has one encoder and two decoders: an *image* decoder that reconstructs
its (standardised) input and a *label* decoder (U-Net skips) whose tanh output is the
membrane label in [-1, 1]. Training alternates two kinds of step:

(i) **supervised** step on a batch of labelled crops: loss = Huber(δ = 0.1) between the
    tanh label output and the target (+1 membrane, -1 background) plus
    ``image_loss_weight`` × the image loss; every weight is updated.
(ii) **unsupervised** step on a batch of unlabelled crops: the image loss alone, with
    the label decoder frozen: it gets no gradient, Adam never moves it, and its
    batch-norm running statistics are untouched (it is in eval mode, and the step does
    not even evaluate it: only encoder, neck and image decoder run).

Image loss = Huber(δ = 0.1) + (1 − SSIM), SSIM with an 11-pixel Gaussian window,
σ = 1.5 (:func:`ssim`). The image target is the standardised input itself.

``supervised_only=True`` trains the plain U-Net branch (encoder + label decoder) on the
labelled pairs alone, without the image loss and without unsupervised steps: the
ablation of the paper's Fig. 2A. The image decoder is then never evaluated nor changed.

The array-level pieces (losses, augmentation, one training step, validation metrics)
are pure functions; :func:`train` strings them together and writes checkpoints through
:func:`save_training_checkpoint` (which uses :func:`sxtquant.nn.checkpoint.save_checkpoint`)
and the CSV log through :func:`sxtquant.io.write_table`.

Examples
--------
>>> from sxtquant.train import TrainConfig, load_training_data, train  # doctest: +SKIP
>>> data = load_training_data("dataset/")  # doctest: +SKIP
>>> result = train(data, "run/", TrainConfig(preset="small", epochs=20))  # doctest: +SKIP
>>> result.best_dir  # doctest: +SKIP
PosixPath('run/best')
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sxtquant import io
from sxtquant.core import progress as _progress
from sxtquant.core.device import resolve_device
from sxtquant.core.errors import InputError
from sxtquant.nn.checkpoint import load_model, save_checkpoint
from sxtquant.nn.network import build_model
from sxtquant.train.config import SIZE_MULTIPLE, TrainConfig
from sxtquant.train.data import (
    CropStream,
    TrainingData,
    _standardize,
    label_stack,
    split_slices,
    stack_context,
)
from sxtquant.train.start import initial_model, model_config_of
from sxtquant.train.steps import frozen, supervised_step, unsupervised_step, validate

LOG_COLUMNS = (
    "epoch",
    "train_loss",
    "train_label_loss",
    "train_image_loss",
    "train_unsupervised_loss",
    "val_loss",
    "val_image_loss",
    "val_accuracy",
    "val_precision",
    "val_recall",
    "val_f1",
    "seconds",
)

#: The columns a run with region heads adds after :data:`LOG_COLUMNS`.
REGION_LOG_COLUMNS = (
    "train_region_loss",
    "val_region_loss",
    "val_cell_dice",
    "val_organelles_dice",
)

TRAIN_STATE = "train_state.pt"


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` leaves behind.

    Attributes
    ----------
    best_dir : Path
        Checkpoint folder of the epoch with the lowest validation loss (loadable by
        :func:`sxtquant.nn.checkpoint.load_model`).
    last_dir : Path
        Checkpoint of the last finished epoch, with ``train_state.pt`` for ``resume``.
    log_path : Path
        The CSV log, one row per epoch (columns :data:`LOG_COLUMNS`).
    best_epoch : int
    best_val_loss : float
    epochs_run : int
        Epochs finished in total (including those before a resume).
    stopped_early : bool
    """

    best_dir: Path
    last_dir: Path
    log_path: Path
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    log: list[dict] = field(default_factory=list, repr=False)


def save_training_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    *,
    metadata: dict,
    state: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically: the model (``save_checkpoint``) and,
    when given, the training state (optimizer, epoch, RNG states...) as ``train_state.pt``."""
    folder = Path(folder)
    with io.atomic_output(folder) as tmp:
        save_checkpoint(model, tmp, metadata=metadata)
        if state is not None:
            torch.save(state, Path(tmp) / TRAIN_STATE)
    return folder


def load_training_state(folder: str | os.PathLike) -> dict:
    """The ``train_state.pt`` of a checkpoint folder.

    Raises
    ------
    InputError
        When the folder holds no training state.
    """
    path = Path(folder) / TRAIN_STATE
    if not path.exists():
        raise InputError(path.parent, "no training checkpoint to resume from (train_state.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not ours
        raise InputError(path, f"cannot read the training state: {exc}") from None


def write_log(rows: list[dict], path: str | os.PathLike) -> Path:
    """The per-epoch CSV log (:data:`LOG_COLUMNS`, then :data:`REGION_LOG_COLUMNS` for a
    run with region heads), written atomically."""
    import pandas as pd

    columns = list(LOG_COLUMNS)
    if rows and "val_region_loss" in rows[0]:
        columns += REGION_LOG_COLUMNS
    return io.write_table(pd.DataFrame(rows, columns=columns), path)


def unsupervised_schedule(steps: int, ratio: float) -> list[int]:
    """How many unsupervised steps follow each of ``steps`` supervised steps.

    ``floor((k + 1) r) − floor(k r)`` after step k: spread evenly, ``floor(steps r)``
    in total.
    """
    return [math.floor((k + 1) * ratio) - math.floor(k * ratio) for k in range(steps)]


def _loader(
    dataset: CropStream, start: int, stop: int, batch_size: int, device: torch.device, workers: int
) -> Iterator:
    """Batches of ``dataset`` items start..stop-1 in order, prefetched by workers."""
    if stop <= start:
        return iter(())
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=range(start, stop),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)


def _rng_states() -> dict:
    # Crops and flips come from generators seeded per item (CropStream): only torch's
    # global generators carry state from one epoch to the next.
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class _Progress:
    """Where a run stands after its last finished epoch (saved in ``train_state.pt``)."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False
    log: list[dict] = field(default_factory=list)

    def record(self, row: dict, patience: int) -> bool:
        """Add an epoch's log row; returns whether its validation loss is the best so far."""
        self.log.append(row)
        self.epoch = row["epoch"]
        improved = row["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.stale_epochs = row["val_loss"], self.epoch, 0
        else:
            self.stale_epochs += 1
        self.stopped_early = patience > 0 and self.stale_epochs >= patience
        return improved


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    supervised: Iterator,
    unsupervised: Iterator,
    schedule: Sequence[int],
    config: TrainConfig,
    device: torch.device,
    bar,
) -> dict[str, float]:
    """The training steps of one epoch; returns the mean losses (NaN where none ran)."""
    sums = np.zeros(5)
    for n_unsup in schedule:
        x, t = (b.to(device, non_blocking=True) for b in next(supervised))
        losses = supervised_step(
            model,
            optimizer,
            x,
            t,
            image_loss_weight=config.image_loss_weight,
            supervised_only=config.supervised_only,
            membrane_weight=config.membrane_weight,
            dice_weight=config.dice_weight,
        )
        sums[:3] += (losses["loss"], losses["label_loss"], losses["image_loss"])
        sums[4] += losses["region_loss"]
        for _ in range(n_unsup):
            (u,) = next(unsupervised)
            sums[3] += unsupervised_step(model, optimizer, u.to(device, non_blocking=True))
        bar.update(1 + n_unsup)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", refresh=False)
    steps, unsup_steps = len(schedule), sum(schedule)
    regions = {"train_region_loss": float(sums[4] / steps)} if config.regions else {}
    return {
        "train_loss": float(sums[0] / steps),
        "train_label_loss": float(sums[1] / steps),
        "train_image_loss": math.nan if config.supervised_only else float(sums[2] / steps),
        "train_unsupervised_loss": float(sums[3] / unsup_steps) if unsup_steps else math.nan,
        **regions,
    }


def train(
    dataset: TrainingData,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the two-headed network on ``dataset``; checkpoints and log go to ``out_dir``.

    Each epoch runs ``steps_per_epoch`` supervised steps, each followed by its share of
    ``unsupervised_ratio`` unsupervised steps (none for ``supervised_only``), then
    validates on the held-out labelled slices. After every epoch ``out_dir/best/`` is
    rewritten when the validation loss improved, then ``out_dir/last/`` (model +
    ``train_state.pt``) and ``out_dir/log.csv``. Unsupervised crops come from the
    unlabelled slices and the training (not validation) labelled slices.

    Parameters
    ----------
    dataset : TrainingData
        Raw slices (standardised here, per slice).
    out_dir : path-like
    config : TrainConfig, optional
        The run's settings (default: ``TrainConfig()``).
    resume : bool
        Continue from ``out_dir/last/`` exactly where that run stopped (same data,
        preset and mode; ``config.epochs`` may be raised to train longer).
    progress : bool
        Show a progress bar per epoch (``--quiet`` silences it too).

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Fewer than two labelled slices, slices smaller than 16 px, ``cuda`` without a
        GPU, ``out_dir`` already holding a run (without ``resume``), or ``resume``
        without a checkpoint or with different data.
    """
    config = TrainConfig() if config is None else config
    out_dir = Path(out_dir)
    try:
        device = resolve_device(config.device)
    except ValueError as exc:
        raise InputError(config.device, str(exc)) from None
    if len(dataset.images) < 2:
        raise InputError(
            dataset.names[0] if dataset.names else "training data",
            f"need at least 2 labelled slices (train + validation), got {len(dataset.images)}",
        )
    for name, image in zip(dataset.names, dataset.images, strict=True):
        if min(image.shape) < SIZE_MULTIPLE:
            raise InputError(name, f"slice of shape {image.shape} is smaller than 16 pixels")
    if config.regions and not dataset.regions:
        raise InputError(
            dataset.names[0] if dataset.names else "training data",
            "region training needs region labels (labeled/regions)",
        )
    context = dataset.context(config.in_slices)

    train_idx, val_idx = split_slices(len(dataset.images), config.validation_fraction, config.seed)
    images = _standardize(dataset.images)
    all_images = images + _standardize(dataset.unlabeled)  # labelled first, then unlabelled
    unsup_pool = np.concatenate([train_idx, np.arange(len(images), len(all_images))])
    data_signature = {
        "shapes": [tuple(s.shape) for s in all_images],
        "n_labeled": len(images),
        "validation": val_idx.tolist(),
    }
    if context is not None:
        data_signature["context"] = [list(c) for c in context]

    last_dir, best_dir, log_path = out_dir / "last", out_dir / "best", out_dir / "log.csv"
    run = _Progress()
    if not resume and (last_dir / TRAIN_STATE).exists():
        raise InputError(
            out_dir, "already holds a training run; continue it with --resume or use a new folder"
        )
    if resume:
        state = load_training_state(last_dir)
        saved = TrainConfig.from_dict(state["config"])

        def kind(c: TrainConfig) -> tuple:
            return c.preset, c.supervised_only, c.in_slices, c.regions

        if kind(saved) != kind(config):
            raise InputError(
                last_dir,
                f"the checkpoint is a {saved.preset} run"
                f"{' (supervised only)' if saved.supervised_only else ''} with "
                f"{saved.in_slices} input slice(s){' and region heads' if saved.regions else ''}"
                "; resume it with the same --preset, --supervised-only, --in-slices and "
                "--regions",
            )
        if state["data"] != data_signature:
            raise InputError(last_dir, "the checkpoint was trained on different data")
        model = load_model(last_dir, device=device)
        run = _Progress(**state["progress"])
    else:
        torch.manual_seed(config.seed)
        if config.init is not None:
            model = initial_model(config, device)
        else:
            model_config = model_config_of(config)
            if config.bn_momentum is not None:
                model_config = dataclasses.replace(model_config, bn_momentum=config.bn_momentum)
            model = build_model(model_config).to(device)
    model.train()
    # supervised-only: the image decoder is outside the optimizer and never evaluated
    trainable = [
        p
        for name, p in model.named_parameters()
        if not (config.supervised_only and name.startswith("image_decoder."))
    ]
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    if resume:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        _set_rng_states(state["rng"])

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workers = config.num_workers
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    batch, steps = config.batch_size, config.steps_per_epoch
    schedule = unsupervised_schedule(
        steps, 0 if config.supervised_only else config.unsupervised_ratio
    )
    per_epoch = {"sup": steps * batch, "unsup": sum(schedule) * batch}
    start, end = run.epoch, (run.epoch if run.stopped_early else config.epochs)
    streams = {
        "sup": CropStream(
            images,
            dataset.labels,
            train_idx,
            crop=config.crop,
            seed=config.seed,
            stream=1,
            regions=dataset.regions if config.regions else None,
            context=context,
        ),
        "unsup": CropStream(
            all_images,
            None,
            unsup_pool,
            crop=config.crop,
            seed=config.seed,
            stream=2,
            context=context,
        ),
    }
    batches = {
        k: _loader(streams[k], start * n, end * n, batch, device, workers)
        for k, n in per_epoch.items()
    }
    if context is None:
        val_images = [images[i] for i in val_idx]
    else:
        val_images = [stack_context(all_images, context[i]) for i in val_idx]
    val_labels = [
        label_stack(dataset.labels[i], dataset.regions[i] if config.regions else None)
        for i in val_idx
    ]
    image_decoder = (
        frozen(model.image_decoder) if config.supervised_only else contextlib.nullcontext()
    )

    with image_decoder:
        for epoch in range(start, end):
            started = time.perf_counter()
            with _progress.progress(
                total=steps + sum(schedule),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                unit="step",
                **({} if progress else {"disable": True}),
            ) as bar:
                losses = _run_epoch(
                    model,
                    optimizer,
                    batches["sup"],
                    batches["unsup"],
                    schedule,
                    config,
                    device,
                    bar,
                )
            metrics = validate(
                model,
                val_images,
                val_labels,
                device=device,
                threshold=config.threshold,
                supervised_only=config.supervised_only,
            )
            row = {
                "epoch": epoch + 1,
                **losses,
                **metrics,
                "seconds": time.perf_counter() - started,
            }
            improved = run.record(row, config.patience)
            metadata = {**row, "train_config": config.to_dict()}
            if improved:
                save_training_checkpoint(best_dir, model, metadata=metadata)
            state = {
                "progress": dataclasses.asdict(run),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_states(),
                "config": config.to_dict(),
                "data": data_signature,
            }
            save_training_checkpoint(last_dir, model, metadata=metadata, state=state)
            write_log(run.log, log_path)
            if run.stopped_early:
                break
    return TrainResult(
        best_dir=best_dir,
        last_dir=last_dir,
        log_path=log_path,
        best_epoch=run.best_epoch,
        best_val_loss=run.best_val_loss,
        epochs_run=run.epoch,
        stopped_early=run.stopped_early,
        log=run.log,
    )
